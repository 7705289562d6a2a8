//! Log set-up shared by the `ironforge-pmd` and `ironforge` binaries, so
//! both read the same variables and speak the same line formats. Libraries
//! only emit `tracing` events; only binaries call this.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::server::LogFormat;

/// Variable holding the log filter (`info`, `ironforge_node=debug`, ...);
/// `RUST_LOG` is read when it is unset.
pub const LOG_ENV: &str = "IRONFORGE_LOG";

/// Installs a subscriber writing to stderr, at the level from
/// `IRONFORGE_LOG`, else `RUST_LOG`, else `info`.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_env(LOG_ENV)
        .or_else(|_| EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    // A second call (tests) keeps the first subscriber.
    let _ = match format {
        LogFormat::Human => logs.try_init(),
        LogFormat::Json => logs.json().try_init(),
    };
}
