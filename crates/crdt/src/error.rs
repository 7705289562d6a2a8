//! Errors a caller can act on. Remote input never panics: a malformed
//! operation is an error, an operation that no longer fits the document is
//! counted and logged.

use crate::hlc::ReplicaId;

/// Errors returned by [`Replica`](crate::Replica).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CrdtError {
    /// Operations need at least one path segment (the root is always an object).
    #[error("empty path: name at least one key, the document root cannot be replaced")]
    EmptyPath,
    /// A list position was used on something that is not a list.
    #[error("the value after {depth} path segments is not a list; use a key, or create the list with set(path, [])")]
    NotAList {
        /// How many segments lead to the value that should be a list.
        depth: usize,
    },
    /// An object key was used on a list.
    #[error("the value after {depth} path segments is a list; address its elements by position")]
    NotAnObject {
        /// How many segments lead to the list.
        depth: usize,
    },
    /// A list position past the end.
    #[error("index {index} is out of bounds for a list of {len} visible elements")]
    IndexOutOfBounds {
        /// Requested position.
        index: usize,
        /// Visible length of the list.
        len: usize,
    },
    /// Nothing is stored at the path.
    #[error("nothing at this path")]
    NotFound,
    /// A remote operation that cannot be genuine (inconsistent ids, empty path, sequence 0).
    #[error("malformed operation from {replica}: {reason}")]
    Malformed {
        /// Claimed author.
        replica: ReplicaId,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The requested history was compacted away.
    #[error("operation {requested} was compacted; the log starts at {first_available}")]
    Compacted {
        /// Requested operation index.
        requested: u64,
        /// Oldest index still replayable.
        first_available: u64,
    },
    /// The requested history does not exist yet.
    #[error("operation {requested} is beyond the log end {end}")]
    BeyondLog {
        /// Requested operation index.
        requested: u64,
        /// One past the last applied operation.
        end: u64,
    },
    /// The watch table is full.
    #[error("too many watches (limit {limit}); unwatch some first")]
    TooManyWatches {
        /// `Config::max_watches`.
        limit: usize,
    },
}
