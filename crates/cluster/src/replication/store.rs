//! One partition's replica and the small indexes kept beside it, so that
//! bounding job records and listing unfinished workflows never walk the
//! document. Pure: time comes in as `now_ms`, operations go out as return
//! values for the async shell to ship.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use ironforge_crdt::{
    path, Config, CrdtError, Event, Op, PathSeg, Replica, ReplicaId, SyncBody, SyncMessage,
    VersionVector,
};
use ironforge_jobs::workflow::is_workflow_end;
use serde_json::Value;

use super::layout::{
    self, job_path, record_is_finished, record_updated_at, workflow_event_path,
    workflow_finished_path, workflow_partition_path, workflow_path, workflow_spec_path, JOBS_KEY,
    WORKFLOWS_KEY,
};
use super::protocol::Write;

/// What the index knows of one job record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct JobEntry {
    updated_at: u64,
    finished: bool,
}

/// One partition's replica plus its indexes.
pub(crate) struct PartitionStore {
    replica: Replica,
    jobs: HashMap<Arc<str>, JobEntry>,
    /// Finished job records, oldest first: deleted first past the bound.
    finished_jobs: BTreeSet<(u64, Arc<str>)>,
    /// Workflow id -> finished.
    workflows: HashMap<Arc<str>, bool>,
}

impl PartitionStore {
    pub fn new(id: ReplicaId, config: Config) -> Self {
        let mut replica = Replica::with_config(id, config);
        // The indexes follow the change events of these two subtrees. Two
        // watches on a fresh replica stay far below the watch limit, and the
        // events are drained after every call, far below the event limit
        // (one sync message holds at most `max_sync_ops` operations).
        for prefix in [JOBS_KEY, WORKFLOWS_KEY] {
            if let Err(error) = replica.watch(&path![prefix]) {
                tracing::error!(%error, "replication: cannot watch {prefix}");
            }
        }
        PartitionStore {
            replica,
            jobs: HashMap::new(),
            finished_jobs: BTreeSet::new(),
            workflows: HashMap::new(),
        }
    }

    pub fn version(&self) -> &VersionVector {
        self.replica.version()
    }

    /// Number of job records.
    #[cfg(test)]
    pub fn job_count(&self) -> usize {
        self.jobs.len()
    }

    /// Applies one local write; returns the operations to ship.
    pub fn write(&mut self, write: &Write, now_ms: u64) -> Result<Vec<Arc<Op>>, CrdtError> {
        let mut ops = Vec::new();
        match write {
            Write::SetJob { id, record } => {
                ops.push(self.replica.set(&job_path(id), record.clone(), now_ms)?);
            }
            Write::CreateWorkflow {
                id,
                partition,
                spec,
            } => {
                let spec_path = workflow_spec_path(id);
                if self.replica.get(&spec_path).is_none() {
                    ops.push(self.replica.set(&spec_path, spec.clone().into(), now_ms)?);
                }
                let partition_path = workflow_partition_path(id);
                if self.replica.get(&partition_path).is_none() {
                    ops.push(
                        self.replica
                            .set(&partition_path, (*partition).into(), now_ms)?,
                    );
                }
            }
            Write::AppendWorkflow { id, events } => {
                for event in events {
                    let path = workflow_event_path(id, event.seq);
                    if self.replica.get(&path).is_some() {
                        // A new owner re-appending what the old one wrote.
                        continue;
                    }
                    let Ok(value) = layout::encode_event(event) else {
                        continue;
                    };
                    ops.push(self.replica.set(&path, value, now_ms)?);
                    if is_workflow_end(event) {
                        let finished = workflow_finished_path(id);
                        ops.push(self.replica.set(&finished, event.at.into(), now_ms)?);
                    }
                }
            }
        }
        self.refresh_index();
        Ok(ops)
    }

    /// Deletes the oldest finished job records beyond `max`; returns the
    /// operations to ship. Records of unfinished jobs are never deleted.
    pub fn prune_jobs(&mut self, max: usize, now_ms: u64) -> Result<Vec<Arc<Op>>, CrdtError> {
        let excess = self.jobs.len().saturating_sub(max);
        let victims: Vec<Arc<str>> = self
            .finished_jobs
            .iter()
            .take(excess)
            .map(|(_, id)| id.clone())
            .collect();
        let mut ops = Vec::with_capacity(victims.len());
        for id in victims {
            ops.push(self.replica.delete(&job_path(&id), now_ms)?);
        }
        self.refresh_index();
        Ok(ops)
    }

    /// Applies operations shipped by a peer; returns how many were applied
    /// (including earlier ones they unblocked).
    pub fn apply_remote(&mut self, ops: Vec<Op>, now_ms: u64) -> usize {
        let mut applied = 0;
        for op in ops {
            match self.replica.apply(op, now_ms) {
                Ok(ironforge_crdt::Delivery::Applied { ops }) => applied += ops,
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "replication: skipped a malformed operation"),
            }
        }
        self.refresh_index();
        applied
    }

    /// What a peer at `version` lacks. A peer that has everything costs a
    /// version comparison, not a scan of the log (the common case of an
    /// anti-entropy round).
    pub fn ops_since(&self, version: &VersionVector) -> SyncMessage {
        if self.replica.version().le(version) {
            return SyncMessage {
                from: self.replica.id(),
                version: self.replica.version().clone(),
                body: SyncBody::Ops { ops: Vec::new() },
            };
        }
        self.replica.ops_since(version)
    }

    /// Applies a peer's delta or snapshot; returns the operations applied.
    pub fn apply_sync(&mut self, message: SyncMessage, now_ms: u64) -> usize {
        let snapshot = matches!(message.body, SyncBody::Snapshot { .. });
        let applied = match self.replica.apply_sync(message, now_ms) {
            Ok(applied) => applied,
            Err(error) => {
                tracing::warn!(%error, "replication: sync message refused");
                0
            }
        };
        if snapshot {
            self.rebuild_index();
        } else {
            self.refresh_index();
        }
        applied
    }

    /// The record at `jobs/<id>`.
    pub fn job(&self, id: &str) -> Option<Value> {
        self.replica.get(&job_path(id))
    }

    /// The subtree at `workflows/<id>`, if the index knows the workflow.
    pub fn workflow(&self, id: &str) -> Option<Value> {
        if !self.workflows.contains_key(id) {
            return None;
        }
        self.replica.get(&workflow_path(id))
    }

    /// Workflows without their `finished` marker.
    pub fn unfinished_workflows(&self) -> impl Iterator<Item = &str> {
        self.workflows
            .iter()
            .filter(|(_, finished)| !**finished)
            .map(|(id, _)| &**id)
    }

    /// Stops waiting for `old` (a member's previous replica id) before
    /// collecting tombstones.
    pub fn retire_peer(&mut self, old: ReplicaId) -> bool {
        self.replica.remove_peer(old)
    }

    /// Expires stale pending operations and collects stable tombstones.
    pub fn gc(&mut self, now_ms: u64) {
        self.replica.gc(now_ms);
        self.refresh_index();
    }

    /// Folds the replica's change events into the indexes.
    fn refresh_index(&mut self) {
        let mut rebuild = false;
        for event in self.replica.drain_events() {
            match event {
                Event::Change { path, new, .. } => self.index_change(&path, new.as_ref()),
                Event::Sync { snapshot: true, .. } => rebuild = true,
                _ => {}
            }
        }
        if rebuild {
            self.rebuild_index();
        }
    }

    fn index_change(&mut self, path: &[PathSeg], new: Option<&Value>) {
        let key = |i: usize| match path.get(i) {
            Some(PathSeg::Key(key)) => Some(key.clone()),
            _ => None,
        };
        let (Some(top), Some(id)) = (key(0), key(1)) else {
            return;
        };
        match &*top {
            JOBS_KEY => {
                // A write beneath a record (not made by this layout) changes
                // it as a whole: read it back.
                let record = if path.len() == 2 {
                    new.cloned()
                } else {
                    self.replica.get(&job_path(&id))
                };
                self.index_job(id, record.as_ref());
            }
            WORKFLOWS_KEY => match (path.len(), new) {
                (2, None) => {
                    self.workflows.remove(&id);
                }
                (2, Some(value)) => {
                    let finished = value.get("finished").is_some();
                    self.workflows.insert(id, finished);
                }
                (_, new) => {
                    let finished_marker = key(2).is_some_and(|k| layout::is_finished_key(&k));
                    let entry = self.workflows.entry(id).or_insert(false);
                    if finished_marker {
                        *entry = new.is_some();
                    }
                }
            },
            _ => {}
        }
    }

    fn index_job(&mut self, id: Arc<str>, record: Option<&Value>) {
        if let Some(old) = self.jobs.remove(&id) {
            if old.finished {
                self.finished_jobs.remove(&(old.updated_at, id.clone()));
            }
        }
        if let Some(record) = record {
            let entry = JobEntry {
                updated_at: record_updated_at(record),
                finished: record_is_finished(record),
            };
            if entry.finished {
                self.finished_jobs.insert((entry.updated_at, id.clone()));
            }
            self.jobs.insert(id, entry);
        }
    }

    /// Rebuilds both indexes from the document (after a snapshot).
    fn rebuild_index(&mut self) {
        self.jobs.clear();
        self.finished_jobs.clear();
        self.workflows.clear();
        if let Some(Value::Object(jobs)) = self.replica.get(&path![JOBS_KEY]) {
            for (id, record) in jobs {
                self.index_job(id.as_str().into(), Some(&record));
            }
        }
        if let Some(Value::Object(workflows)) = self.replica.get(&path![WORKFLOWS_KEY]) {
            for (id, record) in workflows {
                let finished = record.get("finished").is_some();
                self.workflows.insert(id.as_str().into(), finished);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ironforge_jobs::workflow::{EventKind, WorkflowEvent};
    use serde_json::json;

    fn store(id: u64) -> PartitionStore {
        PartitionStore::new(ReplicaId(id), Config::default())
    }

    fn job(id: &str, status: &str, at: u64) -> Write {
        Write::SetJob {
            id: id.into(),
            record: json!({"status": status, "updated_at": at}),
        }
    }

    fn to_ops(ops: Vec<Arc<Op>>) -> Vec<Op> {
        ops.into_iter().map(|op| Op::clone(&op)).collect()
    }

    #[test]
    fn pruning_deletes_only_the_oldest_finished_records_everywhere() {
        let mut a = store(1);
        let mut b = store(2);
        let mut shipped = Vec::new();
        shipped.extend(a.write(&job("old-done", "completed", 10), 1).unwrap());
        shipped.extend(a.write(&job("running", "running", 5), 2).unwrap());
        shipped.extend(a.write(&job("new-done", "dead", 20), 3).unwrap());
        shipped.extend(a.write(&job("queued", "queued", 30), 4).unwrap());
        assert_eq!(a.job_count(), 4);
        shipped.extend(a.prune_jobs(2, 5).unwrap());
        assert_eq!(a.job_count(), 2);
        assert!(a.job("old-done").is_none() && a.job("new-done").is_none());
        assert!(a.job("running").is_some() && a.job("queued").is_some());
        // Unfinished records are kept even past the bound.
        assert!(a.prune_jobs(0, 6).unwrap().is_empty());

        assert_eq!(b.apply_remote(to_ops(shipped), 7), 6);
        assert_eq!(b.job_count(), 2);
        assert_eq!(b.job("queued"), a.job("queued"));
    }

    #[test]
    fn a_job_update_moves_its_index_entry() {
        let mut a = store(1);
        a.write(&job("j", "completed", 10), 1).unwrap();
        a.write(&job("j", "queued", 11), 2).unwrap();
        a.write(&job("k", "completed", 12), 3).unwrap();
        a.prune_jobs(1, 4).unwrap();
        assert!(
            a.job("j").is_some(),
            "j was re-queued, so it is not finished"
        );
        assert!(a.job("k").is_none());
    }

    fn event(seq: u64, kind: EventKind, key: Option<&str>) -> WorkflowEvent {
        WorkflowEvent {
            seq,
            at: 100 + seq,
            key: key.map(str::to_owned),
            kind,
            error: None,
        }
    }

    #[test]
    fn workflow_appends_are_idempotent_and_finish_marks_it() {
        let mut a = store(1);
        let spec = layout::encode_spec(&Default::default()).unwrap();
        let create = Write::CreateWorkflow {
            id: "w".into(),
            partition: 4,
            spec,
        };
        assert_eq!(a.write(&create, 1).unwrap().len(), 2);
        assert!(a.write(&create, 2).unwrap().is_empty(), "spec is set once");
        assert_eq!(a.unfinished_workflows().collect::<Vec<_>>(), ["w"]);
        let first = Write::AppendWorkflow {
            id: "w".into(),
            events: vec![
                event(1, EventKind::Created, None),
                event(2, EventKind::Queued, Some("a")),
            ],
        };
        assert_eq!(a.write(&first, 3).unwrap().len(), 2);
        assert!(
            a.write(&first, 4).unwrap().is_empty(),
            "duplicates are no-ops"
        );
        let end = Write::AppendWorkflow {
            id: "w".into(),
            events: vec![event(3, EventKind::Completed, None)],
        };
        // The event and the finished marker.
        assert_eq!(a.write(&end, 5).unwrap().len(), 2);
        assert_eq!(a.unfinished_workflows().count(), 0);

        let record = layout::decode_workflow(&a.workflow("w").unwrap())
            .unwrap()
            .unwrap();
        assert_eq!(record.partition, 4);
        assert_eq!(record.events.len(), 3);
        assert!(record.is_finished());
    }

    #[test]
    fn a_snapshot_rebuilds_the_indexes() {
        let mut a = PartitionStore::new(
            ReplicaId(1),
            Config {
                max_log_ops: 4,
                ..Config::default()
            },
        );
        for i in 0..10 {
            a.write(&job(&format!("j{i}"), "completed", i), i).unwrap();
        }
        a.write(
            &Write::CreateWorkflow {
                id: "w".into(),
                partition: 0,
                spec: "{}".into(),
            },
            11,
        )
        .unwrap();
        let message = a.ops_since(&VersionVector::new());
        assert!(matches!(message.body, SyncBody::Snapshot { .. }));
        let mut b = store(2);
        assert!(b.apply_sync(message, 12) > 0);
        assert_eq!(b.job_count(), 10);
        assert_eq!(b.unfinished_workflows().collect::<Vec<_>>(), ["w"]);
        assert_eq!(b.version(), a.version());
    }
}
