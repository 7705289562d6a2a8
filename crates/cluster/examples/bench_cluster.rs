//! Cluster benchmarks (issue 6, point 8):
//!
//! 1. throughput: N no-op jobs end to end (first submission to last
//!    completion) on one cluster node, then on three, all sharing one Redis.
//!    The nodes are `ClusterNode`s in this one process (so the three share
//!    this process's CPU with each other and with Redis);
//! 2. takeover: three `ironforge node start --cluster` processes under a
//!    steady load; one (never the seed) is SIGKILLed and the time from the
//!    kill until a job of one of its partitions completes on a survivor is
//!    measured (first partition, and all of them), then it is restarted
//!    under the same alias; repeated K times, median and max printed.
//!
//! Starts its own `redis-server` on a free port (or uses `REDIS_URL`) and
//! its own port-mapper daemon on a free port. N = `CLUSTER_BENCH_N`
//! [50,000], K = `CLUSTER_BENCH_KILLS` [5]. Part 2 needs the `ironforge`
//! executable: `IRONFORGE_BIN`, else `ironforge` in this example's target
//! profile directory; without it, part 2 is skipped. Run:
//!
//! ```text
//! cargo build --release -p ironforge-cli
//! cargo run --release -p ironforge-cluster --example bench_cluster
//! ```

use ironforge_jobs::testkit::RedisServer;
use std::error::Error;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ironforge_cluster::{ClusterConfig, ClusterNode};
use ironforge_jobs::{Client, JobSpec, Partitioner, RedisConfig, Registry, WorkerConfig};
use ironforge_node::NodeConfig;
use ironforge_pmd::server::{Daemon, DaemonConfig};
use serde_json::{json, Value};

type BoxError = Box<dyn Error + Send + Sync>;

const BATCH: usize = 1_000;
const SUBMITTERS: usize = 4;
const PARTITIONS: u32 = 16;
const COOKIE: &str = "bench-cluster";
const JOIN_TIMEOUT: Duration = Duration::from_secs(30);
/// A takeover that takes longer than this is reported as a failure.
const TAKEOVER_TIMEOUT: Duration = Duration::from_secs(60);
/// Probe jobs are sent to each orphaned partition this often.
const PROBE_EVERY: Duration = Duration::from_millis(10);
/// Background load during part 2: this many jobs every 20 ms.
const LOAD_PER_TICK: usize = 20;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A child process killed (SIGKILL) on drop.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn noop_handlers() -> Registry {
    let mut registry = Registry::new();
    registry.register_fn("noop", |_| async { Ok(Value::Null) });
    registry
}

fn worker_config(consumer: String) -> WorkerConfig {
    WorkerConfig {
        consumer,
        concurrency: 256,
        fetch_batch: 256,
        ack_batch: 1024,
        idle_wait: Duration::from_millis(5),
        ..WorkerConfig::default()
    }
}

/// Part 1: N no-op jobs through `members` in-process nodes; returns jobs/s.
async fn throughput(
    redis_url: &str,
    pmd_port: u16,
    members: usize,
    jobs: usize,
) -> Result<f64, BoxError> {
    let names: Vec<String> = (0..members).map(|i| format!("tp{members}-{i}")).collect();
    let namespace = format!("bench-tp{members}-{}", std::process::id());
    let mut nodes = Vec::new();
    for name in &names {
        let mut node = NodeConfig::new(name.clone())
            .cookie(COOKIE)
            .pmd_port(pmd_port)
            .allow_multiple();
        node.auto_start_pmd = false;
        let mut redis = RedisConfig::new(redis_url);
        redis.namespace = namespace.clone();
        redis.partitions = PARTITIONS;
        let mut config = ClusterConfig::new(node, redis);
        config.seeds = vec![names[0].clone()];
        config.worker = Some((noop_handlers(), worker_config(format!("bench-{name}"))));
        nodes.push(ClusterNode::start(config).await?);
    }
    let expected: Vec<&str> = names.iter().map(String::as_str).collect();
    for node in &nodes {
        node.await_members(&expected, JOIN_TIMEOUT).await?;
    }
    let clients: Vec<Client> = nodes.iter().map(|n| n.client().clone()).collect();
    let started = Instant::now();
    let per = jobs.div_ceil(SUBMITTERS);
    let mut tasks = Vec::new();
    for s in 0..SUBMITTERS {
        let count = per.min(jobs.saturating_sub(s * per));
        let clients = clients.clone();
        tasks.push(tokio::spawn(async move {
            let mut left = count;
            let mut batch_no = s;
            while left > 0 {
                let take = left.min(BATCH);
                let specs = (0..take)
                    .map(|i| JobSpec::new("noop", json!({ "i": i })))
                    .collect();
                // Each batch to the next node: submissions spread over the cluster.
                clients[batch_no % clients.len()]
                    .submit_batch(specs)
                    .await?;
                batch_no += SUBMITTERS;
                left -= take;
            }
            Ok::<(), BoxError>(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    let submitted = started.elapsed();
    loop {
        if clients[0].stats().await?.completed >= jobs as u64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let elapsed = started.elapsed();
    let rate = jobs as f64 / elapsed.as_secs_f64();
    println!(
        "throughput, {members} node(s): {jobs} jobs in {elapsed:.2?} (all submitted after {submitted:.2?}): {rate:.0} jobs/s"
    );
    for node in nodes {
        node.shutdown(Duration::from_secs(2)).await;
    }
    Ok(rate)
}

/// The `ironforge` executable for part 2, if there is one.
fn ironforge_bin() -> Option<PathBuf> {
    if let Some(bin) = std::env::var_os("IRONFORGE_BIN") {
        return Some(bin.into());
    }
    // <target>/<profile>/examples/bench_cluster -> <target>/<profile>/ironforge
    let exe = std::env::current_exe().ok()?;
    let candidate = exe.parent()?.parent()?.join("ironforge");
    candidate.exists().then_some(candidate)
}

/// One `ironforge node start --cluster` process.
struct Process {
    _child: Killed,
    api: String,
}

fn spawn_node(
    bin: &PathBuf,
    alias: &str,
    pmd_port: u16,
    redis_url: &str,
) -> Result<Process, BoxError> {
    let mut child = Command::new(bin)
        .args([
            "node",
            "start",
            "--alias",
            alias,
            "--seed",
            "tk-a",
            "--cluster",
        ])
        .args(["--redis", redis_url, "--namespace", "bench-takeover"])
        .args([
            "--partitions",
            &PARTITIONS.to_string(),
            "--http",
            "127.0.0.1:0",
        ])
        .env("IRONFORGE_PMD_PORT", pmd_port.to_string())
        .env("IRONFORGE_COOKIE", COOKIE)
        .env("IRONFORGE_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let child = Killed(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(api) = line.split_whitespace().find(|w| w.starts_with("http://")) {
                if let Some(tx) = tx.take() {
                    let _ = tx.send(api.to_owned());
                }
            }
        }
    });
    let api = rx
        .recv_timeout(JOIN_TIMEOUT)
        .map_err(|_| format!("{alias} printed no API address"))?;
    Ok(Process { _child: child, api })
}

async fn get(http: &reqwest::Client, url: &str) -> Result<Value, BoxError> {
    Ok(http
        .get(url)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?)
}

/// Waits until the node at `api` sees exactly `expected`, has joined and
/// owns some partition; returns its owned partitions.
async fn await_joined(
    http: &reqwest::Client,
    api: &str,
    expected: &[&str],
) -> Result<Vec<u32>, BoxError> {
    let deadline = Instant::now() + JOIN_TIMEOUT;
    loop {
        if let Ok(view) = get(http, &format!("{api}/cluster/members")).await {
            let members: Vec<&str> = view["members"]
                .as_array()
                .map(|l| l.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let owned: Vec<u32> = view["owned"]
                .as_array()
                .map(|l| {
                    l.iter()
                        .filter_map(Value::as_u64)
                        .map(|p| p as u32)
                        .collect()
                })
                .unwrap_or_default();
            if view["join"] == "joined"
                && members.len() == expected.len()
                && expected.iter().all(|m| members.contains(m))
                && !owned.is_empty()
            {
                return Ok(owned);
            }
        }
        if Instant::now() > deadline {
            return Err(format!("{api} never joined {expected:?}").into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A partition key landing in each of `partitions`.
fn keys_for(partitions: &[u32]) -> Vec<(u32, String)> {
    let partitioner = Partitioner::new(PARTITIONS);
    let probe_id = ironforge_jobs::JobId::from_u128(0);
    partitions
        .iter()
        .map(|&p| {
            let key = (0u64..)
                .map(|n| format!("probe-{n}"))
                .find(|k| partitioner.partition_of(&probe_id, Some(k)) == p)
                .unwrap_or_default();
            (p, key)
        })
        .collect()
}

/// One kill: ms from SIGKILL to the first completed probe of an orphaned
/// partition, and to a completed probe in every orphaned partition.
async fn one_takeover(
    http: &reqwest::Client,
    seed_api: &str,
    victim: Process,
    orphaned: &[u32],
) -> Result<(u64, u64), BoxError> {
    let keys = keys_for(orphaned);
    drop(victim); // SIGKILL
    let kill_ms = now_ms();
    let started = Instant::now();
    let mut outstanding: Vec<String> = Vec::new();
    let mut first_done: std::collections::BTreeMap<u32, u64> = Default::default();
    while first_done.len() < orphaned.len() {
        if started.elapsed() > TAKEOVER_TIMEOUT {
            return Err(format!(
                "orphaned partitions {orphaned:?} not all consumed after {TAKEOVER_TIMEOUT:?} (done: {first_done:?})"
            )
            .into());
        }
        let jobs: Vec<Value> = keys
            .iter()
            .filter(|(p, _)| !first_done.contains_key(p))
            .map(|(_, key)| json!({"kind": "echo", "payload": 0, "partition_key": key}))
            .collect();
        let answer: Value = http
            .post(format!("{seed_api}/jobs"))
            .json(&json!({ "jobs": jobs }))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        for job in answer["jobs"].as_array().into_iter().flatten() {
            if let Some(id) = job["id"].as_str() {
                outstanding.push(id.to_owned());
            }
        }
        let mut still = Vec::new();
        for id in outstanding.drain(..) {
            let job = get(http, &format!("{seed_api}/jobs/{id}")).await?;
            match (job["status"].as_str(), job["finished_at"].as_u64()) {
                (Some("completed"), Some(at)) => {
                    let partition = job["partition"].as_u64().unwrap_or(0) as u32;
                    let entry = first_done.entry(partition).or_insert(at);
                    *entry = (*entry).min(at);
                }
                _ => still.push(id),
            }
        }
        outstanding = still;
        tokio::time::sleep(PROBE_EVERY).await;
    }
    let first = first_done.values().min().copied().unwrap_or(kill_ms);
    let all = first_done.values().max().copied().unwrap_or(kill_ms);
    Ok((first.saturating_sub(kill_ms), all.saturating_sub(kill_ms)))
}

fn median_max(values: &mut [u64]) -> (u64, u64) {
    values.sort_unstable();
    let median = values.get(values.len() / 2).copied().unwrap_or(0);
    (median, values.last().copied().unwrap_or(0))
}

/// Part 2.
async fn takeover(
    bin: &PathBuf,
    redis_url: &str,
    pmd_port: u16,
    kills: usize,
) -> Result<(), BoxError> {
    let http = reqwest::Client::new();
    let aliases = ["tk-a", "tk-b", "tk-c"];
    let mut processes = Vec::new();
    for alias in aliases {
        processes.push(Some(spawn_node(bin, alias, pmd_port, redis_url)?));
    }
    for process in processes.iter().flatten() {
        await_joined(&http, &process.api, &aliases).await?;
    }
    let seed_api = processes[0].as_ref().ok_or("no seed")?.api.clone();

    // Steady background load on the seed (never killed).
    let load = {
        let http = http.clone();
        let url = format!("{seed_api}/jobs");
        tokio::spawn(async move {
            loop {
                let jobs: Vec<Value> = (0..LOAD_PER_TICK)
                    .map(|i| json!({"kind": "echo", "payload": i}))
                    .collect();
                let _ = http.post(&url).json(&json!({ "jobs": jobs })).send().await;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };

    let mut firsts = Vec::new();
    let mut alls = Vec::new();
    for round in 0..kills {
        let slot = 1 + round % 2;
        let victim_alias = aliases[slot];
        let victim = processes[slot].take().ok_or("victim missing")?;
        let orphaned = await_joined(&http, &victim.api, &aliases).await?;
        let (first, all) = one_takeover(&http, &seed_api, victim, &orphaned).await?;
        println!(
            "takeover {}: killed {victim_alias} (owned {} partitions): first orphaned partition consumed after {first} ms, all after {all} ms",
            round + 1,
            orphaned.len()
        );
        firsts.push(first);
        alls.push(all);
        tokio::time::sleep(Duration::from_millis(500)).await;
        let restarted = spawn_node(bin, victim_alias, pmd_port, redis_url)?;
        for process in processes.iter().flatten().chain([&restarted]) {
            await_joined(&http, &process.api, &aliases).await?;
        }
        processes[slot] = Some(restarted);
    }
    load.abort();
    let (first_median, first_max) = median_max(&mut firsts);
    let (all_median, all_max) = median_max(&mut alls);
    println!(
        "takeover over {kills} kills: first partition median {first_median} ms, max {first_max} ms; all partitions median {all_median} ms, max {all_max} ms"
    );
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let jobs = env_usize("CLUSTER_BENCH_N", 50_000);
    let kills = env_usize("CLUSTER_BENCH_KILLS", 5);
    let (redis_url, _redis) = RedisServer::url_or_start()?;
    let daemon = Daemon::bind(DaemonConfig {
        bind: "127.0.0.1:0".parse()?,
        ..DaemonConfig::default()
    })
    .await?;
    let pmd_port = daemon.local_addr().port();
    tokio::spawn(daemon.run());

    let one = throughput(&redis_url, pmd_port, 1, jobs).await?;
    let three = throughput(&redis_url, pmd_port, 3, jobs).await?;
    println!("3 nodes / 1 node: {:.2}x", three / one);

    match ironforge_bin() {
        Some(bin) => takeover(&bin, &redis_url, pmd_port, kills).await?,
        None => println!(
            "takeover skipped: no ironforge executable (run `cargo build --release -p ironforge-cli` or set IRONFORGE_BIN)"
        ),
    }
    Ok(())
}
