//! The PMD's registry as a pure data structure: who is registered, under
//! which alias, owned by which connection, and when it was last heard from.
//!
//! It does no I/O and reads no clock (time comes in as `now_ms`, milliseconds
//! since the Unix epoch), so every rule is unit-tested here and the server
//! stays a thin shell. Every mutation returns the [`PeerEvent`]s it caused;
//! the server only has to broadcast them.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use crate::protocol::{NodeInfo, PeerEvent, PeerEventKind, Registration};

/// Default bound on the number of registered nodes (see [`Registry::new`]).
pub const DEFAULT_MAX_NODES: usize = 10_000;

/// Longest `nodeId`, `alias` or `host` accepted, in bytes (DNS names are at
/// most 253). With [`DEFAULT_MAX_NODES`] this bounds the registry to a few
/// MiB and keeps a full `list` under the wire's 8 MiB frame limit.
pub const MAX_FIELD_BYTES: usize = 255;

/// Identifies the connection a registration belongs to; the server hands out
/// one per accepted socket.
pub type ConnectionId = u64;

/// Why a registry operation was refused. The `Display` texts are the ones
/// distflow clients expect on the wire.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    /// Another live node holds the alias.
    #[error("Alias '{0}' already in use")]
    AliasInUse(String),
    /// No node with that id (or alias) is registered.
    #[error("Node not found")]
    NodeNotFound,
    /// A registration field exceeds [`MAX_FIELD_BYTES`].
    #[error("Invalid registration: {field} is longer than {max} bytes")]
    FieldTooLong { field: &'static str, max: usize },
    /// The registry holds its maximum number of nodes.
    #[error("Registry full: at most {max} nodes can be registered")]
    Full { max: usize },
}

/// One registration and its bookkeeping.
#[derive(Debug, Clone)]
struct Entry {
    info: NodeInfo,
    registered_at: u64,
    owner: ConnectionId,
}

/// Alias -> node map keyed by node id.
///
/// ```
/// use ironforge_pmd::protocol::Registration;
/// use ironforge_pmd::registry::Registry;
///
/// let mut registry = Registry::default();
/// let reg = Registration {
///     node_id: "n1".into(),
///     alias: Some("web".into()),
///     host: "127.0.0.1".into(),
///     port: 9000,
/// };
/// let events = registry.register(reg, 1, 1_000).unwrap();
/// assert_eq!(events.len(), 1); // one peer:join
/// assert_eq!(registry.resolve("web").unwrap().node_id, "n1");
/// assert_eq!(registry.remove_owned_by(1).len(), 1); // its connection closed
/// ```
#[derive(Debug, Clone)]
pub struct Registry {
    /// Keyed by node id; ordered so `list` is deterministic.
    nodes: BTreeMap<String, Entry>,
    /// alias -> node id, for live nodes that have an alias.
    aliases: HashMap<String, String>,
    max_nodes: usize,
}

impl Default for Registry {
    fn default() -> Self {
        Registry::new(DEFAULT_MAX_NODES)
    }
}

impl Registry {
    /// An empty registry accepting at most `max_nodes` registrations.
    pub fn new(max_nodes: usize) -> Self {
        Registry {
            nodes: BTreeMap::new(),
            aliases: HashMap::new(),
            max_nodes,
        }
    }

    /// Registers (or updates) a node on behalf of connection `owner`.
    ///
    /// Re-registering a known node id updates it and moves ownership to
    /// `owner`: node ids are unique per process, so a second registration of
    /// one is the same node, e.g. reconnecting before its old half-open
    /// connection was noticed. An update that changes alias, host or port
    /// announces `peer:leave` (old) then `peer:join` (new); an identical one
    /// only refreshes the heartbeat and announces nothing.
    pub fn register(
        &mut self,
        reg: Registration,
        owner: ConnectionId,
        now_ms: u64,
    ) -> Result<Vec<PeerEvent>, RegistryError> {
        check_field_lengths(&reg)?;
        if let Some(alias) = &reg.alias {
            match self.aliases.get(alias) {
                Some(holder) if *holder != reg.node_id => {
                    return Err(RegistryError::AliasInUse(alias.clone()));
                }
                _ => {}
            }
        }
        let existing = self.nodes.contains_key(&reg.node_id);
        if !existing && self.nodes.len() >= self.max_nodes {
            return Err(RegistryError::Full {
                max: self.max_nodes,
            });
        }
        let info = NodeInfo {
            node_id: reg.node_id.clone(),
            alias: reg.alias,
            host: reg.host,
            port: reg.port,
            last_heartbeat: now_ms,
        };
        let mut events = Vec::new();
        let registered_at = match self.remove(&reg.node_id) {
            Some(old) if same_address(&old.info, &info) => old.registered_at,
            Some(old) => {
                events.push(event(PeerEventKind::Leave, old.info));
                events.push(event(PeerEventKind::Join, info.clone()));
                now_ms
            }
            None => {
                events.push(event(PeerEventKind::Join, info.clone()));
                now_ms
            }
        };
        if let Some(alias) = &info.alias {
            self.aliases.insert(alias.clone(), info.node_id.clone());
        }
        self.nodes.insert(
            info.node_id.clone(),
            Entry {
                info,
                registered_at,
                owner,
            },
        );
        Ok(events)
    }

    /// Removes a node by id.
    pub fn unregister(&mut self, node_id: &str) -> Result<Vec<PeerEvent>, RegistryError> {
        let entry = self.remove(node_id).ok_or(RegistryError::NodeNotFound)?;
        Ok(vec![event(PeerEventKind::Leave, entry.info)])
    }

    /// Records a heartbeat from a node.
    pub fn heartbeat(&mut self, node_id: &str, now_ms: u64) -> Result<(), RegistryError> {
        let entry = self
            .nodes
            .get_mut(node_id)
            .ok_or(RegistryError::NodeNotFound)?;
        entry.info.last_heartbeat = entry.info.last_heartbeat.max(now_ms);
        Ok(())
    }

    /// Finds a node by alias, or else by node id (distflow's `resolve`
    /// accepts either).
    pub fn resolve(&self, alias_or_id: &str) -> Option<&NodeInfo> {
        let node_id = self
            .aliases
            .get(alias_or_id)
            .map_or(alias_or_id, String::as_str);
        self.nodes.get(node_id).map(|entry| &entry.info)
    }

    /// When a node registered (ms since the epoch), if it is registered.
    pub fn registered_at(&self, node_id: &str) -> Option<u64> {
        self.nodes.get(node_id).map(|entry| entry.registered_at)
    }

    /// Every registered node, ordered by node id.
    pub fn list(&self) -> Vec<NodeInfo> {
        self.nodes
            .values()
            .map(|entry| entry.info.clone())
            .collect()
    }

    /// Number of registered nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether no node is registered.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Removes every node registered by connection `owner` (it closed).
    ///
    /// A linear scan: disconnects are rare next to lookups, and the registry
    /// is bounded by `max_nodes`.
    pub fn remove_owned_by(&mut self, owner: ConnectionId) -> Vec<PeerEvent> {
        self.remove_where(|entry| entry.owner == owner)
    }

    /// Removes every node whose last heartbeat is more than `ttl` before
    /// `now_ms` (its connection may be half-open).
    pub fn expire(&mut self, now_ms: u64, ttl: Duration) -> Vec<PeerEvent> {
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        self.remove_where(|entry| now_ms.saturating_sub(entry.info.last_heartbeat) > ttl_ms)
    }

    fn remove_where(&mut self, doomed: impl Fn(&Entry) -> bool) -> Vec<PeerEvent> {
        let ids: Vec<String> = self
            .nodes
            .iter()
            .filter(|(_, entry)| doomed(entry))
            .map(|(id, _)| id.clone())
            .collect();
        ids.iter()
            .filter_map(|id| self.remove(id))
            .map(|entry| event(PeerEventKind::Leave, entry.info))
            .collect()
    }

    fn remove(&mut self, node_id: &str) -> Option<Entry> {
        let entry = self.nodes.remove(node_id)?;
        if let Some(alias) = &entry.info.alias {
            self.aliases.remove(alias);
        }
        Some(entry)
    }
}

fn check_field_lengths(reg: &Registration) -> Result<(), RegistryError> {
    let fields = [
        ("nodeId", Some(&reg.node_id)),
        ("alias", reg.alias.as_ref()),
        ("host", Some(&reg.host)),
    ];
    for (field, value) in fields {
        if value.is_some_and(|v| v.len() > MAX_FIELD_BYTES) {
            return Err(RegistryError::FieldTooLong {
                field,
                max: MAX_FIELD_BYTES,
            });
        }
    }
    Ok(())
}

fn same_address(a: &NodeInfo, b: &NodeInfo) -> bool {
    a.alias == b.alias && a.host == b.host && a.port == b.port
}

fn event(kind: PeerEventKind, peer: NodeInfo) -> PeerEvent {
    PeerEvent { event: kind, peer }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(node_id: &str, alias: Option<&str>, port: u16) -> Registration {
        Registration {
            node_id: node_id.into(),
            alias: alias.map(Into::into),
            host: "127.0.0.1".into(),
            port,
        }
    }

    fn kinds(events: &[PeerEvent]) -> Vec<(PeerEventKind, &str, u16)> {
        events
            .iter()
            .map(|e| (e.event, e.peer.node_id.as_str(), e.peer.port))
            .collect()
    }

    #[test]
    fn register_announces_join_with_heartbeat_time() {
        let mut r = Registry::default();
        let events = r.register(reg("n1", Some("a"), 1), 7, 100).unwrap();
        assert_eq!(kinds(&events), [(PeerEventKind::Join, "n1", 1)]);
        assert_eq!(events[0].peer.last_heartbeat, 100);
        assert_eq!(r.registered_at("n1"), Some(100));
        assert_eq!(r.len(), 1);
    }

    #[test]
    fn taken_alias_is_refused_with_distflow_text() {
        let mut r = Registry::default();
        r.register(reg("n1", Some("a"), 1), 1, 0).unwrap();
        let err = r.register(reg("n2", Some("a"), 2), 2, 0).unwrap_err();
        assert_eq!(err.to_string(), "Alias 'a' already in use");
        assert_eq!(r.resolve("a").unwrap().node_id, "n1");
        assert_eq!(r.len(), 1);
    }

    #[test]
    fn alias_is_free_again_after_its_node_leaves() {
        let mut r = Registry::default();
        r.register(reg("n1", Some("a"), 1), 1, 0).unwrap();
        r.unregister("n1").unwrap();
        r.register(reg("n2", Some("a"), 2), 2, 0).unwrap();
        assert_eq!(r.resolve("a").unwrap().node_id, "n2");
    }

    #[test]
    fn nodes_without_alias_never_collide() {
        let mut r = Registry::default();
        r.register(reg("n1", None, 1), 1, 0).unwrap();
        r.register(reg("n2", None, 2), 1, 0).unwrap();
        assert_eq!(r.len(), 2);
    }

    #[test]
    fn identical_reregistration_refreshes_silently() {
        let mut r = Registry::default();
        r.register(reg("n1", Some("a"), 1), 1, 10).unwrap();
        let events = r.register(reg("n1", Some("a"), 1), 1, 50).unwrap();
        assert!(events.is_empty());
        assert_eq!(r.resolve("n1").unwrap().last_heartbeat, 50);
        assert_eq!(r.registered_at("n1"), Some(10));
    }

    #[test]
    fn changed_reregistration_updates_and_announces_leave_then_join() {
        let mut r = Registry::default();
        r.register(reg("n1", Some("a"), 1), 1, 0).unwrap();
        let events = r.register(reg("n1", Some("b"), 2), 1, 5).unwrap();
        assert_eq!(
            kinds(&events),
            [
                (PeerEventKind::Leave, "n1", 1),
                (PeerEventKind::Join, "n1", 2)
            ]
        );
        assert!(r.resolve("a").is_none(), "old alias released");
        assert_eq!(r.resolve("b").unwrap().port, 2);
        assert_eq!(r.len(), 1);
    }

    #[test]
    fn reregistration_from_new_connection_takes_ownership() {
        let mut r = Registry::default();
        r.register(reg("n1", Some("a"), 1), 1, 0).unwrap();
        r.register(reg("n1", Some("a"), 1), 2, 0).unwrap();
        assert!(r.remove_owned_by(1).is_empty());
        assert_eq!(r.remove_owned_by(2).len(), 1);
    }

    #[test]
    fn unregister_and_heartbeat_of_unknown_node_fail() {
        let mut r = Registry::default();
        assert_eq!(r.unregister("x").unwrap_err().to_string(), "Node not found");
        assert_eq!(
            r.heartbeat("x", 1).unwrap_err().to_string(),
            "Node not found"
        );
    }

    #[test]
    fn unregister_announces_leave() {
        let mut r = Registry::default();
        r.register(reg("n1", Some("a"), 1), 1, 0).unwrap();
        let events = r.unregister("n1").unwrap();
        assert_eq!(kinds(&events), [(PeerEventKind::Leave, "n1", 1)]);
        assert!(r.is_empty());
        assert!(r.resolve("a").is_none());
    }

    #[test]
    fn resolve_by_alias_or_by_id() {
        let mut r = Registry::default();
        r.register(reg("n1", Some("a"), 1), 1, 0).unwrap();
        assert_eq!(r.resolve("a").unwrap().node_id, "n1");
        assert_eq!(r.resolve("n1").unwrap().alias.as_deref(), Some("a"));
        assert!(r.resolve("nope").is_none());
    }

    #[test]
    fn list_is_ordered_by_node_id() {
        let mut r = Registry::default();
        for id in ["c", "a", "b"] {
            r.register(reg(id, None, 1), 1, 0).unwrap();
        }
        let ids: Vec<_> = r.list().into_iter().map(|n| n.node_id).collect();
        assert_eq!(ids, ["a", "b", "c"]);
    }

    #[test]
    fn disconnect_removes_only_that_connections_nodes() {
        let mut r = Registry::default();
        r.register(reg("n1", Some("a"), 1), 1, 0).unwrap();
        r.register(reg("n2", Some("b"), 2), 1, 0).unwrap();
        r.register(reg("n3", Some("c"), 3), 2, 0).unwrap();
        let events = r.remove_owned_by(1);
        assert_eq!(
            kinds(&events),
            [
                (PeerEventKind::Leave, "n1", 1),
                (PeerEventKind::Leave, "n2", 2)
            ]
        );
        assert_eq!(r.len(), 1);
        assert!(r.resolve("a").is_none());
    }

    #[test]
    fn expiry_removes_only_nodes_silent_for_longer_than_ttl() {
        let ttl = Duration::from_millis(100);
        let mut r = Registry::default();
        r.register(reg("old", None, 1), 1, 0).unwrap();
        r.register(reg("fresh", None, 2), 1, 0).unwrap();
        r.heartbeat("fresh", 60).unwrap();
        assert!(r.expire(100, ttl).is_empty(), "exactly ttl old is kept");
        let events = r.expire(101, ttl);
        assert_eq!(kinds(&events), [(PeerEventKind::Leave, "old", 1)]);
        assert!(r.expire(160, ttl).is_empty());
        assert_eq!(r.expire(161, ttl).len(), 1);
        assert!(r.is_empty());
    }

    #[test]
    fn overlong_fields_are_refused() {
        let mut r = Registry::default();
        let long = "x".repeat(MAX_FIELD_BYTES + 1);
        let edge = "x".repeat(MAX_FIELD_BYTES);
        r.register(reg(&edge, Some(&edge), 1), 1, 0).unwrap();
        let mut bad = reg("n2", Some(&long), 2);
        let err = r.register(bad.clone(), 1, 0).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Invalid registration: alias is longer than 255 bytes"
        );
        bad.alias = None;
        bad.host = long.clone();
        assert!(r
            .register(bad, 1, 0)
            .unwrap_err()
            .to_string()
            .contains("host"));
        assert!(r.register(reg(&long, None, 3), 1, 0).is_err());
        assert_eq!(r.len(), 1);
    }

    #[test]
    fn heartbeat_never_moves_backwards() {
        let mut r = Registry::default();
        r.register(reg("n1", None, 1), 1, 100).unwrap();
        r.heartbeat("n1", 50).unwrap();
        assert_eq!(r.resolve("n1").unwrap().last_heartbeat, 100);
    }

    #[test]
    fn capacity_bound_refuses_new_nodes_but_allows_updates() {
        let mut r = Registry::new(2);
        r.register(reg("n1", None, 1), 1, 0).unwrap();
        r.register(reg("n2", None, 2), 1, 0).unwrap();
        let err = r.register(reg("n3", None, 3), 1, 0).unwrap_err();
        assert_eq!(err, RegistryError::Full { max: 2 });
        assert!(err.to_string().contains("at most 2"));
        r.register(reg("n1", None, 9), 1, 0).unwrap();
        assert_eq!(r.resolve("n1").unwrap().port, 9);
    }
}
