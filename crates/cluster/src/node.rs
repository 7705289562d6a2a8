//! A cluster node: one process that is a node of the runtime, a member of
//! the ring, and a job engine over the shared Redis queue that consumes and
//! schedules only the partitions the ring gives it. This is what
//! `ironforge node start --seed ...` runs.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ironforge_jobs::engine::{Engine, EngineConfig, Store};
use ironforge_jobs::{Client, OwnedPartitions, RedisConfig, Registry, WorkerConfig};
use ironforge_node::{Node, NodeConfig};
use ironforge_ring::{RingNode, RingNodeConfig, SwimTimings, MAX_PARTITIONS};
use tokio::sync::watch;

use crate::error::ClusterError;
use crate::ownership::{self, JoinState, Ownership, DEFAULT_JOIN_GRACE, DEFAULT_JOIN_SETTLE};
use crate::placement::RingPlacement;
use crate::replication::{CrdtJournal, JobRecorder, Replication, ReplicationConfig};
use crate::replication_link::ReplicationLink;
use crate::routing::{NodeRouting, DEFAULT_FORWARD_TIMEOUT};
use crate::runner_link::RunnerLink;
use crate::takeover::{OwnershipHook, Takeover};
use crate::view::{ClusterSnapshot, ViewReceiver};

/// Default preference list length (owner plus replicas): 3.
pub const DEFAULT_REPLICAS: usize = 3;

/// How a cluster node starts. Build it with [`ClusterConfig::new`] and set
/// the fields that differ from the defaults.
#[derive(Clone)]
pub struct ClusterConfig {
    /// The node runtime: alias (also the ring name, unique in the
    /// cluster), PMD port, cookie, listen address.
    pub node: NodeConfig,
    /// Members to join through: `alias`, `alias@host` or node ids. Empty,
    /// or only this node itself, starts a new cluster (default empty).
    pub seeds: Vec<String>,
    /// The shared queue: url, namespace, and partitions P, which is also
    /// the ring's partition count. `owned` is set by the cluster.
    pub redis: RedisConfig,
    /// Where the HTTP API (jobs plus `/cluster/*`) listens (default none).
    pub http: Option<SocketAddr>,
    /// Handlers and worker settings. A member without a worker still owns
    /// partitions that then do not run, so every member of a cluster that
    /// runs jobs should have one (default none).
    pub worker: Option<(Registry, WorkerConfig)>,
    /// Preference list length N (owner plus N-1 replicas) (default 3).
    pub replicas: usize,
    /// Failure detection timings [`SwimTimings::default`]: a crashed member
    /// is noticed in about a second.
    pub timings: SwimTimings,
}

impl std::fmt::Debug for ClusterConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterConfig")
            .field("alias", &self.node.alias)
            .field("seeds", &self.seeds)
            .field("partitions", &self.redis.partitions)
            .field("http", &self.http)
            .field("replicas", &self.replicas)
            .finish_non_exhaustive()
    }
}

impl ClusterConfig {
    /// A first node (no seeds) with no API and no worker, and defaults for
    /// the rest.
    pub fn new(node: NodeConfig, redis: RedisConfig) -> Self {
        ClusterConfig {
            node,
            seeds: Vec::new(),
            redis,
            http: None,
            worker: None,
            replicas: DEFAULT_REPLICAS,
            timings: SwimTimings::default(),
        }
    }

    fn validate(&self) -> Result<(), ClusterError> {
        if self.replicas == 0 {
            return Err(ClusterError::Config("replicas must be at least 1".into()));
        }
        if self.redis.partitions == 0 || self.redis.partitions > MAX_PARTITIONS {
            return Err(ClusterError::Config(format!(
                "partitions must be between 1 and {MAX_PARTITIONS}, not {}",
                self.redis.partitions
            )));
        }
        Ok(())
    }
}

/// A running cluster node.
///
/// Dropping it stops gossiping without a goodbye, as a crash would (the
/// others take its partitions over after failure detection);
/// [`ClusterNode::shutdown`] leaves gracefully.
pub struct ClusterNode {
    member: String,
    node: Node,
    engine: Engine,
    owned: OwnedPartitions,
    view: ViewReceiver,
    routing: NodeRouting,
    replication: Replication,
    recorder: JobRecorder,
    takeover: Takeover,
}

impl std::fmt::Debug for ClusterNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterNode")
            .field("member", &self.member)
            .field("members", &self.members())
            .field("owned", &self.owned_partitions())
            .finish_non_exhaustive()
    }
}

impl ClusterNode {
    /// Starts the node, joins the ring through `config.seeds`, connects to
    /// Redis and starts the engine. Returns once the API listens; the node
    /// owns no partition until it has a view of the cluster (at once for a
    /// first node; after it has seen another member, or
    /// [`DEFAULT_JOIN_GRACE`] without one, for a joining node).
    pub async fn start(config: ClusterConfig) -> Result<ClusterNode, ClusterError> {
        config.validate()?;
        let started = Instant::now();
        let node = Node::start(config.node.clone()).await?;
        match Self::start_on(node.clone(), config, started).await {
            Ok(cluster) => Ok(cluster),
            Err(error) => {
                node.shutdown().await;
                Err(error)
            }
        }
    }

    async fn start_on(
        node: Node,
        config: ClusterConfig,
        started: Instant,
    ) -> Result<ClusterNode, ClusterError> {
        let founder = config
            .seeds
            .iter()
            .all(|seed| seed == node.alias() || seed == node.id());
        let partitions = config.redis.partitions;
        let mut ring_config = RingNodeConfig::new(config.seeds.clone());
        ring_config.ring = ownership::ring_config(partitions, config.replicas);
        ring_config.timings = config.timings;
        let ring_node = RingNode::start(node.clone(), ring_config).await?;
        let member = ring_node.local().name.clone();
        let ownership = if founder {
            Ownership::founder(member.clone())
        } else {
            Ownership::joining(member.clone(), DEFAULT_JOIN_GRACE, DEFAULT_JOIN_SETTLE)
        };
        let owned = OwnedPartitions::none();
        let (view_tx, view) = watch::channel(Arc::new(ClusterSnapshot {
            local: member.clone(),
            generation: ring_node.local().generation,
            ring: ring_node.ring(),
            owned: Arc::from(Vec::new()),
            join: ownership.state(),
        }));
        let routing = match NodeRouting::start(
            node.clone(),
            view.clone(),
            owned.clone(),
            DEFAULT_FORWARD_TIMEOUT,
        ) {
            Ok(routing) => routing,
            Err(error) => {
                let _ = ring_node.leave().await;
                return Err(error.into());
            }
        };
        let replication = Replication::start(
            node.clone(),
            Arc::new(RingPlacement::new(view.clone())),
            ReplicationConfig {
                partitions,
                replicas: config.replicas,
                generation: Some(ring_node.local().generation),
                ..ReplicationConfig::default()
            },
        );
        let replication = match replication {
            Ok(replication) => replication,
            Err(error) => {
                let _ = ring_node.leave().await;
                return Err(error.into());
            }
        };
        let mut redis = config.redis;
        redis.owned = Some(owned.clone());
        let mut engine_config = EngineConfig::new(Store::Redis(redis));
        engine_config.http = config.http;
        engine_config.worker = config.worker;
        engine_config.routes = Some(crate::http::routes(view.clone()));
        engine_config.owned_partitions = Some(owned.clone());
        engine_config.routing = Some(Arc::new(routing.clone()));
        engine_config.journal = Some(Arc::new(CrdtJournal::new(replication.clone())));
        let engine = match Engine::start(engine_config).await {
            Ok(engine) => engine,
            Err(error) => {
                replication.shutdown();
                let _ = ring_node.leave().await;
                return Err(error.into());
            }
        };
        let recorder = JobRecorder::spawn(replication.clone(), engine.client().clone());
        let runner = RunnerLink(engine.workflows().clone());
        routing.serve(Arc::new(runner.clone()));
        let hooks: Vec<Arc<dyn OwnershipHook>> = vec![
            Arc::new(ReplicationLink(replication.clone())),
            Arc::new(runner),
        ];
        let takeover =
            Takeover::start(ring_node, ownership, owned.clone(), view_tx, hooks, started);
        tracing::info!(%member, founder, seeds = ?config.seeds, partitions, "cluster node started");
        Ok(ClusterNode {
            member,
            node,
            engine,
            owned,
            view,
            routing,
            replication,
            recorder,
            takeover,
        })
    }

    /// This member's ring name (its alias).
    pub fn member(&self) -> &str {
        &self.member
    }

    /// Sorted member names in this node's view, itself included.
    pub fn members(&self) -> Vec<String> {
        self.view.borrow().members().to_vec()
    }

    /// The partitions this node consumes and schedules now, ascending.
    pub fn owned_partitions(&self) -> Vec<u32> {
        self.owned.list().to_vec()
    }

    /// This node's current view: ring, owned partitions, join state.
    pub fn snapshot(&self) -> Arc<ClusterSnapshot> {
        self.view.borrow().clone()
    }

    /// A client of the shared queue (submits reach every partition).
    pub fn client(&self) -> &Client {
        self.engine.client()
    }

    /// The job engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The node runtime this member runs on.
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// Workflow routing between members (forwards to partition owners).
    pub fn routing(&self) -> &NodeRouting {
        &self.routing
    }

    /// Replication of job and workflow records to each partition's
    /// preference list.
    pub fn replication(&self) -> &Replication {
        &self.replication
    }

    /// Where the HTTP API listens, if it runs.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.engine.http_addr()
    }

    /// Waits until this node's view holds exactly `expected` members and
    /// the node follows that ring (its owned partitions are those the ring
    /// gives it).
    pub async fn await_members(
        &self,
        expected: &[&str],
        timeout: Duration,
    ) -> Result<(), ClusterError> {
        let mut wanted: Vec<String> = expected.iter().map(|m| (*m).to_owned()).collect();
        wanted.sort_unstable();
        wanted.dedup();
        let mut view = self.view.clone();
        let waited = tokio::time::timeout(
            timeout,
            view.wait_for(|snapshot| {
                snapshot.members() == wanted.as_slice()
                    && matches!(snapshot.join, JoinState::Joined | JoinState::Alone)
                    && *snapshot.owned == *snapshot.ring.partitions_owned_by(&snapshot.local)
            }),
        )
        .await;
        match waited {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err(ClusterError::Stopped),
            Err(_) => Err(ClusterError::NotConverged {
                expected: wanted,
                actual: self.members(),
                timeout,
            }),
        }
    }

    /// Leaves gracefully: gives up every partition, says goodbye to the
    /// ring (the others take the partitions over at once), lets running
    /// jobs finish for up to `grace`, stops the engine and the node.
    pub async fn shutdown(self, grace: Duration) {
        let ClusterNode {
            member,
            node,
            engine,
            routing,
            replication,
            recorder,
            takeover,
            ..
        } = self;
        if let Err(error) = takeover.leave().await {
            tracing::warn!(%member, %error, "leaving the ring failed; the others will detect it");
        }
        let report = engine.shutdown(grace).await;
        if report.released > 0 {
            tracing::info!(%member, released = report.released, "unfinished jobs handed back to the queue");
        }
        recorder.stop();
        replication.shutdown();
        drop(routing);
        node.shutdown().await;
        tracing::info!(%member, "cluster node stopped");
    }
}
