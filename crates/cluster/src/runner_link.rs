//! The engine's workflow runner as the cluster sees it: it follows this
//! member's partitions (releases lost ones, adopts gained ones) and serves
//! the workflow calls other members forward here.

use async_trait::async_trait;
use ironforge_jobs::workflow::{WorkflowId, WorkflowRunner, WorkflowSpec};

use crate::ownership::Handover;
use crate::routing::LocalWorkflows;
use crate::takeover::OwnershipHook;

/// A handle on the runner of this member's engine.
#[derive(Clone, Debug)]
pub(crate) struct RunnerLink(pub(crate) WorkflowRunner);

#[async_trait]
impl OwnershipHook for RunnerLink {
    async fn partitions_moved(&self, handover: &Handover) {
        if !handover.lost.is_empty() {
            self.0.release(&handover.lost).await;
        }
        if !handover.gained.is_empty() {
            if let Err(error) = self.0.adopt(&handover.gained).await {
                tracing::warn!(%error, partitions = ?handover.gained, "adopting the workflows of gained partitions failed");
            }
        }
    }
}

#[async_trait]
impl LocalWorkflows for RunnerLink {
    async fn submit(&self, spec: WorkflowSpec) -> Result<(), String> {
        self.0
            .submit_local(spec)
            .await
            .map(|_id| ())
            .map_err(|e| e.to_string())
    }

    async fn cancel(&self, id: WorkflowId) -> Result<(), String> {
        self.0.cancel(id).await.map_err(|e| e.to_string())
    }
}
