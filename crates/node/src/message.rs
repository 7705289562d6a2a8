//! What a node receives: the sender, and a JSON body kept as the bytes that
//! arrived. The body is validated JSON but parsed only when the application
//! asks, so a busy mailbox costs no tree building.

use std::sync::Arc;

use bytes::Bytes;
use serde::de::DeserializeOwned;

/// One message delivered to a node's mailbox.
#[derive(Debug, Clone)]
pub struct Message {
    pub(crate) from: Arc<str>,
    pub(crate) from_alias: Arc<str>,
    pub(crate) body: Bytes,
    /// Set when the sender awaits a reply (`request`).
    pub(crate) request_id: Option<u64>,
}

impl Message {
    /// Node id of the sender.
    pub fn from(&self) -> &str {
        &self.from
    }

    /// Alias of the sender.
    pub fn from_alias(&self) -> &str {
        &self.from_alias
    }

    /// The body as the JSON text that arrived.
    pub fn raw(&self) -> &[u8] {
        &self.body
    }

    /// The body parsed as a JSON value.
    pub fn body(&self) -> serde_json::Value {
        // The reader validated the JSON, so this parse cannot fail.
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// The body parsed as `T`.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }

    /// Whether the sender awaits a reply (see `Node::reply`).
    pub fn is_request(&self) -> bool {
        self.request_id.is_some()
    }
}
