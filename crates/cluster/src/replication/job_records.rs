//! Job state changes into the replicated records: a task that follows the
//! engine's event bus and writes `jobs/<id>` in the job's partition, so
//! every node answers `GET /jobs/{id}`.
//!
//! The partition and the other fields (attempts, kind, last error) come
//! from the queue backend's copy of the job ([`Client::get`]): a job
//! submitted with a partition key is not in `hash(id) mod P`, and the event
//! alone does not carry attempts. That costs one backend read per changed
//! job per batch (changes of one job within a batch are coalesced). The
//! records are best effort: the durable source of job state is the queue
//! backend; events the bus dropped because this task lagged are counted.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use ironforge_jobs::{Client, JobEvent, JobId};
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::task::JoinHandle;

use super::layout::{job_record, JobRecordFields};
use super::Replication;

/// Events taken from the bus per batch at most (default 256).
pub const DEFAULT_RECORDER_BATCH: usize = 256;

/// Counters of a [`JobRecorder`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct JobRecorderStats {
    /// Job records written.
    pub recorded: u64,
    /// Events the bus dropped because the recorder lagged behind.
    pub lagged: u64,
    /// Changes of jobs the backend no longer knew (nothing written).
    pub missing: u64,
    /// Backend reads or replication writes that failed.
    pub failed: u64,
}

#[derive(Default)]
struct Counters {
    recorded: AtomicU64,
    lagged: AtomicU64,
    missing: AtomicU64,
    failed: AtomicU64,
}

/// Follows a [`Client`]'s event bus and records each job state change,
/// with this member as `node`. Stops when dropped or on [`JobRecorder::stop`].
///
/// ```no_run
/// # fn demo(replication: ironforge_cluster::replication::Replication, client: ironforge_jobs::Client) {
/// use ironforge_cluster::replication::JobRecorder;
/// let recorder = JobRecorder::spawn(replication, client);
/// println!("{:?}", recorder.stats());
/// # }
/// ```
pub struct JobRecorder {
    counters: Arc<Counters>,
    task: JoinHandle<()>,
}

impl JobRecorder {
    /// Subscribes to `client.observers().events` now (changes before this
    /// call are not recorded) and starts recording.
    pub fn spawn(replication: Replication, client: Client) -> JobRecorder {
        let events = client.observers().events.subscribe();
        let counters = Arc::new(Counters::default());
        let task = tokio::spawn(record_loop(replication, client, events, counters.clone()));
        JobRecorder { counters, task }
    }

    /// Counters since start.
    pub fn stats(&self) -> JobRecorderStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let c = &self.counters;
        JobRecorderStats {
            recorded: get(&c.recorded),
            lagged: get(&c.lagged),
            missing: get(&c.missing),
            failed: get(&c.failed),
        }
    }

    /// Stops recording.
    pub fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for JobRecorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn record_loop(
    replication: Replication,
    client: Client,
    mut events: tokio::sync::broadcast::Receiver<JobEvent>,
    counters: Arc<Counters>,
) {
    let node = replication.local();
    loop {
        let first = match events.recv().await {
            Ok(event) => event,
            Err(RecvError::Lagged(missed)) => {
                counters.lagged.fetch_add(missed, Ordering::Relaxed);
                tracing::warn!(missed, "job recorder lagged: some job records are stale");
                continue;
            }
            Err(RecvError::Closed) => return,
        };
        // Coalesce what queued up meanwhile: the newest change per job.
        let mut latest: HashMap<JobId, JobEvent> = HashMap::new();
        let mut order = vec![first.id];
        latest.insert(first.id, first);
        while latest.len() < DEFAULT_RECORDER_BATCH {
            match events.try_recv() {
                Ok(event) => {
                    if !latest.contains_key(&event.id) {
                        order.push(event.id);
                    }
                    latest.insert(event.id, event);
                }
                Err(TryRecvError::Lagged(missed)) => {
                    counters.lagged.fetch_add(missed, Ordering::Relaxed);
                }
                Err(_) => break,
            }
        }
        let mut records = Vec::with_capacity(order.len());
        for id in order {
            let Some(event) = latest.remove(&id) else {
                continue;
            };
            match client.get(id).await {
                Ok(Some(job)) => {
                    let record = job_record(&JobRecordFields {
                        // The backend's copy is at least as new as the event.
                        status: job.status,
                        attempts: job.attempts,
                        node: &node,
                        updated_at: event.at,
                        kind: &job.kind,
                        error: job.last_error.as_deref().or(event.error.as_deref()),
                    });
                    records.push((job.partition, id, record));
                }
                Ok(None) => {
                    counters.missing.fetch_add(1, Ordering::Relaxed);
                }
                Err(error) => {
                    counters.failed.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(%id, %error, "job recorder: backend read failed");
                }
            }
        }
        let written = records.len() as u64;
        match replication.write_jobs(records).await {
            Ok(()) => {
                counters.recorded.fetch_add(written, Ordering::Relaxed);
            }
            Err(error) => {
                counters.failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%error, "job recorder: records not written");
            }
        }
    }
}
