//! Gossip over the node runtime: SWIM datagrams ride the nodes' existing
//! cookie-authenticated connections to a registered mailbox, so membership
//! needs no port of its own and anyone without the cookie cannot gossip.
//!
//! A member's transport address is its node id (or `node-id@host`, which the
//! PMD of `host` resolves); seeds may be `alias` or `alias@host`, which the
//! node runtime resolves through the PMDs. SWIM only accepts an announce
//! sent to the receiver's own address, so a seed is first asked for it: the
//! mailbox carries a datagram as a JSON string (base64) and this small
//! exchange as JSON objects (`Identify` / `Address`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use bytes::Bytes;
use ironforge_node::{Message, NamedMailbox, Node, NodeError, OverflowPolicy};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinHandle;

use crate::transport::{GossipTransport, TransportError};

/// Name of the mailbox every member registers for SWIM datagrams.
pub const SWIM_MAILBOX: &str = "ironforge.swim";

/// Sends in flight at once (each may wait for a PMD lookup of a peer that
/// just died); further datagrams are dropped, as UDP would under pressure.
pub const MAX_SENDS_IN_FLIGHT: usize = 256;

/// Largest decoded datagram accepted from a peer; larger ones are dropped.
pub const MAX_NODE_DATAGRAM_BYTES: usize = 64 * 1024;

/// Longest seed name or address accepted in the seed exchange.
const MAX_ADDRESS_LEN: usize = 512;

/// What travels in the gossip mailbox.
#[derive(Debug, Serialize, Deserialize)]
#[serde(untagged)]
enum Wire {
    /// A SWIM datagram, base64.
    Datagram(String),
    Control(Control),
}

/// The seed exchange: "what is your gossip address?" and its answer.
#[derive(Debug, Serialize, Deserialize)]
enum Control {
    /// Sent to a seed as we named it; the answer echoes the name and goes to
    /// `reply_to`, the asker's gossip address (a bare node id of another
    /// host would not resolve here).
    Identify { seed: String, reply_to: String },
    /// The sender's gossip address, answering `Identify { seed }`.
    Address { seed: String, address: String },
}

/// Gossips over a [`Node`]: outgoing datagrams become `send_named` messages
/// to [`SWIM_MAILBOX`], incoming ones are decoded from that mailbox into the
/// queue returned by [`NodeTransport::register`]. Dropping the transport (and
/// its clones) stops the reader and releases the mailbox name.
#[derive(Clone)]
pub struct NodeTransport {
    inner: Arc<Inner>,
}

struct Inner {
    node: Node,
    local: String,
    /// Seeds asked about (keys, bounded by the configured seeds) and the
    /// gossip address each one answered with.
    seeds: Arc<Mutex<HashMap<String, Option<String>>>>,
    in_flight: Arc<Semaphore>,
    dropped: Arc<AtomicU64>,
    reader: JoinHandle<()>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl std::fmt::Debug for NodeTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeTransport")
            .field("local", &self.inner.local)
            .finish_non_exhaustive()
    }
}

impl NodeTransport {
    /// Registers [`SWIM_MAILBOX`] on `node` (holding at most `queue`
    /// messages, the oldest dropped first) and starts forwarding its
    /// datagrams to the returned receiver, which holds at most `queue` too.
    ///
    /// The address gossiped to others is the node id, or `id@host` when
    /// `advertise_host` is given (needed when members live on several hosts:
    /// a bare node id is only resolvable through this host's PMD).
    /// Must be called inside a tokio runtime.
    pub fn register(
        node: Node,
        advertise_host: Option<&str>,
        queue: usize,
    ) -> Result<(Self, mpsc::Receiver<Bytes>), NodeError> {
        let queue = queue.max(1);
        let mailbox = node.register_name(SWIM_MAILBOX, queue, OverflowPolicy::DropOldest)?;
        let local = match advertise_host {
            Some(host) => format!("{}@{host}", node.id()),
            None => node.id().to_owned(),
        };
        let (tx, rx) = mpsc::channel(queue);
        let seeds = Arc::new(Mutex::new(HashMap::new()));
        let in_flight = Arc::new(Semaphore::new(MAX_SENDS_IN_FLIGHT));
        let dropped = Arc::new(AtomicU64::new(0));
        let reader = tokio::spawn(
            Reader {
                node: node.clone(),
                local: local.clone(),
                seeds: Arc::clone(&seeds),
                in_flight: Arc::clone(&in_flight),
                dropped: Arc::clone(&dropped),
                tx,
            }
            .run(mailbox),
        );
        let inner = Inner {
            node,
            local,
            seeds,
            in_flight,
            dropped,
            reader,
        };
        Ok((
            Self {
                inner: Arc::new(inner),
            },
            rx,
        ))
    }

    /// Datagrams dropped: incoming queue full, undecodable, or too many sends
    /// in flight.
    pub fn dropped_datagrams(&self) -> u64 {
        self.inner.dropped.load(Ordering::Relaxed)
    }

    /// Waits until every datagram handed to [`GossipTransport::send`] has
    /// been queued on its peer connection (or failed), at most `timeout`.
    /// Used after a graceful leave so the goodbye is not lost at shutdown.
    pub async fn flush(&self, timeout: Duration) {
        let all = u32::try_from(MAX_SENDS_IN_FLIGHT).unwrap_or(u32::MAX);
        let drained = tokio::time::timeout(timeout, self.inner.in_flight.acquire_many(all)).await;
        if drained.is_err() {
            tracing::debug!("gossip sends still in flight after {timeout:?}");
        }
    }
}

/// Forwards datagrams from the gossip mailbox and answers the seed exchange.
struct Reader {
    node: Node,
    local: String,
    seeds: Arc<Mutex<HashMap<String, Option<String>>>>,
    in_flight: Arc<Semaphore>,
    dropped: Arc<AtomicU64>,
    tx: mpsc::Sender<Bytes>,
}

impl Reader {
    async fn run(self, mailbox: NamedMailbox) {
        loop {
            let message = tokio::select! {
                message = mailbox.recv() => message,
                () = self.tx.closed() => return,
            };
            let Some(message) = message else {
                tracing::debug!("node shut down; gossip reader stops");
                return;
            };
            match parse(&message) {
                Some(Wire::Datagram(text)) => self.forward(&text),
                Some(Wire::Control(Control::Identify { seed, reply_to })) => {
                    let answer = Control::Address {
                        seed,
                        address: self.local.clone(),
                    };
                    spawn_send(
                        &self.node,
                        &self.in_flight,
                        &self.dropped,
                        &reply_to,
                        Wire::Control(answer),
                    );
                }
                Some(Wire::Control(Control::Address { seed, address })) => {
                    let mut seeds = self.seeds.lock().unwrap_or_else(|e| e.into_inner());
                    // Only seeds we asked about: the map stays bounded.
                    if let Some(known) = seeds.get_mut(&seed) {
                        *known = Some(address);
                    }
                }
                None => {
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(from = %message.from_alias(), "malformed gossip message dropped");
                }
            }
        }
    }

    fn forward(&self, text: &str) {
        let datagram = match BASE64.decode(text.as_bytes()) {
            Ok(bytes) if bytes.len() <= MAX_NODE_DATAGRAM_BYTES => Bytes::from(bytes),
            _ => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                tracing::debug!("undecodable gossip datagram dropped");
                return;
            }
        };
        match self.tx.try_send(datagram) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                tracing::debug!("gossip queue full, datagram dropped");
            }
            // The membership stopped; the select above ends the loop.
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }
}

fn parse(message: &Message) -> Option<Wire> {
    // Base64 grows a datagram by 4/3; refuse oversized text before parsing.
    if message.raw().len() > MAX_NODE_DATAGRAM_BYTES * 4 / 3 + 8 {
        return None;
    }
    let wire: Wire = message.json().ok()?;
    let fits = |text: &str| text.len() <= MAX_ADDRESS_LEN;
    match &wire {
        Wire::Control(Control::Identify { seed, reply_to }) if !fits(seed) || !fits(reply_to) => {
            None
        }
        Wire::Control(Control::Address { seed, address }) if !fits(seed) || !fits(address) => None,
        _ => Some(wire),
    }
}

/// Sends on its own task, bounded by [`MAX_SENDS_IN_FLIGHT`]: resolving a
/// peer may take a PMD round trip, and the caller must not wait.
fn spawn_send(node: &Node, in_flight: &Arc<Semaphore>, dropped: &AtomicU64, to: &str, wire: Wire) {
    let Ok(permit) = Arc::clone(in_flight).try_acquire_owned() else {
        dropped.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(%to, "too many gossip sends in flight, datagram dropped");
        return;
    };
    let node = node.clone();
    let to = to.to_owned();
    tokio::spawn(async move {
        if let Err(error) = node.send_named(&to, SWIM_MAILBOX, &wire).await {
            // Expected while a peer is dead or not registered yet: SWIM's
            // probes time out and it is declared down.
            tracing::debug!(%error, %to, "gossip send failed");
        }
        drop(permit);
    });
}

impl GossipTransport for NodeTransport {
    fn local_address(&self) -> String {
        self.inner.local.clone()
    }

    /// Never waits (see [`MAX_SENDS_IN_FLIGHT`]).
    fn send(&self, to: &str, datagram: Bytes) -> Result<(), TransportError> {
        if to.is_empty() {
            return Err(TransportError::BadAddress(to.to_owned()));
        }
        let inner = &self.inner;
        let wire = Wire::Datagram(BASE64.encode(&datagram));
        spawn_send(&inner.node, &inner.in_flight, &inner.dropped, to, wire);
        Ok(())
    }

    /// The address the seed last answered with; asks it (again) every time,
    /// so a restarted seed's new address is learned.
    fn resolve_seed(&self, seed: &str) -> Option<String> {
        let inner = &self.inner;
        if seed == inner.node.id() || seed == inner.local {
            return Some(inner.local.clone());
        }
        let known = {
            let mut seeds = inner.seeds.lock().unwrap_or_else(|e| e.into_inner());
            seeds.entry(seed.to_owned()).or_insert(None).clone()
        };
        let ask = Wire::Control(Control::Identify {
            seed: seed.to_owned(),
            reply_to: inner.local.clone(),
        });
        spawn_send(&inner.node, &inner.in_flight, &inner.dropped, seed, ask);
        known
    }
}
