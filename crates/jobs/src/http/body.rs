//! Request bodies turned into typed values with errors that name the
//! problem: malformed JSON (with line and column), a wrong type or an
//! unknown field (with the JSON path, e.g. `jobs[3].priority`), an unknown
//! priority, a body over the limit. Decoding is pure (bytes in, value or
//! [`ApiError`] out); reading the body is the one async step.

use axum::body::Body;
use axum::extract::{FromRequest, Request};
use axum::http::{header, StatusCode};
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::error::ApiError;
use super::ApiState;
use crate::job::JobSpec;

/// A body over the limit is read and thrown away up to this many times the
/// limit before the 413 goes out, so a client still sending it gets the
/// answer rather than a reset connection (a "lingering close"); past that
/// the connection is simply closed.
const DRAIN_FACTOR: usize = 4;

/// The raw body of a request that must be JSON (or have no content type),
/// read up to the API's body limit.
#[derive(Debug)]
pub struct JsonBytes(pub Bytes);

impl FromRequest<ApiState> for JsonBytes {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &ApiState) -> Result<Self, Self::Rejection> {
        let content_type = req.headers().get(header::CONTENT_TYPE).cloned();
        let bytes = read_limited(req.into_body(), state.inner.config.body_limit).await?;
        // An empty body has nothing to mislabel (`curl -d ''` sends a form type).
        if let (Some(value), false) = (content_type, bytes.is_empty()) {
            let is_json = value
                .to_str()
                .ok()
                .and_then(|v| v.split(';').next())
                .map(|mime| {
                    let mime = mime.trim().to_ascii_lowercase();
                    mime == "application/json" || mime.ends_with("+json")
                })
                .unwrap_or(false);
            if !is_json {
                return Err(ApiError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "unsupported_media_type",
                    format!(
                        "content type {value:?} is not JSON; send `Content-Type: application/json`"
                    ),
                ));
            }
        }
        Ok(JsonBytes(bytes))
    }
}

/// Reads a body of at most `limit` bytes; a longer one is drained (see
/// [`DRAIN_FACTOR`]) and refused with 413 `body_too_large`.
async fn read_limited(body: Body, limit: usize) -> Result<Bytes, ApiError> {
    let mut stream = body.into_data_stream();
    let mut kept = BytesMut::new();
    let mut seen = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            ApiError::bad_request(
                "unreadable_body",
                format!("could not read the request body: {e}"),
            )
        })?;
        seen = seen.saturating_add(chunk.len());
        if seen <= limit {
            kept.extend_from_slice(&chunk);
        } else if seen > limit.saturating_mul(DRAIN_FACTOR) {
            break;
        }
    }
    if seen > limit {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!(
                "request body exceeds the server's body limit of {limit} bytes; split the batch or shrink the payload"
            ),
        ));
    }
    Ok(kept.freeze())
}

/// What `POST /jobs` carries: one job, or a batch (`{"jobs": [...]}` or a
/// bare JSON array).
#[derive(Debug, PartialEq)]
pub struct Submission {
    /// The jobs, in submission order.
    pub specs: Vec<JobSpec>,
    /// True for the batch forms (the answer lists every job).
    pub batch: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchBody {
    jobs: Vec<JobSpec>,
}

/// The optional body of `POST /jobs/{id}/retry`.
#[derive(Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RetryBody {
    /// Start counting attempts from zero again.
    #[serde(default)]
    pub reset_attempts: bool,
}

/// Decodes the body of `POST /jobs`.
pub fn decode_submission(bytes: &[u8]) -> Result<Submission, ApiError> {
    let value = parse_json(bytes)?;
    match value {
        serde_json::Value::Array(_) => Ok(Submission {
            specs: from_value(value)?,
            batch: true,
        }),
        serde_json::Value::Object(ref map) if map.contains_key("jobs") => {
            let body: BatchBody = from_value(value)?;
            Ok(Submission {
                specs: body.jobs,
                batch: true,
            })
        }
        serde_json::Value::Object(_) => Ok(Submission {
            specs: vec![from_value(value)?],
            batch: false,
        }),
        other => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            format!(
                "expected a job object, {{\"jobs\": [...]}} or an array of jobs, got {}",
                json_type(&other)
            ),
        )),
    }
}

/// Decodes the body of `POST /jobs/{id}/retry`; an empty body means defaults.
pub fn decode_retry(bytes: &[u8]) -> Result<RetryBody, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(RetryBody::default());
    }
    from_value(parse_json(bytes)?)
}

fn parse_json(bytes: &[u8]) -> Result<serde_json::Value, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request(
            "malformed_json",
            "request body is empty; expected JSON",
        ));
    }
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_request("malformed_json", format!("malformed JSON: {e}")))
}

/// Typed decoding that reports the path of the offending field.
fn from_value<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(value).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner().to_string();
        let code = if inner.starts_with("unknown variant") && path.ends_with("priority") {
            "unknown_priority"
        } else if inner.starts_with("unknown field") {
            "unknown_field"
        } else if inner.starts_with("missing field") {
            "missing_field"
        } else {
            "invalid_field"
        };
        let message = if path == "." {
            inner
        } else {
            format!("`{path}`: {inner}")
        };
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    })
}

fn json_type(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::Priority;

    #[test]
    fn accepts_the_three_forms() {
        let one = decode_submission(br#"{"kind":"a","priority":"high"}"#).unwrap();
        assert!(!one.batch);
        assert_eq!(one.specs[0].priority, Priority::High);
        let wrapped = decode_submission(br#"{"jobs":[{"kind":"a"},{"kind":"b"}]}"#).unwrap();
        assert!(wrapped.batch);
        assert_eq!(wrapped.specs.len(), 2);
        let bare = decode_submission(br#"[{"kind":"a"}]"#).unwrap();
        assert!(bare.batch);
        assert_eq!(bare.specs[0].kind, "a");
    }

    #[test]
    fn errors_name_the_problem_and_the_path() {
        let e = decode_submission(br#"{"kind":"#).unwrap_err();
        assert_eq!(
            (e.status, e.code),
            (StatusCode::BAD_REQUEST, "malformed_json")
        );
        assert!(e.message.contains("line 1"), "{}", e.message);

        let e = decode_submission(br#"{"kind":5}"#).unwrap_err();
        assert_eq!(e.code, "invalid_field");
        assert!(e.message.contains("`kind`"), "{}", e.message);

        let e = decode_submission(br#"{"jobs":[{"kind":"a"},{"kind":"b","priority":"urgent"}]}"#)
            .unwrap_err();
        assert_eq!(e.code, "unknown_priority");
        assert!(e.message.contains("jobs[1].priority"), "{}", e.message);
        assert!(e.message.contains("urgent"), "{}", e.message);

        let e = decode_submission(br#"{"kind":"a","colour":"red"}"#).unwrap_err();
        assert_eq!(e.code, "unknown_field");
        let e = decode_submission(br#"{"payload":{}}"#).unwrap_err();
        assert_eq!(e.code, "missing_field");
        let e = decode_submission(b"42").unwrap_err();
        assert_eq!(e.status, StatusCode::UNPROCESSABLE_ENTITY);
        let e = decode_submission(b"  ").unwrap_err();
        assert_eq!(e.code, "malformed_json");
    }

    #[test]
    fn retry_body_is_optional() {
        assert_eq!(decode_retry(b"").unwrap(), RetryBody::default());
        assert!(
            decode_retry(br#"{"reset_attempts":true}"#)
                .unwrap()
                .reset_attempts
        );
        assert_eq!(
            decode_retry(br#"{"reset_attempts":"yes"}"#)
                .unwrap_err()
                .code,
            "invalid_field"
        );
    }

    #[test]
    fn truncated_bodies_are_client_errors() {
        let body = br#"{"jobs":[{"kind":"a","payload":{"x":[1,2,{"y":null}]},"priority":"low"}]}"#;
        for cut in 0..body.len() {
            if let Err(e) = decode_submission(&body[..cut]) {
                assert!(e.status.is_client_error(), "cut {cut}: {e}");
            }
        }
    }
}
