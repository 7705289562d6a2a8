//! Members in separate OS processes: two members live in this test process,
//! three more are child processes (this same test binary re-run in "member"
//! mode). One child is killed with SIGKILL; the in-process members must drop
//! it within the detection window and report its partitions as moved; a
//! restarted child (new generation) must come back.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ironforge_ring::{Membership, MembershipConfig, MembershipEvent, Ring};

const NAME_VAR: &str = "IRONFORGE_RING_CHILD_NAME";
const SEED_VAR: &str = "IRONFORGE_RING_CHILD_SEED";
const GENERATION_VAR: &str = "IRONFORGE_RING_CHILD_GENERATION";
/// A child exits on its own after this long, so none outlives a failed test.
const CHILD_LIFETIME: Duration = Duration::from_secs(60);
const DETECTION_BUDGET: Duration = Duration::from_millis(3000);
const JOIN_TIMEOUT: Duration = Duration::from_secs(15);

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// Entry point of a child member process; ignored in normal runs.
#[tokio::test]
#[ignore = "entry point of the child processes spawned by sigkilled_process_is_removed_and_restart_rejoins"]
async fn child_member_process() {
    let name = std::env::var(NAME_VAR).expect("child name");
    let seed = std::env::var(SEED_VAR).expect("child seed");
    let generation: u64 = std::env::var(GENERATION_VAR).unwrap().parse().unwrap();
    let config = MembershipConfig::new(name, generation).with_seeds([seed]);
    let _member = Membership::start_udp(config, loopback()).await.unwrap();
    tokio::time::sleep(CHILD_LIFETIME).await;
}

/// A child process, SIGKILLed when dropped.
struct ChildMember(Child);

impl ChildMember {
    fn spawn(name: &str, seed: &str, generation: u64) -> Self {
        let child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "child_member_process", "--ignored", "--quiet"])
            .env(NAME_VAR, name)
            .env(SEED_VAR, seed)
            .env(GENERATION_VAR, generation.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Self(child)
    }

    /// `Child::kill` sends SIGKILL on Unix: no goodbye, no cleanup.
    fn sigkill(mut self) {
        self.0.kill().unwrap();
        self.0.wait().unwrap();
    }
}

impl Drop for ChildMember {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("node-{i}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkilled_process_is_removed_and_restart_rejoins() {
    let first = Membership::start_udp(MembershipConfig::new("node-0", 1), loopback())
        .await
        .unwrap();
    let seed = first.local().addr.clone();
    let second = Membership::start_udp(
        MembershipConfig::new("node-1", 1).with_seeds([seed.clone()]),
        loopback(),
    )
    .await
    .unwrap();
    let mut children: Vec<ChildMember> = (2..5)
        .map(|i| ChildMember::spawn(&format!("node-{i}"), &seed, 1))
        .collect();
    let local = [&first, &second];
    for member in local {
        member
            .await_converged(names(5), JOIN_TIMEOUT)
            .await
            .unwrap();
    }
    assert!(Ring::diff(&first.ring(), &second.ring()).is_empty());

    let before = first.ring();
    let victim_partitions: BTreeSet<u32> =
        before.partitions_owned_by("node-4").into_iter().collect();
    let mut events = first.events();
    let killed_at = Instant::now();
    children.pop().unwrap().sigkill();
    for member in local {
        member
            .await_converged(names(4), DETECTION_BUDGET)
            .await
            .unwrap();
    }
    eprintln!("SIGKILLed process removed in {:?}", killed_at.elapsed());
    assert!(Ring::diff(&first.ring(), &second.ring()).is_empty());
    let moved = tokio::time::timeout(Duration::from_secs(1), async {
        loop {
            if let Ok(MembershipEvent::RingChanged { moved, .. }) = events.recv().await {
                return moved;
            }
        }
    })
    .await
    .unwrap();
    let moved: BTreeSet<u32> = moved.into_iter().collect();
    assert!(victim_partitions.is_subset(&moved));

    children.push(ChildMember::spawn("node-4", &seed, 2));
    for member in local {
        member
            .await_converged(names(5), JOIN_TIMEOUT)
            .await
            .unwrap();
    }
    assert!(Ring::diff(&before, &first.ring()).is_empty());
}
