//! Consistent-hash ring and cluster membership: decides which node owns which
//! jobs, and who is in the cluster.
//!
//! * [`Ring`] is the pure core: the same member set gives the same partition
//!   owners and preference lists on every machine; [`Ring::diff`] says which
//!   partitions moved between two rings.
//! * [`Membership`] is the async shell: SWIM failure detection and gossip
//!   (the `foca` crate) over any [`GossipTransport`] ([`NodeTransport`] over
//!   the node runtime and [`UdpTransport`] are included), keeping a ring of
//!   the live members up to date.
//! * [`RingNode`] is what an application uses: membership of a running
//!   [`ironforge_node::Node`], joined through seed aliases, with `owner`,
//!   `preference_list`, events and convergence.
//!
//! # Limits (all named constants or config fields)
//!
//! | what | limit | default |
//! |---|---|---|
//! | partitions | [`MAX_PARTITIONS`] | [`RingConfig::partitions`] = 4096 |
//! | vnodes per member | [`MAX_VNODES_PER_MEMBER`] | [`RingConfig::vnodes_per_member`] = 128 |
//! | members in a ring | [`MAX_MEMBERS`] (a larger view keeps the previous ring and logs a warning) | - |
//! | member id length | [`MAX_MEMBER_ID_LEN`] bytes | - |
//! | UDP datagram read | [`MAX_DATAGRAM_BYTES`] | - |
//! | node-transport datagram | [`MAX_NODE_DATAGRAM_BYTES`] (larger ones dropped) | - |
//! | node-transport sends in flight | [`MAX_SENDS_IN_FLIGHT`] (further datagrams dropped) | - |
//! | gossip mailbox and incoming queue of a [`RingNode`] | [`RingNodeConfig::gossip_queue`] (mailbox drops oldest, queue drops newest) | [`DEFAULT_GOSSIP_QUEUE`] = 1024 |
//! | SWIM packet | [`MembershipConfig::max_packet_size`] | 1400 bytes |
//! | incoming datagram queue | [`MembershipConfig::incoming_queue`] (drops newest when full) | 1024 |
//! | events per subscriber | [`MembershipConfig::event_buffer`] (slow subscribers lag) | 1024 |
//! | command queue | [`MembershipConfig::command_queue`] | 16 |
//!
//! The SWIM member table itself (inside `foca`) has no size limit of its own:
//! anyone who can send datagrams to the gossip port can announce itself. Run
//! the UDP transport on a trusted network; [`NodeTransport`] only accepts
//! gossip from nodes that passed the node runtime's cookie handshake.

mod diff;
mod driver;
mod error;
mod event;
mod hash;
mod identity;
mod membership;
mod node_transport;
mod ring;
mod ring_node;
mod transport;
mod udp;

pub use diff::{PartitionChange, RingDiff};
pub use error::RingError;
pub use event::{ClusterView, MembershipEvent};
pub use identity::MemberId;
pub use membership::{Membership, MembershipConfig, MembershipError, SwimTimings};
pub use node_transport::{
    NodeTransport, MAX_NODE_DATAGRAM_BYTES, MAX_SENDS_IN_FLIGHT, SWIM_MAILBOX,
};
pub use ring::{
    Ring, RingConfig, MAX_MEMBERS, MAX_MEMBER_ID_LEN, MAX_PARTITIONS, MAX_VNODES_PER_MEMBER,
};
pub use ring_node::{RingNode, RingNodeConfig, DEFAULT_GOSSIP_QUEUE};
pub use transport::{GossipTransport, TransportError};
pub use udp::{UdpTransport, MAX_DATAGRAM_BYTES};

/// Default SWIM RNG seed: derived from identity so runs are reproducible.
pub(crate) fn hash_seed(name: &str, generation: u64) -> u64 {
    hash::vnode_token(name, (generation ^ (generation >> 32)) as u32)
}
