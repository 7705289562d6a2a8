//! Three cluster nodes sharing one Redis, in one process: jobs submitted to
//! any node run on the node that owns their partition, and a workflow runs
//! across the cluster. Prints where each job ran and the workflow's
//! per-job states, then leaves.
//!
//! Run: `cargo run --example cluster`. Starts its own `redis-server` on a
//! free port (install it with `sudo apt-get install redis-server`), or uses
//! `REDIS_URL`; runs its own port-mapper daemon on a free port, so it does
//! not touch a PMD already running on this host.

use ironforge::jobs::testkit::RedisServer;
use std::time::{Duration, Instant};

use anyhow::bail;
use ironforge::cluster::{ClusterConfig, ClusterNode};
use ironforge::jobs::workflow::{workflow_job_id, WorkflowJobSpec, WorkflowSpec, WorkflowStatus};
use ironforge::jobs::{JobId, JobSpec, JobStatus, RedisConfig, Registry, WorkerConfig};
use ironforge::node::NodeConfig;
use ironforge::pmd::server::{Daemon, DaemonConfig};
use serde_json::json;

const MEMBERS: [&str; 3] = ["a", "b", "c"];
const JOBS: usize = 9;
const WAIT: Duration = Duration::from_secs(15);

fn handlers(name: &str) -> Registry {
    let mut registry = Registry::new();
    for kind in ["where", "fetch", "resize", "thumbnail", "publish"] {
        let node = name.to_owned();
        registry.register_fn(kind, move |ctx| {
            let node = node.clone();
            async move { Ok(json!({ "node": node, "payload": ctx.payload() })) }
        });
    }
    registry
}

/// The member a completed job ran on.
async fn ran_on(node: &ClusterNode, id: JobId) -> anyhow::Result<String> {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(job) = node.client().get(id).await? {
            if job.status == JobStatus::Completed {
                let result = job.result.unwrap_or_default();
                return Ok(result["node"].as_str().unwrap_or("?").to_owned());
            }
            if Instant::now() > deadline {
                bail!("job {id} is still {:?}", job.status);
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let (redis_url, _redis) = RedisServer::url_or_start().map_err(anyhow::Error::msg)?;
    let daemon = Daemon::bind(DaemonConfig {
        bind: "127.0.0.1:0".parse()?,
        ..DaemonConfig::default()
    })
    .await?;
    let pmd_port = daemon.local_addr().port();
    tokio::spawn(daemon.run());

    // One process for the demo; normally each member is its own program.
    let namespace = format!("example-cluster-{}", std::process::id());
    let mut nodes = Vec::new();
    for name in MEMBERS {
        let mut node = NodeConfig::new(name)
            .cookie("example")
            .pmd_port(pmd_port)
            .allow_multiple();
        node.auto_start_pmd = false;
        let redis = RedisConfig {
            namespace: namespace.clone(),
            ..RedisConfig::new(&redis_url)
        };
        let mut config = ClusterConfig::new(node, redis);
        config.seeds = vec![MEMBERS[0].to_owned()];
        config.worker = Some((handlers(name), WorkerConfig::default()));
        nodes.push(ClusterNode::start(config).await?);
    }
    let started = Instant::now();
    for node in &nodes {
        node.await_members(&MEMBERS, WAIT).await?;
    }
    println!("3 members agree after {:?}", started.elapsed());
    for node in &nodes {
        println!(
            "{} owns partitions {:?}",
            node.member(),
            node.owned_partitions()
        );
    }

    // Jobs submitted to every node run where their partition is owned.
    let mut submitted = Vec::new();
    for i in 0..JOBS {
        let node = &nodes[i % nodes.len()];
        let id = node
            .client()
            .submit(JobSpec::new("where", json!({ "i": i })))
            .await?;
        submitted.push((node.member().to_owned(), id));
    }
    for (to, id) in &submitted {
        let partition = nodes[0]
            .client()
            .get(*id)
            .await?
            .map_or(0, |job| job.partition);
        let on = ran_on(&nodes[0], *id).await?;
        println!("job {id} (partition {partition}, submitted to {to}) ran on {on}");
    }

    // A small workflow: fetch, then resize and thumbnail, then publish.
    let job = |key: &str, deps: &[&str]| {
        WorkflowJobSpec::new(key, JobSpec::new(key, json!({"image": 7})), deps.to_vec())
    };
    let spec = WorkflowSpec {
        name: Some("image".into()),
        jobs: vec![
            job("fetch", &[]),
            job("resize", &["fetch"]),
            job("thumbnail", &["fetch"]),
            job("publish", &["resize", "thumbnail"]),
        ],
        ..WorkflowSpec::default()
    };
    let workflow = nodes[1].engine().workflows().submit(spec).await?;
    let deadline = Instant::now() + WAIT;
    let summary = loop {
        // Any member answers: workflow state is replicated.
        if let Some(summary) = nodes[2].engine().workflows().get(workflow).await? {
            if summary.state.status != WorkflowStatus::Running {
                break summary;
            }
        }
        if Instant::now() > deadline {
            bail!("workflow {workflow} did not finish within {WAIT:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    println!("workflow {workflow}: {}", summary.state.status);
    // A workflow's jobs share its partition, so one member runs them all.
    for key in ["fetch", "resize", "thumbnail", "publish"] {
        let state = summary
            .state
            .jobs
            .get(key)
            .map_or("?", |r| r.state.as_str());
        let on = ran_on(&nodes[0], workflow_job_id(workflow, key)).await?;
        println!("  {key:<9} {state} on {on}");
    }

    for node in nodes {
        node.shutdown(Duration::from_secs(2)).await;
    }
    Ok(())
}
