//! The limits of a replica, in one place: every structure fed from outside
//! (pending buffer, log, sync messages, events, watches, tombstones) is
//! bounded by one of these, with the default named here.

/// Limits of a replica. Every structure fed from outside is bounded by one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Most early operations held while waiting for their predecessors
    /// (default 10,000). Beyond it the newest-numbered are dropped; sync
    /// recovers them.
    pub max_pending: usize,
    /// Age after which a waiting operation is dropped, in the caller's
    /// milliseconds (default 60,000).
    pub max_pending_age_ms: u64,
    /// Log length that triggers automatic compaction down to half of it
    /// (default 131,072). A peer further behind receives a snapshot.
    pub max_log_ops: usize,
    /// How long a causally stable tombstone is kept before `gc` collects it
    /// (default 60,000 ms).
    pub tombstone_grace_ms: u64,
    /// Events kept for `drain_events` (default 10,000; oldest dropped first).
    pub max_events: usize,
    /// Subscriptions at most (default 1,024).
    pub max_watches: usize,
    /// Most operations in one `ops_since` message (default 10,000, a few
    /// MiB of JSON, under the wire's 8 MiB frame); a peer further behind
    /// asks again with its new version until the delta is empty.
    pub max_sync_ops: usize,
    /// Keep the state at the log start so `replay_until` can rebuild any
    /// logged point (default true). Costs a second copy of the document once
    /// the log has been compacted; turn off to halve memory.
    pub keep_replay_base: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_pending: 10_000,
            max_pending_age_ms: 60_000,
            max_log_ops: 131_072,
            tombstone_grace_ms: 60_000,
            max_events: 10_000,
            max_watches: 1_024,
            max_sync_ops: 10_000,
            keep_replay_base: true,
        }
    }
}
