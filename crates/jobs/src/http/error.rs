//! The one error type of the HTTP API: every failure, from a bad byte in a
//! request to an unreachable backend, leaves as `{"error":{"code","message"}}`
//! with a fitting status, so clients never see axum's plain-text rejections
//! and bad input never becomes a 500.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use crate::error::{BackendError, JobError, ValidationError};
use crate::workflow::{RunnerError, WorkflowError};

/// An error answer: status, a stable machine-readable code, and a message
/// for humans that names the problem.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable snake_case code (`malformed_json`, `not_found`, ...).
    pub code: &'static str,
    /// What went wrong and, when possible, what to do.
    pub message: String,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
}

#[derive(Serialize)]
struct ErrorDetail<'a> {
    code: &'a str,
    message: &'a str,
}

impl ApiError {
    /// An error with explicit parts.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    /// 400 with `code`.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// The JSON body `{"error":{"code","message"}}`.
    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({"error": {"code": self.code, "message": self.message}})
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.code,
            self.message
        )
    }
}

impl std::error::Error for ApiError {}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::warn!(status = self.status.as_u16(), code = self.code, message = %self.message, "request failed");
        } else {
            tracing::debug!(status = self.status.as_u16(), code = self.code, message = %self.message, "request refused");
        }
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: &self.message,
            },
        };
        (self.status, Json(body)).into_response()
    }
}

/// Status and code of a validation failure (a batch entry keeps the code of
/// what is wrong with it).
fn validation_parts(error: &ValidationError) -> (StatusCode, &'static str) {
    let unprocessable = StatusCode::UNPROCESSABLE_ENTITY;
    match error {
        ValidationError::InBatch { source, .. } => validation_parts(source),
        ValidationError::EmptyKind => (unprocessable, "empty_kind"),
        ValidationError::KindTooLong { .. } => (unprocessable, "kind_too_long"),
        ValidationError::PayloadTooLarge { .. } => {
            (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large")
        }
        ValidationError::TooManyRetries { .. } => (unprocessable, "invalid_max_retries"),
        ValidationError::TimeoutOutOfRange { .. } => (unprocessable, "invalid_timeout"),
        ValidationError::BadKey { .. } => (unprocessable, "invalid_key"),
        ValidationError::TooMuchMetadata { .. } | ValidationError::MetadataTooLong { .. } => {
            (unprocessable, "invalid_metadata")
        }
        ValidationError::BadBatchSize { .. } => (unprocessable, "bad_batch_size"),
        ValidationError::UnknownPriority(_) => (unprocessable, "unknown_priority"),
        ValidationError::UnknownStatus(_) => (StatusCode::BAD_REQUEST, "unknown_status"),
        ValidationError::InvalidId(_) => (StatusCode::BAD_REQUEST, "invalid_id"),
        // Malformed and anything added later: the caller's input, never a 500.
        _ => (unprocessable, "invalid_job"),
    }
}

impl From<ValidationError> for ApiError {
    fn from(error: ValidationError) -> Self {
        let (status, code) = validation_parts(&error);
        ApiError::new(status, code, error.to_string())
    }
}

impl From<BackendError> for ApiError {
    fn from(error: BackendError) -> Self {
        let (status, code) = match &error {
            BackendError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            BackendError::InvalidState { .. } => (StatusCode::CONFLICT, "invalid_state"),
            BackendError::QueueFull { .. } => (StatusCode::SERVICE_UNAVAILABLE, "queue_full"),
            BackendError::Unavailable(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, "backend_unavailable")
            }
            BackendError::Closed => (StatusCode::SERVICE_UNAVAILABLE, "backend_closed"),
            // Storage faults and anything added later are the server's.
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "storage_error"),
        };
        ApiError::new(status, code, error.to_string())
    }
}

impl From<JobError> for ApiError {
    fn from(error: JobError) -> Self {
        match error {
            JobError::Validation(e) => e.into(),
            JobError::Backend(e) => e.into(),
        }
    }
}

/// A refused workflow: always 400, with a code per problem and a message
/// naming the offending keys.
impl From<WorkflowError> for ApiError {
    fn from(error: WorkflowError) -> Self {
        let code = match &error {
            WorkflowError::Malformed(_) => "malformed_workflow",
            WorkflowError::Empty => "empty_workflow",
            WorkflowError::TooManyJobs { .. } => "too_many_jobs",
            WorkflowError::NameTooLong { .. } => "name_too_long",
            WorkflowError::BadKey { .. } => "invalid_key",
            WorkflowError::TooManyDependencies { .. } => "too_many_dependencies",
            WorkflowError::TooManyEdges { .. } => "too_many_dependencies",
            WorkflowError::InvalidJob { .. } => "invalid_job",
            WorkflowError::DuplicateKeys { .. } => "duplicate_keys",
            WorkflowError::UnknownDependencies { .. } => "unknown_dependencies",
            WorkflowError::SelfDependency { .. } => "cycle",
            WorkflowError::DuplicateDependency { .. } => "duplicate_dependency",
            WorkflowError::Cycle { .. } => "cycle",
        };
        ApiError::bad_request(code, error.to_string())
    }
}

impl From<RunnerError> for ApiError {
    fn from(error: RunnerError) -> Self {
        let message = error.to_string();
        match error {
            RunnerError::Invalid(e) => e.into(),
            RunnerError::NotFound(_) => ApiError::new(StatusCode::NOT_FOUND, "not_found", message),
            RunnerError::Conflict(_) => ApiError::new(StatusCode::CONFLICT, "conflict", message),
            RunnerError::SeqOutOfRange { .. } => ApiError::bad_request("seq_out_of_range", message),
            RunnerError::AtCapacity { .. } => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "at_capacity", message)
            }
            RunnerError::Journal(_) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "journal_unavailable",
                message,
            ),
            RunnerError::Forward(_) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "owner_unavailable",
                message,
            ),
            RunnerError::Job(e) => e.into(),
            RunnerError::Corrupt { .. } => ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "corrupt_history",
                message,
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::{JobId, JobStatus};

    #[test]
    fn batch_entries_keep_the_code_of_their_problem() {
        let error: ApiError = ValidationError::InBatch {
            index: 2,
            source: Box::new(ValidationError::EmptyKind),
        }
        .into();
        assert_eq!(error.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(error.code, "empty_kind");
        assert!(error.message.contains("job 2"), "{}", error.message);
    }

    #[test]
    fn workflow_refusals_are_400s_naming_the_keys() {
        let error: ApiError = RunnerError::Invalid(WorkflowError::Cycle {
            keys: vec!["a".into(), "b".into()],
        })
        .into();
        assert_eq!(error.status, StatusCode::BAD_REQUEST);
        assert_eq!(error.code, "cycle");
        assert!(error.message.contains("`a` -> `b`"), "{}", error.message);
    }

    #[test]
    fn backend_errors_map_to_client_or_availability_statuses() {
        let id = JobId::new_random();
        let conflict: ApiError = BackendError::InvalidState {
            id,
            status: JobStatus::Running,
            action: "cancel",
        }
        .into();
        assert_eq!(conflict.status, StatusCode::CONFLICT);
        let missing: ApiError = BackendError::NotFound(id).into();
        assert_eq!(missing.status, StatusCode::NOT_FOUND);
        let down: ApiError = BackendError::Unavailable("connection refused".into()).into();
        assert_eq!(down.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            down.body()["error"]["code"],
            serde_json::json!("backend_unavailable")
        );
    }
}
