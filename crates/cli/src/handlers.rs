//! Handlers `ironforge node start` runs out of the box, for trying the
//! engine without writing code: `echo` returns its payload, `where` returns
//! `{"node": <alias>, "payload": <payload>}` (which node ran it), `sleep`
//! waits `{"ms": N}` (at most a minute), `fail` always fails (so retries and
//! dead letters can be seen).
//!
//! Run log: when the environment variable `IRONFORGE_RUN_LOG` names a file,
//! every start of a built-in handler appends one line `<job id> <node alias>`
//! to it. The file is opened in append mode and each line is written and
//! flushed on its own, before the handler runs, so the starts of a node that
//! is SIGKILLed mid-job are counted too; several processes may share one
//! file (each line is a single `O_APPEND` write). Chaos tests count the ids
//! with more than one line to see how many jobs ran more than once. A file
//! that cannot be opened or written is logged and otherwise ignored: the
//! jobs still run.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ironforge_jobs::{HandlerError, JobContext, JobId, Registry};

/// Longest `sleep` a payload may ask for.
const MAX_SLEEP: Duration = Duration::from_secs(60);

/// The environment variable naming the run log.
pub const RUN_LOG_ENV: &str = "IRONFORGE_RUN_LOG";

/// The built-in handlers of the node `alias`, recording each start in the
/// run log named by `IRONFORGE_RUN_LOG` when it is set.
pub fn builtin_on(alias: &str) -> Registry {
    let run_log = std::env::var_os(RUN_LOG_ENV).and_then(|path| RunLog::open(Path::new(&path)));
    registry(alias, run_log)
}

/// The handlers, each recording its start in `run_log` (if any) first.
fn registry(alias: &str, run_log: Option<RunLog>) -> Registry {
    let starts = Starts {
        alias: Arc::from(alias),
        run_log: run_log.map(Arc::new),
    };
    let mut registry = Registry::new();
    let on = starts.clone();
    registry.register_fn("echo", move |ctx| {
        on.record(&ctx);
        async move { Ok(ctx.payload().clone()) }
    });
    let on = starts.clone();
    registry.register_fn("where", move |ctx| {
        on.record(&ctx);
        let node = on.alias.clone();
        async move { Ok(serde_json::json!({ "node": &*node, "payload": ctx.payload() })) }
    });
    let on = starts.clone();
    registry.register_fn("sleep", move |ctx| {
        on.record(&ctx);
        async move {
            let ms = ctx.payload()["ms"].as_u64().unwrap_or(1000);
            let wait = Duration::from_millis(ms).min(MAX_SLEEP);
            tokio::time::sleep(wait).await;
            Ok(serde_json::json!({ "slept_ms": wait.as_millis() as u64 }))
        }
    });
    let on = starts;
    registry.register_fn("fail", move |ctx| {
        on.record(&ctx);
        async move {
            let reason = ctx.payload()["error"].as_str().unwrap_or("asked to fail");
            Err(HandlerError::retryable(reason))
        }
    });
    registry
}

/// What every handler shares: who runs it and where starts are recorded.
#[derive(Clone)]
struct Starts {
    alias: Arc<str>,
    run_log: Option<Arc<RunLog>>,
}

impl Starts {
    fn record(&self, ctx: &JobContext) {
        if let Some(log) = &self.run_log {
            log.record(ctx.job().id, &self.alias);
        }
    }
}

/// An append-only file of `<job id> <alias>` lines, one per handler start.
struct RunLog {
    file: Mutex<File>,
}

impl RunLog {
    fn open(path: &Path) -> Option<RunLog> {
        match OpenOptions::new().create(true).append(true).open(path) {
            Ok(file) => Some(RunLog {
                file: Mutex::new(file),
            }),
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "cannot open the run log; starts are not recorded");
                None
            }
        }
    }

    fn record(&self, id: JobId, alias: &str) {
        // One write per line: with O_APPEND it lands whole even when several
        // processes share the file.
        let line = format!("{id} {alias}\n");
        let mut file = self
            .file
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Err(error) = file.write_all(line.as_bytes()).and_then(|()| file.flush()) {
            tracing::warn!(%error, %id, "cannot write to the run log");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ironforge_jobs::engine::{Engine, EngineConfig, Store};
    use ironforge_jobs::{JobSpec, JobStatus, WorkerConfig};

    async fn run(kinds: &[(&str, serde_json::Value)], run_log: Option<RunLog>) -> Vec<JobId> {
        let dir = tempfile::tempdir().unwrap();
        let mut config = EngineConfig::new(Store::Embedded {
            dir: dir.path().into(),
        });
        config.worker = Some((registry("b", run_log), WorkerConfig::default()));
        let engine = Engine::start(config).await.unwrap();
        let specs = kinds
            .iter()
            .map(|(kind, payload)| JobSpec::new(*kind, payload.clone()))
            .collect();
        let ids = engine.client().submit_batch(specs).await.unwrap();
        for &id in &ids {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            loop {
                let job = engine.client().get(id).await.unwrap().unwrap();
                if job.status == JobStatus::Completed {
                    break;
                }
                assert!(tokio::time::Instant::now() < deadline, "{job:?}");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        let results = {
            let mut results = Vec::new();
            for &id in &ids {
                results.push(engine.client().get(id).await.unwrap().unwrap().result);
            }
            results
        };
        engine.shutdown(Duration::from_secs(1)).await;
        assert_eq!(
            results[0],
            Some(serde_json::json!({"node": "b", "payload": {"x": 1}}))
        );
        ids
    }

    #[tokio::test]
    async fn where_names_the_node_and_every_start_is_logged() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("runs.log");
        let ids = run(
            &[
                ("where", serde_json::json!({"x": 1})),
                ("echo", serde_json::json!(2)),
                ("sleep", serde_json::json!({"ms": 1})),
            ],
            RunLog::open(&path),
        )
        .await;
        let log = std::fs::read_to_string(&path).unwrap();
        let mut lines: Vec<&str> = log.lines().collect();
        lines.sort_unstable();
        let mut expected: Vec<String> = ids.iter().map(|id| format!("{id} b")).collect();
        expected.sort_unstable();
        assert_eq!(lines, expected);
    }

    #[tokio::test]
    async fn without_a_run_log_jobs_still_run() {
        run(&[("where", serde_json::json!({"x": 1}))], None).await;
    }

    #[test]
    fn an_unopenable_run_log_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        assert!(RunLog::open(&dir.path().join("missing").join("runs.log")).is_none());
    }
}
