//! Causal delivery and sync (issue points 4–6): early operations wait in a
//! bounded buffer, duplicates are ignored, dropped operations come back by
//! sync, compacted logs fall back to snapshots, and a restored replica never
//! rewinds its clock nor reuses a sequence number.

mod common;

use common::{converge, exchange};
use ironforge_crdt::{path, Config, Delivery, Replica, ReplicaId, SyncBody};
use serde_json::json;
use std::sync::Arc;

#[test]
fn early_operation_waits_for_its_predecessor() {
    let mut a = Replica::new(ReplicaId(1));
    let mut b = Replica::new(ReplicaId(2));
    let first = a.set(&path!["x"], json!(1), 10).unwrap();
    let second = a.set(&path!["y"], json!(2), 11).unwrap();
    assert_eq!(
        b.apply(Arc::clone(&second), 12).unwrap(),
        Delivery::Buffered
    );
    assert_eq!(b.get(&path!["y"]), None);
    assert_eq!(b.stats().pending, 1);
    assert_eq!(b.apply(first, 13).unwrap(), Delivery::Applied { ops: 2 });
    assert_eq!(b.to_json(), json!({"x": 1, "y": 2}));
    assert_eq!(b.stats().pending, 0);
    assert_eq!(b.apply(second, 14).unwrap(), Delivery::Duplicate);
    assert_eq!(b.stats().duplicates, 1);
}

#[test]
fn operation_waits_for_what_its_author_had_seen_from_others() {
    let mut a = Replica::new(ReplicaId(1));
    let mut b = Replica::new(ReplicaId(2));
    let mut c = Replica::new(ReplicaId(3));
    let create = a.set(&path!["l"], json!([]), 10).unwrap();
    b.apply(Arc::clone(&create), 11).unwrap();
    let insert = b.list_insert(&path!["l"], 0, json!("x"), 12).unwrap();
    // c hears b before a: the insert needs a's list first.
    assert_eq!(
        c.apply(Arc::clone(&insert), 13).unwrap(),
        Delivery::Buffered
    );
    assert_eq!(c.apply(create, 14).unwrap(), Delivery::Applied { ops: 2 });
    assert_eq!(c.to_json(), json!({"l": ["x"]}));
}

#[test]
fn pending_buffer_is_bounded_in_count_and_age_and_sync_recovers_drops() {
    let config = Config {
        max_pending: 3,
        max_pending_age_ms: 100,
        ..Config::default()
    };
    let mut a = Replica::new(ReplicaId(1));
    let mut b = Replica::with_config(ReplicaId(2), config);
    let ops: Vec<_> = (0..8)
        .map(|i| {
            a.set(&path!["k", format!("{i}")], json!(i), 10 + i)
                .unwrap()
        })
        .collect();
    // Everything but the first arrives: only 3 may wait.
    for op in &ops[1..] {
        b.apply(Arc::clone(op), 20).unwrap();
    }
    assert_eq!(b.stats().pending, 3);
    assert_eq!(b.stats().pending_dropped, 4);
    // Age: the survivors expire.
    let report = b.gc(500);
    assert_eq!(report.pending_expired, 3);
    assert_eq!(b.stats().pending, 0);
    // Sync brings every dropped operation back.
    let message = a.ops_since(b.version());
    assert_eq!(b.apply_sync(message, 501).unwrap(), 8);
    assert_eq!(a.to_json(), b.to_json());
}

#[test]
fn duplicated_and_reordered_sync_is_idempotent() {
    let mut a = Replica::new(ReplicaId(1));
    let mut b = Replica::new(ReplicaId(2));
    for i in 0..20u64 {
        a.set(&path!["k", format!("{}", i % 5)], json!(i), i)
            .unwrap();
    }
    let message = a.ops_since(b.version());
    b.apply_sync(message.clone(), 30).unwrap();
    assert_eq!(b.apply_sync(message, 31).unwrap(), 0);
    assert_eq!(a.to_json(), b.to_json());
}

#[test]
fn delta_sync_sends_only_what_the_peer_lacks() {
    let mut a = Replica::new(ReplicaId(1));
    let mut b = Replica::new(ReplicaId(2));
    for i in 0..10u64 {
        a.set(&path!["k"], json!(i), i).unwrap();
    }
    exchange(&mut a, &mut b, 20);
    a.set(&path!["k"], json!("last"), 21).unwrap();
    match a.ops_since(b.version()).body {
        SyncBody::Ops { ops } => assert_eq!(ops.len(), 1),
        SyncBody::Snapshot { .. } => panic!("log still covers the peer"),
    }
}

#[test]
fn large_deltas_come_in_bounded_chunks_until_empty() {
    let config = Config {
        max_sync_ops: 7,
        ..Config::default()
    };
    let mut a = Replica::with_config(ReplicaId(1), config);
    let mut b = Replica::new(ReplicaId(2));
    for i in 0..50u64 {
        a.set(&path!["k", format!("{i}")], json!(i), i).unwrap();
    }
    let mut rounds = 0;
    loop {
        let message = a.ops_since(b.version());
        if message.is_empty() {
            break;
        }
        match &message.body {
            SyncBody::Ops { ops } => assert!(ops.len() <= 7),
            SyncBody::Snapshot { .. } => panic!("log covers everything"),
        }
        assert_eq!(
            b.apply_sync(message, 100).unwrap(),
            if rounds < 7 { 7 } else { 1 }
        );
        rounds += 1;
    }
    assert_eq!(rounds, 8);
    assert_eq!(a.to_json(), b.to_json());
}

#[test]
fn lagging_replica_catches_up_by_snapshot_after_compaction() {
    let mut a = Replica::new(ReplicaId(1));
    let mut b = Replica::new(ReplicaId(2));
    a.set(&path!["early"], json!(true), 1).unwrap();
    exchange(&mut a, &mut b, 2);
    for i in 0..50u64 {
        a.set(&path!["jobs", format!("{}", i % 7), "n"], json!(i), 10 + i)
            .unwrap();
    }
    a.delete(&path!["jobs", "3"], 100).unwrap();
    // b wrote concurrently and never sent it.
    b.set(&path!["from_b"], json!(1), 50).unwrap();
    assert_eq!(a.compact(0), 52);
    let message = a.ops_since(b.version());
    assert!(matches!(message.body, SyncBody::Snapshot { .. }));
    // Over the wire, as JSON.
    let message = serde_json::from_str(&serde_json::to_string(&message).unwrap()).unwrap();
    b.apply_sync(message, 200).unwrap();
    // b compacted too (its log was reset by the snapshot): still converges.
    converge(&mut a, &mut b, 201);
    assert_eq!(b.get(&path!["from_b"]), Some(json!(1)));
    assert_eq!(b.get(&path!["jobs", "3"]), None);
    assert_eq!(b.get(&path!["jobs", "4", "n"]), Some(json!(46)));
}

#[test]
fn automatic_compaction_keeps_the_log_bounded_and_sync_still_works() {
    let config = Config {
        max_log_ops: 100,
        ..Config::default()
    };
    let mut a = Replica::with_config(ReplicaId(1), config);
    let mut b = Replica::new(ReplicaId(2));
    for i in 0..1_000u64 {
        a.set(&path!["k", format!("{}", i % 10)], json!(i), i)
            .unwrap();
        assert!(a.stats().log_ops <= 100);
    }
    assert!(a.stats().log_start >= 900);
    converge(&mut a, &mut b, 2_000);
}

#[test]
fn restore_never_rewinds_the_clock_nor_reuses_sequence_numbers() {
    let mut a = Replica::new(ReplicaId(1));
    a.set(&path!["x"], json!(1), 1_000_000).unwrap();
    let last = a.set(&path!["x"], json!(2), 1_000_001).unwrap();
    let snapshot = a.snapshot();
    let text = serde_json::to_string(&snapshot).unwrap();
    // Restart on a machine whose clock is far behind.
    let mut restored = Replica::restore(serde_json::from_str(&text).unwrap(), Config::default(), 5);
    assert_eq!(restored.to_json(), json!({"x": 2}));
    let next = restored.set(&path!["x"], json!(3), 5).unwrap();
    assert!(next.stamp > last.stamp);
    assert_eq!(next.id.seq, last.id.seq + 1);
    // A peer that saw the pre-restart ops accepts the new one (no duplicate id).
    let mut b = Replica::new(ReplicaId(2));
    exchange(&mut a, &mut b, 6);
    assert_eq!(b.apply(next, 7).unwrap(), Delivery::Applied { ops: 1 });
    assert_eq!(b.get(&path!["x"]), Some(json!(3)));
}

#[test]
fn restored_replica_learns_its_own_later_ops_from_peers_and_continues_after_them() {
    let mut a = Replica::new(ReplicaId(1));
    let mut b = Replica::new(ReplicaId(2));
    a.set(&path!["x"], json!(1), 10).unwrap();
    let snapshot = a.snapshot();
    // a keeps writing, b sees it, then a crashes and comes back from the old snapshot.
    let lost = a.set(&path!["x"], json!(2), 11).unwrap();
    exchange(&mut a, &mut b, 12);
    let mut restored = Replica::restore(snapshot, Config::default(), 13);
    exchange(&mut b, &mut restored, 14);
    let next = restored.set(&path!["y"], json!(1), 15).unwrap();
    assert!(next.id.seq > lost.id.seq);
    converge(&mut b, &mut restored, 16);
}

#[test]
fn malformed_remote_operations_are_errors_not_panics() {
    let mut a = Replica::new(ReplicaId(1));
    let mut b = Replica::new(ReplicaId(2));
    let op = a.set(&path!["x"], json!(1), 10).unwrap();
    let mut forged = (*op).clone();
    forged.stamp.replica = ReplicaId(9);
    assert!(b.apply(forged, 11).is_err());
    let mut zero = (*op).clone();
    zero.id.seq = 0;
    assert!(b.apply(zero, 11).is_err());
    let text = r#"{"id":{"replica":1,"seq":1},"stamp":{"physical_ms":1,"logical":0,"replica":1},"deps":{},"path":[],"kind":{"type":"delete"}}"#;
    let empty_path: ironforge_crdt::Op = serde_json::from_str(text).unwrap();
    assert!(b.apply(empty_path, 11).is_err());
    assert_eq!(b.to_json(), json!({}));
}
