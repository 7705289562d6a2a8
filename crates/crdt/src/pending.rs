//! The pending buffer: remote operations that arrived before something they
//! depend on. Bounded in count (the highest-numbered go first: they are the
//! furthest from deliverable) and in age (measured with the caller's clock);
//! whatever is dropped comes back through sync.

use crate::hlc::ReplicaId;
use crate::op::{Op, OpId};
use crate::version::VersionVector;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

/// True when `op` is the next one from its replica and everything its
/// author had seen has been applied.
pub(crate) fn is_ready(op: &Op, version: &VersionVector) -> bool {
    op.id.seq == version.get(op.id.replica) + 1
        && op
            .deps
            .iter()
            .all(|(replica, seq)| version.get(replica) >= seq)
}

pub(crate) struct PendingBuffer {
    ops: BTreeMap<OpId, Arc<Op>>,
    /// Arrival times, oldest first; may hold ids already delivered.
    arrivals: VecDeque<(u64, OpId)>,
    max_ops: usize,
    max_age_ms: u64,
    /// Operations dropped for count or age since start.
    pub dropped: u64,
}

impl PendingBuffer {
    pub fn new(max_ops: usize, max_age_ms: u64) -> Self {
        Self {
            ops: BTreeMap::new(),
            arrivals: VecDeque::new(),
            max_ops,
            max_age_ms,
            dropped: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.ops.len()
    }

    pub fn contains(&self, id: &OpId) -> bool {
        self.ops.contains_key(id)
    }

    pub fn insert(&mut self, op: Arc<Op>, now_ms: u64) {
        self.expire(now_ms);
        let id = op.id;
        self.ops.insert(id, op);
        self.arrivals.push_back((now_ms, id));
        while self.ops.len() > self.max_ops {
            if let Some((dropped, _)) = self.ops.pop_last() {
                self.dropped += 1;
                tracing::debug!(op = ?dropped, "pending buffer full: dropped");
            }
        }
        if self.arrivals.len() > 2 * self.max_ops + 16 {
            let ops = &self.ops;
            self.arrivals.retain(|(_, id)| ops.contains_key(id));
        }
    }

    /// Drops operations that waited longer than the age bound.
    pub fn expire(&mut self, now_ms: u64) -> usize {
        let mut expired = 0;
        while let Some(&(arrived, id)) = self.arrivals.front() {
            if !self.ops.contains_key(&id) {
                self.arrivals.pop_front();
            } else if arrived.saturating_add(self.max_age_ms) < now_ms {
                self.arrivals.pop_front();
                self.ops.remove(&id);
                expired += 1;
            } else {
                break;
            }
        }
        self.dropped += expired as u64;
        expired
    }

    /// Removes and returns an operation that `version` makes deliverable,
    /// discarding entries it already covers (e.g. after a snapshot).
    pub fn take_ready(&mut self, version: &VersionVector) -> Option<Arc<Op>> {
        let mut cursor = self.ops.keys().next().map(|id| id.replica);
        while let Some(replica) = cursor {
            let next = OpId {
                replica,
                seq: version.get(replica) + 1,
            };
            let stale: Vec<OpId> = self
                .ops
                .range(OpId { replica, seq: 0 }..next)
                .map(|(id, _)| *id)
                .collect();
            for id in stale {
                self.ops.remove(&id);
            }
            if self.ops.get(&next).is_some_and(|op| is_ready(op, version)) {
                return self.ops.remove(&next);
            }
            cursor = replica
                .0
                .checked_add(1)
                .and_then(|after| {
                    let from = OpId {
                        replica: ReplicaId(after),
                        seq: 0,
                    };
                    self.ops.range(from..).next()
                })
                .map(|(id, _)| id.replica);
        }
        None
    }
}
