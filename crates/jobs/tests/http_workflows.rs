//! `/workflows` over real HTTP on a real engine: submit, read, history,
//! replayed state, cancel, and the 400s that name the offending keys; on
//! the embedded store and on Redis.

use std::time::Duration;

use ironforge_jobs::engine::{Engine, EngineConfig, Store};
use ironforge_jobs::testkit::RedisServer;
use ironforge_jobs::workflow::{replay, WorkflowEvent, WorkflowSpec, WorkflowState};
use ironforge_jobs::{HandlerError, RedisConfig, Registry, WorkerConfig};
use reqwest::StatusCode;
use serde_json::{json, Value};

async fn call(request: reqwest::RequestBuilder) -> (StatusCode, Value) {
    let response = request.send().await.unwrap();
    let status = response.status();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, body)
}

async fn start(store: Store) -> (Engine, String) {
    let mut handlers = Registry::new();
    handlers
        .register_fn("ok", |ctx| async move { Ok(ctx.payload().clone()) })
        .register_fn("fail", |_| async { Err(HandlerError::permanent("boom")) });
    let engine = Engine::start(EngineConfig {
        http: Some("127.0.0.1:0".parse().unwrap()),
        worker: Some((
            handlers,
            WorkerConfig {
                idle_wait: Duration::from_millis(20),
                ..WorkerConfig::default()
            },
        )),
        ..EngineConfig::new(store)
    })
    .await
    .unwrap();
    let base = format!("http://{}", engine.http_addr().unwrap());
    (engine, base)
}

fn diamond() -> Value {
    json!({
        "name": "diamond",
        "failure_policy": "skip_dependants",
        "jobs": [
            {"key": "a", "spec": {"kind": "ok"}},
            {"key": "b", "spec": {"kind": "ok", "payload": {"n": 1}}, "depends_on": ["a"]},
            {"key": "c", "spec": {"kind": "fail", "max_retries": 0}, "depends_on": ["a"]},
            {"key": "d", "spec": {"kind": "ok"}, "depends_on": ["b"]},
            {"key": "e", "spec": {"kind": "ok"}, "depends_on": ["c"]}
        ]
    })
}

async fn wait_finished(http: &reqwest::Client, base: &str, id: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = call(http.get(format!("{base}/workflows/{id}"))).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        if body["status"] != "running" {
            return body;
        }
        assert!(tokio::time::Instant::now() < deadline, "{body:#}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn submit_read_history_and_replay(store: Store) {
    let (engine, base) = start(store).await;
    let http = reqwest::Client::new();

    let (status, body) = call(http.post(format!("{base}/workflows")).json(&diamond())).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let id = body["id"].as_str().unwrap().to_string();
    assert_eq!(body["jobs"], 5);

    let done = wait_finished(&http, &base, &id).await;
    assert_eq!(done["status"], "failed", "{done:#}");
    assert_eq!(done["id"], id.as_str());
    assert_eq!(done["name"], "diamond");
    assert_eq!(done["jobs"]["d"]["state"], "completed");
    assert_eq!(done["jobs"]["c"]["state"], "failed");
    assert_eq!(done["jobs"]["e"]["state"], "skipped");
    assert_eq!(done["counts"]["completed"], 3);
    // Each job names its id in the queue, and the job is there.
    let b_id = done["jobs"]["b"]["job_id"].as_str().unwrap();
    let (status, job) = call(http.get(format!("{base}/jobs/{b_id}"))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(job["status"], "completed");
    assert_eq!(job["result"], json!({"n": 1}));

    let (status, history) = call(http.get(format!("{base}/workflows/{id}/history"))).await;
    assert_eq!(status, StatusCode::OK);
    let events: Vec<WorkflowEvent> = serde_json::from_value(history["events"].clone()).unwrap();
    let spec: WorkflowSpec = serde_json::from_value(history["spec"].clone()).unwrap();
    assert_eq!(events.first().map(|e| e.seq), Some(1));
    let last = events.len() as u64;
    assert_eq!(events.last().map(|e| e.seq), Some(last));

    for until in [1, last / 2, last] {
        let (status, body) =
            call(http.get(format!("{base}/workflows/{id}/state?until={until}"))).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let served: WorkflowState = serde_json::from_value(body).unwrap();
        assert_eq!(served, replay(&spec, &events, until).unwrap());
    }
    let (status, body) = call(http.get(format!("{base}/workflows/{id}/state"))).await;
    assert_eq!((status, body["seq"].as_u64()), (StatusCode::OK, Some(last)));
    let (status, body) =
        call(http.get(format!("{base}/workflows/{id}/state?until={}", last + 1))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["code"], "seq_out_of_range");
    let (status, body) = call(http.get(format!("{base}/workflows/{id}/state?until=soon"))).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_seq"))
    );
    engine.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_read_history_and_replay_embedded() {
    let dir = tempfile::tempdir().unwrap();
    submit_read_history_and_replay(Store::Embedded {
        dir: dir.path().into(),
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_read_history_and_replay_redis() {
    let server = RedisServer::start();
    submit_read_history_and_replay(Store::Redis(
        RedisConfig::new(server.url()).namespace("httpwf"),
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_workflows_get_400s_naming_the_offending_keys() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, base) = start(Store::Embedded {
        dir: dir.path().into(),
    })
    .await;
    let http = reqwest::Client::new();
    let post = |body: Value| {
        let request = http.post(format!("{base}/workflows")).json(&body);
        async move { call(request).await }
    };
    let job =
        |key: &str, deps: &[&str]| json!({"key": key, "spec": {"kind": "ok"}, "depends_on": deps});

    let (status, body) =
        post(json!({"jobs": [job("x", &["z"]), job("y", &["x"]), job("z", &["y"])]})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["code"], "cycle");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("`x`") && message.contains("`y`") && message.contains("`z`"),
        "{message}"
    );

    let (status, body) = post(json!({"jobs": [job("a", &[]), job("b", &["ghost"])]})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["code"], "unknown_dependencies");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("`b` -> `ghost`"), "{message}");

    let (status, body) = post(json!({"jobs": [job("same", &[]), job("same", &[])]})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["code"], "duplicate_keys");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("`same`"));

    let (status, body) = post(json!({"jobs": [job("a", &[])], "retries": 3})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["code"], "malformed_workflow");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("retries"));

    let (status, body) = call(
        http.post(format!("{base}/workflows"))
            .header("content-type", "application/json")
            .body("{\"jobs\": ["),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("malformed_workflow"))
    );

    let (status, body) = post(json!({"jobs": []})).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("empty_workflow"))
    );

    let (status, body) = call(http.get(format!("{base}/workflows/not-a-uuid"))).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_id"))
    );
    assert_eq!(engine.client().stats().await.unwrap().queued.total(), 0);
    engine.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_cancels_what_has_not_run_and_unknown_ids_are_404() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, base) = start(Store::Embedded {
        dir: dir.path().into(),
    })
    .await;
    let http = reqwest::Client::new();
    let far = ironforge_jobs::clock::now_ms() + 3_600_000;
    let spec = json!({"jobs": [
        {"key": "later", "spec": {"kind": "ok", "run_at": far}},
        {"key": "after", "spec": {"kind": "ok"}, "depends_on": ["later"]}
    ]});
    let (status, body) = call(http.post(format!("{base}/workflows")).json(&spec)).await;
    assert_eq!(status, StatusCode::CREATED);
    let id = body["id"].as_str().unwrap().to_string();

    let (status, body) = call(http.delete(format!("{base}/workflows/{id}"))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "cancelled");
    assert_eq!(body["jobs"]["later"]["state"], "cancelled");
    assert_eq!(body["jobs"]["after"]["state"], "cancelled");
    let later = body["jobs"]["later"]["job_id"].as_str().unwrap();
    let (_, job) = call(http.get(format!("{base}/jobs/{later}"))).await;
    assert_eq!(job["status"], "cancelled");

    let unknown = ironforge_jobs::workflow::WorkflowId::new_random();
    for request in [
        http.delete(format!("{base}/workflows/{unknown}")),
        http.get(format!("{base}/workflows/{unknown}")),
        http.get(format!("{base}/workflows/{unknown}/history")),
        http.get(format!("{base}/workflows/{unknown}/state?until=1")),
    ] {
        let (status, body) = call(request).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
        assert_eq!(body["error"]["code"], "not_found");
    }
    engine.shutdown(Duration::from_secs(1)).await;
}
