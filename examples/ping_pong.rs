//! Two nodes, one asks and one answers: the smallest complete use of the
//! node runtime. The first node finds no PMD on this host and starts one
//! (set IRONFORGE_PMD_PORT to use another port than 4369).
//!
//! Run: `cargo run --example ping_pong`

use std::time::{Duration, Instant};

use ironforge::node::{Node, NodeConfig};
use serde_json::json;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    // Two nodes in one process for the demo; normally each is its own program.
    let ping = Node::start(NodeConfig::new("ping").cookie("example").allow_multiple()).await?;
    let pong = Node::start(NodeConfig::new("pong").cookie("example").allow_multiple()).await?;

    pong.handle(|node, message| async move {
        let n = message.body()["ping"].clone();
        if let Err(err) = node.reply(&message, &json!({ "pong": n })).await {
            eprintln!("pong could not reply: {err}");
        }
    });

    for n in 1..=5 {
        let started = Instant::now();
        let reply = ping
            .request("pong", &json!({ "ping": n }), Duration::from_secs(2))
            .await?;
        println!(
            "ping {n} -> {} from '{}' in {:?}",
            reply.body(),
            reply.from_alias(),
            started.elapsed()
        );
    }
    ping.shutdown().await;
    pong.shutdown().await;
    Ok(())
}
