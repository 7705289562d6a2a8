//! What a user submits to `POST /workflows`: the jobs of a DAG with their
//! dependencies and a failure policy, plus the bounds a submission must fit
//! in. Plain data with serde; checking it is `graph.rs`'s job.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::ValidationError;
use crate::job::{JobLimits, JobSpec};
use crate::workflow::error::WorkflowError;

/// Unique workflow id: a UUID v7, like [`crate::JobId`], so newer workflows
/// sort after older ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct WorkflowId(pub Uuid);

impl WorkflowId {
    /// A fresh id (UUID v7). The async shell calls this; the pure core never does.
    pub fn new_random() -> Self {
        WorkflowId(Uuid::now_v7())
    }
}

impl fmt::Display for WorkflowId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for WorkflowId {
    type Err = ValidationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s)
            .map(WorkflowId)
            .map_err(|e| ValidationError::InvalidId(format!("`{s}`: {e}")))
    }
}

/// What happens to the dependants of a job that failed terminally (after
/// the worker's own retries).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailurePolicy {
    /// Everything downstream of the failed job fails without running.
    #[default]
    FailDependants,
    /// Everything downstream of the failed job is marked skipped.
    SkipDependants,
    /// A failed dependency counts as finished: dependants still run once
    /// all their other dependencies finished too.
    Continue,
}

impl FailurePolicy {
    /// The name used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            FailurePolicy::FailDependants => "fail_dependants",
            FailurePolicy::SkipDependants => "skip_dependants",
            FailurePolicy::Continue => "continue",
        }
    }
}

/// One job of a workflow.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkflowJobSpec {
    /// The job's name inside the workflow; `depends_on` refers to it.
    pub key: String,
    /// The job to enqueue once it is ready.
    pub spec: JobSpec,
    /// Keys of the jobs that must finish first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
}

impl WorkflowJobSpec {
    /// A job `key` running `spec` after each of `depends_on`.
    pub fn new<I, S>(key: impl Into<String>, spec: JobSpec, depends_on: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        WorkflowJobSpec {
            key: key.into(),
            spec,
            depends_on: depends_on.into_iter().map(Into::into).collect(),
        }
    }
}

/// A DAG of jobs, as posted to `/workflows`:
///
/// ```json
/// { "name": "nightly",
///   "failure_policy": "skip_dependants",
///   "jobs": [ { "key": "extract", "spec": { "kind": "extract" } },
///             { "key": "load", "spec": { "kind": "load" }, "depends_on": ["extract"] } ] }
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkflowSpec {
    /// Assigned by the server when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<WorkflowId>,
    /// A label for humans.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The jobs, in any order.
    pub jobs: Vec<WorkflowJobSpec>,
    /// Defaults to [`FailurePolicy::FailDependants`].
    #[serde(default)]
    pub failure_policy: FailurePolicy,
}

impl WorkflowSpec {
    /// Decodes a spec from JSON; unknown fields, wrong types and malformed
    /// JSON become [`WorkflowError::Malformed`].
    pub fn from_json(bytes: &[u8]) -> Result<WorkflowSpec, WorkflowError> {
        serde_json::from_slice(bytes).map_err(|e| WorkflowError::Malformed(e.to_string()))
    }
}

/// Bounds a workflow must fit in. Defaults in brackets.
#[derive(Clone, Debug)]
pub struct WorkflowLimits {
    /// Most jobs in one workflow [100,000].
    pub max_jobs: usize,
    /// Most entries in one job's `depends_on` [1,000].
    pub max_dependencies_per_job: usize,
    /// Most dependency edges in one workflow [1,000,000].
    pub max_edges: usize,
    /// Longest job key [256 bytes].
    pub max_key_len: usize,
    /// Longest workflow name [256 bytes].
    pub max_name_len: usize,
    /// Longest error message kept per failed job; longer ones are cut [4,096 bytes].
    pub max_error_len: usize,
    /// Bounds every job's spec is checked against ([`JobLimits::default`]).
    pub job: JobLimits,
}

impl Default for WorkflowLimits {
    fn default() -> Self {
        WorkflowLimits {
            max_jobs: 100_000,
            max_dependencies_per_job: 1_000,
            max_edges: 1_000_000,
            max_key_len: 256,
            max_name_len: 256,
            max_error_len: 4_096,
            job: JobLimits::default(),
        }
    }
}
