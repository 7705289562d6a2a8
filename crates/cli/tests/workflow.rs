//! `ironforge workflow ...` against a real `ironforge node start` process:
//! submit a workflow file, follow it with `get`, read its `history`, and
//! rebuild past states with `replay --until` on the client side.

mod common;

use std::process::Output;
use std::time::{Duration, Instant};

use common::{free_port, NodeProcess, PmdGuard};
use serde_json::{json, Value};

/// A node process serving the API, with its own PMD; both stopped when dropped.
struct Node {
    process: NodeProcess,
    _pmd: PmdGuard,
}

impl Node {
    fn start(data: &std::path::Path) -> Node {
        let pmd = PmdGuard(free_port());
        let data = data.to_str().unwrap();
        let process =
            NodeProcess::start(pmd.0, "flows", "workflow-test", &["--data-dir", data], &[]);
        Node { process, _pmd: pmd }
    }

    fn run(&self, args: &[&str]) -> Output {
        self.process.cli(args)
    }

    fn json(&self, args: &[&str]) -> Value {
        self.process.cli_json(args)
    }
}

fn text(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn submit_get_history_and_replay_a_workflow_file() {
    let data = tempfile::tempdir().unwrap();
    let node = Node::start(data.path());
    let file = data.path().join("flow.json");
    let spec = json!({
        "name": "cli-flow",
        "jobs": [
            {"key": "fetch", "spec": {"kind": "echo", "payload": {"step": 1}}},
            {"key": "left", "spec": {"kind": "echo"}, "depends_on": ["fetch"]},
            {"key": "right", "spec": {"kind": "echo"}, "depends_on": ["fetch"]},
            {"key": "join", "spec": {"kind": "echo"}, "depends_on": ["left", "right"]}
        ]
    });
    std::fs::write(&file, spec.to_string()).unwrap();

    let submitted = node.run(&["workflow", "submit", file.to_str().unwrap()]);
    assert!(submitted.status.success(), "{submitted:?}");
    let id = text(&submitted).trim().to_owned();
    assert_eq!(id.len(), 36, "{id}");

    let deadline = Instant::now() + Duration::from_secs(30);
    let done = loop {
        let got = node.json(&["workflow", "get", &id]);
        if got["status"] != "running" {
            break got;
        }
        assert!(Instant::now() < deadline, "never finished: {got}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["jobs"]["join"]["state"], "completed");

    let table = text(&node.run(&["workflow", "get", &id]));
    assert!(
        table.contains("cli-flow") && table.contains("completed"),
        "{table}"
    );
    let join_job = done["jobs"]["join"]["job_id"].as_str().unwrap();
    assert!(table.contains(join_job), "{table}");

    let history = node.json(&["workflow", "history", &id]);
    let events = history["events"].as_array().unwrap();
    let last = events.len() as u64;
    assert_eq!(events[0]["kind"], "created");
    let listed = text(&node.run(&["workflow", "history", &id]));
    assert_eq!(listed.lines().count() as u64, last + 1, "{listed}");

    // Right after the first job was queued: fetch queued, the rest pending.
    let early = node.json(&["workflow", "replay", &id, "--until", "2"]);
    assert_eq!(early["seq"], 2);
    assert_eq!(early["status"], "running");
    assert_eq!(early["jobs"]["fetch"]["state"], "queued");
    assert_eq!(early["jobs"]["join"]["state"], "pending");
    let end = node.json(&["workflow", "replay", &id, "--until", &last.to_string()]);
    assert_eq!(end["status"], "completed");
    assert_eq!(end["counts"], done["counts"]);
    let human = text(&node.run(&["workflow", "replay", &id, "--until", "2"]));
    assert!(human.contains("replayed up to seq 2"), "{human}");

    let beyond = node.run(&[
        "workflow",
        "replay",
        &id,
        "--until",
        &(last + 1).to_string(),
    ]);
    assert_eq!(beyond.status.code(), Some(2), "{beyond:?}");
    let unknown = node.run(&["workflow", "get", "0190c5a4-0000-7000-8000-000000000000"]);
    assert_eq!(unknown.status.code(), Some(1), "{unknown:?}");

    let cyclic = data.path().join("cycle.json");
    let cycle = json!({"jobs": [
        {"key": "a", "spec": {"kind": "echo"}, "depends_on": ["b"]},
        {"key": "b", "spec": {"kind": "echo"}, "depends_on": ["a"]}
    ]});
    std::fs::write(&cyclic, cycle.to_string()).unwrap();
    let refused = node.run(&["workflow", "submit", cyclic.to_str().unwrap()]);
    assert_eq!(refused.status.code(), Some(2), "{refused:?}");
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("cycle"),
        "{refused:?}"
    );

    // Cancel a workflow whose first job waits an hour in the queue.
    let later = ironforge_jobs::clock::now_ms() + 3_600_000;
    let delayed = data.path().join("delayed.json");
    let spec = json!({"jobs": [
        {"key": "wait", "spec": {"kind": "echo", "run_at": later}},
        {"key": "then", "spec": {"kind": "echo"}, "depends_on": ["wait"]}
    ]});
    std::fs::write(&delayed, spec.to_string()).unwrap();
    let id = text(&node.run(&["workflow", "submit", delayed.to_str().unwrap()]))
        .trim()
        .to_owned();
    let cancelled = node.run(&["workflow", "cancel", &id]);
    assert!(cancelled.status.success(), "{cancelled:?}");
    assert!(text(&cancelled).contains("cancelled"), "{cancelled:?}");
}
