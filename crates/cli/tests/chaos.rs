//! Chaos test of the job cluster (issue 6): three real `ironforge node
//! start --cluster` processes share one real Redis and a private PMD on an
//! ephemeral port. 20,000 jobs (19,000 plain `echo`/`sleep` jobs posted in
//! batches to all three nodes, plus 20 fan-out/fan-in workflows of 50 jobs)
//! are submitted, one node is SIGKILLed mid-run and restarted under the same
//! alias a moment later. Then every job must be `completed` (each id is read
//! back), every workflow `completed` with all its jobs completed and a
//! history in dependency order, and the jobs that ran more than once (from
//! the run log, `IRONFORGE_RUN_LOG`) must be jobs the killed node had
//! started before it died, and few: at most twice its concurrency.
//!
//! The run takes one to two minutes in a debug build on two busy cores;
//! it fails after [`HARD_TIMEOUT`] rather than hang.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ironforge_jobs::testkit::RedisServer;
use ironforge_pmd::server::{Daemon, DaemonConfig};
use serde_json::{json, Value};

/// All jobs, workflow jobs included.
const TOTAL_JOBS: usize = 20_000;
const WORKFLOWS: usize = 20;
/// Per workflow: one `split`, this many parallel parts, one `merge`.
const WORKFLOW_PARTS: usize = 48;
const JOBS_PER_WORKFLOW: usize = WORKFLOW_PARTS + 2;
const PLAIN_JOBS: usize = TOTAL_JOBS - WORKFLOWS * JOBS_PER_WORKFLOW;
const BATCH: usize = 500;
const ALIASES: [&str; 3] = ["chaos-a", "chaos-b", "chaos-c"];
/// The node that is killed and restarted.
const VICTIM: usize = 2;
/// Jobs each node runs at once.
const CONCURRENCY: usize = 16;
const PARTITIONS: u32 = 16;
const COOKIE: &str = "chaos-test";
/// The kill happens once this share of the jobs completed.
const KILL_AFTER_COMPLETED: u64 = (TOTAL_JOBS / 5) as u64;
/// How long the killed node stays down.
const DOWN_FOR: Duration = Duration::from_secs(1);
/// The whole test fails (rather than hangs) after this.
const HARD_TIMEOUT: Duration = Duration::from_secs(240);
/// Concurrent `GET /jobs/{id}` requests while checking every id.
const READERS: usize = 32;

/// The `ironforge` executable cargo built for this test.
fn ironforge_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_ironforge"))
}

/// One `ironforge node start --cluster` process; SIGKILLed when dropped.
struct NodeProcess {
    child: Child,
    api: String,
}

struct Cluster {
    bin: PathBuf,
    pmd_port: u16,
    redis_url: String,
    run_log: PathBuf,
    logs: PathBuf,
    starts: usize,
}

impl Cluster {
    fn start_node(&mut self, alias: &str) -> NodeProcess {
        self.starts += 1;
        let stderr_path = self.logs.join(format!("{alias}-{}.log", self.starts));
        let stderr = std::fs::File::create(&stderr_path).unwrap();
        let mut child = Command::new(&self.bin)
            .args(["node", "start", "--alias", alias, "--seed", ALIASES[0]])
            .args(["--cluster", "--partitions", &PARTITIONS.to_string()])
            .args(["--redis", &self.redis_url, "--namespace", "chaos"])
            .args(["--http", "127.0.0.1:0"])
            .args(["--concurrency", &CONCURRENCY.to_string()])
            .args(["--lease-ms", "2000"])
            .env("IRONFORGE_PMD_PORT", self.pmd_port.to_string())
            .env("IRONFORGE_COOKIE", COOKIE)
            .env("IRONFORGE_RUN_LOG", &self.run_log)
            .env("IRONFORGE_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("spawn ironforge node");
        let stdout = child.stdout.take().unwrap();
        let (api_tx, api_rx) = mpsc::channel();
        // Keeps reading after the address so the node never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut api_tx = Some(api_tx);
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(api) = line.split_whitespace().find(|w| w.starts_with("http://")) {
                    if let Some(tx) = api_tx.take() {
                        let _ = tx.send(api.trim_end_matches([',', ')', '.']).to_owned());
                    }
                }
            }
        });
        let api = api_rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| {
                panic!(
                    "{alias} printed no API address; its stderr: {}",
                    std::fs::read_to_string(&stderr_path).unwrap_or_default()
                )
            });
        NodeProcess { child, api }
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn get_json(http: &reqwest::Client, url: &str) -> Result<Value, String> {
    let response = http.get(url).send().await.map_err(|e| e.to_string())?;
    let status = response.status();
    let body: Value = response.json().await.map_err(|e| e.to_string())?;
    if status.is_success() {
        Ok(body)
    } else {
        Err(format!("{status}: {body}"))
    }
}

async fn post_json(http: &reqwest::Client, url: &str, body: &Value) -> Value {
    let response = http.post(url).json(body).send().await.unwrap();
    let status = response.status();
    let answer: Value = response.json().await.unwrap();
    assert!(status.is_success(), "POST {url}: {status}: {answer}");
    answer
}

/// Waits until `node` lists exactly the aliases in `expected` as members
/// and has finished joining (`GET /cluster/members`).
async fn await_members(http: &reqwest::Client, node: &NodeProcess, expected: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let view = get_json(http, &format!("{}/cluster/members", node.api)).await;
        if let Ok(view) = &view {
            let members: Vec<&str> = view["members"]
                .as_array()
                .map(|list| list.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let joined = matches!(view["join"].as_str(), Some("joined" | "alone"));
            if joined
                && members.len() == expected.len()
                && expected.iter().all(|a| members.contains(a))
            {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{} never saw exactly {expected:?}: {view:?}",
            node.api
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn stats(http: &reqwest::Client, node: &NodeProcess) -> Value {
    get_json(http, &format!("{}/queues/stats", node.api))
        .await
        .unwrap()
}

/// Every fourth job sleeps 20-49 ms, so the victim is surely running some
/// when it is killed; the rest are instant `echo`s.
fn plain_spec(n: usize) -> Value {
    if n % 4 == 0 {
        json!({"kind": "sleep", "payload": {"ms": 20 + n % 30}})
    } else {
        json!({"kind": "echo", "payload": {"n": n}})
    }
}

/// `split` -> `part-00`..`part-47` -> `merge`.
fn workflow_spec(w: usize) -> Value {
    let job = |key: &str, depends_on: Vec<String>| {
        json!({"key": key, "spec": {"kind": "where", "payload": {"workflow": w, "key": key}},
               "depends_on": depends_on})
    };
    let parts: Vec<String> = (0..WORKFLOW_PARTS)
        .map(|i| format!("part-{i:02}"))
        .collect();
    let mut jobs = vec![job("split", vec![])];
    jobs.extend(parts.iter().map(|p| job(p, vec!["split".to_owned()])));
    jobs.push(job("merge", parts.clone()));
    json!({"name": format!("chaos-{w}"), "failure_policy": "fail_dependants", "jobs": jobs})
}

fn dependencies(key: &str) -> Vec<String> {
    match key {
        "split" => vec![],
        "merge" => (0..WORKFLOW_PARTS)
            .map(|i| format!("part-{i:02}"))
            .collect(),
        _ => vec!["split".to_owned()],
    }
}

/// `(status, key -> state)` from `GET /workflows/{id}`, whether the state is
/// at the top level or under `state`, and jobs a map or a list.
fn workflow_states(body: &Value) -> (String, BTreeMap<String, String>) {
    let root = if body.get("jobs").is_some() {
        body
    } else {
        body.get("state").unwrap_or(body)
    };
    let status = root["status"].as_str().unwrap_or_default().to_owned();
    let mut jobs = BTreeMap::new();
    match &root["jobs"] {
        Value::Object(map) => {
            for (key, record) in map {
                let state = record["state"].as_str().or(record.as_str());
                jobs.insert(key.clone(), state.unwrap_or_default().to_owned());
            }
        }
        Value::Array(list) => {
            for record in list {
                let key = record["key"].as_str().unwrap_or_default().to_owned();
                let state = record["state"].as_str().or(record["status"].as_str());
                jobs.insert(key, state.unwrap_or_default().to_owned());
            }
        }
        _ => {}
    }
    (status, jobs)
}

/// The events of `GET /workflows/{id}/history`: a list, or under `events`/`history`.
fn history_events(body: &Value) -> Vec<Value> {
    let list = match body {
        Value::Array(_) => body,
        _ => body
            .get("events")
            .or_else(|| body.get("history"))
            .unwrap_or(&Value::Null),
    };
    list.as_array().cloned().unwrap_or_default()
}

/// Panics unless the history finishes every job after all its dependencies
/// completed, and the workflow's own `completed` comes last.
fn assert_dependency_order(id: &str, events: &[Value]) {
    let mut first_start: HashMap<String, u64> = HashMap::new();
    let mut first_queued: HashMap<String, u64> = HashMap::new();
    let mut completed: HashMap<String, u64> = HashMap::new();
    let mut workflow_completed = None;
    let mut last_seq = 0;
    for event in events {
        let seq = event["seq"].as_u64().unwrap_or_else(|| panic!("{event}"));
        assert!(
            seq > last_seq,
            "workflow {id}: history out of order at {event}"
        );
        last_seq = seq;
        let kind = event["kind"].as_str().unwrap_or_default();
        match event["key"].as_str() {
            None => {
                if kind == "completed" {
                    workflow_completed = Some(seq);
                }
            }
            Some(key) => {
                let slot = match kind {
                    "started" => &mut first_start,
                    "queued" => &mut first_queued,
                    "completed" => &mut completed,
                    _ => continue,
                };
                slot.entry(key.to_owned()).or_insert(seq);
            }
        }
    }
    assert_eq!(
        completed.len(),
        JOBS_PER_WORKFLOW,
        "workflow {id}: not every job has a completed event"
    );
    for (key, done) in &completed {
        let started = first_start.get(key).copied().unwrap_or(*done);
        let queued = first_queued.get(key).copied().unwrap_or(started);
        assert!(
            queued <= started && started <= *done,
            "workflow {id}: {key}"
        );
        for dep in dependencies(key) {
            let dep_done = completed[&dep];
            assert!(
                dep_done < queued && dep_done < started,
                "workflow {id}: {key} queued/started (seq {queued}/{started}) before {dep} completed (seq {dep_done})"
            );
        }
    }
    assert_eq!(
        workflow_completed,
        Some(last_seq),
        "workflow {id}: the workflow's completion is not the last event"
    );
}

/// Reads every id until all are `completed`, `READERS` at a time; panics on
/// a job that is missing or ended otherwise.
async fn await_all_completed(http: &reqwest::Client, apis: &[String], ids: &[String]) {
    let mut pending: Vec<String> = ids.to_vec();
    let mut round = 0usize;
    while !pending.is_empty() {
        let chunks: Vec<Vec<String>> = pending
            .chunks(pending.len().div_ceil(READERS))
            .map(<[String]>::to_vec)
            .collect();
        let mut tasks = Vec::new();
        for (i, chunk) in chunks.into_iter().enumerate() {
            let http = http.clone();
            let api = apis[(i + round) % apis.len()].clone();
            tasks.push(tokio::spawn(async move {
                let mut unfinished = Vec::new();
                for id in chunk {
                    let job = get_json(&http, &format!("{api}/jobs/{id}")).await;
                    let job = job.unwrap_or_else(|e| panic!("job {id} lost: {e}"));
                    match job["status"].as_str() {
                        Some("completed") => {}
                        Some("queued" | "scheduled" | "running") => unfinished.push(id),
                        _ => panic!("job {id} did not complete: {job}"),
                    }
                }
                unfinished
            }));
        }
        pending.clear();
        for task in tasks {
            pending.extend(task.await.unwrap());
        }
        if !pending.is_empty() {
            round += 1;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// `id -> aliases that started it`, in log order, from the run log lines
/// (optionally only the first `up_to` bytes).
fn runs(run_log: &Path, up_to: Option<usize>) -> HashMap<String, Vec<String>> {
    let text = std::fs::read_to_string(run_log).unwrap_or_default();
    let text = match up_to {
        Some(end) => &text[..end.min(text.len())],
        None => &text[..],
    };
    let mut runs: HashMap<String, Vec<String>> = HashMap::new();
    for line in text.lines() {
        if let Some((id, alias)) = line.split_once(' ') {
            runs.entry(id.to_owned())
                .or_default()
                .push(alias.to_owned());
        }
    }
    runs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_thousand_jobs_survive_a_sigkilled_node() {
    let bin = tokio::task::spawn_blocking(ironforge_bin).await.unwrap();
    tokio::time::timeout(HARD_TIMEOUT, chaos(bin))
        .await
        .expect("the chaos run did not finish within the hard timeout");
}

async fn chaos(bin: PathBuf) {
    let redis = RedisServer::start();
    let daemon = Daemon::bind(DaemonConfig {
        bind: "127.0.0.1:0".parse().unwrap(),
        ..DaemonConfig::default()
    })
    .await
    .unwrap();
    let pmd_port = daemon.local_addr().port();
    tokio::spawn(daemon.run());
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Cluster {
        bin,
        pmd_port,
        redis_url: redis.url(),
        run_log: dir.path().join("runs.log"),
        logs: dir.path().to_path_buf(),
        starts: 0,
    };
    let http = reqwest::Client::new();

    let mut nodes: Vec<NodeProcess> = Vec::new();
    for alias in ALIASES {
        nodes.push(cluster.start_node(alias));
    }
    for node in &nodes {
        await_members(&http, node, &ALIASES).await;
    }
    let started = Instant::now();

    // Plain jobs in batches, each node taking every third batch.
    let mut submitters = Vec::new();
    for (n, node) in nodes.iter().enumerate() {
        let http = http.clone();
        let url = format!("{}/jobs", node.api);
        submitters.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for batch in (0..PLAIN_JOBS.div_ceil(BATCH)).filter(|b| b % ALIASES.len() == n) {
                let jobs: Vec<Value> = (batch * BATCH..((batch + 1) * BATCH).min(PLAIN_JOBS))
                    .map(plain_spec)
                    .collect();
                let answer = post_json(&http, &url, &json!({ "jobs": jobs })).await;
                for job in answer["jobs"].as_array().unwrap() {
                    ids.push(job["id"].as_str().unwrap().to_owned());
                }
            }
            ids
        }));
    }
    let mut plain_ids = Vec::with_capacity(PLAIN_JOBS);
    for submitter in submitters {
        plain_ids.extend(submitter.await.unwrap());
    }
    assert_eq!(plain_ids.len(), PLAIN_JOBS);
    // Workflows last: their jobs queue behind most plain jobs, so they are
    // unfinished when the victim dies.
    let mut workflows = Vec::new();
    for w in 0..WORKFLOWS {
        let node = &nodes[w % nodes.len()];
        let answer = post_json(&http, &format!("{}/workflows", node.api), &workflow_spec(w)).await;
        let id = answer["id"]
            .as_str()
            .or(answer["workflow_id"].as_str())
            .unwrap_or_else(|| panic!("no workflow id in {answer}"));
        workflows.push(id.to_owned());
    }

    println!(
        "submitted {PLAIN_JOBS} jobs and {WORKFLOWS} workflows of {JOBS_PER_WORKFLOW} in {:?}",
        started.elapsed()
    );

    // Kill the victim mid-run.
    loop {
        let completed = stats(&http, &nodes[0]).await["completed"]
            .as_u64()
            .unwrap_or(0);
        if completed >= KILL_AFTER_COMPLETED {
            assert!(
                completed < TOTAL_JOBS as u64,
                "every job completed before the kill; the test proves nothing"
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut unfinished_workflows = 0;
    for id in &workflows {
        let body = get_json(&http, &format!("{}/workflows/{id}", nodes[0].api)).await;
        let status = body.as_ref().map(|b| workflow_states(b).0);
        if status.as_deref() != Ok("completed") {
            unfinished_workflows += 1;
        }
    }
    let mut victim = nodes.remove(VICTIM);
    victim.child.kill().unwrap();
    victim.child.wait().unwrap();
    let log_at_kill = std::fs::metadata(&cluster.run_log)
        .map(|m| m.len() as usize)
        .unwrap_or(0);
    let killed_at = started.elapsed();
    drop(victim);
    tokio::time::sleep(DOWN_FOR).await;
    let restarted = cluster.start_node(ALIASES[VICTIM]);
    await_members(&http, &restarted, &ALIASES).await;
    nodes.push(restarted);
    let apis: Vec<String> = nodes.iter().map(|n| n.api.clone()).collect();
    println!(
        "killed {} at {killed_at:?} ({unfinished_workflows} of {WORKFLOWS} workflows unfinished), \
         restarted it {DOWN_FOR:?} later",
        ALIASES[VICTIM]
    );

    // Every plain job completes, read back one by one.
    loop {
        let completed = stats(&http, &nodes[0]).await["completed"]
            .as_u64()
            .unwrap_or(0);
        if completed >= PLAIN_JOBS as u64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    await_all_completed(&http, &apis, &plain_ids).await;
    println!("every plain job completed at {:?}", started.elapsed());

    // Every workflow completes, every job of it too, history in dependency
    // order. A node answers for the workflows its journal holds, so ask each.
    let mut workflow_job_ids = Vec::new();
    for id in &workflows {
        let deadline = Instant::now() + Duration::from_secs(60);
        let (api, body) = loop {
            let mut answers = Vec::new();
            for api in &apis {
                match get_json(&http, &format!("{api}/workflows/{id}")).await {
                    Ok(body) => answers.push((api.clone(), body)),
                    Err(error) => answers.push((api.clone(), json!({ "error": error }))),
                }
            }
            let finished = answers.iter().find(|(_, body)| {
                let (status, _) = workflow_states(body);
                !matches!(status.as_str(), "" | "running" | "pending")
            });
            if let Some(found) = finished {
                break found.clone();
            }
            assert!(
                Instant::now() < deadline,
                "workflow {id} never finished: {answers:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let (status, jobs) = workflow_states(&body);
        assert_eq!(status, "completed", "workflow {id}: {body}");
        assert_eq!(jobs.len(), JOBS_PER_WORKFLOW, "workflow {id}: {body}");
        assert!(
            jobs.values().all(|state| state == "completed"),
            "workflow {id}: {body}"
        );
        if let Some(records) = body["jobs"].as_object() {
            workflow_job_ids.extend(
                records
                    .values()
                    .filter_map(|r| r["job_id"].as_str().map(str::to_owned)),
            );
        }
        let history = get_json(&http, &format!("{api}/workflows/{id}/history"))
            .await
            .unwrap();
        assert_dependency_order(id, &history_events(&history));
    }
    await_all_completed(&http, &apis, &workflow_job_ids).await;
    let finished_at = started.elapsed();

    let final_stats = stats(&http, &nodes[0]).await;
    assert_eq!(
        final_stats["completed"].as_u64(),
        Some(TOTAL_JOBS as u64),
        "{final_stats}"
    );
    assert_eq!(final_stats["dead"].as_u64(), Some(0), "{final_stats}");

    // Runs: every submitted plain job started at least once; repeats only
    // for jobs the victim had started before it died.
    let all_runs = runs(&cluster.run_log, None);
    let before_kill = runs(&cluster.run_log, Some(log_at_kill));
    let missing = plain_ids
        .iter()
        .chain(&workflow_job_ids)
        .filter(|id| !all_runs.contains_key(*id))
        .count();
    assert_eq!(missing, 0, "completed jobs with no start in the run log");
    let started_runs: usize = all_runs.values().map(Vec::len).sum();
    assert!(all_runs.len() >= TOTAL_JOBS, "{} ids ran", all_runs.len());
    let repeated: Vec<(&String, &Vec<String>)> =
        all_runs.iter().filter(|(_, runs)| runs.len() > 1).collect();
    let aliases_known = all_runs.values().flatten().any(|alias| alias != "-");
    let victim_alias = ALIASES[VICTIM];
    let victim_ids: HashSet<&String> = before_kill
        .iter()
        .filter(|(_, runs)| runs.iter().any(|a| a == victim_alias))
        .map(|(id, _)| id)
        .collect();
    let mut per_node: BTreeMap<&str, usize> = BTreeMap::new();
    for alias in all_runs.values().flatten() {
        *per_node.entry(alias.as_str()).or_default() += 1;
    }
    println!(
        "all {TOTAL_JOBS} jobs and {WORKFLOWS} workflows completed in {finished_at:?}; \
         {started_runs} handler starts, per node {per_node:?}"
    );
    println!(
        "jobs that ran more than once: {} (the killed node runs {CONCURRENCY} at once)",
        repeated.len()
    );
    if aliases_known {
        println!(
            "{victim_alias} had started {} jobs before it was killed",
            victim_ids.len()
        );
        assert!(
            !victim_ids.is_empty(),
            "{victim_alias} ran nothing before the kill; the kill proves nothing"
        );
        for (id, runs) in &repeated {
            assert!(
                victim_ids.contains(id),
                "job {id} ran more than once ({runs:?}) but {victim_alias} had not started it before the kill"
            );
        }
    } else {
        println!(
            "note: the run log names no nodes (run.rs does not call handlers::builtin_on); \
             repeats are not attributed"
        );
    }
    assert!(
        repeated.len() <= CONCURRENCY * 2,
        "{} jobs ran more than once: {:?}",
        repeated.len(),
        repeated.iter().take(10).collect::<Vec<_>>()
    );
}
