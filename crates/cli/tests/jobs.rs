//! `ironforge node start` as a job server, driven by `ironforge job` and
//! `ironforge queue` like a user would: the embedded store by default, and
//! Redis Streams shared by two node processes, one of them SIGKILLed in the
//! middle of a job.

mod common;

use std::time::{Duration, Instant};

use common::{NodeProcess, PmdGuard};
use ironforge_jobs::testkit::RedisServer;
use serde_json::Value;

/// A node process serving the job API, killed (SIGKILL) when dropped.
struct JobNode(NodeProcess);

impl JobNode {
    fn start(pmd_port: u16, alias: &str, extra: &[&str]) -> JobNode {
        JobNode(NodeProcess::start(pmd_port, alias, "jobs-test", extra, &[]))
    }

    fn job(&self, args: &[&str]) -> std::process::Output {
        self.0.cli(args)
    }

    fn job_json(&self, args: &[&str]) -> Value {
        self.0.cli_json(args)
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

#[test]
fn node_start_serves_jobs_from_the_embedded_store() {
    let pmd = PmdGuard::new();
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
    let pmd = PmdGuard::new();
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
