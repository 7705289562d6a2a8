//! The `ironforge` binary as users run it: real processes, a real PMD on a
//! free port, output shaped like distflow's CLI, exit codes that mean
//! something, and a PMD that starts itself and comes back after SIGKILL.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_ironforge");
const COOKIE: &str = "cli-test-cookie";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn ironforge(port: u16, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("IRONFORGE_PMD_PORT", port.to_string())
        .env("IRONFORGE_COOKIE", COOKIE)
        .env("IRONFORGE_LOG", "warn")
        .output()
        .expect("run ironforge")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A node process, killed when dropped.
struct NodeProcess(Child);

impl NodeProcess {
    /// Starts `ironforge node start` (messaging only) and waits for its
    /// "listening" line.
    fn start(port: u16, alias: &str) -> NodeProcess {
        let mut child = Command::new(BIN)
            .args(["node", "start", "--alias", alias, "--no-jobs"])
            .env("IRONFORGE_PMD_PORT", port.to_string())
            .env("IRONFORGE_COOKIE", COOKIE)
            .env("IRONFORGE_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn node");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(line.contains("listening on port"), "node said {line:?}");
        NodeProcess(child)
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Stops the PMD on `port` when dropped, whatever the test did.
struct PmdGuard(u16);

impl Drop for PmdGuard {
    fn drop(&mut self) {
        let _ = ironforge(self.0, &["pmd", "kill"]);
    }
}

fn pmd_pid(port: u16) -> Option<u32> {
    let out = ironforge(port, &["pmd", "status", "--json"]);
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    status["pid"].as_u64().map(|pid| pid as u32)
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Daemon processes serving `port` (a racing loser must have exited).
fn daemons_on(port: u16) -> usize {
    let needle = format!("pmd\0start\0--foreground\0--port\0{port}\0");
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|entry| std::fs::read(entry.ok()?.path().join("cmdline")).ok())
        .filter(|cmdline| String::from_utf8_lossy(cmdline).contains(&needle))
        .count()
}

#[test]
fn pmd_commands_print_like_distflow_and_exit_meaningfully() {
    let port = free_port();
    let _guard = PmdGuard(port);

    let down = ironforge(port, &["pmd", "status"]);
    assert_eq!(down.status.code(), Some(1));
    let reason = String::from_utf8_lossy(&down.stderr);
    assert_eq!(reason.lines().count(), 1, "one-line reason: {reason}");
    assert!(reason.contains("not running"), "{reason}");

    let started = ironforge(port, &["pmd", "start"]);
    assert!(started.status.success(), "{started:?}");
    assert!(stdout(&ironforge(port, &["pmd", "list"])).contains("No nodes registered"));

    let _node = NodeProcess::start(port, "alpha");
    let list = stdout(&ironforge(port, &["pmd", "list"]));
    assert!(list.contains("  - alpha\n"), "{list}");
    assert!(list.contains("    Node ID: "), "{list}");
    assert!(list.contains("    Address: 127.0.0.1:"), "{list}");
    assert!(list.contains("    Last heartbeat: 20"), "{list}");

    let resolved = stdout(&ironforge(port, &["pmd", "resolve", "alpha"]));
    assert!(
        resolved.starts_with("Resolved 'alpha':\n  Node ID: "),
        "{resolved}"
    );
    assert!(resolved.contains("  Address: 127.0.0.1:"), "{resolved}");

    let missing = ironforge(port, &["pmd", "resolve", "beta"]);
    assert_eq!(missing.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&missing.stderr).trim(),
        "Alias 'beta' not found"
    );

    let json: serde_json::Value =
        serde_json::from_slice(&ironforge(port, &["pmd", "list", "--json"]).stdout).unwrap();
    assert_eq!(json[0]["alias"], "alpha");
    let status = stdout(&ironforge(port, &["pmd", "status"]));
    assert!(status.contains("Registered nodes: 1"), "{status}");

    let reply = ironforge(port, &["send", "alpha", r#"{"hi":1}"#, "--request"]);
    assert!(reply.status.success(), "{reply:?}");
    assert!(
        stdout(&reply).contains(r#""ok":true"#),
        "{}",
        stdout(&reply)
    );
    let bad = ironforge(port, &["send", "alpha", "{not json"]);
    assert_eq!(bad.status.code(), Some(2));
    let nobody = ironforge(port, &["send", "nobody", "{}"]);
    assert_eq!(nobody.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&nobody.stderr).contains("nobody"));
}

#[test]
fn pmd_kill_stops_the_daemon() {
    let port = free_port();
    let _guard = PmdGuard(port);
    assert!(ironforge(port, &["pmd", "start"]).status.success());
    let pid = pmd_pid(port).expect("daemon answers");
    let killed = ironforge(port, &["pmd", "kill"]);
    assert!(killed.status.success(), "{killed:?}");
    wait_until("the daemon process to exit", || {
        !std::path::Path::new(&format!("/proc/{pid}")).exists()
            || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .map(|stat| stat.contains(") Z "))
                .unwrap_or(true)
    });
    assert_eq!(ironforge(port, &["pmd", "status"]).status.code(), Some(1));
}

#[test]
fn two_nodes_racing_start_one_daemon_and_both_register() {
    let port = free_port();
    let _guard = PmdGuard(port);
    let (a, b) = std::thread::scope(|scope| {
        let a = scope.spawn(|| NodeProcess::start(port, "racer-a"));
        let b = scope.spawn(|| NodeProcess::start(port, "racer-b"));
        (a.join().unwrap(), b.join().unwrap())
    });
    let list = stdout(&ironforge(port, &["pmd", "list"]));
    assert!(
        list.contains("racer-a") && list.contains("racer-b"),
        "{list}"
    );
    assert_eq!(daemons_on(port), 1);
    drop((a, b));
}

#[test]
fn a_killed_daemon_is_restarted_under_a_running_node() {
    let port = free_port();
    let _guard = PmdGuard(port);
    let _node = NodeProcess::start(port, "survivor");
    let first = pmd_pid(port).expect("the node started a daemon");
    // SIGKILL: no chance to say goodbye.
    assert!(Command::new("kill")
        .args(["-9", &first.to_string()])
        .status()
        .unwrap()
        .success());
    wait_until("a new daemon listing the node", || {
        pmd_pid(port).is_some_and(|pid| pid != first)
            && stdout(&ironforge(port, &["pmd", "list"])).contains("survivor")
    });
    let reply = ironforge(port, &["send", "survivor", "1", "--request"]);
    assert!(reply.status.success(), "{reply:?}");
}
