//! Why a cluster node did not start or did not reach the state asked for,
//! worded so an operator knows what to check next.

use std::time::Duration;

/// Errors of [`ClusterNode`](crate::ClusterNode).
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The node runtime did not start (PMD unreachable, alias taken, ...).
    #[error("cannot start the node: {0}")]
    Node(#[from] ironforge_node::NodeError),
    /// The membership did not start (bad ring shape, gossip mailbox taken).
    #[error("cannot join the cluster: {0}")]
    Membership(#[from] ironforge_ring::MembershipError),
    /// The job engine did not start (Redis unreachable, HTTP port taken, ...).
    #[error("cannot start the job engine: {0}")]
    Engine(#[from] ironforge_jobs::engine::EngineError),
    /// The replication service did not start.
    #[error("cannot start replication: {0}")]
    Replication(#[from] crate::replication::ReplicationError),
    /// The configuration cannot work; the message says which field.
    #[error("invalid cluster configuration: {0}")]
    Config(String),
    /// The membership did not reach the expected members in time.
    #[error("the cluster view is {actual:?} after {timeout:?}, expected {expected:?} (are the other nodes running with the same cookie and seeds?)")]
    NotConverged {
        expected: Vec<String>,
        actual: Vec<String>,
        timeout: Duration,
    },
    /// The node was shut down while waiting.
    #[error("the cluster node has stopped")]
    Stopped,
}
