//! Cookie authentication between two nodes. Each side proves it holds the
//! cookie with an HMAC-SHA256 over both fresh challenges, bound to its role
//! and node id so a proof can be neither replayed nor reflected. Nothing is
//! delivered before both proofs check out, and the cookie never crosses the
//! wire.
//!
//! ```text
//! dialer                                   acceptor
//!   hello {nodeId, alias, port, challenge} ->
//!   <- hello_ack {nodeId, alias, challenge, proof}
//!   hello_done {proof} ->
//!   <- welcome | error {reason}
//! ```

use std::net::SocketAddr;
use std::time::Duration;

use bytes::BytesMut;
use futures::StreamExt;
use hmac::{Hmac, Mac};
use ironforge_pmd::wire::{decode_json, encode_frame, FrameCodec, WireError};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio_util::codec::FramedRead;

/// Reason a dialer gets when the acceptor keeps the other connection of a
/// simultaneous connect.
pub(crate) const DUPLICATE: &str = "duplicate connection";
const COOKIE_MISMATCH: &str = "cookie mismatch";

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum HandshakeFrame {
    #[serde(rename_all = "camelCase")]
    Hello {
        node_id: String,
        alias: String,
        port: u16,
        challenge: String,
    },
    #[serde(rename_all = "camelCase")]
    HelloAck {
        node_id: String,
        alias: String,
        challenge: String,
        proof: String,
    },
    HelloDone {
        proof: String,
    },
    Welcome,
    Error {
        reason: String,
    },
}

/// Which side a proof speaks for.
#[derive(Debug, Clone, Copy)]
enum Role {
    Dialer,
    Acceptor,
}

/// The HMAC a side presents: over its role, the challenge it answers, the
/// challenge it issued, and its own node id.
fn proof(cookie: &str, role: Role, answered: &str, issued: &str, node_id: &str) -> Vec<u8> {
    mac(cookie, role, answered, issued, node_id)
        .finalize()
        .into_bytes()
        .to_vec()
}

fn mac(cookie: &str, role: Role, answered: &str, issued: &str, node_id: &str) -> Hmac<Sha256> {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(cookie.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    let label: &[u8] = match role {
        Role::Dialer => b"ironforge/1 dialer",
        Role::Acceptor => b"ironforge/1 acceptor",
    };
    for part in [
        label,
        answered.as_bytes(),
        issued.as_bytes(),
        node_id.as_bytes(),
    ] {
        mac.update(&(part.len() as u32).to_be_bytes());
        mac.update(part);
    }
    mac
}

/// Constant-time check of a proof received in hex.
fn verify(
    cookie: &str,
    role: Role,
    answered: &str,
    issued: &str,
    node_id: &str,
    hex_proof: &str,
) -> bool {
    match hex::decode(hex_proof) {
        Ok(bytes) => mac(cookie, role, answered, issued, node_id)
            .verify_slice(&bytes)
            .is_ok(),
        Err(_) => false,
    }
}

fn challenge() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// Why a handshake failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HandshakeError {
    #[error("the peer's cookie differs from ours")]
    CookieMismatch,
    #[error("the peer refused: {0}")]
    Refused(String),
    #[error("expected node {expected} but reached {found}")]
    WrongNode { expected: String, found: String },
    #[error("unexpected handshake message")]
    Unexpected,
    #[error("handshake timed out")]
    Timeout,
    #[error("connection closed during the handshake")]
    Closed,
    #[error(transparent)]
    Wire(#[from] WireError),
}

/// A connection's two halves, with the frame decoder on the read side.
pub(crate) struct Conn {
    pub reader: FramedRead<OwnedReadHalf, FrameCodec>,
    pub writer: OwnedWriteHalf,
    pub remote: SocketAddr,
}

impl Conn {
    pub fn new(stream: TcpStream, max_frame: usize) -> std::io::Result<Conn> {
        stream.set_nodelay(true)?;
        let remote = stream.peer_addr()?;
        let (read, writer) = stream.into_split();
        Ok(Conn {
            reader: FramedRead::with_capacity(read, FrameCodec::new(max_frame), 64 * 1024),
            writer,
            remote,
        })
    }

    pub async fn send(&mut self, frame: &HandshakeFrame) -> Result<(), HandshakeError> {
        let mut buf = BytesMut::new();
        encode_frame(frame, &mut buf, self.reader.decoder().max_frame())?;
        self.writer.write_all(&buf).await.map_err(WireError::Io)?;
        Ok(())
    }

    async fn recv(&mut self) -> Result<HandshakeFrame, HandshakeError> {
        match self.reader.next().await {
            Some(Ok(body)) => Ok(decode_json(&body)?),
            Some(Err(err)) => Err(err.into()),
            None => Err(HandshakeError::Closed),
        }
    }

    /// Tells the peer why, then drops the connection.
    pub async fn refuse(mut self, reason: &str) {
        let _ = self
            .send(&HandshakeFrame::Error {
                reason: reason.to_owned(),
            })
            .await;
        let _ = self.writer.shutdown().await;
    }
}

/// Who this node is, for the handshake.
pub(crate) struct Identity<'a> {
    pub node_id: &'a str,
    pub alias: &'a str,
    pub port: u16,
    pub cookie: &'a str,
}

/// The authenticated peer on the other end.
#[derive(Debug, Clone)]
pub(crate) struct PeerHello {
    pub node_id: String,
    pub alias: String,
    pub port: u16,
}

/// Dials side: proves ourselves, checks the acceptor, and waits for its
/// `welcome` (it may keep a simultaneous connection instead).
pub(crate) async fn dial(
    conn: &mut Conn,
    me: &Identity<'_>,
    expected_node: Option<&str>,
    timeout: Duration,
) -> Result<PeerHello, HandshakeError> {
    tokio::time::timeout(timeout, dial_steps(conn, me, expected_node))
        .await
        .map_err(|_| HandshakeError::Timeout)?
}

async fn dial_steps(
    conn: &mut Conn,
    me: &Identity<'_>,
    expected_node: Option<&str>,
) -> Result<PeerHello, HandshakeError> {
    let mine = challenge();
    conn.send(&HandshakeFrame::Hello {
        node_id: me.node_id.to_owned(),
        alias: me.alias.to_owned(),
        port: me.port,
        challenge: mine.clone(),
    })
    .await?;
    let (node_id, alias, theirs, their_proof) = match conn.recv().await? {
        HandshakeFrame::HelloAck {
            node_id,
            alias,
            challenge,
            proof,
        } => (node_id, alias, challenge, proof),
        HandshakeFrame::Error { reason } => return Err(HandshakeError::Refused(reason)),
        _ => return Err(HandshakeError::Unexpected),
    };
    if !verify(
        me.cookie,
        Role::Acceptor,
        &mine,
        &theirs,
        &node_id,
        &their_proof,
    ) {
        let _ = conn
            .send(&HandshakeFrame::Error {
                reason: COOKIE_MISMATCH.into(),
            })
            .await;
        return Err(HandshakeError::CookieMismatch);
    }
    if let Some(expected) = expected_node.filter(|expected| *expected != node_id) {
        return Err(HandshakeError::WrongNode {
            expected: expected.to_owned(),
            found: node_id,
        });
    }
    let proof = proof(me.cookie, Role::Dialer, &theirs, &mine, me.node_id);
    conn.send(&HandshakeFrame::HelloDone {
        proof: hex::encode(proof),
    })
    .await?;
    match conn.recv().await? {
        HandshakeFrame::Welcome => Ok(PeerHello {
            node_id,
            alias,
            port: conn.remote.port(),
        }),
        HandshakeFrame::Error { reason } if reason == COOKIE_MISMATCH => {
            Err(HandshakeError::CookieMismatch)
        }
        HandshakeFrame::Error { reason } => Err(HandshakeError::Refused(reason)),
        _ => Err(HandshakeError::Unexpected),
    }
}

/// Accepting side: checks the dialer's proof. The caller then sends
/// `welcome` or refuses, once it knows whether to keep this connection.
pub(crate) async fn accept(
    conn: &mut Conn,
    me: &Identity<'_>,
    timeout: Duration,
) -> Result<PeerHello, HandshakeError> {
    tokio::time::timeout(timeout, accept_steps(conn, me))
        .await
        .map_err(|_| HandshakeError::Timeout)?
}

async fn accept_steps(conn: &mut Conn, me: &Identity<'_>) -> Result<PeerHello, HandshakeError> {
    let (node_id, alias, port, theirs) = match conn.recv().await? {
        HandshakeFrame::Hello {
            node_id,
            alias,
            port,
            challenge,
        } => (node_id, alias, port, challenge),
        _ => return Err(HandshakeError::Unexpected),
    };
    let mine = challenge();
    let proof = proof(me.cookie, Role::Acceptor, &theirs, &mine, me.node_id);
    conn.send(&HandshakeFrame::HelloAck {
        node_id: me.node_id.to_owned(),
        alias: me.alias.to_owned(),
        challenge: mine.clone(),
        proof: hex::encode(proof),
    })
    .await?;
    match conn.recv().await? {
        HandshakeFrame::HelloDone { proof }
            if verify(me.cookie, Role::Dialer, &mine, &theirs, &node_id, &proof) =>
        {
            Ok(PeerHello {
                node_id,
                alias,
                port,
            })
        }
        HandshakeFrame::HelloDone { .. } => Err(HandshakeError::CookieMismatch),
        HandshakeFrame::Error { reason } if reason == COOKIE_MISMATCH => {
            Err(HandshakeError::CookieMismatch)
        }
        HandshakeFrame::Error { reason } => Err(HandshakeError::Refused(reason)),
        _ => Err(HandshakeError::Unexpected),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proofs_bind_cookie_role_challenges_and_node() {
        let p = hex::encode(proof("c", Role::Dialer, "x", "y", "n"));
        assert!(verify("c", Role::Dialer, "x", "y", "n", &p));
        assert!(!verify("other", Role::Dialer, "x", "y", "n", &p));
        assert!(!verify("c", Role::Acceptor, "x", "y", "n", &p));
        assert!(!verify("c", Role::Dialer, "y", "x", "n", &p));
        assert!(!verify("c", Role::Dialer, "x", "y", "m", &p));
        assert!(!verify("c", Role::Dialer, "x", "y", "n", "not hex"));
    }
}
