//! How one fetch spreads what it still needs of one priority over the
//! partitions that hold queued jobs of it. Entries are leased whole, so a
//! share is a floor (the lease script stops at the first entry that
//! reaches it) and every partition with work gets at least one job's
//! share, so none starves. Pure.

/// `need` jobs spread over `queued` (partition, jobs queued at this
/// priority), proportionally to what each holds and never more than it
/// holds. Partitions holding none are left out.
pub(crate) fn shares(need: usize, queued: &[(u32, u64)]) -> Vec<(u32, usize)> {
    let total: u64 = queued.iter().map(|(_, n)| n).sum();
    if need == 0 || total == 0 {
        return Vec::new();
    }
    queued
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|&(p, n)| {
            let proportional = (need as u128 * u128::from(n)).div_ceil(u128::from(total));
            let share = proportional.min(u128::from(n)).max(1);
            (p, share.min(need as u128) as usize)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn shares_follow_what_each_partition_holds() {
        assert_eq!(
            shares(10, &[(0, 30), (1, 10), (2, 0)]),
            vec![(0, 8), (1, 3)]
        );
        assert_eq!(shares(100, &[(0, 3), (1, 1)]), vec![(0, 3), (1, 1)]);
        assert_eq!(shares(1, &[(4, 1000), (5, 1)]), vec![(4, 1), (5, 1)]);
        assert!(shares(0, &[(0, 5)]).is_empty());
        assert!(shares(5, &[(0, 0)]).is_empty());
    }

    proptest! {
        #[test]
        fn shares_cover_the_need_or_everything_queued(
            need in 0usize..5_000,
            counts in proptest::collection::vec(0u64..10_000, 0..20),
        ) {
            let queued: Vec<(u32, u64)> = counts.iter().enumerate().map(|(p, n)| (p as u32, *n)).collect();
            let plan = shares(need, &queued);
            let total: u64 = counts.iter().sum();
            let planned: u64 = plan.iter().map(|(_, s)| *s as u64).sum();
            prop_assert!(planned >= (need as u64).min(total));
            for (p, s) in plan {
                let held = counts[p as usize];
                prop_assert!(s >= 1 && (s as u64) <= held && s <= need);
            }
        }
    }
}
