//! The node: its identity, its mailbox, its peers, and the public API
//! (`send`, `request`, `reply`, `recv`, `events`, `discover`, `shutdown`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use dashmap::DashMap;
use ironforge_pmd::client::{PmdClient, PmdError};
use ironforge_pmd::protocol::NodeInfo;
use parking_lot::Mutex;
use serde::Serialize;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, oneshot, watch, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{NodeConfig, OverflowPolicy};
use crate::cookie::load_cookie;
use crate::error::NodeError;
use crate::frame::{self, DataKind};
use crate::handshake::{self, Conn, HandshakeError, Identity};
use crate::mailbox::Mailbox;
use crate::message::Message;
use crate::peer::PeerHandle;
use crate::pmd_link;

/// Handshakes in progress at once; further connections wait in the backlog.
const MAX_PENDING_HANDSHAKES: usize = 256;
/// Resolved addresses kept; the cache is cleared when it grows past this.
const MAX_ROUTES: usize = 10_000;
/// Events buffered per `events()` subscriber before it starts missing some.
const EVENT_BUFFER: usize = 1024;
/// Named mailboxes a node may register.
const MAX_NAMES: usize = 64;
/// How long a lookup waits for a lost PMD connection to come back.
const PMD_RECONNECT_WAIT: Duration = Duration::from_secs(3);
/// How long `shutdown` waits for queued frames to be written.
const SHUTDOWN_FLUSH: Duration = Duration::from_secs(5);

static PROCESS_NODE: AtomicBool = AtomicBool::new(false);

/// A peer appearing or disappearing, as the PMD saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeEvent {
    PeerJoin(NodeInfo),
    PeerLeave(NodeInfo),
}

/// Counters of a node's traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NodeStats {
    pub sent: u64,
    pub received: u64,
    /// Delivered to the mailbox.
    pub delivered: u64,
    /// Discarded by `drop-newest` or `drop-oldest`.
    pub dropped: u64,
    /// Refused by `reject`.
    pub rejected: u64,
    /// Dropped because the peer could not be reached.
    pub undeliverable: u64,
    /// Frames written to peers, and the socket writes that carried them:
    /// under load one write carries many frames.
    pub frames_written: u64,
    pub socket_writes: u64,
    pub mailbox_len: usize,
    pub peers: usize,
}

#[derive(Default)]
pub(crate) struct Counters {
    pub sent: AtomicU64,
    pub received: AtomicU64,
    pub undeliverable: AtomicU64,
    pub frames_written: AtomicU64,
    pub socket_writes: AtomicU64,
}

struct PendingRequest {
    peer: Arc<str>,
    reply: oneshot::Sender<Result<Message, String>>,
}

/// Where a resolved address leads.
#[derive(Clone)]
enum Route {
    Local,
    Remote(Arc<Remote>),
}

/// A resolved remote node and the socket address to dial it at.
struct Remote {
    info: NodeInfo,
    addr: Option<SocketAddr>,
}

/// The JSON body of a message that never leaves this node.
fn encode_body<T: Serialize + ?Sized>(body: &T) -> Result<Bytes, NodeError> {
    serde_json::to_vec(body)
        .map(Bytes::from)
        .map_err(|e| NodeError::Encode(ironforge_pmd::wire::WireError::Malformed(e)))
}

async fn lookup(host: &str, port: u16) -> Option<SocketAddr> {
    tokio::net::lookup_host((host, port)).await.ok()?.next()
}

/// State shared by the node's tasks.
pub(crate) struct Shared {
    pub id: String,
    pub alias: String,
    pub port: u16,
    pub host: String,
    cookie: String,
    pub config: NodeConfig,
    pub mailbox: Mailbox,
    pub stats: Counters,
    peers: DashMap<Arc<str>, Arc<PeerHandle>>,
    routes: DashMap<String, Route>,
    names: DashMap<String, Arc<Mailbox>>,
    pending: DashMap<u64, PendingRequest>,
    next_request: AtomicU64,
    /// The connection to this host's PMD; `None` while reconnecting.
    pub pmd: watch::Sender<Option<Arc<PmdClient>>>,
    pub known: Mutex<HashMap<String, NodeInfo>>,
    pub events: broadcast::Sender<NodeEvent>,
    pub tasks: TaskTracker,
    pub shutdown: CancellationToken,
    owns_process_slot: bool,
}

impl Shared {
    pub fn identity(&self) -> Identity<'_> {
        Identity {
            node_id: &self.id,
            alias: &self.alias,
            port: self.port,
            cookie: &self.cookie,
        }
    }

    fn peer(
        self: &Arc<Self>,
        node_id: &str,
        alias: &str,
        addr: Option<SocketAddr>,
    ) -> Arc<PeerHandle> {
        if let Some(handle) = self.peers.get(node_id) {
            if addr.is_some() {
                *handle.addr.lock() = addr;
            }
            return handle.clone();
        }
        self.peers
            .entry(node_id.into())
            .or_insert_with(|| PeerHandle::spawn(self, node_id, alias, addr))
            .clone()
    }

    pub fn remove_peer(&self, handle: &Arc<PeerHandle>) {
        self.peers
            .remove_if(&handle.node_id, |_, current| Arc::ptr_eq(current, handle));
    }

    /// Forgets cached routes to a node and fails requests waiting on it.
    pub fn forget_route(&self, node_id: &str) {
        self.routes.retain(
            |_, route| !matches!(route, Route::Remote(remote) if remote.info.node_id == node_id),
        );
        self.pending.retain(|_, pending| &*pending.peer != node_id);
    }

    pub fn complete_request(
        &self,
        id: u64,
        from: &Arc<str>,
        alias: &Arc<str>,
        body: Bytes,
        error: Option<String>,
    ) {
        let Some((_, pending)) = self.pending.remove(&id) else {
            return;
        };
        let result = match error {
            Some(reason) => Err(reason),
            None => Ok(Message {
                from: from.clone(),
                from_alias: alias.clone(),
                body,
                request_id: None,
            }),
        };
        let _ = pending.reply.send(result);
    }

    async fn resolve(&self, to: &str) -> Result<Route, NodeError> {
        if let Some(route) = self.routes.get(to) {
            return Ok(route.clone());
        }
        if to == self.alias || to == self.id {
            return Ok(Route::Local);
        }
        let info = match to.split_once('@') {
            Some((alias, host)) if !is_this_host(host, &self.host) => {
                let addr = lookup(host, self.config.pmd_addr.port())
                    .await
                    .ok_or_else(|| NodeError::InvalidAddress(to.to_owned()))?;
                let remote = PmdClient::connect(addr).await?;
                remote.resolve(alias).await
            }
            Some((alias, _)) => self.local_pmd().await?.resolve(alias).await,
            None => self.local_pmd().await?.resolve(to).await,
        };
        let info = info.map_err(|err| match err {
            PmdError::NotFound(_) => NodeError::UnknownNode(to.to_owned()),
            other => NodeError::Pmd(other),
        })?;
        let route = if info.node_id == self.id {
            Route::Local
        } else {
            let addr = lookup(&info.host, info.port).await;
            Route::Remote(Arc::new(Remote { info, addr }))
        };
        if self.routes.len() >= MAX_ROUTES {
            self.routes.clear();
        }
        self.routes.insert(to.to_owned(), route.clone());
        Ok(route)
    }

    /// The PMD connection, waiting a moment if it is being re-established.
    async fn local_pmd(&self) -> Result<Arc<PmdClient>, NodeError> {
        let mut current = self.pmd.subscribe();
        let connected = async {
            let client = current.wait_for(Option::is_some).await;
            client.ok().and_then(|client| client.clone())
        };
        tokio::time::timeout(PMD_RECONNECT_WAIT, connected)
            .await
            .ok()
            .flatten()
            .ok_or(NodeError::Pmd(PmdError::Disconnected))
    }

    /// Queues one encoded frame for a remote node.
    async fn push(self: &Arc<Self>, remote: &Remote, frame: Bytes) -> Result<(), NodeError> {
        let Remote { info, addr } = remote;
        let mut frame = frame;
        // A handle whose task just gave up refuses the frame: retry once
        // with a fresh one.
        for _ in 0..2 {
            let alias = info.alias.as_deref().unwrap_or(&info.node_id);
            let handle = self.peer(&info.node_id, alias, *addr);
            match handle.outbox.send(frame).await {
                Ok(()) => {
                    self.stats.sent.fetch_add(1, Ordering::Relaxed);
                    return Ok(());
                }
                Err(returned) => {
                    self.remove_peer(&handle);
                    frame = returned.0;
                }
            }
        }
        Err(NodeError::Connect {
            peer: info.display_name().to_owned(),
            reason: "its connection task stopped".into(),
        })
    }

    fn local_message(&self, body: Bytes, request_id: Option<u64>) -> Message {
        Message {
            from: self.id.as_str().into(),
            from_alias: self.alias.as_str().into(),
            body,
            request_id,
        }
    }

    /// Delivers to a registered name; unknown names drop the message.
    pub fn deliver_named(&self, name: &str, message: Message) {
        match self.names.get(name) {
            Some(mailbox) => {
                mailbox.deliver([message]);
            }
            None => {
                tracing::debug!(name, "message for an unregistered name dropped");
                self.stats.undeliverable.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn deliver_local(&self, message: Message) -> Result<(), NodeError> {
        self.stats.sent.fetch_add(1, Ordering::Relaxed);
        self.stats.received.fetch_add(1, Ordering::Relaxed);
        match self.mailbox.deliver([message]).pop() {
            Some(_) => Err(NodeError::Rejected {
                peer: self.alias.clone(),
                reason: "mailbox full".into(),
            }),
            None => Ok(()),
        }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        if self.owns_process_slot {
            PROCESS_NODE.store(false, Ordering::Release);
        }
    }
}

fn is_this_host(host: &str, advertised: &str) -> bool {
    host == advertised || host == "localhost" || host == "127.0.0.1" || host == "::1"
}

/// A running node.
///
/// ```no_run
/// # async fn demo() -> Result<(), ironforge_node::NodeError> {
/// use ironforge_node::{Node, NodeConfig};
/// let node = Node::start(NodeConfig::new("worker-1").cookie("secret")).await?;
/// node.send("worker-2", &serde_json::json!({"hello": "world"})).await?;
/// if let Some(message) = node.recv().await {
///     println!("{} says {}", message.from_alias(), message.body());
/// }
/// node.shutdown().await;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Node {
    shared: Arc<Shared>,
}

impl Node {
    /// Starts a node: binds its listener, finds (or starts) the local PMD,
    /// registers under `config.alias`, and begins accepting peers.
    pub async fn start(config: NodeConfig) -> Result<Node, NodeError> {
        let owns_process_slot = !config.allow_multiple;
        if owns_process_slot
            && PROCESS_NODE
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
        {
            return Err(NodeError::AlreadyRunning);
        }
        let release = |err| {
            if owns_process_slot {
                PROCESS_NODE.store(false, Ordering::Release);
            }
            err
        };
        let cookie = load_cookie(&config.cookie).map_err(release)?;
        let listener = TcpListener::bind(config.listen).await.map_err(|source| {
            release(NodeError::Listen {
                addr: config.listen,
                source,
            })
        })?;
        let listen_addr = listener.local_addr().map_err(|source| {
            release(NodeError::Listen {
                addr: config.listen,
                source,
            })
        })?;
        let host = config.advertise_host.clone().unwrap_or_else(|| {
            if listen_addr.ip().is_unspecified() {
                "127.0.0.1".to_owned()
            } else {
                listen_addr.ip().to_string()
            }
        });
        let shared = Arc::new(Shared {
            id: uuid::Uuid::new_v4().to_string(),
            alias: config.alias.clone(),
            port: listen_addr.port(),
            host,
            cookie,
            mailbox: Mailbox::new(config.mailbox_capacity, config.overflow),
            config,
            stats: Counters::default(),
            peers: DashMap::new(),
            routes: DashMap::new(),
            names: DashMap::new(),
            pending: DashMap::new(),
            next_request: AtomicU64::new(1),
            pmd: watch::Sender::new(None),
            known: Mutex::new(HashMap::new()),
            events: broadcast::channel(EVENT_BUFFER).0,
            tasks: TaskTracker::new(),
            shutdown: CancellationToken::new(),
            owns_process_slot,
        });
        let pmd_events = pmd_link::connect_and_register(&shared).await?;
        shared.tasks.spawn(accept_loop(shared.clone(), listener));
        shared
            .tasks
            .spawn(pmd_link::run(shared.clone(), pmd_events));
        tracing::info!(alias = %shared.alias, id = %shared.id, addr = %listen_addr, "node started");
        Ok(Node { shared })
    }

    /// This node's id (a UUID).
    pub fn id(&self) -> &str {
        &self.shared.id
    }

    pub fn alias(&self) -> &str {
        &self.shared.alias
    }

    /// Where this node accepts peers.
    pub fn listen_port(&self) -> u16 {
        self.shared.port
    }

    /// Sends `body` to `to` (`alias`, `alias@host` or a node id) without
    /// waiting for delivery. Messages to one peer arrive in the order sent.
    pub async fn send<T: Serialize + ?Sized>(&self, to: &str, body: &T) -> Result<(), NodeError> {
        self.send_to_mailbox(to, None, body).await
    }

    /// Sends `body` to the mailbox registered as `name` on node `to`
    /// (Erlang's `{Name, Node} ! Msg`). A name nobody registered there
    /// drops the message, counted in the receiver's `undeliverable`.
    pub async fn send_named<T: Serialize + ?Sized>(
        &self,
        to: &str,
        name: &str,
        body: &T,
    ) -> Result<(), NodeError> {
        self.send_to_mailbox(to, Some(name), body).await
    }

    async fn send_to_mailbox<T: Serialize + ?Sized>(
        &self,
        to: &str,
        name: Option<&str>,
        body: &T,
    ) -> Result<(), NodeError> {
        let shared = &self.shared;
        match shared.resolve(to).await? {
            Route::Local => {
                let message = shared.local_message(encode_body(body)?, None);
                match name {
                    None => shared.deliver_local(message),
                    Some(name) => {
                        shared.stats.sent.fetch_add(1, Ordering::Relaxed);
                        shared.deliver_named(name, message);
                        Ok(())
                    }
                }
            }
            Route::Remote(remote) => {
                let frame =
                    frame::encode(DataKind::Send, None, name, body, shared.config.max_frame)
                        .map_err(NodeError::Encode)?;
                shared.push(&remote, frame).await
            }
        }
    }

    /// Registers a mailbox under `name` (Erlang's `register/2`): messages
    /// sent with [`Node::send_named`] land there instead of the main
    /// mailbox. The name is released when the returned mailbox is dropped.
    /// At most 64 names per node.
    pub fn register_name(
        &self,
        name: &str,
        capacity: usize,
        overflow: OverflowPolicy,
    ) -> Result<NamedMailbox, NodeError> {
        let names = &self.shared.names;
        if names.len() >= MAX_NAMES {
            return Err(NodeError::NameTaken(format!(
                "{name} (at most {MAX_NAMES} names)"
            )));
        }
        let mailbox = Arc::new(Mailbox::new(capacity, overflow));
        match names.entry(name.to_owned()) {
            dashmap::Entry::Occupied(_) => Err(NodeError::NameTaken(name.to_owned())),
            dashmap::Entry::Vacant(slot) => {
                slot.insert(mailbox.clone());
                Ok(NamedMailbox {
                    name: name.to_owned(),
                    mailbox,
                    shared: Arc::downgrade(&self.shared),
                })
            }
        }
    }

    /// Sends `body` to `to` and waits up to `timeout` for the reply.
    pub async fn request<T: Serialize + ?Sized>(
        &self,
        to: &str,
        body: &T,
        timeout: Duration,
    ) -> Result<Message, NodeError> {
        let shared = &self.shared;
        let route = shared.resolve(to).await?;
        let id = shared.next_request.fetch_add(1, Ordering::Relaxed);
        let (reply, answer) = oneshot::channel();
        let peer: Arc<str> = match &route {
            Route::Local => shared.id.as_str().into(),
            Route::Remote(remote) => remote.info.node_id.as_str().into(),
        };
        shared.pending.insert(id, PendingRequest { peer, reply });
        let sent = match route {
            Route::Local => encode_body(body)
                .and_then(|body| shared.deliver_local(shared.local_message(body, Some(id)))),
            Route::Remote(remote) => {
                match frame::encode(
                    DataKind::Request,
                    Some(id),
                    None,
                    body,
                    shared.config.max_frame,
                ) {
                    Ok(frame) => shared.push(&remote, frame).await,
                    Err(err) => Err(NodeError::Encode(err)),
                }
            }
        };
        if let Err(err) = sent {
            shared.pending.remove(&id);
            return Err(err);
        }
        let outcome = tokio::time::timeout(timeout, answer).await;
        shared.pending.remove(&id);
        match outcome {
            Ok(Ok(Ok(message))) => Ok(message),
            Ok(Ok(Err(reason))) => Err(NodeError::Rejected {
                peer: to.to_owned(),
                reason,
            }),
            Ok(Err(_)) => Err(NodeError::Disconnected(to.to_owned())),
            Err(_) => Err(NodeError::Timeout {
                peer: to.to_owned(),
                timeout,
            }),
        }
    }

    /// Answers a message received from `request`. Replying to a plain
    /// `send` does nothing.
    pub async fn reply<T: Serialize + ?Sized>(
        &self,
        to: &Message,
        body: &T,
    ) -> Result<(), NodeError> {
        let Some(id) = to.request_id else {
            return Ok(());
        };
        let shared = &self.shared;
        if to.from() == shared.id {
            let me: Arc<str> = shared.id.as_str().into();
            let alias: Arc<str> = shared.alias.as_str().into();
            shared.complete_request(id, &me, &alias, encode_body(body)?, None);
            return Ok(());
        }
        let frame = frame::encode(
            DataKind::Reply,
            Some(id),
            None,
            body,
            shared.config.max_frame,
        )
        .map_err(NodeError::Encode)?;
        let info = match shared.peers.get(to.from()).map(|h| h.clone()) {
            Some(handle) => {
                return handle
                    .outbox
                    .send(frame)
                    .await
                    .map_err(|_| NodeError::Disconnected(to.from_alias().to_owned()));
            }
            None => match shared.resolve(to.from()).await? {
                Route::Remote(remote) => remote,
                Route::Local => return Ok(()),
            },
        };
        shared.push(&info, frame).await
    }

    /// The next message in the mailbox; `None` after `shutdown`.
    pub async fn recv(&self) -> Option<Message> {
        self.shared.mailbox.recv().await
    }

    /// The next message if one is waiting.
    pub fn try_recv(&self) -> Option<Message> {
        self.shared.mailbox.try_recv()
    }

    /// Runs `handler` on every message, one at a time, until shutdown.
    pub fn handle<F, Fut>(&self, handler: F)
    where
        F: Fn(Node, Message) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send,
    {
        let node = self.clone();
        self.shared.tasks.spawn(async move {
            while let Some(message) = node.recv().await {
                handler(node.clone(), message).await;
            }
        });
    }

    /// Peer joins and leaves, starting with the peers registered now.
    pub fn events(&self) -> EventStream {
        let receiver = self.shared.events.subscribe();
        let snapshot = self.shared.known.lock().values().cloned().collect();
        EventStream { snapshot, receiver }
    }

    /// Every other node registered with this host's PMD.
    pub async fn discover(&self) -> Result<Vec<NodeInfo>, NodeError> {
        let mut nodes = self.shared.local_pmd().await?.list().await?;
        nodes.retain(|node| node.node_id != self.shared.id);
        Ok(nodes)
    }

    pub fn stats(&self) -> NodeStats {
        let shared = &self.shared;
        let mailbox = &shared.mailbox.counters;
        NodeStats {
            sent: shared.stats.sent.load(Ordering::Relaxed),
            received: shared.stats.received.load(Ordering::Relaxed),
            delivered: mailbox.delivered.load(Ordering::Relaxed),
            dropped: mailbox.dropped.load(Ordering::Relaxed),
            rejected: mailbox.rejected.load(Ordering::Relaxed),
            undeliverable: shared.stats.undeliverable.load(Ordering::Relaxed),
            frames_written: shared.stats.frames_written.load(Ordering::Relaxed),
            socket_writes: shared.stats.socket_writes.load(Ordering::Relaxed),
            mailbox_len: shared.mailbox.len(),
            peers: shared.peers.len(),
        }
    }

    /// Unregisters, writes what is queued to peers (up to 5 s), and closes.
    pub async fn shutdown(self) {
        let shared = &self.shared;
        if let Some(pmd) = shared.pmd.send_replace(None) {
            let _ = pmd.unregister(&shared.id).await;
        }
        shared.shutdown.cancel();
        // Handlers see the end of their mailbox (after what is queued), and
        // dropping the handles closes each peer's queue: its task writes
        // what is left and ends.
        shared.mailbox.close();
        for named in shared.names.iter() {
            named.value().close();
        }
        shared.peers.clear();
        shared.tasks.close();
        if tokio::time::timeout(SHUTDOWN_FLUSH, shared.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("some node tasks (peer writers, handlers) did not finish within 5 s");
        }
        tracing::info!(alias = %shared.alias, "node stopped");
    }
}

/// A mailbox registered under a name with [`Node::register_name`].
pub struct NamedMailbox {
    name: String,
    mailbox: Arc<Mailbox>,
    shared: std::sync::Weak<Shared>,
}

impl NamedMailbox {
    /// The next message; `None` once the node has shut down.
    pub async fn recv(&self) -> Option<Message> {
        self.mailbox.recv().await
    }

    pub fn try_recv(&self) -> Option<Message> {
        self.mailbox.try_recv()
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Messages this mailbox discarded or refused because it was full.
    pub fn dropped(&self) -> u64 {
        let counters = &self.mailbox.counters;
        counters.dropped.load(Ordering::Relaxed) + counters.rejected.load(Ordering::Relaxed)
    }
}

impl Drop for NamedMailbox {
    fn drop(&mut self) {
        if let Some(shared) = self.shared.upgrade() {
            shared.names.remove(&self.name);
        }
    }
}

/// Peer events: a `PeerJoin` for each peer known at subscription, then live
/// events. A subscriber more than 1,024 events behind skips the oldest.
pub struct EventStream {
    snapshot: Vec<NodeInfo>,
    receiver: broadcast::Receiver<NodeEvent>,
}

impl EventStream {
    pub async fn next(&mut self) -> Option<NodeEvent> {
        if let Some(info) = self.snapshot.pop() {
            return Some(NodeEvent::PeerJoin(info));
        }
        loop {
            match self.receiver.recv().await {
                Ok(event) => return Some(event),
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "event subscriber fell behind");
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

async fn accept_loop(shared: Arc<Shared>, listener: TcpListener) {
    let limit = Arc::new(Semaphore::new(MAX_PENDING_HANDSHAKES));
    loop {
        let accepted = tokio::select! {
            _ = shared.shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(err) => {
                tracing::warn!(error = %err, "accept failed");
                continue;
            }
        };
        let Ok(permit) = limit.clone().acquire_owned().await else {
            return;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            accept_peer(shared, stream).await;
            drop(permit);
        });
    }
}

async fn accept_peer(shared: Arc<Shared>, stream: TcpStream) {
    let Ok(mut conn) = Conn::new(stream, shared.config.max_frame) else {
        return;
    };
    let remote = conn.remote;
    match handshake::accept(
        &mut conn,
        &shared.identity(),
        shared.config.handshake_timeout,
    )
    .await
    {
        Ok(hello) => {
            let addr = SocketAddr::new(remote.ip(), hello.port);
            let handle = shared.peer(&hello.node_id, &hello.alias, Some(addr));
            let _ = handle.inbound.send((conn, hello)).await;
        }
        Err(HandshakeError::CookieMismatch) => {
            tracing::warn!(%remote, "refused a node connection: wrong cookie");
            conn.refuse("cookie mismatch").await;
        }
        Err(err) => tracing::debug!(%remote, error = %err, "handshake failed"),
    }
}
