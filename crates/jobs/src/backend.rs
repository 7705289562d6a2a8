//! The one trait every queue store implements (embedded redb, Redis
//! Streams), shaped around leases and batches so both fit: workers fetch
//! leases in strict priority order, acknowledge in batches, renew while they
//! run, and a scheduler promotes due jobs and reclaims expired leases.
//!
//! Time is always an argument (`now_ms`, ms since the Unix epoch) so the
//! arithmetic is deterministic under test. Backends only store and move
//! jobs: retry decisions come from the worker ([`crate::backoff`]), events
//! and metrics are emitted by the layer above ([`crate::observe`]).

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::backoff::FailDecision;
use crate::error::BackendError;
use crate::job::{Job, JobId, JobStatus, Priority};

/// Proof of a lease, needed to acknowledge, fail, renew or release it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Receipt {
    /// The leased job.
    pub job_id: JobId,
    /// Its kind (so the layers above can label metrics and events).
    pub kind: String,
    /// Its priority.
    pub priority: Priority,
    /// Opaque to everyone but the backend that issued it (embedded: the
    /// lease number; Redis: partition, priority and stream entry id).
    pub token: String,
}

/// A job handed to one consumer until `expires_at` (unless renewed).
#[derive(Clone, Debug, PartialEq)]
pub struct Lease {
    /// The job, with status `running`.
    pub job: Job,
    /// What the consumer hands back to acknowledge.
    pub receipt: Receipt,
    /// How many times the job was delivered, this delivery included.
    pub delivery_count: u32,
    /// Lease expiry, ms since the epoch.
    pub expires_at: u64,
}

/// One successful attempt to acknowledge.
#[derive(Clone, Debug, PartialEq)]
pub struct Completion {
    /// The lease.
    pub receipt: Receipt,
    /// What the handler returned (stored with the job).
    pub result: serde_json::Value,
}

/// Result of acknowledging, failing, renewing or releasing one lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AckOutcome {
    /// Done.
    Ok,
    /// The lease had expired and was reclaimed (or the job cancelled):
    /// nothing changed; another delivery owns the job now.
    LeaseLost,
}

/// One job of an enqueue batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enqueued {
    /// The job's id; for a duplicate, the id of the job first submitted with the key.
    pub id: JobId,
    /// True when the idempotency key was already known and nothing was added.
    pub duplicate: bool,
}

/// What one reclaim pass did to one expired lease.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reclaimed {
    /// The job.
    pub id: JobId,
    /// Its kind.
    pub kind: String,
    /// True when it had reached the delivery limit and went to the dead letters.
    pub dead: bool,
}

/// Jobs waiting per priority.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PriorityCounts {
    /// Critical jobs.
    pub critical: u64,
    /// High jobs.
    pub high: u64,
    /// Medium jobs.
    pub medium: u64,
    /// Low jobs.
    pub low: u64,
}

impl PriorityCounts {
    /// The count of one priority.
    pub fn get(&self, priority: Priority) -> u64 {
        match priority {
            Priority::Critical => self.critical,
            Priority::High => self.high,
            Priority::Medium => self.medium,
            Priority::Low => self.low,
        }
    }

    /// Sets the count of one priority.
    pub fn set(&mut self, priority: Priority, value: u64) {
        match priority {
            Priority::Critical => self.critical = value,
            Priority::High => self.high = value,
            Priority::Medium => self.medium = value,
            Priority::Low => self.low = value,
        }
    }

    /// The sum over priorities.
    pub fn total(&self) -> u64 {
        self.critical + self.high + self.medium + self.low
    }
}

/// Counts per status.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueStats {
    /// Ready jobs per priority.
    pub queued: PriorityCounts,
    /// Delayed jobs waiting for their `run_at`.
    pub scheduled: u64,
    /// Failed attempts waiting for their retry.
    pub retrying: u64,
    /// Leased jobs.
    pub running: u64,
    /// Completed jobs still stored.
    pub completed: u64,
    /// Jobs in the dead letters.
    pub dead: u64,
    /// Cancelled jobs still stored.
    pub cancelled: u64,
}

/// A durable job queue. Implementations must be usable as
/// `Arc<dyn QueueBackend>` from many tasks at once.
///
/// Delivery is at least once: a job leaves a consumer's hands only through
/// `complete`, `fail`, `release`, or lease expiry followed by
/// `reclaim_expired`.
#[async_trait]
pub trait QueueBackend: Send + Sync + 'static {
    /// A short name for logs and `/health` (`embedded`, `redis`).
    fn name(&self) -> &'static str;

    /// Stores a batch durably, returning only after it is durable. A job
    /// whose idempotency key is known is not added (`duplicate: true`, and
    /// the first job's id). Jobs with `status == Scheduled` wait for their
    /// `run_at`; the others are ready at once.
    async fn enqueue(&self, jobs: Vec<Job>) -> Result<Vec<Enqueued>, BackendError>;

    /// Leases up to `max` ready jobs to `consumer` for `lease`, in strict
    /// priority order (all critical before any high, ...), FIFO within a
    /// priority. Returns an empty vector when nothing is ready.
    async fn fetch(
        &self,
        consumer: &str,
        max: usize,
        lease: Duration,
        now_ms: u64,
    ) -> Result<Vec<Lease>, BackendError>;

    /// Marks leased jobs completed (one batch, one durable write).
    async fn complete(
        &self,
        done: Vec<Completion>,
        now_ms: u64,
    ) -> Result<Vec<AckOutcome>, BackendError>;

    /// Records a failed attempt (`attempts + 1`, `last_error`) and carries out
    /// the worker's decision: retry at a time (status `failed` until then) or
    /// dead letters.
    async fn fail(
        &self,
        receipt: Receipt,
        error: String,
        decision: FailDecision,
        now_ms: u64,
    ) -> Result<AckOutcome, BackendError>;

    /// Hands leased jobs back unfinished (graceful shutdown): ready again at
    /// once, no attempt counted.
    async fn release(
        &self,
        receipts: Vec<Receipt>,
        now_ms: u64,
    ) -> Result<Vec<AckOutcome>, BackendError>;

    /// Extends leases to `now_ms + lease`.
    async fn renew(
        &self,
        receipts: &[Receipt],
        lease: Duration,
        now_ms: u64,
    ) -> Result<Vec<AckOutcome>, BackendError>;

    /// Reports progress (0..=100) of a leased job.
    async fn progress(&self, receipt: &Receipt, value: u8) -> Result<AckOutcome, BackendError>;

    /// Moves delayed jobs and retries whose time has come to their ready
    /// queue; returns how many moved.
    async fn promote_due(&self, now_ms: u64) -> Result<usize, BackendError>;

    /// Returns jobs whose lease expired before `now_ms` to their ready queue,
    /// or to the dead letters when they were delivered `max_deliveries`
    /// times already (poison jobs that kill their worker).
    async fn reclaim_expired(
        &self,
        now_ms: u64,
        max_deliveries: u32,
    ) -> Result<Vec<Reclaimed>, BackendError>;

    /// The job, or `None` if unknown.
    async fn get(&self, id: JobId) -> Result<Option<Job>, BackendError>;

    /// Cancels a queued, scheduled or failed (retry pending) job. Running
    /// and finished jobs give [`BackendError::InvalidState`].
    async fn cancel(&self, id: JobId, now_ms: u64) -> Result<(), BackendError>;

    /// Re-queues a dead job now, optionally with `attempts` reset to 0.
    async fn retry_dead(
        &self,
        id: JobId,
        reset_attempts: bool,
        now_ms: u64,
    ) -> Result<(), BackendError>;

    /// Up to `limit` jobs with `status` (no order promised).
    async fn list(&self, status: JobStatus, limit: usize) -> Result<Vec<Job>, BackendError>;

    /// Counts per status.
    async fn stats(&self) -> Result<QueueStats, BackendError>;

    /// Waits until work may be ready or `max_wait` passed, whichever is
    /// first. The default just sleeps; backends that can, wake earlier.
    async fn wait_for_work(&self, max_wait: Duration) {
        tokio::time::sleep(max_wait).await;
    }

    /// Flushes and stops background tasks; later calls fail with
    /// [`BackendError::Closed`]. The default does nothing.
    async fn close(&self) -> Result<(), BackendError> {
        Ok(())
    }
}
