//! `ironforge node start` as a job server, driven by `ironforge job` and
//! `ironforge queue` like a user would: the embedded store by default, and
//! Redis Streams shared by two node processes, one of them SIGKILLed in the
//! middle of a job.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use ironforge_jobs::testkit::RedisServer;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_ironforge");

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A node process serving the job API, killed (SIGKILL) when dropped.
struct JobNode {
    child: Child,
    api: String,
}

impl JobNode {
    fn start(pmd_port: u16, alias: &str, extra: &[&str]) -> JobNode {
        let mut child = Command::new(BIN)
            .args(["node", "start", "--alias", alias, "--http", "127.0.0.1:0"])
            .args(extra)
            .env("IRONFORGE_PMD_PORT", pmd_port.to_string())
            .env("IRONFORGE_COOKIE", "jobs-test")
            .env("IRONFORGE_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn node");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let _node_line = lines.next().unwrap().unwrap();
        let api_line = lines.next().unwrap().unwrap();
        let api = api_line
            .split_whitespace()
            .find(|word| word.starts_with("http://"))
            .unwrap_or_else(|| panic!("no API address in {api_line:?}"))
            .to_owned();
        JobNode { child, api }
    }

    fn job(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .args(args)
            .args(["--api", &self.api])
            .output()
            .expect("run ironforge")
    }

    fn job_json(&self, args: &[&str]) -> Value {
        let mut args = args.to_vec();
        args.push("--json");
        let output = self.job(&args);
        assert!(output.status.success(), "{args:?}: {output:?}");
        serde_json::from_slice(&output.stdout).expect("JSON output")
    }

    fn wait_status(&self, id: &str, status: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let job = self.job_json(&["job", "get", id]);
            if job["status"] == status {
                return job;
            }
            assert!(Instant::now() < deadline, "job never {status}: {job}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for JobNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct PmdGuard(u16);

impl Drop for PmdGuard {
    fn drop(&mut self) {
        let _ = Command::new(BIN)
            .args(["pmd", "kill", "--port", &self.0.to_string()])
            .output();
    }
}

#[test]
fn node_start_serves_jobs_from_the_embedded_store() {
    let pmd = PmdGuard(free_port());
    let data = tempfile::tempdir().unwrap();
    let node = JobNode::start(
        pmd.0,
        "jobs",
        &["--data-dir", data.path().to_str().unwrap()],
    );

    let submitted = node.job_json(&["job", "submit", "echo", r#"{"a":1}"#, "--priority", "high"]);
    let id = submitted["id"].as_str().unwrap().to_owned();
    let done = node.wait_status(&id, "completed");
    assert_eq!(done["result"], serde_json::json!({"a": 1}));

    let failing = node.job_json(&["job", "submit", "fail", "{}", "--max-retries", "0"]);
    let dead_id = failing["id"].as_str().unwrap().to_owned();
    node.wait_status(&dead_id, "dead");
    let listed = String::from_utf8(node.job(&["job", "list", "--status", "dead"]).stdout).unwrap();
    assert!(
        listed.contains(&dead_id) && listed.contains("asked to fail"),
        "{listed}"
    );
    assert!(node
        .job(&["job", "retry", &dead_id, "--reset-attempts"])
        .status
        .success());
    node.wait_status(&dead_id, "dead");

    let stats = node.job_json(&["queue", "stats"]);
    assert_eq!(stats["completed"], 1);
    assert_eq!(stats["dead"], 1);

    let delayed = node.job_json(&["job", "submit", "echo", "1", "--delay-ms", "60000"]);
    let delayed_id = delayed["id"].as_str().unwrap();
    assert_eq!(
        node.job_json(&["job", "get", delayed_id])["status"],
        "scheduled"
    );
    assert!(node.job(&["job", "cancel", delayed_id]).status.success());
    assert_eq!(
        node.job_json(&["job", "get", delayed_id])["status"],
        "cancelled"
    );

    // Bad input is exit 2 with the API's reason; an unknown job is exit 1.
    let bad = node.job(&["job", "submit", "echo", "1", "--priority", "urgent"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("urgent"));
    let unknown = node.job(&["job", "get", "01a20935-aea9-7013-9f18-04543ec88fe2"]);
    assert_eq!(unknown.status.code(), Some(1));
}

#[test]
fn a_job_whose_node_is_killed_completes_on_another_node_through_redis() {
    let redis = RedisServer::start();
    let pmd = PmdGuard(free_port());
    let redis_args = [
        "--redis",
        &redis.url(),
        "--namespace",
        "killtest",
        "--lease-ms",
        "1000",
    ];
    let first = JobNode::start(pmd.0, "first", &redis_args);
    let submitted = first.job_json(&["job", "submit", "sleep", r#"{"ms":2000}"#]);
    let id = submitted["id"].as_str().unwrap().to_owned();
    first.wait_status(&id, "running");
    drop(first); // SIGKILL, mid-job

    let second = JobNode::start(pmd.0, "second", &redis_args);
    let job = second.wait_status(&id, "completed");
    assert_eq!(job["deliveries"], 2, "{job}");
    assert_eq!(job["result"]["slept_ms"], 2000);
}
