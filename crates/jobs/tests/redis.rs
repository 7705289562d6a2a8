//! The Redis Streams backend against a real `redis-server` started by each
//! test on an ephemeral port: the whole behavioural suite, then what only
//! Redis has (hash tags, concurrent promoters, a server restart, consumers
//! that vanish, the dead-letter stream, an unreachable server).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ironforge_jobs::clock::now_ms;
use ironforge_jobs::testkit::RedisServer;
use ironforge_jobs::testkit::{self, fast_worker_config};
use ironforge_jobs::{
    BackendError, Client, JobId, JobSpec, JobStatus, Observers, Priority, QueueBackend,
    RedisBackend, RedisConfig, Registry, SchedulerConfig, Worker, WorkerConfig,
};
use parking_lot::Mutex;
use redis::AsyncCommands;

static NAMESPACE: AtomicUsize = AtomicUsize::new(0);

fn fresh_namespace() -> String {
    format!("t{}", NAMESPACE.fetch_add(1, Ordering::Relaxed))
}

async fn backend(server: &RedisServer, namespace: &str) -> Arc<RedisBackend> {
    let config = RedisConfig::new(server.url()).namespace(namespace);
    Arc::new(RedisBackend::connect(config).await.unwrap())
}

async fn raw(server: &RedisServer) -> redis::aio::MultiplexedConnection {
    redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_tokio_connection()
        .await
        .unwrap()
}

ironforge_jobs::backend_suite!(
    async {
        let server = RedisServer::start();
        let backend: Arc<dyn QueueBackend> = backend(&server, &fresh_namespace()).await;
        (server, backend)
    }
    .await
);

/// `run_all` on one server, a fresh namespace per test: namespaces keep
/// deployments sharing a Redis apart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_suite_shares_one_server_through_namespaces() {
    let server = RedisServer::start();
    testkit::run_all(|| async {
        let backend: Arc<dyn QueueBackend> = backend(&server, &fresh_namespace()).await;
        backend
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_key_of_a_partition_shares_its_hash_tag() {
    let server = RedisServer::start();
    let ns = fresh_namespace();
    let backend = backend(&server, &ns).await;
    let client = Client::new(backend.clone());
    let mut specs: Vec<JobSpec> = (0..200)
        .map(|i| JobSpec::new("k", serde_json::json!(i)).priority(Priority::ALL[i % 4]))
        .collect();
    specs.push(JobSpec::new("k", serde_json::Value::Null).run_at(now_ms() + 3_600_000));
    specs.push(JobSpec::new("k", serde_json::Value::Null).idempotency_key("once"));
    client.submit_batch(specs).await.unwrap();
    let leases = backend
        .fetch("c", 20, Duration::from_secs(30), now_ms())
        .await
        .unwrap();
    let (done, dead) = leases.split_at(10);
    backend
        .complete(
            done.iter()
                .map(|l| ironforge_jobs::Completion {
                    receipt: l.receipt.clone(),
                    result: serde_json::Value::Null,
                })
                .collect(),
            now_ms(),
        )
        .await
        .unwrap();
    for lease in dead {
        backend
            .fail(
                lease.receipt.clone(),
                "x".into(),
                ironforge_jobs::FailDecision::Dead,
                now_ms(),
            )
            .await
            .unwrap();
    }
    let mut conn = raw(&server).await;
    let keys: Vec<String> = conn.keys(format!("{ns}:*")).await.unwrap();
    let mut tags: HashMap<String, usize> = HashMap::new();
    for key in &keys {
        let rest = key.strip_prefix(&format!("{ns}:{{p")).unwrap_or_else(|| {
            panic!("key {key} does not start with the namespace and a partition tag")
        });
        let (partition, tail) = rest.split_once("}:").expect("closed hash tag");
        let partition: u32 = partition.parse().expect("numeric partition");
        assert!(partition < backend.partitions(), "{key}");
        assert!(!tail.contains('{'), "a second brace in {key}");
        assert!(key.starts_with(backend.partition_prefix(partition).unwrap()));
        *tags.entry(partition.to_string()).or_default() += 1;
    }
    assert_eq!(tags.len(), 16, "all partitions used: {tags:?}");
    for kind in [
        "stream:critical",
        "stream:low",
        "meta",
        "entries",
        "completions",
        "parked",
        "delayed",
        "dead",
        "counts",
        "idem:once",
    ] {
        assert!(keys.iter().any(|k| k.contains(kind)), "no {kind} key");
    }
    // Nothing lives outside the partitions.
    let all: Vec<String> = conn.keys("*").await.unwrap();
    assert_eq!(all.len(), keys.len());
}

/// The fields of every entry of a stream, in order.
async fn stream_fields(
    conn: &mut redis::aio::MultiplexedConnection,
    stream: &str,
) -> Vec<(String, HashMap<String, String>)> {
    let reply: redis::streams::StreamRangeReply = conn.xrange_all(stream).await.unwrap();
    reply
        .ids
        .into_iter()
        .map(|entry| {
            let fields = entry
                .map
                .into_iter()
                .map(|(k, v)| (k, redis::from_redis_value(&v).unwrap()))
                .collect();
            (entry.id, fields)
        })
        .collect()
}

/// Job `i` of kind `t`, in the partition of key `one` (so a batch of them
/// is one stream entry).
fn in_one_partition(i: i32) -> JobSpec {
    let mut spec = JobSpec::new("t", serde_json::json!(i));
    spec.partition_key = Some("one".to_string());
    spec
}

/// The job ids framed in an entry's blob (`<len>:<id><len>:<record>…`).
fn blob_ids(blob: &str) -> Vec<String> {
    let mut ids = Vec::new();
    let mut rest = blob;
    while !rest.is_empty() {
        let mut items = Vec::new();
        for _ in 0..2 {
            let (len, tail) = rest.split_once(':').expect("framed length");
            let len: usize = len.parse().expect("numeric length");
            items.push(tail[..len].to_string());
            rest = &tail[len..];
        }
        ids.push(items.swap_remove(0));
    }
    ids
}

/// The job's record is written once, in its stream entry; its state
/// changes touch only its meta field (progress) or its entry's state and
/// completion record (completion), never the record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_payload_is_written_once_and_never_re_encoded() {
    let server = RedisServer::start();
    let ns = fresh_namespace();
    let backend = backend(&server, &ns).await;
    let client = Client::new(backend.clone());
    let id = client
        .submit(JobSpec::new(
            "k",
            serde_json::json!({"big": "x".repeat(1000), "n": 12345678901234567890u64}),
        ))
        .await
        .unwrap();
    let job = client.get(id).await.unwrap().unwrap();
    let prefix = backend.partition_prefix(job.partition).unwrap().to_string();
    let stream = format!("{prefix}stream:medium");
    let mut conn = raw(&server).await;
    let before = stream_fields(&mut conn, &stream).await;
    assert_eq!(before.len(), 1);
    assert_eq!(blob_ids(&before[0].1["b"]), vec![id.to_string()]);
    assert!(before[0].1["b"].contains("12345678901234567890"));
    let lease = backend
        .fetch("c", 1, Duration::from_secs(30), now_ms())
        .await
        .unwrap()
        .remove(0);
    backend.progress(&lease.receipt, 50).await.unwrap();
    let meta_key = format!("{prefix}meta");
    let progressed: String = conn.hget(&meta_key, id.to_string()).await.unwrap();
    assert!(
        progressed.starts_with("q|") && progressed.contains("|50|"),
        "{progressed}"
    );
    backend
        .complete(
            vec![ironforge_jobs::Completion {
                receipt: lease.receipt,
                result: serde_json::json!("done"),
            }],
            now_ms(),
        )
        .await
        .unwrap();
    assert_eq!(stream_fields(&mut conn, &stream).await, before);
    // Completion wrote no per-job field: the meta is as progress left it,
    // and the entry's completion record holds the result.
    let meta: String = conn.hget(&meta_key, id.to_string()).await.unwrap();
    assert_eq!(meta, progressed);
    let records: HashMap<String, String> =
        conn.hgetall(format!("{prefix}completions")).await.unwrap();
    assert_eq!(records.len(), 1, "{records:?}");
    assert!(
        records.values().all(|r| r.ends_with("|\"done\"")),
        "{records:?}"
    );
    let done = client.get(id).await.unwrap().unwrap();
    assert_eq!(done.status, JobStatus::Completed);
    assert_eq!((done.progress, done.attempts), (None, 1));
    assert_eq!(done.payload, job.payload);
    assert_eq!(done.result, Some(serde_json::json!("done")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_promoters_never_queue_a_job_twice() {
    let server = RedisServer::start();
    let ns = fresh_namespace();
    let a = backend(&server, &ns).await;
    let b = backend(&server, &ns).await;
    let client = Client::new(a.clone());
    let run_at = now_ms() + 60_000;
    let mut ids = HashSet::new();
    for _ in 0..5 {
        let specs = (0..200)
            .map(|i| JobSpec::new("later", serde_json::json!(i)).run_at(run_at))
            .collect();
        ids.extend(client.submit_batch(specs).await.unwrap());
    }
    assert_eq!(a.stats().await.unwrap().scheduled, 1_000);
    assert_eq!(a.promote_due(run_at - 1).await.unwrap(), 0, "not due yet");
    // Time is an argument: promote as if a minute had passed.
    let now = run_at;
    let mut promoters = Vec::new();
    for i in 0..8 {
        let backend = if i % 2 == 0 { a.clone() } else { b.clone() };
        promoters.push(tokio::spawn(async move {
            backend.promote_due(now).await.unwrap()
        }));
    }
    let mut moved = 0;
    for p in promoters {
        moved += p.await.unwrap();
    }
    assert_eq!(moved, 1_000);
    let stats = a.stats().await.unwrap();
    assert_eq!((stats.queued.total(), stats.scheduled), (1_000, 0));
    let mut conn = raw(&server).await;
    let mut queued = Vec::new();
    for p in 0..a.partitions() {
        let stream = format!("{}stream:medium", a.partition_prefix(p).unwrap());
        for (_, fields) in stream_fields(&mut conn, &stream).await {
            queued.extend(blob_ids(&fields["b"]));
        }
    }
    assert_eq!(queued.len(), 1_000, "each job in one stream entry");
    let mut leased = HashSet::new();
    loop {
        let batch = b
            .fetch("c", 256, Duration::from_secs(30), now_ms())
            .await
            .unwrap();
        if batch.is_empty() {
            break;
        }
        for lease in batch {
            assert!(leased.insert(lease.job.id), "{} leased twice", lease.job.id);
        }
    }
    assert_eq!(leased, ids);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vanished_consumer_s_entries_are_reclaimed_and_completed_elsewhere() {
    let server = RedisServer::start();
    let ns = fresh_namespace();
    let ghost = backend(&server, &ns).await;
    let client = Client::new(ghost.clone());
    let ids = client
        .submit_batch(
            (0..20)
                .map(|i| JobSpec::new("work", serde_json::json!(i)))
                .collect(),
        )
        .await
        .unwrap();
    let leased = ghost
        .fetch("ghost", 20, Duration::from_millis(300), now_ms())
        .await
        .unwrap();
    assert_eq!(leased.len(), 20);
    drop(leased);
    drop(client);
    drop(ghost);

    let survivor: Arc<dyn QueueBackend> = backend(&server, &ns).await;
    let observers = Observers::default();
    let client = testkit::client(&survivor, &observers);
    let mut registry = Registry::new();
    registry.register_fn("work", |ctx| async move { Ok(ctx.payload().clone()) });
    let worker = Worker::start(
        survivor.clone(),
        registry,
        fast_worker_config("survivor"),
        observers.clone(),
    );
    for id in &ids {
        let job = testkit::wait_status(&client, *id, JobStatus::Completed).await;
        assert_eq!(
            job.deliveries, 2,
            "first delivery to the ghost, second here"
        );
    }
    worker.shutdown(Duration::from_secs(1)).await;
    let mut conn = raw(&server).await;
    for p in 0..16 {
        let stream = format!("{ns}:{{p{p}}}:stream:medium");
        let pending: redis::streams::StreamPendingReply =
            conn.xpending(&stream, "workers").await.unwrap();
        assert_eq!(pending.count(), 0, "nothing left pending in {stream}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_job_lands_in_its_partition_s_dead_letter_stream() {
    let server = RedisServer::start();
    let ns = fresh_namespace();
    let backend = backend(&server, &ns).await;
    let client = Client::new(backend.clone());
    let id = client
        .submit(JobSpec::new("poison", serde_json::Value::Null))
        .await
        .unwrap();
    let partition = client.get(id).await.unwrap().unwrap().partition;
    for _ in 0..2 {
        backend
            .fetch("crashy", 1, Duration::from_millis(30), now_ms())
            .await
            .unwrap()
            .remove(0);
        tokio::time::sleep(Duration::from_millis(80)).await;
        let reclaimed = backend.reclaim_expired(now_ms(), 2).await.unwrap();
        assert_eq!(reclaimed.len(), 1);
        assert_eq!(
            (reclaimed[0].id, reclaimed[0].kind.as_str()),
            (id, "poison")
        );
    }
    let job = client.get(id).await.unwrap().unwrap();
    assert_eq!(job.status, JobStatus::Dead);
    let dead_stream = format!("{}dead", backend.partition_prefix(partition).unwrap());
    let mut conn = raw(&server).await;
    let entries: redis::streams::StreamRangeReply = conn.xrange_all(&dead_stream).await.unwrap();
    assert_eq!(entries.ids.len(), 1);
    let recorded: String = entries.ids[0].get("j").unwrap();
    assert_eq!(recorded, id.to_string());
    client.retry(id, true).await.unwrap();
    let len: u64 = conn.xlen(&dead_stream).await.unwrap();
    assert_eq!(len, 0, "a retried job leaves the dead letters");
    assert_eq!(
        client.get(id).await.unwrap().unwrap().status,
        JobStatus::Queued
    );
}

/// A namespace written by an older key layout is refused at connect,
/// naming the way out, rather than read (its entries would look empty).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespace_of_an_older_layout_is_refused() {
    let server = RedisServer::start();
    let ns = fresh_namespace();
    let mut conn = raw(&server).await;
    let _: () = conn
        .hset(format!("{ns}:{{p3}}:counts"), "q2", 5)
        .await
        .unwrap();
    let error = RedisBackend::connect(RedisConfig::new(server.url()).namespace(&ns))
        .await
        .unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains("older IronForge layout") && message.contains("--namespace"),
        "{message}"
    );
    // A namespace this layout wrote connects again.
    let fresh = fresh_namespace();
    backend(&server, &fresh).await;
    backend(&server, &fresh).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_is_reported_unavailable() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = RedisConfig::new(format!("redis://127.0.0.1:{port}"));
    match RedisBackend::connect(config).await {
        Err(BackendError::Unavailable(message)) => assert!(message.contains("redis"), "{message}"),
        other => panic!("expected Unavailable, got {other:?}"),
    }
    let bad = RedisConfig::new("redis://127.0.0.1:1").namespace("with{brace}");
    assert!(matches!(
        RedisBackend::connect(bad).await,
        Err(BackendError::Storage(_))
    ));
}

/// Redis restarted mid-run with append-only on: calls fail `Unavailable`
/// during the outage, then the same backend and worker carry on by
/// themselves and every acknowledged submission completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_loses_no_acknowledged_job() {
    let mut server = RedisServer::start();
    let ns = fresh_namespace();
    let backend: Arc<dyn QueueBackend> = backend(&server, &ns).await;
    let observers = Observers::default();
    let client = testkit::client(&backend, &observers);
    let completed = Arc::new(Mutex::new(HashSet::new()));
    let seen = completed.clone();
    let mut registry = Registry::new();
    registry.register_fn("count", move |ctx| {
        seen.lock().insert(ctx.job().id);
        async { Ok(serde_json::Value::Null) }
    });
    let worker = Worker::start(
        backend.clone(),
        registry,
        WorkerConfig {
            lease: Duration::from_secs(1),
            scheduler: Some(SchedulerConfig {
                promote_interval: Duration::from_millis(20),
                reclaim_interval: Duration::from_millis(100),
                max_deliveries: 10,
            }),
            ..fast_worker_config("restart")
        },
        observers.clone(),
    );
    let mut acknowledged: Vec<JobId> = Vec::new();
    let submit = |round: usize| {
        let client = client.clone();
        async move {
            client
                .submit_batch(
                    (0..100)
                        .map(|i| JobSpec::new("count", serde_json::json!([round, i])))
                        .collect(),
                )
                .await
        }
    };
    for round in 0..5 {
        acknowledged.extend(submit(round).await.unwrap());
    }
    server.stop();
    match backend.stats().await {
        Err(BackendError::Unavailable(_)) => {}
        other => panic!("expected Unavailable while Redis is down, got {other:?}"),
    }
    assert!(
        submit(99).await.is_err(),
        "nothing is acknowledged while down"
    );
    server.restart();
    // The same backend recovers on its own; the first calls may still see
    // the reconnect in progress.
    let deadline = tokio::time::Instant::now() + testkit::WAIT;
    let mut round = 5;
    while round < 10 {
        match submit(round).await {
            Ok(ids) => {
                acknowledged.extend(ids);
                round += 1;
            }
            Err(error) => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "never recovered: {error}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    for id in &acknowledged {
        testkit::wait_status(&client, *id, JobStatus::Completed).await;
    }
    {
        let done = completed.lock();
        assert!(acknowledged.iter().all(|id| done.contains(id)));
    }
    assert_eq!(acknowledged.len(), 1_000);
    worker.shutdown(Duration::from_secs(1)).await;
}

/// `list` reads each status from where Redis keeps it (streams, pending
/// entries, the delayed set, dead letters, the finished indexes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_finds_jobs_in_every_status() {
    let server = RedisServer::start();
    let backend = backend(&server, &fresh_namespace()).await;
    let client = Client::new(backend.clone());
    let spec = |p: Priority| JobSpec::new("l", serde_json::Value::Null).priority(p);
    let running = client.submit(spec(Priority::Critical)).await.unwrap();
    let completed = client.submit(spec(Priority::Critical)).await.unwrap();
    let retrying = client.submit(spec(Priority::High)).await.unwrap();
    let dead = client.submit(spec(Priority::High)).await.unwrap();
    let queued = client.submit(spec(Priority::Low)).await.unwrap();
    let cancelled = client.submit(spec(Priority::Low)).await.unwrap();
    let scheduled = client
        .submit(spec(Priority::Medium).run_at(now_ms() + 3_600_000))
        .await
        .unwrap();
    client.cancel(cancelled).await.unwrap();
    let leases = backend
        .fetch("c", 4, Duration::from_secs(30), now_ms())
        .await
        .unwrap();
    let receipt = |id: JobId| {
        leases
            .iter()
            .find(|l| l.job.id == id)
            .unwrap()
            .receipt
            .clone()
    };
    backend
        .complete(
            vec![ironforge_jobs::Completion {
                receipt: receipt(completed),
                result: serde_json::json!(1),
            }],
            now_ms(),
        )
        .await
        .unwrap();
    let later = ironforge_jobs::FailDecision::Retry {
        at: now_ms() + 3_600_000,
    };
    backend
        .fail(receipt(retrying), "later".into(), later, now_ms())
        .await
        .unwrap();
    backend
        .fail(
            receipt(dead),
            "never".into(),
            ironforge_jobs::FailDecision::Dead,
            now_ms(),
        )
        .await
        .unwrap();
    for (status, id) in [
        (JobStatus::Running, running),
        (JobStatus::Completed, completed),
        (JobStatus::Failed, retrying),
        (JobStatus::Dead, dead),
        (JobStatus::Queued, queued),
        (JobStatus::Cancelled, cancelled),
        (JobStatus::Scheduled, scheduled),
    ] {
        let listed: Vec<JobId> = client
            .list(status, 10)
            .await
            .unwrap()
            .into_iter()
            .map(|j| j.id)
            .collect();
        assert_eq!(listed, vec![id], "{status}");
    }
    assert!(client.list(JobStatus::Queued, 0).await.unwrap().is_empty());
}

/// Not a test: the body of the worker process that
/// `a_worker_process_killed_with_sigkill_loses_nothing` starts and kills.
/// It leases every job and never finishes one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "helper process for the SIGKILL test"]
async fn sigkill_child_worker() {
    let (Ok(url), Ok(ns)) = (
        std::env::var("REDIS_CHILD_URL"),
        std::env::var("REDIS_CHILD_NS"),
    ) else {
        return;
    };
    let backend: Arc<dyn QueueBackend> = Arc::new(
        RedisBackend::connect(RedisConfig::new(url).namespace(ns))
            .await
            .unwrap(),
    );
    let mut registry = Registry::new();
    registry.register_fn("slow", |_ctx| std::future::pending());
    let _worker = Worker::start(
        backend,
        registry,
        WorkerConfig {
            lease: Duration::from_secs(1),
            ..fast_worker_config("doomed")
        },
        Observers::default(),
    );
    std::future::pending::<()>().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_process_killed_with_sigkill_loses_nothing() {
    let server = RedisServer::start();
    let ns = fresh_namespace();
    let backend: Arc<dyn QueueBackend> = backend(&server, &ns).await;
    let observers = Observers::default();
    let client = testkit::client(&backend, &observers);
    let ids = client
        .submit_batch(
            (0..8)
                .map(|i| JobSpec::new("slow", serde_json::json!(i)))
                .collect(),
        )
        .await
        .unwrap();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "sigkill_child_worker",
            "--nocapture",
        ])
        .env("REDIS_CHILD_URL", server.url())
        .env("REDIS_CHILD_NS", &ns)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    for id in &ids {
        testkit::wait_status(&client, *id, JobStatus::Running).await;
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert_eq!(client.stats().await.unwrap().running, 8);

    let mut registry = Registry::new();
    registry.register_fn("slow", |ctx| async move { Ok(ctx.payload().clone()) });
    let worker = Worker::start(
        backend.clone(),
        registry,
        fast_worker_config("heir"),
        observers.clone(),
    );
    for (i, id) in ids.iter().enumerate() {
        let job = testkit::wait_status(&client, *id, JobStatus::Completed).await;
        assert_eq!(job.result, Some(serde_json::json!(i)));
        assert_eq!(job.deliveries, 2);
    }
    worker.shutdown(Duration::from_secs(1)).await;
}

/// A submission batch becomes one stream entry per partition and
/// priority; leasing it writes no job state; a fetch that asks for fewer
/// jobs than the entry holds keeps the rest for the next fetch; the entry
/// is acknowledged only when its last job finishes, and stays as the
/// record of what ran; each job of it reads as what happened to it (a
/// failure in the middle of the entry, completions on either side).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_is_one_entry_acknowledged_when_its_last_job_finishes() {
    let server = RedisServer::start();
    let ns = fresh_namespace();
    let backend = backend(&server, &ns).await;
    let client = Client::new(backend.clone());
    let ids = client
        .submit_batch((0..6).map(in_one_partition).collect())
        .await
        .unwrap();
    let partition = client.get(ids[0]).await.unwrap().unwrap().partition;
    let prefix = backend.partition_prefix(partition).unwrap().to_string();
    let stream = format!("{prefix}stream:medium");
    let mut conn = raw(&server).await;
    let entries = stream_fields(&mut conn, &stream).await;
    assert_eq!(entries.len(), 1, "one entry for the batch");
    assert_eq!(entries[0].1["n"], "6");
    let framed: Vec<String> = ids.iter().map(|id| id.to_string()).collect();
    assert_eq!(
        blob_ids(&entries[0].1["b"]),
        framed,
        "six records, in order"
    );
    let meta_before: HashMap<String, String> = conn.hgetall(format!("{prefix}meta")).await.unwrap();

    let first = backend
        .fetch("c", 1, Duration::from_secs(30), now_ms())
        .await
        .unwrap();
    assert_eq!(first.len(), 1, "a fetch hands out what it asked for");
    assert_eq!(first[0].job.id, ids[0]);
    let meta_leased: HashMap<String, String> = conn.hgetall(format!("{prefix}meta")).await.unwrap();
    assert_eq!(meta_before, meta_leased, "leasing writes no job state");
    for id in &ids {
        let seen = client.get(*id).await.unwrap().unwrap();
        assert_eq!(
            (seen.status, seen.deliveries, seen.attempts),
            (JobStatus::Running, 1, 0),
            "the whole entry is leased"
        );
        assert!(seen.started_at.is_some());
    }
    let done = |leases: &[ironforge_jobs::Lease]| {
        leases
            .iter()
            .map(|l| ironforge_jobs::Completion {
                receipt: l.receipt.clone(),
                result: serde_json::json!("ok"),
            })
            .collect::<Vec<_>>()
    };
    backend.complete(done(&first), now_ms()).await.unwrap();
    let pending: redis::streams::StreamPendingReply =
        conn.xpending(&stream, "workers").await.unwrap();
    assert_eq!(pending.count(), 1, "five jobs of the entry still run");

    let rest = backend
        .fetch("c", 10, Duration::from_secs(30), now_ms())
        .await
        .unwrap();
    assert_eq!(
        rest.iter().map(|l| l.job.id).collect::<Vec<_>>(),
        ids[1..].to_vec(),
        "the held jobs, in order"
    );
    // One job of the entry dies; a late completion of it is refused.
    let (dying, living) = rest.split_first().unwrap();
    let outcome = backend
        .fail(
            dying.receipt.clone(),
            "broken".into(),
            ironforge_jobs::FailDecision::Dead,
            now_ms(),
        )
        .await
        .unwrap();
    assert_eq!(outcome, ironforge_jobs::AckOutcome::Ok);
    let outcomes = backend.complete(done(&rest), now_ms()).await.unwrap();
    assert_eq!(outcomes[0], ironforge_jobs::AckOutcome::LeaseLost);
    assert!(outcomes[1..]
        .iter()
        .all(|o| *o == ironforge_jobs::AckOutcome::Ok));
    let pending: redis::streams::StreamPendingReply =
        conn.xpending(&stream, "workers").await.unwrap();
    assert_eq!(pending.count(), 0, "acknowledged with its last job");
    let open: u64 = conn.hlen(format!("{prefix}entries")).await.unwrap();
    assert_eq!(open, 0);
    assert_eq!(stream_fields(&mut conn, &stream).await, entries);
    let dead = client.get(dying.job.id).await.unwrap().unwrap();
    assert_eq!(
        (dead.status, dead.last_error.as_deref(), dead.result),
        (JobStatus::Dead, Some("broken"), None)
    );
    for id in std::iter::once(&ids[0]).chain(living.iter().map(|l| &l.job.id)) {
        let job = client.get(*id).await.unwrap().unwrap();
        assert_eq!(
            (job.status, job.attempts, job.deliveries, job.result),
            (JobStatus::Completed, 1, 1, Some(serde_json::json!("ok")))
        );
        assert!(job.started_at.is_some() && job.finished_at.is_some());
        let refused = client.cancel(*id).await.unwrap_err();
        assert!(refused.to_string().contains("completed"), "{refused}");
    }
    let stats = client.stats().await.unwrap();
    assert_eq!(
        (
            stats.completed,
            stats.dead,
            stats.running,
            stats.queued.total()
        ),
        (5, 1, 0, 0)
    );
}

/// Stream entry ids are unique per stream only: two priorities of one
/// partition written by one script usually get the same id (both XADDs
/// fall in the same millisecond; Redis 7.0 does not freeze the clock for
/// them, so the setup retries until they do). Their leases must still be
/// told apart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_of_two_priorities_with_the_same_entry_id_stay_apart() {
    let server = RedisServer::start();
    let mut conn = raw(&server).await;
    let spec = |p: Priority| {
        let mut spec = JobSpec::new("t", serde_json::json!(p.rank())).priority(p);
        spec.partition_key = Some("same".to_string());
        spec
    };
    let mut attempts = 0;
    let (backend, client, ids) = loop {
        attempts += 1;
        assert!(attempts <= 50, "never got two entries with one id");
        let backend = backend(&server, &fresh_namespace()).await;
        let client = Client::new(backend.clone());
        let ids = client
            .submit_batch(vec![spec(Priority::High), spec(Priority::Medium)])
            .await
            .unwrap();
        let partition = client.get(ids[0]).await.unwrap().unwrap().partition;
        let prefix = backend.partition_prefix(partition).unwrap().to_string();
        let mut entries = Vec::new();
        for stream in ["stream:high", "stream:medium"] {
            let reply: redis::streams::StreamRangeReply =
                conn.xrange_all(format!("{prefix}{stream}")).await.unwrap();
            entries.push(reply.ids[0].id.clone());
        }
        if entries[0] == entries[1] {
            break (backend, client, ids);
        }
    };
    let leases = backend
        .fetch("c", 2, Duration::from_secs(30), now_ms())
        .await
        .unwrap();
    assert_eq!(
        leases.iter().map(|l| l.job.id).collect::<Vec<_>>(),
        ids,
        "high first"
    );
    for (i, id) in ids.iter().enumerate() {
        let job = client.get(*id).await.unwrap().unwrap();
        assert_eq!(job.status, JobStatus::Running, "job {i}");
    }
    let receipts: Vec<_> = leases.iter().map(|l| l.receipt.clone()).collect();
    let renewed = backend
        .renew(&receipts, Duration::from_secs(30), now_ms())
        .await
        .unwrap();
    assert_eq!(renewed, vec![ironforge_jobs::AckOutcome::Ok; 2]);
    for receipt in &receipts {
        assert_eq!(
            backend.progress(receipt, 10).await.unwrap(),
            ironforge_jobs::AckOutcome::Ok
        );
    }
    let failed = backend
        .fail(
            receipts[0].clone(),
            "x".into(),
            ironforge_jobs::FailDecision::Dead,
            now_ms(),
        )
        .await
        .unwrap();
    assert_eq!(failed, ironforge_jobs::AckOutcome::Ok);
    assert_eq!(
        client.get(ids[1]).await.unwrap().unwrap().status,
        JobStatus::Running,
        "failing one lease leaves the other"
    );
    let done = backend
        .complete(
            vec![ironforge_jobs::Completion {
                receipt: receipts[1].clone(),
                result: serde_json::json!("ok"),
            }],
            now_ms(),
        )
        .await
        .unwrap();
    assert_eq!(done, vec![ironforge_jobs::AckOutcome::Ok]);
    assert_eq!(
        client.get(ids[0]).await.unwrap().unwrap().status,
        JobStatus::Dead
    );
    assert_eq!(
        client.get(ids[1]).await.unwrap().unwrap().status,
        JobStatus::Completed
    );
    let stats = client.stats().await.unwrap();
    assert_eq!((stats.running, stats.dead, stats.completed), (0, 1, 1));
}

/// Jobs of a leased entry that a fetch did not hand out wait in the
/// process: their lease is renewed while they wait (by `renew` or the next
/// fetch), and closing the backend hands them back to the queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_jobs_keep_their_lease_and_go_back_on_close() {
    let server = RedisServer::start();
    let ns = fresh_namespace();
    let a = backend(&server, &ns).await;
    let b = backend(&server, &ns).await;
    let client = Client::new(a.clone());
    let ids = client
        .submit_batch((0..4).map(in_one_partition).collect())
        .await
        .unwrap();
    let lease = Duration::from_millis(300);
    let first = a.fetch("a", 1, lease, now_ms()).await.unwrap();
    assert_eq!(first[0].job.id, ids[0]);
    let complete = |lease: &ironforge_jobs::Lease| ironforge_jobs::Completion {
        receipt: lease.receipt.clone(),
        result: serde_json::Value::Null,
    };
    a.complete(vec![complete(&first[0])], now_ms())
        .await
        .unwrap();
    // Past the lease twice over with nothing handed out: only the renewal
    // of held jobs keeps the entry's lease.
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        a.renew(&[], lease, now_ms()).await.unwrap();
        assert!(a.reclaim_expired(now_ms(), 5).await.unwrap().is_empty());
    }
    let second = a.fetch("a", 1, lease, now_ms()).await.unwrap();
    assert_eq!(second[0].job.id, ids[1]);
    let done = a
        .complete(vec![complete(&second[0])], now_ms())
        .await
        .unwrap();
    assert_eq!(done, vec![ironforge_jobs::AckOutcome::Ok], "still leased");
    assert_eq!(a.stats().await.unwrap().running, 2, "two held");

    a.close().await.unwrap();
    let stats = b.stats().await.unwrap();
    assert_eq!(
        (stats.running, stats.queued.total()),
        (0, 2),
        "held jobs back"
    );
    let again = b.fetch("b", 10, lease, now_ms()).await.unwrap();
    assert_eq!(
        again.iter().map(|l| l.job.id).collect::<Vec<_>>(),
        ids[2..].to_vec()
    );
    assert!(again.iter().all(|l| l.delivery_count == 2));
}
