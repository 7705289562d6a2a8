//! Starts N members in one process over UDP on 127.0.0.1, prints each one's
//! view of the ring and how many partitions it owns, kills one without a
//! goodbye, and prints the change the survivors report.
//!
//! `cargo run -p ironforge-ring --example ring_cluster -- 5`

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ironforge_ring::{Membership, MembershipConfig, MembershipEvent};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let count: usize = std::env::args()
        .nth(1)
        .map(|arg| arg.parse())
        .transpose()?
        .unwrap_or(5)
        .max(2);
    let loopback: SocketAddr = "127.0.0.1:0".parse()?;
    let names: Vec<String> = (0..count).map(|i| format!("node-{i}")).collect();

    let mut members: Vec<Membership> = Vec::new();
    for name in &names {
        let mut config = MembershipConfig::new(name.clone(), 1);
        if let Some(first) = members.first() {
            config = config.with_seeds([first.local().addr.clone()]);
        }
        members.push(Membership::start_udp(config, loopback).await?);
    }
    for member in &members {
        member
            .await_converged(names.clone(), Duration::from_secs(10))
            .await?;
    }
    for member in &members {
        let ring = member.ring();
        let me = &member.local().name;
        println!(
            "{me} at {}: sees {:?}, owns {} of {} partitions",
            member.local().addr,
            member.members(),
            ring.partitions_owned_by(me).len(),
            ring.config().partitions
        );
    }

    let mut events = members[0].events();
    let victim = members.pop().ok_or("no members")?;
    let victim_name = victim.local().name.clone();
    println!("killing {victim_name} (no leave message)");
    let killed_at = Instant::now();
    drop(victim);
    let survivors: Vec<String> = names
        .iter()
        .filter(|n| **n != victim_name)
        .cloned()
        .collect();
    for member in &members {
        member
            .await_converged(survivors.clone(), Duration::from_secs(10))
            .await?;
    }
    println!(
        "all survivors dropped {victim_name} after {:?}",
        killed_at.elapsed()
    );
    while let Ok(event) = events.try_recv() {
        match event {
            MembershipEvent::MemberDown(name) => println!("{}: member down {name}", names[0]),
            MembershipEvent::MemberUp(name) => println!("{}: member up {name}", names[0]),
            MembershipEvent::RingChanged { members, moved, diff } => println!(
                "{}: ring now {members:?}; {} partitions changed owner, {} changed owner or replicas",
                names[0],
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
    Ok(())
}
