//! The workflow runner on a real engine: jobs run in dependency order, each
//! failure policy, cancellation, replay against live states, a restart that
//! adopts a half-done workflow, and the reconcile that catches up with jobs
//! whose events it never saw; on the embedded store and on Redis.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use ironforge_jobs::engine::{Engine, EngineConfig, Store};
use ironforge_jobs::testkit::RedisServer;
use ironforge_jobs::workflow::{
    workflow_job_id, EventKind, FailurePolicy, JobState, MemoryJournal, RunnerConfig, RunnerError,
    WorkflowError, WorkflowEvent, WorkflowId, WorkflowJobSpec, WorkflowJournal, WorkflowRunner,
    WorkflowSpec, WorkflowStatus, WorkflowSummary, META_WORKFLOW_ID,
};
use ironforge_jobs::{
    BackoffPolicy, Client, ClientConfig, EmbeddedBackend, EmbeddedConfig, EventBus, HandlerError,
    JobSpec, JobStatus, Observers, RedisConfig, Registry, Worker, WorkerConfig,
};
use tokio::sync::Semaphore;

const WAIT: Duration = Duration::from_secs(20);

/// `ok` succeeds, `fail` fails for good, `flaky` fails (retryably), and
/// `gate` waits for a permit of `gate`.
fn handlers(gate: Arc<Semaphore>) -> Registry {
    let mut registry = Registry::new();
    registry
        .register_fn("ok", |ctx| async move { Ok(ctx.payload().clone()) })
        .register_fn("fail", |_| async { Err(HandlerError::permanent("boom")) })
        .register_fn("flaky", |_| async { Err(HandlerError::retryable("flaky")) })
        .register_fn("gate", move |_| {
            let gate = gate.clone();
            async move {
                let permit = gate
                    .acquire()
                    .await
                    .map_err(|e| HandlerError::permanent(e.to_string()))?;
                permit.forget();
                Ok(serde_json::Value::Null)
            }
        });
    registry
}

fn worker_config() -> WorkerConfig {
    WorkerConfig {
        idle_wait: Duration::from_millis(20),
        backoff: BackoffPolicy {
            base_ms: 10,
            cap_ms: 20,
        },
        ..WorkerConfig::default()
    }
}

enum Backing {
    Embedded(tempfile::TempDir),
    Redis(RedisServer, String),
}

impl Backing {
    fn embedded() -> Self {
        Backing::Embedded(tempfile::tempdir().unwrap())
    }

    fn redis(server: RedisServer) -> Self {
        let namespace = format!("wf-{}", uuid_suffix());
        Backing::Redis(server, namespace)
    }

    fn store(&self) -> Store {
        match self {
            Backing::Embedded(dir) => Store::Embedded {
                dir: dir.path().into(),
            },
            Backing::Redis(server, namespace) => {
                Store::Redis(RedisConfig::new(server.url()).namespace(namespace.clone()))
            }
        }
    }
}

fn uuid_suffix() -> String {
    WorkflowId::new_random().to_string()[24..].to_string()
}

async fn engine(backing: &Backing, gate: Arc<Semaphore>) -> Engine {
    Engine::start(EngineConfig {
        worker: Some((handlers(gate), worker_config())),
        ..EngineConfig::new(backing.store())
    })
    .await
    .unwrap()
}

fn job(key: &str, kind: &str, deps: &[&str]) -> WorkflowJobSpec {
    WorkflowJobSpec::new(
        key,
        JobSpec::new(kind, serde_json::json!({"key": key})),
        deps.to_vec(),
    )
}

fn spec(jobs: Vec<WorkflowJobSpec>, policy: FailurePolicy) -> WorkflowSpec {
    WorkflowSpec {
        jobs,
        failure_policy: policy,
        ..WorkflowSpec::default()
    }
}

async fn finish(runner: &WorkflowRunner, id: WorkflowId) -> WorkflowSummary {
    let summary = runner.wait(id, WAIT).await.unwrap();
    assert_ne!(
        summary.state.status,
        WorkflowStatus::Running,
        "{summary:#?}"
    );
    summary
}

async fn events(runner: &WorkflowRunner, id: WorkflowId) -> Vec<WorkflowEvent> {
    runner.history(id).await.unwrap().unwrap().events
}

/// Seq of the first event of `kind` for `key`.
fn seq_of(events: &[WorkflowEvent], key: &str, kind: EventKind) -> Option<u64> {
    events
        .iter()
        .find(|e| e.key.as_deref() == Some(key) && e.kind == kind)
        .map(|e| e.seq)
}

/// Root -> 8 middle jobs -> a join, then a second layer of 3 after the join.
fn fan_spec() -> (WorkflowSpec, Vec<(String, Vec<String>)>) {
    let mut jobs = vec![job("root", "ok", &[])];
    let middle: Vec<String> = (0..8).map(|i| format!("m{i}")).collect();
    for m in &middle {
        jobs.push(job(m, "ok", &["root"]));
    }
    let refs: Vec<&str> = middle.iter().map(String::as_str).collect();
    jobs.push(job("join", "ok", &refs));
    for i in 0..3 {
        jobs.push(job(&format!("tail{i}"), "ok", &["join"]));
    }
    let deps = jobs
        .iter()
        .map(|j| (j.key.clone(), j.depends_on.clone()))
        .collect();
    (spec(jobs, FailurePolicy::FailDependants), deps)
}

async fn fan_out_fan_in(backing: Backing) {
    let engine = engine(&backing, Arc::new(Semaphore::new(0))).await;
    let runner = engine.workflows();
    let (spec, deps) = fan_spec();
    let id = runner.submit(spec).await.unwrap();
    let summary = finish(runner, id).await;
    assert_eq!(summary.state.status, WorkflowStatus::Completed);
    assert_eq!(summary.state.counts.completed, deps.len());

    let history = events(runner, id).await;
    for (key, dependencies) in &deps {
        let started = seq_of(&history, key, EventKind::Started).expect("every job started");
        for dep in dependencies {
            let done = seq_of(&history, dep, EventKind::Completed).unwrap();
            assert!(
                done < started,
                "{key} started (seq {started}) before {dep} completed (seq {done})"
            );
        }
        let job = engine
            .client()
            .get(workflow_job_id(id, key))
            .await
            .unwrap()
            .expect("the job has its derived id");
        assert_eq!(job.status, JobStatus::Completed);
        assert_eq!(job.metadata[META_WORKFLOW_ID], id.to_string());
        assert_eq!(job.partition, runner.partition_of(id));
    }
    let seqs: Vec<u64> = history.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=history.len() as u64).collect::<Vec<_>>());
    assert_eq!(
        history.last().map(|e| (e.key.clone(), e.kind)),
        Some((None, EventKind::Completed))
    );
    engine.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_out_fan_in_runs_in_dependency_order_embedded() {
    fan_out_fan_in(Backing::embedded()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_out_fan_in_runs_in_dependency_order_redis() {
    fan_out_fan_in(Backing::redis(RedisServer::start())).await;
}

/// a -> b (fails) -> c -> d, and a -> e.
fn failing_spec(policy: FailurePolicy, b_kind: &str) -> WorkflowSpec {
    let mut b = job("b", b_kind, &["a"]);
    b.spec.max_retries = Some(if b_kind == "flaky" { 1 } else { 0 });
    spec(
        vec![
            job("a", "ok", &[]),
            b,
            job("c", "ok", &["b"]),
            job("d", "ok", &["c"]),
            job("e", "ok", &["a"]),
        ],
        policy,
    )
}

async fn failure_policies(backing: Backing) {
    let engine = engine(&backing, Arc::new(Semaphore::new(0))).await;
    let runner = engine.workflows();
    let state = |s: &WorkflowSummary, key: &str| s.state.jobs[key].state;

    let id = runner
        .submit(failing_spec(FailurePolicy::FailDependants, "fail"))
        .await
        .unwrap();
    let s = finish(runner, id).await;
    assert_eq!(s.state.status, WorkflowStatus::Failed);
    assert_eq!(state(&s, "b"), JobState::Failed);
    assert_eq!(s.state.jobs["b"].error.as_deref(), Some("boom"));
    assert_eq!(
        (state(&s, "c"), state(&s, "d")),
        (JobState::Failed, JobState::Failed)
    );
    assert_eq!(
        s.state.jobs["c"].error.as_deref(),
        Some("dependency `b` failed")
    );
    assert_eq!(state(&s, "e"), JobState::Completed);
    let history = events(runner, id).await;
    assert_eq!(seq_of(&history, "c", EventKind::Started), None);
    assert_eq!(
        engine.client().get(workflow_job_id(id, "c")).await.unwrap(),
        None
    );

    let id = runner
        .submit(failing_spec(FailurePolicy::SkipDependants, "fail"))
        .await
        .unwrap();
    let s = finish(runner, id).await;
    assert_eq!(s.state.status, WorkflowStatus::Failed);
    assert_eq!(
        (state(&s, "c"), state(&s, "d")),
        (JobState::Skipped, JobState::Skipped)
    );
    assert_eq!(state(&s, "e"), JobState::Completed);

    let id = runner
        .submit(failing_spec(FailurePolicy::Continue, "fail"))
        .await
        .unwrap();
    let s = finish(runner, id).await;
    assert_eq!(s.state.status, WorkflowStatus::Failed);
    assert_eq!(state(&s, "b"), JobState::Failed);
    assert_eq!(
        (state(&s, "c"), state(&s, "d")),
        (JobState::Completed, JobState::Completed)
    );
    let history = events(runner, id).await;
    assert!(seq_of(&history, "b", EventKind::Failed) < seq_of(&history, "c", EventKind::Started));

    // A retryable failure is retried by the worker, then fails for good.
    let id = runner
        .submit(failing_spec(FailurePolicy::FailDependants, "flaky"))
        .await
        .unwrap();
    let s = finish(runner, id).await;
    assert_eq!(state(&s, "b"), JobState::Failed);
    assert_eq!(s.state.jobs["b"].retries, 1);
    let history = events(runner, id).await;
    assert!(seq_of(&history, "b", EventKind::Retried).is_some());
    engine.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failure_policies_fail_skip_or_continue_embedded() {
    failure_policies(Backing::embedded()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failure_policies_fail_skip_or_continue_redis() {
    failure_policies(Backing::redis(RedisServer::start())).await;
}

#[tokio::test]
async fn invalid_workflows_are_refused_naming_the_keys() {
    let backing = Backing::embedded();
    let engine = engine(&backing, Arc::new(Semaphore::new(0))).await;
    let runner = engine.workflows();
    let refuse = |jobs| async { runner.submit(spec(jobs, FailurePolicy::default())).await };

    match refuse(vec![
        job("a", "ok", &["c"]),
        job("b", "ok", &["a"]),
        job("c", "ok", &["b"]),
    ])
    .await
    {
        Err(RunnerError::Invalid(WorkflowError::Cycle { keys })) => {
            assert_eq!(keys, ["a", "c", "b"])
        }
        other => panic!("{other:?}"),
    }
    match refuse(vec![job("a", "ok", &["ghost"])]).await {
        Err(RunnerError::Invalid(WorkflowError::UnknownDependencies { missing })) => {
            assert_eq!(
                (missing[0].key.as_str(), missing[0].dependency.as_str()),
                ("a", "ghost")
            )
        }
        other => panic!("{other:?}"),
    }
    match refuse(vec![job("a", "ok", &[]), job("a", "ok", &[])]).await {
        Err(RunnerError::Invalid(WorkflowError::DuplicateKeys { keys })) => assert_eq!(keys, ["a"]),
        other => panic!("{other:?}"),
    }
    assert_eq!(runner.live_count(), 0);
    assert_eq!(engine.client().stats().await.unwrap().queued.total(), 0);
    engine.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_what_has_not_run_and_records_what_was_running() {
    let backing = Backing::embedded();
    let gate = Arc::new(Semaphore::new(0));
    let engine = engine(&backing, gate.clone()).await;
    let runner = engine.workflows();
    // `held` runs and waits; `later` waits in the queue for its run_at;
    // `after` depends on `held` and never gets queued.
    let mut later = job("later", "ok", &[]);
    later.spec.run_at = Some(u64::MAX / 2);
    let id = runner
        .submit(spec(
            vec![
                job("held", "gate", &[]),
                later,
                job("after", "ok", &["held"]),
            ],
            FailurePolicy::default(),
        ))
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    while runner.get(id).await.unwrap().unwrap().state.jobs["held"].state != JobState::Running {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    runner.cancel(id).await.unwrap();
    let s = runner.get(id).await.unwrap().unwrap();
    assert_eq!(s.state.status, WorkflowStatus::Cancelled);
    assert_eq!(s.state.jobs["later"].state, JobState::Cancelled);
    assert_eq!(s.state.jobs["after"].state, JobState::Cancelled);
    assert_eq!(s.state.jobs["held"].state, JobState::Running);
    let later_job = engine
        .client()
        .get(workflow_job_id(id, "later"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(later_job.status, JobStatus::Cancelled);

    gate.add_permits(1);
    let s = finish(runner, id).await;
    assert_eq!(s.state.status, WorkflowStatus::Cancelled);
    assert_eq!(s.state.jobs["held"].state, JobState::Completed);
    assert_eq!(
        engine
            .client()
            .get(workflow_job_id(id, "after"))
            .await
            .unwrap(),
        None
    );
    // Cancelling again, or an unknown workflow.
    runner.cancel(id).await.unwrap();
    assert!(matches!(
        runner.cancel(WorkflowId::new_random()).await,
        Err(RunnerError::NotFound(_))
    ));
    engine.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_at_every_seq_matches_the_live_state_seen_at_that_seq() {
    let backing = Backing::embedded();
    let gate = Arc::new(Semaphore::new(0));
    let engine = engine(&backing, gate.clone()).await;
    let runner = engine.workflows();
    let mut jobs = vec![job("root", "ok", &[])];
    for i in 0..4 {
        jobs.push(job(&format!("g{i}"), "gate", &["root"]));
    }
    jobs.push(job("bad", "fail", &["root"]));
    jobs.push(job("join", "ok", &["g0", "g1", "g2", "g3"]));
    jobs.push(job("after_bad", "ok", &["bad"]));
    let id = runner
        .submit(spec(jobs, FailurePolicy::SkipDependants))
        .await
        .unwrap();

    // Let the gated jobs through one by one, sampling the live state.
    let mut seen = BTreeMap::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut released = 0;
    let mut round = 0u32;
    loop {
        round += 1;
        let live = runner.get(id).await.unwrap().unwrap();
        let running = live.state.status == WorkflowStatus::Running;
        seen.insert(live.state.seq, live.state);
        if !running {
            break;
        }
        if released < 4 && round % 5 == 0 {
            gate.add_permits(1);
            released += 1;
        }
        assert!(tokio::time::Instant::now() < deadline, "{seen:#?}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let last = events(runner, id).await.len() as u64;
    assert!(seen.len() >= 3, "sampled too few states: {}", seen.len());
    for seq in 0..=last {
        let replayed = runner.replay_until(id, seq).await.unwrap();
        assert_eq!(replayed.seq, seq);
        if let Some(live) = seen.get(&seq) {
            assert_eq!(&replayed, live, "seq {seq}");
        }
    }
    assert!(matches!(
        runner.replay_until(id, last + 1).await,
        Err(RunnerError::SeqOutOfRange { .. })
    ));
    engine.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_engine_adopts_a_half_done_workflow_and_finishes_it() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Arc::new(MemoryJournal::default());
    let start = |gate: Arc<Semaphore>| {
        let journal: Arc<dyn WorkflowJournal> = journal.clone();
        let store = Store::Embedded {
            dir: dir.path().into(),
        };
        async move {
            Engine::start(EngineConfig {
                worker: Some((handlers(gate), worker_config())),
                journal: Some(journal),
                ..EngineConfig::new(store)
            })
            .await
            .unwrap()
        }
    };
    let first = start(Arc::new(Semaphore::new(0))).await;
    let id = first
        .workflows()
        .submit(spec(
            vec![
                job("a", "ok", &[]),
                job("b", "gate", &["a"]),
                job("c", "ok", &["b"]),
            ],
            FailurePolicy::default(),
        ))
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    while first.workflows().get(id).await.unwrap().unwrap().state.jobs["b"].state
        != JobState::Running
    {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The gate never opens: shutting down hands `b` back to the queue.
    first.shutdown(Duration::ZERO).await;
    let record = journal.load(id).await.unwrap().unwrap();
    assert!(!record.is_finished());
    assert_eq!(
        ironforge_jobs::workflow::replay(&record.spec, &record.events, u64::MAX)
            .unwrap()
            .jobs["a"]
            .state,
        JobState::Completed
    );

    let second = start(Arc::new(Semaphore::new(1))).await;
    let s = finish(second.workflows(), id).await;
    assert_eq!(s.state.status, WorkflowStatus::Completed);
    let history = events(second.workflows(), id).await;
    let starts_of_a = history
        .iter()
        .filter(|e| e.key.as_deref() == Some("a") && e.kind == EventKind::Started)
        .count();
    assert_eq!(starts_of_a, 1, "a ran once: {history:#?}");
    assert!(journal.load(id).await.unwrap().unwrap().is_finished());
    second.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_finished_out_of_sight_are_picked_up_by_the_periodic_reconcile() {
    let dir = tempfile::tempdir().unwrap();
    let backend = Arc::new(
        EmbeddedBackend::open(dir.path().join("jobs.redb"), EmbeddedConfig::default()).unwrap(),
    );
    let client = Client::new(backend.clone());
    let runner = WorkflowRunner::start(
        client,
        Arc::new(MemoryJournal::default()),
        None,
        None,
        RunnerConfig {
            reconcile_interval: Duration::from_millis(50),
            reconcile_max_reads: 2,
            ..RunnerConfig::default()
        },
    );
    // A worker reporting to other observers: the runner sees none of its
    // events, like jobs run by another node during a handover.
    let worker = Worker::start(
        backend,
        handlers(Arc::new(Semaphore::new(0))),
        worker_config(),
        Observers::default(),
    );
    let mut jobs = vec![job("root", "ok", &[])];
    for i in 0..5 {
        jobs.push(job(&format!("m{i}"), "ok", &["root"]));
    }
    jobs.push(job("sink", "ok", &["m0", "m1", "m2", "m3", "m4"]));
    let id = runner
        .submit(spec(jobs, FailurePolicy::default()))
        .await
        .unwrap();
    let s = finish(&runner, id).await;
    assert_eq!(s.state.status, WorkflowStatus::Completed);
    worker.shutdown(Duration::from_secs(1)).await;
    runner.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_forgets_partitions_and_reads_come_from_the_journal() {
    let dir = tempfile::tempdir().unwrap();
    let backend = Arc::new(
        EmbeddedBackend::open(dir.path().join("jobs.redb"), EmbeddedConfig::default()).unwrap(),
    );
    let journal = Arc::new(MemoryJournal::default());
    let runner = WorkflowRunner::start(
        Client::new(backend),
        journal.clone(),
        None,
        None,
        RunnerConfig::default(),
    );
    let id = runner
        .submit(spec(vec![job("a", "ok", &[])], FailurePolicy::default()))
        .await
        .unwrap();
    let partition = runner.partition_of(id);
    assert_eq!(runner.live_count(), 1);
    runner.release(&[partition]).await;
    assert_eq!(runner.live_count(), 0);
    let from_journal = runner.get(id).await.unwrap().unwrap();
    assert_eq!(from_journal.state.jobs["a"].state, JobState::Queued);
    assert_eq!(runner.adopt(&[partition]).await.unwrap(), 1);
    assert_eq!(runner.live_count(), 1);
    // Resubmitting the same id and spec is a no-op; another spec is a conflict.
    let mut again = runner.history(id).await.unwrap().unwrap().spec;
    assert_eq!(runner.submit(again.clone()).await.unwrap(), id);
    again.name = Some("other".into());
    assert!(matches!(
        runner.submit(again).await,
        Err(RunnerError::Conflict(_))
    ));
    runner.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_event_subscription_is_caught_up_by_reconciling() {
    let dir = tempfile::tempdir().unwrap();
    let backend = Arc::new(
        EmbeddedBackend::open(dir.path().join("jobs.redb"), EmbeddedConfig::default()).unwrap(),
    );
    // A bus of 4 events: enqueueing 200 jobs alone overruns it.
    let observers = Observers {
        events: EventBus::new(4),
        ..Observers::default()
    };
    let client = Client::with_config(
        backend.clone(),
        ClientConfig {
            observers: observers.clone(),
            ..ClientConfig::default()
        },
    );
    let runner = WorkflowRunner::start(
        client,
        Arc::new(MemoryJournal::default()),
        None,
        None,
        RunnerConfig {
            // Only the lag path can catch up within the test.
            reconcile_interval: Duration::from_secs(3_600),
            ..RunnerConfig::default()
        },
    );
    let worker = Worker::start(
        backend,
        handlers(Arc::new(Semaphore::new(0))),
        worker_config(),
        observers,
    );
    let mut jobs = vec![job("root", "ok", &[])];
    let middle: Vec<String> = (0..200).map(|i| format!("m{i}")).collect();
    for m in &middle {
        jobs.push(job(m, "ok", &["root"]));
    }
    let refs: Vec<&str> = middle.iter().map(String::as_str).collect();
    jobs.push(job("sink", "ok", &refs));
    let id = runner
        .submit(spec(jobs, FailurePolicy::default()))
        .await
        .unwrap();
    let s = finish(&runner, id).await;
    assert_eq!(s.state.status, WorkflowStatus::Completed);
    assert_eq!(s.state.counts.completed, 202);
    worker.shutdown(Duration::from_secs(1)).await;
    runner.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workflows_of_partitions_no_longer_owned_are_released_by_the_periodic_pass() {
    let dir = tempfile::tempdir().unwrap();
    let backend = Arc::new(
        EmbeddedBackend::open(dir.path().join("jobs.redb"), EmbeddedConfig::default()).unwrap(),
    );
    let journal = Arc::new(MemoryJournal::default());
    let owned = ironforge_jobs::OwnedPartitions::all(16);
    let runner = WorkflowRunner::start(
        Client::new(backend),
        journal.clone(),
        Some(owned.clone()),
        None,
        RunnerConfig {
            reconcile_interval: Duration::from_millis(20),
            ..RunnerConfig::default()
        },
    );
    let id = runner
        .submit(spec(vec![job("a", "ok", &[])], FailurePolicy::default()))
        .await
        .unwrap();
    let partition = runner.partition_of(id);
    assert_eq!(runner.live_count(), 1);
    owned.set((0..16).filter(|p| *p != partition));
    let deadline = tokio::time::Instant::now() + WAIT;
    while runner.live_count() > 0 {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let record = journal.load(id).await.unwrap().unwrap();
    assert_eq!(record.events.len(), 2, "created and queued are journaled");
    owned.set(0..16);
    assert_eq!(runner.adopt(&[partition]).await.unwrap(), 1);
    assert_eq!(runner.live_count(), 1);
    runner.shutdown().await;
}

/// Routes every partition to another runner in the same process.
struct ToOther(WorkflowRunner);

#[async_trait::async_trait]
impl ironforge_jobs::workflow::WorkflowRouting for ToOther {
    fn owner_elsewhere(&self, _partition: u32) -> Option<String> {
        Some("other".into())
    }

    async fn forward_submit(
        &self,
        owner: &str,
        partition: u32,
        spec: &WorkflowSpec,
    ) -> Result<(), ironforge_jobs::workflow::ForwardError> {
        self.0
            .submit_local(spec.clone())
            .await
            .map(|_| ())
            .map_err(|e| ironforge_jobs::workflow::ForwardError {
                partition,
                owner: owner.into(),
                reason: e.to_string(),
            })
    }

    async fn forward_cancel(
        &self,
        owner: &str,
        partition: u32,
        id: WorkflowId,
    ) -> Result<(), ironforge_jobs::workflow::ForwardError> {
        self.0
            .cancel(id)
            .await
            .map_err(|e| ironforge_jobs::workflow::ForwardError {
                partition,
                owner: owner.into(),
                reason: e.to_string(),
            })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submissions_and_cancels_of_partitions_owned_elsewhere_are_forwarded() {
    let dir = tempfile::tempdir().unwrap();
    let backend = Arc::new(
        EmbeddedBackend::open(dir.path().join("jobs.redb"), EmbeddedConfig::default()).unwrap(),
    );
    let journal: Arc<dyn WorkflowJournal> = Arc::new(MemoryJournal::default());
    let client = Client::new(backend);
    let owner = WorkflowRunner::start(
        client.clone(),
        journal.clone(),
        None,
        None,
        RunnerConfig::default(),
    );
    let front = WorkflowRunner::start(
        client,
        journal,
        Some(ironforge_jobs::OwnedPartitions::none()),
        Some(Arc::new(ToOther(owner.clone()))),
        RunnerConfig::default(),
    );
    let mut later = job("later", "ok", &[]);
    later.spec.run_at = Some(u64::MAX / 2);
    let id = front
        .submit(spec(
            vec![later, job("b", "ok", &["later"])],
            FailurePolicy::default(),
        ))
        .await
        .unwrap();
    assert_eq!((front.live_count(), owner.live_count()), (0, 1));
    // Reads on the front come from the shared journal.
    let seen = front.get(id).await.unwrap().unwrap();
    assert_eq!(seen.state.jobs["later"].state, JobState::Queued);
    front.cancel(id).await.unwrap();
    let s = finish(&front, id).await;
    assert_eq!(s.state.status, WorkflowStatus::Cancelled);
    assert_eq!(owner.live_count(), 0);
    front.shutdown().await;
    owner.shutdown().await;
}
