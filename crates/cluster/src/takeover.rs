//! The async shell around [`Ownership`]: watches the membership and, on
//! every ring change, updates the shared [`OwnedPartitions`] (the Redis
//! backend then fetches, promotes and reclaims only those), publishes the
//! new [`ClusterSnapshot`], and tells the hooks (the workflow runner, the
//! replication) which partitions were lost and gained.
//!
//! Stalled in-flight jobs of a crashed member need nothing here: once the
//! new owner owns their partition, its scheduler's reclaim pass (Redis
//! `XPENDING … IDLE`, per owned partition) hands them out again when their
//! lease expires.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use ironforge_jobs::OwnedPartitions;
use ironforge_ring::{MembershipError, MembershipEvent, Ring, RingNode};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::ownership::{Handover, Ownership};
use crate::view::ClusterSnapshot;

/// Something that follows this member's partitions.
#[async_trait]
pub trait OwnershipHook: Send + Sync + 'static {
    /// The owned set changed: `handover.lost` are no longer this member's
    /// (stop driving them), `handover.gained` now are (take them over).
    /// The shared [`OwnedPartitions`] already holds the new set.
    async fn partitions_moved(&self, handover: &Handover);

    /// The ring changed (members joined or left); replicas may have moved
    /// even when this member's partitions did not.
    async fn ring_changed(&self, _ring: &Arc<Ring>) {}
}

/// What woke the shell up.
enum Wake {
    Command(Option<Command>),
    Event(Result<MembershipEvent, RecvError>),
    Deadline,
}

enum Command {
    Leave(oneshot::Sender<Result<(), MembershipError>>),
}

/// Handovers and ring changes waiting for the hooks (default 64); when full, the
/// membership loop waits (the owned set itself is already updated).
pub const HOOK_QUEUE: usize = 64;

/// What the hook task passes on, in order.
enum HookCall {
    Moved(Handover),
    Ring(Arc<Ring>),
    /// Answers once everything queued before it was handled.
    Flush(oneshot::Sender<()>),
}

/// The running takeover task (owns the membership) and the task that runs
/// the hooks, so slow hooks (a workflow adoption reading the journal) never
/// delay the next ownership change.
pub(crate) struct Takeover {
    commands: mpsc::Sender<Command>,
    task: JoinHandle<()>,
    hook_task: JoinHandle<()>,
}

impl Takeover {
    /// Takes over `ring_node` and starts following it.
    pub(crate) fn start(
        ring_node: RingNode,
        ownership: Ownership,
        owned: OwnedPartitions,
        view: watch::Sender<Arc<ClusterSnapshot>>,
        hooks: Vec<Arc<dyn OwnershipHook>>,
        started: Instant,
    ) -> Takeover {
        let (commands, command_rx) = mpsc::channel(1);
        let (hook_calls, hook_rx) = mpsc::channel(HOOK_QUEUE);
        let hook_task = tokio::spawn(run_hooks(hooks, hook_rx));
        let shell = Shell {
            events: ring_node.events(),
            ring_node,
            ownership,
            owned,
            view,
            hooks: hook_calls,
            started,
            ring_changed_at: Instant::now(),
        };
        Takeover {
            commands,
            task: tokio::spawn(shell.run(command_rx)),
            hook_task,
        }
    }

    /// Gives up every partition, tells the hooks, then leaves the ring
    /// gracefully so the others take the partitions over at once.
    pub(crate) async fn leave(mut self) -> Result<(), MembershipError> {
        let (done, wait) = oneshot::channel();
        if self.commands.send(Command::Leave(done)).await.is_err() {
            return Err(MembershipError::Stopped);
        }
        let outcome = wait.await.unwrap_or(Err(MembershipError::Stopped));
        let _ = (&mut self.task).await;
        let _ = (&mut self.hook_task).await;
        outcome
    }
}

impl Drop for Takeover {
    fn drop(&mut self) {
        self.task.abort();
        self.hook_task.abort();
    }
}

async fn run_hooks(hooks: Vec<Arc<dyn OwnershipHook>>, mut calls: mpsc::Receiver<HookCall>) {
    while let Some(call) = calls.recv().await {
        match call {
            HookCall::Moved(handover) => {
                let began = Instant::now();
                for hook in &hooks {
                    hook.partitions_moved(&handover).await;
                }
                tracing::debug!(
                    gained = ?handover.gained,
                    lost = ?handover.lost,
                    took_ms = began.elapsed().as_millis() as u64,
                    "hooks followed the partitions"
                );
            }
            HookCall::Ring(ring) => {
                for hook in &hooks {
                    hook.ring_changed(&ring).await;
                }
            }
            HookCall::Flush(done) => {
                let _ = done.send(());
            }
        }
    }
}

struct Shell {
    ring_node: RingNode,
    events: tokio::sync::broadcast::Receiver<MembershipEvent>,
    ownership: Ownership,
    owned: OwnedPartitions,
    view: watch::Sender<Arc<ClusterSnapshot>>,
    hooks: mpsc::Sender<HookCall>,
    started: Instant,
    /// When this member first saw the ring it now holds.
    ring_changed_at: Instant,
}

impl Shell {
    async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        self.refresh().await;
        loop {
            let deadline = self
                .ownership
                .next_deadline()
                .map(|after| tokio::time::Instant::from_std(self.started + after));
            let wake = tokio::select! {
                command = commands.recv() => Wake::Command(command),
                event = self.events.recv() => Wake::Event(event),
                () = sleep_until(deadline) => Wake::Deadline,
            };
            match wake {
                Wake::Command(Some(Command::Leave(done))) => {
                    let _ = done.send(self.leave().await);
                    return;
                }
                // The node is gone without leaving: as a crash would.
                Wake::Command(None) => return,
                Wake::Event(Ok(MembershipEvent::RingChanged { .. })) | Wake::Deadline => {
                    self.refresh().await
                }
                Wake::Event(Ok(MembershipEvent::MemberUp(_) | MembershipEvent::MemberDown(_))) => {}
                Wake::Event(Err(RecvError::Lagged(missed))) => {
                    tracing::warn!(missed, "membership events lagged; reading the ring again");
                    self.refresh().await;
                }
                Wake::Event(Err(RecvError::Closed)) => {
                    tracing::warn!("membership stopped; partitions stay as they are");
                    let _ = commands.recv().await;
                    return;
                }
            }
        }
    }

    /// Reads the ring, decides the owned partitions, and applies any change.
    async fn refresh(&mut self) {
        let ring = self.ring_node.ring();
        let previous = self.view.borrow().clone();
        let ring_moved = !Arc::ptr_eq(&ring, &previous.ring);
        if ring_moved {
            self.ring_changed_at = Instant::now();
        }
        let owned = self.ownership.decide(&ring, self.started.elapsed());
        let handover = Handover::between(&previous.owned, &owned);
        if !handover.is_empty() {
            self.owned.set(owned.iter().copied());
        }
        self.publish(ring.clone(), owned.into());
        if !handover.is_empty() {
            tracing::info!(
                member = %self.ownership.local(),
                gained = ?handover.gained,
                lost = ?handover.lost,
                owned = ?&*self.owned.list(),
                members = ?ring.members(),
                since_ring_change_ms = self.ring_changed_at.elapsed().as_millis() as u64,
                "partitions moved"
            );
            self.call_hooks(HookCall::Moved(handover)).await;
        }
        if ring_moved {
            self.call_hooks(HookCall::Ring(ring)).await;
        }
    }

    async fn call_hooks(&self, call: HookCall) {
        if self.hooks.send(call).await.is_err() {
            tracing::warn!("the ownership hooks have stopped");
        }
    }

    /// Releases everything, waits until the hooks have (so a workflow
    /// runner has written what it holds), then says goodbye to the ring.
    async fn leave(self) -> Result<(), MembershipError> {
        let previous = self.view.borrow().clone();
        self.owned.set([]);
        self.publish(previous.ring.clone(), Arc::from(Vec::new()));
        let handover = Handover::between(&previous.owned, &[]);
        if !handover.is_empty() {
            tracing::info!(member = %self.ownership.local(), lost = ?handover.lost, "leaving: partitions released");
            self.call_hooks(HookCall::Moved(handover)).await;
        }
        let (done, flushed) = oneshot::channel();
        self.call_hooks(HookCall::Flush(done)).await;
        let _ = flushed.await;
        self.ring_node.leave().await.map(|_node| ())
    }

    fn publish(&self, ring: Arc<Ring>, owned: Arc<[u32]>) {
        let previous = self.view.borrow().clone();
        self.view.send_replace(Arc::new(ClusterSnapshot {
            local: previous.local.clone(),
            generation: previous.generation,
            ring,
            owned,
            join: self.ownership.state(),
        }));
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
