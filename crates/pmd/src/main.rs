//! `ironforge-pmd`: the per-host port-mapper daemon as a process.
//!
//! Kept thin so `ironforge pmd start --foreground` can run the same daemon
//! from [`ironforge_pmd::server`]. Prints exactly one `ready <addr>` line on
//! stdout once listening (launchers wait for it instead of sleeping), logs
//! to stderr, exits 2 when the port is taken and 0 after `shutdown`.

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use ironforge_pmd::server::{run_daemon, DaemonArgs, PmdServerError};

/// IronForge port-mapper daemon (distflow-compatible).
#[derive(Debug, Parser)]
#[command(name = "ironforge-pmd", version, about)]
struct Cli {
    #[command(flatten)]
    daemon: DaemonArgs,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    ironforge_pmd::logging::init(cli.daemon.log_format);
    let announce_ready = |addr| {
        let mut stdout = std::io::stdout().lock();
        // A launcher that stopped listening must not stop the daemon.
        let _ = writeln!(stdout, "ready {addr}").and_then(|()| stdout.flush());
    };
    match run_daemon(cli.daemon.config(), announce_ready).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err @ PmdServerError::AddrInUse { .. }) => {
            eprintln!("ironforge-pmd: {err}");
            ExitCode::from(2)
        }
        Err(err) => {
            eprintln!("ironforge-pmd: {err}");
            ExitCode::FAILURE
        }
    }
}
