//! Operations: the unit of replication. Each carries its identity
//! (replica, sequence number) for causal delivery and deduplication, its HLC
//! stamp for conflict resolution, and the version vector it was created
//! under so a receiver can wait for everything it depends on.

use crate::hlc::{Hlc, ReplicaId};
use crate::path::{ElemId, PathSeg};
use crate::version::VersionVector;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Identity of an operation: its replica and that replica's sequence number
/// (1, 2, 3, ... without gaps).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct OpId {
    /// The replica that created the operation.
    pub replica: ReplicaId,
    /// Its position in that replica's sequence, starting at 1.
    pub seq: u64,
}

/// What an operation does at its path.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum OpKind {
    /// Write `value` at the path, replacing what was written there before
    /// (and, beneath it, everything written with a lower stamp). `list_remove`
    /// is a `Delete` whose path ends with the element id.
    Set {
        /// The JSON value; objects and arrays become nested nodes and lists.
        value: Value,
    },
    /// Remove the value at the path and everything written beneath it with a
    /// lower stamp.
    Delete,
    /// Insert a new list element, identified by `ElemId { stamp, sub: 0 }`,
    /// right after `after` (or at the head when `None`).
    ListInsert {
        /// The element it goes after, as seen by its author.
        after: Option<ElemId>,
        /// The element's value.
        value: Value,
    },
}

/// One replicated operation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Op {
    /// Identity (replica, seq).
    pub id: OpId,
    /// HLC stamp; `stamp.replica == id.replica`.
    pub stamp: Hlc,
    /// What the author had applied from other replicas when creating it.
    pub deps: VersionVector,
    /// Where it applies.
    pub path: Vec<PathSeg>,
    /// What it does.
    pub kind: OpKind,
}
