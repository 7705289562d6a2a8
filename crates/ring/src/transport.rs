//! The datagram transport the membership shell gossips over, kept behind a
//! small trait so the SWIM logic does not care whether packets travel over
//! UDP or over the node runtime.

use bytes::Bytes;
use thiserror::Error;

/// Why a datagram could not be handed to the network.
#[derive(Debug, Error)]
pub enum TransportError {
    /// The destination is not an address this transport understands.
    #[error("bad transport address {0:?}")]
    BadAddress(String),
    /// The operating system refused the operation.
    #[error("transport I/O error: {0}")]
    Io(#[from] std::io::Error),
}

/// Sends gossip datagrams to member addresses.
///
/// Incoming datagrams are not read through this trait: the transport's
/// constructor hands out a bounded `tokio::sync::mpsc::Receiver<Bytes>` that
/// [`Membership::start`](crate::Membership::start) reads from.
///
/// Delivery is best effort: SWIM tolerates loss, so `send` must never block
/// the caller; a transport that cannot send right away drops the datagram.
pub trait GossipTransport: Send + Sync + 'static {
    /// The address other members use to reach this one (it is gossiped).
    fn local_address(&self) -> String;

    /// Hands one datagram to the network without waiting.
    fn send(&self, to: &str, datagram: Bytes) -> Result<(), TransportError>;

    /// The transport address of the member reachable as `seed`, or `None`
    /// while it is not known yet (the membership asks again on its next
    /// announce round). Must not wait. The default takes seeds to be
    /// transport addresses already, as for UDP.
    fn resolve_seed(&self, seed: &str) -> Option<String> {
        Some(seed.to_owned())
    }
}
