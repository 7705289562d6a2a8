//! Property tests (issue point 10): 3–5 replicas make random edits (objects,
//! deep paths, lists), operations are delivered in random order with
//! duplicates and drops, replicas compact, collect garbage, sync and restart
//! from snapshots; after a final round of sync every replica holds the same
//! document — the one a replica gets by applying every operation in order.

use ironforge_crdt::{path, Config, Op, Replica, ReplicaId, Seg, Snapshot};
use proptest::prelude::*;
use serde_json::{json, Value};
use std::sync::Arc;

#[derive(Clone, Debug)]
enum Step {
    Set {
        replica: usize,
        path: Vec<Seg>,
        value: Value,
    },
    Delete {
        replica: usize,
        path: Vec<Seg>,
    },
    Insert {
        replica: usize,
        list: usize,
        index: usize,
        value: Value,
    },
    Remove {
        replica: usize,
        list: usize,
        index: usize,
    },
    SetInList {
        replica: usize,
        list: usize,
        index: usize,
        value: Value,
    },
    /// Deliver operation `op % produced` to `replica` (may be a duplicate).
    Deliver {
        replica: usize,
        op: usize,
    },
    Sync {
        from: usize,
        to: usize,
    },
    Gc {
        replica: usize,
    },
    Compact {
        replica: usize,
        keep: usize,
    },
    Restart {
        replica: usize,
    },
    Tick {
        ms: u64,
    },
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![Just("a"), Just("b"), Just("c"), Just("a.b")].prop_map(String::from)
}

fn obj_path() -> impl Strategy<Value = Vec<Seg>> {
    prop::collection::vec(key(), 1..=3).prop_map(|keys| keys.into_iter().map(Seg::Key).collect())
}

fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => (0i64..100).prop_map(Value::from),
        1 => (0i64..10).prop_map(|n| json!({"n": n, "m": {"k": n}})),
        1 => (0i64..10).prop_map(|n| json!([n, n + 1])),
    ]
}

fn list_path(list: usize) -> Vec<Seg> {
    path!["lists", if list == 0 { "x" } else { "y" }].to_vec()
}

fn step(replicas: usize) -> impl Strategy<Value = Step> {
    let r = 0..replicas;
    prop_oneof![
        6 => (r.clone(), obj_path(), value()).prop_map(|(replica, path, value)| Step::Set { replica, path, value }),
        2 => (r.clone(), obj_path()).prop_map(|(replica, path)| Step::Delete { replica, path }),
        4 => (r.clone(), 0..2usize, 0..4usize, value()).prop_map(|(replica, list, index, value)| Step::Insert { replica, list, index, value }),
        2 => (r.clone(), 0..2usize, 0..4usize).prop_map(|(replica, list, index)| Step::Remove { replica, list, index }),
        1 => (r.clone(), 0..2usize, 0..4usize, value()).prop_map(|(replica, list, index, value)| Step::SetInList { replica, list, index, value }),
        12 => (r.clone(), any::<usize>()).prop_map(|(replica, op)| Step::Deliver { replica, op }),
        2 => (r.clone(), r.clone()).prop_map(|(from, to)| Step::Sync { from, to }),
        1 => r.clone().prop_map(|replica| Step::Gc { replica }),
        1 => (r.clone(), 0..6usize).prop_map(|(replica, keep)| Step::Compact { replica, keep }),
        1 => r.clone().prop_map(|replica| Step::Restart { replica }),
        2 => (0u64..50).prop_map(|ms| Step::Tick { ms }),
    ]
}

fn scenario() -> impl Strategy<Value = (usize, Vec<Step>, Vec<u64>)> {
    (3usize..=5).prop_flat_map(|n| {
        (
            Just(n),
            prop::collection::vec(step(n), 1..120),
            // Clock skew per replica: stamps must not depend on agreeing clocks.
            prop::collection::vec(0u64..40, n),
        )
    })
}

fn config() -> Config {
    Config {
        max_pending: 8,
        max_pending_age_ms: 200,
        max_log_ops: 24,
        tombstone_grace_ms: 5,
        ..Config::default()
    }
}

fn round_trip(snapshot: Snapshot) -> Snapshot {
    let text = serde_json::to_string(&snapshot).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn run(n: usize, steps: &[Step], skew: &[u64]) -> (Vec<Replica>, Vec<Arc<Op>>, u64) {
    let mut replicas: Vec<Replica> = (0..n)
        .map(|i| Replica::with_config(ReplicaId(i as u64 + 1), config()))
        .collect();
    for replica in &mut replicas {
        for peer in 0..n {
            replica.add_peer(ReplicaId(peer as u64 + 1));
        }
    }
    let mut produced: Vec<Arc<Op>> = Vec::new();
    let mut now = 1_000u64;
    // Shared lists to start from, so concurrent list edits meet in one list.
    let lists = replicas[0]
        .set(&path!["lists"], json!({"x": [0, 1], "y": []}), now)
        .unwrap();
    for replica in &mut replicas[1..] {
        replica.apply(Arc::clone(&lists), now).unwrap();
    }
    produced.push(lists);
    for step in steps {
        now += 1;
        let local = match step.clone() {
            Step::Set {
                replica,
                path,
                value,
            } => replicas[replica]
                .set(&path, value, now + skew[replica])
                .ok(),
            Step::Delete { replica, path } => {
                replicas[replica].delete(&path, now + skew[replica]).ok()
            }
            Step::Insert {
                replica,
                list,
                index,
                value,
            } => {
                let r = &mut replicas[replica];
                if r.get(&list_path(list)).is_none() {
                    r.set(&list_path(list), json!([]), now + skew[replica]).ok()
                } else {
                    r.list_insert(&list_path(list), index, value, now + skew[replica])
                        .ok()
                }
            }
            Step::Remove {
                replica,
                list,
                index,
            } => replicas[replica]
                .list_remove(&list_path(list), index, now + skew[replica])
                .ok(),
            Step::SetInList {
                replica,
                list,
                index,
                value,
            } => {
                let mut p = list_path(list);
                p.push(Seg::Index(index));
                replicas[replica].set(&p, value, now + skew[replica]).ok()
            }
            Step::Deliver { replica, op } => {
                if !produced.is_empty() {
                    let op = Arc::clone(&produced[op % produced.len()]);
                    replicas[replica].apply(op, now + skew[replica]).unwrap();
                }
                None
            }
            Step::Sync { from, to } => {
                if from != to {
                    let message = replicas[from].ops_since(replicas[to].version());
                    // Through serde, as on the wire.
                    let message =
                        serde_json::from_str(&serde_json::to_string(&message).unwrap()).unwrap();
                    replicas[to].apply_sync(message, now + skew[to]).unwrap();
                }
                None
            }
            Step::Gc { replica } => {
                replicas[replica].gc(now + skew[replica]);
                None
            }
            Step::Compact { replica, keep } => {
                replicas[replica].compact(keep);
                None
            }
            Step::Restart { replica } => {
                let snapshot = round_trip(replicas[replica].snapshot());
                let clock_before = snapshot.clock();
                let seq_before = snapshot.version().get(snapshot.replica());
                // Restart with a wall clock that went backwards.
                let restored = Replica::restore(snapshot, config(), 0);
                assert_eq!(restored.stats().known_replicas, n);
                replicas[replica] = restored;
                let r = &mut replicas[replica];
                // Restore-then-continue: the next op is newer and numbered after.
                if let Ok(op) = r.set(&path!["restarted"], json!(replica), 0) {
                    assert!(op.stamp > clock_before);
                    assert_eq!(op.id.seq, seq_before + 1);
                    Some(op)
                } else {
                    None
                }
            }
            Step::Tick { ms } => {
                now += ms;
                None
            }
        };
        if let Some(op) = local {
            produced.push(op);
        }
    }
    (replicas, produced, now)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 192, ..ProptestConfig::default() })]

    #[test]
    fn replicas_converge_after_any_delivery_then_sync((n, steps, skew) in scenario()) {
        let (mut replicas, produced, now) = run(n, &steps, &skew);
        // Final anti-entropy: every ordered pair, twice.
        for _ in 0..2 {
            for from in 0..n {
                for to in 0..n {
                    if from != to {
                        loop {
                            let message = replicas[from].ops_since(replicas[to].version());
                            let done = message.is_empty();
                            replicas[to].apply_sync(message, now + 1_000).unwrap();
                            if done {
                                break;
                            }
                        }
                    }
                }
            }
        }
        // The reference: every operation applied once, in creation order
        // (a causal order), by a replica that never compacts nor collects.
        let mut oracle = Replica::new(ReplicaId(999));
        for op in &produced {
            oracle.apply(Arc::clone(op), now).unwrap();
        }
        let expected = oracle.to_json();
        for replica in &replicas {
            prop_assert_eq!(replica.stats().pending, 0);
            prop_assert_eq!(replica.version(), replicas[0].version());
            prop_assert_eq!(&replica.to_json(), &expected);
        }
        // Collecting garbage once everything is stable changes nothing visible
        // and leaves no tombstone behind.
        for replica in &mut replicas {
            replica.gc(now + 10_000);
            prop_assert_eq!(&replica.to_json(), &expected);
            // Everyone has seen everything: every tombstone and anchor goes.
            prop_assert_eq!(replica.stats().tombstones, 0);
        }
    }
}
