//! IronForge: an Erlang-style peer-to-peer node runtime and a distributed job
//! engine built on it.
//!
//! This facade re-exports the workspace crates so that applications, the
//! root `examples/` and the cross-crate `tests/` depend on one package.
//! The layering is one way: `pmd <- node <- ring <- jobs <- cluster`, with
//! `crdt` standing alone (used by `cluster`).

pub use ironforge_cluster as cluster;
pub use ironforge_crdt as crdt;
pub use ironforge_jobs as jobs;
pub use ironforge_node as node;
pub use ironforge_pmd as pmd;
pub use ironforge_ring as ring;
