//! Workflows: DAGs of jobs where a job is queued once all its dependencies
//! completed, with a per-workflow failure policy and a replayable history.
//!
//! This module is the pure core: validation at submission (duplicate keys,
//! unknown dependencies, self-dependencies and cycles are refused with the
//! offending keys), the [`Workflow`] state machine (O(V+E): adjacency lists
//! and in-degree counts), its event history and [`replay`]. It does no I/O
//! and reads no clock; the engine's async shell enqueues the jobs it names
//! as ready and feeds back what workers report.
//!
//! [`WorkflowRunner`] is the async shell that runs workflows on the job
//! engine (journal, queue, job events); [`WorkflowJournal`] keeps their
//! records and [`WorkflowRouting`] sends work to the owner of a partition.
//!
//! Bounds (see [`WorkflowLimits`]): at most 100,000 jobs per workflow,
//! 1,000 dependencies per job, 1,000,000 dependencies in total, 256-byte
//! keys and names, 4,096-byte error messages, and each job's `max_retries`
//! retries. The history therefore holds at most a few events per job plus
//! one per allowed retry.

mod engine;
mod error;
mod event;
mod graph;
mod journal;
mod redb_journal;
mod replay;
mod routing;
mod runner;
mod spec;
mod state;

pub use engine::{Transition, Workflow, WorkflowSummary};
pub use error::{MissingDependency, ReplayError, TransitionError, WorkflowError};
pub use event::{EventKind, WorkflowEvent};
pub use journal::{
    is_workflow_end, JournalError, MemoryJournal, WorkflowJournal, WorkflowRecord,
    DEFAULT_MAX_FINISHED_WORKFLOWS,
};
pub use redb_journal::RedbJournal;
pub use replay::replay;
pub use routing::{ForwardError, WorkflowRouting};
pub use runner::{
    workflow_job_id, RunnerConfig, RunnerError, WorkflowRunner, DEFAULT_EVENT_BATCH,
    DEFAULT_MAX_LIVE_JOBS, DEFAULT_MAX_LIVE_WORKFLOWS, DEFAULT_READ_CONCURRENCY,
    DEFAULT_RECONCILE_INTERVAL, DEFAULT_RECONCILE_MAX_READS, ENQUEUE_CHUNK, ENQUEUE_QUEUE,
    META_WORKFLOW_ID, META_WORKFLOW_JOB, WAIT_POLL_INTERVAL,
};
pub use spec::{FailurePolicy, WorkflowId, WorkflowJobSpec, WorkflowLimits, WorkflowSpec};
pub use state::{JobCounts, JobRecord, JobState, WorkflowState, WorkflowStatus};
