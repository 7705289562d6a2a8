//! What changed between two rings: the partitions whose owner or replica set
//! moved, so that a membership change can hand over exactly those.

use crate::ring::Ring;

/// One partition whose preference list differs between two rings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionChange {
    /// The partition index.
    pub partition: u32,
    /// Preference list before (owner first); empty if the old ring had no members.
    pub before: Vec<String>,
    /// Preference list after (owner first); empty if the new ring has no members.
    pub after: Vec<String>,
}

impl PartitionChange {
    /// True when the owner itself changed (not only a replica).
    pub fn owner_changed(&self) -> bool {
        self.before.first() != self.after.first()
    }
}

/// Partitions whose owner or replicas differ between two rings, in partition order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RingDiff {
    /// Every changed partition.
    pub changes: Vec<PartitionChange>,
}

impl RingDiff {
    /// True when the two rings assign every partition identically.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// Partitions whose owner changed.
    pub fn owner_moves(&self) -> Vec<u32> {
        self.changes
            .iter()
            .filter(|c| c.owner_changed())
            .map(|c| c.partition)
            .collect()
    }

    /// Every changed partition (owner or replicas).
    pub fn partitions(&self) -> Vec<u32> {
        self.changes.iter().map(|c| c.partition).collect()
    }
}

impl Ring {
    /// Partitions whose owner-first preference list (of the configured replica
    /// count) differs from `old` to `new`. Rings with different partition counts
    /// are compared over the larger count, a missing partition having an empty list.
    pub fn diff(old: &Ring, new: &Ring) -> RingDiff {
        let partitions = old.config().partitions.max(new.config().partitions);
        let changes = (0..partitions)
            .filter_map(|partition| {
                let before = old.preference_owned(partition);
                let after = new.preference_owned(partition);
                (before != after).then_some(PartitionChange {
                    partition,
                    before,
                    after,
                })
            })
            .collect();
        RingDiff { changes }
    }
}
