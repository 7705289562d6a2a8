//! `ironforge pmd start|status|list|resolve|kill`. Human output is shaped
//! like distflow's CLI so scripts written for one read the other; `--json`
//! prints the daemon's own payloads.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, Subcommand};
use ironforge_pmd::client::{PmdClient, PmdError};
use ironforge_pmd::launcher::{connect_or_start, DaemonCommand, Launch};
use ironforge_pmd::protocol::NodeInfo;
use ironforge_pmd::server::{run_daemon, DaemonArgs, DEFAULT_PORT};

use crate::time::{human_duration_ms, iso_ms};

#[derive(Debug, Subcommand)]
pub enum PmdCommand {
    /// Start the daemon (detached unless --foreground).
    Start {
        #[command(flatten)]
        daemon: DaemonArgs,
        /// Run in this process instead of detaching.
        #[arg(long)]
        foreground: bool,
    },
    /// Is the daemon running, since when, with how many nodes.
    Status(Target),
    /// Registered nodes.
    List(Target),
    /// Where a node (alias or node id) listens.
    Resolve {
        alias: String,
        #[command(flatten)]
        target: Target,
    },
    /// Stop the daemon.
    Kill(Target),
}

/// Which daemon to talk to, and how to print.
#[derive(Debug, Args)]
pub struct Target {
    /// The daemon's port.
    #[arg(long, env = "IRONFORGE_PMD_PORT", default_value_t = DEFAULT_PORT)]
    port: u16,
    /// The daemon's host.
    #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    host: IpAddr,
    /// Print JSON for scripts.
    #[arg(long)]
    json: bool,
}

impl Target {
    fn addr(&self) -> SocketAddr {
        SocketAddr::new(self.host, self.port)
    }
}

pub async fn run(command: PmdCommand) -> Result<ExitCode> {
    match command {
        PmdCommand::Start { daemon, foreground } => start(daemon, foreground).await,
        PmdCommand::Status(target) => with_client(&target, |pmd| status(pmd, &target)).await,
        PmdCommand::List(target) => with_client(&target, |pmd| list(pmd, &target)).await,
        PmdCommand::Resolve { alias, target } => {
            with_client(&target, |pmd| resolve(pmd, &alias, &target)).await
        }
        PmdCommand::Kill(target) => with_client(&target, |pmd| kill(pmd, &target)).await,
    }
}

async fn start(daemon: DaemonArgs, foreground: bool) -> Result<ExitCode> {
    let config = daemon.config();
    if foreground {
        run_daemon(config, |addr| println!("PMD listening on {addr}")).await?;
        return Ok(ExitCode::SUCCESS);
    }
    match connect_or_start(config.bind, Some(&self_as_daemon())).await? {
        (_, Launch::AlreadyRunning) => println!("PMD already running on {}", config.bind),
        (_, Launch::Started | Launch::InProcess(_)) => println!("PMD started on {}", config.bind),
    }
    Ok(ExitCode::SUCCESS)
}

/// This very executable, run as `ironforge pmd start --foreground`, is a
/// daemon: one binary is enough on a host. `ironforge-pmd` is not needed.
pub fn self_as_daemon() -> DaemonCommand {
    let program = std::env::current_exe().unwrap_or_else(|_| "ironforge".into());
    DaemonCommand {
        program,
        args: ["pmd", "start", "--foreground"].map(String::from).to_vec(),
    }
}

async fn with_client<F, Fut>(target: &Target, then: F) -> Result<ExitCode>
where
    F: FnOnce(PmdClient) -> Fut,
    Fut: std::future::Future<Output = Result<ExitCode>>,
{
    match PmdClient::connect(target.addr()).await {
        Ok(pmd) => then(pmd).await,
        Err(err) => {
            eprintln!("PMD is not running on port {} ({err})", target.port);
            Ok(ExitCode::FAILURE)
        }
    }
}

async fn status(pmd: PmdClient, target: &Target) -> Result<ExitCode> {
    let status = pmd.status().await?;
    if target.json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        println!("PMD is running on port {}", target.port);
        println!("  Version: {}", status.version);
        println!("  PID: {}", status.pid);
        println!("  Uptime: {}", human_duration_ms(status.uptime_ms));
        println!("  Registered nodes: {}", status.node_count);
    }
    Ok(ExitCode::SUCCESS)
}

async fn list(pmd: PmdClient, target: &Target) -> Result<ExitCode> {
    let nodes = pmd.list().await?;
    if target.json {
        println!("{}", serde_json::to_string_pretty(&nodes)?);
    } else if nodes.is_empty() {
        println!("No nodes registered");
    } else {
        println!("Registered nodes ({}):", nodes.len());
        for node in &nodes {
            print_node_block(node);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_node_block(node: &NodeInfo) {
    println!("  - {}", node.display_name());
    println!("    Node ID: {}", node.node_id);
    println!("    Address: {}:{}", node.host, node.port);
    println!("    Last heartbeat: {}", iso_ms(node.last_heartbeat));
}

async fn resolve(pmd: PmdClient, alias: &str, target: &Target) -> Result<ExitCode> {
    match pmd.resolve(alias).await {
        Ok(node) if target.json => println!("{}", serde_json::to_string_pretty(&node)?),
        Ok(node) => {
            println!("Resolved '{alias}':");
            println!("  Node ID: {}", node.node_id);
            println!("  Address: {}:{}", node.host, node.port);
        }
        Err(PmdError::NotFound(_)) => {
            eprintln!("Alias '{alias}' not found");
            return Ok(ExitCode::FAILURE);
        }
        Err(err) => return Err(err.into()),
    }
    Ok(ExitCode::SUCCESS)
}

async fn kill(pmd: PmdClient, target: &Target) -> Result<ExitCode> {
    pmd.shutdown().await?;
    if target.json {
        println!("{}", serde_json::json!({"success": true}));
    } else {
        println!("PMD on port {} stopped", target.port);
    }
    Ok(ExitCode::SUCCESS)
}
