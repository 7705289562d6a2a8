//! Workflow routing over the node runtime: only the owner of a workflow's
//! partition drives it, so a node that receives a submission or a cancel
//! for a partition it does not own forwards it to the owner's
//! [`WORKFLOW_MAILBOX`] and waits for the answer on its own
//! [`WORKFLOW_REPLY_MAILBOX`].
//!
//! Both mailboxes are bounded ([`DEFAULT_ROUTING_QUEUE`], newest dropped
//! when full, which the forwarder sees as a timeout); at most
//! [`MAX_FORWARDS_IN_FLIGHT`] forwarded calls wait for an answer at once
//! and at most [`MAX_CALLS_SERVED_AT_ONCE`] are served at once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ironforge_jobs::workflow::{ForwardError, WorkflowId, WorkflowRouting, WorkflowSpec};
use ironforge_jobs::OwnedPartitions;
use ironforge_node::{NamedMailbox, Node, NodeError, OverflowPolicy};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::{oneshot, Semaphore};
use tokio::task::JoinHandle;

use crate::view::{current, ViewReceiver};

/// Mailbox on every member that serves forwarded workflow calls.
pub const WORKFLOW_MAILBOX: &str = "ironforge.workflows";
/// Mailbox on every member that receives the answers to its forwards.
pub const WORKFLOW_REPLY_MAILBOX: &str = "ironforge.workflows.replies";
/// Capacity of each of the two mailboxes, in messages (default 1024).
pub const DEFAULT_ROUTING_QUEUE: usize = 1024;
/// Forwarded calls waiting for an answer at once; more fail at once (default 1024).
pub const MAX_FORWARDS_IN_FLIGHT: usize = 1024;
/// Forwarded calls an owner runs at once; more wait in its mailbox (default 64).
pub const MAX_CALLS_SERVED_AT_ONCE: usize = 64;
/// How long a forwarder waits for the owner's answer [5 s].
pub const DEFAULT_FORWARD_TIMEOUT: Duration = Duration::from_secs(5);

/// What the owner does with a forwarded call: its workflow runner's local
/// submit and cancel. The error is the text the forwarder reports.
#[async_trait]
pub trait LocalWorkflows: Send + Sync + 'static {
    /// Validates, records and starts `spec` (its id is set) here.
    async fn submit(&self, spec: WorkflowSpec) -> Result<(), String>;
    /// Cancels workflow `id` here.
    async fn cancel(&self, id: WorkflowId) -> Result<(), String>;
}

/// A forwarded call, as sent to the owner.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Call {
    Submit {
        corr: u64,
        partition: u32,
        spec: WorkflowSpec,
    },
    Cancel {
        corr: u64,
        partition: u32,
        id: WorkflowId,
    },
}

/// The owner's answer: no error is success.
#[derive(Debug, Serialize, Deserialize)]
struct Answer {
    corr: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// [`WorkflowRouting`] between the members of a cluster.
#[derive(Clone)]
pub struct NodeRouting {
    inner: Arc<Inner>,
}

struct Inner {
    node: Node,
    view: ViewReceiver,
    owned: OwnedPartitions,
    timeout: Duration,
    next_corr: AtomicU64,
    waiting: Mutex<HashMap<u64, oneshot::Sender<Answer>>>,
    /// The request mailbox until [`NodeRouting::serve`] takes it.
    calls: Mutex<Option<NamedMailbox>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        for task in self.tasks.get_mut().drain(..) {
            task.abort();
        }
    }
}

impl std::fmt::Debug for NodeRouting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeRouting")
            .field("local", &current(&self.inner.view).local)
            .finish_non_exhaustive()
    }
}

impl NodeRouting {
    /// Registers both mailboxes on `node` and starts reading answers.
    /// Calls for this member wait in its mailbox until [`serve`](Self::serve).
    pub(crate) fn start(
        node: Node,
        view: ViewReceiver,
        owned: OwnedPartitions,
        timeout: Duration,
    ) -> Result<NodeRouting, NodeError> {
        let calls = node.register_name(
            WORKFLOW_MAILBOX,
            DEFAULT_ROUTING_QUEUE,
            OverflowPolicy::DropNewest,
        )?;
        let answers = node.register_name(
            WORKFLOW_REPLY_MAILBOX,
            DEFAULT_ROUTING_QUEUE,
            OverflowPolicy::DropNewest,
        )?;
        let routing = NodeRouting {
            inner: Arc::new(Inner {
                node,
                view,
                owned,
                timeout,
                next_corr: AtomicU64::new(1),
                waiting: Mutex::new(HashMap::new()),
                calls: Mutex::new(Some(calls)),
                tasks: Mutex::new(Vec::new()),
            }),
        };
        let weak = Arc::downgrade(&routing.inner);
        let task = tokio::spawn(async move {
            while let Some(message) = answers.recv().await {
                let Some(inner) = weak.upgrade() else { return };
                match message.json::<Answer>() {
                    Ok(answer) => {
                        if let Some(waiter) = inner.waiting.lock().remove(&answer.corr) {
                            let _ = waiter.send(answer);
                        }
                    }
                    Err(error) => tracing::warn!(
                        from = message.from_alias(),
                        %error,
                        "malformed workflow routing answer dropped"
                    ),
                }
            }
        });
        routing.inner.tasks.lock().push(task);
        Ok(routing)
    }

    /// Starts serving calls forwarded to this member with `local`. A second
    /// call does nothing.
    pub fn serve(&self, local: Arc<dyn LocalWorkflows>) {
        let Some(calls) = self.inner.calls.lock().take() else {
            return;
        };
        let node = self.inner.node.clone();
        let task = tokio::spawn(async move {
            let slots = Arc::new(Semaphore::new(MAX_CALLS_SERVED_AT_ONCE));
            while let Some(message) = calls.recv().await {
                let Ok(slot) = slots.clone().acquire_owned().await else {
                    return;
                };
                let node = node.clone();
                let local = local.clone();
                tokio::spawn(async move {
                    serve_one(&node, &*local, message).await;
                    drop(slot);
                });
            }
        });
        self.inner.tasks.lock().push(task);
    }

    async fn forward(&self, owner: &str, partition: u32, call: Call) -> Result<(), ForwardError> {
        let fail = |reason: String| ForwardError {
            partition,
            owner: owner.to_owned(),
            reason,
        };
        let corr = match &call {
            Call::Submit { corr, .. } | Call::Cancel { corr, .. } => *corr,
        };
        let (reply, answer) = oneshot::channel();
        {
            let mut waiting = self.inner.waiting.lock();
            if waiting.len() >= MAX_FORWARDS_IN_FLIGHT {
                return Err(fail(format!(
                    "{MAX_FORWARDS_IN_FLIGHT} forwarded workflow calls are already waiting"
                )));
            }
            waiting.insert(corr, reply);
        }
        let sent = self
            .inner
            .node
            .send_named(owner, WORKFLOW_MAILBOX, &call)
            .await;
        let outcome = match sent {
            Err(error) => Err(fail(error.to_string())),
            Ok(()) => match tokio::time::timeout(self.inner.timeout, answer).await {
                Ok(Ok(Answer { error: None, .. })) => Ok(()),
                Ok(Ok(Answer {
                    error: Some(error), ..
                })) => Err(fail(error)),
                Ok(Err(_)) => Err(fail("the routing stopped".into())),
                Err(_) => Err(fail(format!("no answer within {:?}", self.inner.timeout))),
            },
        };
        self.inner.waiting.lock().remove(&corr);
        outcome
    }

    fn corr(&self) -> u64 {
        self.inner.next_corr.fetch_add(1, Ordering::Relaxed)
    }
}

async fn serve_one(node: &Node, local: &dyn LocalWorkflows, message: ironforge_node::Message) {
    let call = match message.json::<Call>() {
        Ok(call) => call,
        Err(error) => {
            tracing::warn!(from = message.from_alias(), %error, "malformed workflow call dropped");
            return;
        }
    };
    let (corr, outcome) = match call {
        Call::Submit {
            corr,
            partition,
            spec,
        } => {
            tracing::debug!(
                from = message.from_alias(),
                partition,
                "forwarded workflow submission"
            );
            (corr, local.submit(spec).await)
        }
        Call::Cancel {
            corr,
            partition,
            id,
        } => {
            tracing::debug!(from = message.from_alias(), partition, workflow = %id, "forwarded workflow cancel");
            (corr, local.cancel(id).await)
        }
    };
    let answer = Answer {
        corr,
        error: outcome.err(),
    };
    if let Err(error) = node
        .send_named(message.from(), WORKFLOW_REPLY_MAILBOX, &answer)
        .await
    {
        tracing::warn!(to = message.from_alias(), %error, "cannot answer a forwarded workflow call");
    }
}

#[async_trait]
impl WorkflowRouting for NodeRouting {
    fn owner_elsewhere(&self, partition: u32) -> Option<String> {
        if self.inner.owned.contains(partition) {
            return None;
        }
        let view = current(&self.inner.view);
        match view.ring.owner(partition) {
            Some(owner) if owner != view.local => Some(owner.to_owned()),
            // This member owns it on the ring but has not taken it yet
            // (still joining): it is the best place to drive it.
            _ => None,
        }
    }

    async fn forward_submit(
        &self,
        owner: &str,
        partition: u32,
        spec: &WorkflowSpec,
    ) -> Result<(), ForwardError> {
        let call = Call::Submit {
            corr: self.corr(),
            partition,
            spec: spec.clone(),
        };
        self.forward(owner, partition, call).await
    }

    async fn forward_cancel(
        &self,
        owner: &str,
        partition: u32,
        id: WorkflowId,
    ) -> Result<(), ForwardError> {
        let call = Call::Cancel {
            corr: self.corr(),
            partition,
            id,
        };
        self.forward(owner, partition, call).await
    }
}
