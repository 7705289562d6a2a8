//! The workflow state machine: takes "job started / completed / failed"
//! and answers which jobs became ready, failed or were skipped, recording
//! every change as an event. Pure and synchronous: no I/O, no clock (every
//! call takes the time), so the async shell that owns a workflow's
//! partition can drive it and persist its events however it likes.

use serde::{Deserialize, Serialize};

use crate::job::{JobSpec, DEFAULT_MAX_RETRIES};
use crate::workflow::error::{TransitionError, WorkflowError};
use crate::workflow::event::{EventKind, WorkflowEvent};
use crate::workflow::graph::Graph;
use crate::workflow::spec::{FailurePolicy, WorkflowId, WorkflowLimits, WorkflowSpec};
use crate::workflow::state::{
    Header, JobCounts, JobRecord, JobState, WorkflowState, WorkflowStatus,
};

/// What a terminal failure changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Transition {
    /// Jobs that became ready and must be enqueued (`continue` policy only).
    pub ready: Vec<String>,
    /// Jobs downstream that failed or were skipped with it, by policy.
    pub failed_or_skipped: Vec<String>,
}

/// What `GET /workflows/{id}` returns.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkflowSummary {
    /// The workflow id, if the submitter or server assigned one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<WorkflowId>,
    /// Its name, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Its failure policy.
    pub failure_policy: FailurePolicy,
    /// Status, counts and per-job states.
    #[serde(flatten)]
    pub state: WorkflowState,
}

/// A running workflow: a validated DAG of jobs and where each job is.
///
/// Built with adjacency lists and in-degree counts: creating a workflow and
/// driving it to the end costs O(V+E) in total. Every change appends a
/// numbered [`WorkflowEvent`] to [`Workflow::history`], from which
/// [`crate::workflow::replay`] rebuilds any past state.
///
/// ```
/// use ironforge_jobs::workflow::{Workflow, WorkflowSpec, WorkflowJobSpec, WorkflowStatus};
/// use ironforge_jobs::JobSpec;
///
/// // A fans out to B and C, which fan in to D.
/// let job = |key: &str, deps: &[&str]| {
///     WorkflowJobSpec::new(key, JobSpec::new("noop", serde_json::Value::Null), deps.to_vec())
/// };
/// let spec = WorkflowSpec {
///     jobs: vec![job("a", &[]), job("b", &["a"]), job("c", &["a"]), job("d", &["b", "c"])],
///     ..WorkflowSpec::default()
/// };
/// let (mut workflow, ready) = Workflow::new(spec, 1_000)?;
/// assert_eq!(ready, ["a"]);
///
/// workflow.on_started("a", 1_001)?;
/// assert_eq!(workflow.on_completed("a", 1_002)?, ["b", "c"]);
/// assert!(workflow.on_completed("b", 1_003)?.is_empty());
/// assert_eq!(workflow.on_completed("c", 1_004)?, ["d"]);
/// workflow.on_completed("d", 1_005)?;
/// assert_eq!(workflow.status(), WorkflowStatus::Completed);
///
/// // The history rebuilds any earlier state.
/// let replayed = ironforge_jobs::workflow::replay(workflow.spec(), workflow.history(), u64::MAX)?;
/// assert_eq!(replayed, workflow.state());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct Workflow {
    pub(super) spec: WorkflowSpec,
    pub(super) graph: Graph,
    /// Dependencies of each job that have not finished yet.
    pub(super) remaining: Vec<usize>,
    pub(super) records: Vec<JobRecord>,
    pub(super) header: Header,
    pub(super) history: Vec<WorkflowEvent>,
    pub(super) max_error_len: usize,
}

impl Workflow {
    /// Validates `spec` with the default [`WorkflowLimits`] and starts it at
    /// `at` (ms since the epoch). Returns the workflow and the jobs that are
    /// ready at once (those without dependencies), in submission order.
    pub fn new(spec: WorkflowSpec, at: u64) -> Result<(Workflow, Vec<String>), WorkflowError> {
        Workflow::with_limits(spec, &WorkflowLimits::default(), at)
    }

    /// [`Workflow::new`] with explicit limits.
    pub fn with_limits(
        spec: WorkflowSpec,
        limits: &WorkflowLimits,
        at: u64,
    ) -> Result<(Workflow, Vec<String>), WorkflowError> {
        let mut workflow = Workflow::from_validated(spec, limits)?;
        workflow.emit(None, EventKind::Created, at, None);
        let roots: Vec<usize> = (0..workflow.records.len())
            .filter(|&i| workflow.remaining[i] == 0)
            .collect();
        let mut ready = Vec::with_capacity(roots.len());
        for job in roots {
            workflow.emit(Some(job), EventKind::Queued, at, None);
            ready.push(workflow.spec.jobs[job].key.clone());
        }
        Ok((workflow, ready))
    }

    /// A validated workflow with every job pending and no history.
    pub(super) fn from_validated(
        spec: WorkflowSpec,
        limits: &WorkflowLimits,
    ) -> Result<Workflow, WorkflowError> {
        let graph = Graph::build(&spec, limits)?;
        let jobs = spec.jobs.len();
        Ok(Workflow {
            remaining: graph.in_degree.clone(),
            records: vec![JobRecord::default(); jobs],
            header: Header::new(jobs),
            history: Vec::new(),
            max_error_len: limits.max_error_len,
            graph,
            spec,
        })
    }

    /// The submitted spec.
    pub fn spec(&self) -> &WorkflowSpec {
        &self.spec
    }

    /// The spec of job `key`, to enqueue it once it is ready.
    pub fn job_spec(&self, key: &str) -> Option<&JobSpec> {
        let &job = self.graph.index.get(key)?;
        self.spec.jobs.get(job).map(|j| &j.spec)
    }

    /// Overall status.
    pub fn status(&self) -> WorkflowStatus {
        self.header.status()
    }

    /// State of job `key`.
    pub fn job_state(&self, key: &str) -> Option<JobState> {
        let &job = self.graph.index.get(key)?;
        self.records.get(job).map(|r| r.state)
    }

    /// The record of job `key` (state, retries, last error, times).
    pub fn job_record(&self, key: &str) -> Option<&JobRecord> {
        let &job = self.graph.index.get(key)?;
        self.records.get(job)
    }

    /// How many jobs are in each state (O(1)).
    pub fn counts(&self) -> JobCounts {
        self.header.counts
    }

    /// Every event so far, oldest first.
    pub fn history(&self) -> &[WorkflowEvent] {
        &self.history
    }

    /// Status, counts and every job's record (O(V log V): it copies).
    pub fn state(&self) -> WorkflowState {
        WorkflowState {
            seq: self.header.seq,
            status: self.header.status(),
            created_at: self.header.created_at,
            finished_at: self.header.finished_at,
            counts: self.header.counts,
            jobs: self
                .spec
                .jobs
                .iter()
                .zip(&self.records)
                .map(|(job, record)| (job.key.clone(), record.clone()))
                .collect(),
        }
    }

    /// What `GET /workflows/{id}` shows.
    pub fn summary(&self) -> WorkflowSummary {
        WorkflowSummary {
            id: self.spec.id,
            name: self.spec.name.clone(),
            failure_policy: self.spec.failure_policy,
            state: self.state(),
        }
    }

    /// A worker started job `key`. Starting a running job again (a
    /// redelivery) changes nothing.
    pub fn on_started(&mut self, key: &str, at: u64) -> Result<(), TransitionError> {
        let job = self.lookup(key)?;
        match self.records[job].state {
            JobState::Queued => {
                self.emit(Some(job), EventKind::Started, at, None);
                Ok(())
            }
            JobState::Running => Ok(()),
            from => Err(invalid(key, from, EventKind::Started)),
        }
    }

    /// Job `key` completed; returns the jobs that became ready, in
    /// submission order. Completing a job twice (a redelivery) changes nothing.
    pub fn on_completed(&mut self, key: &str, at: u64) -> Result<Vec<String>, TransitionError> {
        let job = self.lookup(key)?;
        let mut ready = Vec::new();
        match self.records[job].state {
            JobState::Queued | JobState::Running => {
                self.emit(Some(job), EventKind::Completed, at, None);
                self.release_dependants(job, at, &mut ready);
                self.finish_if_done(at);
                Ok(ready)
            }
            JobState::Completed => Ok(ready),
            from => Err(invalid(key, from, EventKind::Completed)),
        }
    }

    /// An attempt of job `key` failed and the worker will try again: the
    /// job waits in the queue. Refused once the job's `max_retries` are used.
    pub fn on_retried(&mut self, key: &str, at: u64, error: &str) -> Result<(), TransitionError> {
        let job = self.lookup(key)?;
        let record = &self.records[job];
        if !matches!(record.state, JobState::Queued | JobState::Running) {
            return Err(invalid(key, record.state, EventKind::Retried));
        }
        let max = self.spec.jobs[job]
            .spec
            .max_retries
            .unwrap_or(DEFAULT_MAX_RETRIES);
        if record.retries >= max {
            return Err(TransitionError::RetriesExhausted {
                key: key.to_string(),
                max,
            });
        }
        let error = self.cut(error);
        self.emit(Some(job), EventKind::Retried, at, Some(error));
        Ok(())
    }

    /// Job `key` failed for good (the worker's retries are behind it). Its
    /// dependants fail, are skipped, or still run, by the failure policy.
    /// Failing a failed job again (a redelivery) changes nothing.
    pub fn on_failed(
        &mut self,
        key: &str,
        at: u64,
        error: &str,
    ) -> Result<Transition, TransitionError> {
        let job = self.lookup(key)?;
        let mut transition = Transition::default();
        match self.records[job].state {
            JobState::Queued | JobState::Running => {}
            JobState::Failed => return Ok(transition),
            from => return Err(invalid(key, from, EventKind::Failed)),
        }
        let error = self.cut(error);
        self.emit(Some(job), EventKind::Failed, at, Some(error));
        match self.spec.failure_policy {
            FailurePolicy::Continue => self.release_dependants(job, at, &mut transition.ready),
            FailurePolicy::FailDependants => {
                self.doom_downstream(job, at, EventKind::Failed, &mut transition)
            }
            FailurePolicy::SkipDependants => {
                self.doom_downstream(job, at, EventKind::Skipped, &mut transition)
            }
        }
        self.finish_if_done(at);
        Ok(transition)
    }

    /// Cancels every job that has not started (pending or queued) and
    /// returns their keys; running jobs may still finish, but release
    /// nothing. Cancelling a finished or cancelled workflow changes nothing.
    pub fn cancel(&mut self, at: u64) -> Vec<String> {
        if self.header.status() != WorkflowStatus::Running {
            return Vec::new();
        }
        let mut cancelled = Vec::new();
        for job in 0..self.records.len() {
            if matches!(
                self.records[job].state,
                JobState::Pending | JobState::Queued
            ) {
                self.emit(Some(job), EventKind::Cancelled, at, None);
                cancelled.push(self.spec.jobs[job].key.clone());
            }
        }
        self.emit(None, EventKind::Cancelled, at, None);
        cancelled
    }

    fn lookup(&self, key: &str) -> Result<usize, TransitionError> {
        self.graph
            .index
            .get(key)
            .copied()
            .ok_or_else(|| TransitionError::UnknownJob(key.to_string()))
    }

    /// Counts `job` as finished for each dependant; queues those left with
    /// nothing to wait for.
    fn release_dependants(&mut self, job: usize, at: u64, ready: &mut Vec<String>) {
        let graph = &self.graph;
        let mut newly_ready = Vec::new();
        for &dependant in graph.dependants_of(job) {
            let remaining = &mut self.remaining[dependant];
            *remaining = remaining.saturating_sub(1);
            if *remaining == 0 && self.records[dependant].state == JobState::Pending {
                newly_ready.push(dependant);
            }
        }
        for dependant in newly_ready {
            self.emit(Some(dependant), EventKind::Queued, at, None);
            ready.push(self.spec.jobs[dependant].key.clone());
        }
    }

    /// Marks everything downstream of `failed` that has not run as `kind`
    /// (failed or skipped), breadth first.
    fn doom_downstream(
        &mut self,
        failed: usize,
        at: u64,
        kind: EventKind,
        transition: &mut Transition,
    ) {
        let reason = format!("dependency `{}` failed", self.spec.jobs[failed].key);
        let mut frontier = vec![failed];
        let mut next = 0;
        while let Some(&job) = frontier.get(next) {
            next += 1;
            let doomed: Vec<usize> = self
                .graph
                .dependants_of(job)
                .iter()
                .copied()
                .filter(|&d| self.records[d].state == JobState::Pending)
                .collect();
            for dependant in doomed {
                // A diamond reaches a job twice; its state changed the first time.
                if self.records[dependant].state != JobState::Pending {
                    continue;
                }
                self.emit(Some(dependant), kind, at, Some(reason.clone()));
                transition
                    .failed_or_skipped
                    .push(self.spec.jobs[dependant].key.clone());
                frontier.push(dependant);
            }
        }
    }

    /// Records the end of the workflow once its last job finished.
    fn finish_if_done(&mut self, at: u64) {
        if self.header.finished_at.is_some() {
            return;
        }
        match self.header.status() {
            WorkflowStatus::Completed => self.emit(None, EventKind::Completed, at, None),
            WorkflowStatus::Failed => self.emit(None, EventKind::Failed, at, None),
            WorkflowStatus::Running | WorkflowStatus::Cancelled => {}
        }
    }

    /// Appends an event and folds it into the state; the only place state changes.
    fn emit(&mut self, job: Option<usize>, kind: EventKind, at: u64, error: Option<String>) {
        let event = WorkflowEvent {
            seq: self.header.seq + 1,
            at,
            key: job.map(|j| self.spec.jobs[j].key.clone()),
            kind,
            error,
        };
        match job {
            Some(j) => self.header.apply_job_event(&mut self.records[j], &event),
            None => self.header.apply_workflow_event(&event),
        }
        self.history.push(event);
    }

    /// Cuts an error message to `max_error_len` bytes on a char boundary.
    fn cut(&self, error: &str) -> String {
        if error.len() <= self.max_error_len {
            return error.to_string();
        }
        let mut end = self.max_error_len;
        while !error.is_char_boundary(end) {
            end -= 1;
        }
        error[..end].to_string()
    }
}

fn invalid(key: &str, from: JobState, event: EventKind) -> TransitionError {
    TransitionError::InvalidTransition {
        key: key.to_string(),
        from,
        event,
    }
}
