//! Find-or-start: a first node on a host needs no set-up, because it starts
//! the port-mapper daemon itself.
//!
//! The daemon is spawned detached (its own process group, so it outlives the
//! node and ignores the node's Ctrl-C). Readiness is awaited, not guessed:
//! the daemon prints `ready <addr>` once bound, or exits because another
//! daemon won the port. Either way the address then answers, so two nodes
//! racing end with one daemon.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use crate::client::{PmdClient, PmdError};

/// Name of the daemon executable.
pub const DAEMON_BIN: &str = "ironforge-pmd";

/// Environment variable naming the daemon executable explicitly.
pub const DAEMON_BIN_ENV: &str = "IRONFORGE_PMD_BIN";

/// How long to wait for a spawned daemon to become ready.
pub const SPAWN_TIMEOUT: Duration = Duration::from_secs(10);

/// Errors starting a daemon.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error(
        "no port-mapper daemon at {addr} and no `{DAEMON_BIN}` executable found next to this \
         program or on PATH (set {DAEMON_BIN_ENV} to its path)"
    )]
    NotFound { addr: SocketAddr },
    #[error("could not start {path}: {source}")]
    Spawn {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the port-mapper daemon at {addr} did not become ready: {source}")]
    NotReady { addr: SocketAddr, source: PmdError },
}

/// How the daemon came to be answering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Launch {
    AlreadyRunning,
    Started,
}

/// How to start a daemon: a program and the arguments before `--port P
/// --bind IP`. It must print one line on stdout once it listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonCommand {
    pub program: PathBuf,
    pub args: Vec<String>,
}

impl DaemonCommand {
    /// The `ironforge-pmd` executable, looked up as [`find_daemon_binary`] does.
    pub fn find() -> Option<DaemonCommand> {
        find_daemon_binary().map(|program| DaemonCommand {
            program,
            args: Vec::new(),
        })
    }
}

/// Connects to the daemon at `addr`, starting one first if none answers,
/// with `command` or else the `ironforge-pmd` executable.
pub async fn connect_or_start(
    addr: SocketAddr,
    command: Option<&DaemonCommand>,
) -> Result<(PmdClient, Launch), LaunchError> {
    if let Ok(client) = probe(addr).await {
        return Ok((client, Launch::AlreadyRunning));
    }
    let command = match command {
        Some(command) => command.clone(),
        None => DaemonCommand::find().ok_or(LaunchError::NotFound { addr })?,
    };
    tracing::info!(%addr, program = %command.program.display(), "no port-mapper daemon answering; starting one");
    spawn_and_wait(&command, addr).await?;
    let client = probe(addr)
        .await
        .map_err(|source| LaunchError::NotReady { addr, source })?;
    Ok((client, Launch::Started))
}

/// A client to a daemon that answers a `status` request.
async fn probe(addr: SocketAddr) -> Result<PmdClient, PmdError> {
    let client = PmdClient::connect(addr).await?;
    client.status().await?;
    Ok(client)
}

async fn spawn_and_wait(command: &DaemonCommand, addr: SocketAddr) -> Result<(), LaunchError> {
    let spawn_error = |source| LaunchError::Spawn {
        path: command.program.clone(),
        source,
    };
    let mut child = Command::new(&command.program)
        .args(&command.args)
        .arg("--port")
        .arg(addr.port().to_string())
        .arg("--bind")
        .arg(addr.ip().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .map_err(spawn_error)?;
    // The first stdout line says it listens; end-of-file means the daemon
    // exited, normally because a racing node's daemon took the port.
    let Some(stdout) = child.stdout.take() else {
        return Ok(());
    };
    let mut line = String::new();
    let mut stdout = BufReader::new(stdout);
    let read = stdout.read_line(&mut line);
    match tokio::time::timeout(SPAWN_TIMEOUT, read).await {
        Ok(_) => Ok(()),
        Err(_) => Err(LaunchError::NotReady {
            addr,
            source: PmdError::Timeout(addr),
        }),
    }
    // `child` is dropped without being killed: the daemon lives on, and
    // tokio reaps it if it exits while this process runs.
}

/// Looks for the daemon next to the running executable (and one level up,
/// where cargo puts binaries relative to test executables), then on PATH.
pub fn find_daemon_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(DAEMON_BIN_ENV) {
        return Some(PathBuf::from(path));
    }
    let exe_dir = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_owned));
    let beside = exe_dir
        .iter()
        .flat_map(|dir| [Some(dir.clone()), dir.parent().map(Path::to_owned)])
        .flatten();
    let on_path = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .unwrap_or_default();
    beside
        .chain(on_path)
        .map(|dir| dir.join(DAEMON_BIN))
        .find(|candidate| candidate.is_file())
}
