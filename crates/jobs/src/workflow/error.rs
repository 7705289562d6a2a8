//! Typed errors of the workflow core, one enum per caller: a submission the
//! engine refuses (`WorkflowError`, a 400 naming the offending keys), a
//! state change that does not fit the job's state (`TransitionError`), and a
//! history that cannot be replayed (`ReplayError`).

use std::fmt;

use thiserror::Error;

use crate::error::ValidationError;
use crate::workflow::event::EventKind;
use crate::workflow::state::JobState;

/// A job that depends on a key no job of the workflow has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingDependency {
    /// The job that names the dependency.
    pub key: String,
    /// The key that does not exist.
    pub dependency: String,
}

impl fmt::Display for MissingDependency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` -> `{}`", self.key, self.dependency)
    }
}

/// A workflow submission the engine refuses; always the caller's to fix.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum WorkflowError {
    /// Malformed JSON, a wrong field type or an unknown field.
    #[error("invalid workflow: {0}")]
    Malformed(String),
    /// No jobs at all.
    #[error("a workflow needs at least one job")]
    Empty,
    /// More jobs than `max_jobs`.
    #[error("the workflow has {len} jobs, the limit is {max}")]
    TooManyJobs {
        /// Jobs submitted.
        len: usize,
        /// Limit.
        max: usize,
    },
    /// The name is longer than `max_name_len`.
    #[error("the workflow name is {len} bytes, the limit is {max}")]
    NameTooLong {
        /// Actual length.
        len: usize,
        /// Limit.
        max: usize,
    },
    /// A key is empty or longer than `max_key_len`.
    #[error("job key `{key}` is {len} bytes, it must be between 1 and {max}")]
    BadKey {
        /// The key (cut to 64 characters).
        key: String,
        /// Its length.
        len: usize,
        /// Limit.
        max: usize,
    },
    /// One job names more dependencies than `max_dependencies_per_job`.
    #[error("job `{key}` has {len} dependencies, the limit is {max}")]
    TooManyDependencies {
        /// The job.
        key: String,
        /// Its dependency count.
        len: usize,
        /// Limit.
        max: usize,
    },
    /// The workflow has more dependency edges than `max_edges`.
    #[error("the workflow has more than {max} dependencies in total")]
    TooManyEdges {
        /// Limit.
        max: usize,
    },
    /// A job's spec is invalid.
    #[error("job `{key}`: {source}")]
    InvalidJob {
        /// The job.
        key: String,
        /// What is wrong with its spec.
        #[source]
        source: ValidationError,
    },
    /// Several jobs share a key.
    #[error("duplicate job keys: {}", list(keys))]
    DuplicateKeys {
        /// Each duplicated key once, sorted.
        keys: Vec<String>,
    },
    /// Jobs depend on keys that do not exist.
    #[error("unknown dependencies: {}", list(missing))]
    UnknownDependencies {
        /// Each job and the key it names that does not exist.
        missing: Vec<MissingDependency>,
    },
    /// Jobs depend on themselves.
    #[error("jobs depend on themselves: {}", list(keys))]
    SelfDependency {
        /// The jobs, in submission order.
        keys: Vec<String>,
    },
    /// A job names the same dependency twice.
    #[error("job `{key}` names dependency `{dependency}` more than once")]
    DuplicateDependency {
        /// The job.
        key: String,
        /// The repeated dependency.
        dependency: String,
    },
    /// The dependencies form a cycle.
    #[error("dependency cycle: {} -> `{}`", list_arrows(keys), keys.first().map(String::as_str).unwrap_or(""))]
    Cycle {
        /// One cycle: each key depends on the next, the last on the first.
        /// Starts at the smallest key.
        keys: Vec<String>,
    },
}

/// A state change that does not fit the job's current state.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TransitionError {
    /// No job of the workflow has that key.
    #[error("workflow has no job `{0}`")]
    UnknownJob(String),
    /// The job's state does not allow the change (e.g. completing a job that
    /// was cancelled or never queued).
    #[error("job `{key}` is {from}, it cannot become {event}")]
    InvalidTransition {
        /// The job.
        key: String,
        /// Its state.
        from: JobState,
        /// The change that was asked for.
        event: EventKind,
    },
    /// The job already used every retry its spec allows.
    #[error("job `{key}` already retried {max} times, its limit")]
    RetriesExhausted {
        /// The job.
        key: String,
        /// Its `max_retries`.
        max: u32,
    },
}

/// A history that does not describe a run of the given workflow.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ReplayError {
    /// Sequence numbers must run 1, 2, 3, ... without gaps.
    #[error("event out of order: expected seq {expected}, found {found}")]
    OutOfOrder {
        /// The next seq expected.
        expected: u64,
        /// The seq found.
        found: u64,
    },
    /// An event names a key the workflow does not have.
    #[error("event {seq} names unknown job `{key}`")]
    UnknownJob {
        /// The event.
        seq: u64,
        /// The key.
        key: String,
    },
    /// A job event without a key, or a `created` event with one.
    #[error("event {seq} ({kind}) has a missing or unexpected job key")]
    BadKey {
        /// The event.
        seq: u64,
        /// Its kind.
        kind: EventKind,
    },
    /// The spec itself is invalid, so there is nothing to replay against.
    #[error(transparent)]
    Spec(#[from] WorkflowError),
    /// Rebuilding a live workflow found an impossible change.
    #[error("event {seq}: {source}")]
    Transition {
        /// The event.
        seq: u64,
        /// What did not fit.
        #[source]
        source: TransitionError,
    },
}

/// At most this many offending items are spelled out in an error message
/// (the error value itself carries all of them).
const LISTED_IN_MESSAGE: usize = 10;

fn list<T: fmt::Display>(items: &[T]) -> String {
    let mut out: Vec<String> = items
        .iter()
        .take(LISTED_IN_MESSAGE)
        .map(|item| {
            let text = item.to_string();
            if text.starts_with('`') {
                text
            } else {
                format!("`{text}`")
            }
        })
        .collect();
    if items.len() > LISTED_IN_MESSAGE {
        out.push(format!("and {} more", items.len() - LISTED_IN_MESSAGE));
    }
    out.join(", ")
}

fn list_arrows(keys: &[String]) -> String {
    let mut out: Vec<String> = keys
        .iter()
        .take(LISTED_IN_MESSAGE)
        .map(|k| format!("`{k}`"))
        .collect();
    if keys.len() > LISTED_IN_MESSAGE {
        out.push(format!("({} more)", keys.len() - LISTED_IN_MESSAGE));
    }
    out.join(" -> ")
}
