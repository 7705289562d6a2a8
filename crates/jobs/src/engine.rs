//! One running job engine: a backend (embedded by default, Redis Streams
//! when given a URL), the workflow runner, a worker with its scheduler, and
//! the HTTP API, started and stopped together. `ironforge node start` and
//! the examples use it so that a program gets the whole engine in a few
//! lines.
//!
//! Where workflows are kept, unless [`EngineConfig::journal`] names a
//! journal: with [`Store::Embedded`], in a [`RedbJournal`] at
//! `<dir>/workflows.redb` ([`WORKFLOW_JOURNAL_FILE`]), and the runner adopts
//! the unfinished ones at start, so they survive a restart like the jobs in
//! `<dir>/jobs.redb`; with [`Store::Redis`], in this process's memory
//! ([`MemoryJournal`]; the cluster passes its replicated journal).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::backend::QueueBackend;
use crate::client::{Client, ClientConfig};
use crate::embedded::{EmbeddedBackend, EmbeddedConfig};
use crate::error::BackendError;
use crate::http::{serve_with_routes, ApiState};
use crate::partition::{OwnedPartitions, Partitioner};
use crate::redis::{RedisBackend, RedisConfig};
use crate::worker::{Registry, ShutdownReport, Worker, WorkerConfig, WorkerHandle};
use crate::workflow::{
    JournalError, MemoryJournal, RedbJournal, RunnerConfig, WorkflowJournal, WorkflowRouting,
    WorkflowRunner, DEFAULT_MAX_FINISHED_WORKFLOWS,
};

/// File name of the embedded store inside the data directory.
pub const EMBEDDED_FILE: &str = "jobs.redb";
/// File name of the embedded store's workflow journal inside the data directory.
pub const WORKFLOW_JOURNAL_FILE: &str = "workflows.redb";

/// Where jobs are kept.
#[derive(Debug, Clone)]
pub enum Store {
    /// The embedded store in this directory (created if missing).
    Embedded { dir: PathBuf },
    /// Redis Streams.
    Redis(RedisConfig),
}

/// What to start. Build it with [`EngineConfig::new`] and set the fields
/// you need (`EngineConfig { http: Some(addr), ..EngineConfig::new(store) }`),
/// so new fields do not break callers.
pub struct EngineConfig {
    /// Where jobs are kept.
    pub store: Store,
    /// Where the HTTP API listens; `None` serves no API.
    pub http: Option<SocketAddr>,
    /// Handlers and executor settings; `None` runs no handlers (a
    /// submit-only process).
    pub worker: Option<(Registry, WorkerConfig)>,
    /// Merged into the API (the cluster layer adds its own there).
    pub routes: Option<axum::Router>,
    /// Where workflow records live; `None`: with [`Store::Embedded`], a
    /// [`RedbJournal`] in the data directory whose unfinished workflows are
    /// adopted at start (whatever [`RunnerConfig::adopt_on_start`] says:
    /// nothing else would finish them); with [`Store::Redis`], a
    /// [`MemoryJournal`] (this process only).
    pub journal: Option<Arc<dyn WorkflowJournal>>,
    /// The partitions whose workflows this process drives; `None`: all.
    pub owned_partitions: Option<OwnedPartitions>,
    /// Where workflows owned elsewhere are submitted and cancelled; `None`:
    /// everything is local.
    pub routing: Option<Arc<dyn WorkflowRouting>>,
    /// Workflow runner settings.
    pub workflows: RunnerConfig,
}

impl EngineConfig {
    /// A config over `store` with no API, no worker, no extra routes, the
    /// store's default workflow journal and every partition driven here.
    pub fn new(store: Store) -> Self {
        EngineConfig {
            store,
            http: None,
            worker: None,
            routes: None,
            journal: None,
            owned_partitions: None,
            routing: None,
            workflows: RunnerConfig::default(),
        }
    }
}

/// Why the engine did not start.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("cannot create the data directory {dir}: {source}")]
    DataDir {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error("cannot listen for HTTP on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A running engine.
pub struct Engine {
    client: Client,
    workflows: WorkflowRunner,
    http_addr: Option<SocketAddr>,
    http: Option<(oneshot::Sender<()>, JoinHandle<std::io::Result<()>>)>,
    worker: Option<WorkerHandle>,
    /// The journal this engine opened itself, closed at shutdown so the
    /// next engine on the same directory can open the file.
    own_journal: Option<Arc<RedbJournal>>,
}

impl Engine {
    /// Opens the store, then starts the workflow runner, the worker and the API.
    ///
    /// ```
    /// use ironforge_jobs::engine::{Engine, EngineConfig, Store};
    /// use ironforge_jobs::{JobSpec, Registry, WorkerConfig};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let dir = tempfile::tempdir()?;
    /// let mut handlers = Registry::new();
    /// handlers.register_fn("echo", |ctx| async move { Ok(ctx.payload().clone()) });
    /// let engine = Engine::start(EngineConfig {
    ///     http: Some("127.0.0.1:0".parse()?),
    ///     worker: Some((handlers, WorkerConfig::default())),
    ///     ..EngineConfig::new(Store::Embedded { dir: dir.path().into() })
    /// })
    /// .await?;
    /// let id = engine.client().submit(JobSpec::new("echo", serde_json::json!(1))).await?;
    /// println!("submitted {id}; API on {:?}", engine.http_addr());
    /// engine.shutdown(std::time::Duration::from_secs(1)).await;
    /// # Ok(()) }
    /// ```
    pub async fn start(mut config: EngineConfig) -> Result<Engine, EngineError> {
        // Bound first: failing after the runner started would leave it running.
        let listener = match config.http {
            Some(addr) => {
                let listener = tokio::net::TcpListener::bind(addr)
                    .await
                    .map_err(|source| EngineError::Listen { addr, source })?;
                let bound = listener
                    .local_addr()
                    .map_err(|source| EngineError::Listen { addr, source })?;
                Some((listener, bound))
            }
            None => None,
        };
        // The client places jobs (and the runner whole workflows) in the
        // store's partitions, so both must count them alike.
        let partitioner = match &config.store {
            Store::Redis(redis) => Partitioner::new(redis.partitions),
            Store::Embedded { .. } => Partitioner::default(),
        };
        let mut own_journal = None;
        let backend: Arc<dyn QueueBackend> = match config.store {
            Store::Embedded { dir } => {
                std::fs::create_dir_all(&dir).map_err(|source| EngineError::DataDir {
                    dir: dir.clone(),
                    source,
                })?;
                let backend =
                    EmbeddedBackend::open(dir.join(EMBEDDED_FILE), EmbeddedConfig::default())?;
                if config.journal.is_none() {
                    let journal = Arc::new(RedbJournal::open(
                        dir.join(WORKFLOW_JOURNAL_FILE),
                        DEFAULT_MAX_FINISHED_WORKFLOWS,
                    )?);
                    // One process owns every partition of this store: if it
                    // does not adopt them, nobody finishes its workflows.
                    config.workflows.adopt_on_start = true;
                    config.journal = Some(journal.clone());
                    own_journal = Some(journal);
                }
                Arc::new(backend)
            }
            Store::Redis(redis) => Arc::new(RedisBackend::connect(redis).await?),
        };
        let client = Client::with_config(
            backend.clone(),
            ClientConfig {
                partitioner,
                ..ClientConfig::default()
            },
        );
        let journal = config
            .journal
            .unwrap_or_else(|| Arc::new(MemoryJournal::default()));
        let workflows = WorkflowRunner::start(
            client.clone(),
            journal,
            config.owned_partitions,
            config.routing,
            config.workflows,
        );
        let (http_addr, http) = match listener {
            Some((listener, bound)) => {
                let (stop, stopped) = oneshot::channel::<()>();
                let state = ApiState::new(client.clone()).with_workflows(workflows.clone());
                let routes = config.routes.unwrap_or_default();
                let task = tokio::spawn(serve_with_routes(listener, state, routes, async {
                    let _ = stopped.await;
                }));
                (Some(bound), Some((stop, task)))
            }
            None => (None, None),
        };
        let worker = config.worker.map(|(registry, worker)| {
            Worker::start(backend, registry, worker, client.observers().clone())
        });
        Ok(Engine {
            client,
            workflows,
            http_addr,
            http,
            worker,
            own_journal,
        })
    }

    /// A client over the engine's store, sharing its events and metrics.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The workflow runner (submit, inspect, cancel and replay workflows).
    pub fn workflows(&self) -> &WorkflowRunner {
        &self.workflows
    }

    /// Where the HTTP API listens, if it runs.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http_addr
    }

    /// Stops the API, lets running jobs finish for up to `grace`, hands the
    /// rest back to the queue, records what the finished jobs did to their
    /// workflows, and closes the store.
    pub async fn shutdown(self, grace: Duration) -> ShutdownReport {
        if let Some((stop, task)) = self.http {
            let _ = stop.send(());
            let _ = task.await;
        }
        let report = match self.worker {
            Some(worker) => worker.shutdown(grace).await,
            None => ShutdownReport::default(),
        };
        self.workflows.shutdown().await;
        if let Some(journal) = &self.own_journal {
            journal.close();
        }
        if let Err(err) = self.client.backend().close().await {
            tracing::warn!(error = %err, "closing the store failed");
        }
        report
    }
}
