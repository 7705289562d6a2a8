//! Version vectors: for each replica, the highest sequence number applied
//! contiguously. They say what a replica has seen, which drives causal
//! delivery, delta sync and the causal-stability test of garbage collection.

use crate::hlc::ReplicaId;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Map replica -> highest contiguous sequence number seen (absent means 0).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct VersionVector(BTreeMap<ReplicaId, u64>);

impl VersionVector {
    /// The empty vector (nothing seen).
    pub fn new() -> Self {
        Self::default()
    }

    /// Highest contiguous sequence number seen from `replica`.
    pub fn get(&self, replica: ReplicaId) -> u64 {
        self.0.get(&replica).copied().unwrap_or(0)
    }

    /// Records `seq` for `replica` if it is higher than what is known.
    pub fn observe(&mut self, replica: ReplicaId, seq: u64) {
        let entry = self.0.entry(replica).or_insert(0);
        *entry = (*entry).max(seq);
    }

    /// Pointwise maximum with `other`.
    pub fn merge(&mut self, other: &VersionVector) {
        for (&replica, &seq) in &other.0 {
            self.observe(replica, seq);
        }
    }

    /// True when every entry of `self` is at most the matching one of `other`.
    pub fn le(&self, other: &VersionVector) -> bool {
        self.0.iter().all(|(&r, &s)| other.get(r) >= s)
    }

    /// Entries `(replica, seq)` in replica order.
    pub fn iter(&self) -> impl Iterator<Item = (ReplicaId, u64)> + '_ {
        self.0.iter().map(|(&r, &s)| (r, s))
    }

    /// Replicas with an entry.
    pub fn replicas(&self) -> impl Iterator<Item = ReplicaId> + '_ {
        self.0.keys().copied()
    }

    /// A copy without `replica`'s entry (an operation's dependencies omit its
    /// own replica, whose predecessor is implied by the sequence number).
    pub(crate) fn without(&self, replica: ReplicaId) -> VersionVector {
        VersionVector(
            self.0
                .iter()
                .filter(|(&r, _)| r != replica)
                .map(|(&r, &s)| (r, s))
                .collect(),
        )
    }

    /// Pointwise minimum over `self` and `rows`, over the replicas of `self`.
    pub(crate) fn min_with<'a>(
        &self,
        rows: impl Iterator<Item = &'a VersionVector> + Clone,
    ) -> VersionVector {
        VersionVector(
            self.0
                .iter()
                .map(|(&r, &s)| (r, rows.clone().map(|row| row.get(r)).fold(s, u64::min)))
                .collect(),
        )
    }
}

impl FromIterator<(ReplicaId, u64)> for VersionVector {
    fn from_iter<I: IntoIterator<Item = (ReplicaId, u64)>>(iter: I) -> Self {
        let mut vv = VersionVector::new();
        for (r, s) in iter {
            vv.observe(r, s);
        }
        vv
    }
}
