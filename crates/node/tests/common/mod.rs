//! Shared set-up: an in-process PMD on an ephemeral port and node configs
//! that point at it.

use std::net::SocketAddr;
use std::time::Duration;

use ironforge_node::{Node, NodeConfig, NodeStats};
use ironforge_pmd::server::{Daemon, DaemonConfig};
use tokio_util::sync::CancellationToken;

pub const COOKIE: &str = "test-cookie";

pub struct TestPmd {
    pub addr: SocketAddr,
    stop: CancellationToken,
    running: tokio::task::JoinHandle<()>,
}

impl TestPmd {
    /// Stops the daemon and waits until its port is free again.
    pub async fn stop(self) {
        self.stop.cancel();
        self.running.await.expect("daemon task");
    }
}

pub async fn start_pmd_at(addr: SocketAddr) -> TestPmd {
    let daemon = Daemon::bind(DaemonConfig {
        bind: addr,
        ..DaemonConfig::default()
    })
    .await
    .expect("bind the test PMD");
    let addr = daemon.local_addr();
    let stop = daemon.shutdown_handle();
    let running = tokio::spawn(daemon.run());
    TestPmd {
        addr,
        stop,
        running,
    }
}

pub async fn start_pmd() -> TestPmd {
    start_pmd_at("127.0.0.1:0".parse().unwrap()).await
}

pub fn config(alias: &str, pmd: &TestPmd) -> NodeConfig {
    let mut config = NodeConfig::new(alias).cookie(COOKIE).allow_multiple();
    config.pmd_addr = pmd.addr;
    config.auto_start_pmd = false;
    config
}

pub async fn node(alias: &str, pmd: &TestPmd) -> Node {
    Node::start(config(alias, pmd)).await.expect("start node")
}

/// Waits (bounded) until the node's counters satisfy `done`. The runtime
/// offers no event for "n messages arrived", so this polls its stats.
pub async fn wait_stats(node: &Node, done: impl Fn(&NodeStats) -> bool) -> NodeStats {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let stats = node.stats();
        if done(&stats) {
            return stats;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "stats never got there: {stats:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
