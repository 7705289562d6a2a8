//! End-to-end workflow throughput on one embedded node: a 10,000-job
//! workflow of no-op jobs, submitted and driven to completion through the
//! whole engine (runner, journal, queue, worker, job events). Two shapes:
//! fan-out/fan-in (1 root -> 9,998 middle jobs -> 1 sink) and a chain of
//! layers (100 layers of 100 jobs, each job waiting for two of the layer
//! before). Prints the wall time of each run.
//!
//! `cargo run --release -p ironforge-jobs --example bench_workflow [runs]`

use std::time::{Duration, Instant};

use ironforge_jobs::engine::{Engine, EngineConfig, Store};
use ironforge_jobs::workflow::{
    RunnerConfig, WorkflowJobSpec, WorkflowLimits, WorkflowSpec, WorkflowStatus,
};
use ironforge_jobs::{JobSpec, Registry, WorkerConfig};

const JOBS: usize = 10_000;

fn noop(key: String, deps: Vec<String>) -> WorkflowJobSpec {
    WorkflowJobSpec::new(key, JobSpec::new("noop", serde_json::Value::Null), deps)
}

fn fan_out_fan_in() -> WorkflowSpec {
    let middle: Vec<String> = (0..JOBS - 2).map(|i| format!("m{i}")).collect();
    let mut jobs = Vec::with_capacity(JOBS);
    jobs.push(noop("root".into(), vec![]));
    jobs.extend(middle.iter().map(|m| noop(m.clone(), vec!["root".into()])));
    jobs.push(noop("sink".into(), middle));
    WorkflowSpec {
        jobs,
        ..WorkflowSpec::default()
    }
}

fn layers() -> WorkflowSpec {
    let (depth, width) = (100, JOBS / 100);
    let key = |layer: usize, i: usize| format!("l{layer}-{i}");
    let mut jobs = Vec::with_capacity(JOBS);
    for layer in 0..depth {
        for i in 0..width {
            let deps = if layer == 0 {
                vec![]
            } else {
                vec![key(layer - 1, i), key(layer - 1, (i + 1) % width)]
            };
            jobs.push(noop(key(layer, i), deps));
        }
    }
    WorkflowSpec {
        jobs,
        ..WorkflowSpec::default()
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let runs: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(3);
    let dir = tempfile::tempdir()?;
    let mut handlers = Registry::new();
    handlers.register_fn("noop", |_| async { Ok(serde_json::Value::Null) });
    let engine = Engine::start(EngineConfig {
        worker: Some((
            handlers,
            WorkerConfig {
                concurrency: 64,
                fetch_batch: 512,
                idle_wait: Duration::from_millis(5),
                ..WorkerConfig::default()
            },
        )),
        workflows: RunnerConfig {
            // The sink of the fan-in waits for 9,998 jobs.
            limits: WorkflowLimits {
                max_dependencies_per_job: JOBS,
                ..WorkflowLimits::default()
            },
            ..RunnerConfig::default()
        },
        ..EngineConfig::new(Store::Embedded {
            dir: dir.path().into(),
        })
    })
    .await?;
    let runner = engine.workflows();
    for (shape, build) in [
        (
            "fan-out/fan-in 1 -> 9,998 -> 1",
            fan_out_fan_in as fn() -> WorkflowSpec,
        ),
        ("100 layers x 100 jobs", layers),
    ] {
        for run in 1..=runs {
            let spec = build();
            let started = Instant::now();
            let id = runner.submit(spec).await?;
            let submitted = started.elapsed();
            let summary = runner.wait(id, Duration::from_secs(120)).await?;
            let total = started.elapsed();
            if summary.state.status != WorkflowStatus::Completed {
                return Err(format!(
                    "{shape}: ended {:?} with {:?}",
                    summary.state.status, summary.state.counts
                )
                .into());
            }
            println!(
                "{shape}, run {run}: {} jobs, submit {:.1} ms, end to end {:.1} ms ({:.0} jobs/s)",
                summary.state.counts.completed,
                submitted.as_secs_f64() * 1e3,
                total.as_secs_f64() * 1e3,
                summary.state.counts.completed as f64 / total.as_secs_f64()
            );
        }
    }
    engine.shutdown(Duration::from_secs(5)).await;
    Ok(())
}
