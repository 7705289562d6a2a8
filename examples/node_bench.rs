//! Node-to-node benchmark: two nodes in separate processes on loopback.
//! Measures fire-and-forget throughput of ~100-byte JSON messages and
//! request/reply round-trip latency (p50/p99).
//!
//! Run: `cargo run --release --example node_bench [-- MESSAGES [ROUND_TRIPS]]`
//! (defaults: 2,000,000 messages, 20,000 round trips). The parent process
//! runs a private PMD on a free port and spawns itself as the sink. Both
//! processes use tokio's multi-threaded runtime, or its single-threaded one
//! with `IRONFORGE_BENCH_RUNTIME=current_thread` (one process per core).

use std::process::Stdio;
use std::time::{Duration, Instant};

use ironforge::node::{Node, NodeConfig, NodeEvent};
use ironforge::pmd::server::{Daemon, DaemonConfig};
use serde::Serialize;

const COOKIE: &str = "bench";
const SENDERS: usize = 4;

#[derive(Serialize)]
struct Sample<'a> {
    seq: u64,
    sender: usize,
    payload: &'a str,
}

fn main() -> anyhow::Result<()> {
    let runtime = match std::env::var("IRONFORGE_BENCH_RUNTIME").as_deref() {
        Ok("current_thread") => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?,
        _ => tokio::runtime::Runtime::new()?,
    };
    runtime.block_on(run())
}

async fn run() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--sink") {
        let port: u16 = args
            .get(2)
            .ok_or_else(|| anyhow::anyhow!("pmd port"))?
            .parse()?;
        return sink(port).await;
    }
    let messages: u64 = args
        .get(1)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(2_000_000);
    let round_trips: usize = args
        .get(2)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(20_000);

    let daemon = Daemon::bind(DaemonConfig {
        bind: "127.0.0.1:0".parse()?,
        ..DaemonConfig::default()
    })
    .await?;
    let pmd_port = daemon.local_addr().port();
    tokio::spawn(daemon.run());

    let mut source = config("source", pmd_port);
    source.mailbox_capacity = 1024;
    let source = Node::start(source).await?;
    let mut events = source.events();
    let mut child = tokio::process::Command::new(std::env::current_exe()?)
        .args(["--sink", &pmd_port.to_string()])
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    while let Some(event) = events.next().await {
        if matches!(event, NodeEvent::PeerJoin(ref p) if p.alias.as_deref() == Some("sink")) {
            break;
        }
    }
    // Warm the connection.
    source
        .request("sink", &"count", Duration::from_secs(5))
        .await?;

    let payload = "x".repeat(60);
    let per_sender = messages / SENDERS as u64;
    let total = per_sender * SENDERS as u64;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for sender in 0..SENDERS {
        let (node, payload) = (source.clone(), payload.clone());
        tasks.push(tokio::spawn(async move {
            for seq in 0..per_sender {
                let sample = Sample {
                    seq,
                    sender,
                    payload: &payload,
                };
                node.send("sink", &sample).await?;
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    // The sink handles its mailbox in order, so this reply comes after
    // every message above was received.
    let reply = source
        .request("sink", &"count", Duration::from_secs(60))
        .await?;
    let elapsed = started.elapsed();
    let counted = reply.body()["received"].as_u64().unwrap_or(0);
    let dropped = reply.body()["dropped"].as_u64().unwrap_or(0);
    let frame_len = serde_json::to_vec(&Sample {
        seq: 123_456,
        sender: 1,
        payload: &payload,
    })?
    .len();
    println!(
        "fire-and-forget: {total} messages of ~{frame_len} B body in {elapsed:.2?} = {:.0} msg/s (sink received {counted}, dropped {dropped})",
        total as f64 / elapsed.as_secs_f64()
    );

    let mut rtts = Vec::with_capacity(round_trips);
    for n in 0..round_trips {
        let sample = Sample {
            seq: n as u64,
            sender: 0,
            payload: &payload,
        };
        let started = Instant::now();
        source
            .request("sink", &sample, Duration::from_secs(5))
            .await?;
        rtts.push(started.elapsed());
    }
    rtts.sort();
    let pct = |p: f64| rtts[((rtts.len() as f64 * p) as usize).min(rtts.len() - 1)];
    println!(
        "request/reply: {round_trips} sequential round trips: p50 {:.1?} p99 {:.1?} max {:.1?}",
        pct(0.50),
        pct(0.99),
        rtts[rtts.len() - 1]
    );
    let floor = raw_tcp_round_trips(round_trips)?;
    println!(
        "raw TCP floor: {round_trips} blocking 100-byte round trips on loopback (no framing, no JSON): p50 {:.1?} p99 {:.1?}",
        floor[floor.len() / 2],
        floor[floor.len() * 99 / 100]
    );
    source.send("sink", &"stop").await?;
    source.shutdown().await;
    let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
    Ok(())
}

/// What the machine itself allows: blocking std sockets echoing 100 bytes
/// between two threads, sorted round-trip times.
fn raw_tcp_round_trips(n: usize) -> anyhow::Result<Vec<Duration>> {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let echo = std::thread::spawn(move || -> std::io::Result<()> {
        let (mut peer, _) = listener.accept()?;
        peer.set_nodelay(true)?;
        let mut buf = [0u8; 100];
        while peer.read_exact(&mut buf).is_ok() {
            peer.write_all(&buf)?;
        }
        Ok(())
    });
    let mut stream = std::net::TcpStream::connect(addr)?;
    stream.set_nodelay(true)?;
    let mut buf = [7u8; 100];
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        stream.write_all(&buf)?;
        stream.read_exact(&mut buf)?;
        times.push(started.elapsed());
    }
    drop(stream);
    let _ = echo.join();
    times.sort();
    Ok(times)
}

fn config(alias: &str, pmd_port: u16) -> NodeConfig {
    let mut config = NodeConfig::new(alias).cookie(COOKIE).pmd_port(pmd_port);
    config.auto_start_pmd = false;
    config
}

/// The receiving process: counts messages, answers requests with the count.
async fn sink(pmd_port: u16) -> anyhow::Result<()> {
    let mut config = config("sink", pmd_port);
    config.mailbox_capacity = 4_000_000;
    let node = Node::start(config).await?;
    let mut received = 0u64;
    while let Some(message) = node.recv().await {
        if message.is_request() {
            let stats = node.stats();
            let count = serde_json::json!({"received": received, "dropped": stats.dropped});
            node.reply(&message, &count).await?;
        } else if message.raw() == b"\"stop\"" {
            break;
        } else {
            received += 1;
        }
    }
    node.shutdown().await;
    Ok(())
}
