//! The behavioural suite (`ironforge_jobs::testkit`) on the embedded
//! backend, one test per behaviour, each on a fresh database file.

use std::sync::Arc;

use ironforge_jobs::testkit;
use ironforge_jobs::{EmbeddedBackend, EmbeddedConfig, QueueBackend};

fn fresh() -> (tempfile::TempDir, Arc<dyn QueueBackend>) {
    let dir = tempfile::tempdir().unwrap();
    let backend =
        EmbeddedBackend::open(dir.path().join("jobs.redb"), EmbeddedConfig::default()).unwrap();
    (dir, Arc::new(backend))
}

macro_rules! suite {
    ($($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let (_dir, backend) = fresh();
                testkit::$name(backend).await;
            }
        )*
    };
}

suite!(
    happy_path,
    retry_then_success,
    dead_letter_then_retry,
    priority_order,
    timeout_then_retry,
    delayed_job_waits,
    cancel_queued_and_scheduled,
    lease_expiry_reclaimed,
    renewed_lease_survives,
    worker_renews_long_jobs,
    poison_job_goes_dead,
    idempotency_dedup,
    validation_errors,
    unknown_kind_fails,
    progress_is_visible,
    graceful_shutdown,
    fail_decisions_are_followed,
);
