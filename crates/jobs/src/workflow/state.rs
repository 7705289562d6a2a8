//! Workflow state as data (per-job records, counts, overall status) and the
//! one function that folds an event into it. The live state machine and
//! replay share that function, so a state rebuilt from the history cannot
//! drift from the state that wrote it.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::workflow::event::{EventKind, WorkflowEvent};

/// Where a job of a workflow is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Waiting for dependencies.
    #[default]
    Pending,
    /// Handed to the queue, waiting for a worker (also after a retry).
    Queued,
    /// A worker runs it.
    Running,
    /// Finished successfully (terminal).
    Completed,
    /// Failed terminally, or because a dependency failed (terminal).
    Failed,
    /// Will not run because a dependency failed (terminal).
    Skipped,
    /// Cancelled before it ran (terminal).
    Cancelled,
}

impl JobState {
    /// All states, in life order.
    pub const ALL: [JobState; 7] = [
        JobState::Pending,
        JobState::Queued,
        JobState::Running,
        JobState::Completed,
        JobState::Failed,
        JobState::Skipped,
        JobState::Cancelled,
    ];

    /// The lowercase name used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Pending => "pending",
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Completed => "completed",
            JobState::Failed => "failed",
            JobState::Skipped => "skipped",
            JobState::Cancelled => "cancelled",
        }
    }

    /// Completed, failed, skipped and cancelled jobs never change again.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobState::Completed | JobState::Failed | JobState::Skipped | JobState::Cancelled
        )
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a workflow is as a whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkflowStatus {
    /// Some job has not finished.
    Running,
    /// Every job completed.
    Completed,
    /// Every job finished and at least one failed or was skipped.
    Failed,
    /// Cancelled; jobs that were already running may still finish.
    Cancelled,
}

impl WorkflowStatus {
    /// The lowercase name used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkflowStatus::Running => "running",
            WorkflowStatus::Completed => "completed",
            WorkflowStatus::Failed => "failed",
            WorkflowStatus::Cancelled => "cancelled",
        }
    }
}

impl fmt::Display for WorkflowStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One job's state and the facts the history gives about it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRecord {
    /// Where the job is.
    pub state: JobState,
    /// Retries recorded so far.
    #[serde(default)]
    pub retries: u32,
    /// Last error (failed attempt, terminal failure, or failed dependency).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Start of the last attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<u64>,
    /// When it reached its terminal state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<u64>,
}

/// How many jobs are in each state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobCounts {
    /// Waiting for dependencies.
    pub pending: usize,
    /// Waiting for a worker.
    pub queued: usize,
    /// Running.
    pub running: usize,
    /// Completed.
    pub completed: usize,
    /// Failed.
    pub failed: usize,
    /// Skipped.
    pub skipped: usize,
    /// Cancelled.
    pub cancelled: usize,
}

impl JobCounts {
    /// The count of jobs in `state`.
    pub fn get(&self, state: JobState) -> usize {
        match state {
            JobState::Pending => self.pending,
            JobState::Queued => self.queued,
            JobState::Running => self.running,
            JobState::Completed => self.completed,
            JobState::Failed => self.failed,
            JobState::Skipped => self.skipped,
            JobState::Cancelled => self.cancelled,
        }
    }

    /// Jobs not yet in a terminal state.
    pub fn unfinished(&self) -> usize {
        self.pending + self.queued + self.running
    }

    fn slot(&mut self, state: JobState) -> &mut usize {
        match state {
            JobState::Pending => &mut self.pending,
            JobState::Queued => &mut self.queued,
            JobState::Running => &mut self.running,
            JobState::Completed => &mut self.completed,
            JobState::Failed => &mut self.failed,
            JobState::Skipped => &mut self.skipped,
            JobState::Cancelled => &mut self.cancelled,
        }
    }

    pub(crate) fn all_pending(jobs: usize) -> Self {
        JobCounts {
            pending: jobs,
            ..JobCounts::default()
        }
    }

    pub(crate) fn moved(&mut self, from: JobState, to: JobState) {
        *self.slot(from) = self.slot(from).saturating_sub(1);
        *self.slot(to) += 1;
    }
}

/// A workflow's state at one point of its history: what `GET /workflows/{id}`
/// shows, and what [`crate::workflow::replay`] rebuilds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkflowState {
    /// Seq of the last event folded in (0: none yet).
    pub seq: u64,
    /// Overall status.
    pub status: WorkflowStatus,
    /// When the workflow was created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<u64>,
    /// When it completed, failed or was cancelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<u64>,
    /// Jobs per state.
    pub counts: JobCounts,
    /// Every job by key.
    pub jobs: BTreeMap<String, JobRecord>,
}

/// The workflow-wide part of the state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Header {
    pub seq: u64,
    pub created_at: Option<u64>,
    pub finished_at: Option<u64>,
    pub cancelled: bool,
    pub counts: JobCounts,
}

impl Header {
    pub(crate) fn new(jobs: usize) -> Self {
        Header {
            counts: JobCounts::all_pending(jobs),
            ..Header::default()
        }
    }

    /// Running until every job finished; a cancel wins over everything.
    pub(crate) fn status(&self) -> WorkflowStatus {
        if self.cancelled {
            WorkflowStatus::Cancelled
        } else if self.counts.unfinished() > 0 {
            WorkflowStatus::Running
        } else if self.counts.failed + self.counts.skipped + self.counts.cancelled > 0 {
            WorkflowStatus::Failed
        } else {
            WorkflowStatus::Completed
        }
    }

    /// Folds a workflow-wide event (one without a key).
    pub(crate) fn apply_workflow_event(&mut self, event: &WorkflowEvent) {
        self.seq = event.seq;
        match event.kind {
            EventKind::Created => self.created_at = Some(event.at),
            EventKind::Cancelled => {
                self.cancelled = true;
                self.finished_at = Some(event.at);
            }
            EventKind::Completed | EventKind::Failed => self.finished_at = Some(event.at),
            EventKind::Queued | EventKind::Started | EventKind::Retried | EventKind::Skipped => {}
        }
    }

    /// Folds a job event into `record` and the counts.
    pub(crate) fn apply_job_event(&mut self, record: &mut JobRecord, event: &WorkflowEvent) {
        self.seq = event.seq;
        let from = record.state;
        let to = match event.kind {
            EventKind::Queued => JobState::Queued,
            EventKind::Started => {
                record.started_at = Some(event.at);
                JobState::Running
            }
            EventKind::Retried => {
                record.retries = record.retries.saturating_add(1);
                record.error.clone_from(&event.error);
                JobState::Queued
            }
            EventKind::Completed => {
                record.finished_at = Some(event.at);
                JobState::Completed
            }
            EventKind::Failed => {
                record.finished_at = Some(event.at);
                record.error.clone_from(&event.error);
                JobState::Failed
            }
            EventKind::Skipped => {
                record.finished_at = Some(event.at);
                record.error.clone_from(&event.error);
                JobState::Skipped
            }
            EventKind::Cancelled => {
                record.finished_at = Some(event.at);
                JobState::Cancelled
            }
            // Replay rejects a keyed `created` before it gets here.
            EventKind::Created => from,
        };
        record.state = to;
        self.counts.moved(from, to);
    }
}
