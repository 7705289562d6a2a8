//! Workflows on the embedded store survive their process: the engine keeps
//! them in `workflows.redb` next to the jobs, and the next engine on the
//! same directory adopts and finishes the unfinished ones, after a graceful
//! shutdown and after SIGKILL. Also the [`RedbJournal`] itself: records
//! round-trip through reopening, duplicate appends are dropped, and the
//! finished bound holds.
//!
//! The killed process is this test binary itself, re-run with `--exact
//! workflow_crash_child_process` and `IRONFORGE_WORKFLOW_CRASH_DIR` set (as
//! in `embedded_durability.rs`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use ironforge_jobs::engine::{Engine, EngineConfig, Store, WORKFLOW_JOURNAL_FILE};
use ironforge_jobs::workflow::{
    is_workflow_end, workflow_job_id, EventKind, JobState, RedbJournal, WorkflowEvent, WorkflowId,
    WorkflowJobSpec, WorkflowJournal, WorkflowRecord, WorkflowSpec, WorkflowStatus,
};
use ironforge_jobs::{BackoffPolicy, JobSpec, JobStatus, Registry, WorkerConfig};
use tokio::sync::mpsc;

const CRASH_DIR_ENV: &str = "IRONFORGE_WORKFLOW_CRASH_DIR";
const WAIT: Duration = Duration::from_secs(20);
const KEYS: [&str; 4] = ["slow", "left", "right", "join"];

/// `quick` returns at once. `slow` reports on `started` (if given) and then
/// never returns, standing for a job still running when the process stops;
/// without `started` it returns at once too.
fn handlers(started: Option<mpsc::UnboundedSender<()>>) -> Registry {
    let mut registry = Registry::new();
    registry
        .register_fn("quick", |ctx| async move { Ok(ctx.payload().clone()) })
        .register_fn("slow", move |_| {
            let started = started.clone();
            async move {
                if let Some(started) = started {
                    let _ = started.send(());
                    std::future::pending::<()>().await;
                }
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

async fn engine(dir: &Path, started: Option<mpsc::UnboundedSender<()>>) -> Engine {
    Engine::start(EngineConfig {
        worker: Some((handlers(started), worker_config())),
        ..EngineConfig::new(Store::Embedded { dir: dir.into() })
    })
    .await
    .unwrap()
}

/// slow -> (left, right) -> join: everything after `slow` waits on it.
fn diamond() -> WorkflowSpec {
    let job = |key: &str, kind: &str, deps: &[&str]| {
        WorkflowJobSpec::new(
            key,
            JobSpec::new(kind, serde_json::json!({ "key": key })),
            deps.to_vec(),
        )
    };
    WorkflowSpec {
        name: Some("durable".into()),
        jobs: vec![
            job("slow", "slow", &[]),
            job("left", "quick", &["slow"]),
            job("right", "quick", &["slow"]),
            job("join", "quick", &["left", "right"]),
        ],
        ..WorkflowSpec::default()
    }
}

/// Seqs run 1, 2, 3... without gaps and the workflow was created once.
fn assert_continuous(events: &[WorkflowEvent]) {
    for (i, event) in events.iter().enumerate() {
        assert_eq!(event.seq, i as u64 + 1, "gap or repeat in {events:#?}");
    }
    let created = events
        .iter()
        .filter(|e| e.key.is_none() && e.kind == EventKind::Created)
        .count();
    assert_eq!(created, 1, "{events:#?}");
}

/// The second engine finished `id`: completed, every job completed in the
/// workflow and in the queue, the history continuous and ending the
/// workflow, and the journal no longer lists it as unfinished.
async fn assert_finished_by(engine: &Engine, id: WorkflowId) -> WorkflowRecord {
    let summary = engine.workflows().wait(id, WAIT).await.unwrap();
    assert_eq!(
        summary.state.status,
        WorkflowStatus::Completed,
        "{summary:#?}"
    );
    for key in KEYS {
        assert_eq!(summary.state.jobs[key].state, JobState::Completed, "{key}");
        let job = engine
            .client()
            .get(workflow_job_id(id, key))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(job.status, JobStatus::Completed, "{key}");
    }
    let record = engine.workflows().history(id).await.unwrap().unwrap();
    assert_continuous(&record.events);
    assert!(record.events.last().is_some_and(is_workflow_end));
    let slow_started = record
        .events
        .iter()
        .filter(|e| e.key.as_deref() == Some("slow") && e.kind == EventKind::Started)
        .count();
    assert!(slow_started >= 1, "{:#?}", record.events);
    record
}

/// Reads the journal file of a stopped engine.
async fn journaled(dir: &Path, id: WorkflowId) -> WorkflowRecord {
    let journal = RedbJournal::open(dir.join(WORKFLOW_JOURNAL_FILE), 10).unwrap();
    let record = journal.load(id).await.unwrap().expect("workflow journaled");
    journal.close();
    record
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workflow_cut_short_by_shutdown_is_finished_by_the_next_engine() {
    let dir = tempfile::tempdir().unwrap();
    let (started_tx, mut started) = mpsc::unbounded_channel();
    let first = engine(dir.path(), Some(started_tx)).await;
    let id = first.workflows().submit(diamond()).await.unwrap();
    started.recv().await.unwrap();
    // `slow` never returns here: shutting down hands it back to the queue.
    first.shutdown(Duration::ZERO).await;

    let before = journaled(dir.path(), id).await;
    assert!(!before.is_finished());
    assert_eq!(before.spec.name.as_deref(), Some("durable"));
    assert_continuous(&before.events);

    let second = engine(dir.path(), None).await;
    let after = assert_finished_by(&second, id).await;
    assert_eq!(
        after.events[..before.events.len()],
        before.events[..],
        "the second engine continues the first one's history"
    );
    second.shutdown(Duration::from_secs(1)).await;

    // Finished for good: a third engine has nothing to adopt.
    let third = engine(dir.path(), None).await;
    assert_eq!(
        third
            .workflows()
            .get(id)
            .await
            .unwrap()
            .unwrap()
            .state
            .status,
        WorkflowStatus::Completed
    );
    third.shutdown(Duration::from_secs(1)).await;
    assert!(journaled(dir.path(), id).await.is_finished());
}

fn event(seq: u64, key: Option<&str>, kind: EventKind) -> WorkflowEvent {
    WorkflowEvent {
        seq,
        at: 1_000 + seq,
        key: key.map(str::to_string),
        kind,
        error: None,
    }
}

fn created(id: WorkflowId) -> WorkflowSpec {
    WorkflowSpec {
        id: Some(id),
        ..diamond()
    }
}

#[tokio::test]
async fn journal_records_round_trip_through_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("workflows.redb");
    let (a, b) = (WorkflowId::new_random(), WorkflowId::new_random());
    let history = vec![
        event(1, None, EventKind::Created),
        event(2, Some("slow"), EventKind::Queued),
        event(3, Some("slow"), EventKind::Started),
    ];

    let journal = RedbJournal::open(&path, 100).unwrap();
    journal.create(a, 4, &created(a)).await.unwrap();
    journal.create(b, 9, &created(b)).await.unwrap();
    // A second create of the same id keeps the first record.
    journal
        .create(a, 5, &WorkflowSpec::default())
        .await
        .unwrap();
    journal.append(a, 4, &history[..2]).await.unwrap();
    // Re-appending what is there, overlapping or all of it, adds only what is new.
    journal.append(a, 4, &history[..2]).await.unwrap();
    journal.append(a, 4, &history[1..]).await.unwrap();
    journal.append(a, 4, &history).await.unwrap();
    journal.close();

    let journal = RedbJournal::open(&path, 100).unwrap();
    let record = journal.load(a).await.unwrap().unwrap();
    assert_eq!(
        record,
        WorkflowRecord {
            partition: 4,
            spec: created(a),
            events: history.clone(),
        }
    );
    assert!(journal.load(b).await.unwrap().unwrap().events.is_empty());
    assert_eq!(journal.load(WorkflowId::new_random()).await.unwrap(), None);
    assert_eq!(journal.unfinished(&[4]).await.unwrap(), vec![a]);
    let mut both = journal.unfinished(&[9, 4, 9, 7]).await.unwrap();
    both.sort();
    let mut expected = vec![a, b];
    expected.sort();
    assert_eq!(both, expected);
    assert!(journal.unfinished(&[0, 5]).await.unwrap().is_empty());

    let end = event(4, None, EventKind::Completed);
    journal
        .append(a, 4, std::slice::from_ref(&end))
        .await
        .unwrap();
    journal
        .append(a, 4, std::slice::from_ref(&end))
        .await
        .unwrap();
    journal.close();

    let journal = RedbJournal::open(&path, 100).unwrap();
    let record = journal.load(a).await.unwrap().unwrap();
    assert!(record.is_finished());
    assert_eq!(record.events.len(), 4);
    assert_eq!(record.events[3], end);
    assert!(journal.unfinished(&[4]).await.unwrap().is_empty());
    assert_eq!(journal.unfinished(&[4, 9]).await.unwrap(), vec![b]);
}

#[tokio::test]
async fn the_journal_forgets_the_oldest_finished_workflows_beyond_its_bound() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("workflows.redb");
    let journal = RedbJournal::open(&path, 3).unwrap();
    let running = WorkflowId::new_random();
    journal.create(running, 0, &created(running)).await.unwrap();
    journal
        .append(running, 0, &[event(1, None, EventKind::Created)])
        .await
        .unwrap();
    let mut finished = Vec::new();
    for _ in 0..5 {
        let id = WorkflowId::new_random();
        journal.create(id, 1, &created(id)).await.unwrap();
        journal
            .append(
                id,
                1,
                &[
                    event(1, None, EventKind::Created),
                    event(2, None, EventKind::Cancelled),
                ],
            )
            .await
            .unwrap();
        finished.push(id);
    }
    journal.close();

    let journal = RedbJournal::open(&path, 3).unwrap();
    for id in &finished[..2] {
        assert_eq!(journal.load(*id).await.unwrap(), None, "oldest forgotten");
    }
    for id in &finished[2..] {
        assert!(journal.load(*id).await.unwrap().unwrap().is_finished());
    }
    // Unfinished workflows are never forgotten, however many finish.
    assert_eq!(
        journal.load(running).await.unwrap().unwrap().events.len(),
        1
    );
    assert_eq!(journal.unfinished(&[0, 1]).await.unwrap(), vec![running]);
    // The bound keeps holding after reopening.
    let late = WorkflowId::new_random();
    journal.create(late, 1, &created(late)).await.unwrap();
    journal
        .append(late, 1, &[event(1, None, EventKind::Failed)])
        .await
        .unwrap();
    assert_eq!(journal.load(finished[2]).await.unwrap(), None);
    assert!(journal.load(late).await.unwrap().is_some());
}

/// Helper process for `an_acknowledged_workflow_survives_sigkill`; does
/// nothing unless started by it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workflow_crash_child_process() {
    let Some(dir) = std::env::var_os(CRASH_DIR_ENV).map(PathBuf::from) else {
        return;
    };
    let (started_tx, mut started) = mpsc::unbounded_channel();
    let engine = engine(&dir, Some(started_tx)).await;
    let id = engine.workflows().submit(diamond()).await.unwrap();
    // Written only once the submission was acknowledged.
    std::fs::write(dir.join("acked.tmp"), id.to_string()).unwrap();
    std::fs::rename(dir.join("acked.tmp"), dir.join("acked")).unwrap();
    started.recv().await.unwrap();
    std::fs::write(dir.join("slow-started"), b"1").unwrap();
    std::future::pending::<()>().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acknowledged_workflow_survives_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "workflow_crash_child_process", "--nocapture"])
        .env(CRASH_DIR_ENV, dir.path())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + WAIT;
    while !(dir.path().join("acked").exists() && dir.path().join("slow-started").exists()) {
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

    let id: WorkflowId = std::fs::read_to_string(dir.path().join("acked"))
        .unwrap()
        .parse()
        .unwrap();
    let engine = engine(dir.path(), None).await;
    assert_finished_by(&engine, id).await;
    engine.shutdown(Duration::from_secs(1)).await;
}
