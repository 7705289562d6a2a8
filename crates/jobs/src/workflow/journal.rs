//! Where a workflow's record lives beyond the memory of the runner that
//! drives it: its spec and its event history, nothing else (the state is
//! always rebuilt from the events, see [`Workflow::restore`](super::Workflow::restore)).
//!
//! A single node on the embedded store keeps them on disk beside its jobs
//! ([`RedbJournal`](super::RedbJournal)), so a restart finishes what was
//! running; [`MemoryJournal`] keeps them in memory (tests, submit-only
//! processes); a cluster replicates them to each partition's preference
//! list through the JSON-CRDT (`ironforge-cluster`), so any node can answer
//! `GET /workflows/{id}` and the next owner of a partition can take its
//! workflows over.

use std::collections::HashMap;

use async_trait::async_trait;
use parking_lot::Mutex;

use super::event::{EventKind, WorkflowEvent};
use super::spec::{WorkflowId, WorkflowSpec};

/// Finished workflows a [`MemoryJournal`] keeps before forgetting the
/// oldest [10,000].
pub const DEFAULT_MAX_FINISHED_WORKFLOWS: usize = 10_000;

/// Everything recorded of one workflow.
#[derive(Clone, Debug, PartialEq)]
pub struct WorkflowRecord {
    /// The partition the workflow and all its jobs belong to.
    pub partition: u32,
    /// The spec as accepted (with its id set).
    pub spec: WorkflowSpec,
    /// The history, by ascending `seq`, without gaps.
    pub events: Vec<WorkflowEvent>,
}

impl WorkflowRecord {
    /// True once the history holds the workflow's own terminal event
    /// (completed, failed or cancelled, without a job key).
    pub fn is_finished(&self) -> bool {
        self.events.iter().any(is_workflow_end)
    }
}

/// True for the event that ends a whole workflow.
pub fn is_workflow_end(event: &WorkflowEvent) -> bool {
    event.key.is_none()
        && matches!(
            event.kind,
            EventKind::Completed | EventKind::Failed | EventKind::Cancelled
        )
}

/// Why a journal call failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum JournalError {
    /// The journal (or the replicas behind it) cannot be reached now.
    #[error("workflow journal unavailable: {0}")]
    Unavailable(String),
    /// What was stored cannot be read back.
    #[error("workflow journal holds a corrupt record for {id}: {reason}")]
    Corrupt { id: WorkflowId, reason: String },
}

/// Stores workflow specs and histories. Usable as `Arc<dyn WorkflowJournal>`.
///
/// Appends of one workflow come from its owner, in `seq` order; an
/// implementation may drop an event whose `seq` it already holds (a new
/// owner re-appending what the old one wrote).
#[async_trait]
pub trait WorkflowJournal: Send + Sync + 'static {
    /// Records a new workflow before any of its jobs is queued.
    async fn create(
        &self,
        id: WorkflowId,
        partition: u32,
        spec: &WorkflowSpec,
    ) -> Result<(), JournalError>;

    /// Appends events of a workflow already created.
    async fn append(
        &self,
        id: WorkflowId,
        partition: u32,
        events: &[WorkflowEvent],
    ) -> Result<(), JournalError>;

    /// Appends the events of several workflows (the runner's flush), one
    /// result per entry. The default appends them one by one; a store that
    /// can write them together (one transaction, one message) should.
    async fn append_batch(
        &self,
        batch: &[(WorkflowId, u32, Vec<WorkflowEvent>)],
    ) -> Vec<Result<(), JournalError>> {
        let mut results = Vec::with_capacity(batch.len());
        for (id, partition, events) in batch {
            results.push(self.append(*id, *partition, events).await);
        }
        results
    }

    /// The record, wherever it is kept; `None` if unknown.
    async fn load(&self, id: WorkflowId) -> Result<Option<WorkflowRecord>, JournalError>;

    /// Workflows of these partitions that have not finished (what a new
    /// owner of the partitions takes over).
    async fn unfinished(&self, partitions: &[u32]) -> Result<Vec<WorkflowId>, JournalError>;
}

/// The journal of a single process: records in memory, finished ones
/// forgotten oldest first beyond a bound.
///
/// ```
/// use ironforge_jobs::workflow::{MemoryJournal, WorkflowId, WorkflowJournal, WorkflowSpec};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let journal = MemoryJournal::default();
/// let id = WorkflowId::new_random();
/// journal.create(id, 3, &WorkflowSpec::default()).await?;
/// assert_eq!(journal.unfinished(&[3]).await?, vec![id]);
/// assert!(journal.unfinished(&[0, 1]).await?.is_empty());
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct MemoryJournal {
    max_finished: usize,
    inner: Mutex<Records>,
}

#[derive(Debug, Default)]
struct Records {
    by_id: HashMap<WorkflowId, WorkflowRecord>,
    /// Finished workflows, oldest first.
    finished: std::collections::VecDeque<WorkflowId>,
}

impl Default for MemoryJournal {
    fn default() -> Self {
        MemoryJournal::new(DEFAULT_MAX_FINISHED_WORKFLOWS)
    }
}

impl MemoryJournal {
    /// Keeps at most `max_finished` finished workflows.
    pub fn new(max_finished: usize) -> Self {
        MemoryJournal {
            max_finished,
            inner: Mutex::new(Records::default()),
        }
    }
}

#[async_trait]
impl WorkflowJournal for MemoryJournal {
    async fn create(
        &self,
        id: WorkflowId,
        partition: u32,
        spec: &WorkflowSpec,
    ) -> Result<(), JournalError> {
        self.inner
            .lock()
            .by_id
            .entry(id)
            .or_insert_with(|| WorkflowRecord {
                partition,
                spec: spec.clone(),
                events: Vec::new(),
            });
        Ok(())
    }

    async fn append(
        &self,
        id: WorkflowId,
        _partition: u32,
        events: &[WorkflowEvent],
    ) -> Result<(), JournalError> {
        let mut inner = self.inner.lock();
        let Some(record) = inner.by_id.get_mut(&id) else {
            return Err(JournalError::Corrupt {
                id,
                reason: "events appended before the workflow was created".into(),
            });
        };
        let was_finished = record.is_finished();
        let next = record.events.last().map_or(1, |e| e.seq + 1);
        record
            .events
            .extend(events.iter().filter(|e| e.seq >= next).cloned());
        if !was_finished && record.is_finished() {
            inner.finished.push_back(id);
            while inner.finished.len() > self.max_finished {
                if let Some(old) = inner.finished.pop_front() {
                    inner.by_id.remove(&old);
                }
            }
        }
        Ok(())
    }

    async fn load(&self, id: WorkflowId) -> Result<Option<WorkflowRecord>, JournalError> {
        Ok(self.inner.lock().by_id.get(&id).cloned())
    }

    async fn unfinished(&self, partitions: &[u32]) -> Result<Vec<WorkflowId>, JournalError> {
        Ok(self
            .inner
            .lock()
            .by_id
            .iter()
            .filter(|(_, r)| partitions.contains(&r.partition) && !r.is_finished())
            .map(|(id, _)| *id)
            .collect())
    }
}
