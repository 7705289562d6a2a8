//! Observation and garbage collection (issue points 7–8): watch events with
//! old and new values, conflict/gc/sync events, a bounded event queue,
//! stats, time travel over the log, causally stable tombstone collection and
//! bounded memory under a steady stream of updates and deletes.

mod common;

use common::{converge, exchange};
use ironforge_crdt::{path, Config, CrdtError, Event, PathSeg, Replica, ReplicaId};
use serde_json::json;

#[test]
fn watch_reports_old_and_new_values_under_its_prefix_only() {
    let mut r = Replica::new(ReplicaId(1));
    let watch = r.watch(&path!["jobs"]).unwrap();
    r.set(&path!["jobs", "j1", "status"], json!("queued"), 1)
        .unwrap();
    r.set(&path!["jobs", "j1", "status"], json!("running"), 2)
        .unwrap();
    r.set(&path!["other"], json!(1), 3).unwrap();
    r.delete(&path!["jobs", "j1"], 4).unwrap();
    let events = r.drain_events();
    let changes: Vec<_> = events
        .iter()
        .map(|event| match event {
            Event::Change {
                watch: w,
                path,
                old,
                new,
                ..
            } => {
                assert_eq!(*w, watch);
                (path.len(), old.clone(), new.clone())
            }
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(
        changes,
        vec![
            (3, None, Some(json!("queued"))),
            (3, Some(json!("queued")), Some(json!("running"))),
            (2, Some(json!({"status": "running"})), None),
        ]
    );
    assert!(r.drain_events().is_empty());
    assert!(r.unwatch(watch));
    r.set(&path!["jobs", "j2"], json!(1), 5).unwrap();
    assert!(r.drain_events().is_empty());
}

#[test]
fn conflicts_sync_and_gc_are_reported() {
    let mut a = Replica::new(ReplicaId(1));
    let mut b = Replica::new(ReplicaId(2));
    let watch = b.watch(&path!["x"]).unwrap();
    let from_a = a.set(&path!["x"], json!("a"), 5_000).unwrap();
    b.set(&path!["x"], json!("b"), 1_000).unwrap();
    b.drain_events();
    b.apply(from_a, 5_001).unwrap();
    let events = b.drain_events();
    assert!(events.iter().any(|e| matches!(e,
        Event::Conflict { watch: w, winner, loser, .. }
            if *w == watch && winner.replica == ReplicaId(1) && loser.replica == ReplicaId(2))));
    assert!(events.iter().any(|e| matches!(e,
        Event::Change { old: Some(old), new: Some(new), .. } if *old == json!("b") && *new == json!("a"))));
    assert_eq!(b.stats().conflicts, 1);
    exchange(&mut a, &mut b, 6_000);
    b.gc(7_000);
    let events = b.drain_events();
    assert!(events
        .iter()
        .any(|e| matches!(e, Event::Sync { from, .. } if *from == ReplicaId(1))));
    assert!(events.iter().any(|e| matches!(e, Event::Gc { .. })));
}

#[test]
fn event_queue_is_bounded() {
    let config = Config {
        max_events: 5,
        max_watches: 1,
        ..Config::default()
    };
    let mut r = Replica::with_config(ReplicaId(1), config);
    r.watch(&[]).unwrap();
    assert_eq!(r.watch(&[]), Err(CrdtError::TooManyWatches { limit: 1 }));
    for i in 0..20u64 {
        r.set(&path!["k"], json!(i), i).unwrap();
    }
    let events = r.drain_events();
    assert_eq!(events.len(), 5);
    assert!(matches!(&events[4], Event::Change { new: Some(v), .. } if *v == json!(19)));
    assert_eq!(r.stats().events_dropped, 15);
}

#[test]
fn stats_count_log_pending_tombstones_and_keys() {
    let mut a = Replica::new(ReplicaId(1));
    let mut b = Replica::new(ReplicaId(2));
    a.set(&path!["a"], json!(1), 1).unwrap();
    a.set(&path!["b"], json!({"c": 1}), 2).unwrap();
    a.delete(&path!["a"], 3).unwrap();
    let early = a.set(&path!["d"], json!(1), 4).unwrap();
    b.apply(early, 5).unwrap();
    let stats = a.stats();
    assert_eq!((stats.log_ops, stats.tombstones, stats.keys), (4, 1, 3));
    assert_eq!(b.stats().pending, 1);
}

#[test]
fn replay_rebuilds_the_document_as_of_any_operation() {
    let config = Config {
        max_log_ops: 1_000,
        ..Config::default()
    };
    let mut r = Replica::with_config(ReplicaId(1), config);
    r.set(&path!["a"], json!(1), 1).unwrap();
    r.set(&path!["l"], json!([1]), 2).unwrap();
    r.list_insert(&path!["l"], 1, json!(2), 3).unwrap();
    r.delete(&path!["a"], 4).unwrap();
    assert_eq!(r.replay_until(0).unwrap(), json!({}));
    assert_eq!(r.replay_until(1).unwrap(), json!({"a": 1}));
    assert_eq!(r.replay_until(3).unwrap(), json!({"a": 1, "l": [1, 2]}));
    assert_eq!(r.replay_until(4).unwrap(), r.to_json());
    assert!(matches!(
        r.op_at(3).map(|op| &op.kind),
        Some(ironforge_crdt::OpKind::Delete)
    ));
    // After compaction, history before the log start is gone, after it still replays.
    r.compact(2);
    assert_eq!(
        r.replay_until(1),
        Err(CrdtError::Compacted {
            requested: 1,
            first_available: 2
        })
    );
    assert_eq!(r.replay_until(3).unwrap(), json!({"a": 1, "l": [1, 2]}));
    assert!(matches!(
        r.replay_until(9),
        Err(CrdtError::BeyondLog { .. })
    ));
}

#[test]
fn tombstones_wait_for_every_known_replica_and_the_grace_period() {
    let config = Config {
        tombstone_grace_ms: 1_000,
        ..Config::default()
    };
    let mut a = Replica::with_config(ReplicaId(1), config.clone());
    let mut b = Replica::with_config(ReplicaId(2), config);
    a.add_peer(ReplicaId(2));
    b.add_peer(ReplicaId(1));
    a.set(&path!["x"], json!(1), 100).unwrap();
    converge(&mut a, &mut b, 101);
    a.delete(&path!["x"], 200).unwrap();
    assert_eq!(a.stats().tombstones, 1);
    // b has not seen the delete: not stable, whatever the time.
    assert_eq!(a.gc(100_000).tombstones_collected, 0);
    exchange(&mut a, &mut b, 300);
    // Stable now, but still inside the grace period.
    assert_eq!(a.gc(1_100).tombstones_collected, 0);
    assert_eq!(a.gc(1_300).tombstones_collected, 1);
    assert_eq!(a.stats().tombstones, 0);
    assert_eq!(a.to_json(), json!({}));
    // An unknown-but-declared peer holds collection back too.
    a.add_peer(ReplicaId(3));
    a.set(&path!["y"], json!(1), 2_000).unwrap();
    a.delete(&path!["y"], 2_001).unwrap();
    exchange(&mut a, &mut b, 2_002);
    assert_eq!(a.gc(10_000).tombstones_collected, 0);
    assert!(a.remove_peer(ReplicaId(3)));
    assert_eq!(a.gc(10_000).tombstones_collected, 1);
}

#[test]
fn removed_list_elements_are_collected_once_stable() {
    let config = Config {
        tombstone_grace_ms: 0,
        ..Config::default()
    };
    let mut a = Replica::with_config(ReplicaId(1), config.clone());
    let mut b = Replica::with_config(ReplicaId(2), config);
    a.add_peer(ReplicaId(2));
    b.add_peer(ReplicaId(1));
    a.set(&path!["l"], json!([1, 2, 3, 4]), 1).unwrap();
    converge(&mut a, &mut b, 2);
    for _ in 0..3 {
        a.list_remove(&path!["l"], 0, 3).unwrap();
    }
    assert_eq!(a.stats().tombstones, 3);
    converge(&mut a, &mut b, 4);
    // b's gc needs to know a has seen b's view: one more round.
    exchange(&mut a, &mut b, 5);
    assert_eq!(a.gc(10).tombstones_collected, 3);
    assert_eq!(b.gc(10).tombstones_collected, 3);
    assert_eq!(a.stats().tombstones, 0);
    // Inserting after collection still converges.
    let op = a.list_insert(&path!["l"], 0, json!(0), 11).unwrap();
    b.apply(op, 12).unwrap();
    converge(&mut a, &mut b, 13);
    assert_eq!(a.get(&path!["l"]), Some(json!([0, 4])));
}

#[test]
fn memory_stays_bounded_under_steady_updates_and_deletes() {
    let config = Config {
        tombstone_grace_ms: 100,
        max_log_ops: 512,
        ..Config::default()
    };
    let mut a = Replica::with_config(ReplicaId(1), config.clone());
    let mut b = Replica::with_config(ReplicaId(2), config);
    a.add_peer(ReplicaId(2));
    b.add_peer(ReplicaId(1));
    let mut now = 1_000u64;
    let mut peak_nodes = 0;
    for round in 0..40u64 {
        // Each round: 50 new jobs, updates, then the previous round's jobs deleted.
        for j in 0..50u64 {
            let id = format!("{}", round * 50 + j);
            now += 1;
            a.set(&path!["jobs", id.as_str(), "status"], json!("queued"), now)
                .unwrap();
            b.set(&path!["jobs", id.as_str(), "owner"], json!("b"), now)
                .unwrap();
        }
        exchange(&mut a, &mut b, now);
        if round > 0 {
            for j in 0..50u64 {
                let id = format!("{}", (round - 1) * 50 + j);
                a.delete(&path!["jobs", id.as_str()], now).unwrap();
            }
        }
        exchange(&mut a, &mut b, now);
        exchange(&mut a, &mut b, now);
        now += 200;
        a.gc(now);
        b.gc(now);
        let stats = a.stats();
        peak_nodes = peak_nodes.max(stats.nodes);
        assert!(stats.log_ops <= 512);
        assert!(stats.tombstones <= 50, "round {round}: {stats:?}");
    }
    assert_eq!(a.to_json(), b.to_json());
    // 50 live jobs of 3 nodes each, plus root and "jobs", plus one round of tombstones.
    assert!(peak_nodes <= 50 * 3 + 2 + 50, "peak {peak_nodes}");
    assert_eq!(
        a.get(&path!["jobs"])
            .unwrap()
            .as_object()
            .map(|jobs| jobs.len()),
        Some(50)
    );
}

#[test]
fn watch_prefix_can_name_a_list_element() {
    let mut r = Replica::new(ReplicaId(1));
    r.set(&path!["l"], json!([{"v": 1}, {"v": 2}]), 1).unwrap();
    r.watch(&path!["l", 1]).unwrap();
    r.set(&path!["l", 0, "v"], json!(10), 2).unwrap();
    r.set(&path!["l", 1, "v"], json!(20), 3).unwrap();
    let events = r.drain_events();
    assert_eq!(events.len(), 1);
    assert!(
        matches!(&events[0], Event::Change { path, .. } if matches!(path[1], PathSeg::Elem(_)))
    );
}
