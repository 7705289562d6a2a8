//! The wire format every IronForge process speaks, and the per-host
//! port-mapper daemon (PMD) where nodes register under aliases.
//!
//! The PMD is wire-compatible with distflow's (see `shared/pmd-protocol.md`):
//! distflow's CLI and nodes can register with, query and watch it unchanged.

pub mod client;
pub mod launcher;
pub mod logging;
pub mod protocol;
pub mod registry;
pub mod server;
pub mod wire;
