//! Issue point 9: applying an operation never copies the document. Counted
//! with a global allocator wrapper (this file is its own test binary): the
//! allocations per operation must not grow with the document size.

use ironforge_crdt::{path, Config, Replica, ReplicaId};
use serde_json::json;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn job(i: usize) -> String {
    format!("{i:08x}-5f1c-4e8e-9a57-3c1d2e4f6a7b")
}

/// Allocations per local set and per remote apply on a document of `keys` jobs.
fn allocations_per_op(keys: usize) -> (f64, f64) {
    let config = Config {
        max_log_ops: 1 << 20,
        ..Config::default()
    };
    let mut a = Replica::with_config(ReplicaId(1), config.clone());
    let mut b = Replica::with_config(ReplicaId(2), config);
    for i in 0..keys {
        let op = a
            .set(&path!["jobs", job(i), "status"], json!(0), i as u64)
            .unwrap();
        b.apply(op, i as u64).unwrap();
    }
    let paths: Vec<_> = (0..1_000)
        .map(|i| path!["jobs", job(i * 7 % keys), "status"])
        .collect();
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    let ops: Vec<_> = paths
        .iter()
        .enumerate()
        .map(|(i, p)| a.set(p, json!(i), 1_000_000 + i as u64).unwrap())
        .collect();
    let local = ALLOCATIONS.load(Ordering::Relaxed) - before;
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    for op in ops {
        b.apply(Arc::clone(&op), 2_000_000).unwrap();
    }
    let remote = ALLOCATIONS.load(Ordering::Relaxed) - before;
    assert_eq!(a.to_json(), b.to_json());
    (local as f64 / 1_000.0, remote as f64 / 1_000.0)
}

#[test]
fn operations_allocate_a_constant_amount_whatever_the_document_size() {
    let small = allocations_per_op(1_000);
    let large = allocations_per_op(20_000);
    println!("allocations per (local set, remote apply): 1k keys {small:?}, 20k keys {large:?}");
    // A copy of the document would cost thousands of allocations per op.
    assert!(small.0 < 8.0 && small.1 < 8.0, "small document: {small:?}");
    assert!(large.0 < 8.0 && large.1 < 8.0, "large document: {large:?}");
    assert!((large.0 - small.0).abs() < 1.0 && (large.1 - small.1).abs() < 1.0);
}
