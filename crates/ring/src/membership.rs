//! The async membership shell: owns a SWIM instance (foca), feeds it
//! datagrams and timer events, and turns its member list into a ring that
//! callers query. Transport-agnostic through [`GossipTransport`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use thiserror::Error;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::driver::{Command, Driver};
use crate::error::RingError;
use crate::event::{ClusterView, MembershipEvent};
use crate::identity::MemberId;
use crate::ring::{Ring, RingConfig};
use crate::transport::{GossipTransport, TransportError};
use crate::udp::UdpTransport;

/// Why a membership operation failed.
#[derive(Debug, Error)]
pub enum MembershipError {
    /// The ring could not be built.
    #[error(transparent)]
    Ring(#[from] RingError),
    /// The transport could not be set up.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The node runtime refused to set up the gossip mailbox.
    #[error("node runtime: {0}")]
    Node(#[from] ironforge_node::NodeError),
    /// The view did not reach the expected member set in time.
    #[error("view {actual:?} did not converge to {expected:?} within {timeout:?}")]
    NotConverged {
        /// Member set waited for.
        expected: Vec<String>,
        /// Member set seen when the wait ended.
        actual: Vec<String>,
        /// How long we waited.
        timeout: Duration,
    },
    /// The membership task has stopped.
    #[error("membership task stopped")]
    Stopped,
    /// A configuration value is unusable.
    #[error("bad membership config: {0}")]
    BadConfig(&'static str),
}

/// Settings of one membership instance. [`MembershipConfig::new`] gives the
/// defaults, tuned so that a dead member leaves every live member's view
/// within about 2 s on a LAN without false removals in a quiet cluster.
#[derive(Debug, Clone)]
pub struct MembershipConfig {
    /// This node's id (the ring member).
    pub name: String,
    /// This process's generation; must grow across restarts of `name`.
    pub generation: u64,
    /// Transport addresses to announce to on start and while alone.
    pub seeds: Vec<String>,
    /// Shape of the ring; every member must use the same one.
    pub ring: RingConfig,
    /// SWIM probe period (default 250 ms).
    pub probe_period: Duration,
    /// Time a direct probe waits for its ack before indirect probes (default 100 ms).
    pub probe_rtt: Duration,
    /// Time a suspect has to refute before it is declared down (default 600 ms).
    pub suspect_to_down_after: Duration,
    /// Period of extra gossip rounds spreading updates (default 100 ms).
    pub gossip_interval: Duration,
    /// Members contacted per gossip round and indirect probes per failed probe (default 3).
    pub gossip_fanout: usize,
    /// Re-announce period to the seeds while this member sees nobody else (default 500 ms).
    pub announce_interval: Duration,
    /// Largest SWIM packet, bytes (default 1400: fits an Ethernet MTU).
    pub max_packet_size: usize,
    /// Events buffered per subscriber before a slow one starts missing them (default 1024).
    pub event_buffer: usize,
    /// Datagrams the UDP transport queues before dropping (default 1024).
    pub incoming_queue: usize,
    /// Commands queued to the membership task (default 16).
    pub command_queue: usize,
    /// Seed for SWIM's random member choice.
    pub rng_seed: u64,
}

impl MembershipConfig {
    /// Defaults for node `name` in its `generation`.
    pub fn new(name: impl Into<String>, generation: u64) -> Self {
        let name = name.into();
        let rng_seed = crate::hash_seed(&name, generation);
        Self {
            name,
            generation,
            seeds: Vec::new(),
            ring: RingConfig::default(),
            probe_period: Duration::from_millis(250),
            probe_rtt: Duration::from_millis(100),
            suspect_to_down_after: Duration::from_millis(600),
            gossip_interval: Duration::from_millis(100),
            gossip_fanout: 3,
            announce_interval: Duration::from_millis(500),
            max_packet_size: 1400,
            event_buffer: 1024,
            incoming_queue: 1024,
            command_queue: 16,
            rng_seed,
        }
    }

    /// Same config with `seeds` to join through.
    pub fn with_seeds<I, S>(mut self, seeds: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.seeds = seeds.into_iter().map(Into::into).collect();
        self
    }

    /// Same config with the SWIM timings of `timings`.
    pub fn with_timings(mut self, timings: SwimTimings) -> Self {
        self.probe_period = timings.probe_period;
        self.probe_rtt = timings.probe_rtt;
        self.suspect_to_down_after = timings.suspect_to_down_after;
        self.gossip_interval = timings.gossip_interval;
        self.gossip_fanout = timings.gossip_fanout;
        self.announce_interval = timings.announce_interval;
        self
    }

    pub(crate) fn foca_config(&self) -> Result<foca::Config, MembershipError> {
        use std::num::{NonZeroU8, NonZeroUsize};
        if self.probe_rtt >= self.probe_period {
            return Err(MembershipError::BadConfig(
                "probe_rtt must be shorter than probe_period",
            ));
        }
        let fanout = NonZeroUsize::new(self.gossip_fanout).ok_or(MembershipError::BadConfig(
            "gossip_fanout must be at least 1",
        ))?;
        let max_packet_size = NonZeroUsize::new(self.max_packet_size).ok_or(
            MembershipError::BadConfig("max_packet_size must be positive"),
        )?;
        Ok(foca::Config {
            probe_period: self.probe_period,
            probe_rtt: self.probe_rtt,
            num_indirect_probes: fanout,
            max_transmissions: NonZeroU8::new(10).unwrap_or(NonZeroU8::MIN),
            suspect_to_down_after: self.suspect_to_down_after,
            // Forget down identities after a while; restarts use a new generation anyway.
            remove_down_after: Some(Duration::from_secs(60)),
            max_packet_size,
            // Tell a member wrongly declared down, so it rejoins under a new generation.
            notify_down_members: true,
            periodic_announce: Some(foca::PeriodicParams {
                frequency: Duration::from_secs(5),
                num_members: NonZeroUsize::MIN,
            }),
            periodic_announce_to_down_members: None,
            periodic_gossip: Some(foca::PeriodicParams {
                frequency: self.gossip_interval,
                num_members: fanout,
            }),
        })
    }
}

/// The failure-detection timings of [`MembershipConfig`], on their own so a
/// [`RingNodeConfig`](crate::RingNodeConfig) can carry them. The defaults
/// are those of [`MembershipConfig::new`]: a dead member leaves every view in
/// about 1 s (worst case under 2 s) on a LAN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SwimTimings {
    /// SWIM probe period (default 250 ms).
    pub probe_period: Duration,
    /// Time a direct probe waits for its ack before indirect probes (default 100 ms).
    pub probe_rtt: Duration,
    /// Time a suspect has to refute before it is declared down (default 600 ms).
    pub suspect_to_down_after: Duration,
    /// Period of extra gossip rounds spreading updates (default 100 ms).
    pub gossip_interval: Duration,
    /// Members contacted per gossip round and indirect probes per failed probe (default 3).
    pub gossip_fanout: usize,
    /// Re-announce period to the seeds while this member sees nobody else (default 500 ms).
    pub announce_interval: Duration,
}

impl Default for SwimTimings {
    fn default() -> Self {
        let defaults = MembershipConfig::new("", 0);
        Self {
            probe_period: defaults.probe_period,
            probe_rtt: defaults.probe_rtt,
            suspect_to_down_after: defaults.suspect_to_down_after,
            gossip_interval: defaults.gossip_interval,
            gossip_fanout: defaults.gossip_fanout,
            announce_interval: defaults.announce_interval,
        }
    }
}

/// A running member of the cluster.
///
/// Dropping it stops the member abruptly, without telling anyone (as a crash
/// would); [`Membership::leave`] leaves gracefully.
///
/// ```
/// use ironforge_ring::{Membership, MembershipConfig};
/// use std::time::Duration;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), ironforge_ring::MembershipError> {
/// let loopback = "127.0.0.1:0".parse().unwrap();
/// let a = Membership::start_udp(MembershipConfig::new("a", 1), loopback).await?;
/// let seed = a.local().addr.clone();
/// let b = Membership::start_udp(MembershipConfig::new("b", 1).with_seeds([seed]), loopback).await?;
/// b.await_converged(["a", "b"], Duration::from_secs(5)).await?;
/// a.await_converged(["a", "b"], Duration::from_secs(5)).await?;
/// assert_eq!(a.owner(b"job-1"), b.owner(b"job-1"));
/// b.leave().await?;
/// a.await_converged(["a"], Duration::from_secs(5)).await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Membership {
    local: MemberId,
    commands: mpsc::Sender<Command>,
    view: watch::Receiver<ClusterView>,
    events: broadcast::Sender<MembershipEvent>,
    task: JoinHandle<()>,
}

impl Membership {
    /// Starts a member over `transport`, reading its incoming datagrams from
    /// `incoming`. Must be called inside a tokio runtime.
    pub fn start<T: GossipTransport>(
        config: MembershipConfig,
        transport: T,
        incoming: mpsc::Receiver<Bytes>,
    ) -> Result<Self, MembershipError> {
        let foca_config = config.foca_config()?;
        let local = MemberId {
            name: config.name.clone(),
            addr: transport.local_address(),
            generation: config.generation,
        };
        let ring = Ring::new([config.name.clone()], config.ring)?;
        let (view_tx, view) = watch::channel(ClusterView {
            members: ring.members().to_vec(),
            ring: Arc::new(ring),
        });
        let (events, _) = broadcast::channel(config.event_buffer.max(1));
        let (commands, command_rx) = mpsc::channel(config.command_queue.max(1));
        let driver = Driver::new(
            local.clone(),
            &config,
            foca_config,
            transport,
            view_tx,
            events.clone(),
        );
        let task = tokio::spawn(driver.run(incoming, command_rx));
        Ok(Self {
            local,
            commands,
            view,
            events,
            task,
        })
    }

    /// Binds a UDP socket on `bind` (port 0 for an ephemeral port) and starts
    /// a member gossiping over it.
    pub async fn start_udp(
        config: MembershipConfig,
        bind: SocketAddr,
    ) -> Result<Self, MembershipError> {
        let (transport, incoming) = UdpTransport::bind(bind, config.incoming_queue).await?;
        Self::start(config, transport, incoming)
    }

    /// This member's identity as started (its transport address is what others
    /// use as a seed). After a false "down" verdict the member rejoins under
    /// the next generation; that change is not reflected here.
    pub fn local(&self) -> &MemberId {
        &self.local
    }

    /// Sorted node ids in this member's view, itself included.
    pub fn members(&self) -> Vec<String> {
        self.view.borrow().members.clone()
    }

    /// The current ring.
    pub fn ring(&self) -> Arc<Ring> {
        Arc::clone(&self.view.borrow().ring)
    }

    /// Owner of the partition `key` maps to.
    pub fn owner(&self, key: &[u8]) -> Option<String> {
        self.view.borrow().ring.owner_of_key(key).map(str::to_owned)
    }

    /// Up to `n` distinct members for `key`, owner first.
    pub fn preference_list(&self, key: &[u8], n: usize) -> Vec<String> {
        let view = self.view.borrow();
        let partition = view.ring.partition_for_key(key);
        view.ring
            .preference_list(partition, n)
            .into_iter()
            .map(str::to_owned)
            .collect()
    }

    /// Subscribes to membership events from now on. A subscriber that falls
    /// more than `event_buffer` events behind gets `RecvError::Lagged`.
    pub fn events(&self) -> broadcast::Receiver<MembershipEvent> {
        self.events.subscribe()
    }

    /// Waits until the view holds exactly `expected` node ids.
    pub async fn await_converged<I, S>(
        &self,
        expected: I,
        timeout: Duration,
    ) -> Result<(), MembershipError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut expected: Vec<String> = expected.into_iter().map(Into::into).collect();
        expected.sort_unstable();
        expected.dedup();
        let mut view = self.view.clone();
        let waited = tokio::time::timeout(timeout, view.wait_for(|v| v.members == expected)).await;
        match waited {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err(MembershipError::Stopped),
            Err(_) => Err(MembershipError::NotConverged {
                expected,
                actual: self.members(),
                timeout,
            }),
        }
    }

    /// Leaves the cluster gracefully: tells a few members at once (they
    /// spread it) and stops this member.
    pub async fn leave(self) -> Result<(), MembershipError> {
        let (done, wait) = oneshot::channel();
        self.commands
            .send(Command::Leave(done))
            .await
            .map_err(|_| MembershipError::Stopped)?;
        wait.await.map_err(|_| MembershipError::Stopped)
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        self.task.abort();
    }
}
