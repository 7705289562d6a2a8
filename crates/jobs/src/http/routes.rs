//! The request handlers: each decodes its input (errors named by
//! [`super::body`]), makes one bounded-time call through the [`crate::Client`]
//! or backend, and answers JSON.

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{header, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use super::body::{decode_retry, decode_submission, JsonBytes, Submission};
use super::error::ApiError;
use super::metrics::{render, PROMETHEUS_CONTENT_TYPE};
use super::{ApiState, DEFAULT_LIST_LIMIT};
use crate::client::MAX_LIST_LIMIT;
use crate::job::{JobId, JobStatus};

/// A job id taken from the path, refused with a JSON 400 when it is not a UUID.
pub(super) struct JobIdParam(JobId);

impl<S: Send + Sync> FromRequestParts<S> for JobIdParam {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e: PathRejection| ApiError::bad_request("invalid_path", e.body_text()))?;
        raw.parse::<JobId>().map(JobIdParam).map_err(ApiError::from)
    }
}

/// `POST /jobs`: one job (answer `{"id","duplicate"}`) or a batch (answer
/// `{"jobs":[{"id","duplicate"}...]}`). 201 when something was created, 200
/// when every job was a duplicate of an earlier idempotency key.
pub(super) async fn submit_jobs(
    State(state): State<ApiState>,
    JsonBytes(body): JsonBytes,
) -> Result<Response, ApiError> {
    let Submission { specs, batch } = decode_submission(&body)?;
    let results = state
        .call(state.inner.client.submit_detailed(specs, batch))
        .await?;
    let status = if results.iter().any(|e| !e.duplicate) {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    if batch {
        return Ok((status, Json(json!({ "jobs": results }))).into_response());
    }
    let first = results.first().copied().ok_or_else(|| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "storage_error",
            "the backend returned no id for the job",
        )
    })?;
    let location = format!("/jobs/{}", first.id);
    Ok((status, [(header::LOCATION, location)], Json(first)).into_response())
}

/// `GET /jobs/{id}`.
pub(super) async fn get_job(
    State(state): State<ApiState>,
    JobIdParam(id): JobIdParam,
) -> Result<Response, ApiError> {
    match state.call(state.inner.client.get(id)).await? {
        Some(job) => Ok(Json(job).into_response()),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("job {id} not found"),
        )),
    }
}

/// `DELETE /jobs/{id}`: cancels a queued, scheduled or retry-pending job;
/// 409 for running and finished ones.
pub(super) async fn cancel_job(
    State(state): State<ApiState>,
    JobIdParam(id): JobIdParam,
) -> Result<Response, ApiError> {
    state.call(state.inner.client.cancel(id)).await?;
    Ok(Json(json!({"id": id, "status": JobStatus::Cancelled})).into_response())
}

/// `POST /jobs/{id}/retry`: re-queues a dead job; optional body
/// `{"reset_attempts": true}`; 409 when the job is not dead.
pub(super) async fn retry_job(
    State(state): State<ApiState>,
    JobIdParam(id): JobIdParam,
    JsonBytes(body): JsonBytes,
) -> Result<Response, ApiError> {
    let request = decode_retry(&body)?;
    state
        .call(state.inner.client.retry(id, request.reset_attempts))
        .await?;
    Ok(Json(
        json!({"id": id, "status": JobStatus::Queued, "reset_attempts": request.reset_attempts}),
    )
    .into_response())
}

#[derive(Deserialize)]
pub(super) struct ListParams {
    status: Option<String>,
    limit: Option<String>,
}

/// `GET /jobs?status=dead&limit=N`: `status` is required; `limit` defaults
/// to [`DEFAULT_LIST_LIMIT`] and is capped at [`MAX_LIST_LIMIT`].
pub(super) async fn list_jobs(
    State(state): State<ApiState>,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(params) =
        params.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    let status: JobStatus = params
        .status
        .ok_or_else(|| {
            ApiError::bad_request(
                "missing_status",
                "query parameter `status` is required (queued, scheduled, running, completed, failed, dead, cancelled)",
            )
        })?
        .parse()?;
    let limit = match params.limit {
        None => DEFAULT_LIST_LIMIT,
        Some(raw) => raw.parse::<usize>().map_err(|_| {
            ApiError::bad_request(
                "invalid_limit",
                format!("`limit` must be a whole number from 0 to {MAX_LIST_LIMIT}, got `{raw}`"),
            )
        })?,
    }
    .min(MAX_LIST_LIMIT);
    let jobs = state.call(state.inner.client.list(status, limit)).await?;
    Ok(Json(json!({"count": jobs.len(), "jobs": jobs})).into_response())
}

/// `GET /queues/stats`: counts per status (queued per priority).
pub(super) async fn queue_stats(State(state): State<ApiState>) -> Result<Response, ApiError> {
    let stats = state.call(state.inner.client.stats()).await?;
    Ok(Json(stats).into_response())
}

/// `GET /health`: 200 when the backend answers, else 503 naming it and why.
/// The probe reads a job (the nil id) so it reaches the store itself, not a
/// cache in front of it.
pub(super) async fn health(State(state): State<ApiState>) -> Response {
    let backend = state.inner.client.backend().name();
    let probe = state.inner.client.get(JobId::from_u128(0));
    match state
        .call_within(state.inner.config.health_timeout, probe)
        .await
    {
        Ok(_) => Json(json!({"status": "ok", "backend": backend})).into_response(),
        Err(error) => {
            let status = if error.status.is_server_error() {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                error.status
            };
            let message = if error.code == "backend_timeout" {
                error.message
            } else {
                format!("backend `{backend}` does not answer: {}", error.message)
            };
            tracing::warn!(%message, "health check failed");
            (
                status,
                Json(json!({
                    "status": "unavailable",
                    "backend": backend,
                    "error": {"code": error.code, "message": message},
                })),
            )
                .into_response()
        }
    }
}

/// `GET /metrics`: Prometheus text. Counters always; queue gauges only
/// when the backend answers within the health timeout (a scrape must not
/// hang on a backend that is away).
pub(super) async fn metrics(State(state): State<ApiState>) -> Response {
    let observers = state.inner.client.observers();
    let probe = state.inner.client.stats();
    let stats = match state
        .call_within(state.inner.config.health_timeout, probe)
        .await
    {
        Ok(stats) => Some(stats),
        Err(error) => {
            tracing::warn!(%error, "queue gauges left out of /metrics");
            None
        }
    };
    let text = render(
        &observers.metrics.snapshot(),
        stats.as_ref(),
        observers.metrics.active_jobs(),
    );
    ([(header::CONTENT_TYPE, PROMETHEUS_CONTENT_TYPE)], text).into_response()
}

/// Unknown paths.
pub(super) async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!(
            "no route for {method} {}; see docs for POST /jobs, GET /jobs/{{id}}, GET /queues/stats, GET /health, GET /metrics, GET /events, POST /workflows, GET /workflows/{{id}}",
            uri.path()
        ),
    )
}

/// Known paths with the wrong method.
pub(super) async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{} does not accept {method}", uri.path()),
    )
}
