//! Find-or-start: a first node on a host needs no set-up, because it starts
//! the port-mapper daemon itself — a detached `ironforge-pmd` if one can be
//! found, else a daemon served inside its own process.
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

use tokio_util::sync::CancellationToken;

use crate::client::{PmdClient, PmdError};
use crate::server::{Daemon, DaemonConfig, PmdServerError};

/// Name of the daemon executable.
pub const DAEMON_BIN: &str = "ironforge-pmd";

/// Environment variable naming the daemon executable explicitly; set but
/// empty, no executable is used and a first node serves the daemon itself. set but
/// empty, no executable is used and a first node serves the daemon itself.
pub const DAEMON_BIN_ENV: &str = "IRONFORGE_PMD_BIN";

/// How long to wait for a spawned daemon to become ready.
pub const SPAWN_TIMEOUT: Duration = Duration::from_secs(10);

/// Errors starting a daemon.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("could not start {path}: {source}")]
    Spawn {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("could not serve a port-mapper daemon at {addr} in this process: {source}")]
    Host {
        addr: SocketAddr,
        source: PmdServerError,
    },
    #[error("the port-mapper daemon at {addr} did not become ready: {source}")]
    NotReady { addr: SocketAddr, source: PmdError },
}

/// How the daemon came to be answering.
#[derive(Debug, Clone)]
pub enum Launch {
    AlreadyRunning,
    /// A detached daemon process was started.
    Started,
    /// This process serves the registry; cancel the token to stop it.
    InProcess(CancellationToken),
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
    let launch = match command.cloned().or_else(DaemonCommand::find) {
        Some(command) => {
            tracing::info!(%addr, program = %command.program.display(), "no port-mapper daemon answering; starting one");
            spawn_and_wait(&command, addr).await?;
            Launch::Started
        }
        None => host_in_process(addr).await?,
    };
    let client = probe(addr)
        .await
        .map_err(|source| LaunchError::NotReady { addr, source })?;
    Ok((client, launch))
}

/// Without a daemon executable (a program built alone, say), this process
/// serves the registry itself until the returned token is cancelled; when
/// it exits, its nodes' peers find or start another.
async fn host_in_process(addr: SocketAddr) -> Result<Launch, LaunchError> {
    let config = DaemonConfig {
        bind: addr,
        ..DaemonConfig::default()
    };
    match Daemon::bind(config).await {
        Ok(daemon) => {
            tracing::info!(%addr, "no port-mapper daemon and no `{DAEMON_BIN}` executable; serving one in this process");
            let stop = daemon.shutdown_handle();
            tokio::spawn(daemon.run());
            Ok(Launch::InProcess(stop))
        }
        // Another process won the port in the meantime.
        Err(PmdServerError::AddrInUse { .. }) => Ok(Launch::AlreadyRunning),
        Err(err) => Err(LaunchError::Host { addr, source: err }),
    }
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
    // Set but empty: use no executable (the daemon is served in-process).
    if let Some(path) = std::env::var_os(DAEMON_BIN_ENV) {
        return (!path.is_empty()).then(|| PathBuf::from(path));
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
