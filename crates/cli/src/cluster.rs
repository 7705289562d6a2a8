//! `ironforge cluster members|ring`: what a cluster node sees, through its
//! HTTP API (`GET /cluster/members`, `GET /cluster/ring`), as tables for
//! people and the API's own JSON with `--json`.

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use ironforge_cluster::http::{MembersView, RingView};
use reqwest::StatusCode;
use serde_json::Value;

/// Which node to ask, and how to print.
#[derive(Debug, Args)]
pub struct ClusterApi {
    /// Base URL of a cluster node's HTTP API.
    #[arg(long, env = "IRONFORGE_API", default_value = "http://127.0.0.1:3000")]
    api: String,
    /// Print the API's JSON for scripts.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// The members in the node's view, and the partitions it owns.
    Members(ClusterApi),
    /// Owner and replicas of every partition, and partitions per member.
    Ring(ClusterApi),
}

pub async fn cluster(command: ClusterCommand) -> Result<ExitCode> {
    match command {
        ClusterCommand::Members(api) => {
            let Some(value) = fetch(&api, "/cluster/members").await? else {
                return Ok(ExitCode::FAILURE);
            };
            if api.json {
                println!("{}", serde_json::to_string_pretty(&value)?);
                return Ok(ExitCode::SUCCESS);
            }
            let view: MembersView = serde_json::from_value(value)
                .context("the node answered /cluster/members with an unexpected shape")?;
            print_members(&view);
        }
        ClusterCommand::Ring(api) => {
            let Some(value) = fetch(&api, "/cluster/ring").await? else {
                return Ok(ExitCode::FAILURE);
            };
            if api.json {
                println!("{}", serde_json::to_string_pretty(&value)?);
                return Ok(ExitCode::SUCCESS);
            }
            let view: RingView = serde_json::from_value(value)
                .context("the node answered /cluster/ring with an unexpected shape")?;
            print_ring(&view);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The JSON answer, or `None` after printing why there is none.
async fn fetch(api: &ClusterApi, path: &str) -> Result<Option<Value>> {
    let url = format!("{}{path}", api.api.trim_end_matches('/'));
    let response = reqwest::Client::new()
        .get(&url)
        .send()
        .await
        .with_context(|| format!("cannot reach the API at {} (is a node running?)", api.api))?;
    let status = response.status();
    if status == StatusCode::NOT_FOUND {
        eprintln!(
            "{} serves no {path}: is it a cluster node (`ironforge node start --cluster` or `--seed`)?",
            api.api
        );
        return Ok(None);
    }
    let value: Value = response.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        let message = value["error"]["message"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| status.to_string());
        eprintln!("{message} (HTTP {})", status.as_u16());
        return Ok(None);
    }
    Ok(Some(value))
}

fn print_members(view: &MembersView) {
    println!("{:<24}  NOTE", "MEMBER");
    for member in &view.members {
        let note = if *member == view.member {
            format!("this node ({})", view.join)
        } else {
            String::new()
        };
        println!("{member:<24}  {note}");
    }
    println!(
        "{} owns {} of {} partitions: {}",
        view.member,
        view.owned.len(),
        view.partitions,
        ranges(&view.owned)
    );
}

fn print_ring(view: &RingView) {
    println!("{:>9}  {:<24}  REPLICAS", "PARTITION", "OWNER");
    for a in &view.assignments {
        println!(
            "{:>9}  {:<24}  {}",
            a.partition,
            a.owner.as_deref().unwrap_or("-"),
            a.replicas.join(", ")
        );
    }
    println!();
    println!("{:<24}  {:>10}", "MEMBER", "PARTITIONS");
    for m in &view.members {
        println!("{:<24}  {:>10}", m.member, m.partitions);
    }
    println!(
        "({} partitions, preference lists of {}, as seen by {})",
        view.partitions, view.replicas, view.member
    );
}

/// `0-3, 7, 9-10` for an ascending list.
fn ranges(partitions: &[u32]) -> String {
    if partitions.is_empty() {
        return "none".into();
    }
    let mut parts = Vec::new();
    let mut start = partitions[0];
    let mut end = start;
    for &p in &partitions[1..] {
        if p == end + 1 {
            end = p;
            continue;
        }
        parts.push(range(start, end));
        start = p;
        end = p;
    }
    parts.push(range(start, end));
    parts.join(", ")
}

fn range(start: u32, end: u32) -> String {
    if start == end {
        start.to_string()
    } else {
        format!("{start}-{end}")
    }
}

#[cfg(test)]
mod tests {
    use super::ranges;

    #[test]
    fn ranges_collapse_runs() {
        assert_eq!(ranges(&[]), "none");
        assert_eq!(ranges(&[0, 1, 2, 3, 7, 9, 10]), "0-3, 7, 9-10");
        assert_eq!(ranges(&[5]), "5");
    }
}
