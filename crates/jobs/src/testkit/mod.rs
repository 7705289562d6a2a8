//! The behavioural suite every [`QueueBackend`] must pass (feature
//! `testkit`). Each function takes a fresh, empty backend and panics on the
//! first broken promise; `tests/embedded.rs` runs them on the embedded
//! backend and a Redis test file can run the same ones on Redis. They use
//! the real clock (Redis measures lease idle time itself), wait for events
//! or states with a deadline rather than fixed sleeps, and finish in about
//! a second each.

mod redis_server;

pub use redis_server::RedisServer;

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use crate::backend::{AckOutcome, Completion, QueueBackend};
use crate::backoff::{BackoffPolicy, FailDecision};
use crate::clock::now_ms;
use crate::error::{BackendError, JobError, ValidationError};
use crate::job::{Job, JobId, JobSpec, JobStatus, Priority};
use crate::observe::Observers;
use crate::scheduler::SchedulerConfig;
use crate::worker::{HandlerError, Registry, Worker, WorkerConfig, WorkerHandle};
use crate::{Client, ClientConfig};

/// Longest wait for any expected state.
pub const WAIT: Duration = Duration::from_secs(10);

/// A client sharing `observers` with the workers of the test.
pub fn client(backend: &Arc<dyn QueueBackend>, observers: &Observers) -> Client {
    Client::with_config(
        backend.clone(),
        ClientConfig {
            observers: observers.clone(),
            ..ClientConfig::default()
        },
    )
}

/// Worker settings with short intervals so the suite runs fast.
pub fn fast_worker_config(consumer: &str) -> WorkerConfig {
    WorkerConfig {
        consumer: consumer.to_string(),
        concurrency: 8,
        fetch_batch: 32,
        lease: Duration::from_secs(5),
        idle_wait: Duration::from_millis(50),
        ack_batch: 256,
        backoff: BackoffPolicy {
            base_ms: 20,
            cap_ms: 100,
        },
        scheduler: Some(SchedulerConfig {
            promote_interval: Duration::from_millis(10),
            reclaim_interval: Duration::from_millis(50),
            max_deliveries: 3,
        }),
    }
}

fn start(
    backend: &Arc<dyn QueueBackend>,
    registry: Registry,
    observers: &Observers,
) -> WorkerHandle {
    Worker::start(
        backend.clone(),
        registry,
        fast_worker_config("suite-worker"),
        observers.clone(),
    )
}

/// Waits until the job has `status`, re-checking on every event and at
/// least every 20 ms; panics after [`WAIT`].
pub async fn wait_status(client: &Client, id: JobId, status: JobStatus) -> Job {
    let mut events = client.observers().events.subscribe();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let job = client.get(id).await.unwrap().expect("job exists");
        if job.status == status {
            return job;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("job {id} never reached {status}; last seen {job:?}");
        }
        tokio::select! {
            _ = events.recv() => {}
            _ = tokio::time::sleep(Duration::from_millis(20)) => {}
        }
    }
}

/// Waits for the worker's event that `id` reached `status`, returning every
/// event of `id` seen on the way (the worker records metrics before it
/// publishes, so counters are final once this returns); panics after [`WAIT`].
pub async fn wait_event(
    events: &mut tokio::sync::broadcast::Receiver<crate::JobEvent>,
    id: JobId,
    status: JobStatus,
) -> Vec<JobStatus> {
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    while seen.last() != Some(&status) {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Ok(event)) if event.id == id => seen.push(event.status),
            Ok(Ok(_)) => {}
            Ok(Err(err)) => panic!("event stream failed: {err}"),
            Err(_) => panic!("no {status} event for {id}; saw {seen:?}"),
        }
    }
    seen
}

/// Submit, run, complete: the result is stored and events were published.
pub async fn happy_path(backend: Arc<dyn QueueBackend>) {
    let observers = Observers::default();
    let client = client(&backend, &observers);
    let mut events = observers.events.subscribe();
    let mut registry = Registry::new();
    registry.register_fn("echo", |ctx| async move { Ok(ctx.payload().clone()) });
    let worker = start(&backend, registry, &observers);
    let payload = serde_json::json!({"hello": "world", "n": 7});
    let id = client
        .submit(JobSpec::new("echo", payload.clone()))
        .await
        .unwrap();
    let job = wait_status(&client, id, JobStatus::Completed).await;
    assert_eq!(job.result, Some(payload.clone()));
    assert_eq!(job.payload, payload);
    assert_eq!(job.attempts, 1);
    assert!(job.finished_at.is_some());
    let stats = client.stats().await.unwrap();
    assert_eq!(stats.completed, 1);
    assert_eq!(stats.queued.total() + stats.running + stats.dead, 0);
    let seen = wait_event(&mut events, id, JobStatus::Completed).await;
    // The client reports `queued` after the durable write returns, and a
    // fast worker may report `running` before that: only the end is ordered.
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert!(seen.contains(&JobStatus::Queued) && seen.contains(&JobStatus::Running));
    assert_eq!(seen.last(), Some(&JobStatus::Completed));
    let counters = observers.metrics.snapshot();
    assert_eq!(counters["echo"].submitted[Priority::Medium.rank()], 1);
    assert_eq!(counters["echo"].completed, 1);
    worker.shutdown(Duration::from_secs(1)).await;
}

/// A handler failing twice then succeeding completes on the third attempt.
pub async fn retry_then_success(backend: Arc<dyn QueueBackend>) {
    let observers = Observers::default();
    let client = client(&backend, &observers);
    let mut registry = Registry::new();
    registry.register_fn("flaky", |ctx| async move {
        if ctx.attempt() < 3 {
            Err(HandlerError::retryable(format!(
                "transient failure {}",
                ctx.attempt()
            )))
        } else {
            Ok(serde_json::json!("ok"))
        }
    });
    let mut events = observers.events.subscribe();
    let worker = start(&backend, registry, &observers);
    let id = client
        .submit(JobSpec::new("flaky", serde_json::Value::Null).max_retries(3))
        .await
        .unwrap();
    let job = wait_status(&client, id, JobStatus::Completed).await;
    wait_event(&mut events, id, JobStatus::Completed).await;
    assert_eq!(job.attempts, 3);
    assert_eq!(job.last_error.as_deref(), Some("transient failure 2"));
    let counters = &observers.metrics.snapshot()["flaky"];
    assert_eq!(
        (counters.retried, counters.completed, counters.dlq),
        (2, 1, 0)
    );
    worker.shutdown(Duration::from_secs(1)).await;
}

/// Exhausted retries land in the dead letters; a retry re-queues and runs it.
pub async fn dead_letter_then_retry(backend: Arc<dyn QueueBackend>) {
    let observers = Observers::default();
    let client = client(&backend, &observers);
    let healed = Arc::new(AtomicBool::new(false));
    let mut registry = Registry::new();
    let flag = healed.clone();
    registry.register_fn("boom", move |_ctx| {
        let healed = flag.load(Ordering::SeqCst);
        async move {
            if healed {
                Ok(serde_json::json!("healed"))
            } else {
                Err(HandlerError::retryable("boom"))
            }
        }
    });
    let worker = start(&backend, registry, &observers);
    let id = client
        .submit(JobSpec::new("boom", serde_json::Value::Null).max_retries(2))
        .await
        .unwrap();
    let job = wait_status(&client, id, JobStatus::Dead).await;
    assert_eq!(job.attempts, 3);
    assert_eq!(job.last_error.as_deref(), Some("boom"));
    assert_eq!(client.stats().await.unwrap().dead, 1);
    let dead = client.list(JobStatus::Dead, 10).await.unwrap();
    assert_eq!(dead.iter().map(|j| j.id).collect::<Vec<_>>(), vec![id]);
    assert_eq!(observers.metrics.snapshot()["boom"].dlq, 1);

    healed.store(true, Ordering::SeqCst);
    client.retry(id, true).await.unwrap();
    let job = wait_status(&client, id, JobStatus::Completed).await;
    assert_eq!(job.attempts, 1, "attempts were reset");
    assert_eq!(job.result, Some(serde_json::json!("healed")));
    assert_eq!(client.stats().await.unwrap().dead, 0);
    match client.retry(id, false).await {
        Err(JobError::Backend(BackendError::InvalidState { status, .. })) => {
            assert_eq!(status, JobStatus::Completed)
        }
        other => panic!("retry of a completed job must fail, got {other:?}"),
    }
    worker.shutdown(Duration::from_secs(1)).await;
}

/// Under a backlog, every critical job is leased before any high, medium
/// or low one, across fetch batches, and FIFO within a priority and
/// partition (the ordering a partitioned queue promises; the embedded
/// backend, with one partition, is FIFO within a priority).
pub async fn priority_order(backend: Arc<dyn QueueBackend>) {
    let observers = Observers::default();
    let client = client(&backend, &observers);
    let mut submitted: Vec<(Priority, JobId)> = Vec::new();
    for priority in [
        Priority::Low,
        Priority::Medium,
        Priority::Critical,
        Priority::High,
        Priority::Low,
        Priority::Critical,
    ] {
        let specs = (0..15)
            .map(|i| JobSpec::new("p", serde_json::json!(i)).priority(priority))
            .collect();
        for id in client.submit_batch(specs).await.unwrap() {
            submitted.push((priority, id));
        }
    }
    let stats = client.stats().await.unwrap();
    assert_eq!(
        (
            stats.queued.critical,
            stats.queued.high,
            stats.queued.medium,
            stats.queued.low
        ),
        (30, 15, 15, 30)
    );
    let mut leased: Vec<(Priority, u32, JobId)> = Vec::new();
    loop {
        let batch = backend
            .fetch("c1", 7, Duration::from_secs(30), now_ms())
            .await
            .unwrap();
        if batch.is_empty() {
            break;
        }
        assert!(batch.len() <= 7, "a fetch hands out at most what it asked");
        leased.extend(
            batch
                .into_iter()
                .map(|l| (l.job.priority, l.job.partition, l.job.id)),
        );
    }
    assert_eq!(leased.len(), submitted.len(), "every job leased once");
    assert!(
        leased.windows(2).all(|w| w[0].0 <= w[1].0),
        "strict priority: {:?}",
        leased.iter().map(|l| l.0).collect::<Vec<_>>()
    );
    let partition: std::collections::HashMap<JobId, u32> =
        leased.iter().map(|(_, p, id)| (*id, *p)).collect();
    let mut fifo: Vec<(Priority, u32, JobId)> = submitted
        .iter()
        .map(|(priority, id)| (*priority, partition[id], *id))
        .collect();
    fifo.sort_by_key(|(priority, p, _)| (*priority, *p)); // stable: submission order
    let mut by_partition = leased.clone();
    by_partition.sort_by_key(|(priority, p, _)| (*priority, *p)); // stable: lease order
    assert_eq!(by_partition, fifo, "FIFO within a priority and partition");
}

/// A handler that overruns its timeout is cancelled and the job retried.
pub async fn timeout_then_retry(backend: Arc<dyn QueueBackend>) {
    let observers = Observers::default();
    let client = client(&backend, &observers);
    let first_dropped = Arc::new(AtomicBool::new(false));
    let flag = first_dropped.clone();
    let mut registry = Registry::new();
    registry.register_fn("slow", move |ctx| {
        let flag = flag.clone();
        async move {
            if ctx.attempt() == 1 {
                struct SetOnDrop(Arc<AtomicBool>);
                impl Drop for SetOnDrop {
                    fn drop(&mut self) {
                        self.0.store(true, Ordering::SeqCst);
                    }
                }
                let _guard = SetOnDrop(flag);
                tokio::time::sleep(Duration::from_secs(30)).await;
            }
            Ok(serde_json::json!(ctx.attempt()))
        }
    });
    let worker = start(&backend, registry, &observers);
    let id = client
        .submit(
            JobSpec::new("slow", serde_json::Value::Null)
                .timeout_ms(200)
                .max_retries(2),
        )
        .await
        .unwrap();
    let job = wait_status(&client, id, JobStatus::Completed).await;
    assert_eq!(job.attempts, 2);
    assert_eq!(job.result, Some(serde_json::json!(2)));
    assert!(
        job.last_error
            .as_deref()
            .unwrap_or("")
            .contains("timed out"),
        "{job:?}"
    );
    assert!(
        first_dropped.load(Ordering::SeqCst),
        "the timed-out handler was cancelled"
    );
    worker.shutdown(Duration::from_secs(1)).await;
}

/// Jobs leased by one fetch run at once, not one after another: eight
/// handlers that each wait until all eight have started all complete
/// (the worker runs several jobs per task).
pub async fn handlers_of_one_fetch_run_concurrently(backend: Arc<dyn QueueBackend>) {
    let observers = Observers::default();
    let client = client(&backend, &observers);
    let all_started = Arc::new(tokio::sync::Barrier::new(8));
    let mut registry = Registry::new();
    registry.register_fn("meet", move |ctx| {
        let all_started = all_started.clone();
        async move {
            all_started.wait().await;
            Ok(ctx.payload().clone())
        }
    });
    let ids = client
        .submit_batch(
            (0..8)
                .map(|i| JobSpec::new("meet", serde_json::json!(i)))
                .collect(),
        )
        .await
        .unwrap();
    let worker = start(&backend, registry, &observers);
    for (i, id) in ids.iter().enumerate() {
        let job = wait_status(&client, *id, JobStatus::Completed).await;
        assert_eq!(job.result, Some(serde_json::json!(i)));
    }
    worker.shutdown(Duration::from_secs(1)).await;
}

/// With more permits than one fetch takes, a worker keeps fetches
/// overlapping: every job still runs exactly once and completes.
pub async fn small_fetches_overlap_and_run_each_job_once(backend: Arc<dyn QueueBackend>) {
    let observers = Observers::default();
    let client = client(&backend, &observers);
    let runs = Arc::new(Mutex::new(vec![0u32; 300]));
    let counted = runs.clone();
    let mut registry = Registry::new();
    registry.register_fn("count", move |ctx| {
        let counted = counted.clone();
        async move {
            let i = ctx.payload().as_u64().unwrap_or(0) as usize;
            if let Some(n) = counted.lock().get_mut(i) {
                *n += 1;
            }
            Ok(serde_json::Value::Null)
        }
    });
    let ids = client
        .submit_batch(
            (0..300)
                .map(|i| JobSpec::new("count", serde_json::json!(i)))
                .collect(),
        )
        .await
        .unwrap();
    let config = WorkerConfig {
        concurrency: 32,
        fetch_batch: 4,
        ..fast_worker_config("overlapping")
    };
    let worker = Worker::start(backend.clone(), registry, config, observers.clone());
    for id in &ids {
        wait_status(&client, *id, JobStatus::Completed).await;
    }
    let report = worker.shutdown(Duration::from_secs(1)).await;
    assert_eq!(report.released, 0);
    assert!(runs.lock().iter().all(|n| *n == 1), "{:?}", runs.lock());
    assert_eq!(client.stats().await.unwrap().completed, 300);
}

/// A delayed job is scheduled, and never starts before its `run_at`.
pub async fn delayed_job_waits(backend: Arc<dyn QueueBackend>) {
    let observers = Observers::default();
    let client = client(&backend, &observers);
    let started_at = Arc::new(Mutex::new(None));
    let record = started_at.clone();
    let mut registry = Registry::new();
    registry.register_fn("later", move |_ctx| {
        *record.lock() = Some(now_ms());
        async { Ok(serde_json::Value::Null) }
    });
    let worker = start(&backend, registry, &observers);
    let run_at = now_ms() + 400;
    let id = client
        .submit(JobSpec::new("later", serde_json::Value::Null).run_at(run_at))
        .await
        .unwrap();
    let job = client.get(id).await.unwrap().unwrap();
    assert_eq!(job.status, JobStatus::Scheduled);
    assert_eq!(client.stats().await.unwrap().scheduled, 1);
    wait_status(&client, id, JobStatus::Completed).await;
    let started = started_at.lock().expect("handler ran");
    assert!(started >= run_at, "started {} ms early", run_at - started);
    worker.shutdown(Duration::from_secs(1)).await;
}

/// Queued and scheduled jobs can be cancelled and never run; running and
/// finished ones cannot; unknown ids are not found.
pub async fn cancel_queued_and_scheduled(backend: Arc<dyn QueueBackend>) {
    let observers = Observers::default();
    let client = client(&backend, &observers);
    let queued = client
        .submit(JobSpec::new("c", serde_json::Value::Null).priority(Priority::Critical))
        .await
        .unwrap();
    let scheduled = client
        .submit(JobSpec::new("c", serde_json::Value::Null).run_at(now_ms() + 3_600_000))
        .await
        .unwrap();
    let running = client
        .submit(JobSpec::new("c", serde_json::Value::Null).priority(Priority::Low))
        .await
        .unwrap();
    client.cancel(queued).await.unwrap();
    client.cancel(scheduled).await.unwrap();
    for id in [queued, scheduled] {
        let job = client.get(id).await.unwrap().unwrap();
        assert_eq!(job.status, JobStatus::Cancelled);
        assert!(job.finished_at.is_some());
    }
    let leases = backend
        .fetch("c1", 10, Duration::from_secs(30), now_ms())
        .await
        .unwrap();
    assert_eq!(leases.len(), 1, "cancelled jobs are never delivered");
    assert_eq!(leases[0].job.id, running);
    assert_eq!(backend.promote_due(now_ms() + 7_200_000).await.unwrap(), 0);
    for (id, status) in [
        (running, JobStatus::Running),
        (queued, JobStatus::Cancelled),
    ] {
        match client.cancel(id).await {
            Err(JobError::Backend(BackendError::InvalidState { status: s, .. })) => {
                assert_eq!(s, status)
            }
            other => panic!("cancel of a {status} job must fail, got {other:?}"),
        }
    }
    let unknown = JobId::new_random();
    assert_eq!(
        client.cancel(unknown).await,
        Err(JobError::Backend(BackendError::NotFound(unknown)))
    );
    let stats = client.stats().await.unwrap();
    assert_eq!((stats.cancelled, stats.running, stats.scheduled), (2, 1, 0));
}

/// A lease that expires is reclaimed; the old holder's ack is refused and
/// another consumer completes the job.
pub async fn lease_expiry_reclaimed(backend: Arc<dyn QueueBackend>) {
    let observers = Observers::default();
    let client = client(&backend, &observers);
    let id = client
        .submit(JobSpec::new("l", serde_json::json!(1)))
        .await
        .unwrap();
    let first = backend
        .fetch("dies", 1, Duration::from_millis(100), now_ms())
        .await
        .unwrap()
        .remove(0);
    assert_eq!((first.job.id, first.delivery_count), (id, 1));
    assert_eq!(first.job.status, JobStatus::Running);
    assert!(backend
        .reclaim_expired(now_ms(), 5)
        .await
        .unwrap()
        .is_empty());
    assert!(backend
        .fetch("other", 1, Duration::from_secs(30), now_ms())
        .await
        .unwrap()
        .is_empty());
    tokio::time::sleep(Duration::from_millis(250)).await;
    let reclaimed = backend.reclaim_expired(now_ms(), 5).await.unwrap();
    assert_eq!(reclaimed.len(), 1);
    assert!(!reclaimed[0].dead);
    let second = backend
        .fetch("other", 1, Duration::from_secs(30), now_ms())
        .await
        .unwrap()
        .remove(0);
    assert_eq!((second.job.id, second.delivery_count), (id, 2));
    let stale = backend
        .complete(
            vec![Completion {
                receipt: first.receipt,
                result: serde_json::json!("stale"),
            }],
            now_ms(),
        )
        .await
        .unwrap();
    assert_eq!(stale, vec![AckOutcome::LeaseLost]);
    let ok = backend
        .complete(
            vec![Completion {
                receipt: second.receipt,
                result: serde_json::json!("fresh"),
            }],
            now_ms(),
        )
        .await
        .unwrap();
    assert_eq!(ok, vec![AckOutcome::Ok]);
    let job = client.get(id).await.unwrap().unwrap();
    assert_eq!(job.status, JobStatus::Completed);
    assert_eq!(job.result, Some(serde_json::json!("fresh")));
}

/// Renewed leases are not reclaimed.
pub async fn renewed_lease_survives(backend: Arc<dyn QueueBackend>) {
    let observers = Observers::default();
    let client = client(&backend, &observers);
    client
        .submit(JobSpec::new("r", serde_json::Value::Null))
        .await
        .unwrap();
    let lease = backend
        .fetch("holder", 1, Duration::from_millis(150), now_ms())
        .await
        .unwrap()
        .remove(0);
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let renewed = backend
            .renew(
                std::slice::from_ref(&lease.receipt),
                Duration::from_millis(150),
                now_ms(),
            )
            .await
            .unwrap();
        assert_eq!(renewed, vec![AckOutcome::Ok]);
        assert!(backend
            .reclaim_expired(now_ms(), 5)
            .await
            .unwrap()
            .is_empty());
    }
    assert_eq!(client.stats().await.unwrap().running, 1);
}

/// A worker renews the lease of a job that runs longer than the lease, so
/// the scheduler does not hand it to anyone else meanwhile.
pub async fn worker_renews_long_jobs(backend: Arc<dyn QueueBackend>) {
    let observers = Observers::default();
    let client = client(&backend, &observers);
    let runs = Arc::new(AtomicU32::new(0));
    let counter = runs.clone();
    let mut registry = Registry::new();
    registry.register_fn("long", move |_ctx| {
        counter.fetch_add(1, Ordering::SeqCst);
        async {
            tokio::time::sleep(Duration::from_millis(900)).await;
            Ok(serde_json::Value::Null)
        }
    });
    let mut config = fast_worker_config("renewer");
    config.lease = Duration::from_millis(300);
    let worker = Worker::start(backend.clone(), registry, config, observers.clone());
    let id = client
        .submit(JobSpec::new("long", serde_json::Value::Null))
        .await
        .unwrap();
    let job = wait_status(&client, id, JobStatus::Completed).await;
    assert_eq!((job.attempts, job.deliveries), (1, 1), "{job:?}");
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    worker.shutdown(Duration::from_secs(1)).await;
}

/// A job whose lease keeps expiring goes to the dead letters after
/// `max_deliveries` deliveries.
pub async fn poison_job_goes_dead(backend: Arc<dyn QueueBackend>) {
    let observers = Observers::default();
    let client = client(&backend, &observers);
    let id = client
        .submit(JobSpec::new("poison", serde_json::Value::Null))
        .await
        .unwrap();
    for delivery in 1..=3u32 {
        let lease = backend
            .fetch("crashy", 1, Duration::from_millis(50), now_ms())
            .await
            .unwrap()
            .remove(0);
        assert_eq!(lease.delivery_count, delivery);
        tokio::time::sleep(Duration::from_millis(120)).await;
        let reclaimed = backend.reclaim_expired(now_ms(), 3).await.unwrap();
        assert_eq!(reclaimed.len(), 1);
        assert_eq!(reclaimed[0].dead, delivery == 3);
    }
    let job = client.get(id).await.unwrap().unwrap();
    assert_eq!(job.status, JobStatus::Dead);
    assert!(job
        .last_error
        .unwrap_or_default()
        .contains("delivered 3 times"));
    assert_eq!(client.stats().await.unwrap().dead, 1);
    assert!(backend
        .fetch("crashy", 1, Duration::from_millis(50), now_ms())
        .await
        .unwrap()
        .is_empty());
}

/// The same idempotency key yields the same job, within and across batches.
pub async fn idempotency_dedup(backend: Arc<dyn QueueBackend>) {
    let observers = Observers::default();
    let client = client(&backend, &observers);
    let spec = JobSpec::new("once", serde_json::json!(1)).idempotency_key("order-42");
    let first = client.submit(spec.clone()).await.unwrap();
    let again = client.submit(spec.clone()).await.unwrap();
    assert_eq!(first, again);
    let batch = client
        .submit_batch(vec![
            JobSpec::new("once", serde_json::json!(2)).idempotency_key("order-43"),
            spec,
            JobSpec::new("once", serde_json::json!(3)).idempotency_key("order-43"),
        ])
        .await
        .unwrap();
    assert_eq!(batch[1], first);
    assert_eq!(batch[0], batch[2]);
    assert_ne!(batch[0], first);
    assert_eq!(client.stats().await.unwrap().queued.total(), 2);
    assert_eq!(
        observers.metrics.snapshot()["once"]
            .submitted
            .iter()
            .sum::<u64>(),
        2
    );
}

/// Invalid submissions are refused with a reason and store nothing.
pub async fn validation_errors(backend: Arc<dyn QueueBackend>) {
    let observers = Observers::default();
    let client = client(&backend, &observers);
    assert_eq!(
        client
            .submit(JobSpec::new(" ", serde_json::Value::Null))
            .await,
        Err(JobError::Validation(ValidationError::EmptyKind))
    );
    let big = serde_json::Value::String("x".repeat(1024 * 1024));
    match client.submit(JobSpec::new("big", big)).await {
        Err(JobError::Validation(ValidationError::PayloadTooLarge { size, max })) => {
            assert!(size > max && max == 1024 * 1024)
        }
        other => panic!("oversized payload must be refused, got {other:?}"),
    }
    match JobSpec::from_json(br#"{"kind":"k","priority":"urgent"}"#) {
        Err(ValidationError::Malformed(msg)) => assert!(msg.contains("urgent"), "{msg}"),
        other => panic!("unknown priority must be refused, got {other:?}"),
    }
    assert!(JobSpec::from_json(br#"{"kind":"k","max_retries":"three"}"#).is_err());
    match client
        .submit_batch(vec![
            JobSpec::new("ok", serde_json::Value::Null),
            JobSpec::new("", serde_json::Value::Null),
        ])
        .await
    {
        Err(JobError::Validation(ValidationError::InBatch { index: 1, .. })) => {}
        other => panic!("a batch with an invalid job must be refused, got {other:?}"),
    }
    assert_eq!(client.stats().await.unwrap().queued.total(), 0);
    let past = client
        .submit(JobSpec::new("past", serde_json::Value::Null).run_at(1))
        .await
        .unwrap();
    assert_eq!(
        client.get(past).await.unwrap().unwrap().status,
        JobStatus::Queued,
        "a run_at in the past means now"
    );
}

/// A job of a kind nobody handles fails with a clear error.
pub async fn unknown_kind_fails(backend: Arc<dyn QueueBackend>) {
    let observers = Observers::default();
    let client = client(&backend, &observers);
    let worker = start(&backend, Registry::new(), &observers);
    let id = client
        .submit(JobSpec::new("nobody-handles-this", serde_json::Value::Null).max_retries(0))
        .await
        .unwrap();
    let job = wait_status(&client, id, JobStatus::Dead).await;
    let error = job.last_error.unwrap_or_default();
    assert!(
        error.contains("no handler registered for kind `nobody-handles-this`"),
        "{error}"
    );
    assert!(job.result.is_none());
    worker.shutdown(Duration::from_secs(1)).await;
}

/// A handler can report progress while it runs.
pub async fn progress_is_visible(backend: Arc<dyn QueueBackend>) {
    let observers = Observers::default();
    let client = client(&backend, &observers);
    let release = Arc::new(tokio::sync::Notify::new());
    let gate = release.clone();
    let mut registry = Registry::new();
    registry.register_fn("long", move |ctx| {
        let gate = gate.clone();
        async move {
            ctx.set_progress(40)
                .await
                .map_err(|e| HandlerError::retryable(e.to_string()))?;
            assert!(ctx.set_progress(101).await.is_err());
            gate.notified().await;
            Ok(serde_json::Value::Null)
        }
    });
    let worker = start(&backend, registry, &observers);
    let id = client
        .submit(JobSpec::new("long", serde_json::Value::Null))
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let job = client.get(id).await.unwrap().unwrap();
        if job.status == JobStatus::Running && job.progress == Some(40) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no progress seen: {job:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    release.notify_one();
    wait_status(&client, id, JobStatus::Completed).await;
    worker.shutdown(Duration::from_secs(1)).await;
}

/// Shutdown finishes in-flight work within the grace period and hands
/// back, unharmed, what cannot finish.
pub async fn graceful_shutdown(backend: Arc<dyn QueueBackend>) {
    let observers = Observers::default();
    let client = client(&backend, &observers);
    let started = Arc::new(AtomicU32::new(0));
    let counter = started.clone();
    let mut registry = Registry::new();
    registry.register_fn("quick", |_ctx| async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        Ok(serde_json::Value::Null)
    });
    registry.register_fn("stuck", move |_ctx| {
        counter.fetch_add(1, Ordering::SeqCst);
        std::future::pending()
    });
    let worker = start(&backend, registry, &observers);
    let quick = client
        .submit(JobSpec::new("quick", serde_json::Value::Null))
        .await
        .unwrap();
    let stuck = client
        .submit(JobSpec::new("stuck", serde_json::Value::Null))
        .await
        .unwrap();
    wait_status(&client, stuck, JobStatus::Running).await;
    wait_status(&client, quick, JobStatus::Running).await;
    let report = worker.shutdown(Duration::from_millis(500)).await;
    assert_eq!(report.released, 1);
    assert_eq!(
        client.get(quick).await.unwrap().unwrap().status,
        JobStatus::Completed
    );
    let job = client.get(stuck).await.unwrap().unwrap();
    assert_eq!(job.status, JobStatus::Queued, "handed back, not failed");
    assert_eq!(job.attempts, 0);
    assert_eq!(started.load(Ordering::SeqCst), 1);
    assert_eq!(observers.metrics.active_jobs(), 0);
}

/// Fail with an explicit decision is carried out as told.
pub async fn fail_decisions_are_followed(backend: Arc<dyn QueueBackend>) {
    let observers = Observers::default();
    let client = client(&backend, &observers);
    let ids = client
        .submit_batch(vec![
            JobSpec::new("f", serde_json::json!(1)).priority(Priority::High),
            JobSpec::new("f", serde_json::json!(2)),
        ])
        .await
        .unwrap();
    let mut leases = backend
        .fetch("f", 2, Duration::from_secs(30), now_ms())
        .await
        .unwrap();
    let second = leases.pop().unwrap();
    let first = leases.pop().unwrap();
    let retry_at = now_ms() + 3_600_000;
    let outcome = backend
        .fail(
            first.receipt,
            "later".into(),
            FailDecision::Retry { at: retry_at },
            now_ms(),
        )
        .await
        .unwrap();
    assert_eq!(outcome, AckOutcome::Ok);
    backend
        .fail(
            second.receipt.clone(),
            "never".into(),
            FailDecision::Dead,
            now_ms(),
        )
        .await
        .unwrap();
    let retrying = client.get(ids[0]).await.unwrap().unwrap();
    assert_eq!(
        (retrying.status, retrying.attempts, retrying.run_at),
        (JobStatus::Failed, 1, retry_at)
    );
    assert_eq!(retrying.last_error.as_deref(), Some("later"));
    let dead = client.get(ids[1]).await.unwrap().unwrap();
    assert_eq!((dead.status, dead.attempts), (JobStatus::Dead, 1));
    let stats = client.stats().await.unwrap();
    assert_eq!((stats.retrying, stats.dead, stats.running), (1, 1, 0));
    assert_eq!(
        backend
            .fail(second.receipt, "again".into(), FailDecision::Dead, now_ms())
            .await
            .unwrap(),
        AckOutcome::LeaseLost
    );
    assert_eq!(backend.promote_due(retry_at).await.unwrap(), 1);
    let again = backend
        .fetch("f", 2, Duration::from_secs(30), now_ms())
        .await
        .unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!((again[0].job.id, again[0].job.attempts), (ids[0], 1));
}

/// Declares one `#[tokio::test]` per case of the suite, each on the
/// `(guard, backend)` pair that `$fresh` (an expression, evaluated inside
/// the async test) makes; the guard (a temp dir, a server) lives as long as
/// the test. The list of cases lives here once, so no backend skips one.
///
/// ```ignore
/// ironforge_jobs::backend_suite!(fresh());
/// ```
#[macro_export]
macro_rules! backend_suite {
    (@list $($then:tt)*) => {
        $crate::backend_suite!($($then)* happy_path,
            retry_then_success,
            dead_letter_then_retry,
            priority_order,
            timeout_then_retry,
            delayed_job_waits,
            cancel_queued_and_scheduled,
            lease_expiry_reclaimed,
            renewed_lease_survives,
            worker_renews_long_jobs,
            poison_job_goes_dead,
            idempotency_dedup,
            validation_errors,
            unknown_kind_fails,
            progress_is_visible,
            graceful_shutdown,
            handlers_of_one_fetch_run_concurrently,
            small_fetches_overlap_and_run_each_job_once,
            fail_decisions_are_followed);
    };
    (@tests [$fresh:expr] $($case:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let (_guard, backend) = $fresh;
                $crate::testkit::$case(backend).await;
            }
        )*
    };
    (@run [$make:ident] $($case:ident),*) => {
        $( $crate::testkit::$case($make().await).await; )*
    };
    ($fresh:expr) => {
        $crate::backend_suite!(@list @tests [$fresh]);
    };
}

/// Runs every test of the suite, each on a fresh backend from `make`.
pub async fn run_all<F, Fut>(mut make: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Arc<dyn QueueBackend>>,
{
    crate::backend_suite!(@list @run [make]);
}
