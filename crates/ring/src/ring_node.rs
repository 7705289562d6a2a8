//! The ring as an application sees it on a running node: one call joins the
//! cluster through seed nodes and from then on answers "who owns this key"
//! from the live membership, gossiped over the node's own connections.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ironforge_node::Node;
use tokio::sync::broadcast;

use crate::event::MembershipEvent;
use crate::identity::MemberId;
use crate::membership::{Membership, MembershipConfig, MembershipError, SwimTimings};
use crate::node_transport::NodeTransport;
use crate::ring::{Ring, RingConfig};

/// Default capacity of the gossip mailbox and of the incoming datagram queue.
pub const DEFAULT_GOSSIP_QUEUE: usize = 1024;

/// How long [`RingNode::leave`] waits for its goodbye to reach the peer
/// connections.
const LEAVE_FLUSH: Duration = Duration::from_secs(1);

/// How a [`RingNode`] joins and detects failures. Every member of a cluster
/// must use the same [`RingConfig`].
#[derive(Debug, Clone)]
pub struct RingNodeConfig {
    /// Nodes to join through: `alias`, `alias@host` or node ids. A node that
    /// is its own only seed starts a new cluster.
    pub seeds: Vec<String>,
    /// Shape of the ring (partitions, vnodes, replicas).
    pub ring: RingConfig,
    /// Failure-detection timings.
    pub timings: SwimTimings,
    /// Name placed on the ring (default: the node's alias, which must then be
    /// unique in the cluster). Keeping it across restarts gives a restarted
    /// node back the same partitions.
    pub member_name: Option<String>,
    /// Generation of this run (default: milliseconds since the Unix epoch);
    /// must grow across restarts of one member.
    pub generation: Option<u64>,
    /// Host other members reach this node's PMD at; needed when members run
    /// on several hosts (default: none, the bare node id, resolvable through
    /// this host's PMD only).
    pub advertise_host: Option<String>,
    /// Gossip messages queued before the oldest is dropped
    /// (default [`DEFAULT_GOSSIP_QUEUE`]).
    pub gossip_queue: usize,
    /// Events buffered per subscriber before a slow one lags (default 1024).
    pub event_buffer: usize,
}

impl RingNodeConfig {
    /// Defaults, joining through `seeds`.
    pub fn new<I, S>(seeds: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            seeds: seeds.into_iter().map(Into::into).collect(),
            ring: RingConfig::default(),
            timings: SwimTimings::default(),
            member_name: None,
            generation: None,
            advertise_host: None,
            gossip_queue: DEFAULT_GOSSIP_QUEUE,
            event_buffer: 1024,
        }
    }
}

/// A node's membership in the cluster and its view of the ring.
///
/// Dropping it stops gossiping without a goodbye (others detect it as
/// failed); [`RingNode::leave`] leaves gracefully.
///
/// ```
/// use std::time::Duration;
/// use ironforge_node::{Node, NodeConfig};
/// use ironforge_pmd::server::{Daemon, DaemonConfig};
/// use ironforge_ring::{RingNode, RingNodeConfig};
///
/// # #[tokio::main]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // A private port-mapper daemon, as every host runs one.
/// let pmd = Daemon::bind(DaemonConfig { bind: "127.0.0.1:0".parse()?, ..Default::default() }).await?;
/// let pmd_addr = pmd.local_addr();
/// tokio::spawn(pmd.run());
/// let node = |alias: &str| {
///     let mut config = NodeConfig::new(alias).cookie("doc").allow_multiple();
///     config.pmd_addr = pmd_addr;
///     config.auto_start_pmd = false;
///     Node::start(config)
/// };
///
/// let a = RingNode::start(node("a").await?, RingNodeConfig::new(["a"])).await?;
/// let b = RingNode::start(node("b").await?, RingNodeConfig::new(["a"])).await?;
/// a.await_converged(["a", "b"], Duration::from_secs(5)).await?;
/// b.await_converged(["a", "b"], Duration::from_secs(5)).await?;
/// assert_eq!(a.owner(b"job-1"), b.owner(b"job-1"));
/// assert_eq!(a.preference_list(b"job-1", 2).len(), 2);
/// b.leave().await?;
/// a.await_converged(["a"], Duration::from_secs(5)).await?;
/// # Ok(()) }
/// ```
pub struct RingNode {
    node: Node,
    membership: Membership,
    transport: NodeTransport,
}

impl std::fmt::Debug for RingNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RingNode")
            .field("local", self.membership.local())
            .field("members", &self.members())
            .finish_non_exhaustive()
    }
}

impl RingNode {
    /// Registers the gossip mailbox on `node` and joins the cluster through
    /// `config.seeds`. Returns at once; use [`RingNode::await_converged`] to
    /// wait for the expected members.
    pub async fn start(node: Node, config: RingNodeConfig) -> Result<Self, MembershipError> {
        let name = config
            .member_name
            .clone()
            .unwrap_or_else(|| node.alias().to_owned());
        let generation = config.generation.unwrap_or_else(start_time_millis);
        // Announcing to ourselves is pointless; a cluster's first node may
        // list itself among the seeds it shares with everyone.
        let seeds: Vec<String> = config
            .seeds
            .iter()
            .filter(|seed| *seed != node.alias() && *seed != node.id())
            .cloned()
            .collect();
        let mut membership_config = MembershipConfig::new(name, generation)
            .with_seeds(seeds)
            .with_timings(config.timings);
        membership_config.ring = config.ring;
        membership_config.incoming_queue = config.gossip_queue;
        membership_config.event_buffer = config.event_buffer;
        let (transport, incoming) = NodeTransport::register(
            node.clone(),
            config.advertise_host.as_deref(),
            config.gossip_queue,
        )?;
        let membership = Membership::start(membership_config, transport.clone(), incoming)?;
        Ok(Self {
            node,
            membership,
            transport,
        })
    }

    /// The node this member gossips through.
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// This member's identity (ring name, gossip address, generation).
    pub fn local(&self) -> &MemberId {
        self.membership.local()
    }

    /// Sorted member names in this node's view, itself included.
    pub fn members(&self) -> Vec<String> {
        self.membership.members()
    }

    /// The current ring.
    pub fn ring(&self) -> Arc<Ring> {
        self.membership.ring()
    }

    /// Owner of the partition `key` maps to.
    pub fn owner(&self, key: &[u8]) -> Option<String> {
        self.membership.owner(key)
    }

    /// Up to `n` distinct members for `key`, owner first.
    pub fn preference_list(&self, key: &[u8], n: usize) -> Vec<String> {
        self.membership.preference_list(key, n)
    }

    /// Membership events from now on: `MemberUp`, `MemberDown`, and
    /// `RingChanged` with the partitions that moved.
    pub fn events(&self) -> broadcast::Receiver<MembershipEvent> {
        self.membership.events()
    }

    /// Waits until this node's view holds exactly `expected` member names.
    pub async fn await_converged<I, S>(
        &self,
        expected: I,
        timeout: Duration,
    ) -> Result<(), MembershipError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.membership.await_converged(expected, timeout).await
    }

    /// Leaves gracefully: the goodbye is handed to the peer connections
    /// before this returns, so others drop this member at once. Returns the
    /// node, still running.
    pub async fn leave(self) -> Result<Node, MembershipError> {
        let Self {
            node,
            membership,
            transport,
        } = self;
        membership.leave().await?;
        transport.flush(LEAVE_FLUSH).await;
        Ok(node)
    }
}

fn start_time_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |since| {
            u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
        })
}
