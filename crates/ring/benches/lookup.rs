//! Lookup cost per key: hashing the key to a partition and reading its owner
//! or preference list, for several cluster sizes.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion};
use ironforge_ring::{Ring, RingConfig};

fn lookup(c: &mut Criterion) {
    let keys: Vec<String> = (0..1024).map(|i| format!("job-{i}")).collect();
    let mut group = c.benchmark_group("ring_lookup");
    for members in [3usize, 10, 100] {
        let names: Vec<String> = (0..members).map(|i| format!("node-{i}")).collect();
        let ring = Ring::new(names, RingConfig::default()).expect("valid config");
        let mut next = 0usize;
        group.bench_with_input(
            BenchmarkId::new("owner_of_key", members),
            &ring,
            |b, ring| {
                b.iter(|| {
                    next = (next + 1) % keys.len();
                    black_box(ring.owner_of_key(black_box(keys[next].as_bytes())))
                })
            },
        );
        group.bench_with_input(
            BenchmarkId::new("preference_list_3", members),
            &ring,
            |b, ring| {
                b.iter(|| {
                    next = (next + 1) % keys.len();
                    let partition = ring.partition_for_key(black_box(keys[next].as_bytes()));
                    black_box(ring.preference_list(partition, 3))
                })
            },
        );
    }
    group.finish();

    let mut build = c.benchmark_group("ring_build");
    build.sample_size(10);
    for members in [10usize, 100] {
        let names: Vec<String> = (0..members).map(|i| format!("node-{i}")).collect();
        build.bench_with_input(BenchmarkId::new("new", members), &names, |b, names| {
            b.iter(|| Ring::new(names.iter().cloned(), RingConfig::default()))
        });
    }
    build.finish();
}

criterion_group!(benches, lookup);
criterion_main!(benches);
