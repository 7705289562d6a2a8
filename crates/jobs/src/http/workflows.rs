//! The `/workflows` handlers: submit a DAG, read its state and history,
//! replay it up to an event, cancel it. Each is one call to the
//! [`WorkflowRunner`] (bounded by the API's backend timeout), answered as JSON.

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::body::JsonBytes;
use super::error::ApiError;
use super::ApiState;
use crate::workflow::{
    workflow_job_id, RunnerError, WorkflowId, WorkflowRunner, WorkflowSpec, WorkflowSummary,
};

/// A workflow id taken from the path, refused with a JSON 400 when it is not a UUID.
pub(super) struct WorkflowIdParam(WorkflowId);

impl<S: Send + Sync> FromRequestParts<S> for WorkflowIdParam {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e: PathRejection| ApiError::bad_request("invalid_path", e.body_text()))?;
        raw.parse::<WorkflowId>()
            .map(WorkflowIdParam)
            .map_err(ApiError::from)
    }
}

fn runner(state: &ApiState) -> Result<&WorkflowRunner, ApiError> {
    state.workflows().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "workflows_unavailable",
            "this server runs no workflow runner; start it through `Engine` or `ironforge node start`",
        )
    })
}

fn not_found(id: WorkflowId) -> ApiError {
    RunnerError::NotFound(id).into()
}

/// The summary as JSON, each job with the id it has (or will have) in the queue.
fn summary_json(id: WorkflowId, summary: &WorkflowSummary) -> Value {
    let mut value = serde_json::to_value(summary).unwrap_or(Value::Null);
    value["id"] = json!(id);
    if let Some(jobs) = value.get_mut("jobs").and_then(Value::as_object_mut) {
        for (key, record) in jobs.iter_mut() {
            if let Some(record) = record.as_object_mut() {
                record.insert("job_id".into(), json!(workflow_job_id(id, key)));
            }
        }
    }
    value
}

/// `POST /workflows`: 201 `{"id"}` with a `Location`; 400 naming the keys
/// of a cycle, an unknown dependency or a duplicate key.
pub(super) async fn submit(
    State(state): State<ApiState>,
    JsonBytes(body): JsonBytes,
) -> Result<Response, ApiError> {
    let runner = runner(&state)?;
    let spec = WorkflowSpec::from_json(&body)?;
    let jobs = spec.jobs.len();
    let id = state.call_runner(runner.submit(spec)).await?;
    let location = format!("/workflows/{id}");
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(json!({"id": id, "jobs": jobs, "partition": runner.partition_of(id)})),
    )
        .into_response())
}

/// `GET /workflows/{id}`: status, counts, and each job's state and job id.
pub(super) async fn get(
    State(state): State<ApiState>,
    WorkflowIdParam(id): WorkflowIdParam,
) -> Result<Response, ApiError> {
    let runner = runner(&state)?;
    match state.call_runner(runner.get(id)).await? {
        Some(summary) => Ok(Json(summary_json(id, &summary)).into_response()),
        None => Err(not_found(id)),
    }
}

/// `DELETE /workflows/{id}`: cancels what has not started; answers the
/// workflow as `GET` would.
pub(super) async fn cancel(
    State(state): State<ApiState>,
    WorkflowIdParam(id): WorkflowIdParam,
) -> Result<Response, ApiError> {
    let runner = runner(&state)?;
    state.call_runner(runner.cancel(id)).await?;
    match state.call_runner(runner.get(id)).await? {
        Some(summary) => Ok(Json(summary_json(id, &summary)).into_response()),
        None => Ok(Json(json!({"id": id, "status": "cancelled"})).into_response()),
    }
}

/// `GET /workflows/{id}/history`: the spec and every event, by seq.
pub(super) async fn history(
    State(state): State<ApiState>,
    WorkflowIdParam(id): WorkflowIdParam,
) -> Result<Response, ApiError> {
    let runner = runner(&state)?;
    let record = state
        .call_runner(runner.history(id))
        .await?
        .ok_or_else(|| not_found(id))?;
    Ok(Json(json!({
        "id": id,
        "partition": record.partition,
        "spec": record.spec,
        "events": record.events,
    }))
    .into_response())
}

#[derive(Deserialize)]
pub(super) struct StateParams {
    until: Option<String>,
}

/// `GET /workflows/{id}/state?until=N`: the state rebuilt from the events
/// up to seq N (all of them without `until`); 400 when N is past the end.
pub(super) async fn state(
    State(state): State<ApiState>,
    WorkflowIdParam(id): WorkflowIdParam,
    params: Result<Query<StateParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let runner = runner(&state)?;
    let Query(params) =
        params.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    let until = match params.until {
        None => None,
        Some(raw) => Some(raw.parse::<u64>().map_err(|_| {
            ApiError::bad_request(
                "invalid_seq",
                format!("`until` must be an event seq (a whole number), got `{raw}`"),
            )
        })?),
    };
    let replayed = match until {
        Some(seq) => state.call_runner(runner.replay_until(id, seq)).await?,
        None => {
            state
                .call_runner(runner.get(id))
                .await?
                .ok_or_else(|| not_found(id))?
                .state
        }
    };
    let mut value = serde_json::to_value(&replayed).unwrap_or(Value::Null);
    value["id"] = json!(id);
    Ok(Json(value).into_response())
}
