//! One test per conflict rule of the crate docs (issue points 1–3): every
//! scenario is played in both delivery orders and must end identically.

mod common;

use common::converge;
use ironforge_crdt::{path, Op, Replica, ReplicaId};
use serde_json::{json, Value};
use std::sync::Arc;

fn pair() -> (Replica, Replica) {
    (Replica::new(ReplicaId(1)), Replica::new(ReplicaId(2)))
}

/// Applies `first` then `second` to a fresh observer, and the reverse to
/// another; both must agree. Returns the common document.
fn both_orders(prefix: &[Arc<Op>], first: &[Arc<Op>], second: &[Arc<Op>]) -> Value {
    let mut x = Replica::new(ReplicaId(100));
    let mut y = Replica::new(ReplicaId(101));
    for op in prefix {
        x.apply(Arc::clone(op), 0).unwrap();
        y.apply(Arc::clone(op), 0).unwrap();
    }
    for op in first.iter().chain(second) {
        x.apply(Arc::clone(op), 0).unwrap();
    }
    for op in second.iter().chain(first) {
        y.apply(Arc::clone(op), 0).unwrap();
    }
    assert_eq!(x.stats().pending, 0);
    assert_eq!(y.stats().pending, 0);
    assert_eq!(
        x.to_json(),
        y.to_json(),
        "delivery order changed the outcome"
    );
    x.to_json()
}

#[test]
fn paths_never_collide_through_joining() {
    let mut r = Replica::new(ReplicaId(1));
    r.set(&path!["a.b"], json!(1), 1).unwrap();
    r.set(&path!["a", "b"], json!(2), 2).unwrap();
    r.set(&path!["a/b"], json!(3), 3).unwrap();
    assert_eq!(r.get(&path!["a.b"]), Some(json!(1)));
    assert_eq!(r.get(&path!["a", "b"]), Some(json!(2)));
    assert_eq!(r.to_json(), json!({"a.b": 1, "a": {"b": 2}, "a/b": 3}));
}

#[test]
fn set_and_delete_deep_paths() {
    let mut r = Replica::new(ReplicaId(1));
    r.set(&path!["jobs", "u1", "status"], json!("queued"), 1)
        .unwrap();
    r.set(&path!["jobs", "u1", "attempts"], json!(0), 2)
        .unwrap();
    assert_eq!(
        r.get(&path!["jobs", "u1"]),
        Some(json!({"status": "queued", "attempts": 0}))
    );
    r.delete(&path!["jobs", "u1", "status"], 3).unwrap();
    assert_eq!(r.get(&path!["jobs", "u1"]), Some(json!({"attempts": 0})));
    assert_eq!(
        r.delete(&path!["jobs", "nope"], 4).unwrap_err(),
        ironforge_crdt::CrdtError::NotFound
    );
    assert_eq!(
        r.set(&[], json!(1), 5).unwrap_err(),
        ironforge_crdt::CrdtError::EmptyPath
    );
}

#[test]
fn concurrent_sets_same_path_last_writer_wins() {
    let (mut a, mut b) = pair();
    let older = a.set(&path!["x"], json!("a"), 1_000).unwrap();
    let newer = b.set(&path!["x"], json!("b"), 2_000).unwrap();
    assert_eq!(both_orders(&[], &[older], &[newer]), json!({"x": "b"}));
}

#[test]
fn equal_physical_time_ties_break_on_replica_id() {
    let (mut a, mut b) = pair();
    let from_1 = a.set(&path!["x"], json!("one"), 1_000).unwrap();
    let from_2 = b.set(&path!["x"], json!("two"), 1_000).unwrap();
    assert_eq!(both_orders(&[], &[from_1], &[from_2]), json!({"x": "two"}));
}

#[test]
fn a_delete_hides_what_it_causally_saw() {
    let (mut a, mut b) = pair();
    a.set(&path!["jobs", "j1", "status"], json!("queued"), 1)
        .unwrap();
    a.set(&path!["jobs", "j1", "owner"], json!("n1"), 2)
        .unwrap();
    converge(&mut a, &mut b, 3);
    // b saw both fields; its clock may even be behind a's wall clock.
    b.delete(&path!["jobs", "j1"], 0).unwrap();
    converge(&mut a, &mut b, 4);
    assert_eq!(a.get(&path!["jobs", "j1"]), None);
    assert_eq!(a.to_json(), json!({}));
}

#[test]
fn delete_parent_vs_newer_concurrent_child_set_keeps_the_child() {
    let (mut a, mut b) = pair();
    let base = a.set(&path!["j"], json!({"x": 1, "y": 1}), 1_000).unwrap();
    b.apply(Arc::clone(&base), 1_000).unwrap();
    let delete = a.delete(&path!["j"], 2_000).unwrap();
    let child = b.set(&path!["j", "y"], json!(2), 3_000).unwrap();
    assert_eq!(
        both_orders(&[base], &[delete], &[child]),
        json!({"j": {"y": 2}})
    );
}

#[test]
fn delete_parent_vs_older_concurrent_child_set_removes_the_child() {
    let (mut a, mut b) = pair();
    let base = a.set(&path!["j"], json!({"x": 1}), 1_000).unwrap();
    b.apply(Arc::clone(&base), 1_000).unwrap();
    let delete = a.delete(&path!["j"], 3_000).unwrap();
    let child = b.set(&path!["j", "y"], json!(2), 2_000).unwrap();
    assert_eq!(both_orders(&[base], &[delete], &[child]), json!({}));
}

#[test]
fn set_parent_vs_older_child_set_replaces_the_subtree() {
    let (mut a, mut b) = pair();
    let base = a.set(&path!["j", "old"], json!(0), 1_000).unwrap();
    b.apply(Arc::clone(&base), 1_000).unwrap();
    let parent = a.set(&path!["j"], json!({"a": 1}), 3_000).unwrap();
    let child = b.set(&path!["j", "b"], json!(2), 2_000).unwrap();
    assert_eq!(
        both_orders(&[base], &[parent], &[child]),
        json!({"j": {"a": 1}})
    );
}

#[test]
fn set_parent_vs_newer_child_set_merges_the_child_in() {
    let (mut a, mut b) = pair();
    let base = a.set(&path!["j", "old"], json!(0), 1_000).unwrap();
    b.apply(Arc::clone(&base), 1_000).unwrap();
    let parent = a
        .set(&path!["j"], json!({"a": 1, "b": {"deep": true}}), 2_000)
        .unwrap();
    let child = b.set(&path!["j", "b"], json!(2), 3_000).unwrap();
    assert_eq!(
        both_orders(&[base], &[parent], &[child]),
        json!({"j": {"a": 1, "b": 2}})
    );
}

#[test]
fn scalar_parent_vs_newer_child_becomes_an_object() {
    let (mut a, mut b) = pair();
    let parent = a.set(&path!["j"], json!(5), 2_000).unwrap();
    let child = b.set(&path!["j", "b"], json!(2), 3_000).unwrap();
    assert_eq!(
        both_orders(&[], &[parent], &[child]),
        json!({"j": {"b": 2}})
    );
}

#[test]
fn old_delete_arriving_after_a_newer_set_changes_nothing() {
    let (mut a, mut b) = pair();
    let base = a.set(&path!["x"], json!("v0"), 1_000).unwrap();
    b.apply(Arc::clone(&base), 1_000).unwrap();
    let old_delete = a.delete(&path!["x"], 2_000).unwrap();
    let newer_set = b.set(&path!["x"], json!("v1"), 5_000).unwrap();
    // The late delete, delivered last, and delivered twice.
    b.apply(Arc::clone(&old_delete), 6_000).unwrap();
    assert_eq!(
        b.apply(Arc::clone(&old_delete), 6_001).unwrap(),
        ironforge_crdt::Delivery::Duplicate
    );
    assert_eq!(b.get(&path!["x"]), Some(json!("v1")));
    assert_eq!(
        both_orders(&[base], &[newer_set], &[old_delete]),
        json!({"x": "v1"})
    );
}

#[test]
fn newer_delete_beats_older_concurrent_set_of_same_path() {
    let (mut a, mut b) = pair();
    let base = a.set(&path!["x"], json!(0), 1_000).unwrap();
    b.apply(Arc::clone(&base), 1_000).unwrap();
    let set = a.set(&path!["x"], json!(1), 2_000).unwrap();
    let delete = b.delete(&path!["x"], 3_000).unwrap();
    assert_eq!(both_orders(&[base], &[set], &[delete]), json!({}));
}

#[test]
fn list_remove_never_loses_a_concurrent_insert_next_to_it() {
    let (mut a, mut b) = pair();
    let base = a.set(&path!["l"], json!(["a", "b", "c"]), 1_000).unwrap();
    b.apply(Arc::clone(&base), 1_000).unwrap();
    let remove_b = a.list_remove(&path!["l"], 1, 2_000).unwrap();
    // b inserts right after "b" and right before it.
    let after_b = b.list_insert(&path!["l"], 2, json!("x"), 2_000).unwrap();
    let before_b = b.list_insert(&path!["l"], 1, json!("w"), 2_001).unwrap();
    assert_eq!(
        both_orders(&[base], &[remove_b], &[after_b, before_b]),
        json!({"l": ["a", "w", "x", "c"]})
    );
}

#[test]
fn concurrent_inserts_at_the_same_place_keep_both_in_one_order() {
    let (mut a, mut b) = pair();
    let base = a.set(&path!["l"], json!([1, 4]), 1_000).unwrap();
    b.apply(Arc::clone(&base), 1_000).unwrap();
    let from_a = a.list_insert(&path!["l"], 1, json!(2), 2_000).unwrap();
    let from_b = b.list_insert(&path!["l"], 1, json!(3), 2_500).unwrap();
    // Newest first at the same place.
    assert_eq!(
        both_orders(&[base], &[from_a], &[from_b]),
        json!({"l": [1, 3, 2, 4]})
    );
}

#[test]
fn concurrent_removes_of_one_element_remove_it_once() {
    let (mut a, mut b) = pair();
    let base = a.set(&path!["l"], json!([1, 2, 3]), 1_000).unwrap();
    b.apply(Arc::clone(&base), 1_000).unwrap();
    let from_a = a.list_remove(&path!["l"], 1, 2_000).unwrap();
    let from_b = b.list_remove(&path!["l"], 1, 2_000).unwrap();
    assert_eq!(
        both_orders(&[base], &[from_a], &[from_b]),
        json!({"l": [1, 3]})
    );
}

#[test]
fn list_insert_survives_a_concurrent_reset_of_its_neighbour_list() {
    // b inserts after an element that a concurrently wipes by re-setting the
    // list: the anchor keeps the insert placed, the newer insert shows.
    let (mut a, mut b) = pair();
    let base = a.set(&path!["l"], json!(["a"]), 1_000).unwrap();
    b.apply(Arc::clone(&base), 1_000).unwrap();
    let reset = a.set(&path!["l"], json!(["z"]), 2_000).unwrap();
    let insert = b.list_insert(&path!["l"], 1, json!("b"), 3_000).unwrap();
    assert_eq!(
        both_orders(&[base], &[reset], &[insert]),
        json!({"l": ["z", "b"]})
    );
}

#[test]
fn object_vs_list_at_one_node_is_decided_the_same_everywhere() {
    let (mut a, mut b) = pair();
    let list = a.set(&path!["n"], json!([1]), 1_000).unwrap();
    let object_child = b.set(&path!["n", "k"], json!("v"), 2_000).unwrap();
    // The node's own latest set is a list: the list shows.
    assert_eq!(
        both_orders(&[], &[list], &[object_child]),
        json!({"n": [1]})
    );
}

#[test]
fn list_elements_are_addressable_and_editable() {
    let mut r = Replica::new(ReplicaId(1));
    r.set(&path!["l"], json!([{"name": "a"}, {"name": "b"}]), 1)
        .unwrap();
    r.set(&path!["l", 1, "name"], json!("B"), 2).unwrap();
    r.list_insert(&path!["l"], 2, json!({"name": "c"}), 3)
        .unwrap();
    assert_eq!(r.get(&path!["l", 1, "name"]), Some(json!("B")));
    assert_eq!(
        r.get(&path!["l"]).unwrap().as_array().map(Vec::len),
        Some(3)
    );
    assert!(matches!(
        r.list_insert(&path!["l"], 9, json!(0), 4),
        Err(ironforge_crdt::CrdtError::IndexOutOfBounds { index: 9, len: 3 })
    ));
    assert!(matches!(
        r.list_insert(&path!["l", 0], 0, json!(0), 4),
        Err(ironforge_crdt::CrdtError::NotAList { .. })
    ));
    assert!(matches!(
        r.set(&path!["l", "key"], json!(0), 4),
        Err(ironforge_crdt::CrdtError::NotAnObject { depth: 1 })
    ));
}
