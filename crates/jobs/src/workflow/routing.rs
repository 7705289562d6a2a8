//! Who drives a workflow. One process drives them all; in a cluster only
//! the owner of a workflow's partition does, and the other nodes hand
//! submissions and cancellations to it (`ironforge-cluster` implements
//! this trait over the node runtime). Reads need no routing: they come from
//! the [`WorkflowJournal`](super::WorkflowJournal), which every node can read.

use async_trait::async_trait;

use super::spec::{WorkflowId, WorkflowSpec};

/// Why a forwarded call did not reach the owner or got no answer.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the owner of workflow partition {partition} ({owner}) did not answer: {reason}")]
pub struct ForwardError {
    /// The workflow's partition.
    pub partition: u32,
    /// The member that owns it.
    pub owner: String,
    /// What went wrong.
    pub reason: String,
}

/// Decides whether this process drives a partition's workflows and, if not,
/// forwards to the process that does. Usable as `Arc<dyn WorkflowRouting>`.
#[async_trait]
pub trait WorkflowRouting: Send + Sync + 'static {
    /// `None` when this process owns `partition`; else the owner's name.
    fn owner_elsewhere(&self, partition: u32) -> Option<String>;

    /// Submits `spec` (id already assigned) at `owner`, which validates,
    /// records and starts it exactly as a local submission would.
    async fn forward_submit(
        &self,
        owner: &str,
        partition: u32,
        spec: &WorkflowSpec,
    ) -> Result<(), ForwardError>;

    /// Cancels workflow `id` at `owner`.
    async fn forward_cancel(
        &self,
        owner: &str,
        partition: u32,
        id: WorkflowId,
    ) -> Result<(), ForwardError>;
}
