//! Balance and movement of the default ring for N = 3..100 members: the
//! bounds the ring promises (max/mean owned partitions <= 1.25; one member
//! joining or leaving moves the owner of at most 1.5/N of the partitions).
//!
//! Run with `-- --nocapture` to print the table kept in docs/perf/ring.md.

use ironforge_ring::{Ring, RingConfig};

fn names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("node-{i}")).collect()
}

fn max_over_mean(ring: &Ring) -> f64 {
    let counts = ring.ownership_counts();
    let max = counts.iter().copied().max().unwrap_or(0) as f64;
    let mean = f64::from(ring.config().partitions) / counts.len() as f64;
    max / mean
}

struct Row {
    members: usize,
    balance: f64,
    add_owner: f64,
    add_any: f64,
    remove_owner: f64,
    remove_any: f64,
}

fn measure(base: &Ring) -> Row {
    let members = base.members().len();
    let partitions = f64::from(base.config().partitions);
    let grown = base.with_member(&format!("joiner-{members}")).unwrap();
    // Remove a member from the middle of the sorted set, not the newest one.
    let leaver = base.members()[members / 2].clone();
    let shrunk = base.without_member(&leaver);

    let added = Ring::diff(base, &grown);
    let removed = Ring::diff(base, &shrunk);
    Row {
        members,
        balance: max_over_mean(base),
        add_owner: added.owner_moves().len() as f64 / partitions,
        add_any: added.changes.len() as f64 / partitions,
        remove_owner: removed.owner_moves().len() as f64 / partitions,
        remove_any: removed.changes.len() as f64 / partitions,
    }
}

#[test]
fn default_ring_meets_balance_and_movement_bounds_for_3_to_100_members() {
    println!("| N | max/mean | join: owners moved | x N | join: any replica | leave: owners moved | x N | leave: any replica |");
    println!("|---|---|---|---|---|---|---|---|");
    let mut failures = Vec::new();
    // Grown one member at a time (equal to a fresh build, see tests/properties.rs).
    let mut base = Ring::new(names(3), RingConfig::default()).unwrap();
    for members in 3..=100usize {
        if members > 3 {
            base = base.with_member(&format!("node-{}", members - 1)).unwrap();
        }
        let row = measure(&base);
        println!(
            "| {} | {:.3} | {:.4} | {:.2} | {:.4} | {:.4} | {:.2} | {:.4} |",
            row.members,
            row.balance,
            row.add_owner,
            row.add_owner * (row.members + 1) as f64,
            row.add_any,
            row.remove_owner,
            row.remove_owner * row.members as f64,
            row.remove_any,
        );
        if row.balance > 1.25 {
            failures.push(format!("N={members}: max/mean {:.3}", row.balance));
        }
        // N is the larger of the two member counts.
        if row.add_owner > 1.5 / (members + 1) as f64 {
            failures.push(format!("N={members}: join moved {:.4}", row.add_owner));
        }
        if row.remove_owner > 1.5 / members as f64 {
            failures.push(format!("N={members}: leave moved {:.4}", row.remove_owner));
        }
    }
    assert!(failures.is_empty(), "bounds broken: {failures:#?}");
}
