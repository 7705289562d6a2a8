//! Observation of the engine: a broadcast bus of job state changes (for the
//! SSE endpoint) and plain counters (for the Prometheus endpoint). Fed by the
//! [`crate::Client`], the workers and the scheduler, so both backends report
//! the same way. Bounded: the bus drops events for subscribers that lag
//! (they see `RecvError::Lagged`), and metric labels are capped.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::job::{JobId, JobStatus, Priority};

/// Events buffered per subscriber before it lags [4096].
pub const DEFAULT_EVENT_CAPACITY: usize = 4096;
/// Distinct `kind` labels before others are counted as `_other` [256].
pub const DEFAULT_MAX_KIND_LABELS: usize = 256;
/// Label used for kinds past the label limit.
pub const OTHER_KIND_LABEL: &str = "_other";
/// Histogram bucket bounds in seconds (for durations and wait times).
pub const BUCKETS_SECONDS: [f64; 12] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0, 120.0,
];

/// One job state change.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobEvent {
    /// The job.
    pub id: JobId,
    /// Its kind, when the emitter knows it.
    pub kind: Option<String>,
    /// The new status.
    pub status: JobStatus,
    /// When, ms since the epoch.
    pub at: u64,
    /// The error that caused a `failed`/`dead` change, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The job's partition, when the emitter holds the job (submission and
    /// start); later changes of the job carry none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<u32>,
}

/// Fan-out of [`JobEvent`]s; cheap to clone.
#[derive(Clone, Debug)]
pub struct EventBus {
    sender: broadcast::Sender<JobEvent>,
}

impl Default for EventBus {
    fn default() -> Self {
        EventBus::new(DEFAULT_EVENT_CAPACITY)
    }
}

impl EventBus {
    /// A bus keeping at most `capacity` events per lagging subscriber.
    pub fn new(capacity: usize) -> Self {
        let (sender, _) = broadcast::channel(capacity.max(1));
        EventBus { sender }
    }

    /// A new subscription, starting with the next event.
    pub fn subscribe(&self) -> broadcast::Receiver<JobEvent> {
        self.sender.subscribe()
    }

    /// Publishes an event; a no-op without subscribers.
    pub fn publish(&self, event: JobEvent) {
        if self.sender.receiver_count() > 0 {
            let _ = self.sender.send(event);
        }
    }

    /// True when someone listens (lets emitters skip building events).
    pub fn has_subscribers(&self) -> bool {
        self.sender.receiver_count() > 0
    }
}

/// A fixed-bucket histogram.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Histogram {
    /// Observations per bucket of [`BUCKETS_SECONDS`] (each counts values above the previous bound; not cumulative).
    pub buckets: [u64; BUCKETS_SECONDS.len()],
    /// Observations above the last bound.
    pub overflow: u64,
    /// Sum of observations, seconds.
    pub sum: f64,
    /// Number of observations.
    pub count: u64,
}

impl Histogram {
    /// Adds one observation.
    pub fn observe(&mut self, seconds: f64) {
        match BUCKETS_SECONDS.iter().position(|b| seconds <= *b) {
            Some(i) => self.buckets[i] += 1,
            None => self.overflow += 1,
        }
        self.sum += seconds;
        self.count += 1;
    }
}

/// Counters per kind.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct KindCounters {
    /// Submitted per priority (critical, high, medium, low).
    pub submitted: [u64; 4],
    /// Completed.
    pub completed: u64,
    /// Failed attempts (includes those retried and those that died).
    pub failed: u64,
    /// Retries scheduled.
    pub retried: u64,
    /// Sent to the dead letters.
    pub dlq: u64,
    /// Run time of completed attempts.
    pub duration_completed: Histogram,
    /// Run time of failed attempts.
    pub duration_failed: Histogram,
    /// Time from due to start.
    pub wait_time: Histogram,
}

/// Engine counters; share one `Arc<JobMetrics>` between client and workers.
#[derive(Debug)]
pub struct JobMetrics {
    max_kinds: usize,
    kinds: Mutex<HashMap<String, KindCounters>>,
    active: AtomicU64,
}

impl Default for JobMetrics {
    fn default() -> Self {
        JobMetrics::new(DEFAULT_MAX_KIND_LABELS)
    }
}

/// How an attempt ended, for [`JobMetrics::record_finished`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// Completed.
    Completed,
    /// Failed, retry scheduled.
    Retried,
    /// Failed, to the dead letters.
    Dead,
}

impl JobMetrics {
    /// Counters keeping at most `max_kinds` distinct kind labels.
    pub fn new(max_kinds: usize) -> Self {
        JobMetrics {
            max_kinds: max_kinds.max(1),
            kinds: Mutex::new(HashMap::new()),
            active: AtomicU64::new(0),
        }
    }

    /// Applies `update` to the counters of each item's kind, under one lock
    /// (a worker records a batch of jobs at once); returns how many items.
    fn update_kinds<'a, T>(
        &self,
        items: impl IntoIterator<Item = (&'a str, T)>,
        mut update: impl FnMut(&mut KindCounters, T),
    ) -> u64 {
        let mut kinds = self.kinds.lock();
        let mut count = 0;
        for (kind, item) in items {
            count += 1;
            if let Some(counters) = kinds.get_mut(kind) {
                update(counters, item);
                continue;
            }
            let label = if kinds.len() < self.max_kinds {
                kind
            } else {
                OTHER_KIND_LABEL
            };
            update(kinds.entry(label.to_string()).or_default(), item);
        }
        count
    }

    /// A job accepted (not a duplicate).
    pub fn record_submitted(&self, kind: &str, priority: Priority) {
        self.update_kinds([(kind, priority)], |c, p| c.submitted[p.rank()] += 1);
    }

    /// A job handed to a handler after waiting `wait_seconds` since it was due.
    pub fn record_started(&self, kind: &str, wait_seconds: f64) {
        self.record_started_many([(kind, wait_seconds)]);
    }

    /// [`JobMetrics::record_started`] for many jobs: `(kind, wait_seconds)`.
    pub fn record_started_many<'a>(&self, started: impl IntoIterator<Item = (&'a str, f64)>) {
        let count = self.update_kinds(started, |c, wait| c.wait_time.observe(wait));
        self.active.fetch_add(count, Ordering::Relaxed);
    }

    /// An attempt ended after `seconds`.
    pub fn record_finished(&self, kind: &str, outcome: AttemptOutcome, seconds: f64) {
        self.record_finished_many([(kind, (outcome, seconds))]);
    }

    /// [`JobMetrics::record_finished`] for many attempts: `(kind, (outcome, seconds))`.
    pub fn record_finished_many<'a>(
        &self,
        finished: impl IntoIterator<Item = (&'a str, (AttemptOutcome, f64))>,
    ) {
        let count = self.update_kinds(finished, |c, (outcome, seconds)| match outcome {
            AttemptOutcome::Completed => {
                c.completed += 1;
                c.duration_completed.observe(seconds);
            }
            AttemptOutcome::Retried => {
                c.failed += 1;
                c.retried += 1;
                c.duration_failed.observe(seconds);
            }
            AttemptOutcome::Dead => {
                c.failed += 1;
                c.dlq += 1;
                c.duration_failed.observe(seconds);
            }
        });
        self.release_active(count);
    }

    /// An attempt cancelled at shutdown and handed back (no outcome counted).
    pub fn record_abandoned(&self) {
        self.release_active(1);
    }

    fn release_active(&self, count: u64) {
        let _ = self
            .active
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                Some(v.saturating_sub(count))
            });
    }

    /// A poison job sent to the dead letters by the reclaimer.
    pub fn record_poisoned(&self, kind: &str) {
        self.update_kinds([(kind, ())], |c, ()| c.dlq += 1);
    }

    /// Jobs being handled right now in this process.
    pub fn active_jobs(&self) -> u64 {
        self.active.load(Ordering::Relaxed)
    }

    /// A copy of all counters by kind label.
    pub fn snapshot(&self) -> HashMap<String, KindCounters> {
        self.kinds.lock().clone()
    }
}

/// What the emitters share: the event bus and the counters.
#[derive(Clone, Debug, Default)]
pub struct Observers {
    /// Job state changes.
    pub events: EventBus,
    /// Counters.
    pub metrics: Arc<JobMetrics>,
}

impl Observers {
    /// Publishes a state change when someone listens.
    pub fn emit(&self, id: JobId, kind: Option<&str>, status: JobStatus, at: u64) {
        self.publish(id, kind, status, at, None);
    }

    /// [`emit`](Self::emit) for an emitter that holds the job and so knows
    /// its partition (listeners that shard by partition need not look it up).
    pub fn emit_in(&self, partition: u32, id: JobId, kind: &str, status: JobStatus, at: u64) {
        self.publish(id, Some(kind), status, at, Some(partition));
    }

    fn publish(
        &self,
        id: JobId,
        kind: Option<&str>,
        status: JobStatus,
        at: u64,
        partition: Option<u32>,
    ) {
        if self.events.has_subscribers() {
            self.events.publish(JobEvent {
                id,
                kind: kind.map(str::to_string),
                status,
                at,
                error: None,
                partition,
            });
        }
    }

    /// Publishes a failure-caused state change when someone listens.
    pub fn emit_error(&self, id: JobId, kind: &str, status: JobStatus, at: u64, error: &str) {
        if self.events.has_subscribers() {
            self.events.publish(JobEvent {
                id,
                kind: Some(kind.to_string()),
                status,
                at,
                error: Some(error.to_string()),
                partition: None,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_labels_are_capped() {
        let m = JobMetrics::new(2);
        m.record_submitted("a", Priority::High);
        m.record_submitted("b", Priority::Low);
        m.record_submitted("c", Priority::Low);
        m.record_submitted("a", Priority::High);
        let snap = m.snapshot();
        assert_eq!(snap.len(), 3);
        assert_eq!(snap["a"].submitted[1], 2);
        assert_eq!(snap[OTHER_KIND_LABEL].submitted[3], 1);
    }

    #[test]
    fn histogram_buckets_and_active_gauge() {
        let m = JobMetrics::default();
        m.record_started("k", 0.002);
        assert_eq!(m.active_jobs(), 1);
        m.record_finished("k", AttemptOutcome::Completed, 1000.0);
        assert_eq!(m.active_jobs(), 0);
        let k = &m.snapshot()["k"];
        assert_eq!(k.wait_time.buckets[1], 1);
        assert_eq!(k.duration_completed.overflow, 1);
        assert_eq!(k.completed, 1);
    }
}
