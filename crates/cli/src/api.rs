//! The HTTP side of `job`, `queue`, `workflow` and `cluster`: which node's
//! API to call, one request, and the answer printed as a table for people
//! or as the API's own JSON with `--json`, with exit codes that mean
//! something (0 success, 1 unknown or unreachable, 2 refused input).

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use reqwest::{Method, StatusCode};
use serde_json::Value;

/// Exit code of bad usage or of input the API refused.
pub const USAGE: u8 = 2;

/// Which API to talk to, and how to print.
#[derive(Debug, Args)]
pub struct Api {
    /// Base URL of a node's HTTP API.
    #[arg(long, env = "IRONFORGE_API", default_value = "http://127.0.0.1:3000")]
    pub api: String,
    /// Print the API's JSON for scripts.
    #[arg(long)]
    pub json: bool,
}

/// The API's answer: JSON on success, or the status and the message of its
/// `{"error": {code, message}}`.
pub type Answer = Result<Value, (StatusCode, String)>;

impl Api {
    /// One request; fails only when the API cannot be reached.
    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Result<Answer> {
        let url = format!("{}{path}", self.api.trim_end_matches('/'));
        let mut request = reqwest::Client::new().request(method, &url);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.with_context(|| {
            format!("cannot reach the API at {} (is a node running?)", self.api)
        })?;
        let status = response.status();
        let value: Value = response.json().await.unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(Ok(value));
        }
        let message = value["error"]["message"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| status.to_string());
        Ok(Err((status, message)))
    }

    /// Prints an answer (JSON with `--json`, else `human`) and picks the
    /// exit code.
    pub fn print(&self, answer: Answer, human: impl FnOnce(&Value)) -> Result<ExitCode> {
        match answer {
            Ok(value) if self.json => println!("{}", serde_json::to_string_pretty(&value)?),
            Ok(value) => human(&value),
            Err((status, message)) => {
                eprintln!("{message} (HTTP {})", status.as_u16());
                return Ok(
                    if status.is_client_error() && status != StatusCode::NOT_FOUND {
                        ExitCode::from(USAGE)
                    } else {
                        ExitCode::FAILURE
                    },
                );
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}
