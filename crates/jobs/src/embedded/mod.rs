//! The embedded backend: durable jobs in one local redb file, no server
//! needed; the default when no Redis URL is given.
//!
//! - Writes go through one writer thread with group commit ([`writer`]):
//!   an acknowledged submission is fsynced and survives `kill -9`.
//! - Reads and leasing run against in-memory indexes ([`index`]) rebuilt
//!   from the database on open, so `fetch` costs one read transaction.
//! - Leases live only in memory. The database file is locked by one process,
//!   so when that process dies its leases die with it, and on the next open
//!   every job that was running is ready again (at-least-once). Progress and
//!   delivery counts of requeued jobs are in-memory for the same reason.

mod index;
mod store;
mod writer;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::{Mutex, RwLock};
use redb::{Database, ReadableTable};
use tokio::sync::{mpsc, oneshot, Notify};

use self::index::{Index, Live, Slot};
use self::store::{
    decode_spec, read_job, spec_head, storage_err, to_job, IDEMPOTENCY, SPECS, STATES,
};
use self::writer::{Answer, Op, Request};
use crate::backend::{
    AckOutcome, Completion, Enqueued, Lease, PriorityCounts, QueueBackend, QueueStats, Receipt,
    Reclaimed,
};
use crate::backoff::FailDecision;
use crate::error::BackendError;
use crate::job::{Job, JobId, JobStatus, Priority};

/// Tuning and bounds of the embedded backend. Defaults in brackets.
#[derive(Clone, Debug)]
pub struct EmbeddedConfig {
    /// Most unfinished jobs held; more submissions get `QueueFull` [10,000,000].
    pub max_live_jobs: usize,
    /// Write requests waiting for the writer before callers wait [4096].
    pub write_queue_capacity: usize,
    /// Most write requests folded into one transaction [1024].
    pub max_requests_per_commit: usize,
    /// redb page cache [64 MiB].
    pub cache_size_bytes: usize,
    /// Most records examined by `list` of finished statuses [1,000,000].
    pub max_list_scan: usize,
    /// Largest stored handler result; bigger ones are replaced by a marker [1 MiB].
    pub max_result_bytes: usize,
    /// Most jobs moved by one `promote_due` or `reclaim_expired` call [10,000].
    pub max_promote_per_pass: usize,
}

impl Default for EmbeddedConfig {
    fn default() -> Self {
        EmbeddedConfig {
            max_live_jobs: 10_000_000,
            write_queue_capacity: 4096,
            max_requests_per_commit: 1024,
            cache_size_bytes: 64 * 1024 * 1024,
            max_list_scan: 1_000_000,
            max_result_bytes: 1024 * 1024,
            max_promote_per_pass: 10_000,
        }
    }
}

/// State shared by the backend handle and its writer thread.
pub(crate) struct Shared {
    db: RwLock<Option<Arc<Database>>>,
    index: Mutex<Index>,
    work: Notify,
    config: EmbeddedConfig,
}

impl Shared {
    fn db(&self) -> Result<Arc<Database>, BackendError> {
        self.db.read().clone().ok_or(BackendError::Closed)
    }

    /// Replaces the indexes with ones rebuilt from the database.
    fn rebuild_index(&self, db: &Database) -> Result<(), BackendError> {
        let mut fresh = load_index(db)?;
        let mut index = self.index.lock();
        fresh.continue_tokens_from(&index);
        *index = fresh;
        Ok(())
    }
}

/// Reads every state record and rebuilds the queues, heaps and counts.
fn load_index(db: &Database) -> Result<Index, BackendError> {
    let txn = db.begin_read().map_err(storage_err)?;
    let specs = txn.open_table(SPECS).map_err(storage_err)?;
    let states = txn.open_table(STATES).map_err(storage_err)?;
    let mut live = Vec::new();
    let mut finished = [0u64; 3];
    let mut max_seq = 0;
    for entry in states.iter().map_err(storage_err)? {
        let (key, value) = entry.map_err(storage_err)?;
        let id = JobId::from_u128(key.value());
        let state = match writer::state_of(value.value()) {
            Ok(state) => state,
            Err(error) => {
                tracing::error!(%id, %error, "unreadable job state record skipped");
                continue;
            }
        };
        max_seq = max_seq.max(state.seq);
        let slot = match state.status {
            JobStatus::Completed => {
                finished[0] += 1;
                continue;
            }
            JobStatus::Dead => {
                finished[1] += 1;
                continue;
            }
            JobStatus::Cancelled => {
                finished[2] += 1;
                continue;
            }
            JobStatus::Queued | JobStatus::Running => Slot::Ready { seq: state.seq },
            JobStatus::Scheduled | JobStatus::Failed => Slot::Delayed {
                run_at: state.run_at,
                seq: state.seq,
                retry: state.status == JobStatus::Failed,
            },
        };
        let Some(spec) = specs.get(key.value()).map_err(storage_err)? else {
            tracing::error!(%id, "job state without a spec record skipped");
            continue;
        };
        let (priority, kind) = spec_head(spec.value())?;
        live.push((
            id,
            Live {
                priority,
                kind: Arc::from(kind),
                attempts: state.attempts,
                deliveries: state.deliveries,
                slot,
            },
        ));
    }
    // Ready queues are FIFO by sequence number.
    live.sort_by_key(|(_, l)| match l.slot {
        Slot::Ready { seq } | Slot::Delayed { seq, .. } => seq,
        Slot::Leased(_) => 0,
    });
    let mut index = Index::new(max_seq);
    for (id, l) in live {
        index.insert(id, l);
    }
    index.counts.completed = finished[0];
    index.counts.dead = finished[1];
    index.counts.cancelled = finished[2];
    Ok(index)
}

/// The embedded durable backend. Cheap to share as `Arc<dyn QueueBackend>`.
///
/// `fetch` and `get` read redb directly on the calling task (reads are
/// served from its page cache and take microseconds); writes are handed to
/// the writer thread.
pub struct EmbeddedBackend {
    shared: Arc<Shared>,
    writer: mpsc::Sender<Request>,
}

impl std::fmt::Debug for EmbeddedBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedBackend").finish_non_exhaustive()
    }
}

impl EmbeddedBackend {
    /// Opens (or creates) the database at `path`, rebuilds the indexes and
    /// starts the writer thread. Jobs that were running when the previous
    /// process died are ready again. Blocking: call it at start-up.
    pub fn open(path: impl AsRef<Path>, config: EmbeddedConfig) -> Result<Self, BackendError> {
        let path = path.as_ref();
        let db = Database::builder()
            .set_cache_size(config.cache_size_bytes)
            .create(path)
            .map_err(|e| {
                BackendError::Storage(format!("cannot open job database {}: {e}", path.display()))
            })?;
        let txn = db.begin_write().map_err(storage_err)?;
        txn.open_table(SPECS).map_err(storage_err)?;
        txn.open_table(STATES).map_err(storage_err)?;
        txn.open_table(IDEMPOTENCY).map_err(storage_err)?;
        txn.commit().map_err(storage_err)?;
        let index = load_index(&db)?;
        tracing::info!(
            path = %path.display(),
            live = index.live_len(),
            "embedded job store opened"
        );
        let db = Arc::new(db);
        let shared = Arc::new(Shared {
            db: RwLock::new(Some(db.clone())),
            index: Mutex::new(index),
            work: Notify::new(),
            config: config.clone(),
        });
        let (tx, rx) = mpsc::channel(config.write_queue_capacity.max(1));
        let writer_shared = shared.clone();
        std::thread::Builder::new()
            .name("ironforge-jobs-writer".to_string())
            .spawn(move || writer::run(writer_shared, db, rx))
            .map_err(|e| BackendError::Storage(format!("cannot start writer thread: {e}")))?;
        Ok(EmbeddedBackend { shared, writer: tx })
    }

    async fn call(&self, op: Op) -> Result<Answer, BackendError> {
        let (reply, answer) = oneshot::channel();
        self.writer
            .send(Request { op, reply })
            .await
            .map_err(|_| BackendError::Closed)?;
        answer.await.map_err(|_| BackendError::Closed)?
    }

    fn unexpected(answer: Answer) -> BackendError {
        BackendError::Storage(format!("internal: unexpected writer answer {answer:?}"))
    }

    /// Overlays what only memory knows (running, attempts, progress).
    fn overlay(&self, mut job: Job) -> Job {
        let index = self.shared.index.lock();
        if let Some(live) = index.get(&job.id) {
            job.attempts = live.attempts;
            job.deliveries = live.deliveries;
            match &live.slot {
                Slot::Leased(lease) => {
                    job.status = JobStatus::Running;
                    job.started_at = Some(lease.started_at);
                    job.progress = lease.progress;
                }
                Slot::Ready { .. } => job.status = JobStatus::Queued,
                Slot::Delayed { run_at, retry, .. } => {
                    job.run_at = *run_at;
                    job.status = if *retry {
                        JobStatus::Failed
                    } else {
                        JobStatus::Scheduled
                    };
                }
            }
        }
        job
    }

    fn read_jobs(&self, ids: &[JobId]) -> Result<Vec<Job>, BackendError> {
        let db = self.shared.db()?;
        let txn = db.begin_read().map_err(storage_err)?;
        let specs = txn.open_table(SPECS).map_err(storage_err)?;
        let states = txn.open_table(STATES).map_err(storage_err)?;
        let mut jobs = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(job) = read_job(&specs, &states, *id)? {
                jobs.push(self.overlay(job));
            }
        }
        Ok(jobs)
    }

    fn scan_finished(&self, status: JobStatus, limit: usize) -> Result<Vec<Job>, BackendError> {
        let db = self.shared.db()?;
        let txn = db.begin_read().map_err(storage_err)?;
        let specs = txn.open_table(SPECS).map_err(storage_err)?;
        let states = txn.open_table(STATES).map_err(storage_err)?;
        let mut jobs = Vec::new();
        for entry in states
            .iter()
            .map_err(storage_err)?
            .take(self.shared.config.max_list_scan)
        {
            if jobs.len() >= limit {
                break;
            }
            let (key, value) = entry.map_err(storage_err)?;
            let Ok(state) = writer::state_of(value.value()) else {
                continue;
            };
            if state.status != status {
                continue;
            }
            let id = JobId::from_u128(key.value());
            if let Some(spec) = specs.get(key.value()).map_err(storage_err)? {
                jobs.push(self.overlay(to_job(id, decode_spec(spec.value())?, state)));
            }
        }
        Ok(jobs)
    }
}

fn token_of(receipt: &Receipt) -> Option<u64> {
    receipt.token.parse().ok()
}

#[async_trait]
impl QueueBackend for EmbeddedBackend {
    fn name(&self) -> &'static str {
        "embedded"
    }

    async fn enqueue(&self, jobs: Vec<Job>) -> Result<Vec<Enqueued>, BackendError> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        match self.call(Op::Enqueue(jobs)).await? {
            Answer::Enqueued(ids) => Ok(ids),
            other => Err(Self::unexpected(other)),
        }
    }

    async fn fetch(
        &self,
        _consumer: &str,
        max: usize,
        lease: Duration,
        now_ms: u64,
    ) -> Result<Vec<Lease>, BackendError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let db = self.shared.db()?;
        let lease_ms = lease.as_millis().min(u128::from(u64::MAX)) as u64;
        let granted = self.shared.index.lock().lease(max, lease_ms, now_ms);
        if granted.is_empty() {
            return Ok(Vec::new());
        }
        let txn = db.begin_read().map_err(storage_err)?;
        let specs = txn.open_table(SPECS).map_err(storage_err)?;
        let states = txn.open_table(STATES).map_err(storage_err)?;
        let mut leases = Vec::with_capacity(granted.len());
        for grant in granted {
            let Some(mut job) = read_job(&specs, &states, grant.id)? else {
                tracing::error!(id = %grant.id, "leased job has no record; dropped");
                self.shared.index.lock().remove(&grant.id);
                continue;
            };
            job.status = JobStatus::Running;
            job.attempts = grant.attempts;
            job.deliveries = grant.deliveries;
            job.started_at = Some(now_ms);
            leases.push(Lease {
                receipt: Receipt {
                    job_id: grant.id,
                    kind: job.kind.clone(),
                    priority: grant.priority,
                    token: grant.token.to_string(),
                },
                job,
                delivery_count: grant.deliveries,
                expires_at: grant.expires_at,
            });
        }
        Ok(leases)
    }

    async fn complete(
        &self,
        done: Vec<Completion>,
        now_ms: u64,
    ) -> Result<Vec<AckOutcome>, BackendError> {
        if done.is_empty() {
            return Ok(Vec::new());
        }
        match self.call(Op::Complete(done, now_ms)).await? {
            Answer::Acks(acks) => Ok(acks),
            other => Err(Self::unexpected(other)),
        }
    }

    async fn fail(
        &self,
        receipt: Receipt,
        error: String,
        decision: FailDecision,
        now_ms: u64,
    ) -> Result<AckOutcome, BackendError> {
        let op = Op::Fail {
            receipt,
            error,
            decision,
            now_ms,
        };
        match self.call(op).await? {
            Answer::Ack(ack) => Ok(ack),
            other => Err(Self::unexpected(other)),
        }
    }

    async fn release(
        &self,
        receipts: Vec<Receipt>,
        _now_ms: u64,
    ) -> Result<Vec<AckOutcome>, BackendError> {
        let outcomes: Vec<AckOutcome> = {
            let mut index = self.shared.index.lock();
            receipts
                .iter()
                .map(|r| match token_of(r) {
                    Some(token) if index.release(&r.job_id, token) => AckOutcome::Ok,
                    _ => AckOutcome::LeaseLost,
                })
                .collect()
        };
        self.shared.work.notify_waiters();
        Ok(outcomes)
    }

    async fn renew(
        &self,
        receipts: &[Receipt],
        lease: Duration,
        now_ms: u64,
    ) -> Result<Vec<AckOutcome>, BackendError> {
        let expires_at = now_ms.saturating_add(lease.as_millis().min(u128::from(u64::MAX)) as u64);
        let mut index = self.shared.index.lock();
        Ok(receipts
            .iter()
            .map(|r| match token_of(r) {
                Some(token) if index.renew(&r.job_id, token, expires_at) => AckOutcome::Ok,
                _ => AckOutcome::LeaseLost,
            })
            .collect())
    }

    async fn progress(&self, receipt: &Receipt, value: u8) -> Result<AckOutcome, BackendError> {
        let value = value.min(100);
        let ok = token_of(receipt)
            .map(|token| {
                self.shared
                    .index
                    .lock()
                    .set_progress(&receipt.job_id, token, value)
            })
            .unwrap_or(false);
        Ok(if ok {
            AckOutcome::Ok
        } else {
            AckOutcome::LeaseLost
        })
    }

    async fn promote_due(&self, now_ms: u64) -> Result<usize, BackendError> {
        // Skip the writer (and an fsync) when nothing can be due.
        if !self.shared.index.lock().may_have_due(now_ms) {
            return Ok(0);
        }
        match self.call(Op::Promote(now_ms)).await? {
            Answer::Count(n) => Ok(n),
            other => Err(Self::unexpected(other)),
        }
    }

    async fn reclaim_expired(
        &self,
        now_ms: u64,
        max_deliveries: u32,
    ) -> Result<Vec<Reclaimed>, BackendError> {
        if !self.shared.index.lock().may_have_expired(now_ms) {
            return Ok(Vec::new());
        }
        let op = Op::Reclaim {
            now_ms,
            max_deliveries,
        };
        match self.call(op).await? {
            Answer::Reclaimed(list) => Ok(list),
            other => Err(Self::unexpected(other)),
        }
    }

    async fn get(&self, id: JobId) -> Result<Option<Job>, BackendError> {
        Ok(self.read_jobs(&[id])?.pop())
    }

    async fn cancel(&self, id: JobId, now_ms: u64) -> Result<(), BackendError> {
        match self.call(Op::Cancel(id, now_ms)).await? {
            Answer::Done => Ok(()),
            other => Err(Self::unexpected(other)),
        }
    }

    async fn retry_dead(
        &self,
        id: JobId,
        reset_attempts: bool,
        now_ms: u64,
    ) -> Result<(), BackendError> {
        let op = Op::RetryDead {
            id,
            reset_attempts,
            now_ms,
        };
        match self.call(op).await? {
            Answer::Done => Ok(()),
            other => Err(Self::unexpected(other)),
        }
    }

    async fn list(&self, status: JobStatus, limit: usize) -> Result<Vec<Job>, BackendError> {
        let pick: fn(&Slot) -> bool = match status {
            JobStatus::Queued => |s| matches!(s, Slot::Ready { .. }),
            JobStatus::Running => |s| matches!(s, Slot::Leased(_)),
            JobStatus::Scheduled => |s| matches!(s, Slot::Delayed { retry: false, .. }),
            JobStatus::Failed => |s| matches!(s, Slot::Delayed { retry: true, .. }),
            JobStatus::Completed | JobStatus::Dead | JobStatus::Cancelled => {
                return self.scan_finished(status, limit);
            }
        };
        let ids = self.shared.index.lock().find(limit, pick);
        self.read_jobs(&ids)
    }

    async fn stats(&self) -> Result<QueueStats, BackendError> {
        let counts = self.shared.index.lock().counts;
        let mut queued = PriorityCounts::default();
        for priority in Priority::ALL {
            queued.set(priority, counts.ready[priority.rank()]);
        }
        Ok(QueueStats {
            queued,
            scheduled: counts.scheduled,
            retrying: counts.retrying,
            running: counts.leased,
            completed: counts.completed,
            dead: counts.dead,
            cancelled: counts.cancelled,
        })
    }

    async fn wait_for_work(&self, max_wait: Duration) {
        let notified = self.shared.work.notified();
        if self.shared.index.lock().counts.ready.iter().any(|n| *n > 0) {
            return;
        }
        let _ = tokio::time::timeout(max_wait, notified).await;
    }

    async fn close(&self) -> Result<(), BackendError> {
        let result = self.call(Op::Shutdown).await;
        self.shared.db.write().take();
        match result {
            Ok(_) | Err(BackendError::Closed) => Ok(()),
            Err(e) => Err(e),
        }
    }
}
