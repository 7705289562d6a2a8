//! Consistent-hash ring and cluster membership: decides which node owns which
//! jobs, and who is in the cluster.
//!
//! * [`Ring`] is the pure core: the same member set gives the same partition
//!   owners and preference lists on every machine; [`Ring::diff`] says which
//!   partitions moved between two rings.
//! * [`Membership`] is the async shell: SWIM failure detection and gossip
//!   (the `foca` crate) over any [`GossipTransport`] ([`UdpTransport`] is
//!   included), keeping a ring of the live members up to date.
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
//! | SWIM packet | [`MembershipConfig::max_packet_size`] | 1400 bytes |
//! | incoming datagram queue | [`MembershipConfig::incoming_queue`] (drops newest when full) | 1024 |
//! | events per subscriber | [`MembershipConfig::event_buffer`] (slow subscribers lag) | 1024 |
//! | command queue | [`MembershipConfig::command_queue`] | 16 |
//!
//! The SWIM member table itself (inside `foca`) has no size limit of its own:
//! anyone who can send datagrams to the gossip port can announce itself. Run
//! the UDP transport on a trusted network, or behind a transport that
//! authenticates peers (the node runtime's cookie handshake).

mod diff;
mod driver;
mod error;
mod event;
mod hash;
mod identity;
mod membership;
mod ring;
mod transport;
mod udp;

pub use diff::{PartitionChange, RingDiff};
pub use error::RingError;
pub use event::{ClusterView, MembershipEvent};
pub use identity::MemberId;
pub use membership::{Membership, MembershipConfig, MembershipError};
pub use ring::{
    Ring, RingConfig, MAX_MEMBERS, MAX_MEMBER_ID_LEN, MAX_PARTITIONS, MAX_VNODES_PER_MEMBER,
};
pub use transport::{GossipTransport, TransportError};
pub use udp::{UdpTransport, MAX_DATAGRAM_BYTES};

/// Default SWIM RNG seed: derived from identity so runs are reproducible.
pub(crate) fn hash_seed(name: &str, generation: u64) -> u64 {
    hash::vnode_token(name, (generation ^ (generation >> 32)) as u32)
}
