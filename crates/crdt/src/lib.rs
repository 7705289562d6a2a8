//! JSON-CRDT: replicated job and workflow state. Pure data structure: no I/O,
//! no async, no hidden clock — time (`now_ms`) and the replica id are passed in.
//!
//! A [`Replica`] holds a JSON document addressed by paths of segments
//! ([`Seg`]: object key or list position; never joined into a string, so
//! `["a.b"]` and `["a", "b"]` are different paths). Local edits return an
//! [`Op`] to ship to the other replicas; [`Replica::apply`] takes theirs.
//! Replicas that applied the same set of operations — in any order, with
//! duplicates — hold equal documents.
//!
//! # Order and conflict rules
//!
//! Every write carries a hybrid-logical-clock stamp [`Hlc`] `(physical_ms,
//! logical, replica)`, totally ordered; a replica's stamps always exceed every
//! stamp it has seen, so a write that *saw* another has the higher stamp.
//! "Newer" below means "higher stamp"; equal physical and logical parts are
//! broken by replica id, the same way everywhere.
//!
//! 1. **Same path, two sets**: last writer wins — the higher stamp.
//! 2. **Set vs delete at the same path**: the higher stamp wins; a delete is a
//!    write of "absent".
//! 3. **A delete hides what it causally saw beneath it**: deleting `P` hides
//!    every write at or under `P` with a lower stamp, which includes all it saw.
//! 4. **Delete of a parent vs concurrent set of a child**: the child survives
//!    if and only if its stamp is higher than the delete's; it then re-creates
//!    the parent as an object holding just the newer children.
//! 5. **Set of a parent vs set of a child**: setting `P` replaces its whole
//!    subtree as of its stamp: children written with a lower stamp disappear,
//!    children written with a higher stamp stay, merged into the new value (a
//!    newer child also turns a scalar parent into an object).
//! 6. **An old delete arriving after a newer set**: it has the lower stamp, so
//!    it changes nothing visible, whenever and however often it arrives.
//! 7. **Object vs list at one node** (concurrent edits as both): the node's
//!    own latest set decides if it is a container; otherwise object children
//!    win over list elements, which win over an older scalar.
//! 8. **Lists** (RGA): an element is named by the stamp of its insertion and
//!    placed after the element its author saw on its left; concurrent inserts
//!    at the same place are ordered newest first. Removing an element leaves an
//!    invisible anchor, so a concurrent insert next to it is neither lost nor
//!    shifted. Two concurrent removals of one element remove it once. A
//!    removal and a concurrent set inside the element follow rules 3–4.
//!
//! Containers created implicitly by a deeper set (`set(["jobs", id,
//! "status"])` creates `jobs` and `jobs/id`) exist while they hold something.
//!
//! # Delivery, sync, memory
//!
//! Operations carry `(replica, seq)` and the version vector their author had
//! applied; one that arrives early waits in a pending buffer bounded by
//! [`Config::max_pending`] and [`Config::max_pending_age_ms`]. A dropped
//! operation comes back through [`Replica::ops_since`] / [`Replica::apply_sync`],
//! which send a delta from the log (at most [`Config::max_sync_ops`] per
//! message; ask again until [`SyncMessage::is_empty`]), or a [`Snapshot`] once
//! the log (bounded by [`Config::max_log_ops`], compacted automatically) no
//! longer reaches back far enough. [`Replica::replay_until`] rebuilds the
//! document as of any logged operation from the base state the compaction
//! keeps ([`Config::keep_replay_base`]). [`Replica::gc`] collects tombstones
//! once every known replica has seen them and [`Config::tombstone_grace_ms`]
//! has passed; removed list elements go too, once dropping them cannot move a
//! later insert. Watch events queue up to [`Config::max_events`]; at most
//! [`Config::max_watches`] subscriptions. Restoring a [`Snapshot`] never
//! rewinds the clock nor reuses a sequence number.
//!
//! # Costs
//!
//! Applying an operation on an object path costs O(path depth) hash lookups
//! plus whatever it overwrites beneath the target; it never copies the
//! document (a local set allocates twice: the path and the shared operation;
//! a remote apply not at all). The log append is amortised O(1); compaction
//! replays the dropped half of the log into the replay base. List operations
//! scan the list (O(list length)). `stats`, `snapshot` and `to_json` walk the
//! document. Measured figures: `docs/perf/crdt.md`.
//! A replica is only as well informed about stability as the replicas it
//! knows: declare the members with [`Replica::add_peer`] (and retire them with
//! [`Replica::remove_peer`]); replicas heard from are known automatically.

mod config;
mod error;
mod hlc;
mod op;
mod path;
mod pending;
mod replica;
mod rga;
mod sync;
mod tree;
mod version;
mod watch;

pub use config::Config;
pub use error::CrdtError;
pub use hlc::{Hlc, ReplicaId};
pub use op::{Op, OpId, OpKind};
pub use path::{ElemId, PathSeg, Seg};
pub use replica::{Delivery, GcReport, Replica, Stats};
pub use sync::{Snapshot, SyncBody, SyncMessage};
pub use version::VersionVector;
pub use watch::{Event, WatchId};
