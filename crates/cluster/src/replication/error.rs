//! What can go wrong when replicating, in terms a caller can act on.

use ironforge_node::NodeError;

/// Errors of [`Replication`](super::Replication).
#[derive(Debug, thiserror::Error)]
pub enum ReplicationError {
    /// The configuration cannot work.
    #[error("invalid replication config: {0}")]
    Config(String),
    /// The node runtime refused (e.g. the mailbox name is taken).
    #[error("node runtime: {0}")]
    Node(#[from] NodeError),
    /// The partition number is not below the configured partition count.
    #[error("partition {partition} out of range (the cluster has {partitions} partitions)")]
    NoSuchPartition {
        /// Requested partition.
        partition: u32,
        /// Configured count.
        partitions: u32,
    },
    /// No member of the preference list answered in time.
    #[error("no replica of partition {partition} reachable: {reason}")]
    Unavailable {
        /// The partition.
        partition: u32,
        /// What the last attempt saw.
        reason: String,
    },
    /// One member could not be reached or did not answer in time.
    #[error("{address} unreachable: {reason}")]
    Unreachable {
        /// The address tried.
        address: String,
        /// What happened.
        reason: String,
    },
    /// Too many requests are waiting for answers.
    #[error("too many replication requests in flight (limit {limit}); retry later")]
    Busy {
        /// `ReplicationConfig::max_in_flight`.
        limit: usize,
    },
    /// A member refused or could not apply a forwarded write.
    #[error("write refused by {member}: {reason}")]
    Refused {
        /// Who refused.
        member: String,
        /// Why.
        reason: String,
    },
    /// The CRDT refused a write (a bug in the layout, not a remote input).
    #[error("crdt: {0}")]
    Crdt(#[from] ironforge_crdt::CrdtError),
    /// A stored record cannot be decoded.
    #[error("stored record is corrupt: {0}")]
    Corrupt(String),
    /// Replication was shut down.
    #[error("replication has shut down")]
    Closed,
}
