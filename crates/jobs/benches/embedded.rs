//! Embedded backend throughput and latency.
//!
//! - criterion `enqueue/batch_1000`: durable batch submission.
//! - then one-shot runs (printed, not criterion, because each drains a
//!   queue once): enqueue of N jobs in batches of 1000 and by 100
//!   concurrent single submitters, draining a backlog of N no-op jobs,
//!   end-to-end N jobs submitted while workers run, and pickup latency.
//!
//! N = `JOBS_BENCH_N` (default 200,000). Run:
//! `cargo bench -p ironforge-jobs --bench embedded -- --warm-up-time 1 --measurement-time 3`

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use criterion::{criterion_group, Criterion, Throughput};
use ironforge_jobs::{
    Client, EmbeddedBackend, EmbeddedConfig, JobSpec, Observers, QueueBackend, Registry, Worker,
    WorkerConfig,
};
use parking_lot::Mutex;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn fresh() -> (tempfile::TempDir, Arc<dyn QueueBackend>, Client) {
    let dir = tempfile::tempdir().unwrap();
    let backend: Arc<dyn QueueBackend> = Arc::new(
        EmbeddedBackend::open(dir.path().join("bench.redb"), EmbeddedConfig::default()).unwrap(),
    );
    let client = Client::new(backend.clone());
    (dir, backend, client)
}

fn noop_specs(n: usize) -> Vec<JobSpec> {
    (0..n)
        .map(|i| JobSpec::new("noop", serde_json::json!({ "i": i })))
        .collect()
}

fn worker_config() -> WorkerConfig {
    WorkerConfig {
        concurrency: 256,
        fetch_batch: 512,
        ack_batch: 2048,
        idle_wait: Duration::from_millis(100),
        ..WorkerConfig::default()
    }
}

fn noop_registry() -> Registry {
    let mut registry = Registry::new();
    registry.register_fn("noop", |_ctx| async { Ok(serde_json::Value::Null) });
    registry
}

async fn wait_completed(client: &Client, n: u64) {
    while client.stats().await.unwrap().completed < n {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn bench_enqueue(c: &mut Criterion) {
    let rt = runtime();
    let (_dir, _backend, client) = fresh();
    let mut group = c.benchmark_group("enqueue");
    group.throughput(Throughput::Elements(1000));
    group.bench_function("batch_1000", |b| {
        b.iter(|| rt.block_on(client.submit_batch(noop_specs(1000))).unwrap())
    });
    group.finish();
}

criterion_group!(benches, bench_enqueue);

fn rate(n: usize, elapsed: Duration) -> String {
    format!(
        "{n} jobs in {:.3} s = {:.0} jobs/s",
        elapsed.as_secs_f64(),
        n as f64 / elapsed.as_secs_f64()
    )
}

fn micros_since_epoch() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

fn one_shot(n: usize) {
    let rt = runtime();
    rt.block_on(async {
        // 1. Enqueue in batches of 1000.
        let (_dir, backend, client) = fresh();
        let start = Instant::now();
        for chunk in 0..n.div_ceil(1000) {
            let size = 1000.min(n - chunk * 1000);
            client.submit_batch(noop_specs(size)).await.unwrap();
        }
        println!("enqueue, batches of 1000:        {}", rate(n, start.elapsed()));

        // 2. Drain that backlog with no-op handlers.
        let start = Instant::now();
        let worker = Worker::start(
            backend.clone(),
            noop_registry(),
            worker_config(),
            Observers::default(),
        );
        wait_completed(&client, n as u64).await;
        println!("drain backlog, no-op handlers:   {}", rate(n, start.elapsed()));
        worker.shutdown(Duration::from_secs(5)).await;
        backend.close().await.unwrap();

        // 3. Single submissions from 100 concurrent clients (group commit).
        let (_dir, backend, client) = fresh();
        let singles = (n / 10).max(100);
        let start = Instant::now();
        let mut tasks = Vec::new();
        for t in 0..100 {
            let client = client.clone();
            tasks.push(tokio::spawn(async move {
                for i in (t..singles).step_by(100) {
                    client
                        .submit(JobSpec::new("noop", serde_json::json!({ "i": i })))
                        .await
                        .unwrap();
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        println!("enqueue, 100 concurrent singles: {}", rate(singles, start.elapsed()));
        backend.close().await.unwrap();

        // 4. End to end: 4 producers submit batches of 1000 while a worker runs.
        let (_dir, backend, client) = fresh();
        let worker = Worker::start(
            backend.clone(),
            noop_registry(),
            worker_config(),
            Observers::default(),
        );
        let start = Instant::now();
        let mut producers = Vec::new();
        for p in 0..4 {
            let client = client.clone();
            producers.push(tokio::spawn(async move {
                let mut chunk = p;
                while chunk * 1000 < n {
                    let size = 1000.min(n - chunk * 1000);
                    client.submit_batch(noop_specs(size)).await.unwrap();
                    chunk += 4;
                }
            }));
        }
        for p in producers {
            p.await.unwrap();
        }
        wait_completed(&client, n as u64).await;
        println!("end to end, submit + process:    {}", rate(n, start.elapsed()));
        worker.shutdown(Duration::from_secs(5)).await;
        backend.close().await.unwrap();

        // 5. Pickup latency: one job at a time into an idle worker.
        let (_dir, backend, client) = fresh();
        let pickups = Arc::new(Mutex::new(Vec::new()));
        let record = pickups.clone();
        let mut registry = Registry::new();
        registry.register_fn("probe", move |ctx| {
            let sent = ctx.payload()["sent_us"].as_u64().unwrap_or(0);
            record.lock().push(micros_since_epoch().saturating_sub(sent));
            async { Ok(serde_json::Value::Null) }
        });
        let worker = Worker::start(
            backend.clone(),
            registry,
            worker_config(),
            Observers::default(),
        );
        let probes = 2000;
        for _ in 0..probes {
            let spec = JobSpec::new("probe", serde_json::json!({ "sent_us": micros_since_epoch() }));
            client.submit(spec).await.unwrap();
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        wait_completed(&client, probes).await;
        let mut lat = pickups.lock().clone();
        lat.sort_unstable();
        let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)] as f64 / 1000.0;
        println!(
            "pickup latency (submit call -> handler start, includes the fsync), {} jobs: p50 {:.2} ms, p99 {:.2} ms",
            lat.len(),
            pct(0.50),
            pct(0.99)
        );
        worker.shutdown(Duration::from_secs(5)).await;
        backend.close().await.unwrap();
    });
}

/// Peak resident set of this process (bench + store + workers), from /proc.
fn peak_rss() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .map(|l| l.trim_start_matches("VmHWM:").trim().to_string())
        })
        .unwrap_or_else(|| "unknown".to_string())
}

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    let n = std::env::var("JOBS_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    one_shot(n);
    println!("peak RSS of the whole bench process: {}", peak_rss());
}
