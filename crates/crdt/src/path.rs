//! Paths into the document. Callers address values with [`Seg`] (object key
//! or list position); operations carry [`PathSeg`] (object key or list
//! element id) because a position means different things on different
//! replicas while an element id does not. Segments are kept apart, never
//! joined into one string, so `["a.b"]` and `["a", "b"]` cannot collide.

use crate::hlc::Hlc;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// One step of a caller's path: an object key or a position among the
/// visible elements of a list.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Seg {
    /// An object key.
    Key(String),
    /// A position in a list, counting visible elements only.
    Index(usize),
}

impl From<&str> for Seg {
    fn from(key: &str) -> Self {
        Seg::Key(key.to_owned())
    }
}

impl From<String> for Seg {
    fn from(key: String) -> Self {
        Seg::Key(key)
    }
}

impl From<&String> for Seg {
    fn from(key: &String) -> Self {
        Seg::Key(key.clone())
    }
}

impl From<usize> for Seg {
    fn from(index: usize) -> Self {
        Seg::Index(index)
    }
}

/// Builds an array of [`Seg`] from keys (`&str`, `String`) and list
/// positions (`usize`); pass it as `&path![...]`, or `.to_vec()` it.
///
/// ```
/// use ironforge_crdt::{path, Seg};
/// let p = path!["jobs", "42", 0];
/// assert_eq!(p, [Seg::Key("jobs".into()), Seg::Key("42".into()), Seg::Index(0)]);
/// ```
#[macro_export]
macro_rules! path {
    ($($seg:expr),* $(,)?) => {
        [$($crate::Seg::from($seg)),*]
    };
}

/// Identity of a list element: the stamp of the operation that created it,
/// plus its position within that operation (a `set` of a JSON array creates
/// several elements at once). Unique within its list, stable forever.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ElemId {
    /// Stamp of the creating operation.
    pub stamp: Hlc,
    /// Index within the creating operation's array (0 for `list_insert`).
    pub sub: u32,
}

/// One step of an operation's path: an object key or a list element id.
/// Keys are shared (`Arc<str>`) with the document tree, so logging an
/// operation does not copy its key strings.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PathSeg {
    /// An object key.
    Key(Arc<str>),
    /// A list element, by identity.
    Elem(ElemId),
}

/// True when `prefix` is a (non-strict) prefix of `path`.
pub(crate) fn is_prefix(prefix: &[PathSeg], path: &[PathSeg]) -> bool {
    prefix.len() <= path.len() && prefix.iter().zip(path).all(|(a, b)| a == b)
}
