//! Embedded-only durability: acknowledged submissions survive reopening the
//! database, and a worker process killed with SIGKILL mid-job loses nothing
//! (its job runs again in the next process that opens the file).
//!
//! The killed process is this test binary itself, re-run with `--exact
//! crash_child_process` and `IRONFORGE_JOBS_CRASH_DIR` set: a real process
//! with its own runtime, writer thread and file lock.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ironforge_jobs::testkit::{client, fast_worker_config, wait_status};
use ironforge_jobs::{
    Completion, EmbeddedBackend, EmbeddedConfig, JobId, JobSpec, JobStatus, Observers, Priority,
    QueueBackend, Registry, Worker,
};

const CRASH_DIR_ENV: &str = "IRONFORGE_JOBS_CRASH_DIR";
const CRASH_JOBS: usize = 60;

fn open(path: &Path) -> Arc<dyn QueueBackend> {
    Arc::new(EmbeddedBackend::open(path, EmbeddedConfig::default()).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_jobs_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jobs.redb");
    let observers = Observers::default();
    let backend = open(&path);
    let c = client(&backend, &observers);
    let mut submitted = Vec::new();
    // Concurrent submitters share group commits.
    let mut tasks = Vec::new();
    for t in 0..8 {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for i in 0..25 {
                let spec = JobSpec::new("k", serde_json::json!({"t": t, "i": i}))
                    .idempotency_key(format!("key-{t}-{i}"));
                ids.push(c.submit(spec).await.unwrap());
            }
            ids
        }));
    }
    for task in tasks {
        submitted.extend(task.await.unwrap());
    }
    let delayed = c
        .submit(JobSpec::new("k", serde_json::Value::Null).run_at(u64::MAX / 4))
        .await
        .unwrap();
    // Complete 10, lease 5 more without finishing them.
    let now = ironforge_jobs::clock::now_ms();
    let done = backend
        .fetch("w", 10, Duration::from_secs(60), now)
        .await
        .unwrap();
    let done_ids: Vec<JobId> = done.iter().map(|l| l.job.id).collect();
    backend
        .complete(
            done.into_iter()
                .map(|l| Completion {
                    receipt: l.receipt,
                    result: serde_json::json!("done"),
                })
                .collect(),
            now,
        )
        .await
        .unwrap();
    let leased = backend
        .fetch("w", 5, Duration::from_secs(60), now)
        .await
        .unwrap();
    assert_eq!(leased.len(), 5);
    backend.close().await.unwrap();
    drop(c);
    drop(backend);

    let backend = open(&path);
    let c = client(&backend, &observers);
    let stats = c.stats().await.unwrap();
    assert_eq!(stats.completed, 10);
    assert_eq!(stats.queued.total(), 190, "leased jobs are ready again");
    assert_eq!((stats.running, stats.scheduled), (0, 1));
    for id in &submitted {
        let job = c
            .get(*id)
            .await
            .unwrap()
            .expect("acknowledged job survived");
        let expected = if done_ids.contains(id) {
            JobStatus::Completed
        } else {
            JobStatus::Queued
        };
        assert_eq!(job.status, expected);
    }
    assert_eq!(
        c.get(delayed).await.unwrap().unwrap().status,
        JobStatus::Scheduled
    );
    let again = c
        .submit(JobSpec::new("k", serde_json::Value::Null).idempotency_key("key-3-7"))
        .await
        .unwrap();
    assert!(submitted.contains(&again), "idempotency keys survive too");
    // FIFO order survives: the next fetch continues where the first left off.
    let next = backend
        .fetch(
            "w",
            1,
            Duration::from_secs(60),
            ironforge_jobs::clock::now_ms(),
        )
        .await
        .unwrap();
    assert!(!done_ids.contains(&next[0].job.id));
}

/// Helper process for `worker_killed_mid_job_loses_nothing`; does nothing
/// unless started by it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_child_process() {
    let Some(dir) = std::env::var_os(CRASH_DIR_ENV).map(PathBuf::from) else {
        return;
    };
    let backend = open(&dir.join("jobs.redb"));
    let observers = Observers::default();
    let c = client(&backend, &observers);
    let mut registry = Registry::new();
    let marker = dir.join("slow-started");
    registry.register_fn("slow", move |_ctx| {
        let marker = marker.clone();
        async move {
            std::fs::write(&marker, b"1").unwrap();
            std::future::pending::<()>().await;
            Ok(serde_json::Value::Null)
        }
    });
    registry.register_fn("quick", |_ctx| async {
        tokio::time::sleep(Duration::from_millis(2)).await;
        Ok(serde_json::Value::Null)
    });
    let mut config = fast_worker_config("doomed");
    config.concurrency = 4;
    let _worker = Worker::start(backend.clone(), registry, config, observers);
    let mut ids = vec![c
        .submit(JobSpec::new("slow", serde_json::Value::Null).priority(Priority::Critical))
        .await
        .unwrap()];
    let mut acked = String::new();
    acked.push_str(&format!("{}\n", ids[0]));
    for chunk in 0..(CRASH_JOBS - 1) / 10 {
        let specs = (0..10)
            .map(|i| JobSpec::new("quick", serde_json::json!(chunk * 10 + i)))
            .collect();
        let batch = c.submit_batch(specs).await.unwrap();
        for id in &batch {
            acked.push_str(&format!("{id}\n"));
        }
        ids.extend(batch);
        // Each line is written only after its submission was acknowledged.
        std::fs::write(dir.join("acked.tmp"), &acked).unwrap();
        std::fs::rename(dir.join("acked.tmp"), dir.join("acked")).unwrap();
    }
    std::fs::write(dir.join("all-acked"), b"1").unwrap();
    std::future::pending::<()>().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_killed_mid_job_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "crash_child_process", "--nocapture"])
        .env(CRASH_DIR_ENV, dir.path())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !(dir.path().join("slow-started").exists() && dir.path().join("all-acked").exists()) {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("crash child exited early: {status}");
        }
        assert!(
            std::time::Instant::now() < deadline,
            "crash child never got going"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // SAFETY: plain kill(2) on the pid of the child we spawned and still own.
    let rc = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGKILL) };
    assert_eq!(rc, 0);
    let status = child.wait().unwrap();
    assert!(!status.success(), "child was killed: {status}");

    let acked: Vec<JobId> = std::fs::read_to_string(dir.path().join("acked"))
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    assert_eq!(acked.len(), CRASH_JOBS - 9);
    let backend = open(&dir.path().join("jobs.redb"));
    let observers = Observers::default();
    let c = client(&backend, &observers);
    let slow = c
        .get(acked[0])
        .await
        .unwrap()
        .expect("the killed job is stored");
    assert_eq!(
        slow.status,
        JobStatus::Queued,
        "the killed job is ready again"
    );
    let mut registry = Registry::new();
    for kind in ["slow", "quick"] {
        registry.register_fn(kind, |_ctx| async { Ok(serde_json::json!("survivor")) });
    }
    let worker = Worker::start(
        backend.clone(),
        registry,
        fast_worker_config("survivor"),
        observers,
    );
    for id in &acked {
        wait_status(&c, *id, JobStatus::Completed).await;
    }
    let slow = c.get(acked[0]).await.unwrap().unwrap();
    assert_eq!(slow.result, Some(serde_json::json!("survivor")));
    let stats = c.stats().await.unwrap();
    assert_eq!(stats.completed as usize, CRASH_JOBS - 9);
    assert_eq!(stats.queued.total() + stats.running + stats.dead, 0);
    worker.shutdown(Duration::from_secs(1)).await;
}
