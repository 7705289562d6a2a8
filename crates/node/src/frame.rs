//! Frames two nodes exchange once their handshake succeeded: `send`,
//! `request`, `reply`. Encoding writes straight into the outgoing buffer;
//! decoding borrows the body out of the received frame without copying it.

use bytes::{Bytes, BytesMut};
use ironforge_pmd::wire::{decode_json, encode_frame, WireError};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum DataKind {
    Send,
    Request,
    Reply,
    /// The peer reports a protocol error and closes the connection.
    Error,
}

#[derive(Serialize)]
struct OutFrame<'a, T: ?Sized> {
    #[serde(rename = "type")]
    kind: DataKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<u64>,
    /// A registered name on the receiving node; absent for its main mailbox.
    #[serde(skip_serializing_if = "Option::is_none")]
    to: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    body: Option<&'a T>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
}

#[derive(Deserialize)]
struct InFrame<'a> {
    #[serde(rename = "type")]
    kind: DataKind,
    #[serde(default)]
    id: Option<u64>,
    #[serde(borrow, default)]
    to: Option<&'a str>,
    #[serde(borrow, default)]
    body: Option<&'a RawValue>,
    #[serde(default, alias = "reason")]
    error: Option<String>,
}

/// A decoded data frame; `body` shares the received buffer.
#[derive(Debug, PartialEq)]
pub(crate) struct Data {
    pub kind: DataKind,
    pub id: Option<u64>,
    pub to: Option<String>,
    pub body: Bytes,
    pub error: Option<String>,
}

/// Encodes one data frame, length prefix included.
pub(crate) fn encode<T: Serialize + ?Sized>(
    kind: DataKind,
    id: Option<u64>,
    to: Option<&str>,
    body: &T,
    max_frame: usize,
) -> Result<Bytes, WireError> {
    let mut buf = BytesMut::with_capacity(128);
    let frame = OutFrame {
        kind,
        id,
        to,
        body: Some(body),
        error: None,
    };
    encode_frame(&frame, &mut buf, max_frame)?;
    Ok(buf.freeze())
}

/// Encodes a reply that reports a failure instead of a body.
pub(crate) fn encode_error_reply(id: u64, error: &str) -> Bytes {
    let mut buf = BytesMut::with_capacity(64);
    let frame = OutFrame::<()> {
        kind: DataKind::Reply,
        id: Some(id),
        to: None,
        body: None,
        error: Some(error),
    };
    // A short string always fits a frame.
    let _ = encode_frame(&frame, &mut buf, usize::MAX);
    buf.freeze()
}

/// Encodes the frame that tells a peer why its connection is being closed.
pub(crate) fn encode_protocol_error(reason: &str) -> Bytes {
    let mut buf = BytesMut::with_capacity(64);
    let frame = OutFrame::<()> {
        kind: DataKind::Error,
        id: None,
        to: None,
        body: None,
        error: Some(reason),
    };
    let _ = encode_frame(&frame, &mut buf, usize::MAX);
    buf.freeze()
}

/// Decodes one frame body (length prefix already stripped).
pub(crate) fn decode(frame: BytesMut) -> Result<Data, WireError> {
    let frame = frame.freeze();
    let parsed: InFrame<'_> = decode_json(&frame)?;
    let body = match parsed.body {
        Some(raw) => {
            let text = raw.get().as_bytes();
            let offset = text.as_ptr() as usize - frame.as_ptr() as usize;
            frame.slice(offset..offset + text.len())
        }
        None => Bytes::new(),
    };
    Ok(Data {
        kind: parsed.kind,
        id: parsed.id,
        to: parsed.to.map(str::to_owned),
        body,
        error: parsed.error,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strip(frame: Bytes) -> BytesMut {
        BytesMut::from(&frame[4..])
    }

    #[test]
    fn request_round_trips_without_reparsing_the_body() {
        let body = serde_json::json!({"n": 1, "s": "x"});
        let frame = encode(DataKind::Request, Some(9), Some("svc"), &body, 1024).unwrap();
        let data = decode(strip(frame)).unwrap();
        assert_eq!(data.kind, DataKind::Request);
        assert_eq!(data.id, Some(9));
        assert_eq!(data.to.as_deref(), Some("svc"));
        assert_eq!(&data.body[..], br#"{"n":1,"s":"x"}"#);
    }

    #[test]
    fn error_reply_and_unknown_type() {
        let data = decode(strip(encode_error_reply(3, "mailbox full"))).unwrap();
        assert_eq!(data.error.as_deref(), Some("mailbox full"));
        assert!(data.body.is_empty());
        let err = decode(BytesMut::from(&br#"{"type":"bogus"}"#[..])).unwrap_err();
        assert!(matches!(err, WireError::UnknownType(t) if t == "bogus"));
    }
}
