//! Submission for `POST /jobs`. It mirrors [`crate::Client::submit_batch`]
//! (validate everything first, then one durable write, then report to the
//! shared observers) but keeps the backend's per-job `duplicate` flag,
//! which the client's API folds away and the HTTP answer must show.

use crate::backend::Enqueued;
use crate::clock::now_ms;
use crate::error::{JobError, ValidationError};
use crate::job::{JobId, JobLimits, JobSpec};
use crate::partition::Partitioner;
use crate::Client;

/// Validates `specs` (nothing is stored if one is invalid; batch errors
/// name the index) and stores them in one write. Results in input order.
pub async fn submit(
    client: &Client,
    limits: &JobLimits,
    partitioner: &Partitioner,
    specs: Vec<JobSpec>,
    batch: bool,
) -> Result<Vec<Enqueued>, JobError> {
    if specs.is_empty() || specs.len() > limits.max_batch {
        return Err(ValidationError::BadBatchSize {
            len: specs.len(),
            max: limits.max_batch,
        }
        .into());
    }
    let now = now_ms();
    let mut jobs = Vec::with_capacity(specs.len());
    for (index, spec) in specs.into_iter().enumerate() {
        let id = JobId::new_random();
        let partition = partitioner.partition_of(&id, spec.partition_key.as_deref());
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
        .map(|j| (j.kind.clone(), j.priority, j.status))
        .collect();
    let enqueued = client.backend().enqueue(jobs).await?;
    let observers = client.observers();
    for (e, (kind, priority, status)) in enqueued.iter().zip(heads) {
        if !e.duplicate {
            observers.metrics.record_submitted(&kind, priority);
            observers.emit(e.id, Some(&kind), status, now);
        }
    }
    Ok(enqueued)
}
