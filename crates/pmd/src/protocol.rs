//! The PMD's messages, shaped exactly as distflow's port-mapper protocol
//! (`shared/pmd-protocol.md`) so distflow's CLI and nodes interoperate.
//!
//! Every frame is `{ "type", "payload", "requestId" }`. Requests are parsed
//! in two steps (envelope, then payload by type) so an unknown type or a
//! payload of the wrong shape becomes a precise [`WireError`] and the reply
//! can still echo the `requestId`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::wire::WireError;

/// A node as the registry knows it. `lastHeartbeat` is in milliseconds since
/// the Unix epoch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeInfo {
    pub node_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
    pub host: String,
    pub port: u16,
    #[serde(default)]
    pub last_heartbeat: u64,
}

impl NodeInfo {
    /// The alias if the node has one, else its id: how distflow names a node.
    pub fn display_name(&self) -> &str {
        self.alias.as_deref().unwrap_or(&self.node_id)
    }
}

/// Payload of a `register` request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Registration {
    pub node_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
    pub host: String,
    pub port: u16,
}

/// A request a client sends to the PMD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Register(Registration),
    Unregister {
        node_id: String,
    },
    /// Resolve by alias or by node id.
    Resolve {
        alias: String,
    },
    List,
    Heartbeat {
        node_id: String,
    },
    Watch,
    Shutdown,
    /// IronForge addition: uptime, node count and version.
    Status,
}

impl Request {
    /// The wire name of this request's `type`.
    pub fn type_name(&self) -> &'static str {
        match self {
            Request::Register(_) => "register",
            Request::Unregister { .. } => "unregister",
            Request::Resolve { .. } => "resolve",
            Request::List => "list",
            Request::Heartbeat { .. } => "heartbeat",
            Request::Watch => "watch",
            Request::Shutdown => "shutdown",
            Request::Status => "status",
        }
    }

    /// Whether the request changes the registry or the daemon, and so is
    /// accepted only from loopback peers.
    pub fn is_mutating(&self) -> bool {
        matches!(
            self,
            Request::Register(_)
                | Request::Unregister { .. }
                | Request::Heartbeat { .. }
                | Request::Shutdown
        )
    }

    fn payload(&self) -> Value {
        match self {
            Request::Register(reg) => serde_json::to_value(reg).unwrap_or(Value::Null),
            Request::Unregister { node_id } | Request::Heartbeat { node_id } => {
                serde_json::json!({ "nodeId": node_id })
            }
            Request::Resolve { alias } => serde_json::json!({ "alias": alias }),
            Request::List | Request::Watch | Request::Shutdown | Request::Status => {
                serde_json::json!({})
            }
        }
    }
}

/// A request with its correlation id, as read from or written to the wire.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestFrame {
    pub request: Request,
    /// Echoed verbatim in the response; distflow sends strings.
    pub request_id: Option<Value>,
}

/// The untyped envelope every PMD frame shares.
#[derive(Debug, Serialize, Deserialize)]
pub struct Envelope {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub payload: Value,
    #[serde(rename = "requestId", default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct NodeIdPayload {
    node_id: String,
}

#[derive(Deserialize)]
struct AliasPayload {
    alias: String,
}

impl RequestFrame {
    /// Types an envelope. On error the caller still has the envelope's
    /// `requestId` to answer with.
    pub fn from_envelope(env: Envelope) -> Result<RequestFrame, WireError> {
        fn payload<T: serde::de::DeserializeOwned>(v: Value) -> Result<T, WireError> {
            serde_json::from_value(v).map_err(WireError::Malformed)
        }
        let request = match env.kind.as_str() {
            "register" => Request::Register(payload(env.payload)?),
            "unregister" => Request::Unregister {
                node_id: payload::<NodeIdPayload>(env.payload)?.node_id,
            },
            "heartbeat" => Request::Heartbeat {
                node_id: payload::<NodeIdPayload>(env.payload)?.node_id,
            },
            "resolve" => Request::Resolve {
                alias: payload::<AliasPayload>(env.payload)?.alias,
            },
            "list" => Request::List,
            "watch" => Request::Watch,
            "shutdown" => Request::Shutdown,
            "status" => Request::Status,
            other => return Err(WireError::UnknownType(other.to_owned())),
        };
        Ok(RequestFrame {
            request,
            request_id: env.request_id,
        })
    }

    /// The envelope to put on the wire for this request.
    pub fn to_envelope(&self) -> Envelope {
        Envelope {
            kind: self.request.type_name().to_owned(),
            payload: self.request.payload(),
            request_id: self.request_id.clone(),
        }
    }
}

/// Daemon facts answered to a `status` request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DaemonStatus {
    pub version: String,
    pub uptime_ms: u64,
    pub node_count: usize,
    pub pid: u32,
    pub started_at: u64,
}

/// The payload of a `response`: distflow's shapes are all optional fields of
/// one object (`success`, `error`, `node`, `nodes`), so one struct covers them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ResponsePayload {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<NodeInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes: Option<Vec<NodeInfo>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<DaemonStatus>,
}

impl ResponsePayload {
    pub fn ok() -> Self {
        ResponsePayload {
            success: Some(true),
            ..Default::default()
        }
    }

    pub fn error(message: impl Into<String>) -> Self {
        ResponsePayload {
            error: Some(message.into()),
            ..Default::default()
        }
    }
}

/// Registry change announced to watchers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PeerEventKind {
    #[serde(rename = "peer:join")]
    Join,
    #[serde(rename = "peer:leave")]
    Leave,
}

/// Payload of an `event` frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerEvent {
    pub event: PeerEventKind,
    pub peer: NodeInfo,
}

/// A frame the daemon sends.
#[derive(Debug, Clone, PartialEq)]
pub enum ServerFrame {
    Response {
        payload: ResponsePayload,
        request_id: Option<Value>,
    },
    Event(PeerEvent),
}

impl ServerFrame {
    pub fn to_envelope(&self) -> Envelope {
        match self {
            ServerFrame::Response {
                payload,
                request_id,
            } => Envelope {
                kind: "response".into(),
                payload: serde_json::to_value(payload).unwrap_or(Value::Null),
                request_id: request_id.clone(),
            },
            ServerFrame::Event(event) => Envelope {
                kind: "event".into(),
                payload: serde_json::to_value(event).unwrap_or(Value::Null),
                request_id: None,
            },
        }
    }

    pub fn from_envelope(env: Envelope) -> Result<ServerFrame, WireError> {
        match env.kind.as_str() {
            "response" => Ok(ServerFrame::Response {
                payload: serde_json::from_value(env.payload).map_err(WireError::Malformed)?,
                request_id: env.request_id,
            }),
            "event" => Ok(ServerFrame::Event(
                serde_json::from_value(env.payload).map_err(WireError::Malformed)?,
            )),
            other => Err(WireError::UnknownType(other.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<RequestFrame, WireError> {
        RequestFrame::from_envelope(serde_json::from_value(v).unwrap())
    }

    #[test]
    fn distflow_register_parses() {
        let frame = parse(json!({
            "type": "register",
            "payload": {"nodeId": "n1", "alias": "a", "host": "127.0.0.1", "port": 9000},
            "requestId": "req_1"
        }))
        .unwrap();
        assert_eq!(frame.request_id, Some(json!("req_1")));
        assert!(
            matches!(frame.request, Request::Register(ref r) if r.alias.as_deref() == Some("a"))
        );
    }

    #[test]
    fn unknown_type_and_bad_payload_are_typed() {
        assert!(matches!(
            parse(json!({"type": "dance", "payload": {}})),
            Err(WireError::UnknownType(t)) if t == "dance"
        ));
        assert!(matches!(
            parse(json!({"type": "resolve", "payload": {"alias": 3}})),
            Err(WireError::Malformed(_))
        ));
    }

    #[test]
    fn response_shapes_match_distflow() {
        let frame = ServerFrame::Response {
            payload: ResponsePayload::error("Node not found"),
            request_id: Some(json!("req_9")),
        };
        assert_eq!(
            serde_json::to_value(frame.to_envelope()).unwrap(),
            json!({"type": "response", "payload": {"error": "Node not found"}, "requestId": "req_9"})
        );
        let event = ServerFrame::Event(PeerEvent {
            event: PeerEventKind::Leave,
            peer: NodeInfo {
                node_id: "n".into(),
                alias: None,
                host: "h".into(),
                port: 1,
                last_heartbeat: 5,
            },
        });
        assert_eq!(
            serde_json::to_value(event.to_envelope()).unwrap(),
            json!({"type": "event", "payload": {"event": "peer:leave",
                "peer": {"nodeId": "n", "host": "h", "port": 1, "lastHeartbeat": 5}}})
        );
    }

    #[test]
    fn requests_round_trip() {
        for request in [
            Request::List,
            Request::Status,
            Request::Resolve { alias: "x".into() },
            Request::Heartbeat {
                node_id: "n".into(),
            },
        ] {
            let frame = RequestFrame {
                request,
                request_id: Some(json!("r")),
            };
            let env = serde_json::to_value(frame.to_envelope()).unwrap();
            assert_eq!(parse(env).unwrap(), frame);
        }
    }
}
