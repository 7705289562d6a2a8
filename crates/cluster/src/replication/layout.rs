//! Where job and workflow state lives inside each partition's JSON-CRDT
//! document, and how it is encoded. Pure: paths and JSON in, records out.
//!
//! ```text
//! jobs/<job id>                      {status, attempts, node, updated_at, kind, error?}
//! workflows/<workflow id>/spec       the WorkflowSpec as a JSON string, set once
//! workflows/<workflow id>/partition  the partition number, set once
//! workflows/<workflow id>/events/<seq>  one WorkflowEvent per path
//! workflows/<workflow id>/finished   `at` of the workflow-end event, once appended
//! ```
//!
//! A job record is one value written whole, so the newest state change wins
//! as a unit (last writer wins by HLC stamp). Workflow events get one path
//! each: appends by different `seq` never conflict, and a re-append of a
//! `seq` already present is skipped. The spec is kept as a string because it
//! never changes: stored as a tree it would cost one CRDT node (and list
//! element id) per field for nothing.

use ironforge_crdt::Seg;
use ironforge_jobs::workflow::{WorkflowEvent, WorkflowId, WorkflowRecord, WorkflowSpec};
use ironforge_jobs::JobStatus;
use serde_json::{json, Map, Value};

/// Top-level key of job records.
pub const JOBS_KEY: &str = "jobs";
/// Top-level key of workflow records.
pub const WORKFLOWS_KEY: &str = "workflows";
const SPEC_KEY: &str = "spec";
const PARTITION_KEY: &str = "partition";
const EVENTS_KEY: &str = "events";
const FINISHED_KEY: &str = "finished";

/// `jobs/<id>`.
pub fn job_path(id: &str) -> Vec<Seg> {
    vec![Seg::from(JOBS_KEY), Seg::from(id)]
}

/// `workflows/<id>`.
pub fn workflow_path(id: &str) -> Vec<Seg> {
    vec![Seg::from(WORKFLOWS_KEY), Seg::from(id)]
}

/// `workflows/<id>/spec`.
pub fn workflow_spec_path(id: &str) -> Vec<Seg> {
    child(id, SPEC_KEY)
}

/// `workflows/<id>/partition`.
pub fn workflow_partition_path(id: &str) -> Vec<Seg> {
    child(id, PARTITION_KEY)
}

/// `workflows/<id>/finished`.
pub fn workflow_finished_path(id: &str) -> Vec<Seg> {
    child(id, FINISHED_KEY)
}

/// `workflows/<id>/events/<seq>`.
pub fn workflow_event_path(id: &str, seq: u64) -> Vec<Seg> {
    let mut path = child(id, EVENTS_KEY);
    path.push(Seg::from(seq.to_string()));
    path
}

fn child(id: &str, key: &str) -> Vec<Seg> {
    let mut path = workflow_path(id);
    path.push(Seg::from(key));
    path
}

/// True when `key` names the `finished` marker under a workflow.
pub(crate) fn is_finished_key(key: &str) -> bool {
    key == FINISHED_KEY
}

/// What the cluster records of one job.
#[derive(Clone, Debug, PartialEq)]
pub struct JobRecordFields<'a> {
    /// Current status.
    pub status: JobStatus,
    /// Attempts that finished.
    pub attempts: u32,
    /// The member that recorded the change.
    pub node: &'a str,
    /// When the change happened, ms since the epoch.
    pub updated_at: u64,
    /// The job's kind.
    pub kind: &'a str,
    /// Error of the last failed attempt.
    pub error: Option<&'a str>,
}

/// The JSON value stored at `jobs/<id>`.
pub fn job_record(fields: &JobRecordFields<'_>) -> Value {
    let mut record = json!({
        "status": fields.status.as_str(),
        "attempts": fields.attempts,
        "node": fields.node,
        "updated_at": fields.updated_at,
        "kind": fields.kind,
    });
    if let (Some(error), Value::Object(map)) = (fields.error, &mut record) {
        map.insert("error".into(), Value::from(error));
    }
    record
}

/// `updated_at` of a stored job record (0 when missing).
pub fn record_updated_at(record: &Value) -> u64 {
    record
        .get("updated_at")
        .and_then(Value::as_u64)
        .unwrap_or(0)
}

/// True for records of jobs that will not change by themselves again
/// (completed, cancelled, dead): the ones deleted first past the bound.
pub fn record_is_finished(record: &Value) -> bool {
    matches!(
        record.get("status").and_then(Value::as_str),
        Some("completed" | "cancelled" | "dead")
    )
}

/// The spec as stored.
pub fn encode_spec(spec: &WorkflowSpec) -> Result<String, serde_json::Error> {
    serde_json::to_string(spec)
}

/// The event as stored.
pub fn encode_event(event: &WorkflowEvent) -> Result<Value, serde_json::Error> {
    serde_json::to_value(event)
}

/// Reads back the subtree at `workflows/<id>`. `Ok(None)` while the spec has
/// not arrived (an append replicated before its create).
pub fn decode_workflow(value: &Value) -> Result<Option<WorkflowRecord>, String> {
    let Some(object) = value.as_object() else {
        return Err("workflow record is not an object".into());
    };
    let Some(spec) = object.get(SPEC_KEY) else {
        return Ok(None);
    };
    let spec: WorkflowSpec = match spec {
        Value::String(text) => serde_json::from_str(text).map_err(|e| format!("spec: {e}"))?,
        _ => return Err("spec is not a string".into()),
    };
    let partition = object
        .get(PARTITION_KEY)
        .and_then(Value::as_u64)
        .and_then(|p| u32::try_from(p).ok())
        .ok_or("partition missing or not a u32")?;
    let empty = Map::new();
    let events = match object.get(EVENTS_KEY) {
        Some(Value::Object(events)) => events,
        Some(_) => return Err("events is not an object".into()),
        None => &empty,
    };
    let mut decoded = events
        .values()
        .map(|event| serde_json::from_value::<WorkflowEvent>(event.clone()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("event: {e}"))?;
    decoded.sort_by_key(|event| event.seq);
    Ok(Some(WorkflowRecord {
        partition,
        spec,
        events: decoded,
    }))
}

/// The id as it appears in paths.
pub fn workflow_key(id: WorkflowId) -> String {
    id.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ironforge_crdt::{Replica, ReplicaId};
    use ironforge_jobs::workflow::EventKind;

    #[test]
    fn job_record_has_the_documented_fields() {
        let record = job_record(&JobRecordFields {
            status: JobStatus::Dead,
            attempts: 3,
            node: "n1",
            updated_at: 42,
            kind: "email",
            error: Some("boom"),
        });
        assert_eq!(
            record,
            json!({"status": "dead", "attempts": 3, "node": "n1", "updated_at": 42,
                   "kind": "email", "error": "boom"})
        );
        assert!(record_is_finished(&record));
        assert_eq!(record_updated_at(&record), 42);
        let running = json!({"status": "running"});
        assert!(!record_is_finished(&running));
        assert_eq!(record_updated_at(&running), 0);
    }

    #[test]
    fn a_workflow_round_trips_through_a_replica() {
        let id = "w1";
        let spec = WorkflowSpec::default();
        let mut replica = Replica::new(ReplicaId(1));
        replica
            .set(
                &workflow_spec_path(id),
                encode_spec(&spec).unwrap().into(),
                1,
            )
            .unwrap();
        replica
            .set(&workflow_partition_path(id), json!(7), 1)
            .unwrap();
        // Written out of order: 10 sorts after 2 by number, not by text.
        for seq in [10, 2, 1] {
            let event = WorkflowEvent {
                seq,
                at: seq * 100,
                key: None,
                kind: EventKind::Queued,
                error: None,
            };
            replica
                .set(
                    &workflow_event_path(id, seq),
                    encode_event(&event).unwrap(),
                    2,
                )
                .unwrap();
        }
        let record = decode_workflow(&replica.get(&workflow_path(id)).unwrap())
            .unwrap()
            .unwrap();
        assert_eq!(record.partition, 7);
        assert_eq!(record.spec, spec);
        let seqs: Vec<u64> = record.events.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, [1, 2, 10]);
    }

    #[test]
    fn a_record_without_spec_is_not_yet_a_workflow_and_garbage_is_an_error() {
        assert_eq!(decode_workflow(&json!({"events": {}})), Ok(None));
        assert!(decode_workflow(&json!(3)).is_err());
        assert!(decode_workflow(&json!({"spec": 1, "partition": 1})).is_err());
        assert!(decode_workflow(&json!({"spec": "{}", "partition": "x"})).is_err());
    }

    #[test]
    fn keys_are_separate_segments() {
        assert_eq!(
            workflow_event_path("a/b", 3),
            vec![
                Seg::from("workflows"),
                Seg::from("a/b"),
                Seg::from("events"),
                Seg::from("3")
            ]
        );
    }
}
