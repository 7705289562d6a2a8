//! Property test of the workflow state machine: random DAGs driven by random
//! start / complete / retry / fail / cancel orders under each failure policy.
//! Checks that (a) a job is queued only after each dependency completed (or
//! finished, under `continue`), (b) replaying the history equals the live
//! state after every call and at every seq is accepted, (c) every job ends
//! in exactly one terminal state, and a restored workflow equals the live one.

use std::collections::HashMap;

use ironforge_jobs::workflow::{
    replay, EventKind, FailurePolicy, JobState, Workflow, WorkflowJobSpec, WorkflowLimits,
    WorkflowSpec, WorkflowStatus,
};
use ironforge_jobs::JobSpec;
use proptest::prelude::*;

#[derive(Debug, Clone)]
struct Case {
    spec: WorkflowSpec,
    /// (what to do, which actionable job) per step; past the end, complete.
    actions: Vec<(u8, u16)>,
    cancel_at: Option<usize>,
}

fn case() -> impl Strategy<Value = Case> {
    (1usize..=24)
        .prop_flat_map(|jobs| {
            (
                // Up to 3 dependency picks per job, each among earlier jobs.
                proptest::collection::vec(proptest::collection::vec(any::<u16>(), 0..=3), jobs),
                // Where each job lands in the spec, so keys are not topologically sorted.
                proptest::collection::vec(any::<u32>(), jobs),
                prop_oneof![
                    Just(FailurePolicy::FailDependants),
                    Just(FailurePolicy::SkipDependants),
                    Just(FailurePolicy::Continue),
                ],
                proptest::collection::vec((any::<u8>(), any::<u16>()), 0..120),
                proptest::option::weighted(0.2, 0usize..60),
            )
        })
        .prop_map(|(picks, placement, policy, actions, cancel_at)| {
            let mut jobs: Vec<(u32, WorkflowJobSpec)> = picks
                .iter()
                .enumerate()
                .map(|(i, picks)| {
                    let mut deps: Vec<usize> = if i == 0 {
                        Vec::new()
                    } else {
                        picks.iter().map(|&p| p as usize % i).collect()
                    };
                    deps.sort_unstable();
                    deps.dedup();
                    let mut spec = JobSpec::new("noop", serde_json::Value::Null);
                    spec.max_retries = Some(1);
                    let job = WorkflowJobSpec::new(
                        format!("k{i}"),
                        spec,
                        deps.into_iter().map(|d| format!("k{d}")),
                    );
                    (placement[i], job)
                })
                .collect();
            jobs.sort_by_key(|(place, _)| *place);
            Case {
                spec: WorkflowSpec {
                    jobs: jobs.into_iter().map(|(_, job)| job).collect(),
                    failure_policy: policy,
                    ..WorkflowSpec::default()
                },
                actions,
                cancel_at,
            }
        })
}

fn run(case: Case) -> Result<(), TestCaseError> {
    let spec = case.spec.clone();
    let policy = spec.failure_policy;
    let keys: Vec<String> = spec.jobs.iter().map(|j| j.key.clone()).collect();
    let (mut wf, _) = Workflow::new(spec.clone(), 0).unwrap();
    let mut snapshots = vec![wf.state()];
    let mut cancelled = false;

    for step in 0.. {
        prop_assert!(step < 10_000, "the run does not end");
        let at = step as u64 + 1;
        if case.cancel_at == Some(step) {
            // Cancelling a finished workflow changes nothing.
            cancelled = wf.status() == WorkflowStatus::Running;
            wf.cancel(at);
            snapshots.push(wf.state());
        }
        let actionable: Vec<&String> = keys
            .iter()
            .filter(|k| matches!(wf.job_state(k), Some(JobState::Queued | JobState::Running)))
            .collect();
        if actionable.is_empty() {
            break;
        }
        let (what, pick) = case.actions.get(step).copied().unwrap_or((0, 0));
        let key = actionable[pick as usize % actionable.len()].clone();
        let retries = wf.state().jobs[&key].retries;
        match (wf.job_state(&key), what % 4) {
            (Some(JobState::Queued), 0 | 1) => wf.on_started(&key, at).unwrap(),
            (Some(JobState::Queued), 2) | (Some(JobState::Running), 0 | 3) => {
                wf.on_completed(&key, at).unwrap();
            }
            (Some(JobState::Running), 2) if retries < 1 => {
                wf.on_retried(&key, at, "flaky").unwrap();
            }
            _ => {
                wf.on_failed(&key, at, "broken").unwrap();
            }
        }
        snapshots.push(wf.state());
    }

    let history = wf.history();
    let deps: HashMap<&str, &Vec<String>> = spec
        .jobs
        .iter()
        .map(|j| (j.key.as_str(), &j.depends_on))
        .collect();
    let mut finished_at_seq: HashMap<&str, (u64, EventKind)> = HashMap::new();
    let mut terminal_events: HashMap<&str, usize> = HashMap::new();
    for event in history {
        let Some(key) = event.key.as_deref() else {
            continue;
        };
        match event.kind {
            // (a) queued only after every dependency finished as the policy demands.
            EventKind::Queued => {
                for dep in deps[key] {
                    let finished = finished_at_seq.get(dep.as_str());
                    let ok = matches!(
                        (policy, finished),
                        (_, Some((_, EventKind::Completed)))
                            | (FailurePolicy::Continue, Some((_, EventKind::Failed)))
                    );
                    prop_assert!(ok, "{key} queued at {} before {dep} finished", event.seq);
                }
            }
            EventKind::Completed
            | EventKind::Failed
            | EventKind::Skipped
            | EventKind::Cancelled => {
                finished_at_seq.insert(key, (event.seq, event.kind));
                *terminal_events.entry(key).or_default() += 1;
            }
            EventKind::Started | EventKind::Retried | EventKind::Created => {}
        }
    }

    // (b) replay equals the live state after every call, and accepts every prefix.
    for snapshot in &snapshots {
        prop_assert_eq!(&replay(&spec, history, snapshot.seq).unwrap(), snapshot);
    }
    for seq in 0..=history.len() as u64 {
        prop_assert_eq!(replay(&spec, history, seq).unwrap().seq, seq);
    }

    // (c) every job ends in exactly one terminal state.
    let state = wf.state();
    for key in &keys {
        prop_assert!(state.jobs[key].state.is_terminal(), "{key} did not finish");
        prop_assert_eq!(terminal_events.get(key.as_str()).copied(), Some(1));
    }
    prop_assert_eq!(state.counts.unfinished(), 0);
    let all_completed = state.counts.completed == keys.len();
    let expected = match (cancelled, all_completed) {
        (true, _) => WorkflowStatus::Cancelled,
        (false, true) => WorkflowStatus::Completed,
        (false, false) => WorkflowStatus::Failed,
    };
    prop_assert_eq!(state.status, expected);
    if policy != FailurePolicy::SkipDependants {
        prop_assert_eq!(state.counts.skipped, 0);
    }

    let (restored, queued) =
        Workflow::restore(spec, &WorkflowLimits::default(), history.to_vec()).unwrap();
    prop_assert!(queued.is_empty());
    prop_assert_eq!(restored.state(), state);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_dags_run_in_order_replay_exactly_and_finish_once(case in case()) {
        run(case)?;
    }
}
