//! Observation without async: subscriptions by path prefix, and a bounded
//! queue of events the caller drains when it likes. When the queue is full
//! the oldest event is dropped and counted, so a slow reader costs memory
//! only up to `Config::max_events`.

use crate::error::CrdtError;
use crate::hlc::ReplicaId;
use crate::op::OpId;
use crate::path::{is_prefix, PathSeg};
use serde_json::Value;
use std::collections::VecDeque;

/// Identifies one subscription made with [`Replica::watch`](crate::Replica::watch).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WatchId(pub u64);

/// Something a subscription is told about.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// The value at `path` (under the watched prefix) changed.
    Change {
        /// The subscription.
        watch: WatchId,
        /// Path of the operation.
        path: Vec<PathSeg>,
        /// The value before (`None`: absent).
        old: Option<Value>,
        /// The value after (`None`: absent).
        new: Option<Value>,
        /// The operation that changed it.
        op: OpId,
    },
    /// Two concurrent writes met at `path`; `winner` is the one that shows.
    Conflict {
        /// The subscription.
        watch: WatchId,
        /// Path of the operation.
        path: Vec<PathSeg>,
        /// The write that stays visible.
        winner: OpId,
        /// The write that is hidden.
        loser: OpId,
    },
    /// Garbage collection ran (sent to every subscription).
    Gc {
        /// The subscription.
        watch: WatchId,
        /// Tombstones and list anchors removed.
        tombstones_collected: usize,
        /// Early operations dropped from the pending buffer for age.
        pending_expired: usize,
    },
    /// A sync message was applied (sent to every subscription).
    Sync {
        /// The subscription.
        watch: WatchId,
        /// The sender.
        from: ReplicaId,
        /// Operations newly applied.
        ops_applied: usize,
        /// Whether it was a snapshot rather than a delta.
        snapshot: bool,
    },
}

pub(crate) struct Watches {
    next: u64,
    prefixes: Vec<(WatchId, Vec<PathSeg>)>,
    queue: VecDeque<Event>,
    max_events: usize,
    max_watches: usize,
    pub dropped: u64,
}

impl Watches {
    pub fn new(max_watches: usize, max_events: usize) -> Self {
        Self {
            next: 1,
            prefixes: Vec::new(),
            queue: VecDeque::new(),
            max_events,
            max_watches,
            dropped: 0,
        }
    }

    pub fn add(&mut self, prefix: Vec<PathSeg>) -> Result<WatchId, CrdtError> {
        if self.prefixes.len() >= self.max_watches {
            return Err(CrdtError::TooManyWatches {
                limit: self.max_watches,
            });
        }
        let id = WatchId(self.next);
        self.next += 1;
        self.prefixes.push((id, prefix));
        Ok(id)
    }

    pub fn remove(&mut self, id: WatchId) -> bool {
        let before = self.prefixes.len();
        self.prefixes.retain(|(watch, _)| *watch != id);
        self.queue.retain(|event| event_watch(event) != id);
        before != self.prefixes.len()
    }

    /// Subscriptions whose prefix covers `path` (no allocation when none).
    pub fn matching(&self, path: &[PathSeg]) -> Vec<WatchId> {
        self.prefixes
            .iter()
            .filter(|(_, prefix)| is_prefix(prefix, path))
            .map(|(id, _)| *id)
            .collect()
    }

    pub fn push(&mut self, event: Event) {
        if self.max_events == 0 {
            self.dropped += 1;
            return;
        }
        while self.queue.len() >= self.max_events {
            self.queue.pop_front();
            self.dropped += 1;
        }
        self.queue.push_back(event);
    }

    /// Sends one event to every subscription.
    pub fn broadcast(&mut self, make: impl Fn(WatchId) -> Event) {
        let ids: Vec<WatchId> = self.prefixes.iter().map(|(id, _)| *id).collect();
        for id in ids {
            self.push(make(id));
        }
    }

    pub fn drain(&mut self) -> Vec<Event> {
        self.queue.drain(..).collect()
    }
}

fn event_watch(event: &Event) -> WatchId {
    match event {
        Event::Change { watch, .. }
        | Event::Conflict { watch, .. }
        | Event::Gc { watch, .. }
        | Event::Sync { watch, .. } => *watch,
    }
}
