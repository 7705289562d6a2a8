//! The node runtime's errors: each says what went wrong and what to do next.

use ironforge_pmd::client::PmdError;
use ironforge_pmd::launcher::LaunchError;
use ironforge_pmd::wire::WireError;

/// Errors from starting a node, addressing a peer, or exchanging messages.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("a node is already running in this process (set `NodeConfig::allow_multiple` to run several)")]
    AlreadyRunning,
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("no node named '{0}' is registered")]
    UnknownNode(String),
    #[error("invalid address '{0}': expected `alias`, `alias@host` or a node id")]
    InvalidAddress(String),
    #[error("cannot connect to node '{peer}': {reason}")]
    Connect { peer: String, reason: String },
    #[error("node '{peer}' refused the handshake: {reason}")]
    Handshake { peer: String, reason: String },
    #[error("no reply from '{peer}' within {timeout:?}")]
    Timeout {
        peer: String,
        timeout: std::time::Duration,
    },
    #[error("the connection to '{0}' closed before the reply arrived")]
    Disconnected(String),
    #[error("node '{peer}' rejected the message: {reason}")]
    Rejected { peer: String, reason: String },
    #[error("the message body is not JSON this node can encode: {0}")]
    Encode(#[source] WireError),
    #[error("the name '{0}' is already registered on this node")]
    NameTaken(String),
    #[error("the node is shutting down")]
    ShuttingDown,
    #[error("cookie: {0}")]
    Cookie(String),
    #[error(transparent)]
    Pmd(#[from] PmdError),
    #[error(transparent)]
    Launch(#[from] LaunchError),
}
