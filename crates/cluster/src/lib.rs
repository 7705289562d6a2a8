//! The distributed job cluster: where the pieces become one system.
//!
//! Every node joins the membership ([`ironforge_ring`]), accepts jobs for
//! any partition into the shared Redis Streams queue, and consumes and
//! schedules only the partitions the ring gives it. Job and workflow state
//! is written to the JSON-CRDT ([`ironforge_crdt`]) and replicated to each
//! partition's preference list over the node runtime ([`replication`]), so
//! any node answers reads and the next owner takes a partition over.
//!
//! * [`ClusterNode`] is the entry point: node + ring + engine in one call.
//! * [`ownership`] is the pure core deciding a member's partitions from
//!   its ring view; [`takeover`] applies each change (Redis consumption,
//!   workflow runner, replication) and logs every move.
//! * [`NodeRouting`] forwards workflow submissions and cancels to the
//!   owner of their partition over the node runtime.
//! * The node starts [`replication`] over its ring ([`RingPlacement`]):
//!   the engine's workflow journal is a [`replication::CrdtJournal`], and a
//!   [`replication::JobRecorder`] writes job state changes to the CRDT.
//! * `GET /cluster/members` and `GET /cluster/ring` ([`http`]) are merged
//!   into the job API.
//!
//! # Limits and defaults
//!
//! | what | limit / default |
//! |---|---|
//! | partitions P (job partitions = ring partitions) | `RedisConfig::partitions` (default 16), at most [`ironforge_ring::MAX_PARTITIONS`] |
//! | preference list N | [`ClusterConfig::replicas`] (default [`DEFAULT_REPLICAS`] = 3) |
//! | a joining node waits for its seeds | [`ownership::DEFAULT_JOIN_GRACE`] (5 s), then settles for [`ownership::DEFAULT_JOIN_SETTLE`] (2 s) |
//! | workflow routing mailboxes | [`routing::DEFAULT_ROUTING_QUEUE`] (default 1024) messages each, newest dropped |
//! | forwarded calls waiting / served at once | [`routing::MAX_FORWARDS_IN_FLIGHT`] (default 1024) / [`routing::MAX_CALLS_SERVED_AT_ONCE`] (default 64) |
//! | forward timeout | [`routing::DEFAULT_FORWARD_TIMEOUT`] (5 s) |
//! | ownership changes waiting for the hooks (runner, replication) | [`takeover::HOOK_QUEUE`] (64); the membership loop waits when full |
//!
//! # Example
//!
//! Three processes on one host, each like this one with its own alias and
//! the first one as seed, share one Redis:
//!
//! ```no_run
//! use std::time::Duration;
//! use ironforge_cluster::{ClusterConfig, ClusterNode};
//! use ironforge_jobs::{JobSpec, RedisConfig, Registry, WorkerConfig};
//! use ironforge_node::NodeConfig;
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut handlers = Registry::new();
//! handlers.register_fn("echo", |ctx| async move { Ok(ctx.payload().clone()) });
//! let mut config = ClusterConfig::new(
//!     NodeConfig::new("b").cookie("secret"),
//!     RedisConfig::new("redis://127.0.0.1:6379"),
//! );
//! config.seeds = vec!["a".into()];
//! config.http = Some("127.0.0.1:0".parse()?);
//! config.worker = Some((handlers, WorkerConfig::default()));
//! let node = ClusterNode::start(config).await?;
//! node.await_members(&["a", "b"], Duration::from_secs(10)).await?;
//! println!("{} owns partitions {:?}", node.member(), node.owned_partitions());
//! let id = node.client().submit(JobSpec::new("echo", serde_json::json!(1))).await?;
//! println!("submitted {id}");
//! node.shutdown(Duration::from_secs(5)).await;
//! # Ok(()) }
//! ```

mod error;
pub mod http;
mod node;
pub mod ownership;
mod placement;
pub mod replication;
mod replication_link;
pub mod routing;
mod runner_link;
pub mod takeover;
mod view;

pub use error::ClusterError;
pub use node::{ClusterConfig, ClusterNode, DEFAULT_REPLICAS};
pub use ownership::{Handover, JoinState, Ownership};
pub use placement::RingPlacement;
pub use routing::{LocalWorkflows, NodeRouting};
pub use takeover::OwnershipHook;
pub use view::ClusterSnapshot;
