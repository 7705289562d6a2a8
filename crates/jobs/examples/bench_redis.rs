//! Redis Streams backend throughput and latency, with the crate's Worker.
//!
//! Starts its own `redis-server` (ephemeral port, append-only on with the
//! default `appendfsync everysec`) unless `REDIS_URL` is set, then:
//!
//! 1. enqueue: N no-op jobs in batches of 1,000 (4 concurrent submitters);
//! 2. drain: a Worker processes that backlog;
//! 3. end to end: N jobs submitted while a Worker runs, from the first
//!    submission to the last completion; pickup latency = handler start
//!    minus submission time (ms resolution);
//! 4. pickup latency without a backlog: 2,000 single submissions 1 ms
//!    apart, handler start minus submission time (µs resolution).
//!
//! Prints jobs/s, latency percentiles, the process's peak RSS (VmHWM) and,
//! per phase, CPU per job of the Redis server (user and system, `INFO cpu`)
//! and of this process (`getrusage`): less sensitive than jobs/s to other
//! load on a shared machine, and it says which side a change helped.
//! N = `JOBS_BENCH_N` (default 200,000); the Worker's batch sizes can be
//! changed with `JOBS_BENCH_CONCURRENCY`, `JOBS_BENCH_FETCH` and
//! `JOBS_BENCH_ACK`. Run:
//! `cargo run --release -p ironforge-jobs --example bench_redis`

use ironforge_jobs::testkit::RedisServer;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ironforge_jobs::clock::now_ms;
use ironforge_jobs::{
    Client, JobSpec, Observers, QueueBackend, RedisBackend, RedisConfig, Registry, Worker,
    WorkerConfig,
};
use parking_lot::Mutex;

/// The allocator of the `ironforge` binary, so the figures are what ships.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const BATCH: usize = 1_000;
const SUBMITTERS: usize = 4;

/// A setting from the environment (for trying other Worker batch sizes),
/// else the default.
fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Worker settings: concurrency 1,024, fetch batch 512, ack batch 2,048,
/// unless `JOBS_BENCH_CONCURRENCY`, `JOBS_BENCH_FETCH` or `JOBS_BENCH_ACK`
/// say otherwise.
fn worker_config() -> WorkerConfig {
    WorkerConfig {
        consumer: "bench".to_string(),
        concurrency: env_or("JOBS_BENCH_CONCURRENCY", 1024),
        fetch_batch: env_or("JOBS_BENCH_FETCH", 512),
        ack_batch: env_or("JOBS_BENCH_ACK", 2048),
        idle_wait: Duration::from_millis(5),
        ..WorkerConfig::default()
    }
}

fn specs(n: usize) -> Vec<JobSpec> {
    (0..n)
        .map(|i| JobSpec::new("noop", serde_json::json!({ "i": i })))
        .collect()
}

async fn submit_all(client: &Client, n: usize) {
    let per = n.div_ceil(SUBMITTERS);
    let mut tasks = Vec::new();
    for s in 0..SUBMITTERS {
        let client = client.clone();
        let count = per.min(n.saturating_sub(s * per));
        tasks.push(tokio::spawn(async move {
            let mut left = count;
            while left > 0 {
                let take = left.min(BATCH);
                client.submit_batch(specs(take)).await.expect("submit");
                left -= take;
            }
        }));
    }
    for t in tasks {
        t.await.expect("submitter");
    }
}

async fn wait_completed(backend: &Arc<dyn QueueBackend>, n: u64) {
    loop {
        if backend.stats().await.expect("stats").completed >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// CPU seconds used so far: the Redis server's (user, system; `INFO cpu`,
/// 0 if unreadable) and this process's (user + system, `getrusage`).
#[derive(Clone, Copy)]
struct Cpu {
    redis_user: f64,
    redis_sys: f64,
    process: f64,
}

impl Cpu {
    async fn now(url: &str) -> Cpu {
        let mut cpu = Cpu {
            redis_user: 0.0,
            redis_sys: 0.0,
            process: process_cpu(),
        };
        let Ok(client) = redis::Client::open(url) else {
            return cpu;
        };
        let Ok(mut conn) = client.get_multiplexed_tokio_connection().await else {
            return cpu;
        };
        let info: String = redis::cmd("INFO")
            .arg("cpu")
            .query_async(&mut conn)
            .await
            .unwrap_or_default();
        let field = |name: &str| {
            info.lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0.0)
        };
        cpu.redis_user = field("used_cpu_user:");
        cpu.redis_sys = field("used_cpu_sys:");
        cpu
    }

    /// CPU per job since `earlier`.
    fn per_job_since(&self, earlier: &Cpu, jobs: usize) -> String {
        let per = |a: f64, b: f64| (a - b) * 1e6 / jobs.max(1) as f64;
        format!(
            "Redis user CPU {:.1} µs/job, sys {:.1}; this process {:.1} µs/job",
            per(self.redis_user, earlier.redis_user),
            per(self.redis_sys, earlier.redis_sys),
            per(self.process, earlier.process)
        )
    }
}

/// This process's user + system CPU seconds so far.
fn process_cpu() -> f64 {
    // SAFETY: getrusage only writes the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return 0.0;
    }
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

async fn connect(url: &str, namespace: &str) -> Arc<dyn QueueBackend> {
    Arc::new(
        RedisBackend::connect(RedisConfig::new(url).namespace(namespace))
            .await
            .expect("connect"),
    )
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n: usize = std::env::var("JOBS_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let (url, _server) = RedisServer::url_or_start().unwrap_or_else(|reason| panic!("{reason}"));
    let wc = worker_config();
    println!(
        "redis bench: N = {n}, batches of {BATCH}, {SUBMITTERS} submitters, worker concurrency {} fetch {} ack {}, {url}",
        wc.concurrency, wc.fetch_batch, wc.ack_batch
    );

    // 1 + 2: enqueue a backlog, then drain it.
    let backend = connect(&url, "bench1").await;
    let client = Client::new(backend.clone());
    let cpu0 = Cpu::now(&url).await;
    let started = Instant::now();
    submit_all(&client, n).await;
    let enqueue = started.elapsed();
    let cpu1 = Cpu::now(&url).await;
    println!(
        "enqueue (batch):   {:>9.0} jobs/s  ({n} in {:.2} s; {})",
        n as f64 / enqueue.as_secs_f64(),
        enqueue.as_secs_f64(),
        cpu1.per_job_since(&cpu0, n)
    );
    let done = Arc::new(AtomicUsize::new(0));
    let counter = done.clone();
    let mut registry = Registry::new();
    registry.register_fn("noop", move |_ctx| {
        counter.fetch_add(1, Ordering::Relaxed);
        async { Ok(serde_json::Value::Null) }
    });
    let started = Instant::now();
    let worker = Worker::start(
        backend.clone(),
        registry,
        worker_config(),
        Observers::default(),
    );
    wait_completed(&backend, n as u64).await;
    let drain = started.elapsed();
    let cpu2 = Cpu::now(&url).await;
    worker.shutdown(Duration::from_secs(5)).await;
    println!(
        "drain backlog:     {:>9.0} jobs/s  ({n} in {:.2} s; {})",
        n as f64 / drain.as_secs_f64(),
        drain.as_secs_f64(),
        cpu2.per_job_since(&cpu1, n)
    );

    // 3: end to end, workers running while jobs arrive.
    let backend = connect(&url, "bench2").await;
    let client = Client::new(backend.clone());
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(n)));
    let record = latencies.clone();
    let mut registry = Registry::new();
    registry.register_fn("noop", move |ctx| {
        let waited = now_ms().saturating_sub(ctx.job().created_at);
        record.lock().push(waited);
        async { Ok(serde_json::Value::Null) }
    });
    let worker = Worker::start(
        backend.clone(),
        registry,
        worker_config(),
        Observers::default(),
    );
    let cpu3 = Cpu::now(&url).await;
    let started = Instant::now();
    submit_all(&client, n).await;
    let submitted = started.elapsed();
    wait_completed(&backend, n as u64).await;
    let e2e = started.elapsed();
    let cpu4 = Cpu::now(&url).await;
    worker.shutdown(Duration::from_secs(5)).await;
    let mut waits = latencies.lock().clone();
    waits.sort_unstable();
    println!(
        "end to end:        {:>9.0} jobs/s  ({n} in {:.2} s; submissions took {:.2} s; {})",
        n as f64 / e2e.as_secs_f64(),
        e2e.as_secs_f64(),
        submitted.as_secs_f64(),
        cpu4.per_job_since(&cpu3, n)
    );
    println!(
        "pickup latency:    p50 {} ms, p99 {} ms, max {} ms",
        percentile(&waits, 0.50),
        percentile(&waits, 0.99),
        waits.last().copied().unwrap_or(0)
    );

    // 4: pickup latency without a backlog: one job at a time, 1 ms apart.
    let backend = connect(&url, "bench3").await;
    let client = Client::new(backend.clone());
    let waits_us = Arc::new(Mutex::new(Vec::with_capacity(LIGHT_JOBS)));
    let record = waits_us.clone();
    let mut registry = Registry::new();
    registry.register_fn("timed", move |ctx| {
        let sent = ctx.payload()["t"].as_u64().unwrap_or(0);
        record.lock().push(micros_now().saturating_sub(sent));
        async { Ok(serde_json::Value::Null) }
    });
    let worker = Worker::start(
        backend.clone(),
        registry,
        WorkerConfig {
            idle_wait: Duration::from_millis(1),
            ..worker_config()
        },
        Observers::default(),
    );
    for _ in 0..LIGHT_JOBS {
        client
            .submit(JobSpec::new(
                "timed",
                serde_json::json!({ "t": micros_now() }),
            ))
            .await
            .expect("submit");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    wait_completed(&backend, LIGHT_JOBS as u64).await;
    worker.shutdown(Duration::from_secs(5)).await;
    let mut light = waits_us.lock().clone();
    light.sort_unstable();
    println!(
        "pickup, no backlog: p50 {:.1} ms, p99 {:.1} ms ({LIGHT_JOBS} jobs, 1 ms apart)",
        percentile(&light, 0.50) as f64 / 1000.0,
        percentile(&light, 0.99) as f64 / 1000.0
    );
    println!("peak RSS (VmHWM):  {} MiB", peak_rss_kib() / 1024);
}

const LIGHT_JOBS: usize = 2_000;

fn micros_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}
