//! The Rust SDK: submit, inspect, cancel and retry jobs over any
//! [`QueueBackend`] without HTTP. Validates specs, assigns ids and
//! partitions, and reports submissions to the shared [`Observers`].

use std::sync::Arc;

use crate::backend::{Enqueued, QueueBackend, QueueStats};
use crate::clock::now_ms;
use crate::error::{JobError, ValidationError};
use crate::job::{Job, JobId, JobLimits, JobSpec, JobStatus};
use crate::observe::Observers;
use crate::partition::Partitioner;

/// Most jobs returned by one [`Client::list`] [1000].
pub const MAX_LIST_LIMIT: usize = 1000;

/// Client settings.
#[derive(Clone, Debug, Default)]
pub struct ClientConfig {
    /// Submission bounds.
    pub limits: JobLimits,
    /// Partition count P.
    pub partitioner: Partitioner,
    /// Where submissions, cancellations and retries are reported.
    pub observers: Observers,
}

/// Submits and manages jobs. Cheap to clone.
///
/// ```
/// use std::sync::Arc;
/// use ironforge_jobs::{Client, EmbeddedBackend, EmbeddedConfig, JobSpec, JobStatus};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// let backend = EmbeddedBackend::open(dir.path().join("jobs.redb"), EmbeddedConfig::default())?;
/// let client = Client::new(Arc::new(backend));
/// let ids = client
///     .submit_batch(vec![
///         JobSpec::new("resize", serde_json::json!({"w": 64})),
///         JobSpec::new("resize", serde_json::json!({"w": 128})).run_at(u64::MAX / 2),
///     ])
///     .await?;
/// client.cancel(ids[1]).await?;
/// assert_eq!(client.get(ids[1]).await?.map(|j| j.status), Some(JobStatus::Cancelled));
/// assert!(client.submit(JobSpec::new("", serde_json::Value::Null)).await.is_err());
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Client {
    backend: Arc<dyn QueueBackend>,
    config: ClientConfig,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("backend", &self.backend.name())
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client with default limits, 16 partitions and its own observers.
    pub fn new(backend: Arc<dyn QueueBackend>) -> Self {
        Client::with_config(backend, ClientConfig::default())
    }

    /// A client with explicit settings.
    pub fn with_config(backend: Arc<dyn QueueBackend>, config: ClientConfig) -> Self {
        Client { backend, config }
    }

    /// The backend.
    pub fn backend(&self) -> &Arc<dyn QueueBackend> {
        &self.backend
    }

    /// How jobs map to partitions.
    pub fn partitioner(&self) -> Partitioner {
        self.config.partitioner
    }

    /// The bounds every submission is checked against.
    pub fn limits(&self) -> &JobLimits {
        &self.config.limits
    }

    /// The event bus and metrics this client reports to.
    pub fn observers(&self) -> &Observers {
        &self.config.observers
    }

    /// Validates and stores one job durably; returns its id (or, for a known
    /// idempotency key, the id of the first job submitted with it).
    pub async fn submit(&self, spec: JobSpec) -> Result<JobId, JobError> {
        let mut enqueued = self.submit_detailed(vec![spec], false).await?;
        enqueued
            .pop()
            .map(|e| e.id)
            .ok_or_else(|| JobError::Backend(crate::BackendError::Storage("no id returned".into())))
    }

    /// Validates every spec first (nothing is stored if one is invalid),
    /// then stores them all in one durable write. Ids in submission order.
    pub async fn submit_batch(&self, specs: Vec<JobSpec>) -> Result<Vec<JobId>, JobError> {
        let enqueued = self.submit_detailed(specs, true).await?;
        Ok(enqueued.into_iter().map(|e| e.id).collect())
    }

    /// Like [`Client::submit_batch`], but keeps whether each job was a
    /// duplicate of an earlier idempotency key. With `batch`, validation
    /// errors name the index of the bad spec.
    pub async fn submit_detailed(
        &self,
        specs: Vec<JobSpec>,
        batch: bool,
    ) -> Result<Vec<Enqueued>, JobError> {
        let jobs = specs.into_iter().map(|spec| (JobId::new_random(), spec));
        self.enqueue_specs(jobs.collect(), batch).await
    }

    /// Like [`Client::submit_batch`] with ids chosen by the caller, for jobs
    /// whose id must be computable elsewhere (a workflow derives each job's
    /// id from the workflow id and the job key). Give each spec an
    /// idempotency key too: the backends deduplicate by key, not by id.
    pub async fn submit_with_ids(
        &self,
        jobs: Vec<(JobId, JobSpec)>,
    ) -> Result<Vec<Enqueued>, JobError> {
        self.enqueue_specs(jobs, true).await
    }

    async fn enqueue_specs(
        &self,
        specs: Vec<(JobId, JobSpec)>,
        batch: bool,
    ) -> Result<Vec<Enqueued>, JobError> {
        let limits = &self.config.limits;
        if specs.is_empty() || specs.len() > limits.max_batch {
            return Err(ValidationError::BadBatchSize {
                len: specs.len(),
                max: limits.max_batch,
            }
            .into());
        }
        let now = now_ms();
        let mut jobs = Vec::with_capacity(specs.len());
        for (index, (id, spec)) in specs.into_iter().enumerate() {
            let partition = self.config.partitioner.place(&id, &spec);
            let job = spec.into_job(id, partition, now, limits).map_err(|e| {
                if batch {
                    ValidationError::InBatch {
                        index,
                        source: Box::new(e),
                    }
                } else {
                    e
                }
            })?;
            jobs.push(job);
        }
        let heads: Vec<_> = jobs
            .iter()
            .map(|j| (j.kind.clone(), j.priority, j.status, j.partition))
            .collect();
        let enqueued = self.backend.enqueue(jobs).await?;
        let observers = &self.config.observers;
        for (e, (kind, priority, status, partition)) in enqueued.iter().zip(heads) {
            if !e.duplicate {
                observers.metrics.record_submitted(&kind, priority);
                observers.emit_in(partition, e.id, &kind, status, now);
            }
        }
        Ok(enqueued)
    }

    /// The job, or `None` if unknown.
    pub async fn get(&self, id: JobId) -> Result<Option<Job>, JobError> {
        Ok(self.backend.get(id).await?)
    }

    /// Cancels a queued, scheduled or retry-pending job.
    pub async fn cancel(&self, id: JobId) -> Result<(), JobError> {
        let now = now_ms();
        self.backend.cancel(id, now).await?;
        self.config
            .observers
            .emit(id, None, JobStatus::Cancelled, now);
        Ok(())
    }

    /// Re-queues a dead job, optionally with its attempts reset.
    pub async fn retry(&self, id: JobId, reset_attempts: bool) -> Result<(), JobError> {
        let now = now_ms();
        self.backend.retry_dead(id, reset_attempts, now).await?;
        self.config.observers.emit(id, None, JobStatus::Queued, now);
        Ok(())
    }

    /// Up to `limit` (capped at [`MAX_LIST_LIMIT`]) jobs with `status`.
    pub async fn list(&self, status: JobStatus, limit: usize) -> Result<Vec<Job>, JobError> {
        Ok(self.backend.list(status, limit.min(MAX_LIST_LIMIT)).await?)
    }

    /// Counts per status.
    pub async fn stats(&self) -> Result<QueueStats, JobError> {
        Ok(self.backend.stats().await?)
    }
}
