//! Partitioning: a job belongs to partition `hash(key) mod P`, where the key
//! is the job's partition key, else its idempotency key, else its id. The hash is FNV-1a 64, fixed
//! forever, so every process and version agrees, and the cluster layer can
//! later hand partitions to owners. Pure.

use std::sync::Arc;

use parking_lot::RwLock;

use crate::job::{JobId, JobSpec};

/// Partitions when not configured [16].
pub const DEFAULT_PARTITIONS: u32 = 16;

/// Maps jobs to one of `P` partitions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Partitioner {
    partitions: u32,
}

impl Default for Partitioner {
    fn default() -> Self {
        Partitioner {
            partitions: DEFAULT_PARTITIONS,
        }
    }
}

impl Partitioner {
    /// `partitions` is clamped to at least 1.
    pub fn new(partitions: u32) -> Self {
        Partitioner {
            partitions: partitions.max(1),
        }
    }

    /// The number of partitions P.
    pub fn partitions(&self) -> u32 {
        self.partitions
    }

    /// Where a submitted job lives: by its partition key when it has one,
    /// else by its idempotency key (so two submissions with one key meet in
    /// one partition, where the duplicate is caught), else by its id.
    pub fn place(&self, id: &JobId, spec: &JobSpec) -> u32 {
        let key = spec
            .partition_key
            .as_deref()
            .or(spec.idempotency_key.as_deref());
        self.partition_of(id, key)
    }

    /// The partition of a job: by `partition_key` when given, else by id.
    pub fn partition_of(&self, id: &JobId, partition_key: Option<&str>) -> u32 {
        let hash = match partition_key {
            Some(key) => fnv1a64(key.as_bytes()),
            None => fnv1a64(id.0.as_bytes()),
        };
        (hash % u64::from(self.partitions)) as u32
    }
}

/// The partitions this process consumes and schedules, shared between the
/// cluster layer (which changes it when ring ownership moves) and the
/// backend (which reads it on every fetch, promotion and reclaim pass).
/// A single process owns them all. Cheap to clone; clones share the set.
///
/// ```
/// use ironforge_jobs::OwnedPartitions;
/// let owned = OwnedPartitions::all(4);
/// assert_eq!(&*owned.list(), &[0, 1, 2, 3]);
/// owned.set([3, 1, 3]);
/// assert!(owned.contains(1) && !owned.contains(0));
/// assert_eq!(&*owned.list(), &[1, 3]);
/// ```
#[derive(Clone, Debug)]
pub struct OwnedPartitions {
    list: Arc<RwLock<Arc<[u32]>>>,
}

impl OwnedPartitions {
    /// Every partition of `0..partitions`.
    pub fn all(partitions: u32) -> Self {
        OwnedPartitions {
            list: Arc::new(RwLock::new((0..partitions.max(1)).collect())),
        }
    }

    /// No partition (a node that has not joined the ring yet).
    pub fn none() -> Self {
        OwnedPartitions {
            list: Arc::new(RwLock::new(Arc::from(Vec::new()))),
        }
    }

    /// Replaces the set (sorted, duplicates dropped).
    pub fn set(&self, partitions: impl IntoIterator<Item = u32>) {
        let mut list: Vec<u32> = partitions.into_iter().collect();
        list.sort_unstable();
        list.dedup();
        *self.list.write() = Arc::from(list);
    }

    /// The owned partitions, ascending.
    pub fn list(&self) -> Arc<[u32]> {
        self.list.read().clone()
    }

    /// True when `partition` is owned.
    pub fn contains(&self, partition: u32) -> bool {
        self.list.read().binary_search(&partition).is_ok()
    }
}

/// FNV-1a, 64 bit.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes.iter().fold(OFFSET, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(PRIME)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv_matches_reference_vectors() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn partition_is_in_range_stable_and_follows_the_key() {
        let p = Partitioner::new(16);
        let a = JobId::new_random();
        let b = JobId::new_random();
        let pa = p.partition_of(&a, None);
        assert!(pa < 16);
        assert_eq!(pa, p.partition_of(&a, None));
        assert_eq!(
            p.partition_of(&a, Some("user-7")),
            p.partition_of(&b, Some("user-7"))
        );
        assert_eq!(Partitioner::new(0).partitions(), 1);
        assert_eq!(Partitioner::new(1).partition_of(&a, None), 0);
    }

    #[test]
    fn ids_spread_over_all_partitions() {
        let p = Partitioner::new(8);
        let mut seen = [0u32; 8];
        for _ in 0..4_000 {
            seen[p.partition_of(&JobId::new_random(), None) as usize] += 1;
        }
        assert!(seen.iter().all(|&n| n > 300), "{seen:?}");
    }
}
