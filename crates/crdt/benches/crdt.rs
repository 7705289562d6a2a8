//! Throughput and memory of the JSON-CRDT (issue point 11): local sets on a
//! 10,000-key document, remote apply, sync of 100,000 operations between two
//! replicas, and bytes per key (counted by a global allocator wrapper).
//! Figures and the command that produced them: docs/perf/crdt.md.

use criterion::{criterion_group, BatchSize, Criterion, Throughput};
use ironforge_crdt::{path, Config, Op, Replica, ReplicaId, Seg};
use serde_json::json;
use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::Arc;

/// Counts live heap bytes so the bench can report bytes per key.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const KEYS: usize = 10_000;

fn job_paths() -> Vec<Vec<Seg>> {
    (0..KEYS)
        .map(|i| {
            path![
                "jobs",
                format!("{i:08x}-5f1c-4e8e-9a57-3c1d2e4f6a7b"),
                "status"
            ]
            .to_vec()
        })
        .collect()
}

fn populated(id: u64, paths: &[Vec<Seg>]) -> Replica {
    let mut replica = Replica::new(ReplicaId(id));
    for (i, p) in paths.iter().enumerate() {
        replica.set(p, json!(i), i as u64).unwrap();
    }
    replica
}

fn local_set(c: &mut Criterion) {
    let paths = job_paths();
    let mut group = c.benchmark_group("local_set");
    group.throughput(Throughput::Elements(KEYS as u64));
    group.bench_function("deep_path_10k_key_doc", |b| {
        let mut replica = populated(1, &paths);
        let mut now = 1_000_000u64;
        b.iter(|| {
            for (i, p) in paths.iter().enumerate() {
                now += 1;
                black_box(replica.set(p, json!(i), now).unwrap());
            }
        });
    });
    let flat: Vec<Vec<Seg>> = (0..KEYS).map(|i| path![format!("k{i}")].to_vec()).collect();
    group.bench_function("deep_path_10k_key_doc_no_replay_base", |b| {
        let lean = Config {
            keep_replay_base: false,
            ..Config::default()
        };
        let mut replica = Replica::with_config(ReplicaId(1), lean);
        for (i, p) in paths.iter().enumerate() {
            replica.set(p, json!(i), i as u64).unwrap();
        }
        let mut now = 1_000_000u64;
        b.iter(|| {
            for (i, p) in paths.iter().enumerate() {
                now += 1;
                black_box(replica.set(p, json!(i), now).unwrap());
            }
        });
    });
    group.bench_function("flat_key_10k_key_doc", |b| {
        let mut replica = populated(1, &flat);
        let mut now = 1_000_000u64;
        b.iter(|| {
            for (i, p) in flat.iter().enumerate() {
                now += 1;
                black_box(replica.set(p, json!(i), now).unwrap());
            }
        });
    });
    group.bench_function("get_deep_path_10k_key_doc", |b| {
        let replica = populated(1, &paths);
        b.iter(|| {
            for p in &paths {
                black_box(replica.get(p));
            }
        });
    });
    group.finish();
}

/// Cost per set should not grow with the document: same work on 1,000 and
/// 100,000 keys (only cache effects differ).
fn local_set_scaling(c: &mut Criterion) {
    let mut group = c.benchmark_group("local_set_scaling");
    group.throughput(Throughput::Elements(KEYS as u64));
    for keys in [1_000usize, 10_000, 100_000] {
        let paths: Vec<Vec<Seg>> = (0..keys)
            .map(|i| {
                path![
                    "jobs",
                    format!("{i:08x}-5f1c-4e8e-9a57-3c1d2e4f6a7b"),
                    "status"
                ]
                .to_vec()
            })
            .collect();
        group.bench_function(format!("deep_path_{keys}_key_doc"), |b| {
            let mut replica = populated(1, &paths);
            let mut now = 1_000_000u64;
            b.iter(|| {
                for i in 0..KEYS {
                    now += 1;
                    let p = &paths[i * 7_919 % keys];
                    black_box(replica.set(p, json!(i), now).unwrap());
                }
            });
        });
    }
    group.finish();
}

fn remote_apply(c: &mut Criterion) {
    let paths = job_paths();
    let mut author = Replica::new(ReplicaId(1));
    let ops: Vec<Arc<Op>> = paths
        .iter()
        .enumerate()
        .map(|(i, p)| author.set(p, json!(i), i as u64).unwrap())
        .collect();
    let mut group = c.benchmark_group("remote_apply");
    group.throughput(Throughput::Elements(ops.len() as u64));
    group.bench_function("10k_ops_in_order", |b| {
        b.iter_batched(
            || (Replica::new(ReplicaId(2)), ops.clone()),
            |(mut replica, ops)| {
                for op in ops {
                    replica.apply(op, 0).unwrap();
                }
                replica
            },
            BatchSize::LargeInput,
        );
    });
    group.bench_function("10k_ops_reversed_via_pending", |b| {
        let config = Config {
            max_pending: KEYS,
            ..Config::default()
        };
        b.iter_batched(
            || {
                (
                    Replica::with_config(ReplicaId(2), config.clone()),
                    ops.clone(),
                )
            },
            |(mut replica, ops)| {
                for op in ops.into_iter().rev() {
                    replica.apply(op, 0).unwrap();
                }
                replica
            },
            BatchSize::LargeInput,
        );
    });
    group.finish();
}

fn sync(c: &mut Criterion) {
    const OPS: usize = 100_000;
    let paths = job_paths();
    let mut author = Replica::new(ReplicaId(1));
    for i in 0..OPS {
        author.set(&paths[i % KEYS], json!(i), i as u64).unwrap();
    }
    let mut group = c.benchmark_group("sync");
    group.sample_size(10);
    group.throughput(Throughput::Elements(OPS as u64));
    // Deltas come in chunks of `Config::max_sync_ops` (10,000): pull until empty.
    group.bench_function("100k_ops_delta_in_memory", |b| {
        b.iter_batched(
            || Replica::new(ReplicaId(2)),
            |mut replica| loop {
                let message = author.ops_since(replica.version());
                if message.is_empty() {
                    break replica;
                }
                replica.apply_sync(message, 0).unwrap();
            },
            BatchSize::LargeInput,
        );
    });
    group.bench_function("100k_ops_delta_through_json", |b| {
        b.iter_batched(
            || Replica::new(ReplicaId(2)),
            |mut replica| loop {
                let bytes = serde_json::to_vec(&author.ops_since(replica.version())).unwrap();
                let message: ironforge_crdt::SyncMessage = serde_json::from_slice(&bytes).unwrap();
                if message.is_empty() {
                    break replica;
                }
                replica.apply_sync(message, 0).unwrap();
            },
            BatchSize::LargeInput,
        );
    });
    let mut compacted = Replica::new(ReplicaId(3));
    compacted
        .apply_sync(author.ops_since(compacted.version()), 0)
        .unwrap();
    compacted.compact(0);
    group.bench_function("100k_ops_as_snapshot_through_json", |b| {
        b.iter_batched(
            || Replica::new(ReplicaId(2)),
            |mut replica| {
                let bytes = serde_json::to_vec(&compacted.ops_since(replica.version())).unwrap();
                replica
                    .apply_sync(serde_json::from_slice(&bytes).unwrap(), 0)
                    .unwrap();
                replica
            },
            BatchSize::LargeInput,
        );
    });
    group.finish();
}

/// Heap bytes of a value built by `make`, as counted by the allocator.
fn heap_of<T>(make: impl FnOnce() -> T) -> (T, isize) {
    let before = LIVE.load(Ordering::Relaxed);
    let value = make();
    (value, LIVE.load(Ordering::Relaxed) - before)
}

/// Heap bytes per key of a 10,000-key document, with and without its log.
fn bytes_per_key() {
    let paths = job_paths();
    let per = |bytes: isize| bytes as f64 / KEYS as f64;
    let (mut replica, with_log) = heap_of(|| populated(1, &paths));
    let (_, compacting) = heap_of(|| replica.compact(0));
    let lean = Config {
        keep_replay_base: false,
        ..Config::default()
    };
    let (mut doc_only, _) = heap_of(|| Replica::with_config(ReplicaId(2), lean));
    let (_, doc_and_log) = heap_of(|| {
        for (i, p) in paths.iter().enumerate() {
            doc_only.set(p, json!(i), i as u64).unwrap();
        }
    });
    let (_, log_freed) = heap_of(|| doc_only.compact(0));
    let snapshot = serde_json::to_vec(&replica.snapshot()).unwrap();
    let plain = serde_json::to_vec(&replica.to_json()).unwrap();
    println!(
        "bytes_per_key ({KEYS} keys at [\"jobs\", <36-char id>, \"status\"], integer values):"
    );
    println!(
        "  document alone (heap):                {:.0} B/key",
        per(doc_and_log + log_freed)
    );
    println!(
        "  document + log of {KEYS} ops (heap):   {:.0} B/key",
        per(with_log)
    );
    println!(
        "  document + replay base after compaction (heap): {:.0} B/key",
        per(with_log + compacting)
    );
    println!(
        "  snapshot as JSON:                      {:.0} B/key",
        per(snapshot.len() as isize)
    );
    println!(
        "  plain JSON of the document:            {:.0} B/key",
        per(plain.len() as isize)
    );
}

fn thread_cpu_seconds() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes the timespec we pass.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

/// One million local sets on the 10,000-key document, timed by wall clock
/// and by this thread's CPU time (the machine is shared: CPU time says what
/// the code costs, wall time what this run got).
fn million_local_sets() {
    let paths = job_paths();
    let mut replica = populated(1, &paths);
    let started = std::time::Instant::now();
    let cpu_started = thread_cpu_seconds();
    let mut now = 1_000_000u64;
    for round in 0..100usize {
        for (i, p) in paths.iter().enumerate() {
            now += 1;
            black_box(replica.set(p, json!(round + i), now).unwrap());
        }
    }
    let wall = started.elapsed().as_secs_f64();
    let cpu = thread_cpu_seconds() - cpu_started;
    println!("million_local_sets (deep path, 10,000-key document, default config, incl. auto-compaction):");
    println!(
        "  wall: {wall:.3} s = {:.0} ops/s; thread CPU: {cpu:.3} s = {:.0} ops/s",
        1e6 / wall,
        1e6 / cpu
    );
}

criterion_group!(benches, local_set, local_set_scaling, remote_apply, sync);

fn main() {
    bytes_per_key();
    million_local_sets();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
