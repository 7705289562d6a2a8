//! One task per peer owns the single connection to that peer: it dials when
//! there is something to send, accepts the peer's own connection, settles
//! simultaneous connects, and writes queued frames in large batches.
//!
//! Frames to a peer wait in one bounded queue that outlives connections, so
//! per-pair FIFO order holds and a simultaneous connect loses nothing.
//! Simultaneous connects keep the connection dialed by the node with the
//! smaller id; both sides apply the same rule, so exactly one survives.

use std::net::SocketAddr;
use std::pin::pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::{FutureExt, StreamExt};
use parking_lot::Mutex;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::frame::{self, DataKind};
use crate::handshake::{self, Conn, HandshakeError, HandshakeFrame, PeerHello, DUPLICATE};
use crate::message::Message;
use crate::node::Shared;

/// Bytes gathered into one write before it is issued.
const WRITE_BATCH_BYTES: usize = 256 * 1024;
/// Frames taken from the queue per wake-up.
const WRITE_BATCH_FRAMES: usize = 1024;
/// Messages handed to the mailbox under one lock.
const READ_BATCH: usize = 1024;
/// How long a dialer whose connection lost a simultaneous connect waits for
/// the winner's connection before dialing again.
const DUPLICATE_WAIT: Duration = Duration::from_secs(2);
/// Dial attempts before frames for an unreachable peer are dropped.
const DIAL_ATTEMPTS: usize = 3;
/// Authenticated connections waiting for the peer task to take them.
const INBOUND_QUEUE: usize = 4;

/// What the rest of the node holds of a peer.
pub(crate) struct PeerHandle {
    pub node_id: Arc<str>,
    pub alias: Mutex<Arc<str>>,
    /// Where to dial; learned from the PMD or from the peer's hello.
    pub addr: Mutex<Option<SocketAddr>>,
    pub outbox: mpsc::Sender<Bytes>,
    pub inbound: mpsc::Sender<(Conn, PeerHello)>,
}

impl PeerHandle {
    /// Creates the handle and starts its task.
    pub fn spawn(
        shared: &Arc<Shared>,
        node_id: &str,
        alias: &str,
        addr: Option<SocketAddr>,
    ) -> Arc<PeerHandle> {
        let (outbox, out_rx) = mpsc::channel(shared.config.peer_queue.max(1));
        let (inbound, inbound_rx) = mpsc::channel(INBOUND_QUEUE);
        let handle = Arc::new(PeerHandle {
            node_id: node_id.into(),
            alias: Mutex::new(alias.into()),
            addr: Mutex::new(addr),
            outbox,
            inbound,
        });
        let task = PeerTask {
            shared: shared.clone(),
            handle: Arc::downgrade(&handle),
            node_id: handle.node_id.clone(),
            out: out_rx,
            inbound: inbound_rx,
            carry: Vec::new(),
        };
        shared.tasks.spawn(task.run());
        handle
    }

    fn alias(&self) -> Arc<str> {
        self.alias.lock().clone()
    }
}

struct PeerTask {
    shared: Arc<Shared>,
    handle: std::sync::Weak<PeerHandle>,
    node_id: Arc<str>,
    out: mpsc::Receiver<Bytes>,
    inbound: mpsc::Receiver<(Conn, PeerHello)>,
    /// Frames taken from the queue but not yet written.
    carry: Vec<Bytes>,
}

enum Outcome {
    /// All senders are gone and the queue is written: the task ends.
    Drained,
    /// The connection failed; frames still queued need a new one.
    Lost,
    /// The peer connected again (it saw the old connection die).
    Replaced(Link),
}

/// An authenticated connection, and whether the peer still awaits our
/// `welcome` (it dialed us).
struct Link {
    conn: Conn,
    welcome: bool,
}

impl Link {
    fn accepted(conn: Conn) -> Link {
        Link {
            conn,
            welcome: true,
        }
    }
}

impl PeerTask {
    async fn run(mut self) {
        let mut next: Option<Link> = None;
        loop {
            let link = match next.take() {
                Some(link) => link,
                None => match self.idle().await {
                    Some(Ok(conn)) => conn,
                    Some(Err(reason)) => {
                        self.give_up(&reason);
                        return;
                    }
                    None => return,
                },
            };
            match self.serve(link).await {
                Outcome::Drained => return,
                Outcome::Lost => {
                    tracing::info!(peer = %self.node_id, "connection lost");
                    self.shared.forget_route(&self.node_id);
                }
                Outcome::Replaced(link) => next = Some(link),
            }
        }
    }

    /// Waits for a frame to send (then dials) or for the peer to connect.
    /// `None` when the node is done with this peer.
    async fn idle(&mut self) -> Option<Result<Link, String>> {
        if self.carry.is_empty() {
            tokio::select! {
                Some((conn, _)) = self.inbound.recv() => return Some(Ok(Link::accepted(conn))),
                n = self.out.recv_many(&mut self.carry, WRITE_BATCH_FRAMES) => {
                    if n == 0 {
                        return None;
                    }
                }
            }
        }
        Some(self.dial().await)
    }

    /// Dials the peer, settling a simultaneous connect on the way.
    async fn dial(&mut self) -> Result<Link, String> {
        let mut last_error = String::from("no address known");
        for _ in 0..DIAL_ATTEMPTS {
            let Some(addr) = self.handle.upgrade().and_then(|h| *h.addr.lock()) else {
                return Err(last_error);
            };
            let mut attempt = pin!(dial_once(&self.shared, addr, &self.node_id));
            let result = loop {
                tokio::select! {
                    result = &mut attempt => break result,
                    Some((conn, hello)) = self.inbound.recv() => {
                        if remote_wins(&hello.node_id, &self.shared.id) {
                            return Ok(Link::accepted(conn));
                        }
                        conn.refuse(DUPLICATE).await;
                    }
                }
            };
            match result {
                Ok(conn) => {
                    return Ok(Link {
                        conn,
                        welcome: false,
                    })
                }
                Err(HandshakeError::Refused(reason)) if reason == DUPLICATE => {
                    // The peer keeps the connection it dialed; take it.
                    if let Ok(Some((conn, _))) =
                        tokio::time::timeout(DUPLICATE_WAIT, self.inbound.recv()).await
                    {
                        return Ok(Link::accepted(conn));
                    }
                    last_error = reason;
                }
                Err(HandshakeError::CookieMismatch) => {
                    tracing::error!(peer = %self.node_id, %addr, "peer refused: its cookie differs from ours");
                    return Err("cookie mismatch".into());
                }
                Err(err) => {
                    tracing::debug!(peer = %self.node_id, %addr, error = %err, "dial failed");
                    last_error = err.to_string();
                }
            }
        }
        Err(last_error)
    }

    /// Runs one connection: spawns its reader, writes queued frames.
    async fn serve(&mut self, link: Link) -> Outcome {
        let Link { mut conn, welcome } = link;
        if welcome && conn.send(&HandshakeFrame::Welcome).await.is_err() {
            return Outcome::Lost;
        }
        let Conn { reader, writer, .. } = conn;
        let mut writer = writer;
        let dead = CancellationToken::new();
        let alias = self
            .handle
            .upgrade()
            .map(|h| h.alias())
            .unwrap_or_else(|| "?".into());
        let reader = tokio::spawn(read_loop(
            self.shared.clone(),
            self.handle.clone(),
            self.node_id.clone(),
            alias,
            reader,
            dead.clone(),
        ));
        let _stop_reader = AbortOnDrop(reader);
        let mut buf = BytesMut::with_capacity(WRITE_BATCH_BYTES);
        loop {
            if self.carry.is_empty() {
                tokio::select! {
                    biased;
                    _ = dead.cancelled() => return Outcome::Lost,
                    Some((conn, _)) = self.inbound.recv() => return Outcome::Replaced(Link::accepted(conn)),
                    n = self.out.recv_many(&mut self.carry, WRITE_BATCH_FRAMES) => {
                        if n == 0 {
                            let _ = writer.shutdown().await;
                            return Outcome::Drained;
                        }
                    }
                }
            }
            buf.clear();
            let mut frames = self.carry.len() as u64;
            for frame in self.carry.drain(..) {
                buf.extend_from_slice(&frame);
            }
            while buf.len() < WRITE_BATCH_BYTES {
                match self.out.try_recv() {
                    Ok(frame) => {
                        buf.extend_from_slice(&frame);
                        frames += 1;
                    }
                    Err(_) => break,
                }
            }
            let stats = &self.shared.stats;
            stats.frames_written.fetch_add(frames, Ordering::Relaxed);
            stats.socket_writes.fetch_add(1, Ordering::Relaxed);
            if let Err(err) = writer.write_all(&buf).await {
                tracing::debug!(peer = %self.node_id, error = %err, "write failed");
                return Outcome::Lost;
            }
        }
    }

    /// The peer is unreachable: drop what waits for it and forget it.
    fn give_up(&mut self, reason: &str) {
        self.out.close();
        let mut dropped = self.carry.len() as u64;
        while self.out.try_recv().is_ok() {
            dropped += 1;
        }
        tracing::warn!(peer = %self.node_id, reason, dropped, "peer unreachable; dropped its queued messages");
        self.shared
            .stats
            .undeliverable
            .fetch_add(dropped, Ordering::Relaxed);
        self.shared.forget_route(&self.node_id);
        if let Some(handle) = self.handle.upgrade() {
            self.shared.remove_peer(&handle);
        }
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Simultaneous connects keep the connection dialed by the smaller id.
fn remote_wins(remote: &str, local: &str) -> bool {
    remote < local
}

async fn dial_once(
    shared: &Shared,
    addr: SocketAddr,
    node_id: &str,
) -> Result<Conn, HandshakeError> {
    let timeout = shared.config.handshake_timeout;
    let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| HandshakeError::Timeout)?
        .map_err(|err| HandshakeError::Wire(err.into()))?;
    let mut conn = Conn::new(stream, shared.config.max_frame)
        .map_err(|err| HandshakeError::Wire(err.into()))?;
    handshake::dial(&mut conn, &shared.identity(), Some(node_id), timeout).await?;
    Ok(conn)
}

/// Reads frames from one connection into the mailbox, completing replies.
async fn read_loop(
    shared: Arc<Shared>,
    handle: std::sync::Weak<PeerHandle>,
    node_id: Arc<str>,
    alias: Arc<str>,
    mut reader: tokio_util::codec::FramedRead<
        tokio::net::tcp::OwnedReadHalf,
        ironforge_pmd::wire::FrameCodec,
    >,
    dead: CancellationToken,
) {
    let _signal = dead.clone().drop_guard();
    let mut batch = Vec::with_capacity(READ_BATCH);
    loop {
        let Some(next) = reader.next().await else {
            break;
        };
        let mut next = Some(next);
        // Take every frame already buffered before touching the mailbox.
        while let Some(result) = next.take() {
            let data = match result.and_then(frame::decode) {
                Ok(data) => data,
                Err(err) => {
                    tracing::warn!(peer = %node_id, error = %err, "protocol error; closing the connection");
                    if err.is_protocol_error() {
                        if let Some(handle) = handle.upgrade() {
                            let _ = handle
                                .outbox
                                .try_send(frame::encode_protocol_error(&err.to_string()));
                        }
                    }
                    deliver(&shared, &handle, &mut batch).await;
                    return;
                }
            };
            match data.kind {
                DataKind::Send | DataKind::Request => {
                    let message = Message {
                        from: node_id.clone(),
                        from_alias: alias.clone(),
                        body: data.body,
                        request_id: (data.kind == DataKind::Request)
                            .then_some(data.id.unwrap_or(0)),
                    };
                    match data.to {
                        None => batch.push(message),
                        Some(name) => {
                            shared.stats.received.fetch_add(1, Ordering::Relaxed);
                            shared.deliver_named(&name, message);
                        }
                    }
                }
                DataKind::Reply => {
                    if let Some(id) = data.id {
                        shared.complete_request(id, &node_id, &alias, data.body, data.error);
                    }
                }
                DataKind::Error => {
                    tracing::warn!(peer = %node_id, reason = ?data.error, "peer reported a protocol error");
                    deliver(&shared, &handle, &mut batch).await;
                    return;
                }
            }
            if batch.len() < READ_BATCH {
                next = reader.next().now_or_never().flatten();
            }
        }
        deliver(&shared, &handle, &mut batch).await;
    }
    deliver(&shared, &handle, &mut batch).await;
}

async fn deliver(shared: &Shared, handle: &std::sync::Weak<PeerHandle>, batch: &mut Vec<Message>) {
    if batch.is_empty() {
        return;
    }
    shared
        .stats
        .received
        .fetch_add(batch.len() as u64, Ordering::Relaxed);
    let refused = shared.mailbox.deliver(batch.drain(..));
    if refused.is_empty() {
        return;
    }
    let Some(handle) = handle.upgrade() else {
        return;
    };
    for request in refused {
        if let Some(id) = request.request_id {
            let _ = handle
                .outbox
                .send(frame::encode_error_reply(id, "mailbox full"))
                .await;
        }
    }
}
