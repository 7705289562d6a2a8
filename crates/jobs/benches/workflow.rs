//! Workflow core (pure state machine, no queue, no workers, no I/O).
//!
//! - `workflow/readiness_100k`: validation, graph build and initial ready
//!   set of a 100,000-job layered random DAG (1,000 jobs per layer, each job
//!   after the first layer depends on 3 random jobs of the layer above).
//! - `workflow/drive_10k` and `workflow/drive_100k`: build, then start and
//!   complete every ready job until the workflow completed, same DAG shape.
//!
//! Spec cloning is excluded from the timings (`iter_batched`). Run:
//! `cargo bench -p ironforge-jobs --bench workflow -- --warm-up-time 1 --measurement-time 3`

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use ironforge_jobs::workflow::{Workflow, WorkflowJobSpec, WorkflowSpec, WorkflowStatus};
use ironforge_jobs::JobSpec;
use rand::rngs::StdRng;
use rand::SeedableRng;

const EDGES_PER_JOB: usize = 3;
const LAYER_WIDTH: usize = 1_000;

/// `jobs` jobs in layers of `width`; each job of a later layer depends on
/// `EDGES_PER_JOB` distinct random jobs of the previous layer.
fn layered_dag(jobs: usize, width: usize, seed: u64) -> WorkflowSpec {
    let mut rng = StdRng::seed_from_u64(seed);
    let key = |i: usize| format!("job-{i}");
    let jobs = (0..jobs)
        .map(|i| {
            let layer = i / width;
            let depends_on: Vec<String> = if layer == 0 {
                Vec::new()
            } else {
                let above = (layer - 1) * width;
                rand::seq::index::sample(&mut rng, width, EDGES_PER_JOB)
                    .into_iter()
                    .map(|j| key(above + j))
                    .collect()
            };
            WorkflowJobSpec {
                key: key(i),
                spec: JobSpec::new("noop", serde_json::Value::Null),
                depends_on,
            }
        })
        .collect();
    WorkflowSpec {
        jobs,
        ..WorkflowSpec::default()
    }
}

fn drive_to_completion(spec: WorkflowSpec) -> Workflow {
    let (mut workflow, mut ready) = Workflow::new(spec, 0).unwrap();
    let mut at = 0;
    while let Some(key) = ready.pop() {
        at += 1;
        workflow.on_started(&key, at).unwrap();
        ready.extend(workflow.on_completed(&key, at).unwrap());
    }
    assert_eq!(workflow.status(), WorkflowStatus::Completed);
    workflow
}

fn bench_workflow(c: &mut Criterion) {
    let mut group = c.benchmark_group("workflow");
    group.sample_size(10);

    let big = layered_dag(100_000, LAYER_WIDTH, 1);
    group.throughput(Throughput::Elements(big.jobs.len() as u64));
    group.bench_function("readiness_100k", |b| {
        b.iter_batched(
            || big.clone(),
            |spec| {
                let (workflow, ready) = Workflow::new(spec, 0).unwrap();
                assert_eq!(ready.len(), LAYER_WIDTH);
                workflow
            },
            BatchSize::LargeInput,
        )
    });
    group.bench_function("drive_100k", |b| {
        b.iter_batched(|| big.clone(), drive_to_completion, BatchSize::LargeInput)
    });

    let small = layered_dag(10_000, LAYER_WIDTH, 2);
    group.throughput(Throughput::Elements(small.jobs.len() as u64));
    group.bench_function("drive_10k", |b| {
        b.iter_batched(|| small.clone(), drive_to_completion, BatchSize::LargeInput)
    });
    group.finish();
}

criterion_group!(benches, bench_workflow);
criterion_main!(benches);
