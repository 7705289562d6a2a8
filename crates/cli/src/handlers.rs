//! Handlers `ironforge node start` runs out of the box, for trying the
//! engine without writing code: `echo` returns its payload, `sleep` waits
//! `{"ms": N}` (at most a minute), `fail` always fails (so retries and dead
//! letters can be seen).

use std::time::Duration;

use ironforge_jobs::{HandlerError, Registry};

/// Longest `sleep` a payload may ask for.
const MAX_SLEEP: Duration = Duration::from_secs(60);

pub fn builtin() -> Registry {
    let mut registry = Registry::new();
    registry
        .register_fn("echo", |ctx| async move { Ok(ctx.payload().clone()) })
        .register_fn("sleep", |ctx| async move {
            let ms = ctx.payload()["ms"].as_u64().unwrap_or(1000);
            let wait = Duration::from_millis(ms).min(MAX_SLEEP);
            tokio::time::sleep(wait).await;
            Ok(serde_json::json!({ "slept_ms": wait.as_millis() as u64 }))
        })
        .register_fn("fail", |ctx| async move {
            let reason = ctx.payload()["error"].as_str().unwrap_or("asked to fail");
            Err(HandlerError::retryable(reason))
        });
    registry
}
