//! The async shell that runs workflows on the job engine: it records each
//! accepted workflow in a [`WorkflowJournal`], enqueues the jobs the pure
//! [`Workflow`] names as ready, and advances the workflow from the job
//! events the workers publish. The state machine decides; this file only
//! moves events between the engine, the journal and the queue.
//!
//! How a workflow's jobs look in the queue (the same on every node, so any
//! node can find a workflow job from the journal record alone):
//!
//! - job id: [`workflow_job_id`] of (workflow id, job key), a UUID v8 whose
//!   first 48 bits are the workflow id's timestamp and the rest a SHA-256 of
//!   both, so re-enqueueing after a restart or a takeover finds the same job;
//! - `partition_key`: the workflow id, overriding the user's, so the whole
//!   workflow lives in one partition and one owner drives it;
//! - `idempotency_key`: `workflow:<workflow id>:<key>` (or
//!   `workflow:<workflow id>:<job id>` when that would exceed the job key
//!   limit), overriding the user's, so enqueueing twice is a no-op;
//! - metadata [`META_WORKFLOW_ID`] and [`META_WORKFLOW_JOB`] name the
//!   workflow and the job key.
//!
//! Job events and what they do to the workflow: `running` -> started,
//! `completed` -> completed (then the newly ready jobs are enqueued),
//! `failed` (a retry is pending) -> retried, `dead` -> failed with the
//! workflow's failure policy, `cancelled` by someone else than the workflow
//! -> failed too. Late or repeated events that no longer fit are ignored.
//! A job cancelled with its workflow while a worker already took it runs
//! to its end in the queue; the workflow keeps it as cancelled.
//!
//! Bounds (defaults in brackets, see [`RunnerConfig`]): live workflows
//! driven at once [10,000], jobs of live workflows [1,000,000] (the job-id
//! index holds at most that many), job events handled per batch [4,096],
//! job reads per periodic reconcile pass [1,000] every [5 s], reads in
//! flight [32], jobs per enqueue call [`ENQUEUE_CHUNK`] (1,024), enqueue
//! requests waiting [`ENQUEUE_QUEUE`] (256). A lagging event subscription
//! triggers a full reconcile of the live workflows' unfinished jobs
//! (bounded by the live-job limit).
//!
//! Order of effects: a workflow's new events reach the journal before the
//! jobs they queue are enqueued, so a new owner restoring from the journal
//! never misses a job that ran; it may find a queued job not yet in the
//! queue, which adopting enqueues (idempotently).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Bound;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use parking_lot::Mutex;
use sha2::{Digest, Sha256};
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::client::Client;
use crate::clock::now_ms;
use crate::error::{BackendError, JobError};
use crate::job::{Job, JobId, JobSpec, JobStatus};
use crate::observe::JobEvent;
use crate::partition::OwnedPartitions;
use crate::workflow::engine::{Workflow, WorkflowSummary};
use crate::workflow::error::{ReplayError, WorkflowError};
use crate::workflow::event::WorkflowEvent;
use crate::workflow::journal::{JournalError, WorkflowJournal, WorkflowRecord};
use crate::workflow::replay::replay;
use crate::workflow::routing::{ForwardError, WorkflowRouting};
use crate::workflow::spec::{WorkflowId, WorkflowLimits, WorkflowSpec};
use crate::workflow::state::{JobState, WorkflowState, WorkflowStatus};

/// Workflows driven at once before submissions are refused [10,000].
pub const DEFAULT_MAX_LIVE_WORKFLOWS: usize = 10_000;
/// Jobs of all live workflows together before submissions are refused [1,000,000].
pub const DEFAULT_MAX_LIVE_JOBS: usize = 1_000_000;
/// Job events taken from the subscription per batch [4,096].
pub const DEFAULT_EVENT_BATCH: usize = 4_096;
/// Time between periodic reconcile passes [5 s].
pub const DEFAULT_RECONCILE_INTERVAL: Duration = Duration::from_secs(5);
/// Job reads per periodic reconcile pass [1,000].
pub const DEFAULT_RECONCILE_MAX_READS: usize = 1_000;
/// Backend reads in flight during a reconcile [32].
pub const DEFAULT_READ_CONCURRENCY: usize = 32;
/// Jobs per enqueue call; the runner yields between calls so its own event
/// loop drains the `queued` events they publish instead of lagging [1,024].
pub const ENQUEUE_CHUNK: usize = 1_024;
/// How often [`WorkflowRunner::wait`] reads the journal for a workflow
/// driven elsewhere [50 ms].
pub const WAIT_POLL_INTERVAL: Duration = Duration::from_millis(50);
/// Enqueue requests waiting for the enqueuer task before the event loop
/// waits too [256].
pub const ENQUEUE_QUEUE: usize = 256;

/// Metadata entry naming a workflow job's workflow id.
pub const META_WORKFLOW_ID: &str = "ironforge.workflow_id";
/// Metadata entry naming a workflow job's key.
pub const META_WORKFLOW_JOB: &str = "ironforge.workflow_job";

/// Runner settings. Defaults in brackets.
#[derive(Clone, Debug)]
pub struct RunnerConfig {
    /// Bounds every submitted workflow must fit in ([`WorkflowLimits::default`]).
    pub limits: WorkflowLimits,
    /// Most workflows driven at once [`DEFAULT_MAX_LIVE_WORKFLOWS`].
    pub max_live_workflows: usize,
    /// Most jobs across live workflows [`DEFAULT_MAX_LIVE_JOBS`].
    pub max_live_jobs: usize,
    /// Most job events handled per batch [`DEFAULT_EVENT_BATCH`].
    pub event_batch: usize,
    /// Periodic reconcile interval [`DEFAULT_RECONCILE_INTERVAL`].
    pub reconcile_interval: Duration,
    /// Most job reads per periodic pass [`DEFAULT_RECONCILE_MAX_READS`].
    pub reconcile_max_reads: usize,
    /// Backend reads in flight [`DEFAULT_READ_CONCURRENCY`].
    pub read_concurrency: usize,
    /// Adopt the unfinished workflows of the driven partitions when the
    /// runner starts (a restart over a durable journal) [true].
    pub adopt_on_start: bool,
}

impl Default for RunnerConfig {
    fn default() -> Self {
        RunnerConfig {
            limits: WorkflowLimits::default(),
            max_live_workflows: DEFAULT_MAX_LIVE_WORKFLOWS,
            max_live_jobs: DEFAULT_MAX_LIVE_JOBS,
            event_batch: DEFAULT_EVENT_BATCH,
            reconcile_interval: DEFAULT_RECONCILE_INTERVAL,
            reconcile_max_reads: DEFAULT_RECONCILE_MAX_READS,
            read_concurrency: DEFAULT_READ_CONCURRENCY,
            adopt_on_start: true,
        }
    }
}

/// Why a runner call failed.
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    /// The submission is invalid (cycle, unknown dependency, duplicate keys...).
    #[error(transparent)]
    Invalid(#[from] WorkflowError),
    /// No workflow has that id.
    #[error("workflow {0} not found")]
    NotFound(WorkflowId),
    /// A workflow with that id exists with a different spec.
    #[error(
        "workflow {0} already exists with a different spec; submit without an id or with a new one"
    )]
    Conflict(WorkflowId),
    /// `until` does not name an event of the history.
    #[error("workflow {id} has events up to seq {last}; seq {seq} is out of range")]
    SeqOutOfRange {
        /// The workflow.
        id: WorkflowId,
        /// The seq asked for.
        seq: u64,
        /// Its last seq.
        last: u64,
    },
    /// A bound of [`RunnerConfig`] is reached; retry later.
    #[error("too many {what} in progress (limit {limit}); retry later")]
    AtCapacity {
        /// What is full.
        what: &'static str,
        /// The limit.
        limit: usize,
    },
    /// The journal failed.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// The owner of the workflow's partition did not answer.
    #[error(transparent)]
    Forward(#[from] ForwardError),
    /// The job engine refused or failed.
    #[error(transparent)]
    Job(#[from] JobError),
    /// The stored history does not replay.
    #[error("workflow {id}: the stored history cannot be replayed: {source}")]
    Corrupt {
        /// The workflow.
        id: WorkflowId,
        /// Why.
        #[source]
        source: ReplayError,
    },
}

/// The id of job `key` of workflow `workflow`: deterministic, so every node
/// computes it from the journal record alone. A UUID v8 that starts with
/// the workflow id's 48-bit timestamp (a workflow's jobs sit together in
/// stores keyed by id) followed by a SHA-256 of both.
pub fn workflow_job_id(workflow: WorkflowId, key: &str) -> JobId {
    let mut hasher = Sha256::new();
    hasher.update(b"ironforge-workflow-job\0");
    hasher.update(workflow.0.as_bytes());
    hasher.update(key.as_bytes());
    let digest = hasher.finalize();
    let mut bytes = [0u8; 16];
    bytes[..6].copy_from_slice(&workflow.0.as_bytes()[..6]);
    bytes[6..].copy_from_slice(&digest[..10]);
    bytes[6] = (bytes[6] & 0x0f) | 0x80; // version 8
    bytes[8] = (bytes[8] & 0x3f) | 0x80; // RFC 4122 variant
    JobId(Uuid::from_bytes(bytes))
}

/// Rewrites every job of `spec` the way the runner enqueues it (see the
/// module docs): partition key, idempotency key, metadata.
fn stamp_jobs(spec: &mut WorkflowSpec, id: WorkflowId, max_key_len: usize) {
    let workflow = id.to_string();
    for job in &mut spec.jobs {
        job.spec.idempotency_key = Some(idempotency_key(id, &job.key, max_key_len));
        job.spec.partition_key = Some(workflow.clone());
        job.spec
            .metadata
            .insert(META_WORKFLOW_ID.to_string(), workflow.clone());
        job.spec
            .metadata
            .insert(META_WORKFLOW_JOB.to_string(), job.key.clone());
    }
}

/// `workflow:<id>:<key>`, or `workflow:<id>:<job id>` when that would be
/// longer than the job key limit.
fn idempotency_key(id: WorkflowId, key: &str, max_key_len: usize) -> String {
    let key = format!("workflow:{id}:{key}");
    if key.len() > max_key_len {
        return format!("workflow:{id}:{}", workflow_job_id(id, &key));
    }
    key
}

/// Runs workflows on the engine. Cheap to clone; clones share everything.
///
/// ```
/// use std::sync::Arc;
/// use ironforge_jobs::workflow::{
///     MemoryJournal, RunnerConfig, WorkflowJobSpec, WorkflowRunner, WorkflowSpec, WorkflowStatus,
/// };
/// use ironforge_jobs::{Client, EmbeddedBackend, EmbeddedConfig, JobSpec, Registry, Worker, WorkerConfig};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// let backend = Arc::new(EmbeddedBackend::open(dir.path().join("jobs.redb"), EmbeddedConfig::default())?);
/// let client = Client::new(backend.clone());
/// let runner = WorkflowRunner::start(
///     client.clone(),
///     Arc::new(MemoryJournal::default()),
///     None,
///     None,
///     RunnerConfig::default(),
/// );
/// let mut handlers = Registry::new();
/// handlers.register_fn("noop", |_| async { Ok(serde_json::Value::Null) });
/// let worker = Worker::start(backend, handlers, WorkerConfig::default(), client.observers().clone());
///
/// let job = |key: &str, deps: &[&str]| {
///     WorkflowJobSpec::new(key, JobSpec::new("noop", serde_json::Value::Null), deps.to_vec())
/// };
/// let id = runner
///     .submit(WorkflowSpec {
///         jobs: vec![job("a", &[]), job("b", &["a"]), job("c", &["a"]), job("d", &["b", "c"])],
///         ..WorkflowSpec::default()
///     })
///     .await?;
/// let summary = runner.wait(id, std::time::Duration::from_secs(10)).await?;
/// assert_eq!(summary.state.status, WorkflowStatus::Completed);
/// worker.shutdown(std::time::Duration::from_secs(1)).await;
/// runner.shutdown().await;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct WorkflowRunner {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for WorkflowRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkflowRunner")
            .field("live", &self.shared.live.lock().workflows.len())
            .finish_non_exhaustive()
    }
}

struct Shared {
    client: Client,
    journal: Arc<dyn WorkflowJournal>,
    owned: Option<OwnedPartitions>,
    routing: Option<Arc<dyn WorkflowRouting>>,
    config: RunnerConfig,
    live: Mutex<Live>,
    /// Serialises journal appends, so each workflow's events go out once
    /// and in seq order.
    flushing: tokio::sync::Mutex<()>,
    /// Wakes [`WorkflowRunner::wait`] callers when a workflow changed.
    changed: watch::Sender<u64>,
    stop: watch::Sender<bool>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    /// Ready jobs go to the enqueuer task, so the event loop keeps reading
    /// events while they are written.
    enqueue_tx: mpsc::Sender<EnqueueRequest>,
    enqueuer: Mutex<Option<JoinHandle<()>>>,
}

enum EnqueueRequest {
    Jobs(Vec<(WorkflowId, Vec<String>)>),
    /// Everything sent before is enqueued; stop.
    Finish,
}

/// Everything driven here. Ordered by id so the periodic reconcile can
/// walk it round robin.
#[derive(Default)]
struct Live {
    workflows: BTreeMap<WorkflowId, Driven>,
    /// Job id -> (workflow, job key), for jobs queued or running.
    jobs: HashMap<JobId, (WorkflowId, String)>,
    /// Jobs of all live workflows.
    total_jobs: usize,
    /// Workflows with events not yet in the journal.
    dirty: HashSet<WorkflowId>,
    /// Where the next periodic reconcile pass starts.
    cursor: Option<(WorkflowId, usize)>,
}

struct Driven {
    workflow: Workflow,
    partition: u32,
    /// Events up to this seq are in the journal.
    journaled_seq: u64,
    /// Ids this workflow put in `Live::jobs`.
    indexed: HashSet<JobId>,
}

/// A job the reconcile reads from the backend.
struct Candidate {
    workflow: WorkflowId,
    key: String,
    job: JobId,
}

/// What applying job changes asks the shell to do next.
#[derive(Default)]
struct Effects {
    /// Jobs to enqueue, per workflow.
    enqueue: Vec<(WorkflowId, Vec<String>)>,
    /// Jobs to cancel in the backend.
    cancel: Vec<JobId>,
    /// Workflows that changed.
    touched: HashSet<WorkflowId>,
}

impl Live {
    fn index(&mut self, workflow: WorkflowId, keys: impl IntoIterator<Item = String>) {
        let Some(driven) = self.workflows.get_mut(&workflow) else {
            return;
        };
        for key in keys {
            let id = workflow_job_id(workflow, &key);
            driven.indexed.insert(id);
            self.jobs.insert(id, (workflow, key));
        }
    }

    fn forget_job(&mut self, workflow: WorkflowId, key: &str) {
        let id = workflow_job_id(workflow, key);
        self.jobs.remove(&id);
        if let Some(driven) = self.workflows.get_mut(&workflow) {
            driven.indexed.remove(&id);
        }
    }

    fn remove(&mut self, workflow: WorkflowId) -> Option<Driven> {
        let driven = self.workflows.remove(&workflow)?;
        for id in &driven.indexed {
            self.jobs.remove(id);
        }
        self.total_jobs = self
            .total_jobs
            .saturating_sub(driven.workflow.spec().jobs.len());
        self.dirty.remove(&workflow);
        Some(driven)
    }
}

impl WorkflowRunner {
    /// Starts a runner over the engine's `client`. `owned`: the partitions
    /// whose workflows this process drives (`None`: all of them);
    /// `routing`: where submissions and cancellations of workflows owned
    /// elsewhere go (`None`: everything is local). Must be called inside a
    /// tokio runtime.
    pub fn start(
        client: Client,
        journal: Arc<dyn WorkflowJournal>,
        owned: Option<OwnedPartitions>,
        routing: Option<Arc<dyn WorkflowRouting>>,
        config: RunnerConfig,
    ) -> WorkflowRunner {
        let events = client.observers().events.subscribe();
        let (stop, stopped) = watch::channel(false);
        let (changed, _) = watch::channel(0);
        let (enqueue_tx, enqueue_rx) = mpsc::channel(ENQUEUE_QUEUE);
        let runner = WorkflowRunner {
            shared: Arc::new(Shared {
                client,
                journal,
                owned,
                routing,
                config,
                live: Mutex::new(Live::default()),
                flushing: tokio::sync::Mutex::new(()),
                changed,
                stop,
                tasks: Mutex::new(Vec::new()),
                enqueue_tx,
                enqueuer: Mutex::new(None),
            }),
        };
        let enqueuer = tokio::spawn(enqueue_loop(runner.clone(), enqueue_rx));
        *runner.shared.enqueuer.lock() = Some(enqueuer);
        let main = tokio::spawn(event_loop(runner.clone(), events, stopped));
        runner.shared.tasks.lock().push(main);
        if runner.shared.config.adopt_on_start {
            let adopter = runner.clone();
            let task = tokio::spawn(async move {
                let partitions = adopter.driven_partitions();
                if let Err(error) = adopter.adopt(&partitions).await {
                    tracing::warn!(%error, "adopting unfinished workflows at start failed");
                }
            });
            runner.shared.tasks.lock().push(task);
        }
        runner
    }

    /// The partition of workflow `id` (and of all its jobs).
    pub fn partition_of(&self, id: WorkflowId) -> u32 {
        let key = id.to_string();
        self.shared
            .client
            .partitioner()
            .partition_of(&JobId(id.0), Some(&key))
    }

    /// How many workflows are driven here now.
    pub fn live_count(&self) -> usize {
        self.shared.live.lock().workflows.len()
    }

    /// Validates `spec` (assigning an id if it has none) and starts it here,
    /// or at the owner of its partition when that is another process.
    pub async fn submit(&self, spec: WorkflowSpec) -> Result<WorkflowId, RunnerError> {
        let assigned_here = spec.id.is_none();
        let (id, workflow, ready) = self.validate(spec)?;
        let partition = self.partition_of(id);
        if let Some(routing) = &self.shared.routing {
            if let Some(owner) = routing.owner_elsewhere(partition) {
                routing
                    .forward_submit(&owner, partition, workflow.spec())
                    .await?;
                return Ok(id);
            }
        }
        self.start_validated(id, partition, workflow, ready, assigned_here)
            .await
    }

    /// Starts `spec` here whoever owns its partition (what an owner runs
    /// for a submission forwarded to it). Submitting the same spec and id
    /// again returns the id and changes nothing.
    pub async fn submit_local(&self, spec: WorkflowSpec) -> Result<WorkflowId, RunnerError> {
        let assigned_here = spec.id.is_none();
        let (id, workflow, ready) = self.validate(spec)?;
        let partition = self.partition_of(id);
        self.start_validated(id, partition, workflow, ready, assigned_here)
            .await
    }

    /// The workflow's status and job states: live if driven here, else
    /// rebuilt from the journal. `None` if unknown.
    pub async fn get(&self, id: WorkflowId) -> Result<Option<WorkflowSummary>, RunnerError> {
        if let Some(summary) = self
            .shared
            .live
            .lock()
            .workflows
            .get(&id)
            .map(|d| d.workflow.summary())
        {
            return Ok(Some(summary));
        }
        let Some(record) = self.shared.journal.load(id).await? else {
            return Ok(None);
        };
        let state = replay(&record.spec, &record.events, u64::MAX)
            .map_err(|source| RunnerError::Corrupt { id, source })?;
        Ok(Some(WorkflowSummary {
            id: Some(id),
            name: record.spec.name.clone(),
            failure_policy: record.spec.failure_policy,
            state,
        }))
    }

    /// The spec and every event so far (live ones included when driven
    /// here). `None` if unknown.
    pub async fn history(&self, id: WorkflowId) -> Result<Option<WorkflowRecord>, RunnerError> {
        if let Some(record) = self
            .shared
            .live
            .lock()
            .workflows
            .get(&id)
            .map(|d| WorkflowRecord {
                partition: d.partition,
                spec: d.workflow.spec().clone(),
                events: d.workflow.history().to_vec(),
            })
        {
            return Ok(Some(record));
        }
        Ok(self.shared.journal.load(id).await?)
    }

    /// The state of workflow `id` right after event `seq` (0: before any).
    pub async fn replay_until(
        &self,
        id: WorkflowId,
        seq: u64,
    ) -> Result<WorkflowState, RunnerError> {
        let record = self.history(id).await?.ok_or(RunnerError::NotFound(id))?;
        let last = record.events.last().map_or(0, |e| e.seq);
        if seq > last {
            return Err(RunnerError::SeqOutOfRange { id, seq, last });
        }
        replay(&record.spec, &record.events, seq)
            .map_err(|source| RunnerError::Corrupt { id, source })
    }

    /// Cancels every job of the workflow that has not started: pending ones
    /// never run, queued and scheduled ones are cancelled in the queue.
    /// Running jobs finish and their outcome is still recorded. A finished
    /// workflow is left as it is. Forwarded to the owner of the workflow's
    /// partition when that is another process.
    pub async fn cancel(&self, id: WorkflowId) -> Result<(), RunnerError> {
        let live_here = self.shared.live.lock().workflows.contains_key(&id);
        if !live_here {
            let partition = self.partition_of(id);
            if let Some(routing) = &self.shared.routing {
                if let Some(owner) = routing.owner_elsewhere(partition) {
                    routing.forward_cancel(&owner, partition, id).await?;
                    return Ok(());
                }
            }
            let record = self
                .shared
                .journal
                .load(id)
                .await?
                .ok_or(RunnerError::NotFound(id))?;
            if record.is_finished() {
                return Ok(());
            }
            // Unfinished and ours, but not driven yet (say, before adopt ran).
            self.restore(id, record).await?;
        }
        let now = now_ms();
        let queued: Vec<JobId> = {
            let mut live = self.shared.live.lock();
            let Some(driven) = live.workflows.get_mut(&id) else {
                return Ok(());
            };
            let queued: Vec<String> = driven
                .workflow
                .spec()
                .jobs
                .iter()
                .filter(|j| driven.workflow.job_state(&j.key) == Some(JobState::Queued))
                .map(|j| j.key.clone())
                .collect();
            let cancelled = driven.workflow.cancel(now);
            for key in &cancelled {
                live.forget_job(id, key);
            }
            live.dirty.insert(id);
            queued.iter().map(|key| workflow_job_id(id, key)).collect()
        };
        self.flush().await;
        for job in queued {
            match self.shared.client.cancel(job).await {
                Ok(()) => {}
                Err(JobError::Backend(BackendError::InvalidState { .. }))
                | Err(JobError::Backend(BackendError::NotFound(_))) => {
                    tracing::debug!(%job, workflow = %id, "job already left the queue; not cancelled")
                }
                Err(error) => {
                    tracing::warn!(%job, workflow = %id, %error, "cancelling a workflow job failed")
                }
            }
        }
        self.retire([id]);
        self.notify();
        Ok(())
    }

    /// Waits until workflow `id` is no longer running, or `timeout` passed
    /// (then returns its current summary). For tests, examples and CLIs.
    /// A workflow driven here is watched without copying its state; one
    /// driven elsewhere is polled from the journal every
    /// [`WAIT_POLL_INTERVAL`].
    pub async fn wait(
        &self,
        id: WorkflowId,
        timeout: Duration,
    ) -> Result<WorkflowSummary, RunnerError> {
        let mut changed = self.shared.changed.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            // Live until it ended and its last running job finished.
            let live = self.shared.live.lock().workflows.contains_key(&id);
            let pause = if live {
                changed.changed()
            } else {
                let summary = self.get(id).await?.ok_or(RunnerError::NotFound(id))?;
                if summary.state.status != WorkflowStatus::Running {
                    return Ok(summary);
                }
                let poll = tokio::time::sleep(WAIT_POLL_INTERVAL);
                match tokio::time::timeout_at(deadline, poll).await {
                    Ok(()) => continue,
                    Err(_) => return Ok(summary),
                }
            };
            if tokio::time::timeout_at(deadline, pause).await.is_err() {
                return self.get(id).await?.ok_or(RunnerError::NotFound(id));
            }
        }
    }

    /// Takes over the unfinished workflows of `partitions`: restores each
    /// from its journal record, makes sure its queued jobs are in the queue
    /// (an idempotent enqueue) and catches up with what the backend says
    /// happened meanwhile. Workflows already driven here are left alone.
    /// Returns how many were adopted.
    pub async fn adopt(&self, partitions: &[u32]) -> Result<usize, RunnerError> {
        let ids = self.shared.journal.unfinished(partitions).await?;
        let mut adopted = 0;
        for id in ids {
            if self.shared.live.lock().workflows.contains_key(&id) {
                continue;
            }
            let record = match self.shared.journal.load(id).await {
                Ok(Some(record)) if !record.is_finished() => record,
                Ok(_) => continue,
                Err(error) => {
                    tracing::warn!(workflow = %id, %error, "cannot load a workflow to adopt");
                    continue;
                }
            };
            match self.restore(id, record).await {
                Ok(()) => adopted += 1,
                Err(error) => tracing::error!(workflow = %id, %error, "cannot adopt a workflow"),
            }
        }
        if adopted > 0 {
            tracing::info!(adopted, ?partitions, "workflows adopted");
        }
        Ok(adopted)
    }

    /// Stops driving the workflows of `partitions` (their new owner adopts
    /// them), after writing their pending events to the journal. Job
    /// events arriving afterwards are left to the new owner.
    pub async fn release(&self, partitions: &[u32]) {
        let _serial = self.shared.flushing.lock().await;
        let leftovers: Vec<(WorkflowId, u32, Vec<WorkflowEvent>)> = {
            let mut live = self.shared.live.lock();
            let gone: Vec<WorkflowId> = live
                .workflows
                .iter()
                .filter(|(_, d)| partitions.contains(&d.partition))
                .map(|(id, _)| *id)
                .collect();
            gone.into_iter()
                .filter_map(|id| live.remove(id).map(|d| (id, d)))
                .map(|(id, d)| {
                    let history = d.workflow.history();
                    let from = (d.journaled_seq as usize).min(history.len());
                    (id, d.partition, history[from..].to_vec())
                })
                .collect()
        };
        if !leftovers.is_empty() {
            tracing::info!(
                released = leftovers.len(),
                ?partitions,
                "workflows released"
            );
        }
        for (id, partition, events) in leftovers {
            if events.is_empty() {
                continue;
            }
            if let Err(error) = self.shared.journal.append(id, partition, &events).await {
                // The new owner reconciles from the backend what these said.
                tracing::warn!(workflow = %id, %error, "journal append of a released workflow failed");
            }
        }
    }

    /// Stops the runner: handles the job events already published, writes
    /// every pending event to the journal, and ends its tasks.
    pub async fn shutdown(&self) {
        let _ = self.shared.stop.send(true);
        let tasks: Vec<JoinHandle<()>> = std::mem::take(&mut *self.shared.tasks.lock());
        for task in tasks {
            let _ = task.await;
        }
        let enqueuer = self.shared.enqueuer.lock().take();
        if let Some(enqueuer) = enqueuer {
            let _ = self.shared.enqueue_tx.send(EnqueueRequest::Finish).await;
            let _ = enqueuer.await;
        }
        self.flush().await;
    }

    fn driven_partitions(&self) -> Vec<u32> {
        match &self.shared.owned {
            Some(owned) => owned.list().to_vec(),
            None => (0..self.shared.client.partitioner().partitions()).collect(),
        }
    }

    fn notify(&self) {
        self.shared.changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Assigns the id, stamps the jobs and validates.
    fn validate(
        &self,
        mut spec: WorkflowSpec,
    ) -> Result<(WorkflowId, Workflow, Vec<String>), RunnerError> {
        let id = *spec.id.get_or_insert_with(WorkflowId::new_random);
        let limits = &self.shared.config.limits;
        stamp_jobs(&mut spec, id, limits.job.max_key_len);
        let (workflow, ready) = Workflow::with_limits(spec, limits, now_ms())?;
        Ok((id, workflow, ready))
    }

    async fn start_validated(
        &self,
        id: WorkflowId,
        partition: u32,
        workflow: Workflow,
        ready: Vec<String>,
        assigned_here: bool,
    ) -> Result<WorkflowId, RunnerError> {
        if let Some(existing) = self
            .shared
            .live
            .lock()
            .workflows
            .get(&id)
            .map(|d| d.workflow.spec() == workflow.spec())
        {
            return if existing {
                Ok(id)
            } else {
                Err(RunnerError::Conflict(id))
            };
        }
        if !assigned_here {
            if let Some(record) = self.shared.journal.load(id).await? {
                return if &record.spec == workflow.spec() {
                    Ok(id)
                } else {
                    Err(RunnerError::Conflict(id))
                };
            }
        }
        let jobs = workflow.spec().jobs.len();
        self.check_capacity(jobs)?;
        self.shared
            .journal
            .create(id, partition, workflow.spec())
            .await?;
        {
            let mut live = self.shared.live.lock();
            if let Some(same) = live
                .workflows
                .get(&id)
                .map(|d| d.workflow.spec() == workflow.spec())
            {
                // A concurrent submission of the same id won the race.
                return if same {
                    Ok(id)
                } else {
                    Err(RunnerError::Conflict(id))
                };
            }
            live.workflows.insert(
                id,
                Driven {
                    workflow,
                    partition,
                    journaled_seq: 0,
                    indexed: HashSet::new(),
                },
            );
            live.total_jobs += jobs;
            live.dirty.insert(id);
            live.index(id, ready.iter().cloned());
        }
        self.flush().await;
        self.enqueue(vec![(id, ready)]).await;
        tracing::debug!(workflow = %id, partition, jobs, "workflow started");
        Ok(id)
    }

    /// Refuses a new workflow of `jobs` jobs when a live bound is reached.
    fn check_capacity(&self, jobs: usize) -> Result<(), RunnerError> {
        let live = self.shared.live.lock();
        let config = &self.shared.config;
        if live.workflows.len() >= config.max_live_workflows {
            return Err(RunnerError::AtCapacity {
                what: "workflows",
                limit: config.max_live_workflows,
            });
        }
        if live.total_jobs + jobs > config.max_live_jobs {
            return Err(RunnerError::AtCapacity {
                what: "workflow jobs",
                limit: config.max_live_jobs,
            });
        }
        Ok(())
    }

    /// Makes `record` a live workflow and catches up with the backend.
    async fn restore(&self, id: WorkflowId, record: WorkflowRecord) -> Result<(), RunnerError> {
        let partition = record.partition;
        let journaled_seq = record.events.last().map_or(0, |e| e.seq);
        let limits = &self.shared.config.limits;
        let workflow = if record.events.is_empty() {
            // Created in the journal, but its owner stopped before writing
            // the first events: start it as it would have started.
            Workflow::with_limits(record.spec, limits, now_ms())
                .map_err(|e| RunnerError::Corrupt {
                    id,
                    source: e.into(),
                })?
                .0
        } else {
            Workflow::restore(record.spec, limits, record.events)
                .map_err(|source| RunnerError::Corrupt { id, source })?
                .0
        };
        let unfinished: Vec<String> = workflow
            .spec()
            .jobs
            .iter()
            .filter(|j| {
                matches!(
                    workflow.job_state(&j.key),
                    Some(JobState::Queued | JobState::Running)
                )
            })
            .map(|j| j.key.clone())
            .collect();
        let jobs = workflow.spec().jobs.len();
        self.check_capacity(jobs)?;
        {
            let mut live = self.shared.live.lock();
            if live.workflows.contains_key(&id) {
                return Ok(());
            }
            live.workflows.insert(
                id,
                Driven {
                    workflow,
                    partition,
                    journaled_seq,
                    indexed: HashSet::new(),
                },
            );
            live.total_jobs += jobs;
            live.index(id, unfinished.iter().cloned());
            if journaled_seq == 0 {
                live.dirty.insert(id);
            }
        }
        self.flush().await;
        let candidates = unfinished
            .into_iter()
            .map(|key| Candidate {
                workflow: id,
                job: workflow_job_id(id, &key),
                key,
            })
            .collect();
        self.reconcile(candidates).await;
        self.retire([id]);
        self.notify();
        Ok(())
    }

    /// Folds a batch of job events into the workflows they belong to.
    async fn apply_events(&self, events: &[JobEvent]) {
        let mut effects = Effects::default();
        {
            let mut live = self.shared.live.lock();
            for event in events {
                let Some((workflow, key)) = live.jobs.get(&event.id).cloned() else {
                    continue;
                };
                apply_job_status(
                    &mut live,
                    workflow,
                    &key,
                    event.status,
                    event.at,
                    event.error.as_deref(),
                    None,
                    &mut effects,
                );
            }
        }
        self.carry_out(effects).await;
    }

    /// Journals, then enqueues and cancels what a batch of changes asked for.
    async fn carry_out(&self, effects: Effects) {
        if effects.touched.is_empty() {
            return;
        }
        self.flush().await;
        if !effects.enqueue.is_empty() {
            if let Err(mpsc::error::SendError(EnqueueRequest::Jobs(ready))) = self
                .shared
                .enqueue_tx
                .send(EnqueueRequest::Jobs(effects.enqueue))
                .await
            {
                // The enqueuer stopped (shutdown): enqueue here.
                self.enqueue(ready).await;
            }
        }
        for job in effects.cancel {
            if let Err(error) = self.shared.client.cancel(job).await {
                tracing::debug!(%job, %error, "cancelling a job of a cancelled workflow failed");
            }
        }
        self.retire(effects.touched);
        self.notify();
    }

    /// Writes the events not yet journaled: one batch for every workflow
    /// that changed.
    async fn flush(&self) {
        let _serial = self.shared.flushing.lock().await;
        let batches: Vec<(WorkflowId, u32, Vec<WorkflowEvent>)> = {
            let mut live = self.shared.live.lock();
            let dirty: Vec<WorkflowId> = live.dirty.drain().collect();
            let mut batches = Vec::with_capacity(dirty.len());
            for id in dirty {
                let Some(driven) = live.workflows.get(&id) else {
                    continue;
                };
                let history = driven.workflow.history();
                let from = (driven.journaled_seq as usize).min(history.len());
                if from < history.len() {
                    batches.push((id, driven.partition, history[from..].to_vec()));
                }
            }
            batches
        };
        if batches.is_empty() {
            return;
        }
        let results = self.shared.journal.append_batch(&batches).await;
        for ((id, _, events), result) in batches.iter().zip(results) {
            let id = *id;
            let last = events.last().map_or(0, |e| e.seq);
            match result {
                Ok(()) => {
                    if let Some(driven) = self.shared.live.lock().workflows.get_mut(&id) {
                        driven.journaled_seq = driven.journaled_seq.max(last);
                    }
                }
                Err(error) => {
                    tracing::warn!(workflow = %id, %error, "journal append failed; will retry");
                    self.shared.live.lock().dirty.insert(id);
                }
            }
        }
    }

    /// Enqueues ready jobs with their derived ids (duplicates are no-ops).
    /// A failure is logged: the job stays queued in the workflow and the
    /// periodic reconcile enqueues it again once the backend answers.
    async fn enqueue(&self, ready: Vec<(WorkflowId, Vec<String>)>) {
        let jobs: Vec<(JobId, JobSpec)> = {
            let live = self.shared.live.lock();
            ready
                .iter()
                .filter_map(|(id, keys)| live.workflows.get(id).map(|d| (id, keys, d)))
                .flat_map(|(id, keys, driven)| {
                    keys.iter().filter_map(move |key| {
                        let spec = driven.workflow.job_spec(key)?.clone();
                        Some((workflow_job_id(*id, key), spec))
                    })
                })
                .collect()
        };
        if jobs.is_empty() {
            return;
        }
        let chunk_len = self
            .shared
            .client
            .limits()
            .max_batch
            .clamp(1, ENQUEUE_CHUNK);
        let mut jobs = jobs.into_iter().peekable();
        while jobs.peek().is_some() {
            let chunk: Vec<(JobId, JobSpec)> = jobs.by_ref().take(chunk_len).collect();
            let count = chunk.len();
            if let Err(error) = self.shared.client.submit_with_ids(chunk).await {
                tracing::warn!(%error, jobs = count, "enqueueing workflow jobs failed; the reconcile will retry");
            }
            tokio::task::yield_now().await;
        }
    }

    /// Forgets workflows that ended and whose events are all journaled
    /// (a cancelled one once its running jobs finished too).
    fn retire(&self, ids: impl IntoIterator<Item = WorkflowId>) {
        let mut live = self.shared.live.lock();
        for id in ids {
            let done = live.workflows.get(&id).is_some_and(|d| {
                d.workflow.status() != WorkflowStatus::Running
                    && d.workflow.counts().running == 0
                    && d.journaled_seq >= d.workflow.history().last().map_or(0, |e| e.seq)
            });
            if done {
                live.remove(id);
            }
        }
    }

    /// The unfinished jobs of live workflows: all of them (`max: None`), or
    /// up to `max` starting where the last periodic pass stopped.
    fn candidates(&self, max: Option<usize>) -> Vec<Candidate> {
        let mut live = self.shared.live.lock();
        let limit = max.unwrap_or(usize::MAX);
        let (start, offset) = match (max, live.cursor) {
            (Some(_), Some((id, offset))) => (Some(id), offset),
            _ => (None, 0),
        };
        let mut out = Vec::new();
        let mut next_cursor = None;
        let order: Vec<WorkflowId> = match start {
            Some(start) => live
                .workflows
                .range(start..)
                .chain(
                    live.workflows
                        .range((Bound::Unbounded, Bound::Excluded(start))),
                )
                .map(|(id, _)| *id)
                .collect(),
            None => live.workflows.keys().copied().collect(),
        };
        'walk: for (n, id) in order.iter().enumerate() {
            let Some(driven) = live.workflows.get(id) else {
                continue;
            };
            let skip = if n == 0 && start == Some(*id) {
                offset
            } else {
                0
            };
            for (index, job) in driven.workflow.spec().jobs.iter().enumerate().skip(skip) {
                if out.len() >= limit {
                    next_cursor = Some((*id, index));
                    break 'walk;
                }
                if matches!(
                    driven.workflow.job_state(&job.key),
                    Some(JobState::Queued | JobState::Running)
                ) {
                    out.push(Candidate {
                        workflow: *id,
                        key: job.key.clone(),
                        job: workflow_job_id(*id, &job.key),
                    });
                }
            }
        }
        if max.is_some() {
            live.cursor = next_cursor;
        }
        out
    }

    /// Reads each candidate job from the backend and feeds the changes the
    /// events did not bring; enqueues queued jobs the backend does not have.
    async fn reconcile(&self, candidates: Vec<Candidate>) {
        if candidates.is_empty() {
            return;
        }
        let client = self.shared.client.clone();
        let reads: Vec<(Candidate, Result<Option<Job>, JobError>)> =
            futures::stream::iter(candidates)
                .map(|candidate| {
                    let client = client.clone();
                    async move {
                        let job = client.get(candidate.job).await;
                        (candidate, job)
                    }
                })
                .buffer_unordered(self.shared.config.read_concurrency.max(1))
                .collect()
                .await;
        let mut effects = Effects::default();
        {
            let mut live = self.shared.live.lock();
            for (candidate, read) in reads {
                match read {
                    Ok(Some(job)) => {
                        let at = job.finished_at.or(job.started_at).unwrap_or_else(now_ms);
                        apply_job_status(
                            &mut live,
                            candidate.workflow,
                            &candidate.key,
                            job.status,
                            at,
                            job.last_error.as_deref(),
                            Some(job.attempts),
                            &mut effects,
                        );
                    }
                    Ok(None) => {
                        let queued = live.workflows.get(&candidate.workflow).is_some_and(|d| {
                            d.workflow.status() == WorkflowStatus::Running
                                && d.workflow.job_state(&candidate.key) == Some(JobState::Queued)
                        });
                        if queued {
                            effects.touched.insert(candidate.workflow);
                            push_ready(&mut effects, candidate.workflow, candidate.key);
                        }
                    }
                    Err(error) => {
                        tracing::debug!(job = %candidate.job, %error, "reconcile read failed")
                    }
                }
            }
        }
        self.carry_out(effects).await;
    }

    /// One low-rate pass: follow ownership (release, adopt), flush, then
    /// read a bounded slice of unfinished jobs.
    async fn periodic(&self) {
        if let Some(owned) = &self.shared.owned {
            // A safety net for a missed `release`: drop what is no longer ours.
            let stale: Vec<u32> = {
                let live = self.shared.live.lock();
                let mut stale: Vec<u32> = live
                    .workflows
                    .values()
                    .map(|d| d.partition)
                    .filter(|p| !owned.contains(*p))
                    .collect();
                stale.sort_unstable();
                stale.dedup();
                stale
            };
            if !stale.is_empty() {
                self.release(&stale).await;
            }
            // And for a missed adoption: the journal of a partition gained
            // moments ago (a restarted member's replica) may not have held
            // every workflow yet when `adopt` ran; what shows up later is
            // taken over here. `adopt` skips what is already driven.
            if let Err(error) = self.adopt(&owned.list()).await {
                tracing::warn!(%error, "periodic adoption failed");
            }
        }
        self.flush().await;
        let candidates = self.candidates(Some(self.shared.config.reconcile_max_reads));
        self.reconcile(candidates).await;
    }
}

fn push_ready(effects: &mut Effects, workflow: WorkflowId, key: String) {
    match effects.enqueue.iter_mut().find(|(id, _)| *id == workflow) {
        Some((_, keys)) => keys.push(key),
        None => effects.enqueue.push((workflow, vec![key])),
    }
}

/// Feeds one job's new backend status to its workflow. `attempts` (from a
/// backend read) lets a reconcile record retries it did not see as events.
#[allow(clippy::too_many_arguments)]
fn apply_job_status(
    live: &mut Live,
    workflow: WorkflowId,
    key: &str,
    status: JobStatus,
    at: u64,
    error: Option<&str>,
    attempts: Option<u32>,
    effects: &mut Effects,
) {
    let Some(driven) = live.workflows.get_mut(&workflow) else {
        return;
    };
    let flow = &mut driven.workflow;
    let before = flow.history().len();
    let cancelled = flow.status() == WorkflowStatus::Cancelled;
    let mut ready = Vec::new();
    let result = match status {
        JobStatus::Queued | JobStatus::Scheduled => Ok(()),
        JobStatus::Running => flow.on_started(key, at),
        JobStatus::Completed => flow.on_completed(key, at).map(|r| ready = r),
        JobStatus::Failed if cancelled => {
            effects.cancel.push(workflow_job_id(workflow, key));
            flow.on_failed(key, at, "workflow cancelled during a retry")
                .map(|_| ())
        }
        JobStatus::Failed => {
            let error = error.unwrap_or("attempt failed");
            let seen = flow_retries(flow, key);
            let missing = attempts.map_or(1, |a| a.saturating_sub(seen));
            let mut result = Ok(());
            for _ in 0..missing {
                result = flow.on_retried(key, at, error);
                if result.is_err() {
                    break;
                }
            }
            result
        }
        JobStatus::Dead => flow
            .on_failed(key, at, error.unwrap_or("job failed"))
            .map(|t| ready = t.ready),
        JobStatus::Cancelled if cancelled => Ok(()),
        JobStatus::Cancelled => flow
            .on_failed(key, at, "job cancelled outside its workflow")
            .map(|t| ready = t.ready),
    };
    if let Err(error) = result {
        // Redeliveries and late events of jobs already past that state.
        tracing::debug!(%workflow, key, %status, %error, "job change ignored");
    }
    let changed = flow.history().len() != before;
    let terminal = flow.job_state(key).is_some_and(JobState::is_terminal);
    if terminal {
        live.forget_job(workflow, key);
    }
    if changed {
        live.dirty.insert(workflow);
        effects.touched.insert(workflow);
    }
    if !ready.is_empty() {
        live.index(workflow, ready.iter().cloned());
        match effects.enqueue.iter_mut().find(|(id, _)| *id == workflow) {
            Some((_, keys)) => keys.extend(ready),
            None => effects.enqueue.push((workflow, ready)),
        }
    }
}

/// Retries recorded so far for `key`.
fn flow_retries(flow: &Workflow, key: &str) -> u32 {
    flow.job_record(key).map_or(0, |r| r.retries)
}

/// The event loop: job events in batches, a periodic reconcile, and a full
/// reconcile after the subscription lagged.
async fn event_loop(
    runner: WorkflowRunner,
    mut events: broadcast::Receiver<JobEvent>,
    mut stopped: watch::Receiver<bool>,
) {
    let shared = runner.shared.clone();
    let max_batch = shared.config.event_batch.max(1);
    let mut tick = tokio::time::interval(
        shared
            .config
            .reconcile_interval
            .max(Duration::from_millis(10)),
    );
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    let mut batch = Vec::with_capacity(max_batch);
    loop {
        let mut lagged = false;
        tokio::select! {
            biased;
            _ = stopped.changed() => break,
            received = events.recv() => match received {
                Ok(event) => batch.push(event),
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "workflow runner lagged behind job events; reconciling");
                    lagged = true;
                }
                Err(broadcast::error::RecvError::Closed) => break,
            },
            _ = tick.tick() => {
                runner.periodic().await;
                continue;
            }
        }
        lagged |= drain(&mut events, &mut batch, max_batch);
        runner.apply_events(&batch).await;
        batch.clear();
        if lagged {
            let all = runner.candidates(None);
            runner.reconcile(all).await;
        }
    }
    // Handle what was published before the stop.
    loop {
        let lagged = drain(&mut events, &mut batch, max_batch);
        if batch.is_empty() && !lagged {
            break;
        }
        runner.apply_events(&batch).await;
        batch.clear();
        if lagged {
            let all = runner.candidates(None);
            runner.reconcile(all).await;
        }
    }
    runner.flush().await;
}

/// Enqueues what the event loop found ready, in order, until told to
/// finish. Requests that piled up while it wrote go out together (fewer,
/// larger durable writes).
async fn enqueue_loop(runner: WorkflowRunner, mut requests: mpsc::Receiver<EnqueueRequest>) {
    let mut pending = Vec::with_capacity(ENQUEUE_QUEUE);
    while requests.recv_many(&mut pending, ENQUEUE_QUEUE).await > 0 {
        let mut ready = Vec::new();
        let mut finish = false;
        for request in pending.drain(..) {
            match request {
                EnqueueRequest::Jobs(jobs) => ready.extend(jobs),
                EnqueueRequest::Finish => finish = true,
            }
        }
        runner.enqueue(ready).await;
        if finish {
            break;
        }
    }
}

/// Takes what is already buffered, up to `max`; true if events were lost.
fn drain(
    events: &mut broadcast::Receiver<JobEvent>,
    batch: &mut Vec<JobEvent>,
    max: usize,
) -> bool {
    while batch.len() < max {
        match events.try_recv() {
            Ok(event) => batch.push(event),
            Err(broadcast::error::TryRecvError::Lagged(_)) => return true,
            Err(_) => break,
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_ids_are_deterministic_distinct_and_grouped_by_workflow() {
        let w = WorkflowId::new_random();
        let a = workflow_job_id(w, "a");
        assert_eq!(a, workflow_job_id(w, "a"));
        assert_ne!(a, workflow_job_id(w, "b"));
        assert_ne!(a, workflow_job_id(WorkflowId::new_random(), "a"));
        assert_eq!(a.0.get_version_num(), 8);
        assert_eq!(&a.0.as_bytes()[..6], &w.0.as_bytes()[..6]);
    }

    #[test]
    fn stamping_overrides_keys_and_names_the_workflow() {
        let id = WorkflowId::new_random();
        let mut spec = WorkflowSpec {
            jobs: vec![
                crate::workflow::WorkflowJobSpec::new(
                    "short",
                    JobSpec::new("k", serde_json::Value::Null).idempotency_key("mine"),
                    Vec::<String>::new(),
                ),
                crate::workflow::WorkflowJobSpec::new(
                    "x".repeat(250),
                    JobSpec::new("k", serde_json::Value::Null),
                    Vec::<String>::new(),
                ),
            ],
            ..WorkflowSpec::default()
        };
        stamp_jobs(&mut spec, id, 256);
        let first = &spec.jobs[0].spec;
        assert_eq!(
            first.idempotency_key.as_deref(),
            Some(format!("workflow:{id}:short").as_str())
        );
        assert_eq!(first.partition_key, Some(id.to_string()));
        assert_eq!(first.metadata[META_WORKFLOW_JOB], "short");
        let long = spec.jobs[1].spec.idempotency_key.as_deref().unwrap_or("");
        assert!(long.len() <= 256, "{long}");
        // Both land in the workflow's partition: the partition key decides.
        let partitioner = crate::Partitioner::new(16);
        let home = partitioner.partition_of(&JobId(id.0), Some(&id.to_string()));
        for job in &spec.jobs {
            assert_eq!(partitioner.place(&JobId::new_random(), &job.spec), home);
        }
    }
}
