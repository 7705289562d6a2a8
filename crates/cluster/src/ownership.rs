//! Which job partitions a member consumes and schedules, decided from its
//! view of the ring. Pure: the async shell ([`crate::takeover`]) feeds it
//! rings and the time since the node started, and applies what it decides.
//!
//! Job partitions and ring partitions are the same numbers (one value P
//! sets both, see [`ring_config`]), so "the partitions a member owns" is
//! simply [`Ring::partitions_owned_by`]. The only subtlety is a member that
//! joins through seeds: until it has seen another member its ring holds
//! only itself and would claim every partition, so it owns nothing until
//! it has joined (or until a grace period says the seeds are gone).

use std::time::Duration;

use ironforge_ring::{Ring, RingConfig};

/// Tokens per member on the ring (default 128) (the ring crate's default: balance
/// within 1.25 of the mean by construction).
pub const DEFAULT_VNODES_PER_MEMBER: u32 = 128;

/// How long a member that was given seeds waits to see another member
/// before it gives up on them and owns the partitions of a ring of its
/// own [5 s].
pub const DEFAULT_JOIN_GRACE: Duration = Duration::from_secs(5);

/// How long a joining member waits after its first view with other
/// members before claiming partitions [2 s]: long enough that it has
/// learned the membership by gossip, that the members losing partitions to
/// it have seen it join and stopped driving them (two members driving one
/// workflow write conflicting histories), and that its replicas of the
/// workflow journal have had a sync round (every 1 s) before it adopts.
/// With 300 ms the chaos test (SIGKILL and restart of a member) found a
/// workflow history out of dependency order in 3 of 12 runs; with 2 s, 0
/// of 10.
pub const DEFAULT_JOIN_SETTLE: Duration = Duration::from_secs(2);

/// The ring shape of a cluster whose job partitions are `partitions` and
/// whose preference lists hold `replicas` members (owner included). Every
/// member must use the same values.
///
/// ```
/// let config = ironforge_cluster::ownership::ring_config(16, 3);
/// assert_eq!((config.partitions, config.replicas), (16, 3));
/// ```
pub fn ring_config(partitions: u32, replicas: usize) -> RingConfig {
    RingConfig {
        vnodes_per_member: DEFAULT_VNODES_PER_MEMBER,
        partitions: partitions.max(1),
        replicas: u32::try_from(replicas.max(1)).unwrap_or(u32::MAX),
    }
}

/// What changed for one member between two owned sets.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Handover {
    /// Partitions owned now and not before, ascending.
    pub gained: Vec<u32>,
    /// Partitions owned before and not now, ascending.
    pub lost: Vec<u32>,
}

impl Handover {
    /// The difference from `before` to `after` (both ascending).
    ///
    /// ```
    /// use ironforge_cluster::ownership::Handover;
    /// let h = Handover::between(&[0, 1, 2], &[1, 2, 5]);
    /// assert_eq!((h.gained, h.lost), (vec![5], vec![0]));
    /// ```
    pub fn between(before: &[u32], after: &[u32]) -> Handover {
        Handover {
            gained: after
                .iter()
                .copied()
                .filter(|p| before.binary_search(p).is_err())
                .collect(),
            lost: before
                .iter()
                .copied()
                .filter(|p| after.binary_search(p).is_err())
                .collect(),
        }
    }

    /// True when nothing moved.
    pub fn is_empty(&self) -> bool {
        self.gained.is_empty() && self.lost.is_empty()
    }
}

/// Where a member stands in joining the cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JoinState {
    /// Seeded and has not seen another member yet: owns nothing.
    Waiting,
    /// Has seen another member at this time since start; owns nothing
    /// until the settle time has passed.
    Settling { since: Duration },
    /// Follows the ring.
    Joined,
    /// Gave up on its seeds after the join grace and follows the ring
    /// (alone, until someone joins it).
    Alone,
}

/// Decides the owned partitions of one member from its ring views.
///
/// ```
/// use std::time::Duration;
/// use ironforge_cluster::ownership::{ring_config, Ownership};
/// use ironforge_ring::Ring;
///
/// let config = ring_config(8, 3);
/// let alone = Ring::new(["b"], config).unwrap();
/// let both = Ring::new(["a", "b"], config).unwrap();
/// let mut b = Ownership::joining("b", Duration::from_secs(5), Duration::from_millis(300));
/// assert!(b.decide(&alone, Duration::from_millis(10)).is_empty());
/// assert!(b.decide(&both, Duration::from_millis(20)).is_empty()); // settling
/// assert_eq!(b.decide(&both, Duration::from_millis(400)), both.partitions_owned_by("b"));
/// ```
#[derive(Clone, Debug)]
pub struct Ownership {
    local: String,
    state: JoinState,
    join_grace: Duration,
    join_settle: Duration,
}

impl Ownership {
    /// The first member of a cluster: follows its ring from the start (so a
    /// single node owns every partition).
    pub fn founder(local: impl Into<String>) -> Ownership {
        Ownership {
            local: local.into(),
            state: JoinState::Joined,
            join_grace: Duration::ZERO,
            join_settle: Duration::ZERO,
        }
    }

    /// A member joining through seeds: owns nothing until it has seen
    /// another member for `join_settle`, or until `join_grace` passed
    /// without seeing anyone.
    pub fn joining(local: impl Into<String>, join_grace: Duration, join_settle: Duration) -> Self {
        Ownership {
            local: local.into(),
            state: JoinState::Waiting,
            join_grace,
            join_settle,
        }
    }

    /// The member's ring name.
    pub fn local(&self) -> &str {
        &self.local
    }

    /// Where the member stands.
    pub fn state(&self) -> JoinState {
        self.state
    }

    /// The partitions to own given the current `ring` and the time since
    /// the member started (ascending).
    pub fn decide(&mut self, ring: &Ring, since_start: Duration) -> Vec<u32> {
        let others = ring.members().iter().any(|m| *m != self.local);
        self.state = match self.state {
            JoinState::Waiting if others => JoinState::Settling { since: since_start },
            JoinState::Waiting if since_start >= self.join_grace => JoinState::Alone,
            JoinState::Settling { since }
                if since_start.saturating_sub(since) >= self.join_settle =>
            {
                JoinState::Joined
            }
            state => state,
        };
        match self.state {
            JoinState::Joined | JoinState::Alone => ring.partitions_owned_by(&self.local),
            JoinState::Waiting | JoinState::Settling { .. } => Vec::new(),
        }
    }

    /// A later time at which [`decide`](Self::decide) may answer
    /// differently for the same ring (the end of the grace or settle
    /// period), if any.
    pub fn next_deadline(&self) -> Option<Duration> {
        match self.state {
            JoinState::Waiting => Some(self.join_grace),
            JoinState::Settling { since } => Some(since + self.join_settle),
            JoinState::Joined | JoinState::Alone => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn ring(members: &[&str]) -> Ring {
        Ring::new(members.iter().copied(), ring_config(16, 3)).unwrap()
    }

    #[test]
    fn a_founder_alone_owns_everything() {
        let mut a = Ownership::founder("a");
        assert_eq!(
            a.decide(&ring(&["a"]), Duration::ZERO),
            (0..16).collect::<Vec<_>>()
        );
        assert_eq!(a.next_deadline(), None);
    }

    #[test]
    fn members_of_one_ring_own_disjoint_sets_covering_all_partitions() {
        let members = ["a", "b", "c"];
        let view = ring(&members);
        let mut all: Vec<u32> = members
            .iter()
            .flat_map(|m| Ownership::founder(*m).decide(&view, Duration::ZERO))
            .collect();
        all.sort_unstable();
        assert_eq!(all, (0..16).collect::<Vec<_>>());
    }

    #[test]
    fn a_joining_member_waits_for_others_then_settles() {
        let mut b = Ownership::joining("b", 5_000 * MS, 300 * MS);
        assert!(b.decide(&ring(&["b"]), 100 * MS).is_empty());
        assert_eq!(b.state(), JoinState::Waiting);
        assert!(b.decide(&ring(&["a", "b"]), 200 * MS).is_empty());
        assert_eq!(b.state(), JoinState::Settling { since: 200 * MS });
        assert_eq!(b.next_deadline(), Some(500 * MS));
        assert!(b.decide(&ring(&["a", "b", "c"]), 499 * MS).is_empty());
        let full = ring(&["a", "b", "c"]);
        assert_eq!(b.decide(&full, 500 * MS), full.partitions_owned_by("b"));
        assert_eq!(b.state(), JoinState::Joined);
        // Once joined it follows the ring, even when left alone.
        assert_eq!(b.decide(&ring(&["b"]), 9_000 * MS).len(), 16);
    }

    #[test]
    fn a_joining_member_whose_seeds_are_gone_owns_alone_after_the_grace() {
        let mut b = Ownership::joining("b", 5_000 * MS, 300 * MS);
        assert!(b.decide(&ring(&["b"]), 4_999 * MS).is_empty());
        assert_eq!(b.decide(&ring(&["b"]), 5_000 * MS).len(), 16);
        assert_eq!(b.state(), JoinState::Alone);
    }

    #[test]
    fn handover_lists_gains_and_losses() {
        let before = ring(&["a", "b"]).partitions_owned_by("a");
        let after = ring(&["a", "b", "c"]).partitions_owned_by("a");
        let h = Handover::between(&before, &after);
        assert!(!h.lost.is_empty(), "a joiner takes some of a's partitions");
        assert!(Handover::between(&after, &after).is_empty());
        let back = Handover::between(&after, &before);
        assert_eq!((back.gained, back.lost), (h.lost, h.gained));
    }

    #[test]
    fn ring_config_clamps_to_valid_values() {
        let c = ring_config(0, 0);
        assert_eq!((c.partitions, c.replicas), (1, 1));
        assert!(Ring::new(["a"], c).is_ok());
    }
}
