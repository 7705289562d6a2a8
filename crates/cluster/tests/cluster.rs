//! Cluster nodes in one process (a private PMD, a real redis-server):
//! partitions split between members and handed back on a graceful leave,
//! jobs of every partition run on their owner, and workflow submissions
//! and cancels reach the owner of their partition over the node runtime.
//! (Crashes of whole processes are in `crates/cli/tests/cluster.rs`.)

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ironforge_cluster::{ClusterConfig, ClusterNode};
use ironforge_jobs::testkit::RedisServer;
use ironforge_jobs::workflow::{
    WorkflowId, WorkflowJobSpec, WorkflowRouting, WorkflowSpec, WorkflowStatus,
};
use ironforge_jobs::{JobId, JobSpec, JobStatus, Partitioner, RedisConfig, Registry, WorkerConfig};
use ironforge_node::NodeConfig;
use ironforge_pmd::server::{Daemon, DaemonConfig};

const P: u32 = 16;
const WAIT: Duration = Duration::from_secs(15);

async fn pmd() -> SocketAddr {
    let daemon = Daemon::bind(DaemonConfig {
        bind: "127.0.0.1:0".parse().unwrap(),
        ..Default::default()
    })
    .await
    .unwrap();
    let addr = daemon.local_addr();
    tokio::spawn(daemon.run());
    addr
}

/// `echo` returns its payload; `who` returns the alias of the member that ran it.
fn handlers(alias: &str) -> Registry {
    let mut registry = Registry::new();
    let me = serde_json::json!(alias);
    registry
        .register_fn("echo", |ctx| async move { Ok(ctx.payload().clone()) })
        .register_fn("who", move |_ctx| {
            let me = me.clone();
            async move { Ok(me) }
        });
    registry
}

async fn start(pmd: SocketAddr, redis: &RedisServer, alias: &str, seeds: &[&str]) -> ClusterNode {
    let mut node = NodeConfig::new(alias)
        .cookie("cluster-test")
        .allow_multiple();
    node.pmd_addr = pmd;
    node.auto_start_pmd = false;
    let mut redis = RedisConfig::new(redis.url()).namespace("inproc");
    redis.partitions = P;
    let mut config = ClusterConfig::new(node, redis);
    config.seeds = seeds.iter().map(|s| (*s).to_owned()).collect();
    config.http = Some("127.0.0.1:0".parse().unwrap());
    let worker = WorkerConfig {
        consumer: alias.to_owned(),
        lease: Duration::from_millis(1_000),
        idle_wait: Duration::from_millis(50),
        ..WorkerConfig::default()
    };
    config.worker = Some((handlers(alias), worker));
    ClusterNode::start(config).await.unwrap()
}

/// A partition key that maps to `partition`.
fn key_for(partition: u32) -> String {
    let partitioner = Partitioner::new(P);
    (0..)
        .map(|i| format!("key-{i}"))
        .find(|k| partitioner.partition_of(&JobId::new_random(), Some(k)) == partition)
        .unwrap()
}

async fn wait_completed(node: &ClusterNode, id: JobId) -> ironforge_jobs::Job {
    let deadline = Instant::now() + WAIT;
    loop {
        let job = node.client().get(id).await.unwrap().unwrap();
        if job.status == JobStatus::Completed {
            return job;
        }
        assert!(Instant::now() < deadline, "job never completed: {job:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn wait_owned(node: &ClusterNode, expected: &[u32]) {
    let deadline = Instant::now() + WAIT;
    while node.owned_partitions() != expected {
        assert!(
            Instant::now() < deadline,
            "{} owns {:?}, expected {expected:?}",
            node.member(),
            node.owned_partitions()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_split_the_partitions_and_take_them_back_on_leave() {
    let redis = RedisServer::start();
    let pmd = pmd().await;
    let a = start(pmd, &redis, "a", &[]).await;
    a.await_members(&["a"], WAIT).await.unwrap();
    assert_eq!(
        a.owned_partitions(),
        (0..P).collect::<Vec<_>>(),
        "a first node owns all"
    );

    let b = start(pmd, &redis, "b", &["a"]).await;
    // A joining member owns nothing until it has seen the others settle.
    assert!(b.owned_partitions().is_empty());
    a.await_members(&["a", "b"], WAIT).await.unwrap();
    b.await_members(&["a", "b"], WAIT).await.unwrap();
    let ring = a.snapshot().ring.clone();
    wait_owned(&a, &ring.partitions_owned_by("a")).await;
    wait_owned(&b, &ring.partitions_owned_by("b")).await;
    let owned_a: BTreeSet<u32> = a.owned_partitions().into_iter().collect();
    let owned_b: BTreeSet<u32> = b.owned_partitions().into_iter().collect();
    assert!(owned_a.is_disjoint(&owned_b), "{owned_a:?} {owned_b:?}");
    assert_eq!(owned_a.len() + owned_b.len(), P as usize);
    assert!(!owned_a.is_empty() && !owned_b.is_empty());

    // One job per partition, all submitted through a: each runs on the
    // partition's owner, and every node reads every job.
    let mut ids = Vec::new();
    for partition in 0..P {
        let mut spec = JobSpec::new("who", serde_json::Value::Null);
        spec.partition_key = Some(key_for(partition));
        ids.push((partition, a.client().submit(spec).await.unwrap()));
    }
    for (partition, id) in &ids {
        let job = wait_completed(&b, *id).await;
        assert_eq!(job.partition, *partition);
        let owner = ring.owner(*partition).unwrap();
        assert_eq!(
            job.result,
            Some(serde_json::json!(owner)),
            "partition {partition}"
        );
    }

    // The HTTP view agrees with the node.
    let url = format!("http://{}/cluster/ring", b.http_addr().unwrap());
    let view: serde_json::Value = reqwest::get(&url).await.unwrap().json().await.unwrap();
    assert_eq!(view["member"], "b");
    assert_eq!(view["owned"], serde_json::json!(b.owned_partitions()));
    assert_eq!(view["assignments"].as_array().unwrap().len(), P as usize);
    let url = format!("http://{}/cluster/members", a.http_addr().unwrap());
    let view: serde_json::Value = reqwest::get(&url).await.unwrap().json().await.unwrap();
    assert_eq!(view["members"], serde_json::json!(["a", "b"]));
    assert_eq!(view["join"], "joined");

    // b leaves gracefully: a owns everything again, and a job of one of
    // b's former partitions runs.
    let moved = *owned_b.iter().next().unwrap();
    let left = Instant::now();
    b.shutdown(Duration::from_secs(2)).await;
    a.await_members(&["a"], WAIT).await.unwrap();
    wait_owned(&a, &(0..P).collect::<Vec<_>>()).await;
    println!("a owned every partition {:?} after b left", left.elapsed());
    let mut spec = JobSpec::new("who", serde_json::Value::Null);
    spec.partition_key = Some(key_for(moved));
    let id = a.client().submit(spec).await.unwrap();
    let job = wait_completed(&a, id).await;
    assert_eq!(
        (job.partition, job.result),
        (moved, Some(serde_json::json!("a")))
    );
    a.shutdown(Duration::from_secs(2)).await;
}

fn workflow(id: WorkflowId, run_at: Option<u64>) -> WorkflowSpec {
    let mut first = JobSpec::new("echo", serde_json::json!("first"));
    first.run_at = run_at;
    WorkflowSpec {
        id: Some(id),
        name: Some("routed".into()),
        jobs: vec![
            WorkflowJobSpec::new("first", first, Vec::<String>::new()),
            WorkflowJobSpec::new(
                "second",
                JobSpec::new("echo", serde_json::json!("second")),
                ["first"],
            ),
        ],
        ..WorkflowSpec::default()
    }
}

/// A workflow id whose partition `node` owns.
fn id_owned_by(node: &ClusterNode) -> WorkflowId {
    let owned = node.owned_partitions();
    loop {
        let id = WorkflowId::new_random();
        if owned.contains(&node.engine().workflows().partition_of(id)) {
            return id;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workflow_calls_are_forwarded_to_the_owner_of_their_partition() {
    let redis = RedisServer::start();
    let pmd = pmd().await;
    let a = start(pmd, &redis, "a", &[]).await;
    let b = start(pmd, &redis, "b", &["a"]).await;
    a.await_members(&["a", "b"], WAIT).await.unwrap();
    b.await_members(&["a", "b"], WAIT).await.unwrap();
    let ring = a.snapshot().ring.clone();
    wait_owned(&a, &ring.partitions_owned_by("a")).await;
    wait_owned(&b, &ring.partitions_owned_by("b")).await;

    // Each member routes by the same ring.
    for partition in 0..P {
        let owner = ring.owner(partition).unwrap();
        let (here, there) = if owner == "a" { (&a, &b) } else { (&b, &a) };
        assert_eq!(here.routing().owner_elsewhere(partition), None);
        assert_eq!(
            there.routing().owner_elsewhere(partition).as_deref(),
            Some(owner)
        );
    }

    // Submitted at a, owned by b: b drives it to the end.
    let id = id_owned_by(&b);
    let submitted = a
        .engine()
        .workflows()
        .submit(workflow(id, None))
        .await
        .unwrap();
    assert_eq!(submitted, id);
    let summary = b.engine().workflows().wait(id, WAIT).await.unwrap();
    assert_eq!(
        summary.state.status,
        WorkflowStatus::Completed,
        "{summary:?}"
    );
    assert_eq!(a.engine().workflows().live_count(), 0, "a never drove it");

    // Cancelled at a while its first job waits an hour: b cancels it.
    let id = id_owned_by(&b);
    let later = ironforge_jobs::clock::now_ms() + 3_600_000;
    a.engine()
        .workflows()
        .submit(workflow(id, Some(later)))
        .await
        .unwrap();
    a.engine().workflows().cancel(id).await.unwrap();
    let summary = b.engine().workflows().wait(id, WAIT).await.unwrap();
    assert_eq!(
        summary.state.status,
        WorkflowStatus::Cancelled,
        "{summary:?}"
    );

    b.shutdown(Duration::from_secs(1)).await;
    a.shutdown(Duration::from_secs(1)).await;
}
