//! The HTTP API over the Redis Streams backend while the Redis server goes
//! away and comes back: a real `redis-server` on an ephemeral port, a real
//! API server. While Redis is down, health and submissions answer 503 with
//! a JSON error naming the backend; metrics still answer; once Redis is
//! back, the API recovers by itself and the stored job is still there.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ironforge_jobs::http::{serve, ApiConfig, ApiState};
use ironforge_jobs::testkit::RedisServer;
use ironforge_jobs::{Client, RedisBackend, RedisConfig};
use reqwest::StatusCode;
use serde_json::{json, Value};

async fn call(request: reqwest::RequestBuilder) -> (StatusCode, Value) {
    let response = request.send().await.unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    (status, body)
}

fn assert_unavailable(status: StatusCode, body: &Value) {
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    let code = body["error"]["code"].as_str().unwrap_or_default();
    assert!(
        code == "backend_unavailable" || code == "backend_timeout",
        "{body}"
    );
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(!message.is_empty(), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_answers_503_while_redis_is_down_and_recovers() {
    let mut redis = RedisServer::start();
    let mut config = RedisConfig::new(redis.url()).namespace("http");
    config.response_timeout = Duration::from_millis(500);
    config.connect_timeout = Duration::from_millis(500);
    let backend = Arc::new(RedisBackend::connect(config).await.unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(
        listener,
        // Short bounds: the backend's own reconnect retries take seconds.
        ApiState::with_config(
            Client::new(backend),
            ApiConfig {
                backend_timeout: Duration::from_secs(1),
                health_timeout: Duration::from_millis(500),
                ..ApiConfig::default()
            },
        ),
        async move {
            let _ = stopped.await;
        },
    ));
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let url = |path: &str| format!("{base}{path}");

    let (status, body) = call(http.get(url("/health"))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({"status": "ok", "backend": "redis"}));
    let (status, body) = call(http.post(url("/jobs")).json(&json!({"kind": "echo"}))).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let id = body["id"].as_str().unwrap().to_string();

    redis.stop();
    let (status, body) = call(http.get(url("/health"))).await;
    assert_unavailable(status, &body);
    assert_eq!(body["backend"], json!("redis"));
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("backend `redis` does not answer"));
    let (status, body) = call(http.post(url("/jobs")).json(&json!({"kind": "echo"}))).await;
    assert_unavailable(status, &body);
    let (status, body) = call(http.get(url(&format!("/jobs/{id}")))).await;
    assert_unavailable(status, &body);
    let metrics = http.get(url("/metrics")).send().await.unwrap();
    assert_eq!(metrics.status(), StatusCode::OK);
    let text = metrics.text().await.unwrap();
    assert!(text.contains("ironforge_jobs_submitted_total{kind=\"echo\",priority=\"medium\"} 1"));
    assert!(
        !text.contains("ironforge_queue_depth"),
        "no gauges without Redis"
    );

    redis.restart();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = call(http.get(url("/health"))).await;
        if status == StatusCode::OK {
            break;
        }
        assert!(Instant::now() < deadline, "API never recovered: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, job) = call(http.get(url(&format!("/jobs/{id}")))).await;
    assert_eq!(status, StatusCode::OK, "{job}");
    assert_eq!(job["status"], json!("queued"));

    let _ = stop.send(());
    server.await.unwrap().unwrap();
}
