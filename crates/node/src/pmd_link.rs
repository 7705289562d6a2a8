//! The node's side of the port-mapper daemon: register, heartbeat, turn the
//! daemon's watch stream into node events, and when the daemon goes away,
//! start or find another and register again, with only a log line.

use std::sync::Arc;
use std::time::Duration;

use ironforge_pmd::client::{PmdClient, PmdError};
use ironforge_pmd::launcher::{connect_or_start, Launch};
use ironforge_pmd::protocol::{PeerEvent, PeerEventKind, Registration};
use tokio::sync::mpsc;

use crate::error::NodeError;
use crate::node::{NodeEvent, Shared};

const RECONNECT_FIRST: Duration = Duration::from_millis(20);
const RECONNECT_MAX: Duration = Duration::from_secs(2);

/// Connects to (or starts) the PMD, registers and watches. On success the
/// client is installed in `shared.pmd`.
pub(crate) async fn connect_and_register(
    shared: &Shared,
) -> Result<mpsc::Receiver<PeerEvent>, NodeError> {
    let addr = shared.config.pmd_addr;
    let client = if shared.config.auto_start_pmd {
        let (client, launch) = connect_or_start(addr, shared.config.pmd_command.as_ref()).await?;
        if let Launch::InProcess(stop) = launch {
            // Stopped with the node; other nodes then find or start another.
            let node_stopped = shared.shutdown.clone();
            tokio::spawn(async move {
                node_stopped.cancelled().await;
                stop.cancel();
            });
        }
        client
    } else {
        PmdClient::connect(addr).await?
    };
    client.register(registration(shared)).await?;
    let events = client.watch().await?;
    shared.pmd.send_replace(Some(Arc::new(client)));
    Ok(events)
}

fn registration(shared: &Shared) -> Registration {
    Registration {
        node_id: shared.id.clone(),
        alias: Some(shared.alias.clone()),
        host: shared.host.clone(),
        port: shared.port,
    }
}

/// Heartbeats and relays events until shutdown, reconnecting as needed.
pub(crate) async fn run(shared: Arc<Shared>, mut events: mpsc::Receiver<PeerEvent>) {
    loop {
        serve(&shared, &mut events).await;
        if shared.shutdown.is_cancelled() {
            return;
        }
        tracing::warn!("lost the port-mapper daemon; reconnecting");
        shared.pmd.send_replace(None);
        let mut delay = RECONNECT_FIRST;
        loop {
            tokio::select! {
                _ = shared.shutdown.cancelled() => return,
                _ = tokio::time::sleep(delay) => {}
            }
            match connect_and_register(&shared).await {
                Ok(new_events) => {
                    events = new_events;
                    tracing::info!("registered again with the port-mapper daemon");
                    reconcile(&shared).await;
                    break;
                }
                Err(err) => {
                    tracing::debug!(error = %err, "port-mapper daemon not back yet");
                    delay = (delay * 2).min(RECONNECT_MAX);
                }
            }
        }
    }
}

async fn serve(shared: &Shared, events: &mut mpsc::Receiver<PeerEvent>) {
    let Some(client) = shared.pmd.borrow().clone() else {
        return;
    };
    let mut heartbeat = tokio::time::interval(shared.config.heartbeat);
    heartbeat.tick().await;
    loop {
        tokio::select! {
            _ = shared.shutdown.cancelled() => return,
            _ = client.closed() => return,
            _ = heartbeat.tick() => match client.heartbeat(&shared.id).await {
                Ok(()) => {}
                // Expired by the TTL (say, after a pause): register again.
                Err(PmdError::Rejected(_)) => {
                    if let Err(err) = client.register(registration(shared)).await {
                        tracing::warn!(error = %err, "re-registration failed");
                    }
                }
                Err(err) => tracing::debug!(error = %err, "heartbeat failed"),
            },
            event = events.recv() => match event {
                Some(event) => on_event(shared, event),
                None => return,
            },
        }
    }
}

fn on_event(shared: &Shared, event: PeerEvent) {
    if event.peer.node_id == shared.id {
        return;
    }
    let node_event = match event.event {
        PeerEventKind::Join => {
            let previous = shared
                .known
                .lock()
                .insert(event.peer.node_id.clone(), event.peer.clone());
            if previous.is_some() {
                return;
            }
            NodeEvent::PeerJoin(event.peer)
        }
        PeerEventKind::Leave => {
            if shared.known.lock().remove(&event.peer.node_id).is_none() {
                return;
            }
            shared.forget_route(&event.peer.node_id);
            NodeEvent::PeerLeave(event.peer)
        }
    };
    let _ = shared.events.send(node_event);
}

/// After a reconnect, peers that left while we were away get their leave.
async fn reconcile(shared: &Shared) {
    let Some(client) = shared.pmd.borrow().clone() else {
        return;
    };
    let Ok(nodes) = client.list().await else {
        return;
    };
    let gone: Vec<_> = {
        let known = shared.known.lock();
        known
            .values()
            .filter(|info| !nodes.iter().any(|n| n.node_id == info.node_id))
            .cloned()
            .collect()
    };
    for peer in gone {
        on_event(
            shared,
            PeerEvent {
                event: PeerEventKind::Leave,
                peer,
            },
        );
    }
}
