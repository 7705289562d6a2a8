//! A node's bounded mailbox. Unlike an Erlang process mailbox it never grows
//! past its capacity: the overflow policy decides what gives, and every
//! message that gives is counted.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::config::OverflowPolicy;
use crate::message::Message;

#[derive(Debug, Default)]
pub(crate) struct MailboxCounters {
    pub delivered: AtomicU64,
    pub dropped: AtomicU64,
    pub rejected: AtomicU64,
}

pub(crate) struct Mailbox {
    queue: Mutex<VecDeque<Message>>,
    ready: Notify,
    capacity: usize,
    policy: OverflowPolicy,
    closed: AtomicBool,
    pub counters: MailboxCounters,
}

impl Mailbox {
    pub fn new(capacity: usize, policy: OverflowPolicy) -> Self {
        Mailbox {
            queue: Mutex::new(VecDeque::with_capacity(capacity.min(1024))),
            ready: Notify::new(),
            capacity: capacity.max(1),
            policy,
            closed: AtomicBool::new(false),
            counters: MailboxCounters::default(),
        }
    }

    /// Delivers a batch under one lock. Returns the requests refused under
    /// the `Reject` policy, so their senders can be told at once.
    pub fn deliver(&self, batch: impl IntoIterator<Item = Message>) -> Vec<Message> {
        let mut refused = Vec::new();
        let (mut delivered, mut dropped, mut rejected) = (0, 0, 0);
        {
            let mut queue = self.queue.lock();
            for message in batch {
                if queue.len() < self.capacity {
                    queue.push_back(message);
                    delivered += 1;
                    continue;
                }
                match self.policy {
                    OverflowPolicy::DropNewest => dropped += 1,
                    OverflowPolicy::DropOldest => {
                        queue.pop_front();
                        queue.push_back(message);
                        delivered += 1;
                        dropped += 1;
                    }
                    OverflowPolicy::Reject => {
                        rejected += 1;
                        if message.is_request() {
                            refused.push(message);
                        }
                    }
                }
            }
        }
        let c = &self.counters;
        c.delivered.fetch_add(delivered, Ordering::Relaxed);
        c.dropped.fetch_add(dropped, Ordering::Relaxed);
        c.rejected.fetch_add(rejected, Ordering::Relaxed);
        if delivered > 0 {
            self.ready.notify_one();
        }
        refused
    }

    /// Waits for the next message; `None` once the node has shut down.
    pub async fn recv(&self) -> Option<Message> {
        if let Some(message) = self.try_recv() {
            return Some(message);
        }
        loop {
            if self.closed.load(Ordering::Acquire) {
                return None;
            }
            self.ready.notified().await;
            let (message, more) = {
                let mut queue = self.queue.lock();
                (queue.pop_front(), !queue.is_empty())
            };
            if let Some(message) = message {
                // One wake-up per batch: pass it on in case others wait too.
                if more {
                    self.ready.notify_one();
                }
                return Some(message);
            }
        }
    }

    pub fn try_recv(&self) -> Option<Message> {
        self.queue.lock().pop_front()
    }

    pub fn len(&self) -> usize {
        self.queue.lock().len()
    }

    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.ready.notify_waiters();
        self.ready.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn msg(n: u64, request: bool) -> Message {
        Message {
            from: "a".into(),
            from_alias: "a".into(),
            body: Bytes::from(n.to_string()),
            request_id: request.then_some(n),
        }
    }

    fn bodies(mailbox: &Mailbox) -> Vec<String> {
        std::iter::from_fn(|| mailbox.try_recv())
            .map(|m| String::from_utf8(m.raw().to_vec()).unwrap())
            .collect()
    }

    #[test]
    fn each_policy_keeps_the_bound() {
        let newest = Mailbox::new(2, OverflowPolicy::DropNewest);
        newest.deliver((1..=4).map(|n| msg(n, false)));
        assert_eq!(bodies(&newest), ["1", "2"]);
        assert_eq!(newest.counters.dropped.load(Ordering::Relaxed), 2);

        let oldest = Mailbox::new(2, OverflowPolicy::DropOldest);
        oldest.deliver((1..=4).map(|n| msg(n, false)));
        assert_eq!(bodies(&oldest), ["3", "4"]);
        assert_eq!(oldest.counters.dropped.load(Ordering::Relaxed), 2);

        let reject = Mailbox::new(2, OverflowPolicy::Reject);
        let refused = reject.deliver((1..=4).map(|n| msg(n, n == 4)));
        assert_eq!(refused.len(), 1);
        assert_eq!(bodies(&reject), ["1", "2"]);
        assert_eq!(reject.counters.rejected.load(Ordering::Relaxed), 2);
    }
}
