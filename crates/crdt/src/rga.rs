//! Lists as a replicated growable array (RGA): each element is named by the
//! stamp of the operation that inserted it and remembers the element it was
//! inserted after. Concurrent inserts after the same element are ordered by
//! descending id, and removed elements stay as invisible anchors, so a
//! deletion never shifts or loses a concurrently inserted neighbour. Anchors
//! are collected only when their removal is causally stable and dropping
//! them cannot change where a future insert lands (see `collect`).
//!
//! Positions are found by a linear scan: list operations cost O(list length),
//! which suits the short lists of job state (object paths stay O(depth)).

use crate::path::ElemId;
use crate::tree::{Collector, Node, Reg, RegValue, Stamped};
use hashbrown::HashMap;
use serde::{Deserialize, Serialize};

/// One list element: identity, sequence number of the inserting operation
/// (for stability checks), left neighbour at insertion, and its content.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Elem {
    pub id: ElemId,
    pub seq: u64,
    pub origin: Option<ElemId>,
    pub node: Node,
}

/// The element sequence of one list, anchors included.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub(crate) struct Rga {
    elems: Vec<Elem>,
}

impl Rga {
    pub fn is_empty(&self) -> bool {
        self.elems.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Elem> {
        self.elems.iter()
    }

    fn position(&self, id: ElemId) -> Option<usize> {
        self.elems.iter().position(|elem| elem.id == id)
    }

    pub fn get(&self, id: ElemId) -> Option<&Node> {
        self.elems
            .iter()
            .find(|elem| elem.id == id)
            .map(|elem| &elem.node)
    }

    pub fn get_mut(&mut self, id: ElemId) -> Option<&mut Node> {
        self.elems
            .iter_mut()
            .find(|elem| elem.id == id)
            .map(|elem| &mut elem.node)
    }

    pub fn any_present(&self) -> bool {
        self.elems.iter().any(|elem| elem.node.is_present())
    }

    /// The `index`-th visible element.
    pub fn nth_present(&self, index: usize) -> Option<&Elem> {
        self.elems
            .iter()
            .filter(|elem| elem.node.is_present())
            .nth(index)
    }

    pub fn present_len(&self) -> usize {
        self.elems
            .iter()
            .filter(|elem| elem.node.is_present())
            .count()
    }

    /// Places a new element after `origin` (head when `None`), skipping the
    /// newer elements already there: the RGA rule that makes the final order
    /// independent of arrival order. `None` if `origin` is unknown.
    pub fn integrate(&mut self, id: ElemId, seq: u64, origin: Option<ElemId>) -> Option<&mut Node> {
        let mut index = match origin {
            None => 0,
            Some(origin) => self.position(origin)? + 1,
        };
        while index < self.elems.len() && self.elems[index].id > id {
            index += 1;
        }
        self.elems.insert(
            index,
            Elem {
                id,
                seq,
                origin,
                node: Node::default(),
            },
        );
        Some(&mut self.elems[index].node)
    }

    /// Element `sub` of an array written by the operation stamped `stamp`:
    /// chained after element `sub - 1` of the same write.
    pub fn integrate_sub(&mut self, w: Stamped, sub: usize) -> Option<&mut Node> {
        let sub = u32::try_from(sub).ok()?;
        let stamp = w.stamp;
        let origin = sub.checked_sub(1).map(|prev| ElemId { stamp, sub: prev });
        self.integrate(ElemId { stamp, sub }, w.seq, origin)
    }

    /// Clears element contents older than `w`, keeping the anchors.
    pub fn prune(&mut self, w: Stamped) {
        for elem in &mut self.elems {
            elem.node.prune_all(w);
            if elem.node.reg.is_none() {
                elem.node.reg = Some(Reg {
                    at: w,
                    value: RegValue::Deleted,
                });
            }
        }
    }

    /// Adds the other replica's elements (in id order, so every origin is
    /// placed before the elements hanging off it) and merges shared ones.
    pub fn merge(&mut self, other: Rga) {
        if other.is_empty() {
            return;
        }
        let index: HashMap<ElemId, usize> = self
            .elems
            .iter()
            .enumerate()
            .map(|(i, elem)| (elem.id, i))
            .collect();
        let mut missing = Vec::new();
        for elem in other.elems {
            match index.get(&elem.id) {
                Some(&i) => self.elems[i].node.merge(elem.node),
                None => missing.push(elem),
            }
        }
        missing.sort_by_key(|elem| elem.id);
        for elem in missing {
            match self.integrate(elem.id, elem.seq, elem.origin) {
                Some(node) => *node = elem.node,
                None => {
                    tracing::warn!(?elem.id, "merge: list element's origin was collected; element dropped")
                }
            }
        }
    }

    /// Collects inside elements, then drops anchors: elements whose removal
    /// is stable and which hold nothing else. Every later insert is newer
    /// than such an anchor, so its skip loop stops there; dropping it moves
    /// that stop to the next surviving element, which is harmless exactly
    /// when that element is older than every later insert too: older than
    /// the anchor, or inserted by a stable operation. Walking backwards
    /// keeps track of the next survivor.
    pub fn collect(&mut self, gc: &Collector) -> usize {
        let mut removed = 0;
        for elem in &mut self.elems {
            removed += elem.node.collect_below(gc);
        }
        let mut purge = vec![false; self.elems.len()];
        let mut next_survivor: Option<(ElemId, u64)> = None;
        for i in (0..self.elems.len()).rev() {
            let elem = &self.elems[i];
            let anchor = elem.node.keys.is_empty()
                && elem.node.list.is_empty()
                && elem
                    .node
                    .reg
                    .as_ref()
                    .is_some_and(|reg| reg.value == RegValue::Deleted && gc.collectable(reg));
            let harmless = next_survivor
                .is_none_or(|(next, seq)| next < elem.id || gc.is_stable(next.stamp.replica, seq));
            if anchor && harmless {
                purge[i] = true;
                removed += 1;
            } else {
                next_survivor = Some((elem.id, elem.seq));
            }
        }
        let mut flags = purge.into_iter();
        self.elems.retain(|_| !flags.next().unwrap_or(false));
        removed
    }
}
