//! The membership task: the only owner of the SWIM state. It multiplexes
//! incoming datagrams, SWIM timers, seed re-announcements and commands, then
//! flushes what SWIM asked for (sends, timers, notifications) and republishes
//! the view and ring when the member set changed.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use foca::{
    AccumulatingRuntime, Foca, Identity, NoCustomBroadcast, OwnedNotification, PostcardCodec, Timer,
};
use foca_rand::rngs::SmallRng;
use foca_rand::SeedableRng;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::time::{Instant, MissedTickBehavior};

use crate::event::{ClusterView, MembershipEvent};
use crate::identity::MemberId;
use crate::membership::MembershipConfig;
use crate::ring::{Ring, RingConfig};
use crate::transport::GossipTransport;

/// Requests from the [`Membership`](crate::Membership) handle.
pub(crate) enum Command {
    /// Leave gracefully, then stop; the sender is told when the goodbye is sent.
    Leave(oneshot::Sender<()>),
}

type Swim = Foca<MemberId, PostcardCodec, SmallRng, NoCustomBroadcast>;

/// A SWIM timer event due at `at`; `seq` keeps equal deadlines in order.
struct PendingTimer {
    at: Instant,
    seq: u64,
    timer: Timer<MemberId>,
}

impl PartialEq for PendingTimer {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for PendingTimer {}
impl PartialOrd for PendingTimer {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for PendingTimer {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

pub(crate) struct Driver<T> {
    local_name: String,
    swim: Swim,
    runtime: AccumulatingRuntime<MemberId>,
    transport: T,
    seeds: Vec<String>,
    announce_interval: Duration,
    timers: BinaryHeap<Reverse<PendingTimer>>,
    next_timer_seq: u64,
    ring_config: RingConfig,
    view: watch::Sender<ClusterView>,
    events: broadcast::Sender<MembershipEvent>,
}

impl<T: GossipTransport> Driver<T> {
    pub(crate) fn new(
        local: MemberId,
        config: &MembershipConfig,
        swim_config: foca::Config,
        transport: T,
        view: watch::Sender<ClusterView>,
        events: broadcast::Sender<MembershipEvent>,
    ) -> Self {
        let rng = SmallRng::seed_from_u64(config.rng_seed);
        Self {
            local_name: local.name.clone(),
            swim: Foca::new(local, swim_config, rng, PostcardCodec),
            runtime: AccumulatingRuntime::new(),
            transport,
            seeds: config.seeds.clone(),
            announce_interval: config.announce_interval,
            timers: BinaryHeap::new(),
            next_timer_seq: 0,
            ring_config: config.ring,
            view,
            events,
        }
    }

    pub(crate) async fn run(
        mut self,
        mut incoming: mpsc::Receiver<Bytes>,
        mut commands: mpsc::Receiver<Command>,
    ) {
        let mut announce = tokio::time::interval(self.announce_interval);
        announce.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            let next_timer = self.timers.peek().map(|Reverse(pending)| pending.at);
            tokio::select! {
                command = commands.recv() => match command {
                    Some(Command::Leave(done)) => {
                        if let Err(error) = self.swim.leave_cluster(&mut self.runtime) {
                            tracing::warn!(%error, "leaving the cluster failed");
                        }
                        self.flush();
                        let _ = done.send(());
                        return;
                    }
                    None => return,
                },
                datagram = incoming.recv() => match datagram {
                    Some(datagram) => {
                        if let Err(error) = self.swim.handle_data(&datagram, &mut self.runtime) {
                            tracing::debug!(%error, "gossip datagram rejected");
                        }
                    }
                    None => {
                        tracing::warn!("gossip transport closed; membership stops");
                        return;
                    }
                },
                () = sleep_until(next_timer) => self.fire_due_timers(),
                _ = announce.tick() => {
                    if self.swim.num_members() == 0 {
                        self.announce_to_seeds();
                    }
                }
            }
            self.flush();
        }
    }

    fn announce_to_seeds(&mut self) {
        let own_addr = self.swim.identity().addr();
        for seed in &self.seeds {
            // Not yet known (e.g. the seed node is not up): asked again on
            // the next announce round.
            let Some(seed) = self.transport.resolve_seed(seed) else {
                continue;
            };
            if seed == own_addr {
                continue;
            }
            if let Err(error) = self.swim.announce(MemberId::seed(&seed), &mut self.runtime) {
                tracing::debug!(%error, %seed, "announce failed");
            }
        }
    }

    fn fire_due_timers(&mut self) {
        let now = Instant::now();
        while let Some(Reverse(pending)) = self.timers.peek() {
            if pending.at > now {
                break;
            }
            if let Some(Reverse(pending)) = self.timers.pop() {
                if let Err(error) = self.swim.handle_timer(pending.timer, &mut self.runtime) {
                    tracing::debug!(%error, "swim timer failed");
                }
            }
        }
    }

    /// Carries out what SWIM asked for and republishes the view if needed.
    fn flush(&mut self) {
        while let Some((to, datagram)) = self.runtime.to_send() {
            if let Err(error) = self.transport.send(&to.addr, datagram) {
                tracing::debug!(%error, to = %to.addr, "gossip send failed");
            }
        }
        let now = Instant::now();
        while let Some((after, timer)) = self.runtime.to_schedule() {
            self.next_timer_seq += 1;
            self.timers.push(Reverse(PendingTimer {
                at: now + after,
                seq: self.next_timer_seq,
                timer,
            }));
        }
        let mut defunct = false;
        while let Some(notification) = self.runtime.to_notify() {
            match notification {
                OwnedNotification::Defunct => defunct = true,
                other => tracing::trace!(?other, "swim notification"),
            }
        }
        if defunct {
            self.rejoin();
        }
        self.refresh_view();
    }

    /// We were declared down (a false suspicion, e.g. after a long pause):
    /// come back under the next generation and announce again.
    fn rejoin(&mut self) {
        let Some(renewed) = self.swim.identity().renew() else {
            return;
        };
        tracing::info!(
            generation = renewed.generation,
            "declared down by peers; rejoining"
        );
        if let Err(error) = self.swim.change_identity(renewed, &mut self.runtime) {
            tracing::warn!(%error, "could not rejoin under a new generation");
            return;
        }
        self.announce_to_seeds();
        // Sends and timers from the rejoin go out on the next flush.
    }

    fn refresh_view(&mut self) {
        let mut members: Vec<String> = self
            .swim
            .iter_members()
            .map(|member| member.id().name.clone())
            .filter(|name| !name.is_empty())
            .collect();
        members.push(self.local_name.clone());
        members.sort_unstable();
        members.dedup();
        let previous = self.view.borrow().clone();
        if members == previous.members {
            return;
        }
        let ring = match Ring::new(members.iter().cloned(), self.ring_config) {
            Ok(ring) => ring,
            Err(error) => {
                tracing::warn!(%error, "member set rejected by the ring; keeping the old ring");
                return;
            }
        };
        let diff = Ring::diff(&previous.ring, &ring);
        self.view.send_replace(ClusterView {
            members: members.clone(),
            ring: Arc::new(ring),
        });
        for joined in members.iter().filter(|m| !previous.members.contains(m)) {
            tracing::info!(member = %joined, "member up");
            let _ = self.events.send(MembershipEvent::MemberUp(joined.clone()));
        }
        for left in previous.members.iter().filter(|m| !members.contains(m)) {
            tracing::info!(member = %left, "member down");
            let _ = self.events.send(MembershipEvent::MemberDown(left.clone()));
        }
        let _ = self.events.send(MembershipEvent::RingChanged {
            members,
            moved: diff.owner_moves(),
            diff: Arc::new(diff),
        });
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
