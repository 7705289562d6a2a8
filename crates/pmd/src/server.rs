//! The PMD daemon: a thin async shell around the pure [`Registry`].
//!
//! One task accepts connections, one sweeps expired registrations, and one
//! task per connection reads requests and, once it `watch`es, forwards
//! registry events. A registration lives as long as the connection that made
//! it (plus heartbeats, so half-open links expire after the TTL). Registry
//! changes are broadcast while the registry lock is held, so a watcher's
//! snapshot and its live events never overlap or leave a gap.
//!
//! Bounds: at most [`DaemonConfig::max_connections`] connections, each
//! buffering at most one frame of [`DaemonConfig::max_frame`] bytes; at most
//! [`DaemonConfig::max_nodes`] registrations; a shared event queue of
//! [`DaemonConfig::watch_queue`] events, and a watcher that falls further
//! behind than that is disconnected.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::{broadcast, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::protocol::{
    DaemonStatus, Envelope, PeerEvent, PeerEventKind, Request, RequestFrame, ResponsePayload,
    ServerFrame,
};
use crate::registry::{ConnectionId, Registry, RegistryError, DEFAULT_MAX_NODES};
use crate::wire::{JsonCodec, WireError, DEFAULT_MAX_FRAME};

/// Default PMD port (as Erlang's epmd and distflow's PMD).
pub const DEFAULT_PORT: u16 = 4369;
/// Default time a node may stay silent before it is removed.
pub const DEFAULT_TTL: Duration = Duration::from_secs(15);
/// Longest pause between expiry sweeps, whatever the TTL.
pub const MAX_SWEEP_INTERVAL: Duration = Duration::from_secs(1);
/// Default bound on simultaneously open connections.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1_024;
/// Default number of registry events a watcher may fall behind before it is
/// disconnected.
pub const DEFAULT_WATCH_QUEUE: usize = 1_024;

/// Events written to a watcher before flushing, so bursts share syscalls.
const EVENT_BATCH: usize = 64;
/// How long a connection closed for a protocol error keeps reading (and
/// discarding) so its error reply is not destroyed by a TCP reset.
const CLOSE_LINGER: Duration = Duration::from_millis(500);
/// Most bytes discarded during that linger.
const CLOSE_DRAIN_LIMIT: usize = 64 * 1024;
/// Pause after a failed `accept` (e.g. out of file descriptors).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// How the daemon listens and what it bounds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonConfig {
    /// Listening address; default `127.0.0.1:4369`.
    pub bind: SocketAddr,
    /// A node silent for longer than this is removed; default 15 s.
    pub ttl: Duration,
    /// Pause between expiry sweeps; `None` (the default) means the smaller
    /// of 1 s and a third of the TTL.
    pub sweep_interval: Option<Duration>,
    /// Largest frame read or written; default [`DEFAULT_MAX_FRAME`] (8 MiB).
    pub max_frame: usize,
    /// Open connections beyond this are refused; default 1,024.
    pub max_connections: usize,
    /// Registrations beyond this are refused; default 10,000.
    pub max_nodes: usize,
    /// Events a watcher may lag behind before being disconnected;
    /// default 1,024.
    pub watch_queue: usize,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig {
            bind: SocketAddr::from((Ipv4Addr::LOCALHOST, DEFAULT_PORT)),
            ttl: DEFAULT_TTL,
            sweep_interval: None,
            max_frame: DEFAULT_MAX_FRAME,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_nodes: DEFAULT_MAX_NODES,
            watch_queue: DEFAULT_WATCH_QUEUE,
        }
    }
}

impl DaemonConfig {
    /// The pause actually used between sweeps (never zero).
    pub fn sweep_every(&self) -> Duration {
        self.sweep_interval
            .unwrap_or_else(|| MAX_SWEEP_INTERVAL.min(self.ttl / 3))
            .max(Duration::from_millis(1))
    }
}

/// Command-line options of the daemon, shared by the `ironforge-pmd` binary
/// and `ironforge pmd start --foreground`.
#[derive(Debug, Clone, clap::Args)]
pub struct DaemonArgs {
    /// Port to listen on (0 picks a free one).
    #[arg(long, env = "IRONFORGE_PMD_PORT", default_value_t = DEFAULT_PORT)]
    pub port: u16,
    /// Address to listen on. Mutating requests are accepted only from
    /// loopback peers whatever this is.
    #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    pub bind: IpAddr,
    /// Milliseconds without a heartbeat after which a node is removed.
    #[arg(long, default_value_t = 15_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub ttl_ms: u64,
    /// Log line format (written to stderr).
    #[arg(long, value_enum, default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,
}

impl DaemonArgs {
    /// The daemon configuration these options describe.
    pub fn config(&self) -> DaemonConfig {
        DaemonConfig {
            bind: SocketAddr::new(self.bind, self.port),
            ttl: Duration::from_millis(self.ttl_ms),
            ..DaemonConfig::default()
        }
    }
}

/// Log line formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Human,
    /// One JSON object per line.
    Json,
}

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum PmdServerError {
    /// Something (probably another PMD) already listens there.
    #[error("port in use: {addr} (is another PMD running?)")]
    AddrInUse { addr: SocketAddr },
    /// Binding failed for another reason.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
}

/// Whether a peer may send mutating requests: loopback, including IPv4
/// loopback seen through an IPv6 dual-stack socket.
pub fn is_loopback_peer(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// Binds, reports the bound address to `on_ready`, and serves until shut
/// down. `on_ready` is where a binary prints its `ready <addr>` line.
pub async fn run_daemon(
    config: DaemonConfig,
    on_ready: impl FnOnce(SocketAddr),
) -> Result<(), PmdServerError> {
    let daemon = Daemon::bind(config).await?;
    on_ready(daemon.local_addr());
    daemon.run().await;
    Ok(())
}

/// A bound, not yet serving, port-mapper daemon.
///
/// ```
/// use ironforge_pmd::server::{Daemon, DaemonConfig};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), ironforge_pmd::server::PmdServerError> {
/// let config = DaemonConfig {
///     bind: "127.0.0.1:0".parse().unwrap(),
///     ..DaemonConfig::default()
/// };
/// let daemon = Daemon::bind(config).await?;
/// println!("PMD on {}", daemon.local_addr());
/// let stop = daemon.shutdown_handle();
/// let serving = tokio::spawn(daemon.run());
/// stop.cancel(); // what a `shutdown` request does
/// serving.await.unwrap();
/// # Ok(())
/// # }
/// ```
pub struct Daemon {
    listener: TcpListener,
    local_addr: SocketAddr,
    shared: Arc<Shared>,
}

impl Daemon {
    /// Listens on `config.bind`.
    pub async fn bind(config: DaemonConfig) -> Result<Daemon, PmdServerError> {
        let addr = config.bind;
        let bind_error = |source: io::Error| match source.kind() {
            io::ErrorKind::AddrInUse => PmdServerError::AddrInUse { addr },
            _ => PmdServerError::Bind { addr, source },
        };
        let listener = TcpListener::bind(addr).await.map_err(bind_error)?;
        let local_addr = listener.local_addr().map_err(bind_error)?;
        let (events, _) = broadcast::channel(config.watch_queue.max(1));
        let shared = Arc::new(Shared {
            registry: Mutex::new(Registry::new(config.max_nodes)),
            events,
            clock: Clock::start(),
            shutdown: CancellationToken::new(),
            config,
        });
        Ok(Daemon {
            listener,
            local_addr,
            shared,
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// A token that, when cancelled, stops the daemon as a `shutdown`
    /// request would.
    pub fn shutdown_handle(&self) -> CancellationToken {
        self.shared.shutdown.clone()
    }

    /// Serves until shut down, then closes every connection and returns.
    pub async fn run(self) {
        let Daemon {
            listener,
            local_addr,
            shared,
        } = self;
        let config = &shared.config;
        info!(addr = %local_addr, ttl_ms = config.ttl.as_millis() as u64, "PMD serving");
        let slots = Arc::new(Semaphore::new(config.max_connections));
        let mut tasks = JoinSet::new();
        tasks.spawn(sweep(shared.clone()));
        let mut last_id: ConnectionId = 0;
        loop {
            tokio::select! {
                () = shared.shutdown.cancelled() => break,
                Some(done) = tasks.join_next() => {
                    if let Err(err) = done {
                        error!(%err, "connection task failed");
                    }
                }
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => match slots.clone().try_acquire_owned() {
                        Ok(slot) => {
                            last_id += 1;
                            tasks.spawn(connection(shared.clone(), stream, peer, last_id, slot));
                        }
                        Err(_) => warn!(
                            %peer,
                            max = config.max_connections,
                            "connection limit reached; refusing connection"
                        ),
                    },
                    Err(err) => {
                        warn!(%err, "accept failed; retrying shortly");
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                    }
                },
            }
        }
        drop(listener);
        while tasks.join_next().await.is_some() {}
        info!("PMD stopped");
    }
}

/// State every task shares.
struct Shared {
    registry: Mutex<Registry>,
    /// Registry events; sent only while `registry` is locked.
    events: broadcast::Sender<PeerEvent>,
    clock: Clock,
    shutdown: CancellationToken,
    config: DaemonConfig,
}

impl Shared {
    fn registry(&self) -> MutexGuard<'_, Registry> {
        // The registry is only changed through methods that keep it
        // consistent, so a panic elsewhere while holding the lock is no
        // reason to stop serving.
        self.registry.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Applies a mutation and broadcasts its events under the same lock.
    fn mutate(
        &self,
        change: impl FnOnce(&mut Registry, u64) -> Result<Vec<PeerEvent>, RegistryError>,
    ) -> Result<(), RegistryError> {
        let mut registry = self.registry();
        let events = change(&mut registry, self.clock.now_ms())?;
        for event in events {
            let kind = match event.event {
                PeerEventKind::Join => "peer:join",
                PeerEventKind::Leave => "peer:leave",
            };
            info!(event = kind, node_id = %event.peer.node_id,
                alias = event.peer.alias.as_deref().unwrap_or(""),
                host = %event.peer.host, port = event.peer.port, "registry changed");
            // No receiver just means nobody watches.
            let _ = self.events.send(event);
        }
        Ok(())
    }
}

/// Milliseconds since the epoch that never run backwards: the start time
/// plus a monotonic elapsed time, so a wall-clock jump cannot expire nodes.
struct Clock {
    started: Instant,
    started_at_ms: u64,
}

impl Clock {
    fn start() -> Self {
        let since_epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Clock {
            started: Instant::now(),
            started_at_ms: millis(since_epoch),
        }
    }

    fn uptime_ms(&self) -> u64 {
        millis(self.started.elapsed())
    }

    fn now_ms(&self) -> u64 {
        self.started_at_ms.saturating_add(self.uptime_ms())
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Removes nodes whose heartbeats stopped, until shutdown.
async fn sweep(shared: Arc<Shared>) {
    let ttl = shared.config.ttl;
    let mut ticks = tokio::time::interval(shared.config.sweep_every());
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shared.shutdown.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let _ = shared.mutate(|registry, now_ms| {
            let expired = registry.expire(now_ms, ttl);
            for event in &expired {
                warn!(node_id = %event.peer.node_id, ttl_ms = millis(ttl),
                    "no heartbeat within the TTL; removing node");
            }
            Ok(expired)
        });
    }
}

/// Why a connection ended.
enum Closed {
    /// The peer closed it (or it broke under us).
    ByPeer(Option<WireError>),
    /// The peer sent something we could not accept; it got an error reply.
    Protocol(WireError),
    /// A watcher fell this many events behind.
    Lagged(u64),
}

/// Serves one connection until it closes or the daemon shuts down, then
/// removes the registrations it made.
async fn connection(
    shared: Arc<Shared>,
    stream: TcpStream,
    peer: SocketAddr,
    id: ConnectionId,
    _slot: OwnedSemaphorePermit,
) {
    debug!(conn = id, %peer, "connection opened");
    let mut conn = Connection {
        framed: Framed::new(stream, JsonCodec::new(shared.config.max_frame)),
        shared: shared.clone(),
        id,
        peer,
        watch: None,
    };
    let closed = tokio::select! {
        () = shared.shutdown.cancelled() => None,
        closed = conn.serve() => Some(closed),
    };
    drop(conn);
    let _ = shared.mutate(|registry, _| Ok(registry.remove_owned_by(id)));
    match closed {
        None => debug!(conn = id, %peer, "connection closed by shutdown"),
        Some(Closed::ByPeer(None)) => debug!(conn = id, %peer, "connection closed by peer"),
        Some(Closed::ByPeer(Some(err))) => debug!(conn = id, %peer, %err, "connection broke"),
        Some(Closed::Protocol(err)) => {
            warn!(conn = id, %peer, %err, "protocol error; closed connection")
        }
        Some(Closed::Lagged(skipped)) => warn!(conn = id, %peer, skipped,
            "watcher fell behind its event queue; disconnected it"),
    }
}

struct Connection {
    framed: Framed<TcpStream, JsonCodec<Envelope>>,
    shared: Arc<Shared>,
    id: ConnectionId,
    peer: SocketAddr,
    /// Set once the peer sent `watch`.
    watch: Option<broadcast::Receiver<PeerEvent>>,
}

impl Connection {
    async fn serve(&mut self) -> Closed {
        loop {
            let step = tokio::select! {
                frame = self.framed.next() => match frame {
                    None => Err(Closed::ByPeer(None)),
                    Some(Ok(envelope)) => self.handle(envelope).await,
                    Some(Err(err)) => Err(self.protocol_error(err, None).await),
                },
                event = next_event(&mut self.watch) => self.forward(event).await,
            };
            if let Err(closed) = step {
                return closed;
            }
        }
    }

    async fn handle(&mut self, envelope: Envelope) -> Result<(), Closed> {
        let request_id = envelope.request_id.clone();
        let request = match RequestFrame::from_envelope(envelope) {
            Ok(frame) => frame.request,
            Err(err) => return Err(self.protocol_error(err, request_id).await),
        };
        debug!(conn = self.id, request = request.type_name(), "request");
        if request.is_mutating() && !is_loopback_peer(self.peer.ip()) {
            warn!(conn = self.id, peer = %self.peer, request = request.type_name(),
                "refused mutating request from a non-loopback peer");
            let reason = format!(
                "'{}' refused: mutating requests are accepted only from loopback peers, \
                 and this connection comes from {}",
                request.type_name(),
                self.peer.ip()
            );
            return self.reply(request_id, ResponsePayload::error(reason)).await;
        }
        let shared = self.shared.clone();
        let id = self.id;
        let payload = match request {
            Request::Register(reg) => outcome(shared.mutate(|r, now| r.register(reg, id, now))),
            Request::Unregister { node_id } => {
                outcome(shared.mutate(|r, _| r.unregister(&node_id)))
            }
            Request::Heartbeat { node_id } => {
                outcome(shared.mutate(|r, now| r.heartbeat(&node_id, now).map(|()| Vec::new())))
            }
            Request::Resolve { alias } => match shared.registry().resolve(&alias) {
                Some(node) => ResponsePayload {
                    node: Some(node.clone()),
                    ..ResponsePayload::default()
                },
                None => ResponsePayload::error(RegistryError::NodeNotFound.to_string()),
            },
            Request::List => ResponsePayload {
                nodes: Some(shared.registry().list()),
                ..ResponsePayload::default()
            },
            Request::Status => ResponsePayload {
                success: Some(true),
                status: Some(DaemonStatus {
                    version: env!("CARGO_PKG_VERSION").to_owned(),
                    uptime_ms: shared.clock.uptime_ms(),
                    node_count: shared.registry().len(),
                    pid: std::process::id(),
                    started_at: shared.clock.started_at_ms,
                }),
                ..ResponsePayload::default()
            },
            Request::Watch => return self.watch(request_id).await,
            Request::Shutdown => {
                self.reply(request_id, ResponsePayload::ok()).await?;
                info!(conn = id, peer = %self.peer, "shutdown requested");
                shared.shutdown.cancel();
                return Ok(());
            }
        };
        self.reply(request_id, payload).await
    }

    /// Answers `watch`, then sends the current nodes as `peer:join` events;
    /// live events follow from `serve`.
    async fn watch(&mut self, request_id: Option<serde_json::Value>) -> Result<(), Closed> {
        let snapshot = {
            let registry = self.shared.registry();
            self.watch = Some(self.shared.events.subscribe());
            registry.list()
        };
        let response = ServerFrame::Response {
            payload: ResponsePayload::ok(),
            request_id,
        };
        self.write(response).await?;
        for peer in snapshot {
            let join = PeerEvent {
                event: PeerEventKind::Join,
                peer,
            };
            self.write(ServerFrame::Event(join)).await?;
        }
        self.flush().await
    }

    /// Sends one live event plus whatever else is already queued.
    async fn forward(&mut self, first: Result<PeerEvent, RecvError>) -> Result<(), Closed> {
        let mut event = first;
        for _ in 0..EVENT_BATCH {
            match event {
                Ok(peer_event) => self.write(ServerFrame::Event(peer_event)).await?,
                Err(RecvError::Lagged(skipped)) => return Err(Closed::Lagged(skipped)),
                Err(RecvError::Closed) => return Err(Closed::ByPeer(None)),
            }
            event = match self.watch.as_mut().map(|rx| rx.try_recv()) {
                Some(Ok(next)) => Ok(next),
                Some(Err(TryRecvError::Lagged(skipped))) => Err(RecvError::Lagged(skipped)),
                _ => break,
            };
        }
        self.flush().await
    }

    /// Answers a frame we cannot accept (when the error is the peer's, not
    /// the socket's), then closes gracefully.
    async fn protocol_error(
        &mut self,
        err: WireError,
        request_id: Option<serde_json::Value>,
    ) -> Closed {
        if !err.is_protocol_error() {
            return Closed::ByPeer(Some(err));
        }
        let message = match &err {
            WireError::UnknownType(_) => "Unknown message type".to_owned(),
            other => other.to_string(),
        };
        if self
            .reply(request_id, ResponsePayload::error(message))
            .await
            .is_ok()
        {
            self.linger().await;
        }
        Closed::Protocol(err)
    }

    /// Half-closes, then discards what the peer still sends for a moment:
    /// closing a socket with unread input makes the kernel send a reset,
    /// which can destroy the error reply before the peer reads it.
    async fn linger(&mut self) {
        let stream = self.framed.get_mut();
        if stream.shutdown().await.is_err() {
            return;
        }
        let mut scratch = [0u8; 4096];
        let mut drained = 0;
        let drain = async {
            while drained < CLOSE_DRAIN_LIMIT {
                match stream.read(&mut scratch).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => drained += n,
                }
            }
        };
        let _ = tokio::time::timeout(CLOSE_LINGER, drain).await;
    }

    /// Sends a response; one too large for a frame becomes an error reply
    /// instead of a dropped connection.
    async fn reply(
        &mut self,
        request_id: Option<serde_json::Value>,
        payload: ResponsePayload,
    ) -> Result<(), Closed> {
        let response = ServerFrame::Response {
            payload,
            request_id: request_id.clone(),
        };
        match self.framed.feed(response.to_envelope()).await {
            Err(WireError::FrameTooLarge { len, max }) => {
                warn!(conn = self.id, len, max, "response exceeds the frame limit");
                let message = format!("Response of {len} bytes exceeds the {max}-byte frame limit");
                let refusal = ServerFrame::Response {
                    payload: ResponsePayload::error(message),
                    request_id,
                };
                self.write(refusal).await?;
            }
            other => other.map_err(|err| Closed::ByPeer(Some(err)))?,
        }
        self.flush().await
    }

    /// Queues a frame without flushing.
    async fn write(&mut self, frame: ServerFrame) -> Result<(), Closed> {
        self.framed
            .feed(frame.to_envelope())
            .await
            .map_err(|err| Closed::ByPeer(Some(err)))
    }

    async fn flush(&mut self) -> Result<(), Closed> {
        SinkExt::<Envelope>::flush(&mut self.framed)
            .await
            .map_err(|err| Closed::ByPeer(Some(err)))
    }
}

/// The next event for a watcher; never resolves for a connection that does
/// not watch.
async fn next_event(
    watch: &mut Option<broadcast::Receiver<PeerEvent>>,
) -> Result<PeerEvent, RecvError> {
    match watch {
        Some(events) => events.recv().await,
        None => std::future::pending().await,
    }
}

fn outcome(result: Result<(), RegistryError>) -> ResponsePayload {
    match result {
        Ok(()) => ResponsePayload::ok(),
        Err(err) => ResponsePayload::error(err.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_guard_accepts_only_loopback() {
        for ip in ["127.0.0.1", "127.8.9.10", "::1", "::ffff:127.0.0.1"] {
            assert!(is_loopback_peer(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "192.0.2.2",
            "10.0.0.1",
            "::ffff:10.0.0.1",
            "2001:db8::1",
            "0.0.0.0",
        ] {
            assert!(!is_loopback_peer(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn sweep_interval_follows_ttl() {
        let mut config = DaemonConfig::default();
        assert_eq!(config.sweep_every(), Duration::from_secs(1));
        config.ttl = Duration::from_millis(300);
        assert_eq!(config.sweep_every(), Duration::from_millis(100));
        config.ttl = Duration::ZERO;
        assert_eq!(config.sweep_every(), Duration::from_millis(1));
        config.sweep_interval = Some(Duration::from_millis(40));
        assert_eq!(config.sweep_every(), Duration::from_millis(40));
    }

    #[test]
    fn args_map_to_config() {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            daemon: DaemonArgs,
        }
        let cli = Cli::parse_from(["pmd", "--port", "0", "--bind", "0.0.0.0", "--ttl-ms", "300"]);
        let config = cli.daemon.config();
        assert_eq!(config.bind, "0.0.0.0:0".parse().unwrap());
        assert_eq!(config.ttl, Duration::from_millis(300));
        assert!(Cli::try_parse_from(["pmd", "--ttl-ms", "0"]).is_err());
    }
}
