//! The document tree and its merge rules. Every node holds the register of
//! the latest write at exactly its path (value or tombstone), its object
//! children by key and its list elements (see `rga`). Applying an operation
//! walks the path once and touches only the target node and, for a write,
//! whatever it overwrites beneath it: no copy of the document, ever.
//!
//! The state is a function of the *set* of operations applied, not of their
//! order: a write at a path hides everything beneath it with a lower stamp
//! (pruned on the spot, or "shadowed" on arrival), and list structure is kept
//! as anchors regardless, so concurrent inserts always find their place.

use crate::hlc::{Hlc, ReplicaId};
use crate::op::{Op, OpId, OpKind};
use crate::path::{ElemId, PathSeg};
use crate::rga::Rga;
use crate::version::VersionVector;
use hashbrown::HashMap;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::sync::Arc;

/// The identity of a write: its stamp plus its sequence number (the stamp
/// already names the replica), enough to rebuild the [`OpId`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Stamped {
    pub stamp: Hlc,
    pub seq: u64,
}

impl Stamped {
    pub fn op_id(&self) -> OpId {
        OpId {
            replica: self.stamp.replica,
            seq: self.seq,
        }
    }
}

/// What the latest write at exactly this path left there.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) enum RegValue {
    Scalar(Value),
    Object,
    List,
    Deleted,
}

/// A last-writer-wins register: the latest write at one path. Its stamp is
/// also the "clear" stamp of the subtree: nothing older survives beneath it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Reg {
    pub at: Stamped,
    pub value: RegValue,
}

/// One node of the document tree.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct Node {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reg: Option<Reg>,
    // Boxed: small buckets keep big maps (10,000 jobs) cache-friendly and
    // the minimum table of a one-key map small.
    #[serde(default, skip_serializing_if = "HashMap::is_empty")]
    pub keys: HashMap<Arc<str>, Box<Node>>,
    #[serde(default, skip_serializing_if = "Rga::is_empty")]
    pub list: Rga,
}

/// What applying one operation did at its target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The write took effect; `replaced` is the write it overwrote at the same path.
    Written { replaced: Option<OpId> },
    /// A newer write at the path or above it hides this one.
    Shadowed { by: OpId },
}

/// The operation references a list element this replica does not hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct MissingElement;

/// How a node shows in the JSON view.
pub(crate) enum Kind<'a> {
    Absent,
    Scalar(&'a Value),
    Object,
    List,
}

/// Decides what garbage collection may drop.
pub(crate) struct Collector {
    /// Operations every known replica has applied.
    pub stable: VersionVector,
    /// Wall-clock reading of this collection.
    pub now_ms: u64,
    /// `Config::tombstone_grace_ms`.
    pub grace_ms: u64,
    /// Extra bound: only tombstones stamped before this (for the replay base).
    pub before: Option<Hlc>,
}

impl Collector {
    pub fn is_stable(&self, replica: ReplicaId, seq: u64) -> bool {
        self.stable.get(replica) >= seq
    }

    /// A tombstone every known replica has seen, past its grace period.
    pub fn collectable(&self, reg: &Reg) -> bool {
        self.is_stable(reg.at.stamp.replica, reg.at.seq)
            && reg.at.stamp.physical_ms.saturating_add(self.grace_ms) <= self.now_ms
            && self.before.is_none_or(|before| reg.at.stamp < before)
    }
}

/// Counters gathered by a walk over the whole tree.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Census {
    pub values: usize,
    pub tombstones: usize,
    pub nodes: usize,
}

enum Input<'a> {
    Value(&'a Value),
    Deleted,
}

fn newer(shadow: Option<Stamped>, reg: &Option<Reg>, w: Stamped) -> Option<Stamped> {
    match reg {
        Some(reg) if reg.at.stamp > w.stamp => match shadow {
            Some(s) if s.stamp >= reg.at.stamp => Some(s),
            _ => Some(reg.at),
        },
        _ => shadow,
    }
}

fn has_array(value: &Value) -> bool {
    match value {
        Value::Array(_) => true,
        Value::Object(map) => map.values().any(has_array),
        _ => false,
    }
}

impl Node {
    /// Applies `op` to the tree rooted at `self` (the document root).
    pub fn apply(&mut self, op: &Op) -> Result<Outcome, MissingElement> {
        let w = Stamped {
            stamp: op.stamp,
            seq: op.id.seq,
        };
        // Dead writes still have to leave list anchors behind: a concurrent
        // insert may name one of their elements as its neighbour.
        let structural = match &op.kind {
            OpKind::ListInsert { .. } => true,
            OpKind::Set { value } => has_array(value),
            OpKind::Delete => false,
        };
        let mut node = self;
        let mut shadow = None;
        for seg in &op.path {
            shadow = newer(shadow, &node.reg, w);
            if let (Some(by), false) = (shadow, structural) {
                return Ok(Outcome::Shadowed { by: by.op_id() });
            }
            node = match seg {
                PathSeg::Key(key) => {
                    // Two lookups beat `entry`, which would bump and drop the
                    // key's shared count (two atomic writes) on every hit.
                    if !node.keys.contains_key(&**key) {
                        node.keys.insert(Arc::clone(key), Box::default());
                    }
                    node.keys.get_mut(&**key).ok_or(MissingElement)?
                }
                PathSeg::Elem(id) => node.list.get_mut(*id).ok_or(MissingElement)?,
            };
        }
        Ok(match &op.kind {
            OpKind::Set { value } => node.write(Input::Value(value), w, shadow),
            OpKind::Delete => node.write(Input::Deleted, w, shadow),
            OpKind::ListInsert { after, value } => {
                let shadow = newer(shadow, &node.reg, w);
                let id = ElemId {
                    stamp: op.stamp,
                    sub: 0,
                };
                let elem = node
                    .list
                    .integrate(id, w.seq, *after)
                    .ok_or(MissingElement)?;
                elem.write(Input::Value(value), w, shadow)
            }
        })
    }

    fn key_child_mut(&mut self, key: &str) -> &mut Node {
        // Allocate the key only when it is new.
        let key = match self.keys.get_key_value(key) {
            Some((existing, _)) => Arc::clone(existing),
            None => Arc::from(key),
        };
        self.keys.entry(key).or_default().as_mut()
    }

    fn write(&mut self, input: Input<'_>, w: Stamped, shadow: Option<Stamped>) -> Outcome {
        if let Some(by) = newer(shadow, &self.reg, w) {
            if let Input::Value(value) = input {
                self.skeleton(value, w, by);
            }
            return Outcome::Shadowed { by: by.op_id() };
        }
        let value = match input {
            Input::Deleted => RegValue::Deleted,
            Input::Value(Value::Object(_)) => RegValue::Object,
            Input::Value(Value::Array(_)) => RegValue::List,
            Input::Value(scalar) => RegValue::Scalar(scalar.clone()),
        };
        let replaced = self
            .reg
            .replace(Reg { at: w, value })
            .map(|old| old.at.op_id());
        self.prune_below(w);
        match input {
            Input::Value(Value::Object(map)) => {
                for (key, item) in map {
                    self.key_child_mut(key).write(Input::Value(item), w, None);
                }
            }
            Input::Value(Value::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    if let Some(elem) = self.list.integrate_sub(w, i) {
                        elem.write(Input::Value(item), w, None);
                    }
                }
            }
            _ => {}
        }
        Outcome::Written { replaced }
    }

    /// Builds only the list anchors of a hidden write, each marked deleted by
    /// the write that hides it (so garbage collection can tell when it is stable).
    fn skeleton(&mut self, value: &Value, w: Stamped, by: Stamped) {
        match value {
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    if let Some(elem) = self.list.integrate_sub(w, i) {
                        elem.reg = Some(Reg {
                            at: by,
                            value: RegValue::Deleted,
                        });
                        elem.skeleton(item, w, by);
                    }
                }
            }
            Value::Object(map) => {
                for (key, item) in map.iter().filter(|(_, item)| has_array(item)) {
                    self.key_child_mut(key).skeleton(item, w, by);
                }
            }
            _ => {}
        }
    }

    /// Removes everything beneath this node written before `w` (list
    /// elements stay as anchors, marked deleted by `w`).
    pub fn prune_below(&mut self, w: Stamped) {
        self.keys.retain(|_, child| {
            child.prune_all(w);
            !child.is_void()
        });
        self.list.prune(w);
    }

    pub fn prune_all(&mut self, w: Stamped) {
        if self.reg.as_ref().is_some_and(|reg| reg.at.stamp < w.stamp) {
            self.reg = None;
        }
        self.prune_below(w);
    }

    /// Holds nothing at all: safe to drop from its parent.
    pub fn is_void(&self) -> bool {
        self.reg.is_none() && self.keys.is_empty() && self.list.is_empty()
    }

    /// Shows up in the JSON view.
    pub fn is_present(&self) -> bool {
        match self.reg.as_ref().map(|reg| &reg.value) {
            Some(RegValue::Scalar(_) | RegValue::Object | RegValue::List) => true,
            _ => self.keys.values().any(|child| child.is_present()) || self.list.any_present(),
        }
    }

    /// The conflict rule for a node's shape: its own latest write decides if
    /// it is a container; otherwise present object children win over present
    /// list elements, which win over an older scalar.
    pub fn kind(&self) -> Kind<'_> {
        let own = self.reg.as_ref().map(|reg| &reg.value);
        match own {
            Some(RegValue::Object) => Kind::Object,
            Some(RegValue::List) => Kind::List,
            _ if self.keys.values().any(|child| child.is_present()) => Kind::Object,
            _ if self.list.any_present() => Kind::List,
            Some(RegValue::Scalar(value)) => Kind::Scalar(value),
            _ => Kind::Absent,
        }
    }

    /// Whether the JSON view shows this node as a list; O(1) unless the node
    /// holds list elements without a container register of its own.
    pub fn is_list(&self) -> bool {
        match self.reg.as_ref().map(|reg| &reg.value) {
            Some(RegValue::List) => true,
            Some(RegValue::Object) => false,
            _ if self.list.is_empty() => false,
            _ => matches!(self.kind(), Kind::List),
        }
    }

    /// Whether the JSON view of this node may show object children. Cheap:
    /// when the node has no container register, a hidden key child is
    /// absent anyway, so only an explicit list register hides keys.
    pub fn shows_keys(&self) -> bool {
        !matches!(
            self.reg.as_ref().map(|reg| &reg.value),
            Some(RegValue::List)
        )
    }

    pub fn shows_list(&self) -> bool {
        match self.reg.as_ref().map(|reg| &reg.value) {
            Some(RegValue::Object) => false,
            Some(RegValue::List) => true,
            _ => !self.keys.values().any(|child| child.is_present()),
        }
    }

    /// One step down in the JSON view, or `None` if the step is hidden.
    pub fn step(&self, seg: &PathSeg) -> Option<&Node> {
        match seg {
            PathSeg::Key(key) if self.shows_keys() => self.keys.get(&**key).map(|child| &**child),
            PathSeg::Elem(id) if self.shows_list() => self.list.get(*id),
            _ => None,
        }
    }

    /// The JSON view of the node at `path` below `self`.
    pub fn value_at(&self, path: &[PathSeg]) -> Option<Value> {
        let mut node = self;
        for seg in path {
            node = node.step(seg)?;
        }
        node.materialize()
    }

    /// The JSON view of this node (`None` when absent).
    pub fn materialize(&self) -> Option<Value> {
        match self.kind() {
            Kind::Absent => None,
            Kind::Scalar(value) => Some(value.clone()),
            Kind::Object => Some(Value::Object(
                self.keys
                    .iter()
                    .filter_map(|(key, child)| child.materialize().map(|v| (key.to_string(), v)))
                    .collect::<Map<String, Value>>(),
            )),
            Kind::List => Some(Value::Array(
                self.list
                    .iter()
                    .filter_map(|elem| elem.node.materialize())
                    .collect(),
            )),
        }
    }

    /// State-based merge: the result holds what applying both nodes'
    /// operations would have produced.
    pub fn merge(&mut self, mut other: Node) {
        let mine = self.reg.as_ref().map(|reg| reg.at);
        let theirs = other.reg.as_ref().map(|reg| reg.at);
        match (mine, theirs) {
            (Some(a), Some(b)) if a.stamp > b.stamp => other.prune_below(a),
            (Some(_), None) => {
                if let Some(a) = mine {
                    other.prune_below(a)
                }
            }
            (_, Some(b)) if mine.is_none_or(|a| a.stamp < b.stamp) => {
                self.prune_below(b);
                self.reg = other.reg.take();
            }
            _ => {}
        }
        for (key, child) in other.keys.drain() {
            match self.keys.get_mut(&key) {
                Some(existing) => existing.merge(*child),
                None => {
                    self.keys.insert(key, child);
                }
            }
        }
        self.keys.retain(|_, child| !child.is_void());
        self.list.merge(std::mem::take(&mut other.list));
    }

    /// Drops tombstones (deleted registers) for which `stable` holds, and
    /// list anchors no future operation can name. Returns how many went.
    pub fn collect(&mut self, gc: &Collector) -> usize {
        let mut removed = 0;
        if self
            .reg
            .as_ref()
            .is_some_and(|reg| reg.value == RegValue::Deleted && gc.collectable(reg))
        {
            self.reg = None;
            removed += 1;
        }
        removed + self.collect_below(gc)
    }

    pub fn collect_below(&mut self, gc: &Collector) -> usize {
        let mut removed = 0;
        self.keys.retain(|_, child| {
            removed += child.collect(gc);
            !child.is_void()
        });
        removed + self.list.collect(gc)
    }

    /// Counts values, tombstones and nodes (O(document)).
    pub fn census(&self, census: &mut Census) {
        census.nodes += 1;
        match self.reg.as_ref().map(|reg| &reg.value) {
            Some(RegValue::Deleted) => census.tombstones += 1,
            Some(_) => census.values += 1,
            None => {}
        }
        for child in self.keys.values() {
            child.census(census);
        }
        for elem in self.list.iter() {
            elem.node.census(census);
        }
    }
}
