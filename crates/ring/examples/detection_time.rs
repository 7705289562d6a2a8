//! Measures failure detection with default settings: a 5-member cluster on
//! 127.0.0.1; 20 times, one member is dropped without a goodbye and the time
//! until all 4 survivors have removed it is recorded; the member is then
//! restarted under a new generation. Prints median and max.
//!
//! * `udp` (default): members gossip over UDP sockets; a kill drops the
//!   member's task and socket.
//! * `node`: members are [`RingNode`]s gossiping over the node runtime, with
//!   a private PMD; a kill drops the member and shuts its node down, closing
//!   its TCP connections as a dead process's would.
//!
//! `cargo run --release -p ironforge-ring --example detection_time -- [udp|node]`

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ironforge_node::{Node, NodeConfig};
use ironforge_pmd::server::{Daemon, DaemonConfig};
use ironforge_ring::{Membership, MembershipConfig, RingNode, RingNodeConfig};

const MEMBERS: usize = 5;
const KILLS: usize = 20;
const WAIT: Duration = Duration::from_secs(10);

type Error = Box<dyn std::error::Error>;

fn names() -> Vec<String> {
    (0..MEMBERS).map(|i| format!("node-{i}")).collect()
}

/// Never kill node-0 so that a seed is always alive for the restart.
fn victim_of(kill: usize) -> usize {
    1 + kill % (MEMBERS - 1)
}

fn survivors(victim: usize) -> Vec<String> {
    names()
        .into_iter()
        .enumerate()
        .filter(|&(i, _)| i != victim)
        .map(|(_, name)| name)
        .collect()
}

/// One way of running the members: start, kill, and wait for views.
trait Cluster {
    async fn restart(&mut self, index: usize, generation: u64) -> Result<(), Error>;
    async fn kill(&mut self, index: usize);
    async fn await_all(&self, expected: &[String]) -> Result<(), Error>;
}

struct UdpCluster {
    members: Vec<Option<Membership>>,
}

impl Cluster for UdpCluster {
    async fn restart(&mut self, index: usize, generation: u64) -> Result<(), Error> {
        let loopback: SocketAddr = "127.0.0.1:0".parse()?;
        let mut config = MembershipConfig::new(format!("node-{index}"), generation);
        if let Some(Some(first)) = self.members.first().filter(|_| index != 0) {
            config = config.with_seeds([first.local().addr.clone()]);
        }
        let member = Membership::start_udp(config, loopback).await?;
        if index == self.members.len() {
            self.members.push(Some(member));
        } else {
            self.members[index] = Some(member);
        }
        Ok(())
    }

    async fn kill(&mut self, index: usize) {
        drop(self.members[index].take());
    }

    async fn await_all(&self, expected: &[String]) -> Result<(), Error> {
        for member in self.members.iter().flatten() {
            member.await_converged(expected.to_vec(), WAIT).await?;
        }
        Ok(())
    }
}

struct NodeCluster {
    pmd: SocketAddr,
    members: Vec<Option<RingNode>>,
}

impl Cluster for NodeCluster {
    async fn restart(&mut self, index: usize, generation: u64) -> Result<(), Error> {
        let mut config = NodeConfig::new(format!("node-{index}"))
            .cookie("detection-time")
            .allow_multiple();
        config.pmd_addr = self.pmd;
        config.auto_start_pmd = false;
        let node = Node::start(config).await?;
        let mut ring_config = RingNodeConfig::new(["node-0"]);
        ring_config.generation = Some(generation);
        let member = RingNode::start(node, ring_config).await?;
        if index == self.members.len() {
            self.members.push(Some(member));
        } else {
            self.members[index] = Some(member);
        }
        Ok(())
    }

    async fn kill(&mut self, index: usize) {
        if let Some(member) = self.members[index].take() {
            let node = member.node().clone();
            drop(member);
            node.shutdown().await;
        }
    }

    async fn await_all(&self, expected: &[String]) -> Result<(), Error> {
        for member in self.members.iter().flatten() {
            member.await_converged(expected.to_vec(), WAIT).await?;
        }
        Ok(())
    }
}

async fn measure(cluster: &mut impl Cluster) -> Result<Vec<Duration>, Error> {
    let mut generations = [1u64; MEMBERS];
    for index in 0..MEMBERS {
        cluster.restart(index, 1).await?;
    }
    cluster.await_all(&names()).await?;
    let mut samples = Vec::with_capacity(KILLS);
    for kill in 0..KILLS {
        let victim = victim_of(kill);
        let killed_at = Instant::now();
        cluster.kill(victim).await;
        cluster.await_all(&survivors(victim)).await?;
        let detected = killed_at.elapsed();
        samples.push(detected);
        println!(
            "kill {:2}: node-{victim} removed by all survivors in {detected:?}",
            kill + 1
        );
        generations[victim] += 1;
        cluster.restart(victim, generations[victim]).await?;
        cluster.await_all(&names()).await?;
    }
    Ok(samples)
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let transport = std::env::args().nth(1).unwrap_or_else(|| "udp".into());
    let mut samples = match transport.as_str() {
        "udp" => measure(&mut UdpCluster { members: vec![] }).await?,
        "node" => {
            let daemon = Daemon::bind(DaemonConfig {
                bind: "127.0.0.1:0".parse()?,
                ..DaemonConfig::default()
            })
            .await?;
            let pmd = daemon.local_addr();
            tokio::spawn(daemon.run());
            measure(&mut NodeCluster {
                pmd,
                members: vec![],
            })
            .await?
        }
        other => return Err(format!("unknown transport {other:?}: use udp or node").into()),
    };
    samples.sort_unstable();
    let median = (samples[KILLS / 2 - 1] + samples[KILLS / 2]) / 2;
    let max = samples[KILLS - 1];
    println!(
        "{transport}: detection over {KILLS} kills: min {:?}, median {median:?}, max {max:?}",
        samples[0]
    );
    Ok(())
}
