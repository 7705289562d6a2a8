//! Strict priority and FIFO across partitions: before leasing, a fetch peeks
//! at the next undelivered entries of every partition (their priority and
//! order key, not the jobs) and picks the `max` first ones overall, so each
//! partition is then asked for exactly its share. Peeking `k < max` entries
//! per partition is usually enough; [`choose`] says when it was not and which
//! partitions must be peeked again in full. Pure.

/// Sort key of a ready entry: priority rank (0 = critical), then order key.
pub(crate) type EntryKey = (usize, (u64, u64));

/// The peek of one partition: up to `k` keys, in the partition's order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Peeked {
    /// The partition.
    pub partition: u32,
    /// How many keys were asked for.
    pub asked: usize,
    /// What it holds next, highest priority first.
    pub keys: Vec<EntryKey>,
}

/// How many entries to lease from each priority stream of a partition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Share {
    /// The partition.
    pub partition: u32,
    /// Entries per priority rank.
    pub per_rank: [usize; 4],
}

/// The outcome of [`choose`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Choice {
    /// Lease these shares (partitions with nothing to lease are left out).
    Lease(Vec<Share>),
    /// The peek was cut short in these partitions: peek them again with `k = max`.
    PeekAgain(Vec<u32>),
}

/// Picks the `max` smallest keys over all partitions. A partition that
/// returned all it was asked for (fewer than `max`) may hold more, and if one
/// of those could rank among the chosen, the choice is not exact and that
/// partition must be peeked again.
pub(crate) fn choose(peeked: &[Peeked], max: usize) -> Choice {
    let mut all: Vec<(EntryKey, u32)> = peeked
        .iter()
        .flat_map(|p| p.keys.iter().map(move |key| (*key, p.partition)))
        .collect();
    all.sort_unstable();
    all.truncate(max);
    let cutoff = if all.len() == max {
        all.last().map(|(key, _)| *key)
    } else {
        None
    };
    let cut_short: Vec<u32> = peeked
        .iter()
        .filter(|p| p.asked < max && p.asked > 0 && p.keys.len() >= p.asked)
        .filter(|p| {
            let last = p.keys.iter().max();
            match (cutoff, last) {
                (Some(cutoff), Some(last)) => *last < cutoff,
                _ => true,
            }
        })
        .map(|p| p.partition)
        .collect();
    if !cut_short.is_empty() {
        return Choice::PeekAgain(cut_short);
    }
    let mut shares: Vec<Share> = Vec::new();
    for ((rank, _), partition) in all {
        match shares.iter_mut().find(|s| s.partition == partition) {
            Some(share) => share.per_rank[rank.min(3)] += 1,
            None => {
                let mut per_rank = [0; 4];
                per_rank[rank.min(3)] = 1;
                shares.push(Share {
                    partition,
                    per_rank,
                });
            }
        }
    }
    shares.sort_by_key(|s| s.partition);
    Choice::Lease(shares)
}

/// Keys to peek per partition in the first round: a fair share plus a
/// quarter plus 8, at most `max`. Jobs spread evenly over partitions, so a
/// partition's share of a batch rarely exceeds that (for 512 over 16
/// partitions, 48 is about three standard deviations above the mean of 32)
/// and a second round is rare; every extra key peeked is an entry Redis
/// reads and a Lua script parses, so a bigger margin costs more than the
/// occasional second round.
pub(crate) fn first_peek(max: usize, partitions: u32) -> usize {
    let fair = max.div_ceil(partitions.max(1) as usize);
    (fair + fair / 4 + 8).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peek(partition: u32, asked: usize, keys: &[(usize, u64)]) -> Peeked {
        Peeked {
            partition,
            asked,
            keys: keys.iter().map(|&(r, o)| (r, (o, 0))).collect(),
        }
    }

    #[test]
    fn takes_the_first_keys_by_priority_then_order() {
        let peeked = [
            peek(0, 8, &[(0, 5), (2, 1)]),
            peek(1, 8, &[(0, 3), (1, 9)]),
            peek(2, 8, &[]),
        ];
        assert_eq!(
            choose(&peeked, 3),
            Choice::Lease(vec![
                Share {
                    partition: 0,
                    per_rank: [1, 0, 0, 0]
                },
                Share {
                    partition: 1,
                    per_rank: [1, 1, 0, 0]
                },
            ])
        );
        assert_eq!(
            choose(&[peek(0, 2, &[]), peek(1, 2, &[])], 3),
            Choice::Lease(vec![])
        );
    }

    #[test]
    fn a_partition_cut_short_before_the_cutoff_is_peeked_again() {
        // Partition 0 returned k = 2 keys, both early; its third might be
        // earlier than partition 1's keys, which fill the rest of max = 4.
        // Partition 1's own unseen keys sort after the cutoff: it is fine.
        let peeked = [peek(0, 2, &[(0, 1), (0, 2)]), peek(1, 2, &[(0, 5), (0, 6)])];
        assert_eq!(choose(&peeked, 4), Choice::PeekAgain(vec![0]));
        // With max = 2 both chosen keys come from partition 0 and partition
        // 1's unseen keys sort after its last one, which is past the cutoff.
        assert_eq!(
            choose(&peeked, 2),
            Choice::Lease(vec![Share {
                partition: 0,
                per_rank: [2, 0, 0, 0]
            }])
        );
        // Asking for max keys per partition is always exact.
        let full = [peek(0, 4, &[(0, 1), (0, 2)]), peek(1, 2, &[(0, 5), (0, 6)])];
        assert!(matches!(choose(&full, 4), Choice::Lease(_)));
    }

    #[test]
    fn fewer_keys_than_max_with_a_full_peek_means_peek_again() {
        let peeked = [peek(0, 2, &[(3, 1), (3, 2)]), peek(1, 2, &[(3, 3)])];
        assert_eq!(choose(&peeked, 10), Choice::PeekAgain(vec![0]));
    }

    #[test]
    fn first_peek_is_bounded() {
        assert_eq!(first_peek(1, 16), 1);
        assert_eq!(first_peek(7, 16), 7);
        assert_eq!(first_peek(256, 16), 28);
        assert_eq!(first_peek(512, 16), 48);
        assert_eq!(first_peek(256, 0), 256);
    }
}
