//! Submits a batch with mixed priorities and a delayed job to a node's HTTP
//! API, then follows them until they finish. Any language can do the same
//! with plain HTTP and JSON.
//!
//! Run a worker first (`cargo run --example simple_worker`), then:
//! `cargo run --example submit_jobs` (API at http://127.0.0.1:3000, or
//! IRONFORGE_API).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let api = std::env::var("IRONFORGE_API").unwrap_or_else(|_| "http://127.0.0.1:3000".into());
    let http = reqwest::Client::new();
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as u64;
    let batch = json!({ "jobs": [
        { "kind": "resize_image", "payload": { "width": 800 }, "priority": "low" },
        { "kind": "send_email", "payload": { "to": "ada@example.com" }, "priority": "critical" },
        { "kind": "resize_image", "payload": { "width": 1600 }, "priority": "high" },
        { "kind": "send_email", "payload": { "to": "nobody" }, "priority": "medium", "max_retries": 3 },
        { "kind": "send_email", "payload": { "to": "later@example.com" }, "run_at": now_ms + 1_000 },
    ]});
    let answer: Value = http
        .post(format!("{api}/jobs"))
        .json(&batch)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let ids: Vec<String> = answer["jobs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|job| job["id"].as_str().map(str::to_owned))
        .collect();
    println!("submitted {} jobs", ids.len());

    let deadline = Instant::now() + Duration::from_secs(30);
    let mut pending = ids.clone();
    while !pending.is_empty() {
        anyhow::ensure!(
            Instant::now() < deadline,
            "jobs still unfinished: {pending:?}"
        );
        let mut still = Vec::new();
        for id in pending {
            let job: Value = http
                .get(format!("{api}/jobs/{id}"))
                .send()
                .await?
                .json()
                .await?;
            match job["status"].as_str() {
                Some("completed") => println!(
                    "{} {:<12} {:<8} completed -> {}",
                    id,
                    job["kind"].as_str().unwrap_or("?"),
                    job["priority"].as_str().unwrap_or("?"),
                    job["result"]
                ),
                Some("dead") => println!(
                    "{} {:<12} {:<8} dead: {}",
                    id,
                    job["kind"].as_str().unwrap_or("?"),
                    job["priority"].as_str().unwrap_or("?"),
                    job["last_error"]
                ),
                _ => still.push(id),
            }
        }
        pending = still;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}
