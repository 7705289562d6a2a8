//! Replication throughput and latency between three real nodes on
//! 127.0.0.1 (TCP, cookie handshake, private PMD): a batch of job records
//! written on one node until both other replicas applied it, a single
//! write until its replicas applied it, and a read through a request from a
//! node outside the preference list.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ironforge_cluster::replication::{Placement, Replication, ReplicationConfig, StaticPlacement};
use ironforge_jobs::JobId;
use ironforge_node::{Node, NodeConfig};
use ironforge_pmd::server::{Daemon, DaemonConfig};
use serde_json::json;
use tokio::runtime::Runtime;

const PARTITIONS: u32 = 16;

async fn start_pmd() -> SocketAddr {
    let daemon = Daemon::bind(DaemonConfig {
        bind: "127.0.0.1:0".parse().unwrap(),
        ..DaemonConfig::default()
    })
    .await
    .unwrap();
    let addr = daemon.local_addr();
    tokio::spawn(daemon.run());
    addr
}

async fn cluster(replicas: usize) -> Vec<Replication> {
    cluster_of(3, replicas).await
}

async fn cluster_of(size: usize, replicas: usize) -> Vec<Replication> {
    let pmd = start_pmd().await;
    let names: Vec<String> = (0..size).map(|i| format!("bench-{i}")).collect();
    let mut members = Vec::new();
    for name in &names {
        let mut config = NodeConfig::new(name).cookie("bench").allow_multiple();
        config.pmd_addr = pmd;
        config.auto_start_pmd = false;
        let node = Node::start(config).await.unwrap();
        let placement = Arc::new(StaticPlacement::new(name, &names, PARTITIONS).unwrap());
        let config = ReplicationConfig {
            partitions: PARTITIONS,
            replicas,
            anti_entropy_interval: Duration::from_secs(3600),
            ..ReplicationConfig::default()
        };
        members.push(Replication::start(node, placement, config).unwrap());
    }
    members
}

async fn await_applied(replicas: &[Replication], targets: &[u64]) {
    loop {
        if replicas
            .iter()
            .zip(targets)
            .all(|(r, t)| r.stats().ops_applied >= *t)
        {
            return;
        }
        tokio::task::yield_now().await;
    }
}

fn bench(c: &mut Criterion) {
    let rt = Runtime::new().unwrap();
    const BATCH: u64 = 1000;
    let alone = rt.block_on(cluster_of(1, 1));
    let mut group = c.benchmark_group("replication");
    group.throughput(Throughput::Elements(BATCH));
    group.bench_function("write_jobs_1000_one_member_no_shipping", |b| {
        b.iter(|| {
            rt.block_on(async {
                let records = (0..BATCH)
                    .map(|i| {
                        let record = json!({"status": "completed", "attempts": 1,
                            "node": "bench-0", "updated_at": i, "kind": "email"});
                        (
                            (i % u64::from(PARTITIONS)) as u32,
                            JobId::new_random(),
                            record,
                        )
                    })
                    .collect();
                alone[0].write_jobs(records).await.unwrap();
            })
        })
    });
    group.finish();
    let members = rt.block_on(cluster(3));
    let mut group = c.benchmark_group("replication");

    group.throughput(Throughput::Elements(BATCH));
    group.bench_function("write_jobs_1000_applied_on_2_replicas", |b| {
        b.iter(|| {
            rt.block_on(async {
                let targets: Vec<u64> = members[1..]
                    .iter()
                    .map(|r| r.stats().ops_applied + BATCH)
                    .collect();
                let records = (0..BATCH)
                    .map(|i| {
                        let record = json!({"status": "completed", "attempts": 1,
                            "node": "bench-0", "updated_at": i, "kind": "email"});
                        (
                            (i % u64::from(PARTITIONS)) as u32,
                            JobId::new_random(),
                            record,
                        )
                    })
                    .collect();
                members[0].write_jobs(records).await.unwrap();
                await_applied(&members[1..], &targets).await;
            })
        })
    });

    group.throughput(Throughput::Elements(1));
    group.bench_function("write_job_applied_on_2_replicas", |b| {
        b.iter(|| {
            rt.block_on(async {
                let targets: Vec<u64> = members[1..]
                    .iter()
                    .map(|r| r.stats().ops_applied + 1)
                    .collect();
                let record = json!({"status": "queued"});
                members[0]
                    .write_job(3, JobId::new_random(), record)
                    .await
                    .unwrap();
                await_applied(&members[1..], &targets).await;
            })
        })
    });
    group.finish();

    // N = 2: find a member outside a partition's preference list.
    let members = rt.block_on(cluster(2));
    let names: Vec<String> = (0..3).map(|i| format!("bench-{i}")).collect();
    let placement = StaticPlacement::new("bench-0", &names, PARTITIONS).unwrap();
    let partition = (0..PARTITIONS)
        .find(|&p| !placement.preference_list(p, 2).contains(&names[0]))
        .unwrap();
    let job = JobId::new_random();
    rt.block_on(async {
        members[0]
            .write_job(partition, job, json!({"status": "running"}))
            .await
            .unwrap();
    });
    let mut group = c.benchmark_group("replication");
    group.bench_function("read_job_through_a_request", |b| {
        b.iter(|| {
            rt.block_on(async {
                let record = members[0].read_job(job, partition).await.unwrap();
                assert!(record.is_some());
            })
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
