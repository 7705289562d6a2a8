//! Replicated job and workflow state between real nodes: TCP connections
//! with the cookie handshake, registered with a private in-process PMD on
//! an ephemeral port, placement from a fixed member list. Writes reach the
//! other replicas, forwarded writes and remote reads work from outside a
//! preference list, a restarted member and an isolated one catch up by
//! delta sync, and the workflow journal and job recorder round-trip
//! through other nodes.

use std::collections::HashSet;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ironforge_cluster::replication::{
    CrdtJournal, JobRecorder, Placement, Replication, ReplicationConfig, StaticPlacement,
};
use ironforge_jobs::workflow::{
    EventKind, WorkflowEvent, WorkflowId, WorkflowJournal, WorkflowSpec,
};
use ironforge_jobs::{
    Client, ClientConfig, EmbeddedBackend, EmbeddedConfig, EventBus, JobId, JobSpec, Observers,
};
use ironforge_node::{Node, NodeConfig};
use ironforge_pmd::server::{Daemon, DaemonConfig};
use parking_lot::Mutex;
use serde_json::{json, Value};

const COOKIE: &str = "replication-test";
const PARTITIONS: u32 = 16;
/// Bound of every wait for replication to happen (generous for a loaded
/// 2-core machine; the waits end as soon as the condition holds).
const WAIT: Duration = Duration::from_secs(10);
/// Long enough that no timer-driven sync runs during a test that must show
/// shipping or an explicit `membership_changed` did the work (beyond the
/// round every member runs at start).
const NO_TIMER: Duration = Duration::from_secs(3600);

async fn start_pmd() -> SocketAddr {
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

async fn start_node(alias: &str, pmd: SocketAddr) -> Node {
    let mut config = NodeConfig::new(alias).cookie(COOKIE).allow_multiple();
    config.pmd_addr = pmd;
    config.auto_start_pmd = false;
    Node::start(config).await.unwrap()
}

/// Polls `probe` until it returns `Some`, for at most [`WAIT`].
async fn eventually<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A placement whose links can be cut: a member in `cut` neither reaches
/// nor is reached by anyone (its address is unknown to all).
struct CuttablePlacement {
    inner: StaticPlacement,
    cut: Arc<Mutex<HashSet<String>>>,
}

impl Placement for CuttablePlacement {
    fn local(&self) -> String {
        self.inner.local()
    }
    fn preference_list(&self, partition: u32, n: usize) -> Vec<String> {
        self.inner.preference_list(partition, n)
    }
    fn address_of(&self, member: &str) -> Option<String> {
        let cut = self.cut.lock();
        let local = self.inner.local();
        if member != local && (cut.contains(member) || cut.contains(&local)) {
            return None;
        }
        self.inner.address_of(member)
    }
}

struct Member {
    node: Node,
    replication: Replication,
}

struct Cluster {
    pmd: SocketAddr,
    names: Vec<String>,
    cut: Arc<Mutex<HashSet<String>>>,
    members: Vec<Member>,
}

fn config(replicas: usize, anti_entropy: Duration) -> ReplicationConfig {
    ReplicationConfig {
        partitions: PARTITIONS,
        replicas,
        anti_entropy_interval: anti_entropy,
        // Generous: on an overloaded machine a first connection can take a
        // while, and no test here waits for a timeout to expire.
        request_timeout: Duration::from_secs(5),
        ..ReplicationConfig::default()
    }
}

impl Cluster {
    async fn start(n: usize, config: ReplicationConfig) -> Cluster {
        Cluster::start_cut(n, config, &[]).await
    }

    /// Members in `cut` are isolated from their start.
    async fn start_cut(n: usize, config: ReplicationConfig, cut: &[&str]) -> Cluster {
        let mut cluster = Cluster {
            pmd: start_pmd().await,
            names: (0..n).map(|i| format!("node-{i}")).collect(),
            cut: Arc::new(Mutex::new(cut.iter().map(|m| m.to_string()).collect())),
            members: Vec::new(),
        };
        for i in 0..n {
            let member = cluster.start_member(i, config.clone()).await;
            cluster.members.push(member);
        }
        cluster
    }

    async fn start_member(&self, index: usize, config: ReplicationConfig) -> Member {
        let name = &self.names[index];
        let node = start_node(name, self.pmd).await;
        let placement = CuttablePlacement {
            inner: StaticPlacement::new(name, &self.names, PARTITIONS).unwrap(),
            cut: self.cut.clone(),
        };
        let replication = Replication::start(node.clone(), Arc::new(placement), config).unwrap();
        Member { node, replication }
    }

    fn placement(&self) -> StaticPlacement {
        StaticPlacement::new(&self.names[0], &self.names, PARTITIONS).unwrap()
    }

    /// The index of a member and a partition it is (`inside`) or is not in
    /// the preference list of, for lists of length `n`.
    fn partition_where(&self, member: usize, n: usize, inside: bool) -> u32 {
        let placement = self.placement();
        (0..PARTITIONS)
            .find(|&p| {
                placement
                    .preference_list(p, n)
                    .contains(&self.names[member])
                    == inside
            })
            .expect("some partition fits")
    }

    fn index_of(&self, name: &str) -> usize {
        self.names.iter().position(|n| n == name).unwrap()
    }

    fn rep(&self, index: usize) -> &Replication {
        &self.members[index].replication
    }

    async fn shutdown(self) {
        for member in self.members {
            member.replication.shutdown();
            member.node.shutdown().await;
        }
    }
}

async fn read(replication: &Replication, job: JobId, partition: u32) -> Option<Value> {
    replication.read_job(job, partition).await.ok().flatten()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_on_one_node_is_readable_on_the_others() {
    let cluster = Cluster::start(3, config(3, NO_TIMER)).await;
    let job = JobId::new_random();
    let partition = 5;
    let record = json!({"status": "queued", "attempts": 0});
    cluster
        .rep(0)
        .write_job(partition, job, record.clone())
        .await
        .unwrap();
    for i in 1..3 {
        let rep = cluster.rep(i);
        assert!(rep.holds(partition));
        eventually("the write to reach a replica", || async {
            (rep.stats().ops_applied >= 1).then_some(())
        })
        .await;
        // Held and applied here, so answered from the local replica.
        let remote_reads = rep.stats().remote_reads;
        assert_eq!(
            rep.read_job(job, partition).await.unwrap(),
            Some(record.clone())
        );
        assert_eq!(rep.stats().remote_reads, remote_reads);
    }
    let writer = cluster.rep(0);
    eventually("one operation shipped to each of two replicas", || async {
        (writer.stats().ops_shipped == 2).then_some(())
    })
    .await;
    // Only the round every member runs at start (before the write).
    assert!(
        writer.stats().sync_rounds <= 1,
        "no timer-driven sync in this test"
    );
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_under_load_are_batched_per_destination() {
    let cluster = Cluster::start(3, config(3, NO_TIMER)).await;
    let jobs: Vec<(u32, JobId, Value)> = (0..300)
        .map(|i| {
            (
                i % PARTITIONS,
                JobId::new_random(),
                json!({"status": "queued", "n": i}),
            )
        })
        .collect();
    cluster.rep(0).write_jobs(jobs.clone()).await.unwrap();
    let (partition, last, _) = jobs.last().cloned().unwrap();
    for i in 1..3 {
        eventually("the last write to arrive", || {
            read(cluster.rep(i), last, partition)
        })
        .await;
    }
    eventually("every operation to be applied", || async {
        (cluster.rep(1).stats().ops_applied == 300 && cluster.rep(2).stats().ops_applied == 300)
            .then_some(())
    })
    .await;
    // Shipping is counted once sent; the start-up sync round may have
    // pulled some operations before their shipment arrived.
    let writer = cluster.rep(0);
    eventually("every operation shipped to both replicas", || async {
        (writer.stats().ops_shipped == 600).then_some(())
    })
    .await;
    let stats = writer.stats();
    assert!(
        stats.ship_messages < 100,
        "300 writes to 2 members took {} messages",
        stats.ship_messages
    );
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_to_a_partition_the_node_does_not_hold_is_forwarded() {
    let cluster = Cluster::start(3, config(2, NO_TIMER)).await;
    let partition = cluster.partition_where(0, 2, false);
    let job = JobId::new_random();
    let record = json!({"status": "running"});
    cluster
        .rep(0)
        .write_job(partition, job, record.clone())
        .await
        .unwrap();
    assert_eq!(cluster.rep(0).stats().forwarded_writes, 1);
    assert_eq!(
        cluster.rep(0).stats().ops_written,
        0,
        "nothing written here"
    );
    for name in cluster.placement().preference_list(partition, 2) {
        let rep = cluster.rep(cluster.index_of(&name));
        let seen = eventually("the forwarded write to reach both replicas", || {
            read(rep, job, partition)
        })
        .await;
        assert_eq!(seen, record);
    }
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_outside_the_preference_list_reads_through_a_request() {
    let cluster = Cluster::start(3, config(2, NO_TIMER)).await;
    let partition = cluster.partition_where(0, 2, false);
    let owner = cluster.placement().preference_list(partition, 2)[0].clone();
    let owner = cluster.rep(cluster.index_of(&owner));
    let job = JobId::new_random();
    owner
        .write_job(partition, job, json!({"status": "completed"}))
        .await
        .unwrap();

    let outsider = cluster.rep(0);
    assert!(!outsider.holds(partition));
    let seen = outsider.read_job(job, partition).await.unwrap();
    assert_eq!(seen, Some(json!({"status": "completed"})));
    assert!(outsider.stats().remote_reads >= 1);
    // Unknown jobs are `None`, not an error: the replicas answered.
    assert_eq!(
        outsider
            .read_job(JobId::new_random(), partition)
            .await
            .unwrap(),
        None
    );
    assert!(
        outsider.read_job(job, PARTITIONS).await.is_err(),
        "no such partition"
    );
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_catches_up_by_delta_sync() {
    let config = config(3, Duration::from_millis(200));
    let mut cluster = Cluster::start(3, config.clone()).await;
    let partition = 3;
    // Written by node-2 itself: the others hear from its first replica id,
    // and the restarted node-2 must get its own old write back from them.
    let first = JobId::new_random();
    cluster
        .rep(2)
        .write_job(partition, first, json!({"n": 0}))
        .await
        .unwrap();
    for i in 0..2 {
        eventually("node-2's write on the others", || {
            read(cluster.rep(i), first, partition)
        })
        .await;
    }
    let old_id = cluster.rep(2).replica_id();

    let down = cluster.members.pop().unwrap();
    down.replication.shutdown();
    down.node.shutdown().await;
    let mut missed = Vec::new();
    for n in 1..=20 {
        let job = JobId::new_random();
        cluster
            .rep(n % 2)
            .write_job(partition, job, json!({"n": n}))
            .await
            .unwrap();
        missed.push(job);
    }

    let restarted = cluster.start_member(2, config).await;
    assert_ne!(
        restarted.replication.replica_id(),
        old_id,
        "a new generation"
    );
    cluster.members.push(restarted);
    let rep = cluster.rep(2);
    eventually("the restarted node to pull all 21 operations", || async {
        (rep.stats().ops_applied >= 21).then_some(())
    })
    .await;
    assert!(rep.stats().sync_requests > 0);
    for i in 0..2 {
        // node-2's old replica id no longer holds back tombstone collection.
        let other = cluster.rep(i);
        eventually("the old replica id to be retired", || async {
            (other.stats().replicas_retired == 1).then_some(())
        })
        .await;
    }
    for i in 0..2 {
        assert_eq!(
            cluster.rep(i).stats().snapshots_sent,
            0,
            "a delta, not a snapshot"
        );
    }
    // The others stop answering: what node-2 reads now is its own replica.
    for i in 0..2 {
        cluster.rep(i).shutdown();
    }
    assert_eq!(
        rep.read_job(first, partition).await.unwrap(),
        Some(json!({"n": 0}))
    );
    for (n, job) in missed.iter().enumerate() {
        let record = rep.read_job(*job, partition).await.unwrap();
        assert_eq!(record, Some(json!({"n": n + 1})));
    }
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_isolated_replica_converges_after_it_heals() {
    // Isolated from the start, so no sync round of the start is in flight.
    let cluster = Cluster::start_cut(3, config(3, NO_TIMER), &["node-2"]).await;
    let partition = 9;
    let (from_a, from_c, both) = (
        JobId::new_random(),
        JobId::new_random(),
        JobId::new_random(),
    );

    cluster
        .rep(0)
        .write_job(partition, from_a, json!("a"))
        .await
        .unwrap();
    cluster
        .rep(0)
        .write_job(partition, both, json!("a"))
        .await
        .unwrap();
    eventually("node-1 to see node-0's write", || {
        read(cluster.rep(1), from_a, partition)
    })
    .await;
    cluster
        .rep(2)
        .write_job(partition, from_c, json!("c"))
        .await
        .unwrap();
    cluster
        .rep(2)
        .write_job(partition, both, json!("c"))
        .await
        .unwrap();
    // Isolated: node-2 holds the partition, reads its own replica, and
    // has not seen node-0's write; node-0 has not seen node-2's.
    assert_eq!(read(cluster.rep(2), from_a, partition).await, None);
    assert_eq!(read(cluster.rep(0), from_c, partition).await, None);
    eventually("node-2's shipping to fail", || async {
        (cluster.rep(2).stats().ship_failures > 0).then_some(())
    })
    .await;

    cluster.cut.lock().clear();
    cluster.rep(2).membership_changed();
    let mut winners = Vec::new();
    for i in 0..3 {
        let rep = cluster.rep(i);
        let (a, c, winner) = eventually("every replica to hold both sides' writes", || async {
            let a = read(rep, from_a, partition).await?;
            let c = read(rep, from_c, partition).await?;
            let both = read(rep, both, partition).await?;
            Some((a, c, both))
        })
        .await;
        assert_eq!((a, c), (json!("a"), json!("c")));
        winners.push(winner);
    }
    // The conflicting write resolved the same way everywhere (last writer wins).
    assert!(winners.iter().all(|w| *w == winners[0]), "{winners:?}");
    // Beyond the round at start, only node-2's explicit one ran.
    assert!(cluster.rep(0).stats().sync_rounds <= 1);
    assert!(cluster.rep(2).stats().sync_rounds <= 2);
    cluster.shutdown().await;
}

fn event(seq: u64, kind: EventKind, key: Option<&str>) -> WorkflowEvent {
    WorkflowEvent {
        seq,
        at: 1_000 + seq,
        key: key.map(str::to_owned),
        kind,
        error: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crdt_journal_round_trips_through_another_node() {
    let cluster = Cluster::start(3, config(2, NO_TIMER)).await;
    let partition = cluster.partition_where(0, 2, false);
    let list = cluster.placement().preference_list(partition, 2);
    let outsider = CrdtJournal::new(cluster.rep(0).clone());
    let owner = CrdtJournal::new(cluster.rep(cluster.index_of(&list[0])).clone());
    let replica = CrdtJournal::new(cluster.rep(cluster.index_of(&list[1])).clone());

    let id = WorkflowId::new_random();
    let spec = WorkflowSpec::default();
    outsider.create(id, partition, &spec).await.unwrap();
    let first = [
        event(1, EventKind::Created, None),
        event(2, EventKind::Queued, Some("a")),
    ];
    outsider.append(id, partition, &first).await.unwrap();
    // A new owner re-appending: duplicates are no-ops.
    owner.append(id, partition, &first).await.unwrap();
    outsider.append(id, partition, &first[1..]).await.unwrap();

    for journal in [&outsider, &owner, &replica] {
        let record = eventually("the workflow to load", || async {
            journal
                .load(id)
                .await
                .unwrap()
                .filter(|r| r.events.len() == 2)
        })
        .await;
        assert_eq!(record.partition, partition);
        assert_eq!(record.spec, spec);
        assert_eq!(record.events, first);
    }
    assert_eq!(
        outsider
            .load_in(id, partition)
            .await
            .unwrap()
            .unwrap()
            .events,
        first
    );
    assert!(outsider
        .load(WorkflowId::new_random())
        .await
        .unwrap()
        .is_none());

    assert_eq!(owner.unfinished(&[partition]).await.unwrap(), vec![id]);
    assert_eq!(replica.unfinished(&[partition]).await.unwrap(), vec![id]);
    assert!(
        outsider.unfinished(&[partition]).await.unwrap().is_empty(),
        "holds nothing"
    );

    outsider
        .append(id, partition, &[event(3, EventKind::Completed, None)])
        .await
        .unwrap();
    assert!(owner.unfinished(&[partition]).await.unwrap().is_empty());
    // `unfinished` syncs first, so the other replica agrees at once.
    assert!(replica.unfinished(&[partition]).await.unwrap().is_empty());
    let record = outsider.load(id).await.unwrap().unwrap();
    assert!(record.is_finished());
    assert_eq!(record.events.len(), 3);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_job_recorder_writes_state_changes_every_node_reads() {
    let cluster = Cluster::start(3, config(3, NO_TIMER)).await;
    let dir = tempfile::tempdir().unwrap();
    let backend =
        EmbeddedBackend::open(dir.path().join("jobs.redb"), EmbeddedConfig::default()).unwrap();
    let client = Client::new(Arc::new(backend));
    let recorder = JobRecorder::spawn(cluster.rep(0).clone(), client.clone());

    let id = client
        .submit(JobSpec::new("email", json!({"to": "x"})))
        .await
        .unwrap();
    let partition = client.get(id).await.unwrap().unwrap().partition;
    for i in 0..3 {
        let record = eventually("the queued record", || read(cluster.rep(i), id, partition)).await;
        assert_eq!(record["status"], "queued");
        assert_eq!(record["kind"], "email");
        assert_eq!(record["node"], "node-0");
        assert_eq!(record["attempts"], 0);
    }
    client.cancel(id).await.unwrap();
    eventually("the cancelled record on another node", || async {
        let record = read(cluster.rep(2), id, partition).await?;
        (record["status"] == "cancelled").then_some(())
    })
    .await;
    let stats = recorder.stats();
    assert!(stats.recorded >= 2, "{stats:?}");
    assert_eq!((stats.lagged, stats.failed), (0, 0));
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_job_recorder_counts_what_it_missed_and_keeps_going() {
    let cluster = Cluster::start(3, config(3, NO_TIMER)).await;
    let dir = tempfile::tempdir().unwrap();
    let backend =
        EmbeddedBackend::open(dir.path().join("jobs.redb"), EmbeddedConfig::default()).unwrap();
    // A bus that keeps one event per subscriber: a burst overruns it.
    let config = ClientConfig {
        observers: Observers {
            events: EventBus::new(1),
            ..Observers::default()
        },
        ..ClientConfig::default()
    };
    let client = Client::with_config(Arc::new(backend), config);
    let recorder = JobRecorder::spawn(cluster.rep(0).clone(), client.clone());
    let specs = (0..50).map(|i| JobSpec::new("burst", json!(i))).collect();
    let ids = client.submit_batch(specs).await.unwrap();
    eventually("the recorder to count lost events", || async {
        (recorder.stats().lagged > 0).then_some(())
    })
    .await;
    // Later changes are still recorded.
    let last = *ids.last().unwrap();
    client.cancel(last).await.unwrap();
    let partition = client.get(last).await.unwrap().unwrap().partition;
    eventually("a change after the lag to be recorded", || async {
        let record = read(cluster.rep(1), last, partition).await?;
        (record["status"] == "cancelled").then_some(())
    })
    .await;
    cluster.shutdown().await;
}
