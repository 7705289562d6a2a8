//! N nodes in one process, each with its ring membership: prints every
//! node's view of the ring and how many partitions it owns, then crashes one
//! node (no goodbye) and prints the change as the others see it.
//!
//! Run: `cargo run --example ring_cluster -- 5` (default 5 nodes). Nodes find
//! each other through the host's PMD (`IRONFORGE_PMD_PORT`, default 4369),
//! started if none answers.

use std::time::{Duration, Instant};

use ironforge::node::{Node, NodeConfig};
use ironforge::ring::{MembershipEvent, RingNode, RingNodeConfig};

const JOIN_TIMEOUT: Duration = Duration::from_secs(10);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let count: usize = match std::env::args().nth(1) {
        Some(arg) => arg.parse()?,
        None => 5,
    };
    anyhow::ensure!(count >= 2, "a ring cluster needs at least 2 nodes");
    let names: Vec<String> = (0..count).map(|i| format!("ring-{i}")).collect();
    let seed = names[0].clone();

    let mut members = Vec::with_capacity(count);
    for name in &names {
        let config = NodeConfig::new(name.clone())
            .cookie("example")
            .allow_multiple();
        let node = Node::start(config).await?;
        members.push(RingNode::start(node, RingNodeConfig::new([seed.clone()])).await?);
    }
    let started = Instant::now();
    for member in &members {
        member.await_converged(names.clone(), JOIN_TIMEOUT).await?;
    }
    println!(
        "{count} nodes agree on the ring after {:?}",
        started.elapsed()
    );
    for member in &members {
        let ring = member.ring();
        let me = &member.local().name;
        println!(
            "{me}: sees {}, owns {} of {} partitions; job-42 -> {:?}",
            ring.members().join(","),
            ring.partitions_owned_by(me).len(),
            ring.config().partitions,
            member.preference_list(b"job-42", 3),
        );
    }

    let mut events = members[0].events();
    let victim = members.pop().ok_or_else(|| anyhow::anyhow!("no members"))?;
    let victim_name = victim.local().name.clone();
    let victim_node = victim.node().clone();
    println!("crashing {victim_name}: no leave message, its connections close");
    let crashed_at = Instant::now();
    drop(victim);
    victim_node.shutdown().await;

    let survivors: Vec<String> = names[..count - 1].to_vec();
    for member in &members {
        member
            .await_converged(survivors.clone(), JOIN_TIMEOUT)
            .await?;
    }
    println!(
        "all {} survivors dropped {victim_name} after {:?}",
        members.len(),
        crashed_at.elapsed()
    );
    let observer = &members[0].local().name;
    while let Ok(event) = events.try_recv() {
        match event {
            MembershipEvent::MemberUp(name) => println!("{observer}: member up {name}"),
            MembershipEvent::MemberDown(name) => println!("{observer}: member down {name}"),
            MembershipEvent::RingChanged {
                members,
                moved,
                diff,
            } => println!(
                "{observer}: ring now {}; {} partitions changed owner, {} changed owner or replicas",
                members.join(","),
                moved.len(),
                diff.changes.len()
            ),
        }
    }
    for member in &members {
        let me = &member.local().name;
        println!(
            "{me} now owns {} partitions",
            member.ring().partitions_owned_by(me).len()
        );
    }
    for member in members {
        member.leave().await?.shutdown().await;
    }
    Ok(())
}
