//! Where a partition's replicas live, read from this member's published
//! view of the ring: what the replication needs from the membership
//! without holding it.
//!
//! Members are named by alias on the ring, and the alias is also how the
//! node runtime reaches a member through this host's PMD, so a member's
//! address is its name. (Members on other hosts would need their host
//! too; the ring does not carry it yet.)

use crate::replication::Placement;
use crate::view::{current, ViewReceiver};

/// Placement over the ring of a [`ClusterNode`](crate::ClusterNode).
#[derive(Clone, Debug)]
pub struct RingPlacement {
    view: ViewReceiver,
}

impl RingPlacement {
    pub(crate) fn new(view: ViewReceiver) -> Self {
        RingPlacement { view }
    }

    /// This member's ring name.
    pub fn local(&self) -> String {
        current(&self.view).local.clone()
    }

    /// Up to `n` distinct members for `partition`, owner first.
    pub fn preference_list(&self, partition: u32, n: usize) -> Vec<String> {
        current(&self.view)
            .ring
            .preference_list(partition, n)
            .into_iter()
            .map(str::to_owned)
            .collect()
    }

    /// How to reach `member` with `Node::send_named`, if it is in the view.
    pub fn address_of(&self, member: &str) -> Option<String> {
        let snapshot = current(&self.view);
        snapshot
            .members()
            .iter()
            .any(|m| m == member)
            .then(|| member.to_owned())
    }
}

impl Placement for RingPlacement {
    fn local(&self) -> String {
        RingPlacement::local(self)
    }

    fn preference_list(&self, partition: u32, n: usize) -> Vec<String> {
        RingPlacement::preference_list(self, partition, n)
    }

    fn address_of(&self, member: &str) -> Option<String> {
        RingPlacement::address_of(self, member)
    }
}
