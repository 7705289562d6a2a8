//! Membership over the node runtime: real nodes (TCP, cookie handshake)
//! registered with a private in-process PMD on an ephemeral port. Members
//! join through seed aliases, converge on one ring, see a graceful leave at
//! once, drop a member that stops answering, and take a restarted one back.

use std::time::{Duration, Instant};

use ironforge_node::{Node, NodeConfig};
use ironforge_pmd::server::{Daemon, DaemonConfig};
use ironforge_ring::{MembershipEvent, Ring, RingNode, RingNodeConfig};
use tokio::sync::broadcast;

const COOKIE: &str = "ring-node-test";
const JOIN_TIMEOUT: Duration = Duration::from_secs(10);
/// Default settings remove a dead member within 2 s; the wait allows
/// scheduling slack on a loaded 2-core machine and the test prints the time.
const DETECTION_WAIT: Duration = Duration::from_secs(3);

async fn start_pmd() -> std::net::SocketAddr {
    let daemon = Daemon::bind(DaemonConfig {
        bind: "127.0.0.1:0".parse().unwrap(),
        ..DaemonConfig::default()
    })
    .await
    .unwrap();
    let addr = daemon.local_addr();
    tokio::spawn(daemon.run());
    addr
}

async fn start_node(alias: &str, pmd: std::net::SocketAddr) -> Node {
    let mut config = NodeConfig::new(alias).cookie(COOKIE).allow_multiple();
    config.pmd_addr = pmd;
    config.auto_start_pmd = false;
    Node::start(config).await.unwrap()
}

fn names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("node-{i}")).collect()
}

/// `n` ring nodes; node-0 is everyone's seed, given as `alias@127.0.0.1` to
/// exercise host-qualified seeds. Odd nodes gossip under `node-id@host`
/// addresses (as members on several hosts do), even ones under bare ids.
async fn start_cluster(pmd: std::net::SocketAddr, n: usize) -> Vec<RingNode> {
    let mut members = Vec::new();
    for (i, name) in names(n).into_iter().enumerate() {
        let node = start_node(&name, pmd).await;
        let mut config = RingNodeConfig::new(["node-0@127.0.0.1"]);
        config.advertise_host = (i % 2 == 1).then(|| "127.0.0.1".to_owned());
        let member = RingNode::start(node, config).await.unwrap();
        let qualified = member.local().addr.ends_with("@127.0.0.1");
        assert_eq!(qualified, i % 2 == 1);
        members.push(member);
    }
    for member in &members {
        member
            .await_converged(names(n), JOIN_TIMEOUT)
            .await
            .unwrap();
    }
    members
}

fn assert_same_ring(members: &[RingNode]) {
    let first = members[0].ring();
    for member in &members[1..] {
        assert_eq!(member.ring().members(), first.members());
        assert!(Ring::diff(&first, &member.ring()).is_empty());
    }
}

async fn next_ring_change(events: &mut broadcast::Receiver<MembershipEvent>) -> Vec<u32> {
    tokio::time::timeout(Duration::from_secs(1), async {
        loop {
            if let MembershipEvent::RingChanged { moved, .. } = events.recv().await.unwrap() {
                return moved;
            }
        }
    })
    .await
    .expect("a RingChanged event")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_converge_and_see_a_graceful_leave_at_once() {
    let pmd = start_pmd().await;
    let mut members = start_cluster(pmd, 4).await;
    assert_same_ring(&members);
    let owner = members[0].owner(b"job-7").unwrap();
    for member in &members {
        assert_eq!(member.owner(b"job-7").as_deref(), Some(owner.as_str()));
        let list = member.preference_list(b"job-7", 3);
        assert_eq!(list.len(), 3);
        assert_eq!(list[0], owner);
    }

    let mut events = members[0].events();
    let leaving = members.pop().unwrap();
    let left_at = Instant::now();
    let node = leaving.leave().await.unwrap();
    for member in &members {
        // Far below the failure-detection time: the goodbye is gossiped.
        member
            .await_converged(names(3), Duration::from_millis(500))
            .await
            .unwrap();
    }
    eprintln!("graceful leave seen by all in {:?}", left_at.elapsed());
    let down = tokio::time::timeout(Duration::from_secs(1), events.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(down, MembershipEvent::MemberDown(name) if name == "node-3"));
    assert!(!next_ring_change(&mut events).await.is_empty());
    assert_same_ring(&members);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_node_is_removed_and_its_restart_rejoins() {
    let pmd = start_pmd().await;
    let mut members = start_cluster(pmd, 4).await;
    let before = members[0].ring();
    let victim_partitions = before.partitions_owned_by("node-2");
    let mut events = members[0].events();

    // A crash: no goodbye; the node's connections close with it.
    let victim = members.remove(2);
    let node = victim.node().clone();
    let killed_at = Instant::now();
    drop(victim);
    node.shutdown().await;
    let survivors = ["node-0", "node-1", "node-3"];
    for member in &members {
        member
            .await_converged(survivors, DETECTION_WAIT)
            .await
            .unwrap();
    }
    eprintln!("silent node removed by all in {:?}", killed_at.elapsed());
    assert_same_ring(&members);
    let moved = next_ring_change(&mut events).await;
    assert!(victim_partitions.iter().all(|p| moved.contains(p)));

    let restarted = start_node("node-2", pmd).await;
    members.push(
        RingNode::start(restarted, RingNodeConfig::new(["node-0"]))
            .await
            .unwrap(),
    );
    for member in &members {
        member
            .await_converged(names(4), JOIN_TIMEOUT)
            .await
            .unwrap();
    }
    // Same names, same ring: the restarted node gets its partitions back.
    assert!(Ring::diff(&before, &members[0].ring()).is_empty());
    assert_same_ring(&members);
}
