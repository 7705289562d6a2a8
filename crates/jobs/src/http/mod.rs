//! The HTTP API of the job engine (axum): submit, inspect, cancel and retry
//! jobs, queue statistics, health, Prometheus metrics and a live event
//! stream, all over one [`Client`] and the [`crate::Observers`] it shares
//! with workers and the scheduler.
//!
//! | Route | Does |
//! |---|---|
//! | `POST /jobs` | one job, or a batch as `{"jobs": [...]}` or `[...]`; 201 with ids (200 if all were duplicates) |
//! | `GET /jobs/{id}` | the job; 404 if unknown |
//! | `DELETE /jobs/{id}` | cancels a queued, scheduled or retry-pending job; 409 if running or finished |
//! | `POST /jobs/{id}/retry` | re-queues a dead job; body `{"reset_attempts": true}` optional |
//! | `GET /jobs?status=dead&limit=N` | jobs by status; limit 100 by default, at most 1000 |
//! | `GET /queues/stats` | counts per status |
//! | `GET /health` | backend name; 503 when it does not answer |
//! | `GET /metrics` | Prometheus text format 0.0.4 |
//! | `GET /events` | server-sent events of job state changes |
//! | `POST /workflows` | a DAG of jobs (a [`WorkflowSpec`](crate::workflow::WorkflowSpec)); 201 with its id; 400 naming the keys of a cycle, unknown dependency or duplicate key |
//! | `GET /workflows/{id}` | status, counts and every job's state and job id; 404 if unknown |
//! | `DELETE /workflows/{id}` | cancels the jobs that have not started; running ones finish; 404 if unknown |
//! | `GET /workflows/{id}/history` | the spec and every event with its seq |
//! | `GET /workflows/{id}/state?until=N` | the state replayed from the events up to seq N (all without `until`); 400 if N is past the last event |
//!
//! Every error is `{"error": {"code", "message"}}`. Bad input is a 4xx
//! naming the problem; an unreachable backend is a 503. Limits (defaults in
//! brackets): request body [`DEFAULT_BODY_LIMIT`] (2 MiB), each backend call
//! [`DEFAULT_BACKEND_TIMEOUT`] (10 s), the health probe
//! [`DEFAULT_HEALTH_TIMEOUT`] (2 s), open event streams
//! [`DEFAULT_MAX_EVENT_STREAMS`] (256), jobs per batch and payload size from
//! [`JobLimits`](crate::JobLimits) (10,000 and 1 MiB).
//!
//! ```
//! use std::sync::Arc;
//! use ironforge_jobs::http::{serve, ApiState};
//! use ironforge_jobs::{Client, EmbeddedBackend, EmbeddedConfig};
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let backend = EmbeddedBackend::open(dir.path().join("jobs.redb"), EmbeddedConfig::default())?;
//! let state = ApiState::new(Client::new(Arc::new(backend)));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let addr = listener.local_addr()?;
//! let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//! let server = tokio::spawn(serve(listener, state, async move {
//!     let _ = stopped.await;
//! }));
//!
//! let mut conn = tokio::net::TcpStream::connect(addr).await?;
//! conn.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await?;
//! let mut answer = String::new();
//! conn.read_to_string(&mut answer).await?;
//! assert!(answer.starts_with("HTTP/1.1 200"));
//! assert!(answer.contains(r#""backend":"embedded""#));
//!
//! let _ = stop.send(());
//! server.await??;
//! # Ok(())
//! # }
//! ```

mod body;
mod error;
mod events;
mod metrics;
mod routes;
mod workflows;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use axum::Router;
use tokio::sync::{watch, Semaphore};

use crate::client::Client;
use crate::error::JobError;
use crate::workflow::{RunnerError, WorkflowRunner};

pub use error::ApiError;
pub use events::EVENT_KEEP_ALIVE;
pub use metrics::{render as render_metrics, PROMETHEUS_CONTENT_TYPE};

/// Where the API listens unless told otherwise (the CLI reads `IRONFORGE_HTTP`).
pub const DEFAULT_HTTP_ADDR: &str = "127.0.0.1:3000";
/// Largest request body [2 MiB]; larger ones get 413 `body_too_large`.
pub const DEFAULT_BODY_LIMIT: usize = 2 * 1024 * 1024;
/// Longest wait for one backend call before answering 503 [10 s].
pub const DEFAULT_BACKEND_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for the backend's answer to a `GET /health` probe [2 s].
pub const DEFAULT_HEALTH_TIMEOUT: Duration = Duration::from_secs(2);
/// Most `GET /events` streams open at once [256].
pub const DEFAULT_MAX_EVENT_STREAMS: usize = 256;
/// Jobs listed by `GET /jobs` without a `limit` [100].
pub const DEFAULT_LIST_LIMIT: usize = 100;

/// API settings. Defaults in brackets.
#[derive(Clone, Debug)]
pub struct ApiConfig {
    /// Largest request body [`DEFAULT_BODY_LIMIT`].
    pub body_limit: usize,
    /// Longest backend call [`DEFAULT_BACKEND_TIMEOUT`].
    pub backend_timeout: Duration,
    /// Longest health probe [`DEFAULT_HEALTH_TIMEOUT`]; short, so probes
    /// fail fast while the backend's own retries are still running.
    pub health_timeout: Duration,
    /// Most open event streams [`DEFAULT_MAX_EVENT_STREAMS`].
    pub max_event_streams: usize,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            body_limit: DEFAULT_BODY_LIMIT,
            backend_timeout: DEFAULT_BACKEND_TIMEOUT,
            health_timeout: DEFAULT_HEALTH_TIMEOUT,
            max_event_streams: DEFAULT_MAX_EVENT_STREAMS,
        }
    }
}

/// What the handlers share: the client (backend and observers), the
/// settings, and the shutdown signal for event streams. Cheap to clone.
#[derive(Clone)]
pub struct ApiState {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    config: ApiConfig,
    closing: watch::Sender<bool>,
    streams: Arc<Semaphore>,
    workflows: Option<WorkflowRunner>,
}

impl std::fmt::Debug for ApiState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiState")
            .field("client", &self.inner.client)
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl ApiState {
    /// State with default settings.
    pub fn new(client: Client) -> Self {
        ApiState::with_config(client, ApiConfig::default())
    }

    /// State with explicit settings.
    pub fn with_config(client: Client, config: ApiConfig) -> Self {
        let (closing, _) = watch::channel(false);
        let streams = Arc::new(Semaphore::new(config.max_event_streams));
        ApiState {
            inner: Arc::new(Inner {
                client,
                config,
                closing,
                streams,
                workflows: None,
            }),
        }
    }

    /// The same state with `/workflows` served by `runner` (without one,
    /// those routes answer 503 `workflows_unavailable`). Call it before
    /// cloning the state.
    pub fn with_workflows(self, runner: WorkflowRunner) -> Self {
        let mut inner = Arc::try_unwrap(self.inner).unwrap_or_else(|shared| {
            let (closing, _) = watch::channel(*shared.closing.borrow());
            Inner {
                client: shared.client.clone(),
                config: shared.config.clone(),
                closing,
                streams: Arc::new(Semaphore::new(shared.config.max_event_streams)),
                workflows: None,
            }
        });
        inner.workflows = Some(runner);
        ApiState {
            inner: Arc::new(inner),
        }
    }

    /// The workflow runner behind `/workflows`, if any.
    pub fn workflows(&self) -> Option<&WorkflowRunner> {
        self.inner.workflows.as_ref()
    }

    /// The client the API works through.
    pub fn client(&self) -> &Client {
        &self.inner.client
    }

    /// Ends every open event stream (called by [`serve`] on shutdown).
    pub fn close_event_streams(&self) {
        self.inner.closing.send_replace(true);
    }

    /// Runs one backend call with the configured time bound.
    async fn call<T>(
        &self,
        call: impl Future<Output = Result<T, JobError>>,
    ) -> Result<T, ApiError> {
        self.call_within(self.inner.config.backend_timeout, call)
            .await
    }

    /// Runs one workflow runner call with the configured time bound.
    async fn call_runner<T>(
        &self,
        call: impl Future<Output = Result<T, RunnerError>>,
    ) -> Result<T, ApiError> {
        let timeout = self.inner.config.backend_timeout;
        match tokio::time::timeout(timeout, call).await {
            Ok(result) => result.map_err(ApiError::from),
            Err(_) => Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "backend_timeout",
                format!(
                    "the workflow runner did not answer within {} ms; retry later",
                    timeout.as_millis()
                ),
            )),
        }
    }

    /// Runs one backend call bounded by `timeout`; past it, 503. The call
    /// may still take effect later (a submission then has no id to show;
    /// idempotency keys make resubmitting safe).
    async fn call_within<T>(
        &self,
        timeout: Duration,
        call: impl Future<Output = Result<T, JobError>>,
    ) -> Result<T, ApiError> {
        match tokio::time::timeout(timeout, call).await {
            Ok(result) => result.map_err(ApiError::from),
            Err(_) => Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "backend_timeout",
                format!(
                    "backend `{}` does not answer within {} ms; retry later",
                    self.inner.client.backend().name(),
                    timeout.as_millis()
                ),
            )),
        }
    }
}

/// The API's routes over `state`.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/jobs", post(routes::submit_jobs).get(routes::list_jobs))
        .route(
            "/jobs/{id}",
            get(routes::get_job).delete(routes::cancel_job),
        )
        .route("/jobs/{id}/retry", post(routes::retry_job))
        .route("/queues/stats", get(routes::queue_stats))
        .route("/health", get(routes::health))
        .route("/metrics", get(routes::metrics))
        .route("/events", get(events::events))
        .route("/workflows", post(workflows::submit))
        .route(
            "/workflows/{id}",
            get(workflows::get).delete(workflows::cancel),
        )
        .route("/workflows/{id}/history", get(workflows::history))
        .route("/workflows/{id}/state", get(workflows::state))
        .fallback(routes::not_found)
        .method_not_allowed_fallback(routes::method_not_allowed)
        .with_state(state)
}

/// Serves the API on `listener` (with `TCP_NODELAY`, so small answers are
/// not held back) until `shutdown` completes; then ends event streams,
/// stops accepting, and waits for in-flight requests.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: ApiState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with_routes(listener, state, Router::new(), shutdown).await
}

/// [`serve`], with `extra` routes (say, a cluster's `/cluster/...`) merged
/// into the API. `extra` must not set a fallback.
pub async fn serve_with_routes(
    listener: tokio::net::TcpListener,
    state: ApiState,
    extra: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, backend = state.client().backend().name(), "HTTP API listening");
    }
    let app = router(state.clone()).merge(extra);
    let listener = listener.tap_io(|tcp| {
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::debug!(%error, "could not set TCP_NODELAY");
        }
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.await;
            state.close_event_streams();
        })
        .await
}
