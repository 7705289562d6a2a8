//! The workflow journal of a cluster: workflow specs and histories written
//! to the replicated CRDT of the workflow's partition, so any node loads a
//! workflow and the next owner of a partition finds the unfinished ones.

use std::collections::BTreeSet;

use async_trait::async_trait;
use ironforge_jobs::workflow::{
    JournalError, WorkflowEvent, WorkflowId, WorkflowJournal, WorkflowRecord, WorkflowSpec,
};

use super::layout::{decode_workflow, encode_spec, workflow_key};
use super::protocol::{Query, Write};
use super::{Replication, ReplicationError};

/// [`WorkflowJournal`] over [`Replication`].
///
/// * `create` and `append` write to the partition's replicas (forwarded
///   when this member does not hold the partition); an event whose `seq` is
///   already recorded is skipped, so a new owner may re-append.
/// * `load` reads the local replicas first, then asks the members holding
///   the partitions this member does not (the trait gives no partition;
///   [`CrdtJournal::load_in`] asks only the partition's members).
/// * `unfinished` first syncs the held partitions among those asked (so a
///   member that just became owner sees what the old owner wrote), then
///   lists workflows without a `finished` marker in the local replicas.
#[derive(Clone)]
pub struct CrdtJournal {
    replication: Replication,
}

impl CrdtJournal {
    /// A journal writing through `replication`.
    pub fn new(replication: Replication) -> Self {
        CrdtJournal { replication }
    }

    /// Loads a workflow whose partition is known: the local replica when
    /// held, else the partition's preference-list members.
    pub async fn load_in(
        &self,
        id: WorkflowId,
        partition: u32,
    ) -> Result<Option<WorkflowRecord>, JournalError> {
        let query = Query::Workflow {
            id: workflow_key(id),
        };
        let value = self
            .replication
            .inner()
            .read(partition, query)
            .await
            .map_err(unavailable)?;
        decode(id, value)
    }
}

fn unavailable(error: ReplicationError) -> JournalError {
    JournalError::Unavailable(error.to_string())
}

fn decode(
    id: WorkflowId,
    value: Option<serde_json::Value>,
) -> Result<Option<WorkflowRecord>, JournalError> {
    match value {
        None => Ok(None),
        Some(value) => {
            decode_workflow(&value).map_err(|reason| JournalError::Corrupt { id, reason })
        }
    }
}

#[async_trait]
impl WorkflowJournal for CrdtJournal {
    async fn create(
        &self,
        id: WorkflowId,
        partition: u32,
        spec: &WorkflowSpec,
    ) -> Result<(), JournalError> {
        let spec = encode_spec(spec).map_err(|e| JournalError::Corrupt {
            id,
            reason: format!("spec does not encode: {e}"),
        })?;
        let write = Write::CreateWorkflow {
            id: workflow_key(id),
            partition,
            spec,
        };
        self.replication
            .inner()
            .write(partition, vec![write])
            .await
            .map_err(unavailable)
    }

    async fn append(
        &self,
        id: WorkflowId,
        partition: u32,
        events: &[WorkflowEvent],
    ) -> Result<(), JournalError> {
        if events.is_empty() {
            return Ok(());
        }
        let write = Write::AppendWorkflow {
            id: workflow_key(id),
            events: events.to_vec(),
        };
        self.replication
            .inner()
            .write(partition, vec![write])
            .await
            .map_err(unavailable)
    }

    async fn load(&self, id: WorkflowId) -> Result<Option<WorkflowRecord>, JournalError> {
        let inner = self.replication.inner();
        let query = Query::Workflow {
            id: workflow_key(id),
        };
        if let Some(value) = inner.search_locally(&query, true) {
            return decode(id, Some(value));
        }
        // Members holding the partitions this one does not, in ring order.
        let local = inner.local();
        let mut seen = BTreeSet::new();
        let mut members = Vec::new();
        for partition in (0..inner.config.partitions).filter(|&p| !inner.holds(p)) {
            for member in inner.preference_list(partition) {
                if member != local && seen.insert(member.clone()) {
                    members.push(member);
                }
            }
        }
        if members.is_empty() {
            return Ok(None);
        }
        match inner.read_from(&members, None, query).await {
            Ok(value) => decode(id, value),
            Err(reason) => Err(JournalError::Unavailable(reason)),
        }
    }

    async fn unfinished(&self, partitions: &[u32]) -> Result<Vec<WorkflowId>, JournalError> {
        let held: Vec<u32> = partitions
            .iter()
            .copied()
            .filter(|&p| self.replication.holds(p))
            .collect();
        self.replication.sync_now(&held).await;
        let mut ids = Vec::new();
        for id in self.replication.inner().unfinished_workflows(partitions) {
            match id.parse::<WorkflowId>() {
                Ok(id) => ids.push(id),
                Err(error) => tracing::warn!(%id, %error, "replication: workflow id is not a UUID"),
            }
        }
        Ok(ids)
    }
}
