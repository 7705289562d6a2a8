//! Job engine: the job model, one [`QueueBackend`] trait with an embedded
//! durable implementation ([`EmbeddedBackend`], the default without Redis),
//! workers that run handlers by kind ([`Worker`]), and a [`Client`] to
//! submit and manage jobs from Rust.
//!
//! Events and metrics ([`Observers`]) are emitted by the client, workers
//! and scheduler, so every backend reports alike. The cargo feature
//! `testkit` exposes `testkit`, the behavioural suite every backend must
//! pass (see `tests/embedded.rs`).
//!
//! ```
//! use std::sync::Arc;
//! use ironforge_jobs::{Client, EmbeddedBackend, EmbeddedConfig, JobSpec, JobStatus, Priority};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let backend = EmbeddedBackend::open(dir.path().join("jobs.redb"), EmbeddedConfig::default())?;
//! let client = Client::new(Arc::new(backend));
//! let id = client
//!     .submit(JobSpec::new("email", serde_json::json!({"to": "a@b.c"})).priority(Priority::High))
//!     .await?;
//! let job = client.get(id).await?.expect("just submitted");
//! assert_eq!(job.status, JobStatus::Queued);
//! assert_eq!(client.stats().await?.queued.high, 1);
//! # Ok(())
//! # }
//! ```

pub mod backend;
pub mod backoff;
pub mod client;
pub mod clock;
pub mod embedded;
pub mod engine;
pub mod error;
pub mod http;
pub mod job;
pub mod observe;
pub mod partition;
pub mod redis;
pub mod scheduler;
#[cfg(feature = "testkit")]
pub mod testkit;
pub mod worker;
pub mod workflow;

pub use crate::redis::{RedisBackend, RedisConfig};
pub use backend::{
    AckOutcome, Completion, Enqueued, Lease, PriorityCounts, QueueBackend, QueueStats, Receipt,
    Reclaimed,
};
pub use backoff::{decide_after_failure, BackoffPolicy, FailDecision};
pub use client::{Client, ClientConfig};
pub use embedded::{EmbeddedBackend, EmbeddedConfig};
pub use error::{BackendError, JobError, ValidationError};
pub use job::{Job, JobId, JobLimits, JobSpec, JobStatus, Priority};
pub use observe::{EventBus, JobEvent, JobMetrics, Observers};
pub use partition::{OwnedPartitions, Partitioner};
pub use scheduler::{SchedulerConfig, SchedulerHandle};
pub use worker::{
    HandlerError, HandlerResult, JobContext, JobHandler, Registry, ShutdownReport, Worker,
    WorkerConfig, WorkerHandle,
};
pub use workflow::{RunnerConfig, WorkflowRunner};
