//! N nodes, all to all: each node greets every other one and prints what it
//! received. Shows discovery through the PMD and one connection per pair.
//!
//! Run: `cargo run --example multi_node -- 5` (default 4 nodes)

use std::time::Duration;

use ironforge::node::{Node, NodeConfig};
use serde_json::json;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let count: usize = match std::env::args().nth(1) {
        Some(arg) => arg.parse()?,
        None => 4,
    };
    let mut nodes = Vec::with_capacity(count);
    for i in 0..count {
        let config = NodeConfig::new(format!("node-{i}"))
            .cookie("example")
            .allow_multiple();
        nodes.push(Node::start(config).await?);
    }
    for node in &nodes {
        let peers = node.discover().await?;
        for peer in peers
            .iter()
            .filter(|p| p.display_name().starts_with("node-"))
        {
            node.send(peer.display_name(), &json!({ "hello_from": node.alias() }))
                .await?;
        }
    }
    for node in &nodes {
        let mut greetings = Vec::with_capacity(count - 1);
        while greetings.len() < count - 1 {
            let message = tokio::time::timeout(Duration::from_secs(5), node.recv())
                .await?
                .ok_or_else(|| anyhow::anyhow!("node stopped"))?;
            greetings.push(
                message.body()["hello_from"]
                    .as_str()
                    .unwrap_or("?")
                    .to_owned(),
            );
        }
        greetings.sort();
        println!("{} received from: {}", node.alias(), greetings.join(", "));
    }
    for node in nodes {
        node.shutdown().await;
    }
    Ok(())
}
