//! The HTTP API against a real server on 127.0.0.1 (ephemeral port), the
//! embedded backend in a temp dir and a real worker running handlers:
//! submit, get, cancel, retry from the dead letters, list, stats, health,
//! metrics, the event stream, and every kind of bad input.

use std::sync::Arc;
use std::time::Duration;

use ironforge_jobs::http::{serve, ApiConfig, ApiState};
use ironforge_jobs::{
    BackoffPolicy, Client, ClientConfig, EmbeddedBackend, EmbeddedConfig, EventBus, HandlerError,
    JobEvent, JobId, JobStatus, Observers, QueueBackend, Registry, SchedulerConfig, Worker,
    WorkerConfig, WorkerHandle,
};
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::sync::{broadcast, oneshot, Semaphore};

const WAIT: Duration = Duration::from_secs(10);

struct Server {
    base: String,
    http: reqwest::Client,
    backend: Arc<dyn QueueBackend>,
    observers: Observers,
    /// Each permit lets one `block` job finish.
    gate: Arc<Semaphore>,
    worker: Option<WorkerHandle>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    _dir: tempfile::TempDir,
}

impl Server {
    async fn start(with_worker: bool) -> Server {
        Server::start_with(with_worker, Observers::default(), ApiConfig::default()).await
    }

    async fn start_with(with_worker: bool, observers: Observers, config: ApiConfig) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let backend: Arc<dyn QueueBackend> = Arc::new(
            EmbeddedBackend::open(dir.path().join("jobs.redb"), EmbeddedConfig::default()).unwrap(),
        );
        let client = Client::with_config(
            backend.clone(),
            ClientConfig {
                observers: observers.clone(),
                ..ClientConfig::default()
            },
        );
        let gate = Arc::new(Semaphore::new(0));
        let worker = with_worker.then(|| {
            let mut registry = Registry::new();
            registry.register_fn("echo", |ctx| async move { Ok(ctx.payload().clone()) });
            registry.register_fn("fail", |_ctx| async move {
                Err(HandlerError::retryable("this handler always fails"))
            });
            let gate = gate.clone();
            registry.register_fn("block", move |_ctx| {
                let gate = gate.clone();
                async move {
                    gate.acquire()
                        .await
                        .map_err(|e| HandlerError::retryable(e.to_string()))?
                        .forget();
                    Ok(Value::Null)
                }
            });
            let config = WorkerConfig {
                consumer: "http-test".into(),
                concurrency: 4,
                idle_wait: Duration::from_millis(20),
                backoff: BackoffPolicy {
                    base_ms: 10,
                    cap_ms: 50,
                },
                scheduler: Some(SchedulerConfig {
                    promote_interval: Duration::from_millis(10),
                    ..SchedulerConfig::default()
                }),
                ..WorkerConfig::default()
            };
            Worker::start(backend.clone(), registry, config, observers.clone())
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        let state = ApiState::with_config(client, config);
        let task = tokio::spawn(serve(listener, state, async move {
            let _ = stopped.await;
        }));
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        Server {
            base,
            http,
            backend,
            observers,
            gate,
            worker,
            stop: Some(stop),
            task,
            _dir: dir,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        let response = self
            .http
            .post(self.url(path))
            .json(&body)
            .send()
            .await
            .unwrap();
        decode(response).await
    }

    async fn post_raw(&self, path: &str, content_type: &str, body: Vec<u8>) -> (StatusCode, Value) {
        let response = self
            .http
            .post(self.url(path))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        decode(response).await
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        decode(self.http.get(self.url(path)).send().await.unwrap()).await
    }

    async fn delete(&self, path: &str) -> (StatusCode, Value) {
        decode(self.http.delete(self.url(path)).send().await.unwrap()).await
    }

    async fn submit(&self, body: Value) -> JobId {
        let (status, answer) = self.post("/jobs", body).await;
        assert_eq!(status, StatusCode::CREATED, "{answer}");
        answer["id"].as_str().unwrap().parse().unwrap()
    }

    async fn stop(mut self) {
        if let Some(worker) = self.worker.take() {
            worker.shutdown(Duration::from_secs(1)).await;
        }
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(WAIT, self.task)
            .await
            .expect("server stops on shutdown")
            .unwrap()
            .unwrap();
    }
}

async fn decode(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    let text = response.text().await.unwrap();
    let value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    (status, value)
}

/// Waits for the event saying `id` reached `status`.
async fn await_status(events: &mut broadcast::Receiver<JobEvent>, id: JobId, status: JobStatus) {
    tokio::time::timeout(WAIT, async {
        loop {
            match events.recv().await {
                Ok(e) if e.id == id && e.status == status => return,
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(e) => panic!("event bus closed: {e}"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("job {id} never became {status}"));
}

fn assert_error(status: StatusCode, body: &Value, want_status: StatusCode, want_code: &str) {
    assert_eq!(status, want_status, "{body}");
    assert_eq!(body["error"]["code"], json!(want_code), "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(!message.is_empty(), "error without a message: {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_one_job_then_get_it_completed() {
    let server = Server::start(true).await;
    let mut events = server.observers.events.subscribe();
    let response = server
        .http
        .post(server.url("/jobs"))
        .json(&json!({"kind": "echo", "payload": {"n": 7}, "priority": "high"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let location = response.headers()["location"].to_str().unwrap().to_string();
    let (_, answer) = decode(response).await;
    assert_eq!(answer["duplicate"], json!(false));
    let id: JobId = answer["id"].as_str().unwrap().parse().unwrap();
    assert_eq!(location, format!("/jobs/{id}"));

    await_status(&mut events, id, JobStatus::Completed).await;
    let (status, job) = server.get(&location).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(job["status"], json!("completed"));
    assert_eq!(job["priority"], json!("high"));
    assert_eq!(job["result"], json!({"n": 7}));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_batches_in_both_forms() {
    let server = Server::start(false).await;
    let (status, answer) = server
        .post(
            "/jobs",
            json!({"jobs": [{"kind": "echo"}, {"kind": "echo", "priority": "low"}]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    let wrapped = answer["jobs"].as_array().unwrap().clone();
    let (status, answer) = server
        .post(
            "/jobs",
            json!([{"kind": "a"}, {"kind": "b"}, {"kind": "c"}]),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    let bare = answer["jobs"].as_array().unwrap().clone();
    assert_eq!((wrapped.len(), bare.len()), (2, 3));
    for entry in wrapped.iter().chain(&bare) {
        assert_eq!(entry["duplicate"], json!(false));
        let (status, job) = server
            .get(&format!("/jobs/{}", entry["id"].as_str().unwrap()))
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(job["status"], json!("queued"));
    }
    let (_, low) = server
        .get(&format!("/jobs/{}", wrapped[1]["id"].as_str().unwrap()))
        .await;
    assert_eq!(low["priority"], json!("low"));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_idempotency_key_returns_the_first_id_with_a_flag() {
    let server = Server::start(false).await;
    let body = json!({"kind": "echo", "idempotency_key": "order-42"});
    let (status, first) = server.post("/jobs", body.clone()).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, again) = server.post("/jobs", body).await;
    assert_eq!(status, StatusCode::OK, "nothing new was created: {again}");
    assert_eq!(again["id"], first["id"]);
    assert_eq!(again["duplicate"], json!(true));
    let (status, batch) = server
        .post(
            "/jobs",
            json!([{"kind": "echo", "idempotency_key": "order-42"}, {"kind": "echo"}]),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(batch["jobs"][0]["id"], first["id"]);
    assert_eq!(batch["jobs"][0]["duplicate"], json!(true));
    assert_eq!(batch["jobs"][1]["duplicate"], json!(false));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_scheduled_job_and_refuse_running_finished_and_unknown() {
    let server = Server::start(true).await;
    let mut events = server.observers.events.subscribe();
    let far = ironforge_jobs::clock::now_ms() + 3_600_000;
    let scheduled = server.submit(json!({"kind": "echo", "run_at": far})).await;
    let (status, answer) = server.delete(&format!("/jobs/{scheduled}")).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["status"], json!("cancelled"));
    let (_, job) = server.get(&format!("/jobs/{scheduled}")).await;
    assert_eq!(job["status"], json!("cancelled"));
    let (status, answer) = server.delete(&format!("/jobs/{scheduled}")).await;
    assert_error(status, &answer, StatusCode::CONFLICT, "invalid_state");

    let running = server.submit(json!({"kind": "block"})).await;
    await_status(&mut events, running, JobStatus::Running).await;
    let (status, answer) = server.delete(&format!("/jobs/{running}")).await;
    assert_error(status, &answer, StatusCode::CONFLICT, "invalid_state");
    assert!(answer["error"]["message"]
        .as_str()
        .unwrap()
        .contains("running"));
    server.gate.add_permits(1);
    await_status(&mut events, running, JobStatus::Completed).await;
    let (status, answer) = server.delete(&format!("/jobs/{running}")).await;
    assert_error(status, &answer, StatusCode::CONFLICT, "invalid_state");

    let (status, answer) = server
        .delete(&format!("/jobs/{}", JobId::new_random()))
        .await;
    assert_error(status, &answer, StatusCode::NOT_FOUND, "not_found");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_job_is_listed_and_retried_with_attempts_reset() {
    let server = Server::start(true).await;
    let mut events = server.observers.events.subscribe();
    let id = server
        .submit(json!({"kind": "fail", "max_retries": 1}))
        .await;
    await_status(&mut events, id, JobStatus::Dead).await;
    let (_, job) = server.get(&format!("/jobs/{id}")).await;
    assert_eq!(job["attempts"], json!(2));
    assert_eq!(job["last_error"], json!("this handler always fails"));

    let (status, listed) = server.get("/jobs?status=dead&limit=10").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listed["count"], json!(1));
    assert_eq!(listed["jobs"][0]["id"], json!(id.to_string()));

    // Not dead any more once retried; the first retry keeps its attempts.
    let (status, answer) = server
        .post(
            &format!("/jobs/{id}/retry"),
            json!({"reset_attempts": true}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["status"], json!("queued"));
    await_status(&mut events, id, JobStatus::Dead).await;
    let (_, job) = server.get(&format!("/jobs/{id}")).await;
    assert_eq!(
        job["attempts"],
        json!(2),
        "reset to 0, then two attempts again"
    );

    // Without a body (here with curl's `-d ''` form type), attempts carry
    // on: one more attempt exhausts it.
    let response = server
        .http
        .post(server.url(&format!("/jobs/{id}/retry")))
        .header("content-type", "application/x-www-form-urlencoded")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    await_status(&mut events, id, JobStatus::Dead).await;
    let (_, job) = server.get(&format!("/jobs/{id}")).await;
    assert_eq!(job["attempts"], json!(3));

    let done = server.submit(json!({"kind": "echo"})).await;
    await_status(&mut events, done, JobStatus::Completed).await;
    let (status, answer) = server.post(&format!("/jobs/{done}/retry"), json!({})).await;
    assert_error(status, &answer, StatusCode::CONFLICT, "invalid_state");
    let (status, answer) = server
        .post(&format!("/jobs/{}/retry", JobId::new_random()), json!({}))
        .await;
    assert_error(status, &answer, StatusCode::NOT_FOUND, "not_found");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_by_status_honours_limit_and_refuses_bad_parameters() {
    let server = Server::start(false).await;
    let far = ironforge_jobs::clock::now_ms() + 3_600_000;
    for _ in 0..3 {
        server.submit(json!({"kind": "echo", "run_at": far})).await;
    }
    server.submit(json!({"kind": "echo"})).await;
    let (status, page) = server.get("/jobs?status=scheduled&limit=2").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["count"], json!(2));
    assert!(page["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .all(|j| j["status"] == json!("scheduled")));
    let (_, all) = server.get("/jobs?status=scheduled").await;
    assert_eq!(all["count"], json!(3));
    let (_, queued) = server.get("/jobs?status=queued&limit=5000").await;
    assert_eq!(queued["count"], json!(1));

    let (status, body) = server.get("/jobs?status=sleeping").await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "unknown_status");
    let (status, body) = server.get("/jobs?status=dead&limit=ten").await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_limit");
    let (status, body) = server.get("/jobs?status=dead&limit=-1").await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_limit");
    let (status, body) = server.get("/jobs").await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "missing_status");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_stats_count_by_priority_and_status() {
    let server = Server::start(false).await;
    let far = ironforge_jobs::clock::now_ms() + 3_600_000;
    server
        .post(
            "/jobs",
            json!([
                {"kind": "echo", "priority": "high"},
                {"kind": "echo", "priority": "high"},
                {"kind": "echo", "priority": "low"},
                {"kind": "echo", "run_at": far},
            ]),
        )
        .await;
    let (status, stats) = server.get("/queues/stats").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(stats["queued"]["high"], json!(2));
    assert_eq!(stats["queued"]["low"], json!(1));
    assert_eq!(stats["queued"]["critical"], json!(0));
    assert_eq!(stats["scheduled"], json!(1));
    assert_eq!(stats["dead"], json!(0));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_names_the_backend_and_is_503_once_it_is_gone() {
    let server = Server::start(false).await;
    let (status, body) = server.get("/health").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({"status": "ok", "backend": "embedded"}));

    server.backend.close().await.unwrap();
    let (status, body) = server.get("/health").await;
    assert_error(
        status,
        &body,
        StatusCode::SERVICE_UNAVAILABLE,
        "backend_closed",
    );
    assert_eq!(body["backend"], json!("embedded"));
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("backend `embedded` does not answer"));
    let (status, body) = server.post("/jobs", json!({"kind": "echo"})).await;
    assert_error(
        status,
        &body,
        StatusCode::SERVICE_UNAVAILABLE,
        "backend_closed",
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_expose_every_name_with_counts() {
    let server = Server::start(true).await;
    let mut events = server.observers.events.subscribe();
    let ok1 = server
        .submit(json!({"kind": "echo", "priority": "critical"}))
        .await;
    let ok2 = server
        .submit(json!({"kind": "echo", "priority": "critical"}))
        .await;
    let bad = server
        .submit(json!({"kind": "fail", "max_retries": 1}))
        .await;
    for id in [ok1, ok2] {
        await_status(&mut events, id, JobStatus::Completed).await;
    }
    await_status(&mut events, bad, JobStatus::Dead).await;

    let response = server
        .http
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = response.text().await.unwrap();
    for name in [
        "ironforge_jobs_submitted_total",
        "ironforge_jobs_completed_total",
        "ironforge_jobs_failed_total",
        "ironforge_jobs_retried_total",
        "ironforge_jobs_dlq_total",
        "ironforge_queue_depth",
        "ironforge_dlq_depth",
        "ironforge_active_jobs",
        "ironforge_job_duration_seconds",
        "ironforge_job_wait_time_seconds",
    ] {
        assert!(
            text.contains(&format!("# HELP {name} ")),
            "no HELP for {name}:\n{text}"
        );
        assert!(
            text.contains(&format!("# TYPE {name} ")),
            "no TYPE for {name}:\n{text}"
        );
    }
    // Completions are counted when their batched acknowledgement lands,
    // just before the completed event, so these are settled.
    for line in [
        r#"ironforge_jobs_submitted_total{kind="echo",priority="critical"} 2"#,
        r#"ironforge_jobs_submitted_total{kind="fail",priority="medium"} 1"#,
        r#"ironforge_jobs_completed_total{kind="echo"} 2"#,
        r#"ironforge_jobs_failed_total{kind="fail"} 2"#,
        r#"ironforge_jobs_retried_total{kind="fail"} 1"#,
        r#"ironforge_jobs_dlq_total{kind="fail"} 1"#,
        "ironforge_dlq_depth 1",
        r#"ironforge_job_duration_seconds_count{kind="echo",status="completed"} 2"#,
        r#"ironforge_job_duration_seconds_count{kind="fail",status="failed"} 2"#,
        r#"ironforge_job_wait_time_seconds_count{kind="echo"} 2"#,
        r#"ironforge_job_duration_seconds_bucket{kind="echo",status="completed",le="+Inf"} 2"#,
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing `{line}` in\n{text}"
        );
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_stream_delivers_the_life_of_a_submitted_job() {
    let server = Server::start(true).await;
    let mut stream = server.http.get(server.url("/events")).send().await.unwrap();
    assert_eq!(stream.status(), StatusCode::OK);
    assert_eq!(stream.headers()["content-type"], "text/event-stream");
    let id = server.submit(json!({"kind": "echo"})).await;

    let mut seen = String::new();
    let statuses = tokio::time::timeout(WAIT, async {
        loop {
            let chunk = stream.chunk().await.unwrap().expect("stream stays open");
            seen.push_str(&String::from_utf8_lossy(&chunk));
            let mine: Vec<String> = seen
                .split("\n\n")
                .filter_map(|frame| {
                    let data = frame.lines().find_map(|l| l.strip_prefix("data: "))?;
                    assert!(frame.lines().any(|l| l == "event: job"), "{frame}");
                    let event: JobEvent = serde_json::from_str(data).ok()?;
                    (event.id == id).then(|| event.status.to_string())
                })
                .collect();
            if mine.iter().any(|s| s == "completed") {
                return mine;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no completed event for {id} in:\n{seen}"));
    // The submitter's `queued` and the worker's `running` race each other
    // (both are emitted after the fact); `completed` always comes last.
    let mut sorted = statuses.clone();
    sorted.sort();
    assert_eq!(sorted, ["completed", "queued", "running"], "{statuses:?}");
    assert_eq!(statuses.last().map(String::as_str), Some("completed"));
    // Shutdown ends the stream rather than waiting for the client to leave.
    server.stop().await;
    let rest = tokio::time::timeout(WAIT, async {
        while let Some(_chunk) = stream.chunk().await.ok().flatten() {}
    })
    .await;
    assert!(rest.is_ok(), "event stream still open after shutdown");
}

/// What a case is, its content type and body, then the status, error code
/// and a word the message must contain.
type BadInput = (
    &'static str,
    String,
    Vec<u8>,
    StatusCode,
    &'static str,
    &'static str,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_json_4xx_naming_the_problem() {
    let server = Server::start(false).await;
    let json_type = "application/json";
    let big_payload = "x".repeat(1024 * 1024 + 10);
    let cases: Vec<BadInput> = vec![
        (
            "malformed JSON",
            json_type.into(),
            br#"{"kind": "echo""#.to_vec(),
            StatusCode::BAD_REQUEST,
            "malformed_json",
            "line 1",
        ),
        (
            "empty body",
            json_type.into(),
            Vec::new(),
            StatusCode::BAD_REQUEST,
            "malformed_json",
            "empty",
        ),
        (
            "wrong field type",
            json_type.into(),
            br#"{"kind": 5}"#.to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            "`kind`",
        ),
        (
            "wrong nested type",
            json_type.into(),
            br#"{"kind": "a", "max_retries": "many"}"#.to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            "`max_retries`",
        ),
        (
            "unknown priority",
            json_type.into(),
            br#"{"kind": "echo", "priority": "urgent"}"#.to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_priority",
            "urgent",
        ),
        (
            "unknown field",
            json_type.into(),
            br#"{"kind": "echo", "colour": 1}"#.to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_field",
            "colour",
        ),
        (
            "missing kind",
            json_type.into(),
            br#"{"payload": 1}"#.to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "missing_field",
            "kind",
        ),
        (
            "empty kind",
            json_type.into(),
            br#"{"kind": ""}"#.to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "empty_kind",
            "kind",
        ),
        (
            "blank kind in a batch",
            json_type.into(),
            br#"[{"kind": "a"}, {"kind": "  "}]"#.to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "empty_kind",
            "job 1",
        ),
        (
            "empty batch",
            json_type.into(),
            b"[]".to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "bad_batch_size",
            "batch",
        ),
        (
            "not an object",
            json_type.into(),
            b"\"echo\"".to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            "a string",
        ),
        (
            "zero timeout",
            json_type.into(),
            br#"{"kind": "a", "timeout_ms": 0}"#.to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_timeout",
            "timeout_ms",
        ),
        (
            "payload over the limit",
            json_type.into(),
            serde_json::to_vec(&json!({"kind": "a", "payload": big_payload})).unwrap(),
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "payload",
        ),
        (
            "body over the limit",
            json_type.into(),
            vec![b' '; 3 * 1024 * 1024],
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            "body limit",
        ),
        (
            "not JSON",
            "text/plain".into(),
            br#"{"kind": "echo"}"#.to_vec(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "application/json",
        ),
    ];
    for (what, content_type, body, want_status, want_code, mentions) in cases {
        let (status, answer) = server.post_raw("/jobs", &content_type, body).await;
        assert_eq!(status, want_status, "{what}: {answer}");
        assert_eq!(
            answer["error"]["code"],
            json!(want_code),
            "{what}: {answer}"
        );
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(
            message.contains(mentions),
            "{what}: `{message}` should mention `{mentions}`"
        );
    }
    let (status, stats) = server.get("/queues/stats").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        stats["queued"]["low"].as_u64().unwrap() + stats["queued"]["medium"].as_u64().unwrap(),
        0,
        "nothing stored"
    );

    let (status, body) = server.get("/jobs/not-a-uuid").await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_id");
    let (status, body) = server.get(&format!("/jobs/{}", JobId::new_random())).await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");
    let (status, body) = server.get("/nowhere").await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");
    let response = server.http.put(server.url("/jobs")).send().await.unwrap();
    let (status, body) = decode(response).await;
    assert_error(
        status,
        &body,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    );
    let id = JobId::new_random();
    let (status, body) = server
        .post_raw(&format!("/jobs/{id}/retry"), json_type, b"{reset".to_vec())
        .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "malformed_json");
    let (status, body) = server
        .post(&format!("/jobs/{id}/retry"), json!({"reset_attempts": 1}))
        .await;
    assert_error(
        status,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
    );

    // Every prefix of a valid batch is refused as the client's fault, never a 5xx.
    let valid = br#"[{"kind":"a","payload":{"deep":[1,{"x":null}]},"priority":"low","metadata":{"k":"v"}}]"#;
    for cut in 0..valid.len() {
        let (status, body) = server
            .post_raw("/jobs", json_type, valid[..cut].to_vec())
            .await;
        assert!(status.is_client_error(), "prefix {cut}: {status} {body}");
    }
    server.stop().await;
}

/// Reads SSE frames until `done` says the text seen so far is enough.
async fn read_events(stream: &mut reqwest::Response, done: impl Fn(&str) -> bool) -> String {
    let mut seen = String::new();
    let finished = tokio::time::timeout(WAIT, async {
        while !done(&seen) {
            match stream.chunk().await.unwrap() {
                Some(chunk) => seen.push_str(&String::from_utf8_lossy(&chunk)),
                None => return,
            }
        }
    })
    .await;
    assert!(finished.is_ok(), "timed out; saw:\n{seen}");
    seen
}

// Single-threaded runtime: the burst below is published before the server
// task can send anything, so the stream must skip ahead.
#[tokio::test(flavor = "current_thread")]
async fn slow_event_reader_skips_ahead_instead_of_buffering() {
    let observers = Observers {
        events: EventBus::new(16),
        ..Observers::default()
    };
    let server = Server::start_with(false, observers, ApiConfig::default()).await;
    let mut stream = server.http.get(server.url("/events")).send().await.unwrap();
    assert_eq!(stream.status(), StatusCode::OK);
    let burst = 10_000u64;
    for at in 0..burst {
        server.observers.events.publish(JobEvent {
            id: JobId::new_random(),
            kind: Some("burst".into()),
            status: JobStatus::Queued,
            at,
            error: None,
            partition: None,
        });
    }
    let seen = read_events(&mut stream, |seen| {
        seen.contains(&format!("\"at\":{}", burst - 1))
    })
    .await;
    let lagged = seen
        .split("\n\n")
        .find(|frame| frame.lines().any(|l| l == "event: lagged"))
        .unwrap_or_else(|| panic!("no lagged event in:\n{seen}"));
    let data = lagged
        .lines()
        .find_map(|l| l.strip_prefix("data: "))
        .unwrap();
    let skipped = serde_json::from_str::<Value>(data).unwrap()["skipped"]
        .as_u64()
        .unwrap();
    assert_eq!(skipped, burst - 16, "{lagged}");
    let delivered = seen.matches("event: job").count() as u64;
    assert_eq!(delivered, 16, "only what the bus holds is delivered");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_streams_are_capped() {
    let config = ApiConfig {
        max_event_streams: 1,
        ..ApiConfig::default()
    };
    let server = Server::start_with(false, Observers::default(), config).await;
    let first = server.http.get(server.url("/events")).send().await.unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    let (status, body) = server.get("/events").await;
    assert_error(
        status,
        &body,
        StatusCode::SERVICE_UNAVAILABLE,
        "too_many_streams",
    );
    drop(first);
    server.stop().await;
}
