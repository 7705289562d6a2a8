//! Workflow core scenarios: dependency order, each failure policy, the
//! submission checks, cancel, redelivery, replay and restore.

use ironforge_jobs::workflow::{
    replay, EventKind, FailurePolicy, JobState, MissingDependency, ReplayError, TransitionError,
    Workflow, WorkflowError, WorkflowEvent, WorkflowJobSpec, WorkflowLimits, WorkflowSpec,
    WorkflowState, WorkflowStatus,
};
use ironforge_jobs::JobSpec;

fn job(key: &str, deps: &[&str]) -> WorkflowJobSpec {
    WorkflowJobSpec::new(
        key,
        JobSpec::new("noop", serde_json::json!({ "key": key })),
        deps.to_vec(),
    )
}

fn spec(policy: FailurePolicy, jobs: Vec<WorkflowJobSpec>) -> WorkflowSpec {
    WorkflowSpec {
        jobs,
        failure_policy: policy,
        ..WorkflowSpec::default()
    }
}

/// A → B, C, D → E
fn fan_out_fan_in(policy: FailurePolicy) -> WorkflowSpec {
    spec(
        policy,
        vec![
            job("a", &[]),
            job("b", &["a"]),
            job("c", &["a"]),
            job("d", &["a"]),
            job("e", &["b", "c", "d"]),
        ],
    )
}

fn seq_of(history: &[WorkflowEvent], key: &str, kind: EventKind) -> u64 {
    history
        .iter()
        .find(|e| e.key.as_deref() == Some(key) && e.kind == kind)
        .map(|e| e.seq)
        .unwrap_or_else(|| panic!("no {kind} event for {key}"))
}

#[test]
fn fan_out_fan_in_runs_in_dependency_order() {
    let (mut wf, ready) = Workflow::new(fan_out_fan_in(FailurePolicy::default()), 10).unwrap();
    assert_eq!(ready, ["a"]);
    assert_eq!(wf.job_state("e"), Some(JobState::Pending));

    wf.on_started("a", 11).unwrap();
    assert_eq!(wf.on_completed("a", 12).unwrap(), ["b", "c", "d"]);
    // Fan-in: e waits for the last of b, c, d whatever the completion order.
    for key in ["d", "b"] {
        wf.on_started(key, 13).unwrap();
        assert!(wf.on_completed(key, 14).unwrap().is_empty());
        assert_eq!(wf.job_state("e"), Some(JobState::Pending));
    }
    wf.on_started("c", 15).unwrap();
    assert_eq!(wf.on_completed("c", 16).unwrap(), ["e"]);
    assert_eq!(wf.status(), WorkflowStatus::Running);
    wf.on_started("e", 17).unwrap();
    assert!(wf.on_completed("e", 18).unwrap().is_empty());
    assert_eq!(wf.status(), WorkflowStatus::Completed);

    let history = wf.history();
    for dep in ["b", "c", "d"] {
        assert!(
            seq_of(history, "a", EventKind::Completed) < seq_of(history, dep, EventKind::Queued)
        );
        assert!(
            seq_of(history, dep, EventKind::Completed) < seq_of(history, "e", EventKind::Queued)
        );
    }
    let last = history.last().unwrap();
    assert_eq!(
        (last.key.as_deref(), last.kind),
        (None, EventKind::Completed)
    );
    let summary = wf.summary();
    assert_eq!(summary.state.counts.completed, 5);
    assert_eq!(summary.state.created_at, Some(10));
    assert_eq!(summary.state.finished_at, Some(18));
}

#[test]
fn fail_dependants_fails_everything_downstream_and_nothing_else() {
    let mut jobs = fan_out_fan_in(FailurePolicy::FailDependants).jobs;
    jobs.push(job("f", &["e"]));
    jobs.push(job("solo", &[]));
    let (mut wf, ready) = Workflow::new(spec(FailurePolicy::FailDependants, jobs), 0).unwrap();
    assert_eq!(ready, ["a", "solo"]);
    wf.on_started("a", 1).unwrap();
    wf.on_completed("a", 2).unwrap();
    wf.on_started("b", 3).unwrap();

    let transition = wf.on_failed("b", 4, "boom").unwrap();
    assert!(transition.ready.is_empty());
    assert_eq!(transition.failed_or_skipped, ["e", "f"]);
    let state = wf.state();
    assert_eq!(state.jobs["b"].error.as_deref(), Some("boom"));
    assert_eq!(state.jobs["e"].state, JobState::Failed);
    assert_eq!(
        state.jobs["e"].error.as_deref(),
        Some("dependency `b` failed")
    );
    assert_eq!(state.jobs["f"].state, JobState::Failed);
    // Siblings and unrelated jobs still run; e stays failed when they finish.
    assert_eq!(wf.status(), WorkflowStatus::Running);
    for key in ["c", "d", "solo"] {
        wf.on_started(key, 5).unwrap();
        assert!(wf.on_completed(key, 6).unwrap().is_empty());
    }
    assert_eq!(wf.job_state("e"), Some(JobState::Failed));
    assert_eq!(wf.status(), WorkflowStatus::Failed);
    assert_eq!(wf.state().counts.failed, 3);
    assert_eq!(wf.state().counts.completed, 4);
}

#[test]
fn skip_dependants_marks_downstream_skipped() {
    let (mut wf, _) = Workflow::new(fan_out_fan_in(FailurePolicy::SkipDependants), 0).unwrap();
    wf.on_started("a", 1).unwrap();
    let transition = wf.on_failed("a", 2, "no input").unwrap();
    assert_eq!(transition.failed_or_skipped, ["b", "c", "d", "e"]);
    for key in ["b", "c", "d", "e"] {
        assert_eq!(wf.job_state(key), Some(JobState::Skipped));
    }
    assert_eq!(wf.job_state("a"), Some(JobState::Failed));
    assert_eq!(wf.status(), WorkflowStatus::Failed);
    assert_eq!(wf.state().counts.skipped, 4);
}

#[test]
fn continue_runs_dependants_once_every_dependency_finished() {
    let (mut wf, _) = Workflow::new(fan_out_fan_in(FailurePolicy::Continue), 0).unwrap();
    wf.on_started("a", 1).unwrap();
    let transition = wf.on_failed("a", 2, "soft failure").unwrap();
    // A failed dependency counts as finished.
    assert_eq!(transition.ready, ["b", "c", "d"]);
    assert!(transition.failed_or_skipped.is_empty());
    wf.on_started("b", 3).unwrap();
    assert!(wf.on_failed("b", 4, "again").unwrap().ready.is_empty());
    wf.on_started("c", 5).unwrap();
    assert!(wf.on_completed("c", 6).unwrap().is_empty());
    assert_eq!(wf.job_state("e"), Some(JobState::Pending));
    wf.on_started("d", 7).unwrap();
    assert_eq!(wf.on_completed("d", 8).unwrap(), ["e"]);
    wf.on_started("e", 9).unwrap();
    wf.on_completed("e", 10).unwrap();
    assert_eq!(wf.status(), WorkflowStatus::Failed);
    assert_eq!(wf.state().counts.completed, 3);
    assert_eq!(wf.state().counts.failed, 2);
}

#[test]
fn cycle_is_rejected_naming_one_cycle() {
    // a -> c -> b -> a (each depends on the next), plus jobs around it.
    let spec = spec(
        FailurePolicy::default(),
        vec![
            job("root", &[]),
            job("a", &["root", "c"]),
            job("b", &["a"]),
            job("c", &["b"]),
            job("downstream", &["a"]),
        ],
    );
    let err = Workflow::new(spec, 0).unwrap_err();
    assert_eq!(
        err,
        WorkflowError::Cycle {
            keys: vec!["a".into(), "c".into(), "b".into()]
        }
    );
    assert_eq!(
        err.to_string(),
        "dependency cycle: `a` -> `c` -> `b` -> `a`"
    );
}

#[test]
fn unknown_dependencies_are_rejected_with_each_offender() {
    let spec = spec(
        FailurePolicy::default(),
        vec![job("a", &["ghost"]), job("b", &["a", "phantom"])],
    );
    assert_eq!(
        Workflow::new(spec, 0).unwrap_err(),
        WorkflowError::UnknownDependencies {
            missing: vec![
                MissingDependency {
                    key: "a".into(),
                    dependency: "ghost".into()
                },
                MissingDependency {
                    key: "b".into(),
                    dependency: "phantom".into()
                },
            ]
        }
    );
}

#[test]
fn duplicate_keys_self_dependencies_and_repeated_dependencies_are_rejected() {
    let duplicate = spec(
        FailurePolicy::default(),
        vec![job("x", &[]), job("y", &[]), job("x", &[]), job("y", &[])],
    );
    assert_eq!(
        Workflow::new(duplicate, 0).unwrap_err(),
        WorkflowError::DuplicateKeys {
            keys: vec!["x".into(), "y".into()]
        }
    );

    let selfish = spec(FailurePolicy::default(), vec![job("me", &["me"])]);
    assert_eq!(
        Workflow::new(selfish, 0).unwrap_err(),
        WorkflowError::SelfDependency {
            keys: vec!["me".into()]
        }
    );

    let repeated = spec(
        FailurePolicy::default(),
        vec![job("a", &[]), job("b", &["a", "a"])],
    );
    assert!(matches!(
        Workflow::new(repeated, 0).unwrap_err(),
        WorkflowError::DuplicateDependency { key, dependency } if key == "b" && dependency == "a"
    ));
}

#[test]
fn bounds_are_enforced() {
    assert_eq!(
        Workflow::new(spec(FailurePolicy::default(), vec![]), 0).unwrap_err(),
        WorkflowError::Empty
    );
    let limits = WorkflowLimits {
        max_jobs: 2,
        max_dependencies_per_job: 1,
        ..WorkflowLimits::default()
    };
    let three = spec(
        FailurePolicy::default(),
        vec![job("a", &[]), job("b", &[]), job("c", &[])],
    );
    assert_eq!(
        Workflow::with_limits(three, &limits, 0).unwrap_err(),
        WorkflowError::TooManyJobs { len: 3, max: 2 }
    );
    let wide = spec(
        FailurePolicy::default(),
        vec![job("a", &[]), job("b", &["a", "x"])],
    );
    assert!(matches!(
        Workflow::with_limits(wide, &limits, 0).unwrap_err(),
        WorkflowError::TooManyDependencies { key, len: 2, max: 1 } if key == "b"
    ));
    let blank = spec(FailurePolicy::default(), vec![job("", &[])]);
    assert!(matches!(
        Workflow::new(blank, 0).unwrap_err(),
        WorkflowError::BadKey { len: 0, .. }
    ));
    let bad_job = spec(
        FailurePolicy::default(),
        vec![WorkflowJobSpec::new(
            "k",
            JobSpec::new(" ", serde_json::Value::Null),
            Vec::<String>::new(),
        )],
    );
    assert!(matches!(
        Workflow::new(bad_job, 0).unwrap_err(),
        WorkflowError::InvalidJob { key, .. } if key == "k"
    ));
}

#[test]
fn spec_decodes_from_the_json_users_post() {
    let body = br#"{
        "name": "nightly",
        "failure_policy": "skip_dependants",
        "jobs": [
            { "key": "extract", "spec": { "kind": "extract", "priority": "high" } },
            { "key": "load", "spec": { "kind": "load" }, "depends_on": ["extract"] }
        ]
    }"#;
    let spec = WorkflowSpec::from_json(body).unwrap();
    assert_eq!(spec.failure_policy, FailurePolicy::SkipDependants);
    assert_eq!(spec.jobs[1].depends_on, ["extract"]);
    let (wf, ready) = Workflow::new(spec, 0).unwrap();
    assert_eq!(ready, ["extract"]);
    assert_eq!(wf.job_spec("extract").unwrap().kind, "extract");

    let default_policy = WorkflowSpec::from_json(br#"{"jobs": []}"#).unwrap();
    assert_eq!(default_policy.failure_policy, FailurePolicy::FailDependants);
    for bad in [
        &br#"{"jobs": [], "colour": "red"}"#[..],
        br#"{"jobs": [], "failure_policy": "panic"}"#,
        br#"{"jobs": [{"key": "a", "spec": {"kind": "k"}, "after": []}]}"#,
    ] {
        assert!(matches!(
            WorkflowSpec::from_json(bad),
            Err(WorkflowError::Malformed(_))
        ));
    }
    let summary = serde_json::to_value(wf.summary()).unwrap();
    assert_eq!(summary["status"], "running");
    assert_eq!(summary["failure_policy"], "skip_dependants");
    assert_eq!(summary["jobs"]["load"]["state"], "pending");
}

#[test]
fn cancel_stops_everything_that_has_not_started() {
    let spec = spec(
        FailurePolicy::default(),
        vec![job("a", &[]), job("b", &["a"]), job("c", &[])],
    );
    let (mut wf, ready) = Workflow::new(spec, 0).unwrap();
    assert_eq!(ready, ["a", "c"]);
    wf.on_started("a", 1).unwrap();
    assert_eq!(wf.cancel(2), ["b", "c"]);
    assert_eq!(wf.status(), WorkflowStatus::Cancelled);
    assert_eq!(wf.job_state("a"), Some(JobState::Running));
    // The running job may still finish; it releases nothing.
    assert!(wf.on_completed("a", 3).unwrap().is_empty());
    assert_eq!(wf.job_state("b"), Some(JobState::Cancelled));
    assert!(matches!(
        wf.on_started("c", 4),
        Err(TransitionError::InvalidTransition {
            from: JobState::Cancelled,
            ..
        })
    ));
    assert!(wf.cancel(5).is_empty());
    let state = wf.state();
    assert_eq!(state.finished_at, Some(2));
    assert_eq!(state.counts.cancelled, 2);
    assert_eq!(state.counts.completed, 1);

    // A finished workflow cannot be cancelled.
    let (mut done, _) = Workflow::new(fan_out_fan_in(FailurePolicy::default()), 0).unwrap();
    done.on_failed("a", 1, "x").unwrap();
    assert!(done.cancel(2).is_empty());
    assert_eq!(done.status(), WorkflowStatus::Failed);
}

#[test]
fn transitions_that_do_not_fit_are_refused_and_redeliveries_ignored() {
    let mut chain = vec![job("a", &[]), job("b", &["a"])];
    chain[0].spec.max_retries = Some(1);
    let (mut wf, _) = Workflow::new(spec(FailurePolicy::default(), chain), 0).unwrap();
    assert_eq!(
        wf.on_completed("nope", 1),
        Err(TransitionError::UnknownJob("nope".into()))
    );
    assert!(matches!(
        wf.on_started("b", 1),
        Err(TransitionError::InvalidTransition {
            from: JobState::Pending,
            event: EventKind::Started,
            ..
        })
    ));
    wf.on_started("a", 1).unwrap();
    wf.on_started("a", 1).unwrap();
    wf.on_retried("a", 2, "flaky").unwrap();
    assert_eq!(wf.job_state("a"), Some(JobState::Queued));
    wf.on_started("a", 3).unwrap();
    assert_eq!(
        wf.on_retried("a", 4, "flaky"),
        Err(TransitionError::RetriesExhausted {
            key: "a".into(),
            max: 1
        })
    );
    let events = wf.history().len();
    assert_eq!(wf.on_completed("a", 5).unwrap(), ["b"]);
    assert!(wf.on_completed("a", 6).unwrap().is_empty());
    assert_eq!(wf.history().len(), events + 2);
    assert!(matches!(
        wf.on_failed("a", 7, "late"),
        Err(TransitionError::InvalidTransition {
            from: JobState::Completed,
            ..
        })
    ));
    let state = wf.state();
    assert_eq!(state.jobs["a"].retries, 1);
    assert_eq!(state.jobs["a"].started_at, Some(3));
}

#[test]
fn long_errors_are_cut_to_the_limit() {
    let limits = WorkflowLimits {
        max_error_len: 5,
        ..WorkflowLimits::default()
    };
    let (mut wf, _) = Workflow::with_limits(
        spec(FailurePolicy::default(), vec![job("a", &[])]),
        &limits,
        0,
    )
    .unwrap();
    wf.on_failed("a", 1, "ééé-long").unwrap();
    assert_eq!(wf.state().jobs["a"].error.as_deref(), Some("éé"));
}

/// Drives a fixed scenario with retries, a failure and a cancel-free end,
/// snapshotting the live state after every call.
fn scripted_run() -> (Workflow, Vec<WorkflowState>) {
    let (mut wf, _) = Workflow::new(fan_out_fan_in(FailurePolicy::Continue), 100).unwrap();
    let mut snapshots = vec![wf.state()];
    let mut step = |wf: &mut Workflow, f: &dyn Fn(&mut Workflow)| {
        f(wf);
        snapshots.push(wf.state());
    };
    step(&mut wf, &|wf| wf.on_started("a", 101).unwrap());
    step(&mut wf, &|wf| wf.on_retried("a", 102, "flaky").unwrap());
    step(&mut wf, &|wf| wf.on_started("a", 103).unwrap());
    step(&mut wf, &|wf| {
        wf.on_completed("a", 104).unwrap();
    });
    step(&mut wf, &|wf| wf.on_started("c", 105).unwrap());
    step(&mut wf, &|wf| {
        wf.on_failed("c", 106, "broken").unwrap();
    });
    step(&mut wf, &|wf| {
        wf.on_completed("b", 107).unwrap();
    });
    step(&mut wf, &|wf| {
        wf.on_completed("d", 108).unwrap();
    });
    step(&mut wf, &|wf| wf.on_started("e", 109).unwrap());
    step(&mut wf, &|wf| {
        wf.on_completed("e", 110).unwrap();
    });
    (wf, snapshots)
}

#[test]
fn replay_equals_the_live_state_at_each_seq() {
    let (wf, snapshots) = scripted_run();
    assert_eq!(wf.status(), WorkflowStatus::Failed);
    let history = wf.history();
    for (i, event) in history.iter().enumerate() {
        assert_eq!(event.seq, i as u64 + 1);
    }
    for snapshot in &snapshots {
        assert_eq!(
            &replay(wf.spec(), history, snapshot.seq).unwrap(),
            snapshot,
            "at seq {}",
            snapshot.seq
        );
    }
    // Through JSON too, as the history endpoint and the CLI see it.
    let json = serde_json::to_string(history).unwrap();
    let decoded: Vec<WorkflowEvent> = serde_json::from_str(&json).unwrap();
    assert_eq!(replay(wf.spec(), &decoded, u64::MAX).unwrap(), wf.state());
    let before = replay(wf.spec(), history, 0).unwrap();
    assert_eq!(before.seq, 0);
    assert!(before.jobs.values().all(|r| r.state == JobState::Pending));
}

#[test]
fn replay_refuses_histories_that_do_not_fit() {
    let (wf, _) = scripted_run();
    let mut gap = wf.history().to_vec();
    gap.remove(3);
    assert_eq!(
        replay(wf.spec(), &gap, u64::MAX),
        Err(ReplayError::OutOfOrder {
            expected: 4,
            found: 5
        })
    );
    let mut foreign = wf.history().to_vec();
    foreign[2].key = Some("zz".into());
    assert!(matches!(
        replay(wf.spec(), &foreign, u64::MAX),
        Err(ReplayError::UnknownJob { seq: 3, .. })
    ));
    let mut keyless = wf.history().to_vec();
    keyless[2].key = None;
    assert!(matches!(
        replay(wf.spec(), &keyless, u64::MAX),
        Err(ReplayError::BadKey { seq: 3, .. })
    ));
}

#[test]
fn restore_continues_where_the_history_stops() {
    let spec = fan_out_fan_in(FailurePolicy::default());
    let (mut live, _) = Workflow::new(spec.clone(), 0).unwrap();
    live.on_started("a", 1).unwrap();
    live.on_completed("a", 2).unwrap();
    live.on_started("b", 3).unwrap();
    live.on_completed("b", 4).unwrap();

    let (mut restored, queued) =
        Workflow::restore(spec, &WorkflowLimits::default(), live.history().to_vec()).unwrap();
    assert_eq!(queued, ["c", "d"]);
    assert_eq!(restored.state(), live.state());
    for wf in [&mut live, &mut restored] {
        wf.on_completed("c", 5).unwrap();
        assert_eq!(wf.on_completed("d", 6).unwrap(), ["e"]);
        wf.on_completed("e", 7).unwrap();
    }
    assert_eq!(restored.state(), live.state());
    assert_eq!(restored.history(), live.history());
    assert_eq!(restored.status(), WorkflowStatus::Completed);
}
