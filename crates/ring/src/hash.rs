//! SHA-256 based hashing shared by the ring: vnode tokens and key positions.
//!
//! Every member must compute byte-for-byte the same values, so the encoding of
//! what is hashed is fixed here and nowhere else.

use sha2::{Digest, Sha256};

/// First eight bytes of SHA-256, big-endian, as an unsigned 64-bit number.
fn sha256_u64(parts: &[&[u8]]) -> u64 {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part);
    }
    let digest = hasher.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

/// Position of vnode `index` of `member` on the 64-bit ring.
///
/// The NUL separator keeps `("a1", 0)` and `("a", 10)` apart.
pub(crate) fn vnode_token(member: &str, index: u32) -> u64 {
    sha256_u64(&[member.as_bytes(), &[0u8], &index.to_be_bytes()])
}

/// Hash of a user key; the partition is this value modulo the partition count.
pub(crate) fn key_hash(key: &[u8]) -> u64 {
    sha256_u64(&[key])
}

/// Fixed point of a partition on the ring: partitions are evenly spaced so
/// that the token ring, not the partition layout, is the only source of skew.
pub(crate) fn partition_point(partition: u32, partitions: u32) -> u64 {
    let spacing = u64::MAX / u64::from(partitions.max(1));
    spacing.wrapping_mul(u64::from(partition))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_stable_and_distinct() {
        assert_eq!(vnode_token("a", 1), vnode_token("a", 1));
        assert_ne!(vnode_token("a", 1), vnode_token("a", 2));
        assert_ne!(vnode_token("a1", 0), vnode_token("a", 10));
    }

    #[test]
    fn key_hash_matches_sha256_prefix() {
        // SHA-256("") = e3b0c44298fc1c14...
        assert_eq!(key_hash(b""), 0xe3b0_c442_98fc_1c14);
    }

    #[test]
    fn partition_points_are_increasing() {
        let points: Vec<u64> = (0..16).map(|p| partition_point(p, 16)).collect();
        assert!(points.windows(2).all(|w| w[0] < w[1]));
    }
}
