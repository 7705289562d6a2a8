//! Membership over real UDP sockets on 127.0.0.1 ephemeral ports: members
//! converge on one view and ring, a crashed member is removed by every live
//! member within the detection window, a graceful leave is seen at once, and
//! a restarted member rejoins under a new generation.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ironforge_ring::{Membership, MembershipConfig, MembershipEvent, Ring};
use tokio::sync::broadcast;

/// Default settings promise removal within 2 s; the test allows scheduling
/// slack on a loaded 2-core machine and reports the measured time.
const DETECTION_BUDGET: Duration = Duration::from_millis(3000);
const JOIN_TIMEOUT: Duration = Duration::from_secs(10);

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

fn names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("node-{i}")).collect()
}

async fn start_cluster(n: usize) -> Vec<Membership> {
    let mut members: Vec<Membership> = Vec::new();
    for name in names(n) {
        let mut config = MembershipConfig::new(name, 1);
        if let Some(first) = members.first() {
            config = config.with_seeds([first.local().addr.clone()]);
        }
        members.push(Membership::start_udp(config, loopback()).await.unwrap());
    }
    let everyone = names(n);
    for member in &members {
        member
            .await_converged(everyone.clone(), JOIN_TIMEOUT)
            .await
            .unwrap();
    }
    members
}

fn assert_same_ring(members: &[Membership]) {
    let first = members[0].ring();
    for member in &members[1..] {
        let ring = member.ring();
        assert_eq!(ring.members(), first.members());
        assert!(Ring::diff(&first, &ring).is_empty());
    }
}

/// Reads events until `accept` returns a value, or fails after `timeout`.
async fn wait_event<R>(
    events: &mut broadcast::Receiver<MembershipEvent>,
    timeout: Duration,
    mut accept: impl FnMut(&MembershipEvent) -> Option<R>,
) -> R {
    tokio::time::timeout(timeout, async {
        loop {
            let event = events.recv().await.unwrap();
            if let Some(found) = accept(&event) {
                return found;
            }
        }
    })
    .await
    .expect("event did not arrive in time")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_converge_on_one_view_and_ring() {
    let members = start_cluster(5).await;
    assert_same_ring(&members);
    for key in ["job-1", "job-2", "tenant/42"] {
        let owner = members[0].owner(key.as_bytes());
        assert!(owner.is_some());
        for member in &members {
            assert_eq!(member.owner(key.as_bytes()), owner);
            assert_eq!(
                member.preference_list(key.as_bytes(), 3),
                members[0].preference_list(key.as_bytes(), 3)
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashed_member_is_removed_everywhere_and_moved_partitions_reported() {
    let mut members = start_cluster(5).await;
    let before = members[0].ring();
    let mut events: Vec<_> = members[..4].iter().map(Membership::events).collect();
    let victim = members.pop().unwrap();
    let victim_name = victim.local().name.clone();
    let victim_partitions: BTreeSet<u32> = before
        .partitions_owned_by(&victim_name)
        .into_iter()
        .collect();
    assert!(!victim_partitions.is_empty());

    let crashed_at = Instant::now();
    drop(victim); // no goodbye: the task and its socket just vanish
    let survivors = names(4);
    for member in &members {
        member
            .await_converged(survivors.clone(), DETECTION_BUDGET)
            .await
            .unwrap();
    }
    let detected_in = crashed_at.elapsed();
    eprintln!("crash detected by all 4 survivors in {detected_in:?}");

    assert_same_ring(&members);
    for receiver in &mut events {
        let down = wait_event(receiver, Duration::from_secs(1), |event| match event {
            MembershipEvent::MemberDown(name) => Some(name.clone()),
            _ => None,
        })
        .await;
        assert_eq!(down, victim_name);
        let moved = wait_event(receiver, Duration::from_secs(1), |event| match event {
            MembershipEvent::RingChanged { moved, .. } => Some(moved.clone()),
            _ => None,
        })
        .await;
        let moved: BTreeSet<u32> = moved.into_iter().collect();
        // Everything the victim owned moved, and the report matches the rings.
        assert!(victim_partitions.is_subset(&moved));
        let expected: BTreeSet<u32> = Ring::diff(&before, &members[0].ring())
            .owner_moves()
            .into_iter()
            .collect();
        assert_eq!(moved, expected);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_leave_is_seen_at_once() {
    let mut members = start_cluster(4).await;
    let leaver = members.pop().unwrap();
    let left_at = Instant::now();
    leaver.leave().await.unwrap();
    // Well under one probe period plus suspicion timeout: no failure detection involved.
    for member in &members {
        member
            .await_converged(names(3), Duration::from_millis(500))
            .await
            .unwrap();
    }
    eprintln!("leave seen by all 3 in {:?}", left_at.elapsed());
    assert_same_ring(&members);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_member_rejoins_under_a_new_generation() {
    let mut members = start_cluster(4).await;
    let victim = members.pop().unwrap();
    let name = victim.local().name.clone();
    let generation = victim.local().generation;
    drop(victim);
    for member in &members {
        member
            .await_converged(names(3), DETECTION_BUDGET)
            .await
            .unwrap();
    }

    let mut events = members[0].events();
    let config = MembershipConfig::new(name.clone(), generation + 1)
        .with_seeds([members[1].local().addr.clone()]);
    let restarted = Membership::start_udp(config, loopback()).await.unwrap();
    members.push(restarted);
    for member in &members {
        member
            .await_converged(names(4), JOIN_TIMEOUT)
            .await
            .unwrap();
    }
    let up = wait_event(&mut events, Duration::from_secs(1), |event| match event {
        MembershipEvent::MemberUp(who) => Some(who.clone()),
        _ => None,
    })
    .await;
    assert_eq!(up, name);
    assert_same_ring(&members);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quiet_cluster_keeps_everyone() {
    let members = start_cluster(3).await;
    let mut events = members[0].events();
    // Several probe periods and suspicion windows with nothing going on.
    let quiet = tokio::time::timeout(Duration::from_secs(3), async {
        loop {
            if let Ok(MembershipEvent::MemberDown(name)) = events.recv().await {
                return name;
            }
        }
    })
    .await;
    assert!(quiet.is_err(), "false removal of {:?}", quiet.ok());
    assert_eq!(members[2].members(), names(3));
}
