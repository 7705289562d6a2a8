//! What the process tests of the `ironforge` binary share: free ports, a
//! private PMD that is stopped afterwards, and `ironforge node start` as a
//! child process whose API address is read from what it prints.

#![allow(dead_code)] // each test file uses a different part

use std::io::{BufRead, BufReader, Lines};
use std::net::TcpListener;
use std::process::{Child, ChildStdout, Command, Output, Stdio};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_ironforge");

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A PMD port of this test; the daemon on it is stopped when dropped.
pub struct PmdGuard(pub u16);

impl PmdGuard {
    pub fn new() -> PmdGuard {
        PmdGuard(free_port())
    }
}

impl Drop for PmdGuard {
    fn drop(&mut self) {
        let _ = Command::new(BIN)
            .args(["pmd", "kill", "--port", &self.0.to_string()])
            .output();
    }
}

/// An `ironforge node start` process with its API on a free port,
/// SIGKILLed when dropped.
pub struct NodeProcess {
    pub child: Child,
    pub api: String,
    /// What the node prints after its API line (a cluster member's line).
    pub stdout: Lines<BufReader<ChildStdout>>,
}

impl NodeProcess {
    /// Starts `ironforge node start --alias <alias> --http 127.0.0.1:0 <args>`
    /// with `env` on top of the PMD port, `cookie` and warn-level logs.
    pub fn start(
        pmd_port: u16,
        alias: &str,
        cookie: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> NodeProcess {
        let mut child = Command::new(BIN)
            .args(["node", "start", "--alias", alias, "--http", "127.0.0.1:0"])
            .args(args)
            .env("IRONFORGE_PMD_PORT", pmd_port.to_string())
            .env("IRONFORGE_COOKIE", cookie)
            .env("IRONFORGE_LOG", "warn")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn node");
        let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        let _node_line = stdout.next().unwrap().unwrap();
        let api_line = stdout.next().unwrap().unwrap();
        let api = api_line
            .split_whitespace()
            .find(|word| word.starts_with("http://"))
            .unwrap_or_else(|| panic!("no API address in {api_line:?}"))
            .to_owned();
        NodeProcess { child, api, stdout }
    }

    /// `ironforge <args> --api <this node>`.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .args(args)
            .args(["--api", &self.api])
            .output()
            .expect("run ironforge")
    }

    /// [`cli`](Self::cli) with `--json`, which must succeed.
    pub fn cli_json(&self, args: &[&str]) -> Value {
        let mut args = args.to_vec();
        args.push("--json");
        let output = self.cli(&args);
        assert!(output.status.success(), "{args:?}: {output:?}");
        serde_json::from_slice(&output.stdout).expect("JSON output")
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
