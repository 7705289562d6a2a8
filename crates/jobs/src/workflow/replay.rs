//! Rebuilding workflow state from its history alone: [`replay`] answers
//! "what did it look like at seq N" (`ironforge workflow replay --until`),
//! and [`Workflow::restore`] turns a persisted history back into a live
//! workflow, e.g. on the node that takes over a partition.

use std::collections::HashMap;

use crate::workflow::engine::Workflow;
use crate::workflow::error::{ReplayError, WorkflowError};
use crate::workflow::event::{EventKind, WorkflowEvent};
use crate::workflow::spec::{FailurePolicy, WorkflowLimits, WorkflowSpec};
use crate::workflow::state::{Header, JobRecord, JobState, WorkflowState};

/// The state of the workflow `spec` after the events up to and including
/// `until_seq` (all of them for `u64::MAX`). Events must be numbered 1, 2,
/// 3, ... and name only keys of `spec`.
pub fn replay(
    spec: &WorkflowSpec,
    events: &[WorkflowEvent],
    until_seq: u64,
) -> Result<WorkflowState, ReplayError> {
    let mut index = HashMap::with_capacity(spec.jobs.len());
    for (i, job) in spec.jobs.iter().enumerate() {
        if index.insert(job.key.as_str(), i).is_some() {
            return Err(WorkflowError::DuplicateKeys {
                keys: vec![job.key.clone()],
            }
            .into());
        }
    }
    let mut header = Header::new(spec.jobs.len());
    let mut records = vec![JobRecord::default(); spec.jobs.len()];
    for event in events.iter().take_while(|e| e.seq <= until_seq) {
        fold(
            &mut header,
            &mut records,
            |key| index.get(key).copied(),
            event,
        )?;
    }
    Ok(WorkflowState {
        seq: header.seq,
        status: header.status(),
        created_at: header.created_at,
        finished_at: header.finished_at,
        counts: header.counts,
        jobs: spec
            .jobs
            .iter()
            .zip(records)
            .map(|(job, record)| (job.key.clone(), record))
            .collect(),
    })
}

impl Workflow {
    /// The live workflow that wrote `events` (its full history), ready to be
    /// driven on: jobs keep their states and dependants wait only for what
    /// has not finished. Returns the workflow and the jobs that are queued,
    /// which the caller should make sure are in the queue.
    pub fn restore(
        spec: WorkflowSpec,
        limits: &WorkflowLimits,
        events: Vec<WorkflowEvent>,
    ) -> Result<(Workflow, Vec<String>), ReplayError> {
        let mut workflow = Workflow::from_validated(spec, limits)?;
        for event in &events {
            let index = &workflow.graph.index;
            fold(
                &mut workflow.header,
                &mut workflow.records,
                |key| index.get(key).copied(),
                event,
            )?;
        }
        workflow.history = events;
        let releases_dependants = |state: JobState| {
            state == JobState::Completed
                || (state == JobState::Failed
                    && workflow.spec.failure_policy == FailurePolicy::Continue)
        };
        for job in 0..workflow.records.len() {
            if releases_dependants(workflow.records[job].state) {
                for &dependant in workflow.graph.dependants_of(job) {
                    workflow.remaining[dependant] = workflow.remaining[dependant].saturating_sub(1);
                }
            }
        }
        let queued = workflow
            .spec
            .jobs
            .iter()
            .zip(&workflow.records)
            .filter(|(_, record)| record.state == JobState::Queued)
            .map(|(job, _)| job.key.clone())
            .collect();
        Ok((workflow, queued))
    }
}

/// Checks one event's place and key, then folds it into the state.
fn fold(
    header: &mut Header,
    records: &mut [JobRecord],
    index_of: impl Fn(&str) -> Option<usize>,
    event: &WorkflowEvent,
) -> Result<(), ReplayError> {
    let expected = header.seq + 1;
    if event.seq != expected {
        return Err(ReplayError::OutOfOrder {
            expected,
            found: event.seq,
        });
    }
    let workflow_wide = matches!(
        event.kind,
        EventKind::Created | EventKind::Completed | EventKind::Failed | EventKind::Cancelled
    );
    match &event.key {
        None if workflow_wide => {
            header.apply_workflow_event(event);
            Ok(())
        }
        Some(key) if event.kind != EventKind::Created => {
            let job = index_of(key).ok_or_else(|| ReplayError::UnknownJob {
                seq: event.seq,
                key: key.clone(),
            })?;
            match records.get_mut(job) {
                Some(record) => {
                    header.apply_job_event(record, event);
                    Ok(())
                }
                None => Err(ReplayError::UnknownJob {
                    seq: event.seq,
                    key: key.clone(),
                }),
            }
        }
        _ => Err(ReplayError::BadKey {
            seq: event.seq,
            kind: event.kind,
        }),
    }
}
