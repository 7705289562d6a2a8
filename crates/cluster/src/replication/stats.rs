//! Counters of replication traffic, cheap to bump from any task and read
//! as one plain struct.

use std::sync::atomic::{AtomicU64, Ordering};

/// What replication has done since start (see [`Replication::stats`](super::Replication::stats)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplicationStats {
    /// Operations made here (local writes, including record pruning).
    pub ops_written: u64,
    /// Remote operations applied (pushed or pulled by sync).
    pub ops_applied: u64,
    /// Operations sent to other members (counted once per destination).
    pub ops_shipped: u64,
    /// Messages that carried them.
    pub ship_messages: u64,
    /// Shipped messages the node runtime could not send (sync repairs them).
    pub ship_failures: u64,
    /// Anti-entropy rounds run (timer or membership change).
    pub sync_rounds: u64,
    /// Sync requests sent (several per round, and repeats until caught up).
    pub sync_requests: u64,
    /// Snapshots sent because a peer was behind the compacted log.
    pub snapshots_sent: u64,
    /// Writes forwarded to a member of the preference list.
    pub forwarded_writes: u64,
    /// Reads answered by another member.
    pub remote_reads: u64,
    /// Messages dropped by the bounded mailbox (or refused), as the node counts them.
    pub dropped_messages: u64,
    /// Messages that could not be decoded.
    pub bad_messages: u64,
    /// Partitions with a local replica.
    pub replicas_held: u64,
    /// Old replica ids of restarted members, retired so they no longer hold
    /// back tombstone collection.
    pub replicas_retired: u64,
}

#[derive(Default)]
pub(crate) struct Counters {
    pub ops_written: AtomicU64,
    pub ops_applied: AtomicU64,
    pub ops_shipped: AtomicU64,
    pub ship_messages: AtomicU64,
    pub ship_failures: AtomicU64,
    pub sync_rounds: AtomicU64,
    pub sync_requests: AtomicU64,
    pub snapshots_sent: AtomicU64,
    pub forwarded_writes: AtomicU64,
    pub remote_reads: AtomicU64,
    pub bad_messages: AtomicU64,
    pub replicas_retired: AtomicU64,
}

/// Adds `n` to a counter.
pub(crate) fn bump(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

impl Counters {
    pub fn read(&self, dropped_messages: u64, replicas_held: u64) -> ReplicationStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        ReplicationStats {
            ops_written: get(&self.ops_written),
            ops_applied: get(&self.ops_applied),
            ops_shipped: get(&self.ops_shipped),
            ship_messages: get(&self.ship_messages),
            ship_failures: get(&self.ship_failures),
            sync_rounds: get(&self.sync_rounds),
            sync_requests: get(&self.sync_requests),
            snapshots_sent: get(&self.snapshots_sent),
            forwarded_writes: get(&self.forwarded_writes),
            remote_reads: get(&self.remote_reads),
            dropped_messages,
            bad_messages: get(&self.bad_messages),
            replicas_held,
            replicas_retired: get(&self.replicas_retired),
        }
    }
}
