//! Property tests of the pure ring: the assignment depends only on the member
//! set, incremental rebuilds equal fresh builds, `diff` lists exactly the
//! changed partitions, and one join or leave moves few owners.

use ironforge_ring::{Ring, RingConfig};
use proptest::prelude::*;
use std::collections::BTreeSet;

fn member_set(min: usize, max: usize) -> impl Strategy<Value = Vec<String>> {
    proptest::collection::btree_set("[a-z][a-z0-9-]{0,12}", min..=max)
        .prop_map(|set| set.into_iter().collect())
}

/// A small config so that cases stay fast in debug builds.
fn small_config() -> impl Strategy<Value = RingConfig> {
    (1u32..64, 1u32..512, 1u32..5).prop_map(|(vnodes, partitions, replicas)| RingConfig {
        vnodes_per_member: vnodes,
        partitions,
        replicas,
    })
}

fn same_assignment(a: &Ring, b: &Ring) -> bool {
    a.members() == b.members()
        && (0..a.config().partitions).all(|p| {
            a.preference_list(p, a.config().replicas as usize)
                == b.preference_list(p, b.config().replicas as usize)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn assignment_ignores_insertion_order_and_duplicates(
        members in member_set(1, 12),
        config in small_config(),
        seed in any::<u64>(),
    ) {
        let mut shuffled = members.clone();
        // Deterministic shuffle plus duplicates, no RNG needed.
        shuffled.sort_by_key(|m| m.bytes().fold(seed, |h, b| h.rotate_left(5) ^ u64::from(b)));
        shuffled.push(members[0].clone());
        let a = Ring::new(members, config).unwrap();
        let b = Ring::new(shuffled, config).unwrap();
        prop_assert!(same_assignment(&a, &b));
        prop_assert!(Ring::diff(&a, &b).is_empty());
    }

    #[test]
    fn incremental_rebuild_equals_fresh_build(
        members in member_set(2, 12),
        config in small_config(),
        joiner in "[a-z]{1,8}",
    ) {
        let full = Ring::new(members.clone(), config).unwrap();
        let removed = members[members.len() / 2].clone();
        let fresh_without = Ring::new(members.iter().filter(|m| **m != removed).cloned(), config).unwrap();
        prop_assert!(same_assignment(&full.without_member(&removed), &fresh_without));

        let mut with_joiner = members.clone();
        with_joiner.push(joiner.clone());
        let fresh_with = Ring::new(with_joiner, config).unwrap();
        prop_assert!(same_assignment(&full.with_member(&joiner).unwrap(), &fresh_with));
    }

    #[test]
    fn preference_lists_hold_distinct_members_owner_first(
        members in member_set(1, 12),
        config in small_config(),
        n in 1usize..15,
    ) {
        let ring = Ring::new(members.clone(), config).unwrap();
        for p in 0..config.partitions {
            let list = ring.preference_list(p, n);
            prop_assert_eq!(list.len(), n.min(members.len()));
            prop_assert_eq!(list.first().copied(), ring.owner(p));
            let distinct: BTreeSet<&str> = list.iter().copied().collect();
            prop_assert_eq!(distinct.len(), list.len());
        }
    }

    #[test]
    fn diff_lists_exactly_the_changed_partitions(
        before in member_set(0, 10),
        after in member_set(0, 10),
        config in small_config(),
    ) {
        let old = Ring::new(before, config).unwrap();
        let new = Ring::new(after, config).unwrap();
        let diff = Ring::diff(&old, &new);
        let width = config.replicas as usize;
        let changed: BTreeSet<u32> = diff.partitions().into_iter().collect();
        for p in 0..config.partitions {
            let was = old.preference_list(p, width);
            let is = new.preference_list(p, width);
            prop_assert_eq!(changed.contains(&p), was != is, "partition {}", p);
        }
        for change in &diff.changes {
            prop_assert_eq!(&change.before, &old.preference_list(change.partition, width));
            prop_assert_eq!(&change.after, &new.preference_list(change.partition, width));
        }
        let owner_moves: BTreeSet<u32> = diff.owner_moves().into_iter().collect();
        for p in 0..config.partitions {
            prop_assert_eq!(owner_moves.contains(&p), old.owner(p) != new.owner(p));
        }
    }
}

proptest! {
    // Default config (4096 partitions, 128 vnodes): fewer, costlier cases.
    #![proptest_config(ProptestConfig::with_cases(12))]

    #[test]
    fn one_join_or_leave_moves_few_owners_and_keeps_balance(
        members in member_set(3, 60),
        joiner in "[A-Z][a-z0-9]{0,10}",
        leaver_index in any::<prop::sample::Index>(),
    ) {
        let base = Ring::new(members.clone(), RingConfig::default()).unwrap();
        let partitions = f64::from(base.config().partitions);
        let n = members.len() as f64;

        let counts = base.ownership_counts();
        let max = *counts.iter().max().unwrap() as f64;
        prop_assert!(max / (partitions / n) <= 1.25, "max/mean {}", max / (partitions / n));

        let grown = base.with_member(&joiner).unwrap();
        let moved = Ring::diff(&base, &grown).owner_moves().len() as f64;
        prop_assert!(moved <= 1.5 / (n + 1.0) * partitions, "join moved {} of {}", moved, partitions);

        let leaver = leaver_index.get(&members);
        let shrunk = base.without_member(leaver);
        let moved = Ring::diff(&base, &shrunk).owner_moves().len() as f64;
        prop_assert!(moved <= 1.5 / n * partitions, "leave moved {} of {}", moved, partitions);
    }
}
