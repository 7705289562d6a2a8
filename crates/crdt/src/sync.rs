//! What replicas exchange to catch up: a delta of operations when the
//! sender's log still covers what the peer lacks, a full snapshot otherwise.
//! A snapshot is also what [`Replica::restore`](crate::Replica::restore)
//! reads back after a restart.

use crate::hlc::{Hlc, ReplicaId};
use crate::op::Op;
use crate::tree::Node;
use crate::version::VersionVector;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A sync message from one replica to another (serde, for any transport).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SyncMessage {
    /// The sender.
    pub from: ReplicaId,
    /// What the sender had applied when it built the message.
    pub version: VersionVector,
    /// The payload.
    pub body: SyncBody,
}

/// Payload of a [`SyncMessage`].
#[derive(Clone, Debug, Serialize, Deserialize)]
// Externally tagged: an internally tagged enum would buffer its content and
// lose serde_json's integer map keys (replica ids in version vectors).
#[serde(rename_all = "snake_case")]
pub enum SyncBody {
    /// The operations the peer lacks, in an order that respects causality.
    Ops {
        /// The operations.
        ops: Vec<Op>,
    },
    /// The whole state, when the log was compacted past what the peer has.
    Snapshot {
        /// The state.
        snapshot: Box<Snapshot>,
    },
}

/// The full state of a replica: document, clock, version vector and what it
/// knows of the others. Serde-serializable; see [`Replica::snapshot`](crate::Replica::snapshot).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Snapshot {
    pub(crate) replica: ReplicaId,
    pub(crate) clock: Hlc,
    pub(crate) version: VersionVector,
    pub(crate) known: BTreeMap<ReplicaId, VersionVector>,
    pub(crate) applied: u64,
    pub(crate) tree: Node,
}

impl SyncMessage {
    /// True when the message carries nothing (the peer is up to date).
    pub fn is_empty(&self) -> bool {
        matches!(&self.body, SyncBody::Ops { ops } if ops.is_empty())
    }
}

impl Snapshot {
    /// The replica that took it.
    pub fn replica(&self) -> ReplicaId {
        self.replica
    }

    /// What it covers.
    pub fn version(&self) -> &VersionVector {
        &self.version
    }

    /// The clock reading when it was taken.
    pub fn clock(&self) -> Hlc {
        self.clock
    }
}
