//! Test helpers: an in-process daemon on an ephemeral port and a raw client
//! that speaks distflow's frames through `JsonCodec<Envelope>`, so every test
//! also proves wire compatibility.
#![allow(dead_code)] // each test binary uses a different subset

use std::net::SocketAddr;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use ironforge_pmd::protocol::Envelope;
use ironforge_pmd::server::{Daemon, DaemonConfig};
use ironforge_pmd::wire::JsonCodec;
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;

/// Longest any single expected thing may take before the test fails.
pub const PATIENCE: Duration = Duration::from_secs(5);

pub fn test_config() -> DaemonConfig {
    DaemonConfig {
        bind: "127.0.0.1:0".parse().unwrap(),
        ..DaemonConfig::default()
    }
}

pub struct Running {
    pub addr: SocketAddr,
    pub stop: CancellationToken,
    pub task: JoinHandle<()>,
}

pub async fn start(config: DaemonConfig) -> Running {
    let daemon = Daemon::bind(config).await.unwrap();
    let addr = daemon.local_addr();
    let stop = daemon.shutdown_handle();
    let task = tokio::spawn(daemon.run());
    Running { addr, stop, task }
}

pub struct Client {
    framed: Framed<TcpStream, JsonCodec<Envelope>>,
    next_id: u64,
}

impl Client {
    pub async fn connect(addr: SocketAddr) -> Client {
        Client::over(TcpStream::connect(addr).await.unwrap())
    }

    pub fn over(stream: TcpStream) -> Client {
        Client {
            framed: Framed::new(stream, JsonCodec::default()),
            next_id: 0,
        }
    }

    /// Sends a request frame and returns its `requestId`.
    pub async fn send(&mut self, kind: &str, payload: Value) -> Value {
        self.next_id += 1;
        let request_id = json!(format!("req_{}", self.next_id));
        let envelope = Envelope {
            kind: kind.into(),
            payload,
            request_id: Some(request_id.clone()),
        };
        self.framed.send(envelope).await.unwrap();
        request_id
    }

    /// Sends a request and returns the payload of its response.
    pub async fn request(&mut self, kind: &str, payload: Value) -> Value {
        let request_id = self.send(kind, payload).await;
        let reply = self.next_frame().await;
        assert_eq!(reply.kind, "response");
        assert_eq!(reply.request_id, Some(request_id), "requestId echoed");
        reply.payload
    }

    pub async fn register(&mut self, node_id: &str, alias: &str, port: u16) -> Value {
        let payload = json!({"nodeId": node_id, "alias": alias, "host": "127.0.0.1", "port": port});
        self.request("register", payload).await
    }

    pub async fn next_frame(&mut self) -> Envelope {
        tokio::time::timeout(PATIENCE, self.framed.next())
            .await
            .expect("a frame in time")
            .expect("connection open")
            .expect("a well-formed frame")
    }

    /// The next frame, or `None` once the connection is closed.
    pub async fn try_next_frame(&mut self) -> Option<Envelope> {
        match tokio::time::timeout(PATIENCE, self.framed.next()).await {
            Ok(Some(Ok(frame))) => Some(frame),
            Ok(None | Some(Err(_))) => None,
            Err(_) => panic!("neither a frame nor a close within {PATIENCE:?}"),
        }
    }

    /// The next event as (event name, peer's nodeId).
    pub async fn next_event(&mut self) -> (String, String) {
        let frame = self.next_frame().await;
        assert_eq!(frame.kind, "event", "{frame:?}");
        assert!(frame.request_id.is_none());
        let payload = frame.payload;
        (
            payload["event"].as_str().unwrap().to_owned(),
            payload["peer"]["nodeId"].as_str().unwrap().to_owned(),
        )
    }

    /// Asserts the daemon closes this connection (EOF or reset) in time.
    pub async fn expect_closed(&mut self) {
        let next = tokio::time::timeout(PATIENCE, self.framed.next())
            .await
            .expect("connection closed in time");
        assert!(
            matches!(next, None | Some(Err(_))),
            "expected a closed connection, got {next:?}"
        );
    }

    pub fn stream(&mut self) -> &mut TcpStream {
        self.framed.get_mut()
    }
}

pub fn join(node_id: &str) -> (String, String) {
    ("peer:join".to_owned(), node_id.to_owned())
}

pub fn leave(node_id: &str) -> (String, String) {
    ("peer:leave".to_owned(), node_id.to_owned())
}
