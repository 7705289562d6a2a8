//! The history of a workflow: one numbered event per state change. Events
//! are the source of truth; the live state machine and replay both derive
//! state from them through [`crate::workflow::state`].

use std::fmt;

use serde::{Deserialize, Serialize};

/// What changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// The workflow was accepted (no key).
    Created,
    /// A job's dependencies finished: it is handed to the queue.
    Queued,
    /// A worker started a job.
    Started,
    /// A job completed; without a key, the whole workflow completed.
    Completed,
    /// A job failed terminally, or failed because a dependency did; without
    /// a key, the workflow finished with failures.
    Failed,
    /// A job's attempt failed and it waits in the queue for another.
    Retried,
    /// A job will not run because a dependency failed (`skip_dependants`).
    Skipped,
    /// A job was cancelled before it ran; without a key, the workflow was cancelled.
    Cancelled,
}

impl EventKind {
    /// The lowercase name used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Created => "created",
            EventKind::Queued => "queued",
            EventKind::Started => "started",
            EventKind::Completed => "completed",
            EventKind::Failed => "failed",
            EventKind::Retried => "retried",
            EventKind::Skipped => "skipped",
            EventKind::Cancelled => "cancelled",
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One state change of a workflow or of one of its jobs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkflowEvent {
    /// 1 for the first event of a workflow, then +1 per event.
    pub seq: u64,
    /// When, in ms since the Unix epoch (as passed in by the caller).
    pub at: u64,
    /// The job, or none for a change of the workflow as a whole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// What changed.
    pub kind: EventKind,
    /// Why a job failed, retried or was skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}
