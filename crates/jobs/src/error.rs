//! Typed errors of the job engine: bad input (`ValidationError`, a 4xx for
//! the HTTP layer), backend trouble (`BackendError`), and the union a
//! [`crate::Client`] returns (`JobError`).

use thiserror::Error;

use crate::job::{JobId, JobStatus};

/// A submission or request the engine refuses; always the caller's to fix.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ValidationError {
    /// `kind` is empty or blank.
    #[error("job kind must not be empty")]
    EmptyKind,
    /// `kind` exceeds the limit.
    #[error("job kind is {len} bytes, the limit is {max}")]
    KindTooLong {
        /// Actual length.
        len: usize,
        /// Limit.
        max: usize,
    },
    /// The JSON payload exceeds the limit.
    #[error("payload is {size} bytes once encoded, the limit is {max} bytes")]
    PayloadTooLarge {
        /// Encoded size.
        size: usize,
        /// Limit.
        max: usize,
    },
    /// `max_retries` exceeds the limit.
    #[error("max_retries is {value}, the limit is {max}")]
    TooManyRetries {
        /// Requested value.
        value: u32,
        /// Limit.
        max: u32,
    },
    /// `timeout_ms` is 0 or exceeds the limit.
    #[error("timeout_ms is {value}, it must be between 1 and {max}")]
    TimeoutOutOfRange {
        /// Requested value.
        value: u64,
        /// Limit.
        max: u64,
    },
    /// An idempotency or partition key is empty or too long.
    #[error("{field} is {len} bytes, it must be between 1 and {max}")]
    BadKey {
        /// Which key.
        field: &'static str,
        /// Actual length.
        len: usize,
        /// Limit.
        max: usize,
    },
    /// Too many metadata entries.
    #[error("metadata has {entries} entries, the limit is {max}")]
    TooMuchMetadata {
        /// Actual count.
        entries: usize,
        /// Limit.
        max: usize,
    },
    /// A metadata key or value is too long.
    #[error("metadata entry `{key}` is longer than {max} bytes")]
    MetadataTooLong {
        /// The offending key (cut to 64 characters).
        key: String,
        /// Limit.
        max: usize,
    },
    /// A batch holds more jobs than allowed, or none.
    #[error("a batch must hold between 1 and {max} jobs, this one holds {len}")]
    BadBatchSize {
        /// Jobs in the batch.
        len: usize,
        /// Limit.
        max: usize,
    },
    /// One job of a batch is invalid.
    #[error("job {index} of the batch: {source}")]
    InBatch {
        /// Index of the job in the batch.
        index: usize,
        /// What is wrong with it.
        #[source]
        source: Box<ValidationError>,
    },
    /// Malformed JSON, a wrong field type, an unknown field or an unknown priority.
    #[error("invalid job: {0}")]
    Malformed(String),
    /// A priority name that does not exist.
    #[error("unknown priority `{0}`, expected one of critical, high, medium, low")]
    UnknownPriority(String),
    /// A status name that does not exist.
    #[error("unknown status `{0}`, expected one of queued, scheduled, running, completed, failed, dead, cancelled")]
    UnknownStatus(String),
    /// Not a job id.
    #[error("invalid job id {0}")]
    InvalidId(String),
    /// Progress must lie in 0..=100.
    #[error("progress {0} is out of range, expected 0..=100")]
    ProgressOutOfRange(u32),
}

/// A failure inside a queue backend.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BackendError {
    /// No job with that id.
    #[error("job {0} not found")]
    NotFound(JobId),
    /// The job exists but its status does not allow the action.
    #[error("cannot {action} job {id}: it is {status}")]
    InvalidState {
        /// The job.
        id: JobId,
        /// Its current status.
        status: JobStatus,
        /// What was attempted (`cancel`, `retry`).
        action: &'static str,
    },
    /// The backend holds as many live jobs as it is configured to.
    #[error("queue is full ({limit} live jobs); retry later or raise the limit")]
    QueueFull {
        /// The configured limit.
        limit: usize,
    },
    /// The store is unreachable for now (e.g. Redis down); retry later.
    #[error("backend unavailable: {0}")]
    Unavailable(String),
    /// The store failed (I/O, corruption, encoding).
    #[error("storage error: {0}")]
    Storage(String),
    /// The backend was shut down.
    #[error("backend is closed")]
    Closed,
}

/// What a [`crate::Client`] call can fail with.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum JobError {
    /// The request is invalid.
    #[error(transparent)]
    Validation(#[from] ValidationError),
    /// The backend failed or refused.
    #[error(transparent)]
    Backend(#[from] BackendError),
}
