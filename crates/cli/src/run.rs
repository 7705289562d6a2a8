//! `ironforge node start` and `ironforge send`: a long-running node that
//! logs what it receives (a single job engine, or a cluster member with
//! `--seed`/`--cluster`), and a one-shot node that sends one message.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use ironforge_cluster::{ClusterConfig, ClusterNode, DEFAULT_REPLICAS};
use ironforge_jobs::engine::{Engine, EngineConfig, Store};
use ironforge_jobs::http::DEFAULT_HTTP_ADDR;
use ironforge_jobs::partition::DEFAULT_PARTITIONS;
use ironforge_jobs::{RedisConfig, WorkerConfig};
use ironforge_node::{
    CookieSource, Node, NodeConfig, NodeEvent, OverflowPolicy, DEFAULT_MAILBOX_CAPACITY,
    DEFAULT_PMD_PORT,
};

use crate::handlers;

/// How long running jobs may finish after Ctrl-C before they are handed back.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// Run a node until Ctrl-C or SIGTERM.
    Start(NodeArgs),
}

/// How a node is started.
#[derive(Debug, Args)]
pub struct NodeArgs {
    /// Name the node registers under with its host's PMD.
    #[arg(long, default_value = "node")]
    alias: String,
    /// Shared secret (default: IRONFORGE_COOKIE, else ~/.ironforge/cookie).
    #[arg(long)]
    cookie: Option<String>,
    /// Port of this host's PMD (started if not running).
    #[arg(long, env = "IRONFORGE_PMD_PORT", default_value_t = DEFAULT_PMD_PORT)]
    pmd_port: u16,
    /// Where to accept other nodes (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Mailbox capacity in messages.
    #[arg(long, default_value_t = DEFAULT_MAILBOX_CAPACITY)]
    mailbox: usize,
    /// What a full mailbox does: drop-newest, drop-oldest or reject.
    #[arg(long, default_value = "drop-newest")]
    overflow: OverflowPolicy,
    /// Join a cluster through this member (`alias`, `alias@host` or a node
    /// id); repeatable, or comma-separated in IRONFORGE_SEEDS. Makes this
    /// node a cluster member (needs --redis).
    #[arg(
        long = "seed",
        value_name = "ADDR",
        env = "IRONFORGE_SEEDS",
        value_delimiter = ','
    )]
    seeds: Vec<String>,
    /// Start as a cluster member even without seeds: the first node of a
    /// new cluster (needs --redis).
    #[arg(long)]
    cluster: bool,
    /// Preference list length of a cluster member (owner plus replicas).
    #[arg(long, default_value_t = DEFAULT_REPLICAS)]
    replicas: usize,
    #[command(flatten)]
    jobs: JobsArgs,
}

/// The job engine a node runs.
#[derive(Debug, Args)]
pub struct JobsArgs {
    /// Redis URL: use Redis Streams instead of the embedded store.
    #[arg(long, env = "IRONFORGE_REDIS_URL")]
    redis: Option<String>,
    /// Key prefix in Redis, so several deployments can share one server.
    #[arg(long, default_value = "ironforge")]
    namespace: String,
    /// Partitions P of the Redis queue (and of a cluster's ring); every
    /// node sharing a namespace must use the same value.
    #[arg(long, default_value_t = DEFAULT_PARTITIONS)]
    partitions: u32,
    /// Directory of the embedded store.
    #[arg(long, env = "IRONFORGE_DATA_DIR", default_value = "ironforge-data")]
    data_dir: PathBuf,
    /// Where the HTTP API listens.
    #[arg(long, env = "IRONFORGE_HTTP", default_value = DEFAULT_HTTP_ADDR)]
    http: SocketAddr,
    /// Jobs run at once by this node.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// How long a job is leased to this node; renewed while it runs, and
    /// handed to another worker this long after this node dies.
    #[arg(long, default_value_t = 30_000)]
    lease_ms: u64,
    /// Run no job engine: messaging only.
    #[arg(long)]
    no_jobs: bool,
}

impl JobsArgs {
    fn redis(&self, url: &str) -> RedisConfig {
        RedisConfig {
            namespace: self.namespace.clone(),
            partitions: self.partitions.max(1),
            ..RedisConfig::new(url)
        }
    }

    fn worker(&self) -> WorkerConfig {
        WorkerConfig {
            concurrency: self.concurrency.max(1),
            lease: Duration::from_millis(self.lease_ms.max(100)),
            ..WorkerConfig::default()
        }
    }

    /// The engine of node `alias` (named in the run log and by `where`).
    fn engine(&self, alias: &str) -> Option<EngineConfig> {
        if self.no_jobs {
            return None;
        }
        let store = match &self.redis {
            Some(url) => Store::Redis(self.redis(url)),
            None => Store::Embedded {
                dir: self.data_dir.clone(),
            },
        };
        let mut config = EngineConfig::new(store);
        config.http = Some(self.http);
        config.worker = Some((handlers::builtin_on(alias), self.worker()));
        Some(config)
    }
}

impl NodeArgs {
    fn config(&self) -> NodeConfig {
        let mut config = NodeConfig::new(&self.alias)
            .pmd_port(self.pmd_port)
            .mailbox(self.mailbox, self.overflow);
        config.listen = self.listen;
        config.pmd_command = Some(crate::pmd::self_as_daemon());
        if let Some(cookie) = &self.cookie {
            config.cookie = CookieSource::Value(cookie.clone());
        }
        config
    }
}

pub async fn node(command: NodeCommand) -> Result<ExitCode> {
    let NodeCommand::Start(mut args) = command;
    // IRONFORGE_SEEDS="" or "a,,b" must not become empty seed addresses.
    args.seeds.retain(|seed| !seed.trim().is_empty());
    if args.cluster || !args.seeds.is_empty() {
        return cluster_node(args).await;
    }
    let node = Node::start(args.config()).await?;
    let engine = match args.jobs.engine(&args.alias) {
        Some(config) => Some(Engine::start(config).await?),
        None => None,
    };
    println!(
        "node '{}' ({}) listening on port {}",
        node.alias(),
        node.id(),
        node.listen_port()
    );
    if let Some(addr) = engine.as_ref().and_then(Engine::http_addr) {
        println!("job API on http://{addr} (handlers: echo, where, sleep, fail)");
    }
    let mut events = node.events();
    serve_main_mailbox(&node);
    let watch = async {
        while let Some(event) = events.next().await {
            match event {
                NodeEvent::PeerJoin(peer) => {
                    tracing::info!(peer = peer.display_name(), "peer joined")
                }
                NodeEvent::PeerLeave(peer) => {
                    tracing::info!(peer = peer.display_name(), "peer left")
                }
            }
        }
    };
    tokio::select! {
        _ = watch => {}
        _ = shutdown_signal() => {}
    }
    if let Some(engine) = engine {
        let report = engine.shutdown(SHUTDOWN_GRACE).await;
        if report.released > 0 {
            tracing::info!(
                released = report.released,
                "unfinished jobs handed back to the queue"
            );
        }
    }
    node.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

/// `node start --seed ...` or `--cluster`: a member of a cluster sharing
/// one Redis, consuming the partitions the ring gives it.
async fn cluster_node(args: NodeArgs) -> Result<ExitCode> {
    let Some(url) = &args.jobs.redis else {
        eprintln!(
            "a cluster node needs the shared queue: add --redis URL (or set IRONFORGE_REDIS_URL)"
        );
        return Ok(ExitCode::from(2));
    };
    if args.jobs.no_jobs {
        eprintln!("--no-jobs cannot be combined with --seed or --cluster");
        return Ok(ExitCode::from(2));
    }
    let mut config = ClusterConfig::new(args.config(), args.jobs.redis(url));
    config.seeds = args.seeds.clone();
    config.http = Some(args.jobs.http);
    config.worker = Some((handlers::builtin_on(&args.alias), args.jobs.worker()));
    config.replicas = args.replicas.max(1);
    let cluster = ClusterNode::start(config)
        .await
        .context("starting the cluster node")?;
    let node = cluster.node();
    println!(
        "node '{}' ({}) listening on port {}",
        node.alias(),
        node.id(),
        node.listen_port()
    );
    if let Some(addr) = cluster.http_addr() {
        println!("job API on http://{addr} (handlers: echo, where, sleep, fail)");
    }
    let seeds = if args.seeds.is_empty() {
        "none: first node".to_owned()
    } else {
        args.seeds.join(", ")
    };
    println!("cluster member {} (seeds: {seeds})", cluster.member());
    serve_main_mailbox(node);
    shutdown_signal().await;
    cluster.shutdown(SHUTDOWN_GRACE).await;
    Ok(ExitCode::SUCCESS)
}

/// Logs what arrives in the node's main mailbox and acknowledges requests.
fn serve_main_mailbox(node: &Node) {
    node.handle(|node, message| async move {
        tracing::info!(from = message.from_alias(), body = %message.body(), "received");
        if message.is_request() {
            let ack = serde_json::json!({"ok": true, "node": node.alias()});
            if let Err(err) = node.reply(&message, &ack).await {
                tracing::warn!(error = %err, "reply failed");
            }
        }
    });
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

#[derive(Debug, Args)]
pub struct SendArgs {
    /// Receiver: `alias`, `alias@host` or a node id.
    to: String,
    /// The message, as JSON.
    json: String,
    /// Wait for a reply and print it.
    #[arg(long)]
    request: bool,
    /// How long to wait for the reply, in ms.
    #[arg(long, default_value_t = 5_000)]
    timeout_ms: u64,
    /// Shared secret (default: IRONFORGE_COOKIE, else ~/.ironforge/cookie).
    #[arg(long)]
    cookie: Option<String>,
    #[arg(long, env = "IRONFORGE_PMD_PORT", default_value_t = DEFAULT_PMD_PORT)]
    pmd_port: u16,
}

pub async fn send(args: SendArgs) -> Result<ExitCode> {
    let body: serde_json::Value = match serde_json::from_str(&args.json) {
        Ok(body) => body,
        Err(err) => {
            eprintln!("the message is not valid JSON: {err}");
            return Ok(ExitCode::from(2));
        }
    };
    let mut config =
        NodeConfig::new(format!("ironforge-cli-{}", std::process::id())).pmd_port(args.pmd_port);
    config.pmd_command = Some(crate::pmd::self_as_daemon());
    if let Some(cookie) = args.cookie {
        config.cookie = CookieSource::Value(cookie);
    }
    let node = Node::start(config)
        .await
        .context("starting a node to send from")?;
    let outcome = if args.request {
        node.request(&args.to, &body, Duration::from_millis(args.timeout_ms))
            .await
            .map(|reply| println!("{}", reply.body()))
    } else {
        node.send(&args.to, &body).await
    };
    node.shutdown().await;
    match outcome {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(err) => {
            eprintln!("{err}");
            Ok(ExitCode::FAILURE)
        }
    }
}
