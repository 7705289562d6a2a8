//! `ironforge cluster members|ring`: what a cluster node sees, through its
//! HTTP API (`GET /cluster/members`, `GET /cluster/ring`), as tables for
//! people and the API's own JSON with `--json`.

use std::process::ExitCode;

use anyhow::Result;
use clap::Subcommand;
use ironforge_cluster::http::{MembersView, RingView};
use reqwest::{Method, StatusCode};

use crate::api::Api;

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// The members in the node's view, and the partitions it owns.
    Members(Api),
    /// Owner and replicas of every partition, and partitions per member.
    Ring(Api),
}

pub async fn cluster(command: ClusterCommand) -> Result<ExitCode> {
    let (api, path) = match &command {
        ClusterCommand::Members(api) => (api, "/cluster/members"),
        ClusterCommand::Ring(api) => (api, "/cluster/ring"),
    };
    let answer = api.call(Method::GET, path, None).await?;
    if let Err((StatusCode::NOT_FOUND, _)) = answer {
        eprintln!(
            "{} serves no {path}: is it a cluster node (`ironforge node start --cluster` or `--seed`)?",
            api.api
        );
        return Ok(ExitCode::FAILURE);
    }
    api.print(answer, |value| match &command {
        ClusterCommand::Members(_) => match serde_json::from_value::<MembersView>(value.clone()) {
            Ok(view) => print_members(&view),
            Err(_) => println!("{value:#}"),
        },
        ClusterCommand::Ring(_) => match serde_json::from_value::<RingView>(value.clone()) {
            Ok(view) => print_ring(&view),
            Err(_) => println!("{value:#}"),
        },
    })
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
