//! The knobs of replication in one place, each with its default named here,
//! so every bound on what flows in from the network is visible at a glance.

use std::time::Duration;

/// Partitions when not configured (default 16); must equal the job engine's
/// partition count (`ironforge_jobs::partition::DEFAULT_PARTITIONS`).
pub const DEFAULT_PARTITIONS: u32 = 16;
/// Replicas per partition, owner included (default 3).
pub const DEFAULT_REPLICAS: usize = 3;
/// Period of the anti-entropy (delta sync) round (default 1 s).
pub const DEFAULT_ANTI_ENTROPY_INTERVAL: Duration = Duration::from_secs(1);
/// How long a forwarded write or a remote read waits for one member (default 2 s).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// Messages the replication mailbox holds before dropping the newest (default 4096).
pub const DEFAULT_MAILBOX_CAPACITY: usize = 4096;
/// Job records kept per partition before the oldest finished ones are deleted (default 10,000).
pub const DEFAULT_MAX_JOB_RECORDS: usize = 10_000;
/// Log length of a partition's replica that triggers compaction (default 16,384);
/// a peer further behind receives a snapshot instead of a delta.
pub const DEFAULT_LOG_COMPACTION_BOUND: usize = 16_384;
/// Write batches (the operations of one write call each) queued for
/// shipping before writers wait (default 8192).
pub const DEFAULT_SHIP_QUEUE: usize = 8192;
/// Operations in one shipped message at most (default 512).
pub const DEFAULT_MAX_BATCH_OPS: usize = 512;
/// Requests (forwarded writes, remote reads) awaiting an answer at once (default 1024).
pub const DEFAULT_MAX_IN_FLIGHT: usize = 1024;
/// Period of tombstone and pending-buffer garbage collection (default 60 s).
pub const DEFAULT_GC_INTERVAL: Duration = Duration::from_secs(60);
/// Name of the replication mailbox on every node.
pub const MAILBOX_NAME: &str = "ironforge.crdt";

/// Settings of [`Replication`](super::Replication). Every member of a
/// cluster must use the same `partitions` and `replicas`.
#[derive(Clone, Debug)]
pub struct ReplicationConfig {
    /// Partitions P ([`DEFAULT_PARTITIONS`]); equal to the job engine's.
    pub partitions: u32,
    /// Replicas N per partition, owner first ([`DEFAULT_REPLICAS`]).
    pub replicas: usize,
    /// Anti-entropy period ([`DEFAULT_ANTI_ENTROPY_INTERVAL`]).
    pub anti_entropy_interval: Duration,
    /// Wait for one member's answer ([`DEFAULT_REQUEST_TIMEOUT`]).
    pub request_timeout: Duration,
    /// Replication mailbox capacity, drop-newest ([`DEFAULT_MAILBOX_CAPACITY`]);
    /// what is dropped comes back through anti-entropy.
    pub mailbox_capacity: usize,
    /// Job records per partition before the oldest finished (completed,
    /// cancelled, dead) ones are deleted ([`DEFAULT_MAX_JOB_RECORDS`]).
    pub max_job_records: usize,
    /// Log bound of each partition's replica ([`DEFAULT_LOG_COMPACTION_BOUND`]).
    pub log_compaction_bound: usize,
    /// Ship queue length in write batches ([`DEFAULT_SHIP_QUEUE`]).
    pub ship_queue: usize,
    /// Operations per shipped message and per sync answer ([`DEFAULT_MAX_BATCH_OPS`]).
    pub max_batch_ops: usize,
    /// Outstanding requests ([`DEFAULT_MAX_IN_FLIGHT`]); more fail with `Busy`.
    pub max_in_flight: usize,
    /// Garbage-collection period ([`DEFAULT_GC_INTERVAL`]).
    pub gc_interval: Duration,
    /// Start generation mixed into the replica id; `None` draws a random one.
    /// A restarted member must never reuse an earlier generation.
    pub generation: Option<u64>,
}

impl Default for ReplicationConfig {
    fn default() -> Self {
        ReplicationConfig {
            partitions: DEFAULT_PARTITIONS,
            replicas: DEFAULT_REPLICAS,
            anti_entropy_interval: DEFAULT_ANTI_ENTROPY_INTERVAL,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            mailbox_capacity: DEFAULT_MAILBOX_CAPACITY,
            max_job_records: DEFAULT_MAX_JOB_RECORDS,
            log_compaction_bound: DEFAULT_LOG_COMPACTION_BOUND,
            ship_queue: DEFAULT_SHIP_QUEUE,
            max_batch_ops: DEFAULT_MAX_BATCH_OPS,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            gc_interval: DEFAULT_GC_INTERVAL,
            generation: None,
        }
    }
}

impl ReplicationConfig {
    /// The limits of each partition's replica.
    pub(crate) fn crdt_config(&self) -> ironforge_crdt::Config {
        ironforge_crdt::Config {
            max_log_ops: self.log_compaction_bound.max(2),
            // Replay of history is not used here; halve memory.
            keep_replay_base: false,
            // A sync answer is a message like a shipped batch: the same
            // bound keeps both far below the node runtime's frame limit.
            max_sync_ops: self.max_batch_ops.max(1),
            ..ironforge_crdt::Config::default()
        }
    }
}
