//! HTTP submit benchmark: C concurrent clients, each on its own keep-alive
//! connection, POST jobs to a real API server (embedded backend in a temp
//! dir, same process) until N jobs are accepted; prints throughput and
//! per-request latency percentiles (over Redis Streams when REDIS_URL is
//! set). Figures go to docs/perf/http.md.
//!
//! ```text
//! cargo run --release -p ironforge-jobs --example bench_http -- [--jobs N] [--clients C] [--batch K] [--direct 1]
//! ```
//! Defaults: 200,000 jobs, 100 clients, 1 job per request. `--direct 1`
//! submits through the Rust [`Client`] instead of HTTP (same concurrency),
//! to show what the HTTP layer adds; `--raw 1` drives HTTP from a minimal
//! hand-written HTTP/1.1 client on plain TCP instead of reqwest, so the
//! load generator takes less of the shared CPU.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ironforge_jobs::http::{serve, ApiState};
use ironforge_jobs::{
    Client, EmbeddedBackend, EmbeddedConfig, JobSpec, QueueBackend, RedisBackend, RedisConfig,
};

/// The allocator of the `ironforge` binary, so the figures are what ships.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

struct Args {
    jobs: usize,
    clients: usize,
    batch: usize,
    direct: bool,
    raw: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        jobs: 200_000,
        clients: 100,
        batch: 1,
        direct: false,
        raw: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let number: usize = value
            .parse()
            .map_err(|_| format!("{flag} expects a number, got {value}"))?;
        match flag.as_str() {
            "--jobs" => args.jobs = number,
            "--clients" => args.clients = number.max(1),
            "--batch" => args.batch = number.max(1),
            "--direct" => args.direct = number != 0,
            "--raw" => args.raw = number != 0,
            other => return Err(format!("unknown flag {other}")),
        }
    }
    Ok(args)
}

fn body(batch: usize, n: usize) -> String {
    let job = |i: usize| format!(r#"{{"kind":"noop","payload":{{"n":{i}}}}}"#);
    if batch == 1 {
        job(n)
    } else {
        let jobs: Vec<String> = (0..batch).map(|i| job(n * batch + i)).collect();
        format!("[{}]", jobs.join(","))
    }
}

/// Runs `requests` POSTs spread over the clients; returns latencies in µs.
async fn run(
    http: &reqwest::Client,
    url: &str,
    clients: usize,
    requests: usize,
    batch: usize,
) -> Result<Vec<u64>, String> {
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (http, url, next) = (http.clone(), url.to_string(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(requests / clients + 1);
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= requests {
                    return Ok::<_, String>(latencies);
                }
                let started = Instant::now();
                let response = http
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body(batch, n))
                    .send()
                    .await
                    .map_err(|e| e.to_string())?;
                let status = response.status();
                let _ = response.bytes().await.map_err(|e| e.to_string())?;
                if status.as_u16() != 201 {
                    return Err(format!("unexpected status {status}"));
                }
                latencies.push(started.elapsed().as_micros() as u64);
            }
        }));
    }
    let mut all = Vec::with_capacity(requests);
    for task in tasks {
        all.extend(task.await.map_err(|e| e.to_string())??);
    }
    Ok(all)
}

/// Like [`run`], with one plain TCP connection per client and hand-written
/// HTTP/1.1 (keep-alive, `Content-Length` answers only).
async fn run_raw(
    addr: std::net::SocketAddr,
    clients: usize,
    requests: usize,
    batch: usize,
) -> Result<Vec<u64>, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let next = next.clone();
        tasks.push(tokio::spawn(async move {
            let mut conn = tokio::net::TcpStream::connect(addr)
                .await
                .map_err(|e| e.to_string())?;
            conn.set_nodelay(true).map_err(|e| e.to_string())?;
            let mut latencies = Vec::with_capacity(requests / clients + 1);
            let mut buf = Vec::with_capacity(4096);
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= requests {
                    return Ok::<_, String>(latencies);
                }
                let body = body(batch, n);
                let request = format!(
                    "POST /jobs HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                let started = Instant::now();
                conn.write_all(request.as_bytes())
                    .await
                    .map_err(|e| e.to_string())?;
                buf.clear();
                let (head_end, total) = loop {
                    let mut chunk = [0u8; 4096];
                    let read = conn.read(&mut chunk).await.map_err(|e| e.to_string())?;
                    if read == 0 {
                        return Err("server closed the connection".to_string());
                    }
                    buf.extend_from_slice(&chunk[..read]);
                    if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                        let length = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .ok_or("answer without content-length")?;
                        break (end + 4, end + 4 + length);
                    }
                };
                while buf.len() < total {
                    let mut chunk = [0u8; 4096];
                    let read = conn.read(&mut chunk).await.map_err(|e| e.to_string())?;
                    if read == 0 {
                        return Err("server closed the connection".to_string());
                    }
                    buf.extend_from_slice(&chunk[..read]);
                }
                if !buf[..head_end].starts_with(b"HTTP/1.1 201") {
                    return Err(format!(
                        "unexpected answer {}",
                        String::from_utf8_lossy(&buf[..total])
                    ));
                }
                latencies.push(started.elapsed().as_micros() as u64);
            }
        }));
    }
    let mut all = Vec::with_capacity(requests);
    for task in tasks {
        all.extend(task.await.map_err(|e| e.to_string())??);
    }
    Ok(all)
}

/// Like [`run`], through the Rust client instead of HTTP.
async fn run_direct(
    client: &Client,
    clients: usize,
    requests: usize,
    batch: usize,
) -> Result<Vec<u64>, String> {
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (client, next) = (client.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(requests / clients + 1);
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= requests {
                    return Ok::<_, String>(latencies);
                }
                let specs = (0..batch)
                    .map(|i| JobSpec::new("noop", serde_json::json!({"n": n * batch + i})))
                    .collect();
                let started = Instant::now();
                client
                    .submit_batch(specs)
                    .await
                    .map_err(|e| e.to_string())?;
                latencies.push(started.elapsed().as_micros() as u64);
            }
        }));
    }
    let mut all = Vec::with_capacity(requests);
    for task in tasks {
        all.extend(task.await.map_err(|e| e.to_string())??);
    }
    Ok(all)
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)] as f64 / 1000.0
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse_args()?;
    let dir = tempfile::tempdir()?;
    // REDIS_URL: measure over Redis Streams (a fresh namespace) instead.
    let backend: Arc<dyn QueueBackend> = match std::env::var("REDIS_URL") {
        Ok(url) => {
            let namespace = format!("bench{}", std::process::id());
            Arc::new(RedisBackend::connect(RedisConfig::new(url).namespace(namespace)).await?)
        }
        Err(_) => Arc::new(EmbeddedBackend::open(
            dir.path().join("jobs.redb"),
            EmbeddedConfig::default(),
        )?),
    };
    let client = Client::new(backend);
    let state = ApiState::new(client.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let url = format!("http://{addr}/jobs");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, state, async move {
        let _ = stopped.await;
    }));
    let http = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(args.clients)
        .timeout(Duration::from_secs(30))
        .build()?;

    let requests = args.jobs.div_ceil(args.batch);
    let warmup = (requests / 20).clamp(args.clients, 10_000);
    let (elapsed, mut latencies) = if args.direct {
        run_direct(&client, args.clients, warmup, args.batch).await?;
        let started = Instant::now();
        let latencies = run_direct(&client, args.clients, requests, args.batch).await?;
        (started.elapsed().as_secs_f64(), latencies)
    } else if args.raw {
        run_raw(addr, args.clients, warmup, args.batch).await?;
        let started = Instant::now();
        let latencies = run_raw(addr, args.clients, requests, args.batch).await?;
        (started.elapsed().as_secs_f64(), latencies)
    } else {
        run(&http, &url, args.clients, warmup, args.batch).await?;
        let started = Instant::now();
        let latencies = run(&http, &url, args.clients, requests, args.batch).await?;
        (started.elapsed().as_secs_f64(), latencies)
    };
    latencies.sort_unstable();
    let jobs = requests * args.batch;
    println!(
        "mode={} jobs={jobs} clients={} batch={} requests={requests} warmup_requests={warmup}",
        if args.direct {
            "rust-client"
        } else if args.raw {
            "http-raw-client"
        } else {
            "http"
        },
        args.clients,
        args.batch
    );
    println!(
        "elapsed={elapsed:.2}s  jobs/s={:.0}  requests/s={:.0}",
        jobs as f64 / elapsed,
        requests as f64 / elapsed
    );
    println!(
        "latency ms: p50={:.2} p90={:.2} p99={:.2} p99.9={:.2} max={:.2}",
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.90),
        percentile(&latencies, 0.99),
        percentile(&latencies, 0.999),
        percentile(&latencies, 1.0)
    );
    let _ = stop.send(());
    server.await??;
    Ok(())
}
