//! Hybrid logical clock: the stamp that orders every write, so that "last
//! writer wins" means the same thing on every replica. Time is an argument,
//! never read from the system, so the clock is deterministic under test.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Identity of one replica (one node's copy of the document).
///
/// Two live replicas must never share an id: the id is the last tie-break of
/// every stamp and half of every operation id.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct ReplicaId(pub u64);

impl fmt::Display for ReplicaId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "r{}", self.0)
    }
}

/// A hybrid logical clock reading: wall-clock milliseconds, a logical counter
/// for events within the same millisecond (or while the wall clock lags a
/// remote one), and the replica id as the final, deterministic tie-break.
///
/// Ordering is lexicographic over `(physical_ms, logical, replica)`, so two
/// stamps from different replicas are never equal, and a stamp produced after
/// observing another is always greater than it (causality is respected).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Hlc {
    /// Milliseconds of the wall clock (as passed in by the caller).
    pub physical_ms: u64,
    /// Counter that orders events sharing `physical_ms`.
    pub logical: u32,
    /// The replica that produced the stamp.
    pub replica: ReplicaId,
}

impl Hlc {
    /// A clock at time zero for `replica`.
    pub fn new(replica: ReplicaId) -> Self {
        Self {
            physical_ms: 0,
            logical: 0,
            replica,
        }
    }

    /// Advances the clock for a local event at wall time `now_ms` and returns
    /// the new stamp, strictly greater than every stamp this clock returned or
    /// observed before, even if `now_ms` goes backwards.
    pub fn tick(&mut self, now_ms: u64) -> Hlc {
        if now_ms > self.physical_ms {
            self.physical_ms = now_ms;
            self.logical = 0;
        } else {
            self.bump_logical();
        }
        *self
    }

    /// Merges a remote stamp into the clock (receive event), so that the next
    /// [`tick`](Self::tick) is greater than `remote`.
    pub fn observe(&mut self, remote: Hlc, now_ms: u64) -> Hlc {
        let physical = self.physical_ms.max(remote.physical_ms).max(now_ms);
        if physical == self.physical_ms && physical == remote.physical_ms {
            self.logical = self.logical.max(remote.logical);
            self.bump_logical();
        } else if physical == self.physical_ms {
            self.bump_logical();
        } else if physical == remote.physical_ms {
            self.physical_ms = physical;
            self.logical = remote.logical;
            self.bump_logical();
        } else {
            self.physical_ms = physical;
            self.logical = 0;
        }
        *self
    }

    fn bump_logical(&mut self) {
        // The counter is u32: past its end, borrow one millisecond instead of
        // wrapping, which would break monotonicity.
        match self.logical.checked_add(1) {
            Some(next) => self.logical = next,
            None => {
                self.physical_ms = self.physical_ms.saturating_add(1);
                self.logical = 0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tick_is_monotonic_when_wall_clock_goes_back() {
        let mut clock = Hlc::new(ReplicaId(1));
        let a = clock.tick(100);
        let b = clock.tick(50);
        let c = clock.tick(100);
        assert!(a < b && b < c);
        assert_eq!(b.physical_ms, 100);
    }

    #[test]
    fn observe_orders_after_remote_stamp_from_the_future() {
        let mut local = Hlc::new(ReplicaId(1));
        local.tick(10);
        let remote = Hlc {
            physical_ms: 1_000,
            logical: 7,
            replica: ReplicaId(2),
        };
        local.observe(remote, 20);
        let next = local.tick(30);
        assert!(next > remote);
        assert_eq!(next.replica, ReplicaId(1));
    }

    #[test]
    fn logical_overflow_borrows_a_millisecond() {
        let mut clock = Hlc {
            physical_ms: 5,
            logical: u32::MAX,
            replica: ReplicaId(1),
        };
        let next = clock.tick(5);
        assert_eq!((next.physical_ms, next.logical), (6, 0));
    }
}
