//! `ironforge workflow submit|get|history|replay|cancel`: thin clients of a
//! node's `/workflows` API. `replay` rebuilds a past state on this side from
//! the history alone (the same `replay` the engine uses), so what it prints
//! does not depend on the server's view.
//!
//! Exit codes: 0 success, 1 the workflow is unknown or the API unreachable,
//! 2 bad usage or input the API refused (the message names the problem).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Subcommand;
use ironforge_jobs::workflow::{
    replay, workflow_job_id, WorkflowEvent, WorkflowId, WorkflowSpec, WorkflowState,
};
use reqwest::Method;
use serde_json::Value;

use crate::api::{Api, USAGE};
use crate::time::iso_ms;

#[derive(Debug, Subcommand)]
pub enum WorkflowCommand {
    /// Submit a workflow from a JSON file (`-` reads stdin):
    /// `{"jobs": [{"key", "spec": {"kind", ...}, "depends_on": [...]}], "failure_policy"}`.
    Submit {
        file: PathBuf,
        #[command(flatten)]
        api: Api,
    },
    /// Show a workflow's status and each job's state.
    Get {
        id: String,
        #[command(flatten)]
        api: Api,
    },
    /// List a workflow's events.
    History {
        id: String,
        #[command(flatten)]
        api: Api,
    },
    /// Rebuild the state right after event `--until` from the history.
    Replay {
        id: String,
        /// The last event to apply (its seq; 0 for the state before any).
        #[arg(long)]
        until: u64,
        #[command(flatten)]
        api: Api,
    },
    /// Cancel the jobs of a workflow that have not started.
    Cancel {
        id: String,
        #[command(flatten)]
        api: Api,
    },
}

pub async fn workflow(command: WorkflowCommand) -> Result<ExitCode> {
    match command {
        WorkflowCommand::Submit { file, api } => {
            let bytes = if file.as_os_str() == "-" {
                let mut buffer = Vec::new();
                std::io::Read::read_to_end(&mut std::io::stdin(), &mut buffer)
                    .context("cannot read the workflow from stdin")?;
                buffer
            } else {
                match std::fs::read(&file) {
                    Ok(bytes) => bytes,
                    Err(err) => {
                        eprintln!("cannot read {}: {err}", file.display());
                        return Ok(ExitCode::from(USAGE));
                    }
                }
            };
            let body: Value = match serde_json::from_slice(&bytes) {
                Ok(body) => body,
                Err(err) => {
                    eprintln!("{} is not valid JSON: {err}", file.display());
                    return Ok(ExitCode::from(USAGE));
                }
            };
            let answer = api.call(Method::POST, "/workflows", Some(body)).await?;
            api.print(answer, |v| {
                println!("{}", v["id"].as_str().unwrap_or("?"));
            })
        }
        WorkflowCommand::Get { id, api } => {
            let Some(id) = parse_id(&id) else {
                return Ok(ExitCode::from(USAGE));
            };
            let answer = api
                .call(Method::GET, &format!("/workflows/{id}"), None)
                .await?;
            api.print(answer, print_summary)
        }
        WorkflowCommand::History { id, api } => {
            let Some(id) = parse_id(&id) else {
                return Ok(ExitCode::from(USAGE));
            };
            let path = format!("/workflows/{id}/history");
            let answer = api.call(Method::GET, &path, None).await?;
            api.print(answer, |v| {
                match serde_json::from_value::<Vec<WorkflowEvent>>(v["events"].clone()) {
                    Ok(events) => print_events(&events),
                    Err(_) => println!("{v:#}"),
                }
            })
        }
        WorkflowCommand::Replay { id, until, api } => {
            let Some(id) = parse_id(&id) else {
                return Ok(ExitCode::from(USAGE));
            };
            let path = format!("/workflows/{id}/history");
            let history = match api.call(Method::GET, &path, None).await? {
                Ok(history) => history,
                Err(failure) => return api.print(Err(failure), |_| {}),
            };
            let spec: WorkflowSpec = serde_json::from_value(history["spec"].clone())
                .context("the API's history has no readable workflow spec")?;
            let events: Vec<WorkflowEvent> = serde_json::from_value(history["events"].clone())
                .context("the API's history has no readable events")?;
            let last = events.last().map_or(0, |e| e.seq);
            if until > last {
                eprintln!(
                    "workflow {id} has events up to seq {last}; --until {until} is out of range"
                );
                return Ok(ExitCode::from(USAGE));
            }
            let state = replay(&spec, &events, until)
                .with_context(|| format!("the history of workflow {id} does not replay"))?;
            if api.json {
                let mut value = serde_json::to_value(&state)?;
                value["id"] = Value::from(id.to_string());
                println!("{}", serde_json::to_string_pretty(&value)?);
            } else {
                println!("workflow:   {id} (replayed up to seq {until} of {last})");
                print_state(id, &state);
            }
            Ok(ExitCode::SUCCESS)
        }
        WorkflowCommand::Cancel { id, api } => {
            let Some(id) = parse_id(&id) else {
                return Ok(ExitCode::from(USAGE));
            };
            let answer = api
                .call(Method::DELETE, &format!("/workflows/{id}"), None)
                .await?;
            api.print(answer, |v| {
                println!("workflow {id}: {}", v["status"].as_str().unwrap_or("?"));
            })
        }
    }
}

fn parse_id(raw: &str) -> Option<WorkflowId> {
    match raw.parse::<WorkflowId>() {
        Ok(id) => Some(id),
        Err(err) => {
            eprintln!("not a workflow id: {err}");
            None
        }
    }
}

fn print_summary(value: &Value) {
    let id = value["id"]
        .as_str()
        .and_then(|s| s.parse::<WorkflowId>().ok());
    let (Some(id), Ok(state)) = (id, serde_json::from_value::<WorkflowState>(value.clone())) else {
        println!("{value:#}");
        return;
    };
    println!("workflow:   {id}");
    if let Some(name) = value["name"].as_str() {
        println!("name:       {name}");
    }
    if let Some(policy) = value["failure_policy"].as_str() {
        println!("on failure: {policy}");
    }
    print_state(id, &state);
}

fn print_state(id: WorkflowId, state: &WorkflowState) {
    println!("status:     {}", state.status);
    println!("seq:        {}", state.seq);
    if let Some(created) = state.created_at {
        println!("created:    {}", iso_ms(created));
    }
    if let Some(finished) = state.finished_at {
        println!("finished:   {}", iso_ms(finished));
    }
    let c = &state.counts;
    println!(
        "jobs:       {} pending, {} queued, {} running, {} completed, {} failed, {} skipped, {} cancelled",
        c.pending, c.queued, c.running, c.completed, c.failed, c.skipped, c.cancelled
    );
    println!();
    println!(
        "{:<24}  {:<9}  {:>7}  {:<36}  ERROR",
        "KEY", "STATE", "RETRIES", "JOB ID"
    );
    for (key, record) in &state.jobs {
        println!(
            "{:<24}  {:<9}  {:>7}  {:<36}  {}",
            key,
            record.state,
            record.retries,
            workflow_job_id(id, key),
            record.error.as_deref().unwrap_or("")
        );
    }
}

fn print_events(events: &[WorkflowEvent]) {
    if events.is_empty() {
        println!("no events");
        return;
    }
    println!(
        "{:>6}  {:<24}  {:<9}  {:<24}  ERROR",
        "SEQ", "AT", "EVENT", "JOB"
    );
    for event in events {
        println!(
            "{:>6}  {:<24}  {:<9}  {:<24}  {}",
            event.seq,
            iso_ms(event.at),
            event.kind.as_str(),
            event.key.as_deref().unwrap_or("(workflow)"),
            event.error.as_deref().unwrap_or("")
        );
    }
}
