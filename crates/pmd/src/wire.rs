//! The wire format shared by the PMD and every node: a 4-byte big-endian
//! length, then that many bytes of UTF-8 JSON.
//!
//! Framing rides on tokio-util's length-delimited codec; this file adds the
//! JSON layer and turns every way a peer can send garbage into a typed
//! [`WireError`], so connection loops can answer with a reason and close
//! the one bad connection instead of panicking.

use std::io;
use std::marker::PhantomData;

use bytes::{Buf, BufMut, BytesMut};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio_util::codec::{Decoder, Encoder, LengthDelimitedCodec};

/// Default largest frame accepted or sent: 8 MiB.
pub const DEFAULT_MAX_FRAME: usize = 8 * 1024 * 1024;

/// Size of the length prefix in bytes.
pub const LENGTH_PREFIX: usize = 4;

/// Everything that can go wrong reading or writing a frame.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// The length prefix announced more bytes than the configured maximum.
    #[error("frame of {len} bytes exceeds the maximum of {max} bytes")]
    FrameTooLarge { len: usize, max: usize },
    /// The stream ended in the middle of a frame.
    #[error("connection closed in the middle of a frame ({buffered} bytes buffered)")]
    Truncated { buffered: usize },
    /// The frame body is not UTF-8.
    #[error("frame is not valid UTF-8: {0}")]
    InvalidUtf8(#[from] std::str::Utf8Error),
    /// The frame body is UTF-8 but not JSON.
    #[error("frame is not valid JSON: {0}")]
    InvalidJson(serde_json::Error),
    /// The frame is a JSON object whose `type` this side does not know.
    #[error("unknown message type {0:?}")]
    UnknownType(String),
    /// The frame is JSON of the wrong shape for its `type`.
    #[error("malformed message: {0}")]
    Malformed(serde_json::Error),
    /// The socket failed.
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
}

impl WireError {
    /// Whether the error came from the peer's bytes (worth an `error` reply)
    /// rather than from the socket itself.
    pub fn is_protocol_error(&self) -> bool {
        !matches!(self, WireError::Io(_) | WireError::Truncated { .. })
    }
}

/// Splits a byte stream into frame bodies (without their length prefix),
/// refusing any frame larger than the configured maximum before buffering it.
#[derive(Debug)]
pub struct FrameCodec {
    frames: LengthDelimitedCodec,
    max_frame: usize,
    /// The inner codec has consumed a length prefix and waits for the body.
    in_body: bool,
}

impl FrameCodec {
    /// A codec accepting frames of at most `max_frame` bytes.
    pub fn new(max_frame: usize) -> Self {
        let frames = LengthDelimitedCodec::builder()
            .big_endian()
            .length_field_length(LENGTH_PREFIX)
            .max_frame_length(max_frame)
            .new_codec();
        FrameCodec {
            frames,
            max_frame,
            in_body: false,
        }
    }

    /// The configured frame limit in bytes.
    pub fn max_frame(&self) -> usize {
        self.max_frame
    }
}

impl Decoder for FrameCodec {
    type Item = BytesMut;
    type Error = WireError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<BytesMut>, WireError> {
        // Check the prefix ourselves so the error carries the announced size.
        let has_head = !self.in_body && src.len() >= LENGTH_PREFIX;
        if has_head {
            let len = (&src[..LENGTH_PREFIX]).get_u32() as usize;
            if len > self.max_frame {
                return Err(WireError::FrameTooLarge {
                    len,
                    max: self.max_frame,
                });
            }
        }
        match self.frames.decode(src)? {
            Some(body) => {
                self.in_body = false;
                Ok(Some(body))
            }
            None => {
                self.in_body |= has_head;
                Ok(None)
            }
        }
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<BytesMut>, WireError> {
        match self.decode(src)? {
            Some(frame) => Ok(Some(frame)),
            None if src.is_empty() && !self.in_body => Ok(None),
            None => Err(WireError::Truncated {
                buffered: src.len(),
            }),
        }
    }
}

/// A codec that frames values of type `In` (decoded) and any `Serialize`
/// value (encoded) as length-prefixed JSON.
///
/// ```
/// use bytes::BytesMut;
/// use ironforge_pmd::wire::JsonCodec;
/// use tokio_util::codec::{Decoder, Encoder};
///
/// let mut codec = JsonCodec::<serde_json::Value>::new(1024);
/// let mut buf = BytesMut::new();
/// codec.encode(serde_json::json!({"type": "ping"}), &mut buf).unwrap();
/// assert_eq!(&buf[..4], &[0, 0, 0, 15]);
/// let back = codec.decode(&mut buf).unwrap().unwrap();
/// assert_eq!(back["type"], "ping");
/// ```
#[derive(Debug)]
pub struct JsonCodec<In> {
    frames: FrameCodec,
    _in: PhantomData<fn() -> In>,
}

impl<In> JsonCodec<In> {
    /// A codec accepting and producing frames of at most `max_frame` bytes.
    pub fn new(max_frame: usize) -> Self {
        JsonCodec {
            frames: FrameCodec::new(max_frame),
            _in: PhantomData,
        }
    }

    /// The configured frame limit in bytes.
    pub fn max_frame(&self) -> usize {
        self.frames.max_frame
    }
}

impl<In> Default for JsonCodec<In> {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_FRAME)
    }
}

impl<In: DeserializeOwned> Decoder for JsonCodec<In> {
    type Item = In;
    type Error = WireError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<In>, WireError> {
        match self.frames.decode(src)? {
            Some(body) => decode_json(&body).map(Some),
            None => Ok(None),
        }
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<In>, WireError> {
        match self.frames.decode_eof(src)? {
            Some(body) => decode_json(&body).map(Some),
            None => Ok(None),
        }
    }
}

impl<In, Out: Serialize> Encoder<Out> for JsonCodec<In> {
    type Error = WireError;

    fn encode(&mut self, item: Out, dst: &mut BytesMut) -> Result<(), WireError> {
        encode_frame(&item, dst, self.frames.max_frame)
    }
}

/// Appends one frame holding `item` to `dst`, serializing straight into the
/// buffer (no intermediate allocation).
pub fn encode_frame<T: Serialize + ?Sized>(
    item: &T,
    dst: &mut BytesMut,
    max_frame: usize,
) -> Result<(), WireError> {
    let start = dst.len();
    dst.put_u32(0);
    let mut writer = dst.writer();
    let written = serde_json::to_writer(&mut writer, item);
    let dst = writer.into_inner();
    if let Err(err) = written {
        dst.truncate(start);
        return Err(WireError::Malformed(err));
    }
    let len = dst.len() - start - LENGTH_PREFIX;
    if len > max_frame {
        dst.truncate(start);
        return Err(WireError::FrameTooLarge {
            len,
            max: max_frame,
        });
    }
    dst[start..start + LENGTH_PREFIX].copy_from_slice(&(len as u32).to_be_bytes());
    Ok(())
}

/// Parses one frame body, classifying failures. The slow classification runs
/// only on the error path, so well-formed traffic pays for one parse.
pub fn decode_json<'a, T: serde::Deserialize<'a>>(body: &'a [u8]) -> Result<T, WireError> {
    match serde_json::from_slice(body) {
        Ok(value) => Ok(value),
        Err(err) => Err(classify(body, err)),
    }
}

fn classify(body: &[u8], err: serde_json::Error) -> WireError {
    if let Err(utf8) = std::str::from_utf8(body) {
        return WireError::InvalidUtf8(utf8);
    }
    let value: serde_json::Value = match serde_json::from_slice(body) {
        Ok(value) => value,
        Err(json) => return WireError::InvalidJson(json),
    };
    match value.get("type").and_then(|t| t.as_str()) {
        Some(kind) if err.to_string().contains("unknown variant") => {
            WireError::UnknownType(kind.to_owned())
        }
        _ => WireError::Malformed(err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize, serde::Serialize, PartialEq)]
    #[serde(tag = "type", rename_all = "snake_case")]
    enum Msg {
        Ping { n: u32 },
    }

    fn frame(body: &[u8]) -> BytesMut {
        let mut buf = BytesMut::new();
        buf.put_u32(body.len() as u32);
        buf.put_slice(body);
        buf
    }

    #[test]
    fn split_frame_is_reassembled() {
        let mut codec = JsonCodec::<Msg>::new(1024);
        let whole = frame(br#"{"type":"ping","n":7}"#);
        let mut buf = BytesMut::new();
        for byte in whole.iter() {
            assert!(buf.is_empty() || codec.decode(&mut buf).unwrap().is_none());
            buf.put_u8(*byte);
        }
        assert_eq!(codec.decode(&mut buf).unwrap(), Some(Msg::Ping { n: 7 }));
    }

    #[test]
    fn oversized_length_is_rejected_before_buffering() {
        let mut codec = JsonCodec::<Msg>::new(16);
        let mut buf = BytesMut::new();
        buf.put_u32(17);
        let err = codec.decode(&mut buf).unwrap_err();
        assert!(matches!(err, WireError::FrameTooLarge { len: 17, max: 16 }));
    }

    #[test]
    fn garbage_is_classified() {
        let mut codec = JsonCodec::<Msg>::new(1024);
        type Check = fn(&WireError) -> bool;
        let cases: [(&[u8], Check); 4] = [
            (b"\xff\xfe", |e| matches!(e, WireError::InvalidUtf8(_))),
            (b"{not json", |e| matches!(e, WireError::InvalidJson(_))),
            (
                br#"{"type":"pong"}"#,
                |e| matches!(e, WireError::UnknownType(t) if t == "pong"),
            ),
            (br#"{"type":"ping","n":"x"}"#, |e| {
                matches!(e, WireError::Malformed(_))
            }),
        ];
        for (body, is_expected) in cases {
            let err = codec.decode(&mut frame(body)).unwrap_err();
            assert!(is_expected(&err), "{body:?} gave {err}");
            assert!(err.is_protocol_error());
        }
    }

    #[test]
    fn eof_mid_frame_is_truncated() {
        let mut codec = JsonCodec::<Msg>::new(1024);
        let mut buf = frame(br#"{"type":"ping","n":1}"#);
        buf.truncate(10);
        let err = codec.decode_eof(&mut buf).unwrap_err();
        assert!(matches!(err, WireError::Truncated { .. }));
    }

    #[test]
    fn encode_refuses_oversized_and_leaves_buffer_clean() {
        let mut codec = JsonCodec::<Msg>::new(8);
        let mut buf = BytesMut::from(&b"keep"[..]);
        let err = codec.encode(Msg::Ping { n: 1 }, &mut buf).unwrap_err();
        assert!(matches!(err, WireError::FrameTooLarge { .. }));
        assert_eq!(&buf[..], b"keep");
    }
}
