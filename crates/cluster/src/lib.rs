//! The distributed job cluster: where the pieces become one system.
//!
//! Every node joins the membership ([`ironforge_ring`]), accepts jobs for
//! any partition into the shared Redis Streams queue, and consumes and
//! schedules only the partitions the ring gives it. Job and workflow state
//! is written to the JSON-CRDT ([`ironforge_crdt`]) and replicated to each
//! partition's preference list over the node runtime ([`replication`]), so
//! any node answers reads and the next owner takes a partition over.

pub mod replication;
