//! `ironforge node start --cluster / --seed` as real processes sharing one
//! real redis-server: three members split the partitions, serve jobs of
//! every partition from every node, and when one is SIGKILLed the
//! survivors take its partitions over: its queued jobs run, and its
//! in-flight job runs again (at-least-once) once its lease expires.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::{NodeProcess, PmdGuard};
use ironforge_jobs::testkit::RedisServer;
use ironforge_jobs::{JobId, Partitioner};
use serde_json::{json, Value};

const P: u32 = 16;
/// A hang fails the test instead of blocking it.
const HARD_BOUND: Duration = Duration::from_secs(30);

/// Blocking HTTP through a small runtime (the test itself is synchronous,
/// like the processes it drives).
struct Http {
    runtime: tokio::runtime::Runtime,
    client: reqwest::Client,
}

impl Http {
    fn new() -> Http {
        Http {
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
            client: reqwest::Client::new(),
        }
    }

    fn get(&self, url: &str) -> Value {
        self.runtime.block_on(async {
            let response = self.client.get(url).send().await.unwrap();
            assert!(
                response.status().is_success(),
                "GET {url}: {}",
                response.status()
            );
            response.json().await.unwrap()
        })
    }

    /// The answer, or `None` for a 404 (a replica that has not heard of
    /// the resource yet: replication is asynchronous).
    fn get_if_known(&self, url: &str) -> Option<Value> {
        self.runtime.block_on(async {
            let response = self.client.get(url).send().await.unwrap();
            if response.status() == reqwest::StatusCode::NOT_FOUND {
                return None;
            }
            assert!(
                response.status().is_success(),
                "GET {url}: {}",
                response.status()
            );
            Some(response.json().await.unwrap())
        })
    }

    fn post(&self, url: &str, body: Value) -> Value {
        self.runtime.block_on(async {
            let response = self.client.post(url).json(&body).send().await.unwrap();
            assert!(
                response.status().is_success(),
                "POST {url}: {}",
                response.status()
            );
            response.json().await.unwrap()
        })
    }
}

/// A cluster node process, SIGKILLed when dropped.
struct Member {
    alias: String,
    process: NodeProcess,
    api: String,
}

impl Member {
    /// `seeds_env`: IRONFORGE_SEEDS, instead of (or besides) `--seed`.
    fn start(
        pmd_port: u16,
        redis: &str,
        alias: &str,
        cluster_args: &[&str],
        seeds_env: &str,
    ) -> Member {
        let partitions = P.to_string();
        let mut args = vec!["--redis", redis, "--namespace", "clustertest"];
        args.extend(["--partitions", &partitions, "--lease-ms", "1000"]);
        args.extend(cluster_args);
        let mut process = NodeProcess::start(
            pmd_port,
            alias,
            "cluster-test",
            &args,
            &[("IRONFORGE_SEEDS", seeds_env)],
        );
        let cluster_line = process.stdout.next().unwrap().unwrap();
        assert!(
            cluster_line.starts_with(&format!("cluster member {alias}")),
            "{cluster_line:?}"
        );
        Member {
            alias: alias.to_owned(),
            api: process.api.clone(),
            process,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.api)
    }

    /// The partitions this member says it owns, once its view holds
    /// exactly `members` and it follows that ring.
    fn converged_owned(&self, http: &Http, members: &[&str]) -> Vec<u32> {
        let deadline = Instant::now() + HARD_BOUND;
        loop {
            let ring = http.get(&self.url("/cluster/ring"));
            let view = http.get(&self.url("/cluster/members"));
            let on_ring: Vec<u32> = ring["assignments"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|a| a["owner"] == self.alias.as_str())
                .map(|a| a["partition"].as_u64().unwrap() as u32)
                .collect();
            let owned: Vec<u32> = serde_json::from_value(ring["owned"].clone()).unwrap();
            // Two requests, two snapshots: the ring answer must itself be
            // of the whole membership, or an older ring (before the last
            // join) would pass with the newer members view.
            let ring_members: Vec<&str> = ring["members"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["member"].as_str().unwrap())
                .collect();
            if view["members"] == json!(members)
                && ring_members == members
                && view["join"] == "joined"
                && owned == on_ring
            {
                return owned;
            }
            assert!(
                Instant::now() < deadline,
                "{} never converged on {members:?}: {view} {ring}",
                self.alias
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn cli(&self, args: &[&str]) -> String {
        let output = self.process.cli(args);
        assert!(output.status.success(), "{args:?}: {output:?}");
        String::from_utf8(output.stdout).unwrap()
    }
}

/// A partition key that maps to `partition`.
fn key_for(partition: u32) -> String {
    let partitioner = Partitioner::new(P);
    (0..)
        .map(|i| format!("key-{i}"))
        .find(|k| partitioner.partition_of(&JobId::new_random(), Some(k)) == partition)
        .unwrap()
}

fn submit(http: &Http, member: &Member, spec: Value) -> String {
    let answer = http.post(&member.url("/jobs"), spec);
    answer["id"]
        .as_str()
        .or_else(|| answer["ids"][0].as_str())
        .unwrap_or_else(|| panic!("no id in {answer}"))
        .to_owned()
}

fn job(http: &Http, member: &Member, id: &str) -> Value {
    http.get(&member.url(&format!("/jobs/{id}")))
}

fn wait_status(http: &Http, member: &Member, id: &str, status: &str) -> Value {
    let deadline = Instant::now() + HARD_BOUND;
    loop {
        let job = job(http, member, id);
        if job["status"] == status {
            return job;
        }
        assert!(Instant::now() < deadline, "job never {status}: {job}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn three_members_share_partitions_and_survivors_take_over_a_killed_one() {
    let redis = RedisServer::start();
    let pmd = PmdGuard::new();
    let http = Http::new();
    let a = Member::start(pmd.0, &redis.url(), "a", &["--cluster"], "");
    let b = Member::start(pmd.0, &redis.url(), "b", &[], "a");
    let c = Member::start(
        pmd.0,
        &redis.url(),
        "c",
        &["--seed", "a", "--seed", "b"],
        "",
    );
    let members = [&a, &b, &c];

    // Converged: the owned sets are disjoint and cover every partition.
    let owned: Vec<Vec<u32>> = members
        .iter()
        .map(|m| m.converged_owned(&http, &["a", "b", "c"]))
        .collect();
    let mut all: Vec<u32> = owned.iter().flatten().copied().collect();
    all.sort_unstable();
    assert_eq!(all, (0..P).collect::<Vec<_>>(), "{owned:?}");
    assert!(owned.iter().all(|o| !o.is_empty()), "{owned:?}");

    // Jobs submitted to each node complete and every node reads them.
    let mut ids = Vec::new();
    for member in members {
        for i in 0..6 {
            ids.push(submit(&http, member, json!({"kind": "echo", "payload": i})));
        }
    }
    for id in &ids {
        wait_status(&http, &a, id, "completed");
        for member in members {
            assert_eq!(job(&http, member, id)["status"], "completed");
        }
    }

    // The CLI shows the same picture.
    let table = a.cli(&["cluster", "members"]);
    assert!(
        table.contains("this node") && table.contains('c'),
        "{table}"
    );
    let ring = b.cli(&["cluster", "ring", "--json"]);
    let ring: Value = serde_json::from_str(&ring).unwrap();
    assert_eq!(ring["assignments"].as_array().unwrap().len(), P as usize);

    // c runs a long job of one of its partitions, then is SIGKILLed.
    let orphaned = owned[2].clone();
    let sleeper = submit(
        &http,
        &a,
        json!({"kind": "sleep", "payload": {"ms": 1500}, "partition_key": key_for(orphaned[0])}),
    );
    wait_status(&http, &a, &sleeper, "running");
    let mut c = c;
    c.process.child.kill().unwrap();
    let killed = Instant::now();
    c.process.child.wait().unwrap();

    // Jobs queued for c's partitions after its death.
    let queued: Vec<String> = orphaned
        .iter()
        .map(|p| {
            submit(
                &http,
                &a,
                json!({"kind": "echo", "payload": p, "partition_key": key_for(*p)}),
            )
        })
        .collect();
    let first = loop {
        let done = queued
            .iter()
            .any(|id| job(&http, &b, id)["status"] == "completed");
        if done {
            break killed.elapsed();
        }
        assert!(killed.elapsed() < HARD_BOUND, "no orphaned job completed");
        std::thread::sleep(Duration::from_millis(10));
    };
    println!("SIGKILL to first completed job of an orphaned partition: {first:?}");
    for id in &queued {
        wait_status(&http, &b, id, "completed");
    }
    let redelivered = wait_status(&http, &a, &sleeper, "completed");
    println!(
        "SIGKILL to the in-flight job completing again elsewhere: {:?}",
        killed.elapsed()
    );
    assert_eq!(redelivered["deliveries"], 2, "{redelivered}");

    // The survivors own every partition between them.
    let survivors: Vec<Vec<u32>> = [&a, &b]
        .iter()
        .map(|m| m.converged_owned(&http, &["a", "b"]))
        .collect();
    let union: BTreeSet<u32> = survivors.iter().flatten().copied().collect();
    assert_eq!(union.len(), P as usize);
    assert_eq!(
        survivors[0].len() + survivors[1].len(),
        P as usize,
        "{survivors:?}"
    );
}

#[test]
fn a_cluster_node_needs_redis() {
    let pmd = PmdGuard::new();
    let output = std::process::Command::new(common::BIN)
        .args(["node", "start", "--alias", "lonely", "--cluster"])
        .env("IRONFORGE_PMD_PORT", pmd.0.to_string())
        .env("IRONFORGE_COOKIE", "cluster-test")
        .env_remove("IRONFORGE_REDIS_URL")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--redis"), "{stderr}");
}

/// POSTs and returns the status code and the JSON answer, success or not.
fn post_any(http: &Http, url: &str, body: Value) -> (u16, Value) {
    http.runtime.block_on(async {
        let response = http.client.post(url).json(&body).send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    })
}

/// The workflow's summary once it has finished (polled on `reader`, which
/// may not have heard of it yet if another member took the submission: a
/// 404 counts as still running).
fn wait_workflow(http: &Http, reader: &Member, id: &str) -> Value {
    let deadline = Instant::now() + HARD_BOUND;
    loop {
        let summary = http.get_if_known(&reader.url(&format!("/workflows/{id}")));
        if let Some(summary) = summary.as_ref().filter(|s| s["status"] != "running") {
            return summary.clone();
        }
        assert!(
            Instant::now() < deadline,
            "workflow never finished: {summary:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn step(key: &str, kind: &str, deps: &[&str]) -> Value {
    json!({
        "key": key,
        "spec": {"kind": kind, "payload": {"ms": 40}, "max_retries": 0},
        "depends_on": deps,
    })
}

/// Workflows on a 3-process cluster: submitted to any member (forwarded to
/// the owner of their partition), driven in dependency order, each failure
/// policy, cycles refused, read from every member, and the replay of the
/// history equals every state a member showed while it ran.
#[test]
fn workflows_run_in_dependency_order_across_the_cluster() {
    let redis = RedisServer::start();
    let pmd = PmdGuard::new();
    let http = Http::new();
    let a = Member::start(pmd.0, &redis.url(), "a", &["--cluster"], "");
    let b = Member::start(pmd.0, &redis.url(), "b", &["--seed", "a"], "");
    let c = Member::start(pmd.0, &redis.url(), "c", &["--seed", "a"], "");
    let members = [&a, &b, &c];
    for member in members {
        member.converged_owned(&http, &["a", "b", "c"]);
    }

    // Fan-out and fan-in, submitted to each member in turn.
    let fan = json!({"name": "fan", "jobs": [
        step("split", "sleep", &[]),
        step("p1", "sleep", &["split"]), step("p2", "sleep", &["split"]),
        step("p3", "sleep", &["split"]), step("p4", "sleep", &["split"]),
        step("merge", "echo", &["p1", "p2", "p3", "p4"]),
    ]});
    let mut seen: Vec<Value> = Vec::new();
    let mut ids = Vec::new();
    for member in members {
        let (status, answer) = post_any(&http, &member.url("/workflows"), fan.clone());
        assert_eq!(status, 201, "{answer}");
        ids.push(answer["id"].as_str().unwrap().to_owned());
    }
    // Watch every member while they run: each answer is a state at some seq.
    let deadline = Instant::now() + HARD_BOUND;
    loop {
        let mut running = false;
        for id in &ids {
            for member in members {
                match http.get_if_known(&member.url(&format!("/workflows/{id}"))) {
                    Some(summary) => {
                        running |= summary["status"] == "running";
                        seen.push(summary);
                    }
                    None => running = true,
                }
            }
        }
        if !running {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "fan-out workflows never finished"
        );
    }
    for id in &ids {
        // Every member answers the same finished state.
        let finals: Vec<Value> = members
            .iter()
            .map(|m| http.get(&m.url(&format!("/workflows/{id}"))))
            .collect();
        assert_eq!(finals[0]["status"], "completed", "{}", finals[0]);
        assert!(
            finals.iter().all(|f| f["jobs"] == finals[0]["jobs"]),
            "{finals:?}"
        );

        // Dependency order, from the history.
        let history = http.get(&c.url(&format!("/workflows/{id}/history")));
        let events = history["events"].as_array().unwrap();
        let seq_of = |key: &str, kind: &str| {
            events
                .iter()
                .find(|e| e["key"] == key && e["kind"] == kind)
                .and_then(|e| e["seq"].as_u64())
                .unwrap_or_else(|| panic!("no {kind} event for {key}: {history}"))
        };
        for part in ["p1", "p2", "p3", "p4"] {
            assert!(seq_of("split", "completed") < seq_of(part, "started"));
            assert!(seq_of(part, "completed") < seq_of("merge", "started"));
        }

        // The replay (by the CLI, from the events alone) equals every state
        // a member showed at that seq.
        let shown_states: Vec<&Value> = seen.iter().filter(|s| s["id"] == id.as_str()).collect();
        assert!(shown_states.len() >= 3, "{shown_states:?}");
        for shown in shown_states {
            let seq = shown["seq"].as_u64().unwrap().to_string();
            let replayed: Value = serde_json::from_str(
                &b.cli(&["workflow", "replay", id, "--until", &seq, "--json"]),
            )
            .unwrap();
            for field in ["seq", "status", "counts"] {
                assert_eq!(replayed[field], shown[field], "{field} at seq {seq}");
            }
            for (key, job) in shown["jobs"].as_object().unwrap() {
                assert_eq!(
                    replayed["jobs"][key]["state"], job["state"],
                    "{key} at {seq}"
                );
            }
        }
    }

    // Each failure policy, with a root that fails for good.
    for (policy, dependant, status) in [
        ("fail_dependants", "failed", "failed"),
        ("skip_dependants", "skipped", "failed"),
        ("continue", "completed", "failed"),
    ] {
        let spec = json!({"failure_policy": policy, "jobs": [
            step("root", "fail", &[]),
            step("child", "echo", &["root"]),
            step("grandchild", "echo", &["child"]),
            step("other", "echo", &[]),
        ]});
        let (code, answer) = post_any(&http, &b.url("/workflows"), spec);
        assert_eq!(code, 201, "{answer}");
        let id = answer["id"].as_str().unwrap();
        let summary = wait_workflow(&http, &c, id);
        assert_eq!(summary["status"], status, "{policy}: {summary}");
        assert_eq!(summary["jobs"]["root"]["state"], "failed", "{policy}");
        assert_eq!(summary["jobs"]["child"]["state"], dependant, "{policy}");
        assert_eq!(
            summary["jobs"]["grandchild"]["state"], dependant,
            "{policy}"
        );
        assert_eq!(summary["jobs"]["other"]["state"], "completed", "{policy}");
    }

    // A cycle is refused, naming its keys, whichever member gets it.
    let cycle = json!({"jobs": [
        step("x", "echo", &["z"]), step("y", "echo", &["x"]), step("z", "echo", &["y"]),
        step("free", "echo", &[]),
    ]});
    for member in members {
        let (code, answer) = post_any(&http, &member.url("/workflows"), cycle.clone());
        assert_eq!(code, 400, "{answer}");
        assert_eq!(answer["error"]["code"], "cycle", "{answer}");
        let message = answer["error"]["message"].as_str().unwrap_or_default();
        for key in ["`x`", "`y`", "`z`"] {
            assert!(message.contains(key), "{answer}");
        }
        assert!(!message.contains("free"), "{answer}");
    }
}
