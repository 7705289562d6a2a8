//! A client of the port-mapper daemon, used by nodes and by the CLI.
//!
//! One TCP connection carries requests (correlated by `requestId`) and, after
//! `watch`, a stream of peer events. A node keeps its client open for as long
//! as it is registered: the daemon drops a registration when its connection
//! closes, which is how a crashed node leaves at once.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use parking_lot::Mutex;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio_util::codec::{FramedRead, FramedWrite};
use tokio_util::sync::CancellationToken;

use crate::protocol::{
    DaemonStatus, Envelope, NodeInfo, PeerEvent, Registration, Request, RequestFrame,
    ResponsePayload, ServerFrame,
};
use crate::wire::{JsonCodec, WireError, DEFAULT_MAX_FRAME};

/// How long a request waits for its response by default.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// How many watch events may wait for the application before the reader
/// stops reading (and so pushes back on the daemon).
pub const EVENT_BUFFER: usize = 1024;

/// Errors talking to the daemon.
#[derive(Debug, thiserror::Error)]
pub enum PmdError {
    #[error("cannot reach the port-mapper daemon at {addr}: {source} (start one with `ironforge pmd start`)")]
    Unreachable {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("the port-mapper daemon at {0} did not answer in time")]
    Timeout(SocketAddr),
    #[error("the connection to the port-mapper daemon closed")]
    Disconnected,
    #[error("alias '{0}' not found")]
    NotFound(String),
    #[error("the port-mapper daemon refused: {0}")]
    Rejected(String),
    #[error("the port-mapper daemon sent an unexpected answer: {0}")]
    Unexpected(String),
    #[error(transparent)]
    Wire(#[from] WireError),
}

type Pending = Arc<Mutex<HashMap<String, oneshot::Sender<ResponsePayload>>>>;

/// A connection to one port-mapper daemon.
///
/// ```no_run
/// # async fn demo() -> Result<(), ironforge_pmd::client::PmdError> {
/// use ironforge_pmd::client::PmdClient;
/// let pmd = PmdClient::connect("127.0.0.1:4369".parse().unwrap()).await?;
/// for node in pmd.list().await? {
///     println!("{} at {}:{}", node.display_name(), node.host, node.port);
/// }
/// # Ok(()) }
/// ```
pub struct PmdClient {
    addr: SocketAddr,
    writer: tokio::sync::Mutex<FramedWrite<tokio::net::tcp::OwnedWriteHalf, JsonCodec<Envelope>>>,
    pending: Pending,
    events: Mutex<Option<mpsc::Receiver<PeerEvent>>>,
    next_id: AtomicU64,
    closed: CancellationToken,
    timeout: Duration,
}

impl PmdClient {
    /// Connects to the daemon at `addr`.
    pub async fn connect(addr: SocketAddr) -> Result<PmdClient, PmdError> {
        let stream = tokio::time::timeout(DEFAULT_REQUEST_TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| PmdError::Timeout(addr))?
            .map_err(|source| PmdError::Unreachable { addr, source })?;
        stream.set_nodelay(true).ok();
        let (read, write) = stream.into_split();
        let pending: Pending = Arc::default();
        let (event_tx, event_rx) = mpsc::channel(EVENT_BUFFER);
        let closed = CancellationToken::new();
        tokio::spawn(read_loop(
            FramedRead::new(read, JsonCodec::new(DEFAULT_MAX_FRAME)),
            pending.clone(),
            event_tx,
            closed.clone(),
        ));
        Ok(PmdClient {
            addr,
            writer: tokio::sync::Mutex::new(FramedWrite::new(
                write,
                JsonCodec::new(DEFAULT_MAX_FRAME),
            )),
            pending,
            events: Mutex::new(Some(event_rx)),
            next_id: AtomicU64::new(1),
            closed,
            timeout: DEFAULT_REQUEST_TIMEOUT,
        })
    }

    /// The daemon's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Resolves when the connection to the daemon is gone.
    pub async fn closed(&self) {
        self.closed.cancelled().await
    }

    /// Whether the connection to the daemon is gone.
    pub fn is_closed(&self) -> bool {
        self.closed.is_cancelled()
    }

    /// Sends one request and waits for its response payload.
    pub async fn request(&self, request: Request) -> Result<ResponsePayload, PmdError> {
        let id = format!("req_{}", self.next_id.fetch_add(1, Ordering::Relaxed));
        let (tx, rx) = oneshot::channel();
        self.pending.lock().insert(id.clone(), tx);
        let frame = RequestFrame {
            request,
            request_id: Some(serde_json::Value::String(id.clone())),
        };
        let sent = async {
            let mut writer = self.writer.lock().await;
            writer.send(frame.to_envelope()).await
        };
        if let Err(err) = sent.await {
            self.pending.lock().remove(&id);
            return Err(err.into());
        }
        let answer = tokio::time::timeout(self.timeout, rx).await;
        self.pending.lock().remove(&id);
        match answer {
            Ok(Ok(payload)) => Ok(payload),
            Ok(Err(_)) => Err(PmdError::Disconnected),
            Err(_) => Err(PmdError::Timeout(self.addr)),
        }
    }

    async fn expect_success(&self, request: Request) -> Result<(), PmdError> {
        let payload = self.request(request).await?;
        match (payload.success, payload.error) {
            (_, Some(error)) => Err(PmdError::Rejected(error)),
            (Some(true), None) => Ok(()),
            _ => Err(PmdError::Unexpected("neither success nor error".into())),
        }
    }

    /// Registers a node; it stays registered while this client is open.
    pub async fn register(&self, registration: Registration) -> Result<(), PmdError> {
        self.expect_success(Request::Register(registration)).await
    }

    pub async fn unregister(&self, node_id: &str) -> Result<(), PmdError> {
        self.expect_success(Request::Unregister {
            node_id: node_id.to_owned(),
        })
        .await
    }

    pub async fn heartbeat(&self, node_id: &str) -> Result<(), PmdError> {
        self.expect_success(Request::Heartbeat {
            node_id: node_id.to_owned(),
        })
        .await
    }

    /// Resolves an alias or a node id.
    pub async fn resolve(&self, alias: &str) -> Result<NodeInfo, PmdError> {
        let payload = self
            .request(Request::Resolve {
                alias: alias.to_owned(),
            })
            .await?;
        payload
            .node
            .ok_or_else(|| PmdError::NotFound(alias.to_owned()))
    }

    pub async fn list(&self) -> Result<Vec<NodeInfo>, PmdError> {
        let payload = self.request(Request::List).await?;
        payload
            .nodes
            .ok_or_else(|| PmdError::Unexpected(payload.error.unwrap_or_default()))
    }

    pub async fn status(&self) -> Result<DaemonStatus, PmdError> {
        let payload = self.request(Request::Status).await?;
        payload
            .status
            .ok_or_else(|| PmdError::Unexpected(payload.error.unwrap_or_default()))
    }

    /// Asks the daemon to exit.
    pub async fn shutdown(&self) -> Result<(), PmdError> {
        self.expect_success(Request::Shutdown).await
    }

    /// Subscribes to peer events: first a `peer:join` for every node already
    /// registered, then live joins and leaves. Only one watch per client.
    pub async fn watch(&self) -> Result<mpsc::Receiver<PeerEvent>, PmdError> {
        let events = self
            .events
            .lock()
            .take()
            .ok_or_else(|| PmdError::Unexpected("already watching".into()))?;
        self.expect_success(Request::Watch).await?;
        Ok(events)
    }
}

impl Drop for PmdClient {
    fn drop(&mut self) {
        self.closed.cancel();
    }
}

async fn read_loop(
    mut frames: FramedRead<tokio::net::tcp::OwnedReadHalf, JsonCodec<Envelope>>,
    pending: Pending,
    events: mpsc::Sender<PeerEvent>,
    closed: CancellationToken,
) {
    loop {
        let envelope = tokio::select! {
            _ = closed.cancelled() => break,
            next = frames.next() => match next {
                Some(Ok(envelope)) => envelope,
                Some(Err(err)) => {
                    tracing::warn!(error = %err, "bad frame from the port-mapper daemon");
                    break;
                }
                None => break,
            },
        };
        match ServerFrame::from_envelope(envelope) {
            Ok(ServerFrame::Response {
                payload,
                request_id,
            }) => {
                let key = match request_id {
                    Some(serde_json::Value::String(id)) => id,
                    _ => continue,
                };
                if let Some(waiter) = pending.lock().remove(&key) {
                    let _ = waiter.send(payload);
                }
            }
            // A watcher that went away just stops receiving.
            Ok(ServerFrame::Event(event)) => {
                let _ = events.send(event).await;
            }
            Err(err) => {
                tracing::warn!(error = %err, "unexpected frame from the port-mapper daemon")
            }
        }
    }
    closed.cancel();
    pending.lock().clear();
}
