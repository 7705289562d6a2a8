//! The embedded backend's hot, in-memory indexes over live jobs: one FIFO
//! ready queue per priority, a min-heap of delayed jobs and retries by
//! `run_at`, and a min-heap of leases by expiry. Rebuilt from the database on
//! open. Pure: no I/O, time comes in as arguments.
//!
//! Queues and heaps use lazy deletion: an entry is valid only while the
//! job's `live` slot still matches it (same sequence number or lease token),
//! so cancel, renew and requeue are O(1) and stale entries are skipped when
//! popped.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::sync::Arc;

use crate::job::{JobId, Priority};

/// Where a live job is.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Slot {
    /// In its priority's ready queue with this sequence number.
    Ready { seq: u64 },
    /// Waiting for `run_at`; `retry` tells a failed attempt from a delayed job.
    Delayed { run_at: u64, seq: u64, retry: bool },
    /// Leased to a consumer.
    Leased(LeaseSlot),
}

/// A lease held by a consumer.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct LeaseSlot {
    pub token: u64,
    pub expires_at: u64,
    pub started_at: u64,
    pub progress: Option<u8>,
}

/// A job that is not finished (not completed, dead or cancelled).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Live {
    pub priority: Priority,
    pub kind: Arc<str>,
    pub attempts: u32,
    pub deliveries: u32,
    pub slot: Slot,
}

/// A lease just granted by [`Index::lease`].
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Granted {
    pub id: JobId,
    pub kind: Arc<str>,
    pub priority: Priority,
    pub attempts: u32,
    pub deliveries: u32,
    pub token: u64,
    pub expires_at: u64,
}

/// What happened to one expired lease.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Expired {
    pub id: JobId,
    pub kind: Arc<str>,
    pub deliveries: u32,
    pub dead: bool,
}

/// Counts kept in step with every transition, so stats are O(1).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct Counts {
    pub ready: [u64; 4],
    pub scheduled: u64,
    pub retrying: u64,
    pub leased: u64,
    pub completed: u64,
    pub dead: u64,
    pub cancelled: u64,
}

/// The indexes.
#[derive(Debug, Default)]
pub(crate) struct Index {
    ready: [VecDeque<(u64, JobId)>; 4],
    delayed: BinaryHeap<Reverse<(u64, u64, JobId)>>,
    expiries: BinaryHeap<Reverse<(u64, u64, JobId)>>,
    live: HashMap<JobId, Live>,
    pub counts: Counts,
    next_seq: u64,
    next_token: u64,
}

impl Index {
    /// An empty index whose sequence numbers start after `max_seq`.
    pub fn new(max_seq: u64) -> Self {
        Index {
            next_seq: max_seq + 1,
            next_token: 1,
            ..Index::default()
        }
    }

    /// A fresh enqueue sequence number (FIFO order within a priority).
    pub fn alloc_seq(&mut self) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        seq
    }

    /// Live (unfinished) jobs.
    pub fn live_len(&self) -> usize {
        self.live.len()
    }

    /// The live job, if any.
    pub fn get(&self, id: &JobId) -> Option<&Live> {
        self.live.get(id)
    }

    /// Live jobs whose slot satisfies `pick`, at most `limit`.
    pub fn find(&self, limit: usize, pick: impl Fn(&Slot) -> bool) -> Vec<JobId> {
        self.live
            .iter()
            .filter(|(_, l)| pick(&l.slot))
            .take(limit)
            .map(|(id, _)| *id)
            .collect()
    }

    fn count_slot(&mut self, priority: Priority, slot: &Slot, delta: i64) {
        let counter = match slot {
            Slot::Ready { .. } => &mut self.counts.ready[priority.rank()],
            Slot::Delayed { retry: false, .. } => &mut self.counts.scheduled,
            Slot::Delayed { retry: true, .. } => &mut self.counts.retrying,
            Slot::Leased(_) => &mut self.counts.leased,
        };
        *counter = counter.saturating_add_signed(delta);
    }

    fn place(&mut self, id: JobId, live: Live) {
        match &live.slot {
            Slot::Ready { seq } => self.ready[live.priority.rank()].push_back((*seq, id)),
            Slot::Delayed { run_at, seq, .. } => self.delayed.push(Reverse((*run_at, *seq, id))),
            Slot::Leased(l) => self.expiries.push(Reverse((l.expires_at, l.token, id))),
        }
        self.count_slot(live.priority, &live.slot, 1);
        if let Some(old) = self.live.insert(id, live) {
            self.count_slot(old.priority, &old.slot, -1);
        }
    }

    /// Adds or replaces a live job.
    pub fn insert(&mut self, id: JobId, live: Live) {
        self.place(id, live);
    }

    /// Removes a live job (finished); returns it.
    pub fn remove(&mut self, id: &JobId) -> Option<Live> {
        let live = self.live.remove(id)?;
        self.count_slot(live.priority, &live.slot, -1);
        Some(live)
    }

    fn move_to(&mut self, id: JobId, slot: Slot) {
        if let Some(mut live) = self.remove(&id) {
            live.slot = slot;
            self.place(id, live);
        }
    }

    /// Leases up to `max` ready jobs, highest priority first, FIFO within one.
    pub fn lease(&mut self, max: usize, lease_ms: u64, now_ms: u64) -> Vec<Granted> {
        let mut granted = Vec::new();
        for rank in 0..self.ready.len() {
            while granted.len() < max {
                let Some((seq, id)) = self.ready[rank].pop_front() else {
                    break;
                };
                let valid = matches!(
                    self.live.get(&id),
                    Some(Live { slot: Slot::Ready { seq: s }, .. }) if *s == seq
                );
                if !valid {
                    continue;
                }
                let token = self.next_token;
                self.next_token += 1;
                let expires_at = now_ms.saturating_add(lease_ms);
                if let Some(mut live) = self.remove(&id) {
                    live.deliveries = live.deliveries.saturating_add(1);
                    live.slot = Slot::Leased(LeaseSlot {
                        token,
                        expires_at,
                        started_at: now_ms,
                        progress: None,
                    });
                    granted.push(Granted {
                        id,
                        kind: live.kind.clone(),
                        priority: live.priority,
                        attempts: live.attempts,
                        deliveries: live.deliveries,
                        token,
                        expires_at,
                    });
                    self.place(id, live);
                }
            }
        }
        granted
    }

    /// The lease of `id` if `token` still holds it.
    pub fn lease_of(&self, id: &JobId, token: u64) -> Option<&LeaseSlot> {
        match self.live.get(id) {
            Some(Live {
                slot: Slot::Leased(l),
                ..
            }) if l.token == token => Some(l),
            _ => None,
        }
    }

    fn lease_of_mut(&mut self, id: &JobId, token: u64) -> Option<&mut LeaseSlot> {
        match self.live.get_mut(id) {
            Some(Live {
                slot: Slot::Leased(l),
                ..
            }) if l.token == token => Some(l),
            _ => None,
        }
    }

    /// Ends a lease for good (completed or dead); `None` if `token` lost it.
    pub fn finish_lease(&mut self, id: &JobId, token: u64) -> Option<Live> {
        self.lease_of(id, token)?;
        self.remove(id)
    }

    /// A failed attempt with a retry at `run_at` (ready at once if due).
    /// Returns the new sequence number and the attempts count, or `None` if
    /// `token` lost the lease.
    pub fn retry_lease(
        &mut self,
        id: &JobId,
        token: u64,
        run_at: u64,
        now_ms: u64,
    ) -> Option<(u64, u32)> {
        self.lease_of(id, token)?;
        let seq = self.alloc_seq();
        let live = self.live.get_mut(id)?;
        live.attempts = live.attempts.saturating_add(1);
        let attempts = live.attempts;
        let slot = if run_at <= now_ms {
            Slot::Ready { seq }
        } else {
            Slot::Delayed {
                run_at,
                seq,
                retry: true,
            }
        };
        self.move_to(*id, slot);
        Some((seq, attempts))
    }

    /// Hands a lease back: ready again at once. False if `token` lost it.
    pub fn release(&mut self, id: &JobId, token: u64) -> bool {
        if self.lease_of(id, token).is_none() {
            return false;
        }
        let seq = self.alloc_seq();
        self.move_to(*id, Slot::Ready { seq });
        true
    }

    /// Extends a lease. False if `token` lost it.
    pub fn renew(&mut self, id: &JobId, token: u64, expires_at: u64) -> bool {
        let Some(lease) = self.lease_of_mut(id, token) else {
            return false;
        };
        lease.expires_at = expires_at;
        self.expiries.push(Reverse((expires_at, token, *id)));
        true
    }

    /// Records progress of a lease. False if `token` lost it.
    pub fn set_progress(&mut self, id: &JobId, token: u64, value: u8) -> bool {
        match self.lease_of_mut(id, token) {
            Some(lease) => {
                lease.progress = Some(value);
                true
            }
            None => false,
        }
    }

    /// True when a delayed job may be due at `now_ms` (the heap top may be stale).
    pub fn may_have_due(&self, now_ms: u64) -> bool {
        matches!(self.delayed.peek(), Some(Reverse((run_at, _, _))) if *run_at <= now_ms)
    }

    /// True when a lease may have expired at `now_ms` (the heap top may be stale).
    pub fn may_have_expired(&self, now_ms: u64) -> bool {
        matches!(self.expiries.peek(), Some(Reverse((at, _, _))) if *at <= now_ms)
    }

    /// Moves delayed jobs due at `now_ms` to their ready queue; returns them.
    pub fn promote_due(&mut self, now_ms: u64, max: usize) -> Vec<(JobId, u64)> {
        let mut promoted = Vec::new();
        while promoted.len() < max {
            match self.delayed.peek() {
                Some(Reverse((run_at, _, _))) if *run_at <= now_ms => {}
                _ => break,
            }
            let Some(Reverse((run_at, seq, id))) = self.delayed.pop() else {
                break;
            };
            let valid = matches!(
                self.live.get(&id),
                Some(Live { slot: Slot::Delayed { run_at: r, seq: s, .. }, .. }) if *r == run_at && *s == seq
            );
            if valid {
                let seq = self.alloc_seq();
                self.move_to(id, Slot::Ready { seq });
                promoted.push((id, seq));
            }
        }
        promoted
    }

    /// Handles leases expired at `now_ms`: back to ready, or removed as dead
    /// when delivered `max_deliveries` times already.
    pub fn reclaim_expired(
        &mut self,
        now_ms: u64,
        max_deliveries: u32,
        max: usize,
    ) -> Vec<Expired> {
        let mut expired = Vec::new();
        while expired.len() < max {
            match self.expiries.peek() {
                Some(Reverse((at, _, _))) if *at <= now_ms => {}
                _ => break,
            }
            let Some(Reverse((at, token, id))) = self.expiries.pop() else {
                break;
            };
            let Some(lease) = self.lease_of(&id, token) else {
                continue;
            };
            if lease.expires_at != at {
                continue; // renewed: a later heap entry stands for it
            }
            let Some(live) = self.live.get(&id) else {
                continue;
            };
            let dead = live.deliveries >= max_deliveries;
            let item = Expired {
                id,
                kind: live.kind.clone(),
                deliveries: live.deliveries,
                dead,
            };
            if dead {
                self.remove(&id);
            } else {
                let seq = self.alloc_seq();
                self.move_to(id, Slot::Ready { seq });
            }
            expired.push(item);
        }
        expired
    }

    /// Keeps lease tokens unique across a rebuild, so a receipt issued
    /// before it can never match a lease granted after it.
    pub fn continue_tokens_from(&mut self, previous: &Index) {
        self.next_token = self.next_token.max(previous.next_token);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live(priority: Priority, slot: Slot) -> Live {
        Live {
            priority,
            kind: Arc::from("k"),
            attempts: 0,
            deliveries: 0,
            slot,
        }
    }

    fn add_ready(index: &mut Index, priority: Priority) -> JobId {
        let id = JobId::new_random();
        let seq = index.alloc_seq();
        index.insert(id, live(priority, Slot::Ready { seq }));
        id
    }

    #[test]
    fn leases_in_strict_priority_then_fifo_order() {
        let mut index = Index::new(0);
        let low = add_ready(&mut index, Priority::Low);
        let med1 = add_ready(&mut index, Priority::Medium);
        let crit = add_ready(&mut index, Priority::Critical);
        let med2 = add_ready(&mut index, Priority::Medium);
        let got: Vec<JobId> = index.lease(10, 1_000, 0).iter().map(|g| g.id).collect();
        assert_eq!(got, vec![crit, med1, med2, low]);
        assert_eq!(index.counts.leased, 4);
        assert_eq!(index.counts.ready, [0; 4]);
    }

    #[test]
    fn cancelled_entries_are_skipped_and_counts_follow() {
        let mut index = Index::new(0);
        let a = add_ready(&mut index, Priority::High);
        let b = add_ready(&mut index, Priority::High);
        assert!(index.remove(&a).is_some());
        assert_eq!(index.counts.ready[1], 1);
        let got = index.lease(10, 1_000, 0);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].id, b);
    }

    #[test]
    fn delayed_jobs_promote_only_when_due() {
        let mut index = Index::new(0);
        let id = JobId::new_random();
        index.insert(
            id,
            live(
                Priority::Low,
                Slot::Delayed {
                    run_at: 100,
                    seq: 1,
                    retry: false,
                },
            ),
        );
        assert!(index.lease(1, 10, 99).is_empty());
        assert!(index.promote_due(99, 10).is_empty());
        assert_eq!(index.counts.scheduled, 1);
        assert_eq!(index.promote_due(100, 10).len(), 1);
        assert_eq!(index.counts.scheduled, 0);
        assert_eq!(index.lease(1, 10, 100)[0].id, id);
    }

    #[test]
    fn stale_token_loses_and_renewal_postpones_expiry() {
        let mut index = Index::new(0);
        let id = add_ready(&mut index, Priority::Medium);
        let g = index.lease(1, 100, 0).remove(0);
        assert!(index.renew(&id, g.token, 500));
        assert!(index.reclaim_expired(200, 5, 10).is_empty());
        let expired = index.reclaim_expired(500, 5, 10);
        assert_eq!(expired.len(), 1);
        assert!(!expired[0].dead);
        assert!(index.finish_lease(&id, g.token).is_none());
        assert!(!index.renew(&id, g.token, 900));
        let g2 = index.lease(1, 100, 600).remove(0);
        assert_eq!(g2.deliveries, 2);
        let expired = index.reclaim_expired(700, 2, 10);
        assert!(expired[0].dead);
        assert_eq!(index.live_len(), 0);
    }

    #[test]
    fn retry_goes_to_delayed_or_ready_when_due() {
        let mut index = Index::new(0);
        let id = add_ready(&mut index, Priority::Medium);
        let g = index.lease(1, 100, 0).remove(0);
        assert_eq!(
            index.retry_lease(&id, g.token, 50, 10).map(|r| r.1),
            Some(1)
        );
        assert_eq!(index.counts.retrying, 1);
        index.promote_due(50, 10);
        let g = index.lease(1, 100, 60).remove(0);
        assert_eq!(g.attempts, 1);
        index.retry_lease(&id, g.token, 10, 60);
        assert_eq!(index.counts.ready[2], 1);
    }
}
