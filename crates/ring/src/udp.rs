//! Gossip over UDP sockets: the one real transport shipped with the crate.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::transport::{GossipTransport, TransportError};

/// Largest datagram read from the socket; longer ones are truncated by the
/// kernel and then rejected by the SWIM decoder.
pub const MAX_DATAGRAM_BYTES: usize = 64 * 1024;

/// A UDP socket that sends gossip and feeds received datagrams into a bounded
/// queue. Dropping it stops the reader task and closes the socket.
#[derive(Debug)]
pub struct UdpTransport {
    socket: Arc<UdpSocket>,
    local: SocketAddr,
    dropped: Arc<AtomicU64>,
    reader: JoinHandle<()>,
}

impl UdpTransport {
    /// Binds `addr` (use port 0 for an ephemeral port) and starts reading.
    /// Received datagrams go to the returned receiver, which holds at most
    /// `queue` datagrams; when it is full new datagrams are dropped and counted.
    pub async fn bind(
        addr: SocketAddr,
        queue: usize,
    ) -> Result<(Self, mpsc::Receiver<Bytes>), TransportError> {
        let socket = Arc::new(UdpSocket::bind(addr).await?);
        let local = socket.local_addr()?;
        let (tx, rx) = mpsc::channel(queue.max(1));
        let dropped = Arc::new(AtomicU64::new(0));
        let reader = tokio::spawn(read_loop(Arc::clone(&socket), tx, Arc::clone(&dropped)));
        Ok((
            Self {
                socket,
                local,
                dropped,
                reader,
            },
            rx,
        ))
    }

    /// The bound socket address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Datagrams dropped because the incoming queue was full.
    pub fn dropped_datagrams(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

impl Drop for UdpTransport {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

async fn read_loop(socket: Arc<UdpSocket>, tx: mpsc::Sender<Bytes>, dropped: Arc<AtomicU64>) {
    let mut buffer = vec![0u8; MAX_DATAGRAM_BYTES];
    loop {
        let received = tokio::select! {
            received = socket.recv_from(&mut buffer) => received,
            () = tx.closed() => return,
        };
        match received {
            Ok((len, _from)) => {
                let datagram = Bytes::copy_from_slice(&buffer[..len]);
                match tx.try_send(datagram) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        dropped.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!("gossip queue full, datagram dropped");
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => return,
                }
            }
            // ICMP "port unreachable" from a dead peer surfaces here on some
            // systems; it says nothing about our socket, so keep reading.
            Err(error) => tracing::debug!(%error, "udp receive failed"),
        }
    }
}

impl GossipTransport for UdpTransport {
    fn local_address(&self) -> String {
        self.local.to_string()
    }

    fn send(&self, to: &str, datagram: Bytes) -> Result<(), TransportError> {
        let target: SocketAddr = to
            .parse()
            .map_err(|_| TransportError::BadAddress(to.to_owned()))?;
        match self.socket.try_send_to(&datagram, target) {
            Ok(_) => Ok(()),
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
                tracing::debug!(%target, "udp send buffer full, datagram dropped");
                Ok(())
            }
            Err(error) => Err(error.into()),
        }
    }
}
