//! The scheduler loop: periodically promotes due delayed jobs and retries
//! (`promote_due`) and reclaims expired leases (`reclaim_expired`), so jobs
//! of dead or stalled workers run again and poison jobs reach the dead
//! letters. A [`crate::Worker`] runs one by default; run one alone in a
//! process that only serves the API.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::backend::QueueBackend;
use crate::clock::now_ms;
use crate::job::JobStatus;
use crate::observe::Observers;

/// Intervals of the scheduler loop. Defaults in brackets.
#[derive(Clone, Debug)]
pub struct SchedulerConfig {
    /// How often due delayed jobs and retries are promoted [50 ms]; also the
    /// worst extra delay of a delayed job.
    pub promote_interval: Duration,
    /// How often expired leases are reclaimed [1 s].
    pub reclaim_interval: Duration,
    /// Deliveries after which a job whose lease keeps expiring is dead [5].
    pub max_deliveries: u32,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            promote_interval: Duration::from_millis(50),
            reclaim_interval: Duration::from_secs(1),
            max_deliveries: 5,
        }
    }
}

/// A running scheduler loop.
#[derive(Debug)]
pub struct SchedulerHandle {
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl SchedulerHandle {
    /// Starts the loop on the current tokio runtime.
    pub fn start(
        backend: Arc<dyn QueueBackend>,
        config: SchedulerConfig,
        observers: Observers,
    ) -> SchedulerHandle {
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(run(backend, config, observers, stopped));
        SchedulerHandle {
            stop,
            task: Some(task),
        }
    }

    /// Stops the loop and waits for it.
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for SchedulerHandle {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

async fn run(
    backend: Arc<dyn QueueBackend>,
    config: SchedulerConfig,
    observers: Observers,
    mut stopped: watch::Receiver<bool>,
) {
    let mut promote = tokio::time::interval(config.promote_interval.max(Duration::from_millis(1)));
    let mut reclaim = tokio::time::interval(config.reclaim_interval.max(Duration::from_millis(1)));
    promote.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    reclaim.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stopped.changed() => break,
            _ = promote.tick() => {
                match backend.promote_due(now_ms()).await {
                    Ok(0) => {}
                    Ok(n) => tracing::debug!(promoted = n, "due jobs promoted"),
                    Err(error) => tracing::warn!(%error, "promoting due jobs failed"),
                }
            }
            _ = reclaim.tick() => {
                let now = now_ms();
                match backend.reclaim_expired(now, config.max_deliveries).await {
                    Ok(list) => {
                        for item in list {
                            if item.dead {
                                tracing::warn!(id = %item.id, kind = %item.kind, "poison job sent to the dead letters");
                                observers.metrics.record_poisoned(&item.kind);
                                observers.emit_error(item.id, &item.kind, JobStatus::Dead, now, "exceeded max deliveries");
                            } else {
                                tracing::info!(id = %item.id, kind = %item.kind, "expired lease reclaimed");
                                observers.emit(item.id, Some(&item.kind), JobStatus::Queued, now);
                            }
                        }
                    }
                    Err(error) => tracing::warn!(%error, "reclaiming expired leases failed"),
                }
            }
        }
        if *stopped.borrow() {
            break;
        }
    }
}
