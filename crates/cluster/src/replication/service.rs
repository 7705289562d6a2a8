//! The async shell around the partition stores: the mailbox loop that
//! answers peers, the shipper that batches outgoing operations, the
//! anti-entropy loop, and request/answer correlation over `send_named`.
//! All decisions about data live in `store.rs` and `batch.rs`; this file
//! only moves messages and timers.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{SystemTime, UNIX_EPOCH};

use ironforge_crdt::{ReplicaId, SyncBody, SyncMessage};
use ironforge_node::{Message, NamedMailbox, Node};
use parking_lot::Mutex;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot, watch, Notify};

use super::batch::{group_by_destination, Outgoing};
use super::config::{ReplicationConfig, MAILBOX_NAME};
use super::error::ReplicationError;
use super::placement::Placement;
use super::protocol::{Envelope, EnvelopeRef, PartitionOps, Query, Wire, Write};
use super::stats::{bump, Counters};
use super::store::PartitionStore;

/// Sync requests one partition makes of one peer in a round before leaving
/// the rest to the next round (each answer holds up to `max_sync_ops`).
const MAX_PULLS_PER_ROUND: usize = 64;

/// Members whose replica id is remembered (as many as a ring can hold).
const MAX_KNOWN_MEMBERS: usize = ironforge_ring::MAX_MEMBERS;

/// Wall-clock milliseconds since the Unix epoch (the shell's only clock).
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A replica id no other replica uses: FNV-1a 64 of the member name and the
/// start generation, so a restarted member (new generation) never continues
/// an old id's sequence numbers.
pub(crate) fn replica_id(member: &str, generation: u64) -> ReplicaId {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let bytes = member
        .as_bytes()
        .iter()
        .copied()
        .chain([0xff])
        .chain(generation.to_le_bytes());
    for byte in bytes {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    ReplicaId(hash)
}

/// State shared by the handle and the tasks.
pub(crate) struct Inner {
    pub node: Node,
    pub placement: Arc<dyn Placement>,
    pub config: ReplicationConfig,
    pub replica_id: ReplicaId,
    stores: Vec<Mutex<Option<PartitionStore>>>,
    ship: mpsc::Sender<Outgoing>,
    pending: Mutex<HashMap<u64, oneshot::Sender<Wire>>>,
    /// Member name -> its current replica id (bounded by `MAX_KNOWN_MEMBERS`).
    member_replicas: Mutex<HashMap<String, ReplicaId>>,
    next_request: AtomicU64,
    pub counters: Counters,
    pub sync_now: Arc<Notify>,
    mailbox: Arc<NamedMailbox>,
    pub stop: watch::Sender<bool>,
}

/// Starts the tasks; returns the shared state.
pub(crate) fn start(
    node: Node,
    placement: Arc<dyn Placement>,
    config: ReplicationConfig,
) -> Result<Arc<Inner>, ReplicationError> {
    if config.partitions == 0 || config.replicas == 0 {
        return Err(ReplicationError::Config(format!(
            "partitions ({}) and replicas ({}) must be at least 1",
            config.partitions, config.replicas
        )));
    }
    if config.anti_entropy_interval.is_zero() || config.gc_interval.is_zero() {
        return Err(ReplicationError::Config(
            "anti_entropy_interval and gc_interval must be above zero".into(),
        ));
    }
    let mailbox = Arc::new(node.register_name(
        MAILBOX_NAME,
        config.mailbox_capacity.max(1),
        ironforge_node::OverflowPolicy::DropNewest,
    )?);
    let generation = config
        .generation
        .unwrap_or_else(|| uuid::Uuid::new_v4().as_u64_pair().0);
    let replica_id = replica_id(&placement.local(), generation);
    let (ship, ship_rx) = mpsc::channel(config.ship_queue.max(1));
    let inner = Arc::new(Inner {
        node,
        placement,
        stores: (0..config.partitions).map(|_| Mutex::new(None)).collect(),
        replica_id,
        config,
        ship,
        pending: Mutex::new(HashMap::new()),
        member_replicas: Mutex::new(HashMap::new()),
        next_request: AtomicU64::new(1),
        counters: Counters::default(),
        sync_now: Arc::new(Notify::new()),
        mailbox: mailbox.clone(),
        stop: watch::Sender::new(false),
    });
    tracing::info!(member = %inner.placement.local(), replica = %replica_id, "replication started");
    let weak = Arc::downgrade(&inner);
    tokio::spawn(inbound_loop(weak.clone(), mailbox, inner.stop.subscribe()));
    tokio::spawn(ship_loop(weak.clone(), ship_rx, inner.stop.subscribe()));
    tokio::spawn(anti_entropy_loop(weak, inner.stop.subscribe()));
    Ok(inner)
}

impl Inner {
    pub fn local(&self) -> String {
        self.placement.local()
    }

    pub fn preference_list(&self, partition: u32) -> Vec<String> {
        self.placement
            .preference_list(partition, self.config.replicas)
    }

    /// Refuses calls after shutdown and partitions out of range.
    pub fn check_partition(&self, partition: u32) -> Result<(), ReplicationError> {
        if *self.stop.borrow() {
            return Err(ReplicationError::Closed);
        }
        if partition < self.config.partitions {
            Ok(())
        } else {
            Err(ReplicationError::NoSuchPartition {
                partition,
                partitions: self.config.partitions,
            })
        }
    }

    /// True when this member is in the partition's preference list.
    pub fn holds(&self, partition: u32) -> bool {
        let local = self.local();
        self.preference_list(partition).contains(&local)
    }

    /// Runs `f` on the partition's store, creating it if needed.
    fn with_store<R>(&self, partition: u32, f: impl FnOnce(&mut PartitionStore) -> R) -> Option<R> {
        let slot = self.stores.get(partition as usize)?;
        let mut slot = slot.lock();
        let store = slot.get_or_insert_with(|| {
            tracing::debug!(partition, "replication: new partition replica");
            PartitionStore::new(self.replica_id, self.config.crdt_config())
        });
        Some(f(store))
    }

    /// Runs `f` on the partition's store if there is one.
    fn with_existing<R>(
        &self,
        partition: u32,
        f: impl FnOnce(&mut PartitionStore) -> R,
    ) -> Option<R> {
        let slot = self.stores.get(partition as usize)?;
        let mut slot = slot.lock();
        slot.as_mut().map(f)
    }

    pub fn replicas_held(&self) -> u64 {
        self.stores.iter().filter(|s| s.lock().is_some()).count() as u64
    }

    pub fn dropped_messages(&self) -> u64 {
        self.mailbox.dropped()
    }

    /// Applies writes to the local replica and queues their operations for
    /// the other members of the preference list.
    pub async fn apply_writes(
        &self,
        partition: u32,
        writes: &[Write],
    ) -> Result<(), ReplicationError> {
        self.check_partition(partition)?;
        let now = now_ms();
        let list = self.preference_list(partition);
        let is_owner = list.first().is_some_and(|owner| *owner == self.local());
        let max_records = self.config.max_job_records;
        let ops = self
            .with_store(partition, |store| {
                let mut ops = Vec::new();
                for write in writes {
                    ops.extend(store.write(write, now)?);
                }
                // Only the owner prunes, so members do not delete the same
                // records concurrently (harmless, but wasted tombstones).
                if is_owner {
                    ops.extend(store.prune_jobs(max_records, now)?);
                }
                Ok::<_, ReplicationError>(ops)
            })
            .ok_or(ReplicationError::NoSuchPartition {
                partition,
                partitions: self.config.partitions,
            })??;
        bump(&self.counters.ops_written, ops.len() as u64);
        if !ops.is_empty() {
            self.ship
                .send(Outgoing { partition, ops })
                .await
                .map_err(|_| ReplicationError::Closed)?;
        }
        Ok(())
    }

    /// A write: applied here when this member holds the partition, else
    /// forwarded to the first preference-list member that acknowledges it.
    pub async fn write(&self, partition: u32, writes: Vec<Write>) -> Result<(), ReplicationError> {
        self.check_partition(partition)?;
        let local = self.local();
        let list = self.preference_list(partition);
        if list.contains(&local) {
            return self.apply_writes(partition, &writes).await;
        }
        bump(&self.counters.forwarded_writes, 1);
        let mut last = format!("no member in the preference list ({} members)", list.len());
        for member in &list {
            let Some(address) = self.placement.address_of(member) else {
                last = format!("no address for {member}");
                continue;
            };
            let answer = self
                .request(&address, |req| Wire::Write {
                    req,
                    partition,
                    writes: writes.clone(),
                })
                .await;
            match answer {
                Ok(Wire::WriteAck { error: None, .. }) => return Ok(()),
                Ok(Wire::WriteAck {
                    error: Some(reason),
                    ..
                }) => {
                    return Err(ReplicationError::Refused {
                        member: member.clone(),
                        reason,
                    })
                }
                Ok(_) => last = format!("{member} answered with the wrong message"),
                Err(error @ ReplicationError::Busy { .. }) => return Err(error),
                Err(error) => last = format!("{member}: {error}"),
            }
        }
        Err(ReplicationError::Unavailable {
            partition,
            reason: last,
        })
    }

    /// Answers `query` from a local replica.
    fn answer_locally(&self, partition: u32, query: &Query) -> Option<Option<Value>> {
        self.with_existing(partition, |store| match query {
            Query::Job { id } => store.job(id),
            Query::Workflow { id } => store.workflow(id),
        })
    }

    /// A read: from the local replica when this member holds the partition
    /// (and has a replica of it), else from the preference-list members in
    /// order. `None` when every member that holds the partition lacks it.
    pub async fn read(
        &self,
        partition: u32,
        query: Query,
    ) -> Result<Option<Value>, ReplicationError> {
        self.check_partition(partition)?;
        if self.holds(partition) {
            if let Some(answer) = self.answer_locally(partition, &query) {
                return Ok(answer);
            }
        }
        let local = self.local();
        let members: Vec<String> = self
            .preference_list(partition)
            .into_iter()
            .filter(|m| *m != local)
            .collect();
        self.read_from(&members, Some(partition), query)
            .await
            .map_err(|reason| ReplicationError::Unavailable { partition, reason })
    }

    /// Asks `members` in order; the first value wins. `Err` when none of
    /// them holds a replica (or answered at all).
    pub async fn read_from(
        &self,
        members: &[String],
        partition: Option<u32>,
        query: Query,
    ) -> Result<Option<Value>, String> {
        let mut held = false;
        let mut last = "no member to ask".to_owned();
        for member in members {
            let Some(address) = self.placement.address_of(member) else {
                last = format!("no address for {member}");
                continue;
            };
            bump(&self.counters.remote_reads, 1);
            let answer = self
                .request(&address, |req| Wire::Read {
                    req,
                    partition,
                    query: query.clone(),
                })
                .await;
            match answer {
                Ok(Wire::ReadReply {
                    value: Some(value), ..
                }) => return Ok(Some(value)),
                Ok(Wire::ReadReply { held: true, .. }) => held = true,
                Ok(_) => last = format!("{member} holds no replica"),
                Err(error) => last = format!("{member}: {error}"),
            }
        }
        if held {
            Ok(None)
        } else {
            Err(last)
        }
    }

    /// Searches every local replica (for a workflow whose partition is unknown).
    pub fn search_locally(&self, query: &Query, only_held: bool) -> Option<Value> {
        (0..self.config.partitions)
            .filter(|&p| !only_held || self.holds(p))
            .find_map(|p| self.answer_locally(p, query).flatten())
    }

    /// Unfinished workflow ids in the local replicas of `partitions`.
    pub fn unfinished_workflows(&self, partitions: &[u32]) -> Vec<String> {
        let mut ids = Vec::new();
        for &partition in partitions {
            self.with_existing(partition, |store| {
                ids.extend(store.unfinished_workflows().map(str::to_owned));
            });
        }
        ids
    }

    /// Sends a request and waits for its answer (or the request timeout).
    async fn request(
        &self,
        address: &str,
        make: impl FnOnce(u64) -> Wire,
    ) -> Result<Wire, ReplicationError> {
        let req = self.next_request.fetch_add(1, Ordering::Relaxed);
        let (answer_tx, answer_rx) = oneshot::channel();
        {
            let mut pending = self.pending.lock();
            if pending.len() >= self.config.max_in_flight {
                return Err(ReplicationError::Busy {
                    limit: self.config.max_in_flight,
                });
            }
            pending.insert(req, answer_tx);
        }
        let timeout = self.config.request_timeout;
        let outcome = async {
            self.send(address, &make(req)).await.map_err(|reason| {
                ReplicationError::Unreachable {
                    address: address.to_owned(),
                    reason,
                }
            })?;
            match tokio::time::timeout(timeout, answer_rx).await {
                Ok(Ok(answer)) => Ok(answer),
                Ok(Err(_)) => Err(ReplicationError::Closed),
                Err(_) => Err(ReplicationError::Unreachable {
                    address: address.to_owned(),
                    reason: format!("no answer within {timeout:?}"),
                }),
            }
        }
        .await;
        self.pending.lock().remove(&req);
        outcome
    }

    /// Sends one message to the replication mailbox at `address`.
    async fn send(&self, address: &str, wire: &Wire) -> Result<(), String> {
        let sent = tokio::time::timeout(
            self.config.request_timeout,
            self.node.send_named(
                address,
                MAILBOX_NAME,
                &EnvelopeRef {
                    from: &self.local(),
                    replica: self.replica_id,
                    msg: wire,
                },
            ),
        )
        .await;
        match sent {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(error.to_string()),
            Err(_) => Err(format!(
                "sending to {address} took over {:?}",
                self.config.request_timeout
            )),
        }
    }

    /// Catches `partition` up with the other members of its preference list:
    /// pulls what it lacks (delta or snapshot, until nothing is left) and
    /// pushes what they lack. Returns how many operations were pulled.
    pub async fn sync_partition(&self, partition: u32) -> usize {
        let local = self.local();
        let list = self.preference_list(partition);
        if !list.contains(&local) {
            return 0;
        }
        // Create the replica now, so a new member starts pulling at once.
        if self.with_store(partition, |_| ()).is_none() {
            return 0;
        }
        let peers = list.into_iter().filter(|m| *m != local);
        let pulls = peers.map(|peer| self.sync_with(partition, peer));
        futures::future::join_all(pulls).await.into_iter().sum()
    }

    async fn sync_with(&self, partition: u32, peer: String) -> usize {
        let Some(address) = self.placement.address_of(&peer) else {
            return 0;
        };
        let mut pulled = 0;
        for _ in 0..MAX_PULLS_PER_ROUND {
            let Some(version) = self.with_existing(partition, |s| s.version().clone()) else {
                return pulled;
            };
            bump(&self.counters.sync_requests, 1);
            let answer = self
                .request(&address, |req| Wire::SyncRequest {
                    req,
                    partition,
                    version,
                })
                .await;
            let (sync, behind) = match answer {
                Ok(Wire::SyncReply { sync, behind, .. }) => (sync, behind),
                Ok(_) => return pulled,
                Err(error) => {
                    tracing::debug!(partition, %peer, %error, "replication: sync request failed");
                    return pulled;
                }
            };
            let Some(sync) = sync else {
                return pulled;
            };
            if behind {
                // The peer lacks some of ours: its version is in its answer.
                let push = self.with_existing(partition, |s| s.ops_since(&sync.version));
                if let Some(push) = push {
                    if !push.is_empty() {
                        self.count_snapshot(&push);
                        let wire = Wire::Push {
                            partition,
                            sync: push,
                        };
                        if let Err(reason) = self.send(&address, &wire).await {
                            tracing::debug!(partition, %peer, %reason, "replication: push failed");
                        }
                    }
                }
            }
            if sync.is_empty() {
                return pulled;
            }
            let applied = self.apply_sync(partition, sync);
            pulled += applied;
            if applied == 0 {
                return pulled;
            }
        }
        pulled
    }

    fn apply_sync(&self, partition: u32, sync: SyncMessage) -> usize {
        let now = now_ms();
        let applied = self
            .with_store(partition, |store| store.apply_sync(sync, now))
            .unwrap_or(0);
        bump(&self.counters.ops_applied, applied as u64);
        applied
    }

    fn count_snapshot(&self, sync: &SyncMessage) {
        if matches!(sync.body, SyncBody::Snapshot { .. }) {
            bump(&self.counters.snapshots_sent, 1);
        }
    }

    /// One anti-entropy round over every partition this member holds.
    pub async fn anti_entropy_round(&self) {
        bump(&self.counters.sync_rounds, 1);
        let rounds = (0..self.config.partitions).map(|p| self.sync_partition(p));
        futures::future::join_all(rounds).await;
    }

    fn gc(&self) {
        let now = now_ms();
        for slot in &self.stores {
            if let Some(store) = slot.lock().as_mut() {
                store.gc(now);
            }
        }
    }

    /// Handles one message from the mailbox.
    async fn handle(&self, message: Message) {
        let Envelope {
            from,
            replica,
            msg: wire,
        } = match message.json() {
            Ok(envelope) => envelope,
            Err(error) => {
                bump(&self.counters.bad_messages, 1);
                tracing::debug!(from = message.from_alias(), %error, "replication: undecodable message");
                return;
            }
        };
        self.note_replica(&from, replica);
        if let Some(req) = wire.answer_to() {
            if let Some(waiter) = self.pending.lock().remove(&req) {
                let _ = waiter.send(wire);
            }
            return;
        }
        let reply = match wire {
            Wire::Ops { parts } => {
                self.apply_ops(parts);
                None
            }
            Wire::Push { partition, sync } => {
                if partition < self.config.partitions {
                    self.apply_sync(partition, sync);
                }
                None
            }
            Wire::SyncRequest {
                req,
                partition,
                version,
            } => {
                let known = partition < self.config.partitions
                    && (self.holds(partition) || self.with_existing(partition, |_| ()).is_some());
                let answer = if known {
                    self.with_store(partition, |store| {
                        (store.ops_since(&version), !version.le(store.version()))
                    })
                } else {
                    None
                };
                if let Some((sync, _)) = &answer {
                    self.count_snapshot(sync);
                }
                Some(Wire::SyncReply {
                    req,
                    behind: answer.as_ref().is_some_and(|(_, behind)| *behind),
                    sync: answer.map(|(sync, _)| sync),
                })
            }
            Wire::Write {
                req,
                partition,
                writes,
            } => {
                let error = self
                    .apply_writes(partition, &writes)
                    .await
                    .err()
                    .map(|e| e.to_string());
                Some(Wire::WriteAck { req, error })
            }
            Wire::Read {
                req,
                partition,
                query,
            } => {
                let (held, value) = match partition {
                    Some(p) => match self.answer_locally(p, &query) {
                        Some(value) => (true, value),
                        None => (false, None),
                    },
                    None => (self.replicas_held() > 0, self.search_locally(&query, false)),
                };
                Some(Wire::ReadReply { req, held, value })
            }
            Wire::WriteAck { .. } | Wire::ReadReply { .. } | Wire::SyncReply { .. } => None,
        };
        if let Some(reply) = reply {
            let address = self
                .placement
                .address_of(&from)
                .unwrap_or_else(|| message.from().to_owned());
            if let Err(reason) = self.send(&address, &reply).await {
                tracing::debug!(to = message.from_alias(), %reason, "replication: answer not sent");
            }
        }
    }

    /// Remembers `member`'s replica id; when it changed (the member
    /// restarted), the old id no longer holds back tombstone collection.
    fn note_replica(&self, member: &str, replica: ReplicaId) {
        let previous = {
            let mut ids = self.member_replicas.lock();
            if ids.get(member) == Some(&replica) {
                return;
            }
            if ids.len() >= MAX_KNOWN_MEMBERS && !ids.contains_key(member) {
                // A full table only costs tombstone collection, never data.
                return;
            }
            ids.insert(member.to_owned(), replica)
        };
        let Some(old) = previous else {
            return;
        };
        tracing::info!(member, %old, new = %replica, "replication: member restarted, old replica id retired");
        bump(&self.counters.replicas_retired, 1);
        for slot in &self.stores {
            if let Some(store) = slot.lock().as_mut() {
                store.retire_peer(old);
            }
        }
    }

    fn apply_ops(&self, parts: Vec<PartitionOps>) {
        let now = now_ms();
        for part in parts {
            if part.partition >= self.config.partitions {
                bump(&self.counters.bad_messages, 1);
                continue;
            }
            let applied = self
                .with_store(part.partition, |store| store.apply_remote(part.ops, now))
                .unwrap_or(0);
            bump(&self.counters.ops_applied, applied as u64);
        }
    }

    /// Ships one batch of queued operations.
    async fn ship(&self, pending: Vec<Outgoing>) {
        let local = self.local();
        let grouped = group_by_destination(
            pending,
            |partition| {
                self.preference_list(partition)
                    .into_iter()
                    .filter(|m| *m != local)
                    .collect()
            },
            self.config.max_batch_ops,
        );
        for (member, parts) in grouped {
            let ops: usize = parts.iter().map(|p| p.ops.len()).sum();
            let sent = match self.placement.address_of(&member) {
                Some(address) => self.send(&address, &Wire::Ops { parts }).await,
                None => Err(format!("no address for {member}")),
            };
            match sent {
                Ok(()) => {
                    bump(&self.counters.ship_messages, 1);
                    bump(&self.counters.ops_shipped, ops as u64);
                }
                Err(reason) => {
                    // Anti-entropy brings the member up to date later.
                    bump(&self.counters.ship_failures, 1);
                    tracing::debug!(%member, %reason, "replication: shipping failed");
                }
            }
        }
    }
}

async fn inbound_loop(
    inner: Weak<Inner>,
    mailbox: Arc<NamedMailbox>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let message = tokio::select! {
            _ = stop.wait_for(|stopped| *stopped) => return,
            message = mailbox.recv() => message,
        };
        let (Some(message), Some(inner)) = (message, inner.upgrade()) else {
            return;
        };
        inner.handle(message).await;
    }
}

async fn ship_loop(
    inner: Weak<Inner>,
    mut queue: mpsc::Receiver<Outgoing>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let first = tokio::select! {
            _ = stop.wait_for(|stopped| *stopped) => return,
            first = queue.recv() => first,
        };
        let Some(first) = first else {
            return;
        };
        let Some(inner) = inner.upgrade() else {
            return;
        };
        // Take what queued up meanwhile: under load, one message carries many.
        let mut batch = vec![first];
        let mut ops: usize = batch[0].ops.len();
        while ops < inner.config.max_batch_ops * 4 {
            match queue.try_recv() {
                Ok(next) => {
                    ops += next.ops.len();
                    batch.push(next);
                }
                Err(_) => break,
            }
        }
        inner.ship(batch).await;
    }
}

async fn anti_entropy_loop(inner: Weak<Inner>, mut stop: watch::Receiver<bool>) {
    let (interval, gc_interval, sync_now) = match inner.upgrade() {
        Some(inner) => (
            inner.config.anti_entropy_interval,
            inner.config.gc_interval,
            inner.sync_now.clone(),
        ),
        None => return,
    };
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_gc = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = stop.wait_for(|stopped| *stopped) => return,
            _ = ticks.tick() => {}
            _ = sync_now.notified() => {}
        }
        let Some(inner) = inner.upgrade() else {
            return;
        };
        inner.anti_entropy_round().await;
        if last_gc.elapsed() >= gc_interval {
            last_gc = tokio::time::Instant::now();
            inner.gc();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replica_ids_differ_by_member_and_generation() {
        let a1 = replica_id("a", 1);
        assert_eq!(a1, replica_id("a", 1));
        assert_ne!(a1, replica_id("a", 2));
        assert_ne!(a1, replica_id("b", 1));
        // The separator keeps ("a", g) and ("a\u{1}", g') apart.
        assert_ne!(replica_id("ab", 0), replica_id("a", u64::from(b'b')));
    }
}
