//! The pure consistent-hash ring: members, vnode tokens, partitions, owners
//! and preference lists. No I/O, no clock, no randomness: the same member set
//! gives the same assignment on every machine.
//!
//! # Algorithm
//!
//! Each member places `vnodes_per_member` tokens (SHA-256 of its id and the
//! vnode index) on a 64-bit ring. Partition `p` has the fixed point
//! `p * (2^64 / P)`; walking clockwise from that point gives the partition's
//! *candidate order* of distinct members.
//!
//! Plain "owner = first candidate" leaves some members with far more
//! partitions than others at modest V (the share of a member is a sum of
//! random arc lengths). So ownership is assigned with a load cap
//! (consistent hashing with bounded loads): partitions are visited in index
//! order and each goes to its first candidate that holds fewer than
//! `cap = floor(P * 5 / (4 * N))` partitions (at least `ceil(P / N)`). That caps
//! max/mean at 1.25 by construction, and because most partitions keep their
//! first candidate, a membership change still moves little more than the
//! joining or leaving member's share. `tests/balance.rs` measures both for
//! N = 3..100; `docs/perf/ring.md` has the table.
//!
//! Replicas are the next distinct members in the candidate order after the
//! owner (the owner is moved to the front), so a preference list never holds a
//! member twice.

use crate::error::RingError;
use crate::hash::{key_hash, partition_point, vnode_token};

/// Largest accepted partition count (bounds the owner and replica tables).
pub const MAX_PARTITIONS: u32 = 1 << 20;
/// Largest accepted vnode count per member (bounds the token table).
pub const MAX_VNODES_PER_MEMBER: u32 = 4096;
/// Largest accepted member count.
pub const MAX_MEMBERS: usize = 4096;
/// Longest accepted member id, in bytes.
pub const MAX_MEMBER_ID_LEN: usize = 255;

/// Shape of a ring. Every member of a cluster must use the same values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingConfig {
    /// Tokens each member places on the ring (default 128).
    pub vnodes_per_member: u32,
    /// Number of partitions keys are hashed into (default 4096).
    pub partitions: u32,
    /// Length of the precomputed preference list: owner plus replicas (default 3).
    pub replicas: u32,
}

impl Default for RingConfig {
    fn default() -> Self {
        Self {
            vnodes_per_member: 128,
            partitions: 4096,
            replicas: 3,
        }
    }
}

impl RingConfig {
    fn validate(&self) -> Result<(), RingError> {
        if self.partitions == 0 || self.partitions > MAX_PARTITIONS {
            return Err(RingError::BadPartitionCount(self.partitions));
        }
        if self.vnodes_per_member == 0 || self.vnodes_per_member > MAX_VNODES_PER_MEMBER {
            return Err(RingError::BadVnodeCount(self.vnodes_per_member));
        }
        if self.replicas == 0 {
            return Err(RingError::ZeroReplicas);
        }
        Ok(())
    }
}

/// An immutable ring computed from a member set.
///
/// ```
/// use ironforge_ring::{Ring, RingConfig};
///
/// let ring = Ring::new(["node-a", "node-b", "node-c"], RingConfig::default()).unwrap();
/// let partition = ring.partition_for_key(b"job-42");
/// let owner = ring.owner(partition).unwrap();
/// let replicas = ring.preference_list(partition, 3);
/// assert_eq!(replicas[0], owner);
/// assert_eq!(replicas.len(), 3);
///
/// // Same members learned in another order: same assignment.
/// let again = Ring::new(["node-c", "node-a", "node-b"], RingConfig::default()).unwrap();
/// assert!(Ring::diff(&ring, &again).is_empty());
/// ```
#[derive(Debug, Clone)]
pub struct Ring {
    config: RingConfig,
    /// Sorted, deduplicated member ids; indexes into it are `u32` member numbers.
    members: Vec<String>,
    /// `(token, member)` sorted by token then member number.
    tokens: Vec<(u64, u32)>,
    /// `replicas` entries per partition, owner first; fewer when there are
    /// fewer members than `replicas`.
    preference: Vec<u32>,
    /// Number of valid entries per partition in `preference`.
    preference_len: usize,
}

impl Ring {
    /// Builds the ring for `members` (duplicates are ignored, order does not
    /// matter). An empty member set is allowed: every lookup then finds nobody.
    pub fn new<I, S>(members: I, config: RingConfig) -> Result<Self, RingError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        config.validate()?;
        let mut members: Vec<String> = members.into_iter().map(Into::into).collect();
        if let Some(bad) = members
            .iter()
            .find(|m| m.is_empty() || m.len() > MAX_MEMBER_ID_LEN)
        {
            return Err(RingError::BadMemberId(bad.len()));
        }
        members.sort_unstable();
        members.dedup();
        if members.len() > MAX_MEMBERS {
            return Err(RingError::TooManyMembers(members.len()));
        }

        let mut tokens = Vec::with_capacity(members.len() * config.vnodes_per_member as usize);
        for (number, member) in members.iter().enumerate() {
            for vnode in 0..config.vnodes_per_member {
                tokens.push((vnode_token(member, vnode), number as u32));
            }
        }
        tokens.sort_unstable();

        let mut ring = Self {
            config,
            members,
            tokens,
            preference: Vec::new(),
            preference_len: 0,
        };
        ring.assign();
        Ok(ring)
    }

    /// The ring for this member set plus `member`, reusing the existing tokens
    /// (only the new member's vnodes are hashed). Identical to building the
    /// new set with [`Ring::new`].
    pub fn with_member(&self, member: &str) -> Result<Self, RingError> {
        if member.is_empty() || member.len() > MAX_MEMBER_ID_LEN {
            return Err(RingError::BadMemberId(member.len()));
        }
        let Err(slot) = self.members.binary_search_by(|m| m.as_str().cmp(member)) else {
            return Ok(self.clone());
        };
        if self.members.len() + 1 > MAX_MEMBERS {
            return Err(RingError::TooManyMembers(self.members.len() + 1));
        }
        let slot = slot as u32;
        let mut members = self.members.clone();
        members.insert(slot as usize, member.to_owned());
        let mut tokens: Vec<(u64, u32)> = self
            .tokens
            .iter()
            .map(|&(token, m)| (token, if m >= slot { m + 1 } else { m }))
            .collect();
        tokens.extend((0..self.config.vnodes_per_member).map(|v| (vnode_token(member, v), slot)));
        tokens.sort_unstable();
        Ok(self.rebuilt(members, tokens))
    }

    /// The ring for this member set minus `member` (unchanged if absent).
    /// Identical to building the smaller set with [`Ring::new`].
    pub fn without_member(&self, member: &str) -> Self {
        let Ok(slot) = self.members.binary_search_by(|m| m.as_str().cmp(member)) else {
            return self.clone();
        };
        let slot = slot as u32;
        let mut members = self.members.clone();
        members.remove(slot as usize);
        let tokens = self
            .tokens
            .iter()
            .filter(|&&(_, m)| m != slot)
            .map(|&(token, m)| (token, if m > slot { m - 1 } else { m }))
            .collect();
        self.rebuilt(members, tokens)
    }

    fn rebuilt(&self, members: Vec<String>, tokens: Vec<(u64, u32)>) -> Self {
        let mut ring = Self {
            config: self.config,
            members,
            tokens,
            preference: Vec::new(),
            preference_len: 0,
        };
        ring.assign();
        ring
    }

    /// Fills the owner-first preference table with bounded-load ownership.
    fn assign(&mut self) {
        let member_count = self.members.len();
        let partitions = self.config.partitions as usize;
        let width = (self.config.replicas as usize).min(member_count);
        self.preference_len = width;
        if member_count == 0 {
            return;
        }
        let cap = load_cap(partitions, member_count);
        let mut load = vec![0usize; member_count];
        let mut seen = vec![false; member_count];
        let mut table = Vec::with_capacity(partitions * width);
        let mut candidates = Vec::with_capacity(member_count);
        for partition in 0..self.config.partitions {
            let start = self.first_token_at(partition_point(partition, self.config.partitions));
            // Walk until the owner is found and `width` distinct members are known.
            candidates.clear();
            let mut owner_slot = None;
            for step in 0..self.tokens.len() {
                let member = self.tokens[(start + step) % self.tokens.len()].1;
                let number = member as usize;
                if seen[number] {
                    continue;
                }
                seen[number] = true;
                if owner_slot.is_none() && load[number] < cap {
                    owner_slot = Some(candidates.len());
                }
                candidates.push(member);
                if owner_slot.is_some() && candidates.len() >= width {
                    break;
                }
            }
            for &member in &candidates {
                seen[member as usize] = false;
            }
            // `cap * members >= partitions`, so some candidate always has room.
            let owner_slot = owner_slot.unwrap_or(0);
            let owner = candidates[owner_slot];
            load[owner as usize] += 1;
            table.push(owner);
            table.extend(
                candidates
                    .iter()
                    .copied()
                    .filter(|&m| m != owner)
                    .take(width - 1),
            );
        }
        self.preference = table;
    }

    /// Index of the first token at or clockwise after `point` (wrapping).
    fn first_token_at(&self, point: u64) -> usize {
        let index = self.tokens.partition_point(|&(token, _)| token < point);
        if index == self.tokens.len() {
            0
        } else {
            index
        }
    }

    /// The configuration this ring was built with.
    pub fn config(&self) -> RingConfig {
        self.config
    }

    /// Sorted member ids.
    pub fn members(&self) -> &[String] {
        &self.members
    }

    /// Partition of a key: SHA-256 of the key as a u64, modulo the partition count.
    pub fn partition_for_key(&self, key: &[u8]) -> u32 {
        (key_hash(key) % u64::from(self.config.partitions)) as u32
    }

    /// Owner of `partition`, or `None` when the ring is empty or the partition
    /// is out of range.
    pub fn owner(&self, partition: u32) -> Option<&str> {
        self.preference_row(partition)
            .and_then(|row| row.first())
            .map(|&m| self.members[m as usize].as_str())
    }

    /// Owner of the partition `key` maps to.
    pub fn owner_of_key(&self, key: &[u8]) -> Option<&str> {
        self.owner(self.partition_for_key(key))
    }

    /// Up to `n` distinct members for `partition`, owner first, then clockwise.
    /// Shorter when the ring has fewer than `n` members; empty for an
    /// out-of-range partition.
    pub fn preference_list(&self, partition: u32, n: usize) -> Vec<&str> {
        let Some(row) = self.preference_row(partition) else {
            return Vec::new();
        };
        let mut list: Vec<u32> = row.iter().copied().take(n).collect();
        if n > list.len() && list.len() < self.members.len() {
            self.extend_clockwise(partition, &mut list, n);
        }
        list.into_iter()
            .map(|m| self.members[m as usize].as_str())
            .collect()
    }

    /// Partition indexes owned by `member`.
    pub fn partitions_owned_by(&self, member: &str) -> Vec<u32> {
        let Ok(number) = self.members.binary_search_by(|m| m.as_str().cmp(member)) else {
            return Vec::new();
        };
        (0..self.config.partitions)
            .filter(|&p| {
                self.preference_row(p).and_then(|row| row.first()).copied() == Some(number as u32)
            })
            .collect()
    }

    /// Number of partitions each member owns, in `members()` order.
    pub fn ownership_counts(&self) -> Vec<usize> {
        let mut counts = vec![0usize; self.members.len()];
        for partition in 0..self.config.partitions {
            if let Some(&owner) = self.preference_row(partition).and_then(|row| row.first()) {
                counts[owner as usize] += 1;
            }
        }
        counts
    }

    /// Owner and replicas of `partition` as member numbers (owner first).
    fn preference_row(&self, partition: u32) -> Option<&[u32]> {
        if partition >= self.config.partitions || self.preference_len == 0 {
            return None;
        }
        let start = partition as usize * self.preference_len;
        self.preference.get(start..start + self.preference_len)
    }

    /// Appends further distinct members in clockwise order from the
    /// partition's point until `list` has `n` entries or holds every member.
    fn extend_clockwise(&self, partition: u32, list: &mut Vec<u32>, n: usize) {
        let start = self.first_token_at(partition_point(partition, self.config.partitions));
        let want = n.min(self.members.len());
        let mut seen = vec![false; self.members.len()];
        for &m in list.iter() {
            seen[m as usize] = true;
        }
        for step in 0..self.tokens.len() {
            if list.len() >= want {
                break;
            }
            let member = self.tokens[(start + step) % self.tokens.len()].1;
            if !seen[member as usize] {
                seen[member as usize] = true;
                list.push(member);
            }
        }
    }

    /// Full owner-first preference list of `partition` as owned strings.
    pub(crate) fn preference_owned(&self, partition: u32) -> Vec<String> {
        self.preference_row(partition)
            .map(|row| {
                row.iter()
                    .map(|&m| self.members[m as usize].clone())
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Most partitions one member may own: 1.25 x the mean, but never below the
/// ceiling of the mean so that everything fits.
fn load_cap(partitions: usize, members: usize) -> usize {
    let bounded = partitions * 5 / (4 * members);
    bounded.max(partitions.div_ceil(members)).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("node-{i}")).collect()
    }

    #[test]
    fn empty_ring_finds_nobody() {
        let ring = Ring::new(Vec::<String>::new(), RingConfig::default()).unwrap();
        assert_eq!(ring.owner(0), None);
        assert!(ring.preference_list(0, 3).is_empty());
    }

    #[test]
    fn single_member_owns_everything() {
        let ring = Ring::new(["solo"], RingConfig::default()).unwrap();
        assert_eq!(ring.ownership_counts(), vec![4096]);
        assert_eq!(ring.preference_list(7, 3), vec!["solo"]);
    }

    #[test]
    fn preference_lists_are_distinct_and_owner_first() {
        let ring = Ring::new(names(10), RingConfig::default()).unwrap();
        for p in 0..ring.config().partitions {
            let list = ring.preference_list(p, 10);
            assert_eq!(list.len(), 10);
            assert_eq!(Some(list[0]), ring.owner(p));
            let mut sorted = list.clone();
            sorted.sort_unstable();
            sorted.dedup();
            assert_eq!(sorted.len(), 10);
        }
    }

    #[test]
    fn bad_configs_are_rejected() {
        let bad = RingConfig {
            partitions: 0,
            ..RingConfig::default()
        };
        assert_eq!(
            Ring::new(names(3), bad).unwrap_err(),
            RingError::BadPartitionCount(0)
        );
        let bad = RingConfig {
            vnodes_per_member: 0,
            ..RingConfig::default()
        };
        assert!(Ring::new(names(3), bad).is_err());
        assert!(Ring::new([""], RingConfig::default()).is_err());
    }

    #[test]
    fn out_of_range_partition_has_no_owner() {
        let ring = Ring::new(names(3), RingConfig::default()).unwrap();
        assert_eq!(ring.owner(4096), None);
    }
}
