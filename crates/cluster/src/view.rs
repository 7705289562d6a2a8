//! One consistent picture of this member's place in the cluster (ring,
//! owned partitions, join state), published by the takeover task and read
//! by the HTTP routes, workflow routing and replication placement, so none
//! of them needs the membership itself.

use std::sync::Arc;

use ironforge_ring::Ring;
use tokio::sync::watch;

use crate::ownership::JoinState;

/// This member's view of the cluster at one moment.
#[derive(Clone, Debug)]
pub struct ClusterSnapshot {
    /// This member's ring name (its alias).
    pub local: String,
    /// This run's generation (milliseconds since the epoch at start).
    pub generation: u64,
    /// The ring of the members this member sees.
    pub ring: Arc<Ring>,
    /// The partitions this member consumes and schedules, ascending.
    pub owned: Arc<[u32]>,
    /// Where the member stands in joining.
    pub join: JoinState,
}

impl ClusterSnapshot {
    /// Sorted member names, this member included.
    pub fn members(&self) -> &[String] {
        self.ring.members()
    }

    /// `"waiting"`, `"settling"`, `"joined"` or `"alone"`.
    pub fn join_label(&self) -> &'static str {
        match self.join {
            JoinState::Waiting => "waiting",
            JoinState::Settling { .. } => "settling",
            JoinState::Joined => "joined",
            JoinState::Alone => "alone",
        }
    }
}

/// Readers of the published snapshot.
pub(crate) type ViewReceiver = watch::Receiver<Arc<ClusterSnapshot>>;

/// The current snapshot.
pub(crate) fn current(view: &ViewReceiver) -> Arc<ClusterSnapshot> {
    view.borrow().clone()
}
