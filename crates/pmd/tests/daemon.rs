//! The daemon over real sockets, spoken to in raw distflow frames.

mod common;

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::Duration;

use common::{join, leave, start, test_config, Client, PATIENCE};
use ironforge_pmd::registry::MAX_FIELD_BYTES;
use ironforge_pmd::server::{is_loopback_peer, DaemonConfig};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

#[tokio::test]
async fn register_then_resolve_by_alias_and_by_id_and_list() {
    let pmd = start(test_config()).await;
    let mut node = Client::connect(pmd.addr).await;
    assert_eq!(
        node.register("id-1", "web", 9001).await,
        json!({"success": true})
    );
    let mut other = Client::connect(pmd.addr).await;
    assert_eq!(
        other.register("id-2", "db", 9002).await,
        json!({"success": true})
    );

    let mut cli = Client::connect(pmd.addr).await;
    for name in ["web", "id-1"] {
        let found = cli.request("resolve", json!({"alias": name})).await;
        let node = &found["node"];
        assert_eq!(node["nodeId"], "id-1");
        assert_eq!(node["alias"], "web");
        assert_eq!(node["host"], "127.0.0.1");
        assert_eq!(node["port"], 9001);
        assert!(
            node["lastHeartbeat"].as_u64().unwrap() > 1_600_000_000_000,
            "epoch ms"
        );
    }
    let missing = cli.request("resolve", json!({"alias": "nope"})).await;
    assert_eq!(missing, json!({"error": "Node not found"}));

    let listed = cli.request("list", json!({})).await;
    let ids: Vec<_> = listed["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["nodeId"].clone())
        .collect();
    assert_eq!(ids, [json!("id-1"), json!("id-2")]);
}

#[tokio::test]
async fn duplicate_alias_is_refused_with_distflow_text() {
    let pmd = start(test_config()).await;
    let mut first = Client::connect(pmd.addr).await;
    first.register("id-1", "web", 9001).await;
    let mut second = Client::connect(pmd.addr).await;
    let refused = second.register("id-2", "web", 9002).await;
    assert_eq!(refused, json!({"error": "Alias 'web' already in use"}));
    let found = second.request("resolve", json!({"alias": "web"})).await;
    assert_eq!(found["node"]["nodeId"], "id-1");
}

#[tokio::test]
async fn heartbeat_refreshes_and_unknown_nodes_are_not_found() {
    let pmd = start(test_config()).await;
    let mut node = Client::connect(pmd.addr).await;
    node.register("id-1", "web", 9001).await;
    let before = node.request("resolve", json!({"alias": "web"})).await["node"]["lastHeartbeat"]
        .as_u64()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let beat = node.request("heartbeat", json!({"nodeId": "id-1"})).await;
    assert_eq!(beat, json!({"success": true}));
    let after = node.request("resolve", json!({"alias": "web"})).await["node"]["lastHeartbeat"]
        .as_u64()
        .unwrap();
    assert!(after > before, "{after} > {before}");

    let unknown = node.request("heartbeat", json!({"nodeId": "ghost"})).await;
    assert_eq!(unknown, json!({"error": "Node not found"}));
    let unknown = node.request("unregister", json!({"nodeId": "ghost"})).await;
    assert_eq!(unknown, json!({"error": "Node not found"}));
}

#[tokio::test]
async fn unregister_removes_the_node() {
    let pmd = start(test_config()).await;
    let mut node = Client::connect(pmd.addr).await;
    node.register("id-1", "web", 9001).await;
    let done = node.request("unregister", json!({"nodeId": "id-1"})).await;
    assert_eq!(done, json!({"success": true}));
    let gone = node.request("resolve", json!({"alias": "web"})).await;
    assert_eq!(gone, json!({"error": "Node not found"}));
    assert_eq!(node.request("list", json!({})).await, json!({"nodes": []}));
}

#[tokio::test]
async fn status_reports_version_pid_and_node_count() {
    let pmd = start(test_config()).await;
    let mut node = Client::connect(pmd.addr).await;
    node.register("id-1", "web", 9001).await;
    let reply = node.request("status", json!({})).await;
    assert_eq!(reply["success"], true);
    let status = &reply["status"];
    assert_eq!(status["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(status["nodeCount"], 1);
    assert_eq!(status["pid"], std::process::id());
    assert!(status["uptimeMs"].is_u64());
    assert!(status["startedAt"].as_u64().unwrap() > 1_600_000_000_000);
}

#[tokio::test]
async fn watch_sends_snapshot_then_live_joins_and_leaves() {
    let pmd = start(test_config()).await;
    let mut early = Client::connect(pmd.addr).await;
    early.register("id-1", "early", 9001).await;

    let mut watcher = Client::connect(pmd.addr).await;
    assert_eq!(
        watcher.request("watch", json!({})).await,
        json!({"success": true})
    );
    assert_eq!(watcher.next_event().await, join("id-1"), "snapshot");

    let mut late = Client::connect(pmd.addr).await;
    late.register("id-2", "late", 9002).await;
    assert_eq!(watcher.next_event().await, join("id-2"));
    late.request("unregister", json!({"nodeId": "id-2"})).await;
    assert_eq!(watcher.next_event().await, leave("id-2"));

    // The watcher can still make requests; the next frame is their answer.
    let listed = watcher.request("list", json!({})).await;
    assert_eq!(listed["nodes"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn snapshot_and_live_events_neither_gap_nor_repeat_under_churn() {
    let pmd = start(test_config()).await;
    let addr = pmd.addr;
    let churn = tokio::spawn(async move {
        let mut node = Client::connect(addr).await;
        for i in 0..200 {
            node.register(&format!("id-{i}"), &format!("a{i}"), 9000)
                .await;
        }
    });
    tokio::time::sleep(Duration::from_millis(5)).await;
    let mut watcher = Client::connect(addr).await;
    watcher.request("watch", json!({})).await;
    let mut seen = std::collections::BTreeSet::new();
    while seen.len() < 200 {
        let (event, id) = watcher.next_event().await;
        assert_eq!(event, "peer:join");
        assert!(seen.insert(id.clone()), "{id} announced twice");
    }
    churn.await.unwrap();
}

#[tokio::test]
async fn dropped_connection_announces_leave_at_once() {
    let pmd = start(test_config()).await; // TTL 15 s: only the disconnect can explain a leave
    let mut watcher = Client::connect(pmd.addr).await;
    watcher.request("watch", json!({})).await;
    let mut node = Client::connect(pmd.addr).await;
    node.register("id-1", "web", 9001).await;
    node.register("id-2", "api", 9002).await;
    assert_eq!(watcher.next_event().await, join("id-1"));
    assert_eq!(watcher.next_event().await, join("id-2"));

    drop(node);
    let mut left = vec![watcher.next_event().await, watcher.next_event().await];
    left.sort();
    assert_eq!(left, [leave("id-1"), leave("id-2")]);
    let gone = watcher.request("resolve", json!({"alias": "web"})).await;
    assert_eq!(gone, json!({"error": "Node not found"}));
}

#[tokio::test]
async fn silent_registration_expires_after_ttl_though_its_connection_stays_open() {
    let pmd = start(DaemonConfig {
        ttl: Duration::from_millis(300),
        ..test_config()
    })
    .await;
    let mut watcher = Client::connect(pmd.addr).await;
    watcher.request("watch", json!({})).await;
    let mut silent = Client::connect(pmd.addr).await;
    silent.register("id-1", "web", 9001).await;
    assert_eq!(watcher.next_event().await, join("id-1"));

    assert_eq!(
        watcher.next_event().await,
        leave("id-1"),
        "expired within {PATIENCE:?}"
    );
    let gone = silent.request("heartbeat", json!({"nodeId": "id-1"})).await;
    assert_eq!(gone, json!({"error": "Node not found"}));
}

/// A non-loopback address of this machine, found without sending anything.
fn non_loopback_local_ip() -> Option<IpAddr> {
    let probe = UdpSocket::bind("0.0.0.0:0").ok()?;
    probe.connect("192.0.2.1:9").ok()?;
    let ip = probe.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

#[tokio::test]
async fn mutations_are_refused_from_non_loopback_peers() {
    let Some(ip) = non_loopback_local_ip() else {
        println!("note: no non-loopback address on this machine; checking the guard only");
        assert!(!is_loopback_peer("192.0.2.2".parse().unwrap()));
        assert!(is_loopback_peer("127.0.0.1".parse().unwrap()));
        return;
    };
    let pmd = start(DaemonConfig {
        bind: "0.0.0.0:0".parse().unwrap(),
        ..DaemonConfig::default()
    })
    .await;
    let target = SocketAddr::new(ip, pmd.addr.port());
    let mut local = Client::connect(SocketAddr::new(
        "127.0.0.1".parse().unwrap(),
        pmd.addr.port(),
    ))
    .await;
    local.register("id-1", "web", 9001).await;

    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(ip, 0)).unwrap();
    let mut remote = Client::over(socket.connect(target).await.unwrap());
    for (kind, payload) in [
        (
            "register",
            json!({"nodeId": "id-2", "alias": "evil", "host": "x", "port": 1}),
        ),
        ("unregister", json!({"nodeId": "id-1"})),
        ("heartbeat", json!({"nodeId": "id-1"})),
        ("shutdown", json!({})),
    ] {
        let refused = remote.request(kind, payload).await;
        let reason = refused["error"].as_str().unwrap_or_default();
        assert!(
            reason.contains("loopback") && reason.contains(kind),
            "{kind}: {refused}"
        );
    }
    // Reads are open to anyone, and nothing changed.
    let found = remote.request("resolve", json!({"alias": "web"})).await;
    assert_eq!(found["node"]["nodeId"], "id-1");
    assert_eq!(
        remote.request("list", json!({})).await["nodes"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(remote.request("status", json!({})).await["success"], true);
    assert_eq!(
        remote.request("watch", json!({})).await,
        json!({"success": true})
    );
    assert_eq!(remote.next_event().await, join("id-1"));
    assert!(!pmd.task.is_finished(), "remote shutdown was ignored");
}

#[tokio::test]
async fn shutdown_request_ends_run_even_with_nodes_connected() {
    let pmd = start(test_config()).await;
    let mut node = Client::connect(pmd.addr).await;
    node.register("id-1", "web", 9001).await;
    let mut watcher = Client::connect(pmd.addr).await;
    watcher.request("watch", json!({})).await;
    watcher.next_event().await;

    let mut admin = Client::connect(pmd.addr).await;
    assert_eq!(
        admin.request("shutdown", json!({})).await,
        json!({"success": true})
    );
    tokio::time::timeout(PATIENCE, pmd.task)
        .await
        .expect("run returned")
        .unwrap();
    node.expect_closed().await;
    admin.expect_closed().await;
    assert!(
        TcpStream::connect(pmd.addr).await.is_err(),
        "listener closed"
    );
}

#[tokio::test]
async fn shutdown_handle_ends_run() {
    let pmd = start(test_config()).await;
    let mut node = Client::connect(pmd.addr).await;
    node.register("id-1", "web", 9001).await;
    pmd.stop.cancel();
    tokio::time::timeout(PATIENCE, pmd.task)
        .await
        .expect("run returned")
        .unwrap();
    node.expect_closed().await;
}

/// Sends raw bytes on a fresh connection and returns the error reply.
async fn garbage(addr: SocketAddr, bytes: &[u8]) -> serde_json::Value {
    let mut bad = Client::connect(addr).await;
    bad.stream().write_all(bytes).await.unwrap();
    let reply = bad.next_frame().await;
    assert_eq!(reply.kind, "response");
    bad.expect_closed().await;
    serde_json::to_value(reply).unwrap()
}

fn frame(body: &[u8]) -> Vec<u8> {
    let mut bytes = (body.len() as u32).to_be_bytes().to_vec();
    bytes.extend_from_slice(body);
    bytes
}

#[tokio::test]
async fn protocol_garbage_closes_only_the_offending_connection() {
    let pmd = start(DaemonConfig {
        max_frame: 1024,
        ..test_config()
    })
    .await;
    let mut good = Client::connect(pmd.addr).await;
    good.register("id-1", "web", 9001).await;

    let cases: [(&str, Vec<u8>, &str); 5] = [
        (
            "oversized prefix",
            1_000_000u32.to_be_bytes().to_vec(),
            "exceeds the maximum",
        ),
        ("invalid UTF-8", frame(b"\xff\xfe\xfd"), "UTF-8"),
        ("invalid JSON", frame(b"{not json"), "JSON"),
        ("no type", frame(br#"{"payload":{}}"#), "malformed"),
        (
            "malformed payload",
            frame(br#"{"type":"resolve","payload":{"alias":3},"requestId":"r9"}"#),
            "malformed",
        ),
    ];
    for (name, bytes, expected) in cases {
        let reply = garbage(pmd.addr, &bytes).await;
        let reason = reply["payload"]["error"].as_str().unwrap_or_default();
        assert!(reason.contains(expected), "{name}: {reply}");
        let still = good.request("resolve", json!({"alias": "web"})).await;
        assert_eq!(still["node"]["nodeId"], "id-1", "after {name}");
    }

    let unknown = garbage(
        pmd.addr,
        &frame(br#"{"type":"dance","payload":{},"requestId":"req_7"}"#),
    )
    .await;
    assert_eq!(
        unknown,
        json!({"type": "response", "payload": {"error": "Unknown message type"}, "requestId": "req_7"})
    );
    let still = good.request("list", json!({})).await;
    assert_eq!(still["nodes"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn truncated_frame_and_early_close_only_drop_that_connection() {
    let pmd = start(test_config()).await;
    let mut watcher = Client::connect(pmd.addr).await;
    watcher.request("watch", json!({})).await;
    let mut node = Client::connect(pmd.addr).await;
    node.register("id-1", "web", 9001).await;
    assert_eq!(watcher.next_event().await, join("id-1"));
    node.stream()
        .write_all(&frame(b"{\"type\":")[..7])
        .await
        .unwrap();
    drop(node);
    assert_eq!(watcher.next_event().await, leave("id-1"));
}

#[tokio::test]
async fn connections_beyond_the_limit_are_refused() {
    let pmd = start(DaemonConfig {
        max_connections: 2,
        ..test_config()
    })
    .await;
    let mut first = Client::connect(pmd.addr).await;
    let mut second = Client::connect(pmd.addr).await;
    first.request("list", json!({})).await;
    second.request("list", json!({})).await;
    let mut third = TcpStream::connect(pmd.addr).await.unwrap();
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(PATIENCE, third.read(&mut byte))
        .await
        .unwrap();
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "third connection closed: {read:?}"
    );
    drop(first);
    // The slot frees once the daemon notices the close.
    for _attempt in 0..100 {
        let mut again = Client::connect(pmd.addr).await;
        again.send("list", json!({})).await;
        if again.try_next_frame().await.is_some() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the slot of a closed connection was never freed");
}

#[tokio::test]
async fn watcher_that_stops_reading_is_disconnected_not_buffered() {
    let pmd = start(DaemonConfig {
        watch_queue: 8,
        ..test_config()
    })
    .await;
    // A small receive window so the daemon's writes block soon.
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stalled = Client::over(socket.connect(pmd.addr).await.unwrap());
    stalled.request("watch", json!({})).await;

    // Each re-registration with a new port announces a leave and a join of
    // about 900 bytes: far more than the socket buffers (a few MiB) hold.
    let long = |c: &str| c.repeat(MAX_FIELD_BYTES);
    let mut node = Client::connect(pmd.addr).await;
    let rounds: u16 = 5_000;
    for port in 1..=rounds {
        let reg = json!({"nodeId": long("n"), "alias": long("a"), "host": long("h"), "port": port});
        assert_eq!(
            node.request("register", reg).await,
            json!({"success": true})
        );
    }
    // Now read: whatever was in flight arrives, then the daemon's close.
    let mut received = 0;
    while let Some(frame) = stalled.try_next_frame().await {
        assert_eq!(frame.kind, "event");
        received += 1;
    }
    assert!(
        received < 2 * usize::from(rounds),
        "got all {received} events: never disconnected"
    );
    // The daemon still serves others.
    let listed = node.request("list", json!({})).await;
    assert_eq!(listed["nodes"][0]["port"], rounds);
}

#[tokio::test]
async fn response_too_large_for_a_frame_becomes_an_error_reply() {
    let pmd = start(DaemonConfig {
        max_frame: 1024,
        ..test_config()
    })
    .await;
    let mut node = Client::connect(pmd.addr).await;
    for i in 0..10 {
        node.register(&format!("id-{i}"), &format!("alias-{i}"), 9000)
            .await;
    }
    let refused = node.request("list", json!({})).await;
    let reason = refused["error"].as_str().unwrap_or_default();
    assert!(
        reason.contains("exceeds the 1024-byte frame limit"),
        "{refused}"
    );
    // The connection (and its registrations) survive.
    let found = node.request("resolve", json!({"alias": "alias-3"})).await;
    assert_eq!(found["node"]["nodeId"], "id-3");
}
