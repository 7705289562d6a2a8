//! Replicated job and workflow state: each partition's records live in a
//! JSON-CRDT ([`ironforge_crdt::Replica`]) on every member of the
//! partition's preference list (N = 3 by default), kept in step over the
//! node runtime, so any node answers `GET /jobs/{id}` and
//! `GET /workflows/{id}` and the next owner of a partition finds its
//! workflows.
//!
//! * **Placement**: [`Placement`] says who holds a partition (the cluster
//!   node implements it over the ring; [`StaticPlacement`] is a fixed list).
//! * **Writes** ([`Replication::write_job`], [`CrdtJournal`]) go to the
//!   local replica when this member is in the preference list, and the
//!   resulting operations are shipped to the other members, batched per
//!   destination. A member outside the list forwards the write to the first
//!   preference-list member that acknowledges it.
//! * **Delta sync**: every anti-entropy interval, and at once after
//!   [`Replication::membership_changed`], each held partition sends its
//!   version vector to the other members, which answer with what it lacks
//!   (a delta from their log, or a snapshot once compacted), repeated until
//!   nothing is left; a member that has what the peer lacks pushes it. A
//!   member that joins, restarts or comes back from a network partition so
//!   catches up without anyone resending everything.
//! * **Reads** use the local replica when held, else ask the
//!   preference-list members in order (first value wins, each with the
//!   request timeout).
//!
//! The document layout is in [`layout`]. Replica ids are derived from the
//! member name and a start generation (random unless configured), so a
//! restarted member never reuses an id. A replica is created lazily the
//! first time a partition is written, synced or shipped to here, and kept
//! for the life of the process (at most P of them); only partitions whose
//! preference list holds this member are synced and read locally.
//!
//! Every queue is bounded: the mailbox (`mailbox_capacity`, drop-newest:
//! anti-entropy repairs), the ship queue (`ship_queue`: writers wait),
//! outstanding requests (`max_in_flight`: `Busy`), each replica's log
//! (`log_compaction_bound`) and job records per partition
//! (`max_job_records`: oldest finished records deleted by the owner).
//! Tombstones are collected by the CRDT's `gc` every `gc_interval`, once all
//! replicas it knows have seen them; when a member comes back under a new
//! replica id (every message names its sender's), its old id is retired so
//! it does not hold collection back forever.
//!
//! A snapshot (for a peer behind the compacted log) travels as one message,
//! so a partition's whole state must fit the node runtime's frame limit
//! (8 MiB by default): `max_job_records` records of ~150 bytes and the
//! partition's workflow specs and histories. Deltas are chunked
//! (`max_batch_ops` operations per answer).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use ironforge_cluster::replication::{Replication, ReplicationConfig, StaticPlacement};
//! use ironforge_jobs::JobId;
//! use ironforge_node::{Node, NodeConfig};
//! # use ironforge_pmd::server::{Daemon, DaemonConfig};
//! # let pmd = Daemon::bind(DaemonConfig { bind: "127.0.0.1:0".parse()?, ..Default::default() }).await?;
//! # let pmd_addr = pmd.local_addr();
//! # tokio::spawn(pmd.run());
//!
//! let mut config = NodeConfig::new("a").cookie("secret");
//! # config.pmd_addr = pmd_addr;
//! # config.auto_start_pmd = false;
//! let node = Node::start(config).await?;
//! // A one-member cluster; with more members, each partition is written
//! // to its first N members and readable from all of them.
//! let placement = Arc::new(StaticPlacement::new("a", ["a"], 16)?);
//! let replication = Replication::start(node.clone(), placement, ReplicationConfig::default())?;
//! let job = JobId::new_random();
//! replication.write_job(5, job, serde_json::json!({"status": "queued"})).await?;
//! let record = replication.read_job(job, 5).await?;
//! assert_eq!(record, Some(serde_json::json!({"status": "queued"})));
//! replication.shutdown();
//! node.shutdown().await;
//! # Ok(()) }
//! ```

mod batch;
mod config;
mod error;
mod job_records;
mod journal;
pub mod layout;
mod placement;
mod protocol;
mod service;
mod stats;
mod store;

use std::sync::Arc;

use ironforge_crdt::ReplicaId;
use ironforge_jobs::JobId;
use ironforge_node::Node;
use serde_json::Value;

pub use config::{
    ReplicationConfig, DEFAULT_ANTI_ENTROPY_INTERVAL, DEFAULT_GC_INTERVAL,
    DEFAULT_LOG_COMPACTION_BOUND, DEFAULT_MAILBOX_CAPACITY, DEFAULT_MAX_BATCH_OPS,
    DEFAULT_MAX_IN_FLIGHT, DEFAULT_MAX_JOB_RECORDS, DEFAULT_PARTITIONS, DEFAULT_REPLICAS,
    DEFAULT_REQUEST_TIMEOUT, DEFAULT_SHIP_QUEUE, MAILBOX_NAME,
};
pub use error::ReplicationError;
pub use job_records::{JobRecorder, JobRecorderStats, DEFAULT_RECORDER_BATCH};
pub use journal::CrdtJournal;
pub use placement::{Placement, StaticPlacement};
pub use stats::ReplicationStats;

use protocol::{Query, Write};
use service::Inner;

/// Handle to this node's replication service; cheap to clone. The service
/// stops when [`Replication::shutdown`] is called or the last handle is
/// dropped.
#[derive(Clone)]
pub struct Replication {
    inner: Arc<Inner>,
}

impl Replication {
    /// Registers the `ironforge.crdt` mailbox on `node` and starts the
    /// mailbox, shipping and anti-entropy tasks. Needs a Tokio runtime.
    pub fn start(
        node: Node,
        placement: Arc<dyn Placement>,
        config: ReplicationConfig,
    ) -> Result<Replication, ReplicationError> {
        service::start(node, placement, config).map(|inner| Replication { inner })
    }

    /// Records the state of a job at `jobs/<id>` of its partition (see
    /// [`layout::job_record`] for the fields the cluster writes).
    pub async fn write_job(
        &self,
        partition: u32,
        job_id: JobId,
        record: Value,
    ) -> Result<(), ReplicationError> {
        self.write_jobs(vec![(partition, job_id, record)]).await
    }

    /// Records several jobs: one write (and one forward, when needed) per
    /// partition. Stops at the first partition that fails.
    pub async fn write_jobs(
        &self,
        records: Vec<(u32, JobId, Value)>,
    ) -> Result<(), ReplicationError> {
        let mut by_partition: std::collections::BTreeMap<u32, Vec<Write>> = Default::default();
        for (partition, id, record) in records {
            by_partition
                .entry(partition)
                .or_default()
                .push(Write::SetJob {
                    id: id.to_string(),
                    record,
                });
        }
        for (partition, writes) in by_partition {
            self.inner.write(partition, writes).await?;
        }
        Ok(())
    }

    /// The record of a job, from any node: `Ok(None)` when no replica of
    /// the partition has it, `Err(Unavailable)` when none could be asked.
    pub async fn read_job(
        &self,
        job_id: JobId,
        partition: u32,
    ) -> Result<Option<Value>, ReplicationError> {
        let query = Query::Job {
            id: job_id.to_string(),
        };
        self.inner.read(partition, query).await
    }

    /// Call on every ring change: starts a sync round at once (a new member
    /// of a preference list pulls, and pushes what others lack).
    pub fn membership_changed(&self) {
        self.inner.sync_now.notify_one();
    }

    /// Runs one sync round over the held partitions now and waits for it;
    /// returns the operations pulled. (The background loop does the same
    /// every interval; this is for callers that must be caught up, such as
    /// a new owner about to take workflows over.)
    pub async fn sync_now(&self, partitions: &[u32]) -> usize {
        let rounds = partitions.iter().map(|&p| self.inner.sync_partition(p));
        futures::future::join_all(rounds).await.into_iter().sum()
    }

    /// True when this member is in `partition`'s preference list.
    pub fn holds(&self, partition: u32) -> bool {
        self.inner.holds(partition)
    }

    /// This process's replica id (the same for every partition's replica).
    pub fn replica_id(&self) -> ReplicaId {
        self.inner.replica_id
    }

    /// Partitions P.
    pub fn partitions(&self) -> u32 {
        self.inner.config.partitions
    }

    /// Counters since start.
    pub fn stats(&self) -> ReplicationStats {
        let inner = &self.inner;
        inner
            .counters
            .read(inner.dropped_messages(), inner.replicas_held())
    }

    /// Stops the service's tasks (the mailbox name is released when the
    /// last handle is dropped).
    pub fn shutdown(&self) {
        self.inner.stop.send_replace(true);
    }

    /// The member name this service replicates as.
    pub fn local(&self) -> String {
        self.inner.local()
    }

    pub(crate) fn inner(&self) -> &Arc<Inner> {
        &self.inner
    }
}
