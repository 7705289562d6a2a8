//! Five real node processes form a ring over the node runtime (issue 4,
//! point 5). The parent runs a private PMD on an ephemeral port and re-runs
//! this test executable five times as child nodes (`ring_cluster_child`).
//! Each child prints its view of the ring on stdout whenever it changes; the
//! parent checks that all agree, SIGKILLs one, checks that within 2 s the
//! other four agree on a ring without it and report the moved partitions,
//! restarts it, and checks it is back on every member.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use ironforge::node::{Node, NodeConfig, PMD_PORT_ENV};
use ironforge::pmd::server::{Daemon, DaemonConfig};
use ironforge::ring::{MembershipEvent, Ring, RingConfig, RingNode, RingNodeConfig};
use tokio::sync::mpsc;

const ALIAS_VAR: &str = "IRONFORGE_RING_CLUSTER_ALIAS";
const COOKIE: &str = "ring-cluster-test";
const SEED: &str = "node-0";
const MEMBERS: usize = 5;
/// What every child prints before its view, so libtest's own output is skipped.
const MARK: &str = "RINGVIEW";
/// The bound for removing a SIGKILLed member, measured from the kill.
const DETECTION_BUDGET: Duration = Duration::from_secs(2);
const JOIN_TIMEOUT: Duration = Duration::from_secs(20);
/// A child exits on its own after this long, so none outlives a failed test.
const CHILD_LIFETIME: Duration = Duration::from_secs(120);

/// A digest of the whole owner table: equal digests mean equal rings.
fn ring_digest(ring: &Ring) -> u64 {
    let mut hasher = DefaultHasher::new();
    ring.members().hash(&mut hasher);
    for partition in 0..ring.config().partitions {
        ring.owner(partition).hash(&mut hasher);
    }
    hasher.finish()
}

fn names(count: usize) -> Vec<String> {
    (0..count).map(|i| format!("node-{i}")).collect()
}

/// Entry point of the child processes; ignored in normal runs.
#[tokio::test]
#[ignore = "entry point of the child nodes spawned by five_processes_agree_detect_a_sigkill_and_take_the_restart_back"]
async fn ring_cluster_child() {
    let alias = std::env::var(ALIAS_VAR).expect("alias");
    // The parent holds our stdin: when it goes away, so do we.
    std::thread::spawn(|| {
        let _ = std::io::stdin().lines().count();
        std::process::exit(0);
    });
    let mut config = NodeConfig::new(alias.clone()).cookie(COOKIE);
    config.auto_start_pmd = false;
    let node = Node::start(config).await.expect("node start");
    let member = RingNode::start(node, RingNodeConfig::new([SEED]))
        .await
        .expect("ring node start");
    let mut events = member.events();
    let print = |moved: usize| {
        let ring = member.ring();
        println!(
            "{MARK} {alias} members={} digest={:016x} moved={moved}",
            ring.members().join(","),
            ring_digest(&ring),
        );
    };
    print(0);
    let deadline = tokio::time::sleep(CHILD_LIFETIME);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            event = events.recv() => match event {
                Ok(MembershipEvent::RingChanged { moved, .. }) => print(moved.len()),
                Ok(_) => {}
                Err(error) => panic!("event stream: {error}"),
            },
            () = &mut deadline => return,
        }
    }
}

/// One line a child printed.
#[derive(Debug, Clone)]
struct View {
    members: Vec<String>,
    digest: String,
    moved: usize,
}

fn parse_view(line: &str) -> Option<(String, View)> {
    let rest = &line[line.find(MARK)? + MARK.len()..];
    let mut fields = rest.split_whitespace();
    let alias = fields.next()?.to_owned();
    let mut members = None;
    let mut digest = None;
    let mut moved = None;
    for field in fields {
        match field.split_once('=')? {
            ("members", list) => members = Some(list.split(',').map(str::to_owned).collect()),
            ("digest", value) => digest = Some(value.to_owned()),
            ("moved", count) => moved = count.parse().ok(),
            _ => {}
        }
    }
    Some((
        alias,
        View {
            members: members?,
            digest: digest?,
            moved: moved?,
        },
    ))
}

/// A child node process; SIGKILLed when dropped.
struct ChildNode {
    child: Child,
    _stdin: ChildStdin,
}

impl ChildNode {
    fn spawn(alias: &str, pmd_port: u16, views: mpsc::UnboundedSender<(String, View)>) -> Self {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "ring_cluster_child",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(ALIAS_VAR, alias)
            .env(PMD_PORT_ENV, pmd_port.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if let Some(view) = parse_view(&line) {
                    if views.send(view).is_err() {
                        return;
                    }
                }
            }
        });
        Self {
            child,
            _stdin: stdin,
        }
    }

    /// `Child::kill` is SIGKILL on Unix: no goodbye, no cleanup.
    fn sigkill(mut self) -> Instant {
        self.child.kill().unwrap();
        let killed_at = Instant::now();
        self.child.wait().unwrap();
        killed_at
    }
}

impl Drop for ChildNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The latest view of every child, fed by the stdout readers.
struct Views {
    incoming: mpsc::UnboundedReceiver<(String, View)>,
    latest: HashMap<String, View>,
}

impl Views {
    /// Reads views until every alias in `whom` holds `expected` (same
    /// members, same owner table), or fails at `deadline`. Returns the first
    /// view each of them reported in the expected state.
    async fn wait_all(
        &mut self,
        whom: &[String],
        expected: &Ring,
        deadline: Instant,
    ) -> HashMap<String, View> {
        let digest = format!("{:016x}", ring_digest(expected));
        let matches = |view: &View| view.members == expected.members() && view.digest == digest;
        let mut first: HashMap<String, View> = HashMap::new();
        for alias in whom {
            if let Some(view) = self.latest.get(alias).filter(|v| matches(v)) {
                first.insert(alias.clone(), view.clone());
            }
        }
        loop {
            let done = whom.iter().all(|alias| {
                self.latest
                    .get(alias)
                    .is_some_and(|view| matches(view) && first.contains_key(alias))
            });
            if done {
                return first;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let received = tokio::time::timeout(left, self.incoming.recv()).await;
            let Ok(Some((alias, view))) = received else {
                panic!(
                    "members {whom:?} did not all reach {:?} in time; latest views: {:#?}",
                    expected.members(),
                    self.latest
                );
            };
            if matches(&view) {
                first.entry(alias.clone()).or_insert_with(|| view.clone());
            }
            self.latest.insert(alias, view);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_processes_agree_detect_a_sigkill_and_take_the_restart_back() {
    let daemon = Daemon::bind(DaemonConfig {
        bind: "127.0.0.1:0".parse().unwrap(),
        ..DaemonConfig::default()
    })
    .await
    .unwrap();
    let pmd_port = daemon.local_addr().port();
    tokio::spawn(daemon.run());

    let (tx, incoming) = mpsc::unbounded_channel();
    let mut views = Views {
        incoming,
        latest: HashMap::new(),
    };
    let everyone = names(MEMBERS);
    let mut children: Vec<ChildNode> = everyone
        .iter()
        .map(|alias| ChildNode::spawn(alias, pmd_port, tx.clone()))
        .collect();

    // 1. All five agree on the ring the parent computes for five members.
    let full = Ring::new(everyone.clone(), RingConfig::default()).unwrap();
    views
        .wait_all(&everyone, &full, Instant::now() + JOIN_TIMEOUT)
        .await;

    // 2. SIGKILL node-4: within 2 s the other four agree on a ring without
    //    it and each reports the partitions that moved.
    let victim = everyone[MEMBERS - 1].clone();
    let survivors: Vec<String> = everyone[..MEMBERS - 1].to_vec();
    let without = Ring::new(survivors.clone(), RingConfig::default()).unwrap();
    let expected_moved = Ring::diff(&full, &without).owner_moves();
    assert_eq!(
        expected_moved.len(),
        full.partitions_owned_by(&victim).len(),
        "only the victim's partitions change owner"
    );
    let killed_at = children.pop().unwrap().sigkill();
    let reported = views
        .wait_all(&survivors, &without, killed_at + DETECTION_BUDGET)
        .await;
    println!(
        "SIGKILLed {victim}: the 4 survivors agreed without it {:?} after the kill; \
         each reported {} moved partitions",
        killed_at.elapsed(),
        expected_moved.len()
    );
    for alias in &survivors {
        assert_eq!(
            reported[alias].moved,
            expected_moved.len(),
            "{alias} reported the wrong number of moved partitions"
        );
    }

    // 3. Restart it (a new node id and generation, the same alias): it is
    //    back on all members, with its old partitions.
    children.push(ChildNode::spawn(&victim, pmd_port, tx.clone()));
    let restarted_at = Instant::now();
    views
        .wait_all(&everyone, &full, Instant::now() + JOIN_TIMEOUT)
        .await;
    println!(
        "restarted {victim}: back on all 5 after {:?}",
        restarted_at.elapsed()
    );
}
