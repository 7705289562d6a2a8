//! The behavioural suite (`ironforge_jobs::testkit`) on the embedded
//! backend, one test per behaviour, each on a fresh database file.

use std::sync::Arc;

use ironforge_jobs::{EmbeddedBackend, EmbeddedConfig, QueueBackend};

fn fresh() -> (tempfile::TempDir, Arc<dyn QueueBackend>) {
    let dir = tempfile::tempdir().unwrap();
    let backend =
        EmbeddedBackend::open(dir.path().join("jobs.redb"), EmbeddedConfig::default()).unwrap();
    (dir, Arc::new(backend))
}

ironforge_jobs::backend_suite!(fresh());
