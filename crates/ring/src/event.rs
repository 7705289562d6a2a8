//! Membership events and the shared view of the cluster that every lookup reads.

use std::sync::Arc;

use crate::diff::RingDiff;
use crate::ring::Ring;

/// A change in this member's view of the cluster.
#[derive(Debug, Clone)]
pub enum MembershipEvent {
    /// A node id entered the view.
    MemberUp(String),
    /// A node id left the view (failure detected or graceful leave).
    MemberDown(String),
    /// The ring was rebuilt after a membership change.
    RingChanged {
        /// Sorted node ids of the new ring.
        members: Vec<String>,
        /// Partitions whose owner changed.
        moved: Vec<u32>,
        /// Every partition whose owner or replicas changed, with before/after lists.
        diff: Arc<RingDiff>,
    },
}

/// One consistent snapshot: the member set and the ring built from it.
#[derive(Debug, Clone)]
pub struct ClusterView {
    /// Sorted node ids, this member included.
    pub members: Vec<String>,
    /// The ring for exactly `members`.
    pub ring: Arc<Ring>,
}
