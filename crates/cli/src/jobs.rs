//! `ironforge job submit|get|cancel|retry|list` and `ironforge queue stats`:
//! thin clients of a node's HTTP API, printing tables for people and the
//! API's own JSON with `--json`.

use std::process::ExitCode;

use anyhow::Result;
use clap::Subcommand;
use ironforge_jobs::{Job, QueueStats};
use reqwest::Method;
use serde_json::{json, Value};

use crate::api::Api;
use crate::time::iso_ms;

#[derive(Debug, Subcommand)]
pub enum JobCommand {
    /// Submit one job.
    Submit {
        /// Handler name (`echo`, `sleep`, `fail` on `ironforge node start`).
        kind: String,
        /// JSON payload.
        #[arg(default_value = "null")]
        payload: String,
        /// critical, high, medium or low.
        #[arg(long, default_value = "medium")]
        priority: String,
        /// Run no sooner than this many ms from now.
        #[arg(long)]
        delay_ms: Option<u64>,
        #[arg(long)]
        max_retries: Option<u32>,
        #[arg(long)]
        timeout_ms: Option<u64>,
        /// A second submission with the same key returns the first job.
        #[arg(long)]
        idempotency_key: Option<String>,
        #[command(flatten)]
        api: Api,
    },
    /// Show one job.
    Get {
        id: String,
        #[command(flatten)]
        api: Api,
    },
    /// Cancel a queued or scheduled job.
    Cancel {
        id: String,
        #[command(flatten)]
        api: Api,
    },
    /// Re-queue a dead job.
    Retry {
        id: String,
        /// Start counting attempts from zero again.
        #[arg(long)]
        reset_attempts: bool,
        #[command(flatten)]
        api: Api,
    },
    /// List jobs in one status.
    List {
        /// queued, scheduled, running, completed, failed, dead or cancelled.
        #[arg(long, default_value = "dead")]
        status: String,
        #[arg(long, default_value_t = 100)]
        limit: usize,
        #[command(flatten)]
        api: Api,
    },
}

#[derive(Debug, Subcommand)]
pub enum QueueCommand {
    /// Jobs per status and priority.
    Stats(Api),
}

pub async fn job(command: JobCommand) -> Result<ExitCode> {
    match command {
        JobCommand::Submit {
            kind,
            payload,
            priority,
            delay_ms,
            max_retries,
            timeout_ms,
            idempotency_key,
            api,
        } => {
            let payload: Value = match serde_json::from_str(&payload) {
                Ok(payload) => payload,
                Err(err) => {
                    eprintln!("the payload is not valid JSON: {err}");
                    return Ok(ExitCode::from(2));
                }
            };
            let mut spec = json!({"kind": kind, "payload": payload, "priority": priority});
            let run_at = delay_ms.map(|delay| now_ms() + delay);
            for (field, value) in [
                ("run_at", run_at.map(Value::from)),
                ("max_retries", max_retries.map(Value::from)),
                ("timeout_ms", timeout_ms.map(Value::from)),
                ("idempotency_key", idempotency_key.map(Value::from)),
            ] {
                if let Some(value) = value {
                    spec[field] = value;
                }
            }
            let answer = api.call(Method::POST, "/jobs", Some(spec)).await?;
            api.print(answer, |v| {
                let note = if v["duplicate"] == true {
                    " (duplicate of an earlier submission)"
                } else {
                    ""
                };
                println!("{}{note}", v["id"].as_str().unwrap_or("?"));
            })
        }
        JobCommand::Get { id, api } => {
            let answer = api.call(Method::GET, &format!("/jobs/{id}"), None).await?;
            api.print(answer, |v| match serde_json::from_value::<Job>(v.clone()) {
                Ok(job) => print_job(&job),
                Err(_) => println!("{v:#}"),
            })
        }
        JobCommand::Cancel { id, api } => {
            let answer = api
                .call(Method::DELETE, &format!("/jobs/{id}"), None)
                .await?;
            api.print(answer, |_| println!("cancelled {id}"))
        }
        JobCommand::Retry {
            id,
            reset_attempts,
            api,
        } => {
            let body = json!({ "reset_attempts": reset_attempts });
            let path = format!("/jobs/{id}/retry");
            let answer = api.call(Method::POST, &path, Some(body)).await?;
            api.print(answer, |_| println!("re-queued {id}"))
        }
        JobCommand::List { status, limit, api } => {
            let path = format!("/jobs?status={status}&limit={limit}");
            let answer = api.call(Method::GET, &path, None).await?;
            api.print(answer, |v| {
                let jobs: Vec<Job> = serde_json::from_value(v["jobs"].clone())
                    .or_else(|_| serde_json::from_value(v.clone()))
                    .unwrap_or_default();
                print_job_table(&jobs);
            })
        }
    }
}

pub async fn queue(command: QueueCommand) -> Result<ExitCode> {
    let QueueCommand::Stats(api) = command;
    let answer = api.call(Method::GET, "/queues/stats", None).await?;
    api.print(answer, |v| {
        match serde_json::from_value::<QueueStats>(v.clone()) {
            Ok(stats) => print_stats(&stats),
            Err(_) => println!("{v:#}"),
        }
    })
}

fn print_job(job: &Job) {
    println!("id:          {}", job.id);
    println!("kind:        {}", job.kind);
    println!("status:      {}", serde_plain(&job.status));
    println!("priority:    {}", serde_plain(&job.priority));
    println!("attempts:    {} of {}", job.attempts, job.max_retries + 1);
    println!("created:     {}", iso_ms(job.created_at));
    println!("run at:      {}", iso_ms(job.run_at));
    if let Some(finished) = job.finished_at {
        println!("finished:    {}", iso_ms(finished));
    }
    if let Some(error) = &job.last_error {
        println!("last error:  {error}");
    }
    if let Some(result) = &job.result {
        println!("result:      {result}");
    }
    println!("payload:     {}", job.payload);
}

fn print_job_table(jobs: &[Job]) {
    if jobs.is_empty() {
        println!("no jobs");
        return;
    }
    println!(
        "{:<36}  {:<16}  {:<9}  {:<8}  {:>8}  LAST ERROR",
        "ID", "KIND", "STATUS", "PRIORITY", "ATTEMPTS"
    );
    for job in jobs {
        println!(
            "{:<36}  {:<16}  {:<9}  {:<8}  {:>8}  {}",
            job.id,
            job.kind,
            serde_plain(&job.status),
            serde_plain(&job.priority),
            job.attempts,
            job.last_error.as_deref().unwrap_or("")
        );
    }
}

fn print_stats(stats: &QueueStats) {
    let q = &stats.queued;
    println!(
        "queued      {:>10}  (critical {}, high {}, medium {}, low {})",
        q.total(),
        q.critical,
        q.high,
        q.medium,
        q.low
    );
    for (name, count) in [
        ("scheduled", stats.scheduled),
        ("retrying", stats.retrying),
        ("running", stats.running),
        ("completed", stats.completed),
        ("dead", stats.dead),
        ("cancelled", stats.cancelled),
    ] {
        println!("{name:<10}  {count:>10}");
    }
}

/// An enum's serde name (`critical`, `dead`, ...).
fn serde_plain<T: serde::Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(Value::String(name)) => name,
        _ => "?".into(),
    }
}

fn now_ms() -> u64 {
    ironforge_jobs::clock::now_ms()
}
