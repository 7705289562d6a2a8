//! The messages replicas exchange through the `ironforge.crdt` mailbox.
//!
//! Every message is one JSON body `{"from": member, "msg": {...}}`, the
//! message externally tagged (`{"ops": {...}}`):
//! an internally tagged enum would make serde buffer the content and lose
//! the integer map keys of version vectors. Requests that need an answer
//! carry a `req` number chosen by the requester; the answer goes back to the
//! sender's node id with the same number, so correlation needs nothing from
//! the node runtime beyond `send_named`.

use ironforge_crdt::{Op, ReplicaId, SyncMessage, VersionVector};
use ironforge_jobs::workflow::WorkflowEvent;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Every message on the wire: the sender's member name (answers go to
/// `Placement::address_of(from)`, which works across hosts, where the
/// sender's bare node id might not resolve) and the message itself.
/// `replica` is the sender's replica id, so a member that restarted under
/// a new id is noticed and its old id retired.
#[derive(Debug, Deserialize)]
pub(crate) struct Envelope {
    pub from: String,
    pub replica: ReplicaId,
    pub msg: Wire,
}

/// The sending side of [`Envelope`], borrowing the message.
#[derive(Serialize)]
pub(crate) struct EnvelopeRef<'a> {
    pub from: &'a str,
    pub replica: ReplicaId,
    pub msg: &'a Wire,
}

/// Operations of one partition, in the order they were made.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct PartitionOps {
    pub partition: u32,
    pub ops: Vec<Op>,
}

/// One write, as applied by a member that holds the partition.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Write {
    /// Replace the record at `jobs/<id>`.
    SetJob { id: String, record: Value },
    /// Record a workflow's spec (a JSON string) and partition, if absent.
    CreateWorkflow {
        id: String,
        partition: u32,
        spec: String,
    },
    /// Add events whose `seq` is not recorded yet.
    AppendWorkflow {
        id: String,
        events: Vec<WorkflowEvent>,
    },
}

/// What a remote read asks for.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Query {
    /// The record at `jobs/<id>`.
    Job { id: String },
    /// The subtree at `workflows/<id>`.
    Workflow { id: String },
}

/// A message between replication services.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Wire {
    /// New operations, pushed by the member that made or applied them.
    Ops { parts: Vec<PartitionOps> },
    /// "This is what I have of `partition`; send me what I lack."
    SyncRequest {
        req: u64,
        partition: u32,
        version: VersionVector,
    },
    /// The answer: a delta or a snapshot (`None` when the sender holds no
    /// replica of the partition); `behind` when the requester has operations
    /// the sender lacks, which the requester then pushes.
    SyncReply {
        req: u64,
        sync: Option<SyncMessage>,
        behind: bool,
    },
    /// What the receiver said it lacks (after a `SyncReply` with `behind`).
    Push { partition: u32, sync: SyncMessage },
    /// A write forwarded by a member outside the preference list.
    Write {
        req: u64,
        partition: u32,
        writes: Vec<Write>,
    },
    /// Outcome of a forwarded write.
    WriteAck { req: u64, error: Option<String> },
    /// A read from a member outside the preference list. `partition: None`
    /// searches every replica the answering member holds.
    Read {
        req: u64,
        partition: Option<u32>,
        query: Query,
    },
    /// `held`: the member holds a replica of the partition (so `None` means
    /// "not recorded here", not "ask someone else").
    ReadReply {
        req: u64,
        held: bool,
        value: Option<Value>,
    },
}

impl Wire {
    /// The correlation number of an answer.
    pub fn answer_to(&self) -> Option<u64> {
        match self {
            Wire::WriteAck { req, .. }
            | Wire::ReadReply { req, .. }
            | Wire::SyncReply { req, .. } => Some(*req),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ironforge_crdt::{path, Replica, ReplicaId};
    use serde_json::json;

    #[test]
    fn sync_messages_survive_the_wire_with_their_version_vectors() {
        let mut a = Replica::new(ReplicaId(u64::MAX - 1));
        a.set(&path!["jobs", "j"], json!({"status": "queued"}), 5)
            .unwrap();
        let wire = Wire::SyncReply {
            req: 3,
            sync: Some(a.ops_since(&VersionVector::new())),
            behind: false,
        };
        let text = serde_json::to_string(&wire).unwrap();
        let Wire::SyncReply {
            req: 3,
            sync: Some(back),
            behind: false,
        } = serde_json::from_str(&text).unwrap()
        else {
            panic!("wrong variant: {text}");
        };
        let mut b = Replica::new(ReplicaId(2));
        assert_eq!(b.apply_sync(back, 6).unwrap(), 1);
        assert_eq!(b.to_json(), a.to_json());

        let request = Wire::SyncRequest {
            req: 1,
            partition: 1,
            version: b.version().clone(),
        };
        let text = serde_json::to_string(&request).unwrap();
        let Wire::SyncRequest { version, .. } = serde_json::from_str(&text).unwrap() else {
            panic!("wrong variant: {text}");
        };
        assert_eq!(&version, b.version());
    }

    #[test]
    fn envelopes_name_the_sender() {
        let wire = Wire::WriteAck {
            req: 4,
            error: None,
        };
        let text = serde_json::to_string(&EnvelopeRef {
            from: "node-1",
            replica: ReplicaId(7),
            msg: &wire,
        })
        .unwrap();
        let back: Envelope = serde_json::from_str(&text).unwrap();
        assert_eq!((back.from.as_str(), back.replica), ("node-1", ReplicaId(7)));
        assert_eq!(back.msg.answer_to(), Some(4));
    }

    #[test]
    fn answers_carry_their_request_number() {
        let ack: Wire =
            serde_json::from_value(json!({"write_ack": {"req": 9, "error": null}})).unwrap();
        assert_eq!(ack.answer_to(), Some(9));
        let ops: Wire = serde_json::from_value(json!({"ops": {"parts": []}})).unwrap();
        assert_eq!(ops.answer_to(), None);
        assert!(serde_json::from_value::<Wire>(json!({"type": "ops"})).is_err());
    }
}
