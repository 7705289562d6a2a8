//! Job state changes into the replicated records: a task that follows the
//! engine's event bus and writes `jobs/<id>` in the job's partition, so
//! every node answers `GET /jobs/{id}`.
//!
//! Submission and start events carry the job's partition and kind; the
//! recorder keeps both (and the failed attempts it saw) for the jobs it
//! follows, in a bounded map ([`DEFAULT_KNOWN_JOBS`]), so the completion or
//! failure of a job this member ran costs no backend read. Only a change
//! of a job it knows nothing of (cancelled through this member, reclaimed
//! here after another member ran it) is read back from the queue backend
//! ([`Client::get`]). The records are best effort: the durable source of
//! job state is the queue backend; events the bus dropped because this
//! task lagged are counted.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use ironforge_jobs::{Client, JobEvent, JobId, JobStatus};
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::task::JoinHandle;

use super::layout::{job_record, JobRecordFields};
use super::Replication;

/// Events taken from the bus per batch at most (default 256).
pub const DEFAULT_RECORDER_BATCH: usize = 256;
/// Jobs whose partition and kind the recorder remembers (default 100,000);
/// past it the oldest are forgotten (their next change is read back).
pub const DEFAULT_KNOWN_JOBS: usize = 100_000;

/// Counters of a [`JobRecorder`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct JobRecorderStats {
    /// Job records written.
    pub recorded: u64,
    /// Events the bus dropped because the recorder lagged behind.
    pub lagged: u64,
    /// Changes of jobs the backend no longer knew (nothing written).
    pub missing: u64,
    /// Changes that needed a backend read (the job was not known here).
    pub read_back: u64,
    /// Backend reads or replication writes that failed.
    pub failed: u64,
}

#[derive(Default)]
struct Counters {
    recorded: AtomicU64,
    lagged: AtomicU64,
    missing: AtomicU64,
    read_back: AtomicU64,
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
            read_back: get(&c.read_back),
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
    let mut known = KnownJobs::new(DEFAULT_KNOWN_JOBS);
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
            let failed = matches!(event.status, JobStatus::Failed | JobStatus::Dead);
            if let (Some(partition), Some(kind)) = (event.partition, &event.kind) {
                known.learn(id, partition, kind);
            }
            let facts = match known.get_mut(id) {
                Some(facts) => {
                    facts.attempts += u32::from(failed);
                    facts.clone()
                }
                None => {
                    counters.read_back.fetch_add(1, Ordering::Relaxed);
                    match client.get(id).await {
                        Ok(Some(job)) => Known {
                            partition: job.partition,
                            kind: job.kind,
                            attempts: job.attempts,
                        },
                        Ok(None) => {
                            counters.missing.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                        Err(error) => {
                            counters.failed.fetch_add(1, Ordering::Relaxed);
                            tracing::debug!(%id, %error, "job recorder: backend read failed");
                            continue;
                        }
                    }
                }
            };
            let record = job_record(&JobRecordFields {
                status: event.status,
                attempts: facts.attempts,
                node: &node,
                updated_at: event.at,
                kind: &facts.kind,
                error: event.error.as_deref(),
            });
            records.push((facts.partition, id, record));
            if event.status.is_terminal() {
                known.forget(id);
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

/// What the recorder remembers of a job it follows.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Known {
    partition: u32,
    kind: String,
    /// Failed attempts seen here.
    attempts: u32,
}

/// Jobs the recorder follows, at most `capacity`, oldest forgotten first.
struct KnownJobs {
    capacity: usize,
    jobs: HashMap<JobId, Known>,
    /// Insertion order; may name jobs already forgotten.
    order: VecDeque<JobId>,
}

impl KnownJobs {
    fn new(capacity: usize) -> Self {
        KnownJobs {
            capacity: capacity.max(1),
            jobs: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    fn learn(&mut self, id: JobId, partition: u32, kind: &str) {
        if self.jobs.contains_key(&id) {
            return;
        }
        while self.jobs.len() >= self.capacity {
            match self.order.pop_front() {
                Some(old) => {
                    self.jobs.remove(&old);
                }
                None => break,
            }
        }
        self.jobs.insert(
            id,
            Known {
                partition,
                kind: kind.to_owned(),
                attempts: 0,
            },
        );
        self.order.push_back(id);
        // Forgotten ids pile up in `order`; rebuild it before it doubles.
        if self.order.len() > 2 * self.capacity {
            let jobs = &self.jobs;
            self.order.retain(|id| jobs.contains_key(id));
        }
    }

    fn get_mut(&mut self, id: JobId) -> Option<&mut Known> {
        self.jobs.get_mut(&id)
    }

    fn forget(&mut self, id: JobId) {
        self.jobs.remove(&id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_jobs_are_bounded_and_forget_the_oldest() {
        let mut known = KnownJobs::new(2);
        let ids: Vec<JobId> = (0..3).map(|_| JobId::new_random()).collect();
        known.learn(ids[0], 1, "a");
        known.learn(ids[1], 2, "b");
        known.learn(ids[0], 9, "again");
        assert_eq!(known.get_mut(ids[0]).map(|k| k.partition), Some(1));
        known.learn(ids[2], 3, "c");
        assert!(known.get_mut(ids[0]).is_none());
        assert_eq!(
            known.get_mut(ids[2]).map(|k| k.kind.clone()),
            Some("c".into())
        );
        known.forget(ids[1]);
        assert!(known.get_mut(ids[1]).is_none());
        for _ in 0..10 {
            known.learn(JobId::new_random(), 0, "x");
        }
        assert!(known.jobs.len() <= 2 && known.order.len() <= 4);
    }
}
