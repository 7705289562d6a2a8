//! Errors of the ring crate.

use thiserror::Error;

/// Why a ring or a membership operation failed.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum RingError {
    /// `partitions` must be in `1..=MAX_PARTITIONS`.
    #[error("partition count {0} is out of range 1..={max}", max = crate::ring::MAX_PARTITIONS)]
    BadPartitionCount(u32),
    /// `vnodes_per_member` must be in `1..=MAX_VNODES_PER_MEMBER`.
    #[error("vnodes per member {0} is out of range 1..={max}", max = crate::ring::MAX_VNODES_PER_MEMBER)]
    BadVnodeCount(u32),
    /// `replicas` must be at least 1.
    #[error("replica count must be at least 1")]
    ZeroReplicas,
    /// More members than the ring accepts.
    #[error("{0} members exceed the limit of {max}", max = crate::ring::MAX_MEMBERS)]
    TooManyMembers(usize),
    /// A member id that is empty or longer than the limit.
    #[error("member id of {0} bytes is empty or longer than {max}", max = crate::ring::MAX_MEMBER_ID_LEN)]
    BadMemberId(usize),
}
