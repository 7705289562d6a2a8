//! A worker process with handlers by kind, serving the HTTP API, on the
//! embedded store (no server to set up). Submit work to it with the
//! `submit_jobs` example, `ironforge job submit`, or any HTTP client.
//!
//! Run: `cargo run --example simple_worker` (API on 127.0.0.1:3000, or
//! IRONFORGE_HTTP; store in ./worker-data, or IRONFORGE_DATA_DIR). Stops on
//! Ctrl-C, letting running jobs finish.

use std::time::Duration;

use ironforge::jobs::engine::{Engine, EngineConfig, Store};
use ironforge::jobs::{HandlerError, Registry, WorkerConfig};
use serde_json::json;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let mut handlers = Registry::new();
    handlers
        .register_fn("resize_image", |ctx| async move {
            let width = ctx.payload()["width"].as_u64().unwrap_or(100);
            for step in 1..=4 {
                tokio::time::sleep(Duration::from_millis(25)).await;
                ctx.set_progress(step * 25).await.ok();
            }
            Ok(json!({ "thumbnail": format!("{}x{}", width / 4, width / 4) }))
        })
        .register_fn("send_email", |ctx| async move {
            match ctx.payload()["to"].as_str() {
                Some(to) if to.contains('@') => Ok(json!({ "sent_to": to })),
                // Retrying will not fix a bad address: straight to the dead letters.
                _ => Err(HandlerError::permanent("no valid `to` address")),
            }
        });

    let http = std::env::var("IRONFORGE_HTTP").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let dir = std::env::var("IRONFORGE_DATA_DIR").unwrap_or_else(|_| "worker-data".into());
    let engine = Engine::start(EngineConfig {
        http: Some(http.parse()?),
        worker: Some((handlers, WorkerConfig::default())),
        ..EngineConfig::new(Store::Embedded { dir: dir.into() })
    })
    .await?;
    if let Some(addr) = engine.http_addr() {
        println!("worker ready: API on http://{addr}, handlers resize_image and send_email");
    }
    tokio::signal::ctrl_c().await?;
    let report = engine.shutdown(Duration::from_secs(10)).await;
    println!("stopped; {} unfinished jobs handed back", report.released);
    Ok(())
}
