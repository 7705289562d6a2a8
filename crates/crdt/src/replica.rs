//! One replica of the document: local edits become operations, remote
//! operations are delivered in causal order through a bounded pending
//! buffer, every applied operation is logged (bounded, compacted into a base
//! state) so peers can be sent deltas, and everything else — sync, snapshot,
//! garbage collection, watches, stats, time travel — hangs off this type.

use crate::config::Config;
use crate::error::CrdtError;
use crate::hlc::{Hlc, ReplicaId};
use crate::op::{Op, OpId, OpKind};
use crate::path::{PathSeg, Seg};
use crate::pending::{is_ready, PendingBuffer};
use crate::sync::{Snapshot, SyncBody, SyncMessage};
use crate::tree::{Census, Collector, Node, Outcome};
use crate::version::VersionVector;
use crate::watch::{Event, WatchId, Watches};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::sync::Arc;

/// What [`Replica::apply`] did with an operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// Applied, together with `ops - 1` buffered operations it unblocked.
    Applied {
        /// Operations applied by this call.
        ops: usize,
    },
    /// Waiting in the pending buffer for its predecessors.
    Buffered,
    /// Already applied or already waiting: ignored.
    Duplicate,
}

/// Result of [`Replica::gc`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Tombstones and list anchors collected from the document.
    pub tombstones_collected: usize,
    /// Waiting operations dropped for age.
    pub pending_expired: usize,
}

/// Counters and sizes, see [`Replica::stats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Operations in the log.
    pub log_ops: usize,
    /// Index of the first operation still in the log (earlier ones compacted).
    pub log_start: u64,
    /// Operations waiting for predecessors.
    pub pending: usize,
    /// Waiting operations dropped (bound or age) since start.
    pub pending_dropped: u64,
    /// Tombstones (deleted registers and removed list elements) in the document.
    pub tombstones: usize,
    /// Values (scalars, objects, lists) written in the document.
    pub keys: usize,
    /// Tree nodes, including implicit containers and tombstones.
    pub nodes: usize,
    /// Concurrent writes that met at one path.
    pub conflicts: u64,
    /// Operations received twice.
    pub duplicates: u64,
    /// Operations that referenced an unknown list element (skipped).
    pub rejected: u64,
    /// Events dropped because nobody drained them.
    pub events_dropped: u64,
    /// Replicas whose progress this one knows (for causal stability).
    pub known_replicas: usize,
}

/// One replica of a JSON-CRDT document.
///
/// ```
/// use ironforge_crdt::{path, Replica, ReplicaId};
/// use serde_json::json;
///
/// let mut a = Replica::new(ReplicaId(1));
/// let mut b = Replica::new(ReplicaId(2));
/// let op = a.set(&path!["jobs", "j1", "status"], json!("queued"), 1_000).unwrap();
/// b.apply(op, 1_001).unwrap();
/// b.set(&path!["jobs", "j1", "status"], json!("running"), 1_002).unwrap();
/// a.apply_sync(b.ops_since(a.version()), 1_003).unwrap();
/// assert_eq!(a.to_json(), b.to_json());
/// assert_eq!(a.get(&path!["jobs", "j1", "status"]), Some(json!("running")));
/// ```
pub struct Replica {
    id: ReplicaId,
    config: Config,
    clock: Hlc,
    version: VersionVector,
    tree: Node,
    known: BTreeMap<ReplicaId, VersionVector>,
    pending: PendingBuffer,
    log: Vec<Arc<Op>>,
    log_start: u64,
    base: Node,
    base_version: VersionVector,
    watches: Watches,
    conflicts: u64,
    duplicates: u64,
    rejected: u64,
}

impl Replica {
    /// An empty document owned by `id`, with default limits.
    pub fn new(id: ReplicaId) -> Self {
        Self::with_config(id, Config::default())
    }

    /// An empty document owned by `id`, with the given limits.
    pub fn with_config(id: ReplicaId, config: Config) -> Self {
        let watches = Watches::new(config.max_watches, config.max_events);
        let pending = PendingBuffer::new(config.max_pending, config.max_pending_age_ms);
        Self {
            id,
            config,
            clock: Hlc::new(id),
            version: VersionVector::new(),
            tree: Node::default(),
            known: BTreeMap::new(),
            pending,
            log: Vec::new(),
            log_start: 0,
            base: Node::default(),
            base_version: VersionVector::new(),
            watches,
            conflicts: 0,
            duplicates: 0,
            rejected: 0,
        }
    }

    /// This replica's id.
    pub fn id(&self) -> ReplicaId {
        self.id
    }

    /// Declares a member of the replica set. Tombstones are collected only
    /// once every known replica has seen them, so tell each replica about all
    /// the others before the first `gc` (replicas heard from are known anyway).
    pub fn add_peer(&mut self, peer: ReplicaId) {
        if peer != self.id {
            self.known.entry(peer).or_default();
        }
    }

    /// Forgets a replica that left for good, so it no longer holds back
    /// garbage collection. It becomes known again if it is heard from.
    pub fn remove_peer(&mut self, peer: ReplicaId) -> bool {
        self.known.remove(&peer).is_some()
    }

    /// Writes `value` at `path`. Objects and arrays become nested nodes and
    /// lists. Returns the operation to send to the other replicas.
    pub fn set(&mut self, path: &[Seg], value: Value, now_ms: u64) -> Result<Arc<Op>, CrdtError> {
        let path = self.resolve(path)?;
        Ok(self.local(path, OpKind::Set { value }, now_ms))
    }

    /// Removes the value at `path` (and everything beneath it).
    pub fn delete(&mut self, path: &[Seg], now_ms: u64) -> Result<Arc<Op>, CrdtError> {
        let path = self.resolve(path)?;
        if self.tree.value_at(&path).is_none() {
            return Err(CrdtError::NotFound);
        }
        Ok(self.local(path, OpKind::Delete, now_ms))
    }

    /// Inserts `value` into the list at `path` so that it becomes visible
    /// element `index` (`index == len` appends).
    pub fn list_insert(
        &mut self,
        path: &[Seg],
        index: usize,
        value: Value,
        now_ms: u64,
    ) -> Result<Arc<Op>, CrdtError> {
        let resolved = self.resolve(path)?;
        let list = self
            .node_at(&resolved)
            .filter(|node| node.is_list())
            .ok_or(CrdtError::NotAList { depth: path.len() })?;
        let after = match index.checked_sub(1) {
            None => None,
            Some(prev) => Some(
                list.list
                    .nth_present(prev)
                    .ok_or(CrdtError::IndexOutOfBounds {
                        index,
                        len: list.list.present_len(),
                    })?
                    .id,
            ),
        };
        Ok(self.local(resolved, OpKind::ListInsert { after, value }, now_ms))
    }

    /// Removes visible element `index` of the list at `path`.
    pub fn list_remove(
        &mut self,
        path: &[Seg],
        index: usize,
        now_ms: u64,
    ) -> Result<Arc<Op>, CrdtError> {
        let mut full = path.to_vec();
        full.push(Seg::Index(index));
        let resolved = self.resolve(&full)?;
        Ok(self.local(resolved, OpKind::Delete, now_ms))
    }

    /// Delivers a remote operation: applied now if everything it depends on
    /// was, buffered otherwise, ignored if already seen.
    pub fn apply(&mut self, op: impl Into<Arc<Op>>, now_ms: u64) -> Result<Delivery, CrdtError> {
        let op = op.into();
        validate(&op)?;
        if op.id.seq <= self.version.get(op.id.replica) || self.pending.contains(&op.id) {
            self.duplicates += 1;
            return Ok(Delivery::Duplicate);
        }
        if !is_ready(&op, &self.version) {
            self.pending.insert(op, now_ms);
            return Ok(Delivery::Buffered);
        }
        self.deliver(op, now_ms);
        Ok(Delivery::Applied {
            ops: 1 + self.release_pending(now_ms),
        })
    }

    /// The JSON value at `path`, if any.
    pub fn get(&self, path: &[Seg]) -> Option<Value> {
        let mut node = &self.tree;
        for seg in path {
            node = match seg {
                Seg::Key(key) if node.shows_keys() => node.keys.get(key.as_str())?.as_ref(),
                Seg::Key(_) => return None,
                Seg::Index(index) if node.shows_list() => &node.list.nth_present(*index)?.node,
                Seg::Index(_) => return None,
            };
        }
        node.materialize()
    }

    /// The whole document as JSON (an object; `{}` when empty).
    pub fn to_json(&self) -> Value {
        self.tree
            .materialize()
            .unwrap_or_else(|| Value::Object(Map::new()))
    }

    /// What this replica has applied.
    pub fn version(&self) -> &VersionVector {
        &self.version
    }

    /// What a peer at version `peer` lacks: the operations from the log (at
    /// most `Config::max_sync_ops`, oldest first, so each chunk applies
    /// without waiting), or a snapshot if the log was compacted past the
    /// peer's version. Repeat with the peer's new version until no op is left.
    pub fn ops_since(&self, peer: &VersionVector) -> SyncMessage {
        let body = if self.base_version.le(peer) {
            SyncBody::Ops {
                ops: self
                    .log
                    .iter()
                    .filter(|op| op.id.seq > peer.get(op.id.replica))
                    .take(self.config.max_sync_ops)
                    .map(|op| Op::clone(op))
                    .collect(),
            }
        } else {
            SyncBody::Snapshot {
                snapshot: Box::new(self.snapshot()),
            }
        };
        SyncMessage {
            from: self.id,
            version: self.version.clone(),
            body,
        }
    }

    /// Applies a message built by a peer's [`ops_since`](Self::ops_since).
    /// Returns how many operations were newly applied.
    pub fn apply_sync(&mut self, message: SyncMessage, now_ms: u64) -> Result<usize, CrdtError> {
        let (applied, snapshot) = match message.body {
            SyncBody::Ops { ops } => {
                let mut applied = 0;
                for op in ops {
                    match self.apply(op, now_ms) {
                        Ok(Delivery::Applied { ops }) => applied += ops,
                        Ok(_) => {}
                        Err(error) => {
                            self.rejected += 1;
                            tracing::warn!(%error, "sync: skipped a malformed operation");
                        }
                    }
                }
                (applied, false)
            }
            SyncBody::Snapshot { snapshot } => (self.merge_snapshot(*snapshot, now_ms), true),
        };
        // Only once we hold everything the sender had of its own is its
        // version safe to count as "what it has seen" for causal stability.
        if message.from != self.id
            && self.version.get(message.from) >= message.version.get(message.from)
        {
            self.known
                .entry(message.from)
                .or_default()
                .merge(&message.version);
        }
        let from = message.from;
        self.watches.broadcast(|watch| Event::Sync {
            watch,
            from,
            ops_applied: applied,
            snapshot,
        });
        Ok(applied)
    }

    /// The full state, for persistence or for a peer too far behind.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            replica: self.id,
            clock: self.clock,
            version: self.version.clone(),
            known: self.known.clone(),
            applied: self.applied(),
            tree: self.tree.clone(),
        }
    }

    /// Rebuilds this replica from its own snapshot. The clock resumes at or
    /// after the snapshot's (never earlier, whatever `now_ms` says) and
    /// sequence numbers continue after the snapshot's, so nothing is reused.
    /// To start a *new* replica from a peer's state, use `Replica::new` and
    /// `apply_sync` instead: two replicas must never share an id.
    pub fn restore(snapshot: Snapshot, config: Config, now_ms: u64) -> Replica {
        let mut replica = Replica::with_config(snapshot.replica, config);
        replica.clock = Hlc {
            replica: snapshot.replica,
            ..snapshot.clock
        };
        replica.clock.observe(snapshot.clock, now_ms);
        replica.version = snapshot.version;
        replica.known = snapshot.known;
        replica.log_start = snapshot.applied;
        if replica.config.keep_replay_base {
            replica.base = snapshot.tree.clone();
        }
        replica.base_version = replica.version.clone();
        replica.tree = snapshot.tree;
        replica
    }

    /// Drops all but the last `keep_last` log entries (folding them into the
    /// base state used by `replay_until`). Peers behind the new log start
    /// will be sent a snapshot. Returns how many entries went.
    pub fn compact(&mut self, keep_last: usize) -> usize {
        let dropped = self.log.len().saturating_sub(keep_last);
        for op in self.log.drain(..dropped) {
            if self.config.keep_replay_base {
                // The base sees the same operations in the same order, so an
                // element missing there was missing live too: nothing to report.
                let _ = self.base.apply(&op);
            }
            self.base_version.observe(op.id.replica, op.id.seq);
        }
        self.log_start += dropped as u64;
        dropped
    }

    /// Expires old waiting operations and collects tombstones that every
    /// known replica has seen (causally stable) and that are older than the
    /// grace period.
    pub fn gc(&mut self, now_ms: u64) -> GcReport {
        let pending_expired = self.pending.expire(now_ms);
        let mut gc = Collector {
            stable: self.version.min_with(
                self.known
                    .iter()
                    .filter(|(replica, _)| **replica != self.id)
                    .map(|(_, row)| row),
            ),
            now_ms,
            grace_ms: self.config.tombstone_grace_ms,
            before: None,
        };
        let tombstones_collected = self.tree.collect(&gc);
        // The base may only lose a tombstone that no logged operation could
        // still fall under on replay: one older than every logged stamp.
        gc.before = self.log.iter().map(|op| op.stamp).min();
        if gc.before.is_some() || self.log.is_empty() {
            self.base.collect(&gc);
        }
        self.watches.broadcast(|watch| Event::Gc {
            watch,
            tombstones_collected,
            pending_expired,
        });
        GcReport {
            tombstones_collected,
            pending_expired,
        }
    }

    /// Subscribes to changes under `prefix` (and to all gc and sync events).
    pub fn watch(&mut self, prefix: &[Seg]) -> Result<WatchId, CrdtError> {
        let prefix = if prefix.is_empty() {
            Vec::new()
        } else {
            self.resolve(prefix)?
        };
        self.watches.add(prefix)
    }

    /// Ends a subscription; its undrained events are discarded.
    pub fn unwatch(&mut self, id: WatchId) -> bool {
        self.watches.remove(id)
    }

    /// Takes the queued events, oldest first.
    pub fn drain_events(&mut self) -> Vec<Event> {
        self.watches.drain()
    }

    /// Sizes and counters (walks the document: O(document)).
    pub fn stats(&self) -> Stats {
        let mut census = Census::default();
        self.tree.census(&mut census);
        Stats {
            log_ops: self.log.len(),
            log_start: self.log_start,
            pending: self.pending.len(),
            pending_dropped: self.pending.dropped,
            tombstones: census.tombstones,
            keys: census.values,
            nodes: census.nodes,
            conflicts: self.conflicts,
            duplicates: self.duplicates,
            rejected: self.rejected,
            events_dropped: self.watches.dropped,
            known_replicas: self.known.len() + 1,
        }
    }

    /// The operation applied at position `index` (0 = first ever), if still logged.
    pub fn op_at(&self, index: u64) -> Option<&Op> {
        let offset = usize::try_from(index.checked_sub(self.log_start)?).ok()?;
        self.log.get(offset).map(|op| op.as_ref())
    }

    /// Time travel: the document as it was after the first `op_index`
    /// operations this replica applied, replayed from the log.
    pub fn replay_until(&self, op_index: u64) -> Result<Value, CrdtError> {
        if op_index < self.log_start || (self.log_start > 0 && !self.config.keep_replay_base) {
            return Err(CrdtError::Compacted {
                requested: op_index,
                first_available: self.log_start,
            });
        }
        let end = self.applied();
        let count = usize::try_from(op_index - self.log_start)
            .ok()
            .filter(|_| op_index <= end)
            .ok_or(CrdtError::BeyondLog {
                requested: op_index,
                end,
            })?;
        let mut tree = self.base.clone();
        for op in &self.log[..count] {
            let _ = tree.apply(op);
        }
        Ok(tree
            .materialize()
            .unwrap_or_else(|| Value::Object(Map::new())))
    }

    fn applied(&self) -> u64 {
        self.log_start + self.log.len() as u64
    }

    fn node_at(&self, path: &[PathSeg]) -> Option<&Node> {
        let mut node = &self.tree;
        for seg in path {
            node = node.step(seg)?;
        }
        Some(node)
    }

    /// Turns a caller's path into an operation path (positions become
    /// element ids) and checks it against the current shape.
    fn resolve(&self, path: &[Seg]) -> Result<Vec<PathSeg>, CrdtError> {
        if path.is_empty() {
            return Err(CrdtError::EmptyPath);
        }
        let mut node = Some(&self.tree);
        let mut resolved = Vec::with_capacity(path.len());
        for (depth, seg) in path.iter().enumerate() {
            match seg {
                Seg::Key(key) => {
                    let mut shared = None;
                    if let Some(current) = node {
                        if current.is_list() {
                            return Err(CrdtError::NotAnObject { depth });
                        }
                        // Reuse the tree's copy of an existing key.
                        let found = current.keys.get_key_value(key.as_str());
                        shared = found.map(|(key, _)| Arc::clone(key));
                        node = found.map(|(_, child)| child.as_ref());
                    }
                    resolved.push(PathSeg::Key(
                        shared.unwrap_or_else(|| Arc::from(key.as_str())),
                    ));
                }
                Seg::Index(index) => {
                    let list = node
                        .filter(|current| current.is_list())
                        .ok_or(CrdtError::NotAList { depth })?;
                    let elem =
                        list.list
                            .nth_present(*index)
                            .ok_or(CrdtError::IndexOutOfBounds {
                                index: *index,
                                len: list.list.present_len(),
                            })?;
                    resolved.push(PathSeg::Elem(elem.id));
                    node = Some(&elem.node);
                }
            }
        }
        Ok(resolved)
    }

    fn local(&mut self, path: Vec<PathSeg>, kind: OpKind, now_ms: u64) -> Arc<Op> {
        let stamp = self.clock.tick(now_ms);
        let op = Arc::new(Op {
            id: OpId {
                replica: self.id,
                seq: self.version.get(self.id) + 1,
            },
            stamp,
            deps: self.version.without(self.id),
            path,
            kind,
        });
        self.integrate(Arc::clone(&op));
        op
    }

    fn deliver(&mut self, op: Arc<Op>, now_ms: u64) {
        self.clock.observe(op.stamp, now_ms);
        if op.id.replica != self.id {
            let row = self.known.entry(op.id.replica).or_default();
            row.merge(&op.deps);
            row.observe(op.id.replica, op.id.seq);
        }
        self.integrate(op);
    }

    /// Applies a causally ready operation to the document, the version
    /// vector, the log and the watchers.
    fn integrate(&mut self, op: Arc<Op>) {
        let watched = self.watches.matching(&op.path);
        let old = if watched.is_empty() {
            None
        } else {
            self.tree.value_at(&op.path)
        };
        let conflict = match self.tree.apply(&op) {
            Ok(Outcome::Shadowed { by }) => Some((by, op.id)),
            Ok(Outcome::Written {
                replaced: Some(old_id),
            }) if old_id.replica != op.id.replica && op.deps.get(old_id.replica) < old_id.seq => {
                Some((op.id, old_id))
            }
            Ok(Outcome::Written { .. }) => None,
            Err(_) => {
                self.rejected += 1;
                tracing::warn!(op = ?op.id, "operation names a list element this replica does not hold; skipped");
                None
            }
        };
        if let Some((winner, loser)) = conflict {
            self.conflicts += 1;
            for &watch in &watched {
                self.watches.push(Event::Conflict {
                    watch,
                    path: op.path.clone(),
                    winner,
                    loser,
                });
            }
        }
        if !watched.is_empty() {
            let new = self.tree.value_at(&op.path);
            if new != old {
                for &watch in &watched {
                    self.watches.push(Event::Change {
                        watch,
                        path: op.path.clone(),
                        old: old.clone(),
                        new: new.clone(),
                        op: op.id,
                    });
                }
            }
        }
        self.version.observe(op.id.replica, op.id.seq);
        self.log.push(op);
        if self.log.len() > self.config.max_log_ops {
            self.compact(self.config.max_log_ops / 2);
        }
    }

    /// Delivers every buffered operation that became ready.
    fn release_pending(&mut self, now_ms: u64) -> usize {
        let mut released = 0;
        while let Some(op) = self.pending.take_ready(&self.version) {
            self.deliver(op, now_ms);
            released += 1;
        }
        released
    }

    fn merge_snapshot(&mut self, snapshot: Snapshot, now_ms: u64) -> usize {
        let before: u64 = self.version.iter().map(|(_, seq)| seq).sum();
        self.clock.observe(snapshot.clock, now_ms);
        self.tree.merge(snapshot.tree);
        self.version.merge(&snapshot.version);
        for (replica, row) in &snapshot.known {
            if *replica != self.id {
                self.known.entry(*replica).or_default().merge(row);
            }
        }
        if snapshot.replica != self.id {
            self.known
                .entry(snapshot.replica)
                .or_default()
                .merge(&snapshot.version);
        }
        // The log no longer explains the state: history restarts here.
        self.log_start = self.applied();
        self.log.clear();
        if self.config.keep_replay_base {
            self.base = self.tree.clone();
        }
        self.base_version = self.version.clone();
        let after: u64 = self.version.iter().map(|(_, seq)| seq).sum();
        let covered = usize::try_from(after - before).unwrap_or(usize::MAX);
        covered + self.release_pending(now_ms)
    }
}

fn validate(op: &Op) -> Result<(), CrdtError> {
    let malformed = |reason| CrdtError::Malformed {
        replica: op.id.replica,
        reason,
    };
    if op.id.seq == 0 {
        return Err(malformed("sequence numbers start at 1"));
    }
    if op.stamp.replica != op.id.replica {
        return Err(malformed("stamp and id name different replicas"));
    }
    if op.path.is_empty() {
        return Err(malformed("empty path"));
    }
    Ok(())
}
