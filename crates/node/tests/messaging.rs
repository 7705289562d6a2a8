//! Two or more real nodes in one process, over real sockets, registered with
//! a real PMD: send, request/reply, timeouts, ordering, handshakes, events.

mod common;

use std::time::Duration;

use common::*;
use ironforge_node::{Node, NodeConfig, NodeError, NodeEvent, OverflowPolicy};
use serde_json::json;

const SECOND: Duration = Duration::from_secs(1);

#[tokio::test]
async fn send_arrives_with_sender() {
    let pmd = start_pmd().await;
    let a = node("a", &pmd).await;
    let b = node("b", &pmd).await;
    a.send("b", &json!({"hello": 1})).await.unwrap();
    let message = b.recv().await.unwrap();
    assert_eq!(message.body(), json!({"hello": 1}));
    assert_eq!(message.from_alias(), "a");
    assert_eq!(message.from(), a.id());
    // Addressing by node id and by alias@host reaches the same node.
    a.send(b.id(), &json!(2)).await.unwrap();
    a.send("b@127.0.0.1", &json!(3)).await.unwrap();
    assert_eq!(b.recv().await.unwrap().body(), json!(2));
    assert_eq!(b.recv().await.unwrap().body(), json!(3));
}

#[tokio::test]
async fn request_gets_the_correlated_reply() {
    let pmd = start_pmd().await;
    let a = node("a", &pmd).await;
    let b = node("b", &pmd).await;
    b.handle(|node, message| async move {
        let n = message.body()["n"].as_i64().unwrap();
        node.reply(&message, &json!({"double": n * 2}))
            .await
            .unwrap();
    });
    let (q1, q2) = (json!({"n": 21}), json!({"n": 5}));
    let (r1, r2) = tokio::join!(a.request("b", &q1, SECOND), a.request("b", &q2, SECOND));
    assert_eq!(r1.unwrap().body(), json!({"double": 42}));
    assert_eq!(r2.unwrap().body(), json!({"double": 10}));
    // A node can also ask itself.
    a.handle(|node, message| async move { node.reply(&message, &json!("me")).await.unwrap() });
    assert_eq!(
        a.request("a", &json!(0), SECOND).await.unwrap().body(),
        json!("me")
    );
}

#[tokio::test]
async fn request_without_reply_times_out() {
    let pmd = start_pmd().await;
    let a = node("a", &pmd).await;
    let _b = node("b", &pmd).await;
    let err = a
        .request("b", &json!("anyone?"), Duration::from_millis(200))
        .await
        .unwrap_err();
    assert!(
        matches!(err, NodeError::Timeout { ref peer, .. } if peer == "b"),
        "{err}"
    );
}

#[tokio::test]
async fn unknown_alias_is_a_typed_error_naming_it() {
    let pmd = start_pmd().await;
    let a = node("a", &pmd).await;
    let err = a.send("nobody", &json!(1)).await.unwrap_err();
    assert!(matches!(err, NodeError::UnknownNode(ref name) if name == "nobody"));
    assert!(err.to_string().contains("nobody"));
}

async fn flood(policy: OverflowPolicy) -> (Node, Node) {
    let pmd = start_pmd().await;
    let a = node("a", &pmd).await;
    let b = Node::start(config("b", &pmd).mailbox(10, policy))
        .await
        .unwrap();
    for n in 0..100 {
        a.send("b", &json!(n)).await.unwrap();
    }
    wait_stats(&b, |s| s.received == 100).await;
    (a, b)
}

fn drain(node: &Node) -> Vec<i64> {
    std::iter::from_fn(|| node.try_recv())
        .map(|m| m.body().as_i64().unwrap())
        .collect()
}

#[tokio::test]
async fn drop_newest_keeps_the_first_messages() {
    let (_a, b) = flood(OverflowPolicy::DropNewest).await;
    let stats = b.stats();
    assert_eq!((stats.mailbox_len, stats.dropped), (10, 90));
    assert_eq!(drain(&b), (0..10).collect::<Vec<_>>());
}

#[tokio::test]
async fn drop_oldest_keeps_the_last_messages() {
    let (_a, b) = flood(OverflowPolicy::DropOldest).await;
    let stats = b.stats();
    assert_eq!((stats.mailbox_len, stats.dropped), (10, 90));
    assert_eq!(drain(&b), (90..100).collect::<Vec<_>>());
}

#[tokio::test]
async fn reject_refuses_and_tells_a_requester() {
    let (a, b) = flood(OverflowPolicy::Reject).await;
    let stats = b.stats();
    assert_eq!((stats.mailbox_len, stats.rejected), (10, 90));
    let err = a.request("b", &json!("full?"), SECOND).await.unwrap_err();
    assert!(
        matches!(err, NodeError::Rejected { ref reason, .. } if reason == "mailbox full"),
        "{err}"
    );
    assert_eq!(drain(&b), (0..10).collect::<Vec<_>>());
}

#[tokio::test]
async fn wrong_cookie_is_refused_before_delivery() {
    let pmd = start_pmd().await;
    let a = Node::start(config("a", &pmd).cookie("other-cookie"))
        .await
        .unwrap();
    let b = node("b", &pmd).await;
    a.send("b", &json!("let me in")).await.unwrap();
    let err = a
        .request("b", &json!("let me in"), Duration::from_secs(10))
        .await
        .unwrap_err();
    assert!(matches!(err, NodeError::Disconnected(_)), "{err}");
    assert_eq!(b.stats().received, 0);
    assert!(b.try_recv().is_none());
    // And the other direction.
    b.send("a", &json!("you?")).await.unwrap();
    wait_stats(&b, |s| s.undeliverable >= 1).await;
    assert_eq!(a.stats().received, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_senders_keep_per_sender_order() {
    const SENDERS: u64 = 4;
    const EACH: u64 = 25_000;
    let pmd = start_pmd().await;
    let a = node("a", &pmd).await;
    let b = node("b", &pmd).await;
    let senders: Vec<_> = (0..SENDERS)
        .map(|sender| {
            let a = a.clone();
            tokio::spawn(async move {
                for seq in 0..EACH {
                    a.send("b", &json!({"s": sender, "n": seq})).await.unwrap();
                }
            })
        })
        .collect();
    let mut next = vec![0u64; SENDERS as usize];
    for _ in 0..SENDERS * EACH {
        let body = b.recv().await.unwrap().body();
        let (sender, seq) = (body["s"].as_u64().unwrap(), body["n"].as_u64().unwrap());
        assert_eq!(seq, next[sender as usize], "sender {sender} out of order");
        next[sender as usize] += 1;
    }
    for sender in senders {
        sender.await.unwrap();
    }
    assert_eq!(next, vec![EACH; SENDERS as usize]);
    let stats = b.stats();
    assert_eq!((stats.dropped, stats.peers), (0, 1));
    // Writes were coalesced: on average many frames per socket write.
    let sent = a.stats();
    assert_eq!(sent.frames_written, SENDERS * EACH);
    assert!(
        sent.socket_writes * 4 < sent.frames_written,
        "{} writes for {} frames",
        sent.socket_writes,
        sent.frames_written
    );
}

#[tokio::test]
async fn simultaneous_connects_settle_on_one_connection() {
    let pmd = start_pmd().await;
    for round in 0..10 {
        let a = node(&format!("a{round}"), &pmd).await;
        let b = node(&format!("b{round}"), &pmd).await;
        let (to_a, to_b) = (a.alias().to_owned(), b.alias().to_owned());
        let (x, y) = tokio::join!(
            async {
                for n in 0..50 {
                    a.send(&to_b, &json!(n)).await.unwrap();
                }
            },
            async {
                for n in 0..50 {
                    b.send(&to_a, &json!(n)).await.unwrap();
                }
            }
        );
        let ((), ()) = (x, y);
        for node in [&a, &b] {
            let got: Vec<i64> = futures_take(node, 50).await;
            assert_eq!(got, (0..50).collect::<Vec<_>>(), "round {round}");
        }
        a.shutdown().await;
        b.shutdown().await;
    }
}

async fn futures_take(node: &Node, n: usize) -> Vec<i64> {
    let mut got = Vec::new();
    while got.len() < n {
        let message = tokio::time::timeout(Duration::from_secs(10), node.recv())
            .await
            .expect("message within 10 s")
            .unwrap();
        got.push(message.body().as_i64().unwrap());
    }
    got
}

#[tokio::test]
async fn events_and_discovery_follow_the_pmd() {
    let pmd = start_pmd().await;
    let a = node("a", &pmd).await;
    let mut events = a.events();
    let b = node("b", &pmd).await;
    match events.next().await.unwrap() {
        NodeEvent::PeerJoin(info) => assert_eq!(info.alias.as_deref(), Some("b")),
        other => panic!("expected b to join, got {other:?}"),
    }
    let found = a.discover().await.unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].node_id, b.id());
    // A subscriber that comes later still learns about b first.
    let mut late = a.events();
    assert!(matches!(late.next().await, Some(NodeEvent::PeerJoin(_))));
    b.shutdown().await;
    match events.next().await.unwrap() {
        NodeEvent::PeerLeave(info) => assert_eq!(info.alias.as_deref(), Some("b")),
        other => panic!("expected b to leave, got {other:?}"),
    }
}

#[tokio::test]
async fn one_node_per_process_unless_told() {
    let pmd = start_pmd().await;
    let mut first = NodeConfig::new("solo").cookie(COOKIE);
    first.pmd_addr = pmd.addr;
    first.auto_start_pmd = false;
    let mut second = first.clone();
    second.alias = "solo2".into();
    let node = Node::start(first).await.unwrap();
    assert!(matches!(
        Node::start(second.clone()).await,
        Err(NodeError::AlreadyRunning)
    ));
    node.shutdown().await;
    Node::start(second).await.unwrap().shutdown().await;
}

#[tokio::test]
async fn duplicate_alias_is_refused() {
    let pmd = start_pmd().await;
    let _a = node("same", &pmd).await;
    let err = Node::start(config("same", &pmd)).await.err().unwrap();
    assert!(err.to_string().contains("already in use"), "{err}");
}

#[tokio::test]
async fn node_registers_again_when_the_pmd_restarts() {
    let pmd = start_pmd().await;
    let a = node("a", &pmd).await;
    let b = node("b", &pmd).await;
    let addr = pmd.addr;
    pmd.stop().await;
    let pmd = start_pmd_at(addr).await;
    // Both nodes find the new daemon and register again.
    let client = ironforge_pmd::client::PmdClient::connect(pmd.addr)
        .await
        .unwrap();
    let mut watch = client.watch().await.unwrap();
    let mut seen = std::collections::HashSet::new();
    while seen.len() < 2 {
        let event = tokio::time::timeout(Duration::from_secs(10), watch.recv())
            .await
            .expect("nodes re-register within 10 s")
            .unwrap();
        seen.insert(event.peer.alias.unwrap());
    }
    a.send("b", &json!("still here")).await.unwrap();
    assert_eq!(b.recv().await.unwrap().body(), json!("still here"));
}

#[tokio::test]
async fn named_mailboxes_receive_apart_from_the_main_one() {
    let pmd = start_pmd().await;
    let a = node("a", &pmd).await;
    let b = node("b", &pmd).await;
    let service = b
        .register_name("svc", 16, OverflowPolicy::DropNewest)
        .unwrap();
    assert!(matches!(
        b.register_name("svc", 16, OverflowPolicy::DropNewest),
        Err(NodeError::NameTaken(_))
    ));
    a.send_named("b", "svc", &json!("for svc")).await.unwrap();
    a.send("b", &json!("for main")).await.unwrap();
    assert_eq!(service.recv().await.unwrap().body(), json!("for svc"));
    assert_eq!(b.recv().await.unwrap().body(), json!("for main"));
    // An unknown name drops the message and counts it.
    a.send_named("b", "nobody", &json!(1)).await.unwrap();
    wait_stats(&b, |s| s.undeliverable == 1).await;
    // Dropping the mailbox frees the name.
    drop(service);
    b.register_name("svc", 16, OverflowPolicy::DropNewest)
        .unwrap();
}
