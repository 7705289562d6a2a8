//! Batching of outgoing operations: under load many writes become one
//! message per destination instead of one per operation. Pure: the caller
//! says who holds each partition; order within a partition is kept, so the
//! receiver applies each batch without buffering.

use std::collections::BTreeMap;
use std::sync::Arc;

use ironforge_crdt::Op;

use super::protocol::PartitionOps;

/// Operations of one partition waiting to be shipped.
#[derive(Debug)]
pub(crate) struct Outgoing {
    pub partition: u32,
    pub ops: Vec<Arc<Op>>,
}

/// Groups `pending` by destination: each destination gets messages of at
/// most `max_ops` operations (at least one per message), its partitions in
/// first-seen order, each partition's operations in the order given.
/// `destinations(partition)` names the members to ship a partition to.
pub(crate) fn group_by_destination(
    pending: Vec<Outgoing>,
    mut destinations: impl FnMut(u32) -> Vec<String>,
    max_ops: usize,
) -> Vec<(String, Vec<PartitionOps>)> {
    let max_ops = max_ops.max(1);
    // Partition -> its operations, in first-seen order of partitions.
    let mut order: Vec<u32> = Vec::new();
    let mut by_partition: BTreeMap<u32, Vec<Arc<Op>>> = BTreeMap::new();
    for outgoing in pending {
        let slot = by_partition.entry(outgoing.partition).or_insert_with(|| {
            order.push(outgoing.partition);
            Vec::new()
        });
        slot.extend(outgoing.ops);
    }
    // Destination -> messages under construction (the last one is open),
    // each with its operation count.
    let mut messages: BTreeMap<String, Vec<(usize, Vec<PartitionOps>)>> = BTreeMap::new();
    for partition in order {
        let Some(ops) = by_partition.remove(&partition) else {
            continue;
        };
        if ops.is_empty() {
            continue;
        }
        for destination in destinations(partition) {
            let queue = messages.entry(destination).or_default();
            for op in &ops {
                if queue.last().is_none_or(|(count, _)| *count >= max_ops) {
                    queue.push((0, Vec::new()));
                }
                let Some((count, message)) = queue.last_mut() else {
                    continue;
                };
                *count += 1;
                match message.last_mut() {
                    Some(part) if part.partition == partition => part.ops.push(Op::clone(op)),
                    _ => message.push(PartitionOps {
                        partition,
                        ops: vec![Op::clone(op)],
                    }),
                }
            }
        }
    }
    messages
        .into_iter()
        .flat_map(|(destination, queue)| {
            queue
                .into_iter()
                .map(move |(_, message)| (destination.clone(), message))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ironforge_crdt::{path, Replica, ReplicaId};
    use serde_json::json;

    fn ops(replica: &mut Replica, n: usize) -> Vec<Arc<Op>> {
        (0..n)
            .map(|i| {
                replica
                    .set(&path!["k", i.to_string()], json!(i), 1)
                    .unwrap()
            })
            .collect()
    }

    fn seqs(part: &PartitionOps) -> Vec<u64> {
        part.ops.iter().map(|op| op.id.seq).collect()
    }

    #[test]
    fn many_writes_become_one_message_per_destination() {
        let mut p0 = Replica::new(ReplicaId(1));
        let mut p1 = Replica::new(ReplicaId(1));
        let pending = vec![
            Outgoing {
                partition: 0,
                ops: ops(&mut p0, 3),
            },
            Outgoing {
                partition: 1,
                ops: ops(&mut p1, 2),
            },
            Outgoing {
                partition: 0,
                ops: ops(&mut p0, 2),
            },
        ];
        // Partition 0 goes to b and c, partition 1 to c only.
        let grouped = group_by_destination(
            pending,
            |p| match p {
                0 => vec!["b".into(), "c".into()],
                _ => vec!["c".into()],
            },
            100,
        );
        assert_eq!(grouped.len(), 2);
        let (to_b, b_parts) = &grouped[0];
        assert_eq!(to_b, "b");
        assert_eq!(b_parts.len(), 1);
        assert_eq!(seqs(&b_parts[0]), [1, 2, 3, 4, 5]);
        let (to_c, c_parts) = &grouped[1];
        assert_eq!(to_c, "c");
        assert_eq!(
            c_parts.iter().map(|p| p.partition).collect::<Vec<_>>(),
            [0, 1]
        );
        assert_eq!(seqs(&c_parts[1]), [1, 2]);
    }

    #[test]
    fn messages_are_split_at_the_bound_keeping_order() {
        let mut replica = Replica::new(ReplicaId(1));
        let pending = vec![Outgoing {
            partition: 7,
            ops: ops(&mut replica, 5),
        }];
        let grouped = group_by_destination(pending, |_| vec!["b".into()], 2);
        let sizes: Vec<Vec<u64>> = grouped.iter().map(|(_, m)| seqs(&m[0])).collect();
        assert_eq!(sizes, [vec![1, 2], vec![3, 4], vec![5]]);
        assert!(group_by_destination(Vec::new(), |_| vec!["b".into()], 2).is_empty());
        let nobody = vec![Outgoing {
            partition: 7,
            ops: ops(&mut replica, 1),
        }];
        assert!(group_by_destination(nobody, |_| Vec::new(), 2).is_empty());
    }
}
