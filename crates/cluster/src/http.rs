//! The cluster's own HTTP routes, merged into the job API: who is in the
//! cluster as this node sees it, and who owns and replicates each
//! partition. Read-only JSON, answered from the published snapshot.
//!
//! - `GET /cluster/members`: `{member, generation, join, members, partitions, owned}`
//! - `GET /cluster/ring`: `{member, partitions, replicas, owned,
//!   members: [{member, partitions}], assignments: [{partition, owner, replicas}]}`

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use crate::view::{current, ViewReceiver};

/// Answer of `GET /cluster/members`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MembersView {
    /// The answering member.
    pub member: String,
    /// Its generation (start time in ms).
    pub generation: u64,
    /// `waiting`, `settling`, `joined` or `alone`.
    pub join: String,
    /// Sorted member names in its view.
    pub members: Vec<String>,
    /// Partitions P.
    pub partitions: u32,
    /// The partitions the answering member consumes, ascending.
    pub owned: Vec<u32>,
}

/// One partition in `GET /cluster/ring`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    pub partition: u32,
    /// `None` only in an empty ring.
    pub owner: Option<String>,
    /// The rest of the preference list, in order.
    pub replicas: Vec<String>,
}

/// One member in `GET /cluster/ring`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberLoad {
    pub member: String,
    /// Partitions it owns on the ring.
    pub partitions: usize,
}

/// Answer of `GET /cluster/ring`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RingView {
    /// The answering member.
    pub member: String,
    pub partitions: u32,
    /// Preference list length (owner included).
    pub replicas: u32,
    /// The partitions the answering member consumes, ascending.
    pub owned: Vec<u32>,
    pub members: Vec<MemberLoad>,
    pub assignments: Vec<Assignment>,
}

/// The routes, to merge into the job API.
pub(crate) fn routes(view: ViewReceiver) -> Router {
    Router::new()
        .route("/cluster/members", get(members))
        .route("/cluster/ring", get(ring))
        .with_state(view)
}

async fn members(State(view): State<ViewReceiver>) -> Json<MembersView> {
    let snapshot = current(&view);
    Json(MembersView {
        member: snapshot.local.clone(),
        generation: snapshot.generation,
        join: snapshot.join_label().to_owned(),
        members: snapshot.members().to_vec(),
        partitions: snapshot.ring.config().partitions,
        owned: snapshot.owned.to_vec(),
    })
}

async fn ring(State(view): State<ViewReceiver>) -> Json<RingView> {
    let snapshot = current(&view);
    let ring = &snapshot.ring;
    let config = ring.config();
    let counts = ring.ownership_counts();
    let members = ring
        .members()
        .iter()
        .enumerate()
        .map(|(i, member)| MemberLoad {
            member: member.clone(),
            partitions: counts.get(i).copied().unwrap_or(0),
        })
        .collect();
    let assignments = (0..config.partitions)
        .map(|partition| {
            let list = ring.preference_list(partition, config.replicas as usize);
            Assignment {
                partition,
                owner: list.first().map(|m| (*m).to_owned()),
                replicas: list.iter().skip(1).map(|m| (*m).to_owned()).collect(),
            }
        })
        .collect();
    Json(RingView {
        member: snapshot.local.clone(),
        partitions: config.partitions,
        replicas: config.replicas,
        owned: snapshot.owned.to_vec(),
        members,
        assignments,
    })
}
