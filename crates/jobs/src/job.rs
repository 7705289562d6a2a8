//! The job model: what a client submits (`JobSpec`), what the engine stores
//! and hands to workers (`Job`), and the validation that turns one into the
//! other. Pure: the id, the clock and the partition come in as arguments.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::ValidationError;

/// Unique job id: a UUID v7 (millisecond timestamp, then random bits), so
/// ids of new jobs sort after older ones and stores keyed by id append
/// instead of writing all over their B-trees.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JobId(pub Uuid);

impl JobId {
    /// A fresh id (UUID v7, time-ordered, 74 random bits).
    pub fn new_random() -> Self {
        JobId(Uuid::now_v7())
    }

    /// The id as a 128-bit integer (the embedded store's key).
    pub fn as_u128(&self) -> u128 {
        self.0.as_u128()
    }

    /// The inverse of [`JobId::as_u128`].
    pub fn from_u128(value: u128) -> Self {
        JobId(Uuid::from_u128(value))
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for JobId {
    type Err = ValidationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s)
            .map(JobId)
            .map_err(|e| ValidationError::InvalidId(format!("`{s}`: {e}")))
    }
}

/// Job priority. Workers always take the highest non-empty priority first:
/// critical > high > medium > low.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    /// Served before everything else.
    Critical,
    /// Served before medium and low.
    High,
    /// The default.
    #[default]
    Medium,
    /// Served only when nothing else waits.
    Low,
}

impl Priority {
    /// All priorities, highest first (the order workers serve them in).
    pub const ALL: [Priority; 4] = [
        Priority::Critical,
        Priority::High,
        Priority::Medium,
        Priority::Low,
    ];

    /// 0 for critical up to 3 for low; an index into per-priority arrays.
    pub fn rank(self) -> usize {
        match self {
            Priority::Critical => 0,
            Priority::High => 1,
            Priority::Medium => 2,
            Priority::Low => 3,
        }
    }

    /// The inverse of [`Priority::rank`].
    pub fn from_rank(rank: usize) -> Option<Priority> {
        Priority::ALL.get(rank).copied()
    }

    /// The lowercase name used on the wire and in metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Critical => "critical",
            Priority::High => "high",
            Priority::Medium => "medium",
            Priority::Low => "low",
        }
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Priority {
    type Err = ValidationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Priority::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| ValidationError::UnknownPriority(s.to_string()))
    }
}

/// Where a job is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    /// Ready to run, waiting for a worker.
    Queued,
    /// Waiting for its `run_at` time (a delayed job).
    Scheduled,
    /// Leased by a worker.
    Running,
    /// Finished successfully (terminal).
    Completed,
    /// The last attempt failed; a retry is scheduled at `run_at`.
    Failed,
    /// Retries exhausted or poison; waits in the dead letters for a manual retry.
    Dead,
    /// Cancelled before it ran (terminal).
    Cancelled,
}

impl JobStatus {
    /// All statuses.
    pub const ALL: [JobStatus; 7] = [
        JobStatus::Queued,
        JobStatus::Scheduled,
        JobStatus::Running,
        JobStatus::Completed,
        JobStatus::Failed,
        JobStatus::Dead,
        JobStatus::Cancelled,
    ];

    /// The lowercase name used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Scheduled => "scheduled",
            JobStatus::Running => "running",
            JobStatus::Completed => "completed",
            JobStatus::Failed => "failed",
            JobStatus::Dead => "dead",
            JobStatus::Cancelled => "cancelled",
        }
    }

    /// Completed and cancelled jobs never change again (dead ones can be retried).
    pub fn is_terminal(self) -> bool {
        matches!(self, JobStatus::Completed | JobStatus::Cancelled)
    }
}

impl fmt::Display for JobStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for JobStatus {
    type Err = ValidationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        JobStatus::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| ValidationError::UnknownStatus(s.to_string()))
    }
}

/// Bounds applied to every submission. Defaults in brackets.
#[derive(Clone, Debug)]
pub struct JobLimits {
    /// Largest JSON-encoded payload [1 MiB].
    pub max_payload_bytes: usize,
    /// Longest `kind` [128 bytes].
    pub max_kind_len: usize,
    /// Most metadata entries [64].
    pub max_metadata_entries: usize,
    /// Longest metadata key or value [1024 bytes].
    pub max_metadata_value_len: usize,
    /// Longest idempotency or partition key [256 bytes].
    pub max_key_len: usize,
    /// Largest `max_retries` [100].
    pub max_retries: u32,
    /// Longest per-job timeout [24 h].
    pub max_timeout_ms: u64,
    /// Most jobs in one batch submission [10,000].
    pub max_batch: usize,
}

impl Default for JobLimits {
    fn default() -> Self {
        JobLimits {
            max_payload_bytes: 1024 * 1024,
            max_kind_len: 128,
            max_metadata_entries: 64,
            max_metadata_value_len: 1024,
            max_key_len: 256,
            max_retries: 100,
            max_timeout_ms: 24 * 60 * 60 * 1000,
            max_batch: 10_000,
        }
    }
}

/// Retries when a spec does not say [3]: up to 4 runs in total.
pub const DEFAULT_MAX_RETRIES: u32 = 3;
/// Per-job timeout when a spec does not say [30 s].
pub const DEFAULT_TIMEOUT_MS: u64 = 30_000;

/// What a client submits. Unknown fields and unknown priorities are rejected
/// when decoding; the rest is checked by [`JobSpec::validate`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    /// Which handler runs it; must not be empty.
    pub kind: String,
    /// Any JSON; at most `max_payload_bytes` once encoded.
    #[serde(default)]
    pub payload: serde_json::Value,
    /// Defaults to medium.
    #[serde(default)]
    pub priority: Priority,
    /// Earliest start, ms since the Unix epoch; absent or in the past means now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_at: Option<u64>,
    /// Retries after the first failure (defaults to [`DEFAULT_MAX_RETRIES`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_retries: Option<u32>,
    /// Per-attempt timeout in ms (defaults to [`DEFAULT_TIMEOUT_MS`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// A second submission with the same key returns the first job's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// Chooses the partition instead of the job id (jobs with one key share a partition).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition_key: Option<String>,
    /// Free-form string labels, returned with the job.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
}

impl JobSpec {
    /// A spec of `kind` with `payload` and every other field defaulted.
    pub fn new(kind: impl Into<String>, payload: serde_json::Value) -> Self {
        JobSpec {
            kind: kind.into(),
            payload,
            ..JobSpec::default()
        }
    }

    /// Sets the priority.
    pub fn priority(mut self, priority: Priority) -> Self {
        self.priority = priority;
        self
    }

    /// Sets the earliest start (ms since the epoch).
    pub fn run_at(mut self, run_at_ms: u64) -> Self {
        self.run_at = Some(run_at_ms);
        self
    }

    /// Sets the number of retries.
    pub fn max_retries(mut self, retries: u32) -> Self {
        self.max_retries = Some(retries);
        self
    }

    /// Sets the per-attempt timeout.
    pub fn timeout_ms(mut self, timeout_ms: u64) -> Self {
        self.timeout_ms = Some(timeout_ms);
        self
    }

    /// Sets the idempotency key.
    pub fn idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }

    /// Decodes a spec from JSON; an unknown priority or field, a wrong type
    /// or malformed JSON becomes [`ValidationError::Malformed`] naming it.
    pub fn from_json(bytes: &[u8]) -> Result<JobSpec, ValidationError> {
        serde_json::from_slice(bytes).map_err(|e| ValidationError::Malformed(e.to_string()))
    }

    /// Checks the spec against `limits`; returns the encoded payload size.
    pub fn validate(&self, limits: &JobLimits) -> Result<usize, ValidationError> {
        if self.kind.trim().is_empty() {
            return Err(ValidationError::EmptyKind);
        }
        if self.kind.len() > limits.max_kind_len {
            return Err(ValidationError::KindTooLong {
                len: self.kind.len(),
                max: limits.max_kind_len,
            });
        }
        let payload_size = serde_json::to_vec(&self.payload)
            .map_err(|e| ValidationError::Malformed(e.to_string()))?
            .len();
        if payload_size > limits.max_payload_bytes {
            return Err(ValidationError::PayloadTooLarge {
                size: payload_size,
                max: limits.max_payload_bytes,
            });
        }
        if let Some(retries) = self.max_retries {
            if retries > limits.max_retries {
                return Err(ValidationError::TooManyRetries {
                    value: retries,
                    max: limits.max_retries,
                });
            }
        }
        if let Some(timeout) = self.timeout_ms {
            if timeout == 0 || timeout > limits.max_timeout_ms {
                return Err(ValidationError::TimeoutOutOfRange {
                    value: timeout,
                    max: limits.max_timeout_ms,
                });
            }
        }
        for (name, key) in [
            ("idempotency_key", &self.idempotency_key),
            ("partition_key", &self.partition_key),
        ] {
            if let Some(key) = key {
                if key.is_empty() || key.len() > limits.max_key_len {
                    return Err(ValidationError::BadKey {
                        field: name,
                        len: key.len(),
                        max: limits.max_key_len,
                    });
                }
            }
        }
        if self.metadata.len() > limits.max_metadata_entries {
            return Err(ValidationError::TooMuchMetadata {
                entries: self.metadata.len(),
                max: limits.max_metadata_entries,
            });
        }
        if let Some((k, _)) = self.metadata.iter().find(|(k, v)| {
            k.len() > limits.max_metadata_value_len || v.len() > limits.max_metadata_value_len
        }) {
            return Err(ValidationError::MetadataTooLong {
                key: k.chars().take(64).collect(),
                max: limits.max_metadata_value_len,
            });
        }
        Ok(payload_size)
    }

    /// Validates and builds the job: queued now, or scheduled when `run_at`
    /// lies in the future (a past `run_at` means now).
    pub fn into_job(
        self,
        id: JobId,
        partition: u32,
        now_ms: u64,
        limits: &JobLimits,
    ) -> Result<Job, ValidationError> {
        self.validate(limits)?;
        let run_at = self.run_at.unwrap_or(now_ms).max(now_ms);
        let status = if run_at > now_ms {
            JobStatus::Scheduled
        } else {
            JobStatus::Queued
        };
        Ok(Job {
            id,
            kind: self.kind,
            payload: self.payload,
            priority: self.priority,
            status,
            max_retries: self.max_retries.unwrap_or(DEFAULT_MAX_RETRIES),
            attempts: 0,
            deliveries: 0,
            created_at: now_ms,
            run_at,
            timeout_ms: self.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS),
            metadata: self.metadata,
            idempotency_key: self.idempotency_key,
            partition,
            started_at: None,
            finished_at: None,
            last_error: None,
            result: None,
            progress: None,
        })
    }
}

/// A job as stored and as handed to a worker.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Job {
    /// Unique id.
    pub id: JobId,
    /// Handler name.
    pub kind: String,
    /// The submitted JSON payload.
    pub payload: serde_json::Value,
    /// Priority.
    pub priority: Priority,
    /// Current status.
    pub status: JobStatus,
    /// Retries allowed after the first failed attempt.
    pub max_retries: u32,
    /// Attempts that finished (completed, failed or timed out).
    pub attempts: u32,
    /// Times the job was handed to a worker (includes attempts whose worker died).
    pub deliveries: u32,
    /// Submission time, ms since the epoch.
    pub created_at: u64,
    /// Earliest (next) start, ms since the epoch.
    pub run_at: u64,
    /// Per-attempt timeout in ms.
    pub timeout_ms: u64,
    /// Client labels.
    pub metadata: BTreeMap<String, String>,
    /// Deduplication key, if any.
    pub idempotency_key: Option<String>,
    /// Partition (hash of the id or partition key, mod P).
    pub partition: u32,
    /// Start of the current or last attempt.
    pub started_at: Option<u64>,
    /// When it completed, died or was cancelled.
    pub finished_at: Option<u64>,
    /// Error of the last failed attempt.
    pub last_error: Option<String>,
    /// Handler output of a completed job.
    pub result: Option<serde_json::Value>,
    /// Last progress report of a running job, 0..=100.
    pub progress: Option<u8>,
}
