//! `ironforge`: the command line of IronForge — the port-mapper daemon,
//! nodes, and (through the HTTP API) jobs.
//!
//! Exit codes: 0 success, 1 the thing asked for is absent or unreachable
//! (one line on stderr says which), 2 bad usage.

mod api;
mod cluster;
mod handlers;
mod jobs;
mod pmd;
mod run;
mod time;
mod workflow;

use std::process::ExitCode;

/// jemalloc rather than glibc malloc: a worker allocates and frees a few
/// small buffers per job, and glibc's free paths took about a fifth of its
/// CPU (docs/perf/redis.md).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use clap::{Parser, Subcommand};
use ironforge_pmd::server::LogFormat;

#[derive(Debug, Parser)]
#[command(
    name = "ironforge",
    version,
    about = "Erlang-style nodes and a distributed job engine"
)]
struct Cli {
    /// Log line format (logs go to stderr).
    #[arg(long, value_enum, global = true, default_value_t = LogFormat::Human)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The per-host port-mapper daemon.
    #[command(subcommand)]
    Pmd(pmd::PmdCommand),
    /// Run a node.
    #[command(subcommand)]
    Node(run::NodeCommand),
    /// Send one JSON message to a node (`alias`, `alias@host` or a node id).
    Send(run::SendArgs),
    /// Jobs, through a node's HTTP API.
    #[command(subcommand)]
    Job(jobs::JobCommand),
    /// Queues, through a node's HTTP API.
    #[command(subcommand)]
    Queue(jobs::QueueCommand),
    /// Workflows (DAGs of jobs), through a node's HTTP API.
    #[command(subcommand)]
    Workflow(workflow::WorkflowCommand),
    /// A cluster's members and ring, through a cluster node's HTTP API.
    #[command(subcommand)]
    Cluster(cluster::ClusterCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    ironforge_pmd::logging::init(cli.log_format);
    if matches!(
        cli.command,
        Command::Job(_) | Command::Queue(_) | Command::Workflow(_) | Command::Cluster(_)
    ) {
        quit_quietly_on_closed_pipe();
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("ironforge: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Pmd(command) => pmd::run(command).await,
            Command::Node(command) => run::node(command).await,
            Command::Send(args) => run::send(args).await,
            Command::Job(command) => jobs::job(command).await,
            Command::Queue(command) => jobs::queue(command).await,
            Command::Workflow(command) => workflow::workflow(command).await,
            Command::Cluster(command) => cluster::cluster(command).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("ironforge: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// `ironforge workflow history <id> | head` should end like any Unix tool
/// when `head` stops reading, not panic in `println!`: restore the default
/// SIGPIPE action (Rust ignores it) for the one-shot API clients. Long-lived
/// commands keep ignoring it, so a closed stdout cannot kill a node.
fn quit_quietly_on_closed_pipe() {
    #[cfg(unix)]
    // SAFETY: called once at start-up, before any other thread exists;
    // SIG_DFL is a valid action for SIGPIPE.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
