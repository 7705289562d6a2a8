//! The examples a new user copies from must keep working: each runs as a
//! real process (cargo builds examples before running tests), against a
//! private PMD port or API port so the suite can run beside anything.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

fn example(name: &str) -> PathBuf {
    let deps = std::env::current_exe().expect("test executable path");
    let target = deps.parent().and_then(|d| d.parent()).expect("target dir");
    let path = target.join("examples").join(name);
    assert!(
        path.exists(),
        "{} not built; run `cargo test --workspace`",
        path.display()
    );
    path
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs an example to completion (bounded), with a private PMD it starts.
fn run_with_private_pmd(name: &str, args: &[&str]) -> Output {
    let port = free_port();
    let output = Command::new(example(name))
        .args(args)
        .env("IRONFORGE_PMD_PORT", port.to_string())
        .env("IRONFORGE_PMD_BIN", pmd_binary())
        .stdin(Stdio::null())
        .output()
        .expect("run example");
    stop_pmd(port);
    assert!(output.status.success(), "{name} failed: {output:?}");
    output
}

fn pmd_binary() -> PathBuf {
    ironforge::pmd::launcher::find_daemon_binary()
        .expect("ironforge-pmd is built by `cargo test --workspace`")
}

fn stop_pmd(port: u16) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let addr = ([127, 0, 0, 1], port).into();
        if let Ok(pmd) = ironforge::pmd::client::PmdClient::connect(addr).await {
            let _ = pmd.shutdown().await;
        }
    });
}

#[test]
fn ping_pong_gets_five_answers() {
    let output = run_with_private_pmd("ping_pong", &[]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    for n in 1..=5 {
        assert!(
            stdout.contains(&format!("ping {n} -> {{\"pong\":{n}}}")),
            "{stdout}"
        );
    }
}

#[test]
fn without_a_daemon_executable_a_node_serves_the_pmd_itself() {
    let port = free_port();
    let output = Command::new(example("ping_pong"))
        .env("IRONFORGE_PMD_PORT", port.to_string())
        .env("IRONFORGE_PMD_BIN", "")
        .output()
        .expect("run example");
    assert!(output.status.success(), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stdout).contains("ping 5 -> {\"pong\":5}"));
    // The daemon lived and died with the example's process.
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
}

#[test]
fn multi_node_delivers_all_to_all() {
    let output = run_with_private_pmd("multi_node", &["4"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("node-0 received from: node-1, node-2, node-3"),
        "{stdout}"
    );
    assert!(
        stdout.contains("node-3 received from: node-0, node-1, node-2"),
        "{stdout}"
    );
}

#[test]
fn submit_jobs_runs_against_simple_worker() {
    let port = free_port();
    let data = tempfile::tempdir().unwrap();
    let mut worker = Command::new(example("simple_worker"))
        .env("IRONFORGE_HTTP", format!("127.0.0.1:{port}"))
        .env("IRONFORGE_DATA_DIR", data.path())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start simple_worker");
    // The worker says so once its API listens.
    let mut ready = String::new();
    BufReader::new(worker.stdout.take().unwrap())
        .read_line(&mut ready)
        .unwrap();
    assert!(
        ready.contains("worker ready"),
        "simple_worker said {ready:?}"
    );
    let output = Command::new(example("submit_jobs"))
        .env("IRONFORGE_API", format!("http://127.0.0.1:{port}"))
        .output()
        .expect("run submit_jobs");
    let _ = worker.kill();
    let _ = worker.wait();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    assert!(stdout.contains("submitted 5 jobs"), "{stdout}");
    assert_eq!(stdout.matches(" completed -> ").count(), 4, "{stdout}");
    assert!(
        stdout.contains("dead: \"no valid `to` address\""),
        "{stdout}"
    );
}

#[test]
fn cluster_example_runs_jobs_and_a_workflow_on_three_members() {
    let output = Command::new(example("cluster"))
        .env_remove("REDIS_URL")
        .stdin(Stdio::null())
        .output()
        .expect("run example");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "cluster failed: {output:?}");
    assert!(stdout.contains("3 members agree"), "{stdout}");
    assert!(stdout.matches(" ran on ").count() >= 3, "{stdout}");
    assert!(stdout.contains(": completed"), "{stdout}");
    assert!(stdout.contains("publish   completed on"), "{stdout}");
}
