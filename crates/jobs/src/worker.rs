//! Workers: handlers registered by job kind, and an executor that leases
//! jobs in batches, runs up to N at once with a per-job timeout, renews
//! leases while they run, acknowledges completions in batches, schedules
//! retries with exponential backoff and jitter, and shuts down gracefully
//! (stop fetching, finish in-flight work up to a deadline, release the rest).

use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use parking_lot::Mutex;
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::{JoinHandle, JoinSet};

use crate::backend::{AckOutcome, Completion, Lease, QueueBackend, Receipt};
use crate::backoff::{decide_after_failure, BackoffPolicy, FailDecision};
use crate::clock::now_ms;
use crate::error::{BackendError, ValidationError};
use crate::job::{Job, JobId, JobStatus};
use crate::observe::{AttemptOutcome, Observers};
use crate::scheduler::SchedulerConfig;
use crate::scheduler::SchedulerHandle;

/// Why a handler failed. `?` converts any `std::error::Error` into a
/// retryable failure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HandlerError {
    /// Stored as the job's `last_error`.
    pub message: String,
    /// True: straight to the dead letters, no retries.
    pub permanent: bool,
}

impl HandlerError {
    /// A failure worth retrying (with backoff, up to `max_retries`).
    pub fn retryable(message: impl Into<String>) -> Self {
        HandlerError {
            message: message.into(),
            permanent: false,
        }
    }

    /// A failure no retry can fix (bad payload...): dead at once.
    pub fn permanent(message: impl Into<String>) -> Self {
        HandlerError {
            message: message.into(),
            permanent: true,
        }
    }
}

impl std::fmt::Display for HandlerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl<E: std::error::Error> From<E> for HandlerError {
    fn from(error: E) -> Self {
        HandlerError::retryable(error.to_string())
    }
}

/// What a handler returns: a JSON result stored with the job, or an error.
pub type HandlerResult = Result<serde_json::Value, HandlerError>;

/// What a handler gets: the job, and a way to report progress.
#[derive(Clone)]
pub struct JobContext {
    job: Job,
    receipt: Receipt,
    backend: Arc<dyn QueueBackend>,
}

impl std::fmt::Debug for JobContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobContext")
            .field("job", &self.job)
            .finish()
    }
}

impl JobContext {
    /// The job being run.
    pub fn job(&self) -> &Job {
        &self.job
    }

    /// Its payload.
    pub fn payload(&self) -> &serde_json::Value {
        &self.job.payload
    }

    /// This attempt's number, from 1.
    pub fn attempt(&self) -> u32 {
        self.job.attempts.saturating_add(1)
    }

    /// Reports progress in percent (0..=100).
    pub async fn set_progress(&self, percent: u32) -> Result<(), crate::JobError> {
        let value = u8::try_from(percent)
            .ok()
            .filter(|v| *v <= 100)
            .ok_or(ValidationError::ProgressOutOfRange(percent))?;
        match self.backend.progress(&self.receipt, value).await? {
            AckOutcome::Ok => Ok(()),
            AckOutcome::LeaseLost => Err(BackendError::InvalidState {
                id: self.job.id,
                status: JobStatus::Queued,
                action: "report progress of",
            }
            .into()),
        }
    }
}

/// Runs jobs of one kind.
#[async_trait]
pub trait JobHandler: Send + Sync + 'static {
    /// Runs one attempt. Dropped (cancelled) when the job's timeout passes.
    async fn handle(&self, ctx: JobContext) -> HandlerResult;
}

struct FnHandler<F>(F);

#[async_trait]
impl<F, Fut> JobHandler for FnHandler<F>
where
    F: Fn(JobContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = HandlerResult> + Send + 'static,
{
    async fn handle(&self, ctx: JobContext) -> HandlerResult {
        (self.0)(ctx).await
    }
}

/// Handlers by kind.
#[derive(Clone, Default)]
pub struct Registry {
    handlers: HashMap<String, Arc<dyn JobHandler>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("kinds", &self.kinds())
            .finish()
    }
}

impl Registry {
    /// No handlers.
    pub fn new() -> Self {
        Registry::default()
    }

    /// Registers `handler` for `kind` (replacing any previous one).
    pub fn register(&mut self, kind: impl Into<String>, handler: impl JobHandler) -> &mut Self {
        self.handlers.insert(kind.into(), Arc::new(handler));
        self
    }

    /// Registers an async closure for `kind`.
    pub fn register_fn<F, Fut>(&mut self, kind: impl Into<String>, handler: F) -> &mut Self
    where
        F: Fn(JobContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = HandlerResult> + Send + 'static,
    {
        self.register(kind, FnHandler(handler))
    }

    /// Registered kinds, sorted.
    pub fn kinds(&self) -> Vec<String> {
        let mut kinds: Vec<String> = self.handlers.keys().cloned().collect();
        kinds.sort();
        kinds
    }

    fn get(&self, kind: &str) -> Option<Arc<dyn JobHandler>> {
        self.handlers.get(kind).cloned()
    }
}

/// Executor settings. Defaults in brackets.
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// Consumer name reported to the backend [`worker-<random>`].
    pub consumer: String,
    /// Jobs run at once [16].
    pub concurrency: usize,
    /// Most jobs leased per fetch [256].
    pub fetch_batch: usize,
    /// Lease length; renewed every third of it while a job runs [30 s].
    pub lease: Duration,
    /// Longest wait for new work when the queues are empty [500 ms].
    pub idle_wait: Duration,
    /// Most completions acknowledged in one backend call [1024].
    pub ack_batch: usize,
    /// Retry delays.
    pub backoff: BackoffPolicy,
    /// Scheduler loop run by this worker; `None` to run none [default config].
    pub scheduler: Option<SchedulerConfig>,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            consumer: format!("worker-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]),
            concurrency: 16,
            fetch_batch: 256,
            lease: Duration::from_secs(30),
            idle_wait: Duration::from_millis(500),
            ack_batch: 1024,
            backoff: BackoffPolicy::default(),
            scheduler: Some(SchedulerConfig::default()),
        }
    }
}

/// What a graceful shutdown did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ShutdownReport {
    /// In-flight jobs cancelled at the deadline and handed back to the queue.
    pub released: usize,
}

/// Starts executors.
#[derive(Debug)]
pub struct Worker;

impl Worker {
    /// Starts an executor over `backend` on the current tokio runtime.
    pub fn start(
        backend: Arc<dyn QueueBackend>,
        registry: Registry,
        config: WorkerConfig,
        observers: Observers,
    ) -> WorkerHandle {
        let (stop_tx, stop_rx) = watch::channel(None);
        let inflight = Arc::new(Mutex::new(HashMap::new()));
        // A message is the finished jobs of one task (at most
        // MAX_JOBS_PER_TASK): at most about ack_batch × 4 jobs wait.
        let ack_capacity = (config.ack_batch.max(1) * 4).div_ceil(MAX_JOBS_PER_TASK);
        let (ack_tx, ack_rx) = mpsc::channel(ack_capacity);
        let shared = Arc::new(Shared {
            backend: backend.clone(),
            registry,
            config: config.clone(),
            observers: observers.clone(),
            inflight,
        });
        let acker = tokio::spawn(ack_loop(shared.clone(), ack_rx));
        let renewer = tokio::spawn(renew_loop(shared.clone(), stop_rx.clone()));
        let scheduler = config
            .scheduler
            .clone()
            .map(|sc| SchedulerHandle::start(backend, sc, observers));
        let main = tokio::spawn(fetch_loop(
            shared, ack_tx, stop_rx, acker, renewer, scheduler,
        ));
        WorkerHandle {
            stop: stop_tx,
            main: Some(main),
        }
    }
}

/// A running executor; dropping it stops fetching and releases in-flight
/// jobs without waiting (prefer [`WorkerHandle::shutdown`]).
#[derive(Debug)]
pub struct WorkerHandle {
    stop: watch::Sender<Option<Duration>>,
    main: Option<JoinHandle<ShutdownReport>>,
}

impl WorkerHandle {
    /// Stops fetching, lets in-flight jobs finish for up to `grace`, then
    /// cancels the rest and hands them back to the queue.
    pub async fn shutdown(mut self, grace: Duration) -> ShutdownReport {
        let _ = self.stop.send(Some(grace));
        match self.main.take() {
            Some(main) => main.await.unwrap_or_default(),
            None => ShutdownReport::default(),
        }
    }
}

impl Drop for WorkerHandle {
    fn drop(&mut self) {
        if self.main.is_some() {
            let _ = self.stop.send(Some(Duration::ZERO));
        }
    }
}

struct Shared {
    backend: Arc<dyn QueueBackend>,
    registry: Registry,
    config: WorkerConfig,
    observers: Observers,
    inflight: Arc<Mutex<HashMap<JobId, Receipt>>>,
}

/// A finished attempt waiting for its batched acknowledgement.
struct Finished {
    completion: Completion,
    seconds: f64,
}

/// Fetches one worker keeps in flight [2]: one reply is decoded and its
/// jobs started while the backend serves the next (when permits allow:
/// a fetch takes up to `fetch_batch` of them).
const FETCHES_IN_FLIGHT: usize = 2;

/// A fetch's permits and what it brought.
type Fetched = (Vec<OwnedSemaphorePermit>, Result<Vec<Lease>, BackendError>);

async fn fetch_with(shared: Arc<Shared>, held: Vec<OwnedSemaphorePermit>) -> Fetched {
    let result = shared
        .backend
        .fetch(
            &shared.config.consumer,
            held.len(),
            shared.config.lease,
            now_ms(),
        )
        .await;
    (held, result)
}

async fn fetch_loop(
    shared: Arc<Shared>,
    ack_tx: mpsc::Sender<Vec<Finished>>,
    mut stop: watch::Receiver<Option<Duration>>,
    acker: JoinHandle<()>,
    renewer: JoinHandle<()>,
    scheduler: Option<SchedulerHandle>,
) -> ShutdownReport {
    let permits = Arc::new(Semaphore::new(shared.config.concurrency.max(1)));
    let mut tasks = JoinSet::new();
    let mut fetching: FuturesUnordered<futures::future::BoxFuture<'static, Fetched>> =
        FuturesUnordered::new();
    let mut fetch_errors = 0u32;
    // After an empty fetch: one fetch at a time, and none until the
    // backend's wait for work is over (results keep being handled).
    let mut idle = false;
    let mut idle_wait: Option<futures::future::BoxFuture<'static, ()>> = None;
    while stop.borrow().is_none() {
        while tasks.try_join_next().is_some() {}
        let room = if idle { 1 } else { FETCHES_IN_FLIGHT };
        tokio::select! {
            biased;
            _ = stop.changed() => break,
            _ = async { idle_wait.as_mut()?.await; Some(()) }, if idle_wait.is_some() => {
                idle_wait = None;
            }
            Some(fetched) = fetching.next(), if !fetching.is_empty() => match fetched {
                (held, Ok(leases)) if !leases.is_empty() => {
                    fetch_errors = 0;
                    idle = false;
                    idle_wait = None;
                    dispatch(&shared, &ack_tx, &mut tasks, leases, held);
                }
                (held, Ok(_)) => {
                    fetch_errors = 0;
                    idle = true;
                    drop(held);
                    let shared = shared.clone();
                    idle_wait = Some(Box::pin(async move {
                        shared.backend.wait_for_work(shared.config.idle_wait).await
                    }));
                }
                (held, Err(error)) => {
                    fetch_errors = fetch_errors.saturating_add(1);
                    let pause = Duration::from_millis(50u64 << fetch_errors.min(6));
                    tracing::warn!(%error, ?pause, "fetching jobs failed; backing off");
                    drop(held);
                    tokio::select! {
                        _ = tokio::time::sleep(pause) => {}
                        _ = stop.changed() => {}
                    }
                }
            },
            permit = permits.clone().acquire_owned(), if fetching.len() < room && idle_wait.is_none() => {
                let Ok(first) = permit else { break };
                let mut held = vec![first];
                while held.len() < shared.config.fetch_batch.max(1) {
                    match permits.clone().try_acquire_owned() {
                        Ok(p) => held.push(p),
                        Err(_) => break,
                    }
                }
                fetching.push(Box::pin(fetch_with(shared.clone(), held)));
            }
        }
    }
    // Jobs of fetches still in flight are leased already: they run (and
    // drain) with the rest rather than wait for their leases to expire.
    while let Some((held, result)) = fetching.next().await {
        if let Ok(leases) = result {
            dispatch(&shared, &ack_tx, &mut tasks, leases, held);
        }
    }
    let grace = stop.borrow().unwrap_or(Duration::ZERO);
    let report = drain(&shared, &mut tasks, grace).await;
    drop(ack_tx);
    let _ = acker.await;
    renewer.abort();
    if let Some(scheduler) = scheduler {
        scheduler.stop().await;
    }
    report
}

/// Registers fetched leases as in flight and starts tasks to run them.
fn dispatch(
    shared: &Arc<Shared>,
    ack_tx: &mpsc::Sender<Vec<Finished>>,
    tasks: &mut JoinSet<()>,
    leases: Vec<Lease>,
    mut held: Vec<OwnedSemaphorePermit>,
) {
    {
        let mut inflight = shared.inflight.lock();
        for lease in &leases {
            inflight.insert(lease.receipt.job_id, lease.receipt.clone());
        }
    }
    let per_task = jobs_per_task(leases.len());
    let mut jobs = leases.into_iter().zip(held.drain(..));
    loop {
        let batch: Vec<_> = jobs.by_ref().take(per_task).collect();
        if batch.is_empty() {
            break;
        }
        tasks.spawn(run_batch(shared.clone(), ack_tx.clone(), batch));
    }
}

/// Most jobs of one fetch run by one task.
const MAX_JOBS_PER_TASK: usize = 64;

/// How many of the `fetched` jobs one task runs: enough tasks that every
/// runtime thread gets some (twice as many as threads), at most
/// [`MAX_JOBS_PER_TASK`] each. A task per job costs more than the job when
/// jobs are short (spawning, cross-thread wake-ups); one task for all of a
/// fetch would keep handlers that compute before awaiting on one thread.
fn jobs_per_task(fetched: usize) -> usize {
    let threads = tokio::runtime::Handle::try_current()
        .map(|h| h.metrics().num_workers())
        .unwrap_or(1);
    fetched
        .div_ceil(threads.max(1) * 2)
        .clamp(1, MAX_JOBS_PER_TASK)
}

/// Runs a batch of leased jobs concurrently within one task, and hands
/// their completions to the acknowledger together whenever none of the
/// rest is ready.
async fn run_batch(
    shared: Arc<Shared>,
    ack_tx: mpsc::Sender<Vec<Finished>>,
    batch: Vec<(Lease, OwnedSemaphorePermit)>,
) {
    let now = now_ms();
    shared
        .observers
        .metrics
        .record_started_many(batch.iter().map(|(lease, _)| {
            let due = lease.job.run_at.max(lease.job.created_at);
            let waited = now.saturating_sub(due) as f64 / 1000.0;
            (lease.receipt.kind.as_str(), waited)
        }));
    let mut running: FuturesUnordered<_> = batch
        .into_iter()
        .map(|(lease, permit)| run_one(&shared, lease, permit, now))
        .collect();
    let mut finished = Vec::new();
    loop {
        let next = match futures::poll!(running.next()) {
            std::task::Poll::Ready(next) => next,
            std::task::Poll::Pending => {
                send_finished(&ack_tx, &mut finished).await;
                running.next().await
            }
        };
        match next {
            Some(Some(done)) => finished.push(done),
            Some(None) => {}
            None => break,
        }
    }
    send_finished(&ack_tx, &mut finished).await;
}

async fn send_finished(ack_tx: &mpsc::Sender<Vec<Finished>>, finished: &mut Vec<Finished>) {
    if finished.is_empty() {
        return;
    }
    let jobs = finished.len();
    if ack_tx.send(std::mem::take(finished)).await.is_err() {
        tracing::warn!(
            jobs,
            "acknowledger stopped; the jobs will run again after their leases expire"
        );
    }
}

/// Waits for in-flight jobs up to `grace`, then cancels and releases the rest.
async fn drain(shared: &Shared, tasks: &mut JoinSet<()>, grace: Duration) -> ShutdownReport {
    let deadline = tokio::time::Instant::now() + grace;
    loop {
        match tokio::time::timeout_at(deadline, tasks.join_next()).await {
            Ok(Some(_)) => continue,
            Ok(None) => break,
            Err(_) => {
                tasks.abort_all();
                while tasks.join_next().await.is_some() {}
                break;
            }
        }
    }
    let leftover: Vec<Receipt> = shared.inflight.lock().drain().map(|(_, r)| r).collect();
    let released = leftover.len();
    if !leftover.is_empty() {
        for _ in &leftover {
            shared.observers.metrics.record_abandoned();
        }
        match shared.backend.release(leftover, now_ms()).await {
            Ok(_) => tracing::info!(released, "unfinished jobs handed back at shutdown"),
            Err(error) => {
                tracing::warn!(%error, "releasing unfinished jobs failed; they return when their leases expire")
            }
        }
    }
    ShutdownReport { released }
}

/// Runs one job (its start is already counted); a completion comes back
/// for the acknowledger, a failure is recorded here.
async fn run_one(
    shared: &Shared,
    lease: Lease,
    permit: OwnedSemaphorePermit,
    now: u64,
) -> Option<Finished> {
    let Lease { job, receipt, .. } = lease;
    let started = Instant::now();
    let observers = &shared.observers;
    observers.emit_in(
        job.partition,
        job.id,
        &receipt.kind,
        JobStatus::Running,
        now,
    );
    let (id, attempts, max_retries, timeout_ms) =
        (job.id, job.attempts, job.max_retries, job.timeout_ms);
    let outcome = match shared.registry.get(&receipt.kind) {
        None => Err(HandlerError::retryable(format!(
            "no handler registered for kind `{}` on worker `{}` (registered: {:?})",
            receipt.kind,
            shared.config.consumer,
            shared.registry.kinds()
        ))),
        Some(handler) => {
            let ctx = JobContext {
                job,
                receipt: receipt.clone(),
                backend: shared.backend.clone(),
            };
            let mut attempt = AssertUnwindSafe(handler.handle(ctx)).catch_unwind();
            // The timer is armed only for a handler that does not finish
            // at once (most short jobs do, and a timer costs more than them).
            let finished = match futures::poll!(&mut attempt) {
                std::task::Poll::Ready(done) => Ok(done),
                std::task::Poll::Pending => {
                    let deadline =
                        tokio::time::Instant::from_std(started) + Duration::from_millis(timeout_ms);
                    tokio::time::timeout_at(deadline, attempt).await
                }
            };
            match finished {
                Ok(Ok(result)) => result,
                Ok(Err(panic)) => {
                    let what = panic
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "unknown panic".to_string());
                    Err(HandlerError::retryable(format!("handler panicked: {what}")))
                }
                Err(_) => Err(HandlerError::retryable(format!(
                    "timed out after {timeout_ms} ms"
                ))),
            }
        }
    };
    shared.inflight.lock().remove(&id);
    let seconds = started.elapsed().as_secs_f64();
    match outcome {
        // The permit goes now: the completion waits for the acknowledger
        // in its task's batch (at most MAX_JOBS_PER_TASK of them).
        Ok(result) => Some(Finished {
            completion: Completion { receipt, result },
            seconds,
        }),
        Err(error) => {
            let now = now_ms();
            let decision = decide_after_failure(
                attempts.saturating_add(1),
                max_retries,
                error.permanent,
                &shared.config.backoff,
                now,
                rand::random::<f64>(),
            );
            let (status, outcome) = match decision {
                FailDecision::Retry { .. } => (JobStatus::Failed, AttemptOutcome::Retried),
                FailDecision::Dead => (JobStatus::Dead, AttemptOutcome::Dead),
            };
            tracing::debug!(%id, kind = %receipt.kind, error = %error.message, ?decision, "job attempt failed");
            observers
                .metrics
                .record_finished(&receipt.kind, outcome, seconds);
            let kind = receipt.kind.clone();
            match shared
                .backend
                .fail(receipt, error.message.clone(), decision, now)
                .await
            {
                Ok(AckOutcome::Ok) => observers.emit_error(id, &kind, status, now, &error.message),
                Ok(AckOutcome::LeaseLost) => {
                    tracing::warn!(%id, "lease lost before the failure was recorded")
                }
                Err(e) => tracing::error!(%id, error = %e, "recording a failed attempt failed"),
            }
            drop(permit);
            None
        }
    }
}

/// Acknowledges completions in batches of at most `ack_batch` jobs (each
/// message is the finished jobs of one task).
async fn ack_loop(shared: Arc<Shared>, mut rx: mpsc::Receiver<Vec<Finished>>) {
    let max = shared.config.ack_batch.max(1);
    let mut messages = Vec::new();
    let mut waiting: Vec<Finished> = Vec::new();
    while rx.recv_many(&mut messages, max).await > 0 {
        for message in messages.drain(..) {
            waiting.extend(message);
        }
        while !waiting.is_empty() {
            let batch = if waiting.len() <= max {
                std::mem::take(&mut waiting)
            } else {
                waiting.drain(..max).collect()
            };
            acknowledge(&shared, batch).await;
        }
    }
}

async fn acknowledge(shared: &Shared, batch: Vec<Finished>) {
    let now = now_ms();
    let observers = &shared.observers;
    // The attempts finished whether or not the acknowledgement lands.
    observers
        .metrics
        .record_finished_many(batch.iter().map(|f| {
            let kind = f.completion.receipt.kind.as_str();
            (kind, (AttemptOutcome::Completed, f.seconds))
        }));
    let ids: Vec<JobId> = batch.iter().map(|f| f.completion.receipt.job_id).collect();
    let kinds: Option<Vec<String>> = observers.events.has_subscribers().then(|| {
        batch
            .iter()
            .map(|f| f.completion.receipt.kind.clone())
            .collect()
    });
    let completions = batch.into_iter().map(|f| f.completion).collect();
    match shared.backend.complete(completions, now).await {
        Ok(outcomes) => {
            for (i, (id, outcome)) in ids.iter().zip(outcomes).enumerate() {
                match outcome {
                    AckOutcome::Ok => {
                        if let Some(kind) = kinds.as_ref().and_then(|k| k.get(i)) {
                            observers.emit(*id, Some(kind), JobStatus::Completed, now);
                        }
                    }
                    AckOutcome::LeaseLost => {
                        tracing::warn!(%id, "completed after its lease was lost; it may run again")
                    }
                }
            }
        }
        Err(error) => {
            tracing::error!(%error, jobs = ids.len(), "acknowledging completed jobs failed; they will run again after their leases expire");
        }
    }
}

async fn renew_loop(shared: Arc<Shared>, mut stop: watch::Receiver<Option<Duration>>) {
    let every = (shared.config.lease / 3).max(Duration::from_millis(10));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => {}
        }
        if stop.borrow().is_some() {
            // Keep renewing while in-flight jobs drain, until aborted.
            if shared.inflight.lock().is_empty() {
                return;
            }
            tokio::time::sleep(every).await;
        }
        let receipts: Vec<Receipt> = shared.inflight.lock().values().cloned().collect();
        if receipts.is_empty() {
            continue;
        }
        match shared
            .backend
            .renew(&receipts, shared.config.lease, now_ms())
            .await
        {
            Ok(outcomes) => {
                for (receipt, outcome) in receipts.iter().zip(outcomes) {
                    if outcome == AckOutcome::LeaseLost {
                        tracing::warn!(id = %receipt.job_id, "lease lost while running; another worker may run the job too");
                    }
                }
            }
            Err(error) => tracing::warn!(%error, "renewing leases failed"),
        }
    }
}
