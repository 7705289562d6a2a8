//! Helpers shared by the integration tests: replicas exchanging state.

#![allow(dead_code)]

use ironforge_crdt::Replica;

/// Both directions of one anti-entropy round (each until the delta is empty).
pub fn exchange(a: &mut Replica, b: &mut Replica, now_ms: u64) {
    pull(b, a, now_ms);
    pull(a, b, now_ms);
}

/// `to` asks `from` for what it lacks until nothing is left.
pub fn pull(to: &mut Replica, from: &Replica, now_ms: u64) {
    loop {
        let message = from.ops_since(to.version());
        let done = message.is_empty();
        to.apply_sync(message, now_ms).unwrap();
        if done {
            return;
        }
    }
}

/// Exchanges until quiet and checks the documents are equal.
pub fn converge(a: &mut Replica, b: &mut Replica, now_ms: u64) {
    exchange(a, b, now_ms);
    exchange(a, b, now_ms);
    assert_eq!(a.to_json(), b.to_json(), "replicas diverged");
    assert_eq!(a.version(), b.version());
}
