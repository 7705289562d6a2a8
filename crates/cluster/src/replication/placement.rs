//! Where a partition's replicas live. Replication asks this trait and
//! nothing else about the cluster, so it runs the same over the live ring
//! (the cluster node implements it over `RingNode`) and over a fixed member
//! list ([`StaticPlacement`], for tests and fixed deployments).

use std::sync::Arc;

use ironforge_ring::{Ring, RingConfig, RingError};
use parking_lot::RwLock;

/// The cluster's answer to "who holds partition `p`?".
pub trait Placement: Send + Sync + 'static {
    /// This member's ring name.
    fn local(&self) -> String;
    /// Up to `n` distinct members holding `partition`, owner first.
    fn preference_list(&self, partition: u32, n: usize) -> Vec<String>;
    /// The address to reach `member` with `Node::send_named` (alias, alias@host or node id).
    fn address_of(&self, member: &str) -> Option<String>;
}

/// A placement over a fixed member list: member names are node aliases on
/// this host (their own address), and the ring is computed once, or again
/// by [`StaticPlacement::set_members`].
///
/// ```
/// use ironforge_cluster::replication::{Placement, StaticPlacement};
/// let placement = StaticPlacement::new("a", ["a", "b", "c"], 16).unwrap();
/// let list = placement.preference_list(3, 2);
/// assert_eq!(list.len(), 2);
/// assert_eq!(placement.address_of("b").as_deref(), Some("b"));
/// ```
pub struct StaticPlacement {
    local: String,
    partitions: u32,
    ring: RwLock<Arc<Ring>>,
}

impl StaticPlacement {
    /// `local` is this member; `members` the whole cluster (it may include `local`).
    pub fn new<I, S>(local: &str, members: I, partitions: u32) -> Result<Self, RingError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let ring = Self::ring(members, partitions)?;
        Ok(StaticPlacement {
            local: local.to_owned(),
            partitions,
            ring: RwLock::new(Arc::new(ring)),
        })
    }

    /// Replaces the member list (then call `Replication::membership_changed`).
    pub fn set_members<I, S>(&self, members: I) -> Result<(), RingError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let ring = Self::ring(members, self.partitions)?;
        *self.ring.write() = Arc::new(ring);
        Ok(())
    }

    /// The current ring.
    pub fn current(&self) -> Arc<Ring> {
        self.ring.read().clone()
    }

    fn ring<I, S>(members: I, partitions: u32) -> Result<Ring, RingError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Ring::new(
            members,
            RingConfig {
                partitions,
                ..RingConfig::default()
            },
        )
    }
}

impl Placement for StaticPlacement {
    fn local(&self) -> String {
        self.local.clone()
    }

    fn preference_list(&self, partition: u32, n: usize) -> Vec<String> {
        self.ring
            .read()
            .preference_list(partition, n)
            .into_iter()
            .map(str::to_owned)
            .collect()
    }

    fn address_of(&self, member: &str) -> Option<String> {
        self.ring
            .read()
            .members()
            .iter()
            .any(|m| m == member)
            .then(|| member.to_owned())
    }
}
