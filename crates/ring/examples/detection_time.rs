//! Measures failure detection with default settings: a 5-member cluster over
//! UDP on 127.0.0.1; 20 times, one member is dropped without a goodbye and the
//! time until all 4 survivors have removed it is recorded; the member is then
//! restarted under a new generation. Prints median and max.
//!
//! `cargo run --release -p ironforge-ring --example detection_time`

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ironforge_ring::{Membership, MembershipConfig};

const MEMBERS: usize = 5;
const KILLS: usize = 20;

fn names() -> Vec<String> {
    (0..MEMBERS).map(|i| format!("node-{i}")).collect()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let loopback: SocketAddr = "127.0.0.1:0".parse()?;
    let mut members: Vec<Option<Membership>> = Vec::new();
    let mut generations = [1u64; MEMBERS];
    for name in names() {
        let mut config = MembershipConfig::new(name, 1);
        if let Some(Some(first)) = members.first() {
            config = config.with_seeds([first.local().addr.clone()]);
        }
        members.push(Some(Membership::start_udp(config, loopback).await?));
    }
    for member in members.iter().flatten() {
        member
            .await_converged(names(), Duration::from_secs(10))
            .await?;
    }

    let mut samples = Vec::with_capacity(KILLS);
    for kill in 0..KILLS {
        // Never kill node-0 so that a seed is always alive for the restart.
        let victim = 1 + kill % (MEMBERS - 1);
        let survivors: Vec<String> = names()
            .into_iter()
            .enumerate()
            .filter(|&(i, _)| i != victim)
            .map(|(_, name)| name)
            .collect();
        let killed_at = Instant::now();
        drop(members[victim].take());
        for member in members.iter().flatten() {
            member
                .await_converged(survivors.clone(), Duration::from_secs(10))
                .await?;
        }
        let detected = killed_at.elapsed();
        samples.push(detected);
        println!(
            "kill {:2}: node-{victim} removed by all survivors in {detected:?}",
            kill + 1
        );

        generations[victim] += 1;
        let seed = members[0].as_ref().map(|m| m.local().addr.clone());
        let config =
            MembershipConfig::new(format!("node-{victim}"), generations[victim]).with_seeds(seed);
        members[victim] = Some(Membership::start_udp(config, loopback).await?);
        for member in members.iter().flatten() {
            member
                .await_converged(names(), Duration::from_secs(10))
                .await?;
        }
    }
    samples.sort_unstable();
    let median = (samples[KILLS / 2 - 1] + samples[KILLS / 2]) / 2;
    let max = samples[KILLS - 1];
    println!(
        "detection over {KILLS} kills: min {:?}, median {median:?}, max {max:?}",
        samples[0]
    );
    Ok(())
}
