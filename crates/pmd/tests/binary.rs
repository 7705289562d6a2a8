//! The `ironforge-pmd` process: ready line, shutdown exit status, and the
//! taken-port exit code a launcher relies on.

mod common;

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use common::{Client, PATIENCE};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Starts the binary on an ephemeral port and reads its `ready` line.
async fn spawn_pmd() -> (Child, SocketAddr) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ironforge-pmd"))
        .args(["--port", "0", "--ttl-ms", "15000"])
        .env("IRONFORGE_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(PATIENCE, lines.next_line())
        .await
        .expect("ready line in time")
        .unwrap()
        .expect("a ready line");
    let addr = line
        .strip_prefix("ready ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .parse()
        .unwrap();
    (child, addr)
}

async fn exit_code(child: &mut Child) -> Option<i32> {
    tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("process exited in time")
        .unwrap()
        .code()
}

#[tokio::test]
async fn binary_exits_zero_after_shutdown_with_nodes_connected() {
    let (mut child, addr) = spawn_pmd().await;
    let mut node = Client::connect(addr).await;
    assert_eq!(
        node.register("id-1", "web", 9001).await,
        json!({"success": true})
    );
    let mut watcher = Client::connect(addr).await;
    watcher.request("watch", json!({})).await;

    let mut admin = Client::connect(addr).await;
    assert_eq!(
        admin.request("shutdown", json!({})).await,
        json!({"success": true})
    );
    assert_eq!(exit_code(&mut child).await, Some(0));
    node.expect_closed().await;
}

#[tokio::test]
async fn second_daemon_on_a_taken_port_exits_with_code_2() {
    let (mut first, addr) = spawn_pmd().await;
    let second = Command::new(env!("CARGO_BIN_EXE_ironforge-pmd"))
        .args(["--port", &addr.port().to_string()])
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(10), second)
        .await
        .expect("second daemon exited in time")
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(output.stdout.is_empty(), "no ready line");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("port in use"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");

    // The first daemon was not disturbed.
    let mut cli = Client::connect(addr).await;
    assert_eq!(cli.request("list", json!({})).await, json!({"nodes": []}));
    cli.request("shutdown", json!({})).await;
    assert_eq!(exit_code(&mut first).await, Some(0));
}
