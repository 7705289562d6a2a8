//! Redis Streams backend: jobs survive in Redis (append-only file), many
//! worker processes on many hosts share one queue, and a Redis Cluster can
//! hold the partitions.
//!
//! Layout ([`keys`]): per partition and priority one stream with one
//! consumer group; a hash per job whose `spec` field (immutable JSON) is
//! written once while status, attempts, timestamps, error, progress and
//! result are separate fields; a sorted set of delayed jobs and retries; a
//! dead-letter stream; a counts hash; a leases hash. Every state change of a
//! partition is one Lua script ([`scripts`]), and every call batches its
//! partitions into one pipeline, so a batch costs one round trip whatever
//! its size (a fetch costs three: peek, lease, read the leased jobs).
//!
//! - **Fetch** peeks at the next entries of every partition (one pipeline),
//!   picks the `max` first by priority then FIFO order ([`plan`]), then leases
//!   exactly those shares with XREADGROUP (one pipeline): strict priority and
//!   FIFO across partitions without over-delivering.
//! - **Leases** are the stream's own pending entries: idle time, measured by
//!   Redis, is the lease clock; renew resets it (`XCLAIM … JUSTID`), and the
//!   reclaim script returns entries idle past their own lease length
//!   (`XPENDING … IDLE`), so worker clock skew cannot expire a lease early.
//!   Leasing writes no job hash: one HSET per partition and fetch records
//!   the batch's leases in the partition's `leases` hash (what makes a job
//!   `running` for `get`, `list` and `cancel`), and the leased
//!   jobs' specs are read with plain pipelined HMGETs, outside Lua.
//! - **Completion** writes each job hash once (status, result, counters)
//!   and trims the acknowledged entries off the stream in a few commands per
//!   batch rather than deleting them one by one.
//! - **Delays and retries** sit in a sorted set moved to the streams by one
//!   script per partition (range, add, remove), so concurrent promoters
//!   cannot queue a job twice.
//! - **Outages**: a [`ConnectionManager`] reconnects with backoff; meanwhile
//!   every call fails fast with [`BackendError::Unavailable`].

mod codec;
mod keys;
mod plan;
mod scripts;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Cmd, ErrorKind, RedisError, Value};

use self::codec::{decode_job, encode_spec, job_from_hash, kind_of, order_key, Mutable, Token};
use self::keys::{check_namespace, counts_key, leases_key, partition_prefix};
use self::plan::{choose, first_peek, Choice, Peeked, Share};
use self::scripts::{LuaScript, Scripts};
use crate::backend::{
    AckOutcome, Completion, Enqueued, Lease, PriorityCounts, QueueBackend, QueueStats, Receipt,
    Reclaimed,
};
use crate::backoff::FailDecision;
use crate::error::BackendError;
use crate::job::{Job, JobId, JobStatus, Priority};
use crate::partition::{OwnedPartitions, Partitioner, DEFAULT_PARTITIONS};

/// Oldest Redis with everything used here (XAUTOCLAIM-era stream commands:
/// `XPENDING … IDLE`, exclusive `XRANGE` bounds).
const MIN_REDIS_VERSION: (u32, u32) = (6, 2);

/// Most acknowledged entries a priority stream keeps waiting for trimming
/// behind an old pending entry (a long job); past it, completion deletes
/// entries one by one again (see `scripts::COMPLETE`). Bounds that memory at
/// about 100 bytes per entry, per stream.
const ACKED_ENTRIES_LIMIT: u64 = 10_000;

/// Settings of the Redis backend. Defaults in brackets.
#[derive(Clone, Debug)]
pub struct RedisConfig {
    /// Server URL, e.g. `redis://127.0.0.1:6379/0` [`redis://127.0.0.1:6379`].
    pub url: String,
    /// Key prefix, so several deployments can share one Redis [`ironforge`].
    pub namespace: String,
    /// Partitions P; a job lives in partition `hash mod P` [16].
    pub partitions: u32,
    /// Most unfinished jobs (queued, scheduled, retrying, running); spread
    /// evenly over the partitions, more submissions get `QueueFull` [10,000,000].
    pub max_live_jobs: u64,
    /// How long an idempotency key is remembered; `None` forever [7 days].
    pub idempotency_ttl: Option<Duration>,
    /// How long completed jobs are kept; `None` forever [None].
    pub completed_ttl: Option<Duration>,
    /// Newest completed and cancelled ids kept per partition for `list` [10,000].
    pub finished_index_len: usize,
    /// Most candidates examined per partition by `list` [100,000].
    pub max_list_scan: usize,
    /// Most jobs one `promote_due` moves per partition [10,000].
    pub max_promote_per_pass: usize,
    /// Most pending entries one `reclaim_expired` examines per stream [1,000].
    pub max_reclaim_scan: usize,
    /// Largest stored handler result; bigger ones are replaced by a marker [1 MiB].
    pub max_result_bytes: usize,
    /// Longest sleep of `wait_for_work` before the caller polls again [20 ms].
    pub idle_poll: Duration,
    /// Longest wait for a reply before the call fails `Unavailable` [5 s].
    pub response_timeout: Duration,
    /// Longest wait for a connection [2 s].
    pub connect_timeout: Duration,
    /// The partitions this process fetches from, promotes and reclaims;
    /// `None` is all of them [None]. Enqueue, reads and acknowledgements
    /// reach every partition whatever this says. The cluster layer hands
    /// each node the partitions it owns on the ring.
    pub owned: Option<OwnedPartitions>,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            url: "redis://127.0.0.1:6379".to_string(),
            namespace: "ironforge".to_string(),
            partitions: DEFAULT_PARTITIONS,
            max_live_jobs: 10_000_000,
            idempotency_ttl: Some(Duration::from_secs(7 * 24 * 3600)),
            completed_ttl: None,
            finished_index_len: 10_000,
            max_list_scan: 100_000,
            max_promote_per_pass: 10_000,
            max_reclaim_scan: 1_000,
            max_result_bytes: 1024 * 1024,
            idle_poll: Duration::from_millis(20),
            response_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(2),
            owned: None,
        }
    }
}

impl RedisConfig {
    /// Defaults with this server URL.
    pub fn new(url: impl Into<String>) -> Self {
        RedisConfig {
            url: url.into(),
            ..RedisConfig::default()
        }
    }

    /// Sets the key prefix.
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }
}

/// The Redis Streams backend. Cheap to share as `Arc<dyn QueueBackend>`;
/// all calls multiplex over one auto-reconnecting connection.
///
/// ```no_run
/// use std::sync::Arc;
/// use ironforge_jobs::{Client, JobSpec, RedisBackend, RedisConfig};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let config = RedisConfig::new("redis://127.0.0.1:6379").namespace("staging");
/// let client = Client::new(Arc::new(RedisBackend::connect(config).await?));
/// let id = client.submit(JobSpec::new("email", serde_json::json!({"to": "a@b.c"}))).await?;
/// println!("submitted {id}");
/// # Ok(())
/// # }
/// ```
pub struct RedisBackend {
    conn: ConnectionManager,
    scripts: Scripts,
    config: RedisConfig,
    partitioner: Partitioner,
    prefixes: Vec<String>,
    counts_keys: Vec<String>,
    /// Tie-break of order keys within one millisecond (see [`codec::order_key`]).
    seq: AtomicU64,
    closed: AtomicBool,
}

impl std::fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBackend")
            .field("namespace", &self.config.namespace)
            .field("partitions", &self.prefixes.len())
            .finish_non_exhaustive()
    }
}

/// Turns a Redis failure into the engine's error: connection trouble and
/// servers still loading their data are `Unavailable` (retry later).
fn backend_error(error: RedisError) -> BackendError {
    if error.code() == Some("QUEUEFULL") {
        return BackendError::Storage(format!("redis: {error}"));
    }
    let transient = error.is_io_error()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || error.is_timeout()
        || matches!(
            error.kind(),
            ErrorKind::BusyLoadingError
                | ErrorKind::TryAgain
                | ErrorKind::ClusterDown
                | ErrorKind::MasterDown
                | ErrorKind::ReadOnly
        );
    if transient {
        BackendError::Unavailable(format!("redis: {error}"))
    } else {
        BackendError::Storage(format!("redis: {error}"))
    }
}

/// Receipts of one partition with their positions in the caller's batch.
type Group<'a> = Vec<(usize, Token, &'a Receipt)>;

fn strings(value: Value) -> Result<Vec<String>, BackendError> {
    redis::from_owned_redis_value(value)
        .map_err(|e| BackendError::Storage(format!("redis: unexpected script reply: {e}")))
}

fn single(value: Value) -> Result<String, BackendError> {
    redis::from_owned_redis_value(value)
        .map_err(|e| BackendError::Storage(format!("redis: unexpected script reply: {e}")))
}

fn millis(duration: Duration) -> u64 {
    duration.as_millis().min(u128::from(u64::MAX)) as u64
}

fn outcome(flag: &str) -> AckOutcome {
    if flag == "1" {
        AckOutcome::Ok
    } else {
        AckOutcome::LeaseLost
    }
}

fn status_error(id: JobId, reply: &str, action: &'static str) -> BackendError {
    match reply.parse::<JobStatus>() {
        Ok(status) => BackendError::InvalidState { id, status, action },
        Err(_) if reply == "nf" => BackendError::NotFound(id),
        Err(_) => BackendError::Storage(format!("redis: unexpected {action} reply {reply:?}")),
    }
}

impl RedisBackend {
    /// Connects, checks the server version, loads the scripts and creates
    /// the consumer groups. Fails with `Unavailable` if Redis cannot be
    /// reached, `Storage` if the URL or namespace is invalid or the server
    /// is too old.
    pub async fn connect(config: RedisConfig) -> Result<RedisBackend, BackendError> {
        check_namespace(&config.namespace)?;
        let client = redis::Client::open(config.url.as_str()).map_err(|e| {
            BackendError::Storage(format!("invalid redis url {:?}: {e}", config.url))
        })?;
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(config.connect_timeout)
            .set_response_timeout(config.response_timeout)
            .set_number_of_retries(3)
            .set_factor(50)
            .set_max_delay(2_000);
        let conn = ConnectionManager::new_with_config(client, manager_config)
            .await
            .map_err(backend_error)?;
        let partitioner = Partitioner::new(config.partitions);
        let prefixes: Vec<String> = (0..partitioner.partitions())
            .map(|p| partition_prefix(&config.namespace, p))
            .collect();
        let counts_keys = prefixes.iter().map(|p| counts_key(p)).collect();
        let backend = RedisBackend {
            conn,
            scripts: Scripts::new(),
            config,
            partitioner,
            prefixes,
            counts_keys,
            seq: AtomicU64::new(0),
            closed: AtomicBool::new(false),
        };
        backend.check_version().await?;
        backend.load_scripts().await?;
        let cmds = (0..backend.partitions())
            .map(|p| backend.script(&backend.scripts.ensure_groups, p))
            .collect();
        backend.run(cmds).await?;
        tracing::info!(
            namespace = %backend.config.namespace,
            partitions = backend.partitions(),
            "redis job backend connected"
        );
        Ok(backend)
    }

    /// The number of partitions.
    pub fn partitions(&self) -> u32 {
        self.partitioner.partitions()
    }

    /// The key prefix of a partition, `<namespace>:{p<N>}:` (for operators
    /// and tests inspecting the keys).
    pub fn partition_prefix(&self, partition: u32) -> Option<&str> {
        self.prefixes.get(partition as usize).map(String::as_str)
    }

    /// The partitions this process consumes (see [`RedisConfig::owned`]).
    fn consumed(&self) -> Vec<u32> {
        match &self.config.owned {
            Some(owned) => owned
                .list()
                .iter()
                .copied()
                .filter(|p| *p < self.partitions())
                .collect(),
            None => (0..self.partitions()).collect(),
        }
    }

    async fn check_version(&self) -> Result<(), BackendError> {
        let mut conn = self.conn.clone();
        let info: String = redis::cmd("INFO")
            .arg("server")
            .query_async(&mut conn)
            .await
            .map_err(backend_error)?;
        let version = info
            .lines()
            .find_map(|l| l.strip_prefix("redis_version:"))
            .unwrap_or("0.0")
            .trim()
            .to_string();
        let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
        let found = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
        if found < MIN_REDIS_VERSION {
            return Err(BackendError::Storage(format!(
                "redis {version} is too old: the job backend needs {}.{} or newer",
                MIN_REDIS_VERSION.0, MIN_REDIS_VERSION.1
            )));
        }
        Ok(())
    }

    async fn load_scripts(&self) -> Result<(), BackendError> {
        let mut pipe = redis::pipe();
        for script in self.scripts.all() {
            pipe.cmd("SCRIPT").arg("LOAD").arg(&script.code);
        }
        let mut conn = self.conn.clone();
        let _: Vec<String> = pipe.query_async(&mut conn).await.map_err(backend_error)?;
        Ok(())
    }

    /// An EVALSHA of `script` on partition `p`, routed by its counts key,
    /// with the partition prefix as first argument; callers append the rest.
    fn script(&self, script: &LuaScript, p: u32) -> Cmd {
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(&script.sha)
            .arg(1)
            .arg(&self.counts_keys[p as usize])
            .arg(&self.prefixes[p as usize]);
        cmd
    }

    /// Sends the commands as one pipeline; reloads the scripts once if the
    /// server lost them (restart without the script cache).
    async fn run(&self, cmds: Vec<Cmd>) -> Result<Vec<Value>, BackendError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(BackendError::Closed);
        }
        if cmds.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for cmd in cmds {
            pipe.add_command(cmd);
        }
        let mut conn = self.conn.clone();
        match pipe.query_async::<Vec<Value>>(&mut conn).await {
            Err(e) if e.kind() == ErrorKind::NoScriptError => {
                tracing::info!("redis lost the job scripts (restart?); reloading them");
                self.load_scripts().await?;
                pipe.query_async(&mut conn).await.map_err(backend_error)
            }
            other => other.map_err(backend_error),
        }
    }

    fn reserve_seq(&self, n: usize) -> u64 {
        self.seq.fetch_add(n as u64 + 1, Ordering::Relaxed)
    }

    /// Where a job lives: the partition the client chose
    /// ([`Partitioner::place`]: by partition key, else idempotency key, else
    /// id), so duplicates of one idempotency key meet in one partition and
    /// deduplication is one atomic script.
    fn home(&self, job: &Job) -> u32 {
        job.partition % self.partitions()
    }

    /// Finds the partition holding job `id`: first where an id-placed job
    /// would be, then everywhere in one pipeline.
    async fn locate(&self, id: JobId) -> Result<Option<u32>, BackendError> {
        let hint = self.partitioner.partition_of(&id, None);
        let mut order: Vec<u32> = vec![hint];
        order.extend((0..self.partitions()).filter(|p| *p != hint));
        let probe = |ps: &[u32]| {
            ps.iter()
                .map(|p| {
                    let mut cmd = redis::cmd("EXISTS");
                    cmd.arg(format!("{}job:{id}", self.prefixes[*p as usize]));
                    cmd
                })
                .collect::<Vec<_>>()
        };
        for group in [&order[..1], &order[1..]] {
            let found = self.run(probe(group)).await?;
            for (p, exists) in group.iter().zip(found) {
                if matches!(exists, Value::Int(1)) {
                    return Ok(Some(*p));
                }
            }
        }
        Ok(None)
    }

    /// Reads jobs: the hash, then, for a `queued` one, the lease on its
    /// current entry (which makes it running).
    async fn read_jobs(&self, wanted: &[(u32, JobId)]) -> Result<Vec<Job>, BackendError> {
        let cmds = wanted
            .iter()
            .map(|(p, id)| {
                let mut cmd = redis::cmd("HGETALL");
                cmd.arg(format!("{}job:{id}", self.prefixes[*p as usize]));
                cmd
            })
            .collect();
        let mut hashes = Vec::with_capacity(wanted.len());
        for ((_, id), reply) in wanted.iter().zip(self.run(cmds).await?) {
            let hash: HashMap<String, String> = redis::from_owned_redis_value(reply)
                .map_err(|e| BackendError::Storage(format!("redis: job {id}: {e}")))?;
            hashes.push(hash);
        }
        let queued: Vec<(usize, Cmd)> = wanted
            .iter()
            .zip(&hashes)
            .enumerate()
            .filter(|(_, (_, h))| h.get("st").map(String::as_str) == Some("queued"))
            .filter_map(|(i, ((p, _), h))| {
                let (entry, rank) = (h.get("ent")?, h.get("pr")?);
                let mut cmd = redis::cmd("HGET");
                cmd.arg(leases_key(&self.prefixes[*p as usize]))
                    .arg(format!("{rank}:{entry}"));
                Some((i, cmd))
            })
            .collect();
        let mut leases: Vec<Option<String>> = vec![None; wanted.len()];
        if !queued.is_empty() {
            let (slots, cmds): (Vec<usize>, Vec<Cmd>) = queued.into_iter().unzip();
            for (i, reply) in slots.into_iter().zip(self.run(cmds).await?) {
                leases[i] = redis::from_owned_redis_value(reply)
                    .map_err(|e| BackendError::Storage(format!("redis: lease: {e}")))?;
            }
        }
        let mut jobs = Vec::with_capacity(wanted.len());
        for (((_, id), hash), lease) in wanted.iter().zip(&hashes).zip(&leases) {
            if let Some(job) = job_from_hash(*id, hash, lease.as_deref())? {
                jobs.push(job);
            }
        }
        Ok(jobs)
    }

    async fn peek(&self, partitions: &[u32], asked: usize) -> Result<Vec<Peeked>, BackendError> {
        let cmds = partitions
            .iter()
            .map(|p| {
                let mut cmd = self.script(&self.scripts.peek, *p);
                cmd.arg(asked);
                cmd
            })
            .collect();
        let replies = self.run(cmds).await?;
        let mut peeked = Vec::with_capacity(partitions.len());
        for (p, reply) in partitions.iter().zip(replies) {
            let flat = strings(reply)?;
            let keys = flat
                .chunks_exact(2)
                .map(|pair| (pair[0].parse::<usize>().unwrap_or(3), order_key(&pair[1])))
                .collect();
            peeked.push(Peeked {
                partition: *p,
                asked,
                keys,
            });
        }
        Ok(peeked)
    }

    async fn claim(
        &self,
        shares: &[Share],
        consumer: &str,
        lease_ms: u64,
        now_ms: u64,
    ) -> Result<Vec<(usize, (u64, u64), Lease)>, BackendError> {
        let cmds = shares
            .iter()
            .map(|share| {
                let mut cmd = self.script(&self.scripts.claim, share.partition);
                cmd.arg(consumer).arg(now_ms).arg(lease_ms);
                for n in share.per_rank {
                    cmd.arg(n);
                }
                cmd
            })
            .collect();
        let replies = self.run(cmds).await?;
        // What the lease scripts granted: partition, then rank, entry, job
        // id, order, deliveries, attempts.
        let mut granted: Vec<(u32, Vec<String>)> = Vec::new();
        for (share, reply) in shares.iter().zip(replies) {
            let flat = strings(reply)?;
            for f in flat.chunks_exact(6) {
                granted.push((share.partition, f.to_vec()));
            }
        }
        if granted.is_empty() {
            return Ok(Vec::new());
        }
        // The leased jobs' spec and run fields: read-only, and nothing else
        // writes them while the lease is held, so plain commands outside the
        // script suffice.
        let reads = granted
            .iter()
            .map(|(p, f)| {
                let mut cmd = redis::cmd("HMGET");
                cmd.arg(format!("{}job:{}", self.prefixes[*p as usize], f[2]))
                    .arg("spec")
                    .arg("run")
                    .arg("err");
                cmd
            })
            .collect();
        let fields = self.run(reads).await?;
        let now = now_ms.to_string();
        let mut leases = Vec::with_capacity(granted.len());
        for ((partition, f), stored) in granted.into_iter().zip(fields) {
            let stored: Vec<Option<String>> = redis::from_owned_redis_value(stored)
                .map_err(|e| BackendError::Storage(format!("redis: leased job fields: {e}")))?;
            let id: JobId = match f[2].parse() {
                Ok(id) => id,
                Err(_) => {
                    tracing::error!(entry = %f[1], "stream entry with an invalid job id skipped");
                    continue;
                }
            };
            let field = |i: usize| stored.get(i).and_then(|v| v.as_deref());
            let rank = f[0].parse::<usize>().unwrap_or(3).min(3);
            let m = Mutable {
                status: JobStatus::Running,
                attempts: &f[5],
                deliveries: &f[4],
                run_at: field(1).unwrap_or("0"),
                started_at: Some(&now),
                finished_at: None,
                last_error: field(2),
                result: None,
                progress: None,
            };
            let job = match decode_job(id, field(0).unwrap_or(""), &m) {
                Ok(job) => job,
                Err(error) => {
                    tracing::error!(%id, %error, "leased job is unreadable; it will be reclaimed");
                    continue;
                }
            };
            let token = Token {
                partition,
                rank,
                entry: f[1].clone(),
                consumer: consumer.to_string(),
                attempts: Some(job.attempts),
                lease: Some((job.deliveries, now_ms)),
            };
            let lease = Lease {
                receipt: Receipt {
                    job_id: id,
                    kind: job.kind.clone(),
                    priority: Priority::from_rank(rank).unwrap_or(job.priority),
                    token: token.encode(),
                },
                delivery_count: job.deliveries,
                expires_at: now_ms.saturating_add(lease_ms),
                job,
            };
            leases.push((rank, order_key(&f[3]), lease));
        }
        Ok(leases)
    }

    /// Groups receipts by partition, keeping their positions.
    fn by_partition<'a>(
        &self,
        receipts: impl Iterator<Item = &'a Receipt>,
    ) -> HashMap<u32, Group<'a>> {
        let mut groups: HashMap<u32, Group<'a>> = HashMap::new();
        for (i, receipt) in receipts.enumerate() {
            if let Some(token) = Token::decode(receipt) {
                if token.partition < self.partitions() {
                    groups
                        .entry(token.partition)
                        .or_default()
                        .push((i, token, receipt));
                }
            }
        }
        groups
    }

    /// Runs one script per partition group and maps its per-item flags back.
    async fn per_item<'a>(
        &self,
        total: usize,
        groups: HashMap<u32, Group<'a>>,
        build: impl Fn(u32, &[(usize, Token, &'a Receipt)]) -> Cmd,
    ) -> Result<Vec<AckOutcome>, BackendError> {
        let mut outcomes = vec![AckOutcome::LeaseLost; total];
        let groups: Vec<(u32, Group<'a>)> = groups.into_iter().collect();
        let cmds = groups.iter().map(|(p, items)| build(*p, items)).collect();
        let replies = self.run(cmds).await?;
        for ((_, items), reply) in groups.iter().zip(replies) {
            for ((i, _, _), flag) in items.iter().zip(strings(reply)?) {
                outcomes[*i] = outcome(&flag);
            }
        }
        Ok(outcomes)
    }

    fn encode_result(&self, result: &serde_json::Value) -> String {
        let text = serde_json::to_string(result).unwrap_or_else(|_| "null".to_string());
        if text.len() > self.config.max_result_bytes {
            serde_json::json!({
                "truncated": true,
                "bytes": text.len(),
                "limit": self.config.max_result_bytes,
            })
            .to_string()
        } else {
            text
        }
    }
}

#[async_trait]
impl QueueBackend for RedisBackend {
    fn name(&self) -> &'static str {
        "redis"
    }

    async fn enqueue(&self, jobs: Vec<Job>) -> Result<Vec<Enqueued>, BackendError> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let per_partition_limit = self
            .config
            .max_live_jobs
            .div_ceil(u64::from(self.partitions()));
        let idem_ttl = self.config.idempotency_ttl.map(millis).unwrap_or(0);
        let now_ms = jobs.iter().map(|j| j.created_at).max().unwrap_or(0);
        let mut groups: HashMap<u32, Vec<usize>> = HashMap::new();
        for (i, job) in jobs.iter().enumerate() {
            groups.entry(self.home(job)).or_default().push(i);
        }
        let groups: Vec<(u32, Vec<usize>)> = groups.into_iter().collect();
        // One sequence range for the whole batch: FIFO follows batch order
        // across partitions.
        let seq = self.reserve_seq(jobs.len());
        let mut cmds = Vec::with_capacity(groups.len());
        for (p, members) in &groups {
            let mut cmd = self.script(&self.scripts.enqueue, *p);
            cmd.arg(now_ms).arg(per_partition_limit).arg(idem_ttl);
            for &i in members {
                let job = &jobs[i];
                let mut stored = job.clone();
                stored.partition = *p;
                cmd.arg(job.id.to_string())
                    .arg(job.priority.rank())
                    .arg(if job.status == JobStatus::Scheduled {
                        1
                    } else {
                        0
                    })
                    .arg(job.run_at)
                    .arg(encode_spec(&stored)?)
                    .arg(job.idempotency_key.as_deref().unwrap_or(""))
                    .arg(seq + i as u64);
            }
            cmds.push(cmd);
        }
        let replies = self.run(cmds).await.map_err(|e| match e {
            BackendError::Storage(m) if m.contains("QUEUEFULL") => BackendError::QueueFull {
                limit: self.config.max_live_jobs.min(usize::MAX as u64) as usize,
            },
            other => other,
        })?;
        let mut out: Vec<Enqueued> = jobs
            .iter()
            .map(|j| Enqueued {
                id: j.id,
                duplicate: false,
            })
            .collect();
        for ((_, members), reply) in groups.iter().zip(replies) {
            for (&i, existing) in members.iter().zip(strings(reply)?) {
                if !existing.is_empty() {
                    out[i] = Enqueued {
                        id: existing.parse().map_err(|_| {
                            BackendError::Storage(format!(
                                "redis: idempotency key maps to an invalid id {existing:?}"
                            ))
                        })?,
                        duplicate: true,
                    };
                }
            }
        }
        Ok(out)
    }

    async fn fetch(
        &self,
        consumer: &str,
        max: usize,
        lease: Duration,
        now_ms: u64,
    ) -> Result<Vec<Lease>, BackendError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let consumed = self.consumed();
        if consumed.is_empty() {
            return Ok(Vec::new());
        }
        let mut peeked = self
            .peek(&consumed, first_peek(max, consumed.len() as u32))
            .await?;
        let shares = loop {
            match choose(&peeked, max) {
                Choice::Lease(shares) => break shares,
                Choice::PeekAgain(again) => {
                    for fresh in self.peek(&again, max).await? {
                        if let Some(slot) =
                            peeked.iter_mut().find(|p| p.partition == fresh.partition)
                        {
                            *slot = fresh;
                        }
                    }
                }
            }
        };
        if shares.is_empty() {
            return Ok(Vec::new());
        }
        let mut leases = self.claim(&shares, consumer, millis(lease), now_ms).await?;
        leases.sort_by_key(|(rank, order, _)| (*rank, *order));
        Ok(leases.into_iter().map(|(_, _, lease)| lease).collect())
    }

    async fn complete(
        &self,
        done: Vec<Completion>,
        now_ms: u64,
    ) -> Result<Vec<AckOutcome>, BackendError> {
        if done.is_empty() {
            return Ok(Vec::new());
        }
        let ttl = self.config.completed_ttl.map(millis).unwrap_or(0);
        let results: Vec<String> = done.iter().map(|c| self.encode_result(&c.result)).collect();
        let groups = self.by_partition(done.iter().map(|c| &c.receipt));
        self.per_item(done.len(), groups, |p, items| {
            let mut cmd = self.script(&self.scripts.complete, p);
            cmd.arg(now_ms)
                .arg(ttl)
                .arg(self.config.finished_index_len.max(1))
                .arg(ACKED_ENTRIES_LIMIT);
            for (i, token, receipt) in items {
                let (deliveries, started) = match token.lease {
                    Some((d, s)) => (d.to_string(), s.to_string()),
                    None => (String::new(), String::new()),
                };
                cmd.arg(token.rank)
                    .arg(&token.entry)
                    .arg(receipt.job_id.to_string())
                    .arg(&results[*i])
                    .arg(token.attempts.map(|a| a.to_string()).unwrap_or_default())
                    .arg(deliveries)
                    .arg(started);
            }
            cmd
        })
        .await
    }

    async fn fail(
        &self,
        receipt: Receipt,
        error: String,
        decision: FailDecision,
        now_ms: u64,
    ) -> Result<AckOutcome, BackendError> {
        let Some(token) = Token::decode(&receipt).filter(|t| t.partition < self.partitions())
        else {
            return Ok(AckOutcome::LeaseLost);
        };
        let (mode, at) = match decision {
            FailDecision::Retry { at } => ("retry", at),
            FailDecision::Dead => ("dead", now_ms),
        };
        let mut cmd = self.script(&self.scripts.fail, token.partition);
        cmd.arg(now_ms)
            .arg(token.rank)
            .arg(&token.entry)
            .arg(receipt.job_id.to_string())
            .arg(&error)
            .arg(mode)
            .arg(at);
        let reply = self.run(vec![cmd]).await?.pop().unwrap_or(Value::Nil);
        Ok(outcome(&single(reply)?))
    }

    async fn release(
        &self,
        receipts: Vec<Receipt>,
        now_ms: u64,
    ) -> Result<Vec<AckOutcome>, BackendError> {
        if receipts.is_empty() {
            return Ok(Vec::new());
        }
        let groups = self.by_partition(receipts.iter());
        self.per_item(receipts.len(), groups, |p, items| {
            let mut cmd = self.script(&self.scripts.release, p);
            cmd.arg(now_ms).arg(self.reserve_seq(items.len()));
            for (_, token, receipt) in items {
                cmd.arg(token.rank)
                    .arg(&token.entry)
                    .arg(receipt.job_id.to_string());
            }
            cmd
        })
        .await
    }

    async fn renew(
        &self,
        receipts: &[Receipt],
        lease: Duration,
        _now_ms: u64,
    ) -> Result<Vec<AckOutcome>, BackendError> {
        if receipts.is_empty() {
            return Ok(Vec::new());
        }
        let lease_ms = millis(lease);
        let groups = self.by_partition(receipts.iter());
        self.per_item(receipts.len(), groups, |p, items| {
            let mut cmd = self.script(&self.scripts.renew, p);
            cmd.arg(lease_ms);
            for (_, token, receipt) in items {
                cmd.arg(token.rank)
                    .arg(&token.entry)
                    .arg(receipt.job_id.to_string())
                    .arg(&token.consumer);
            }
            cmd
        })
        .await
    }

    async fn progress(&self, receipt: &Receipt, value: u8) -> Result<AckOutcome, BackendError> {
        let Some(token) = Token::decode(receipt).filter(|t| t.partition < self.partitions()) else {
            return Ok(AckOutcome::LeaseLost);
        };
        let mut cmd = self.script(&self.scripts.progress, token.partition);
        cmd.arg(token.rank)
            .arg(&token.entry)
            .arg(receipt.job_id.to_string())
            .arg(value.min(100));
        let reply = self.run(vec![cmd]).await?.pop().unwrap_or(Value::Nil);
        Ok(outcome(&single(reply)?))
    }

    async fn promote_due(&self, now_ms: u64) -> Result<usize, BackendError> {
        let limit = self.config.max_promote_per_pass.max(1);
        let cmds = self
            .consumed()
            .into_iter()
            .map(|p| {
                let mut cmd = self.script(&self.scripts.promote, p);
                cmd.arg(now_ms).arg(self.reserve_seq(limit)).arg(limit);
                cmd
            })
            .collect();
        let mut moved = 0;
        for reply in self.run(cmds).await? {
            moved += single(reply)?.parse::<usize>().unwrap_or(0);
        }
        Ok(moved)
    }

    async fn reclaim_expired(
        &self,
        now_ms: u64,
        max_deliveries: u32,
    ) -> Result<Vec<Reclaimed>, BackendError> {
        let scan = self.config.max_reclaim_scan.max(1);
        let consumed = self.consumed();
        let cmds = consumed
            .iter()
            .map(|&p| {
                let mut cmd = self.script(&self.scripts.reclaim, p);
                cmd.arg(now_ms)
                    .arg(self.reserve_seq(scan * 4))
                    .arg(max_deliveries.max(1))
                    .arg(scan);
                cmd
            })
            .collect();
        let mut moved: Vec<(u32, JobId, bool)> = Vec::new();
        for (&p, reply) in consumed.iter().zip(self.run(cmds).await?) {
            for f in strings(reply)?.chunks_exact(2) {
                if let Ok(id) = f[0].parse::<JobId>() {
                    moved.push((p, id, f[1] == "1"));
                }
            }
        }
        // Kinds come from the specs (the job hash keeps no copy of it).
        let specs = moved
            .iter()
            .map(|(p, id, _)| {
                let mut cmd = redis::cmd("HGET");
                cmd.arg(format!("{}job:{id}", self.prefixes[*p as usize]))
                    .arg("spec");
                cmd
            })
            .collect();
        let specs = self.run(specs).await?;
        let mut reclaimed = Vec::with_capacity(moved.len());
        for ((_, id, dead), spec) in moved.into_iter().zip(specs) {
            let spec: Option<String> = redis::from_owned_redis_value(spec).unwrap_or(None);
            reclaimed.push(Reclaimed {
                id,
                kind: spec.as_deref().map(kind_of).unwrap_or_default(),
                dead,
            });
        }
        if !reclaimed.is_empty() {
            tracing::info!(count = reclaimed.len(), "expired leases reclaimed");
        }
        Ok(reclaimed)
    }

    async fn get(&self, id: JobId) -> Result<Option<Job>, BackendError> {
        match self.locate(id).await? {
            Some(p) => Ok(self.read_jobs(&[(p, id)]).await?.pop()),
            None => Ok(None),
        }
    }

    async fn cancel(&self, id: JobId, now_ms: u64) -> Result<(), BackendError> {
        let p = self.locate(id).await?.ok_or(BackendError::NotFound(id))?;
        let mut cmd = self.script(&self.scripts.cancel, p);
        cmd.arg(now_ms)
            .arg(id.to_string())
            .arg(self.config.finished_index_len.max(1));
        let reply = single(self.run(vec![cmd]).await?.pop().unwrap_or(Value::Nil))?;
        match reply.as_str() {
            "ok" => Ok(()),
            other => Err(status_error(id, other, "cancel")),
        }
    }

    async fn retry_dead(
        &self,
        id: JobId,
        reset_attempts: bool,
        now_ms: u64,
    ) -> Result<(), BackendError> {
        let p = self.locate(id).await?.ok_or(BackendError::NotFound(id))?;
        let mut cmd = self.script(&self.scripts.retry_dead, p);
        cmd.arg(now_ms)
            .arg(self.reserve_seq(1))
            .arg(id.to_string())
            .arg(if reset_attempts { 1 } else { 0 });
        let reply = single(self.run(vec![cmd]).await?.pop().unwrap_or(Value::Nil))?;
        match reply.as_str() {
            "ok" => Ok(()),
            other => Err(status_error(id, other, "retry")),
        }
    }

    async fn list(&self, status: JobStatus, limit: usize) -> Result<Vec<Job>, BackendError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let cmds = (0..self.partitions())
            .map(|p| {
                let mut cmd = self.script(&self.scripts.list, p);
                cmd.arg(status.as_str())
                    .arg(limit)
                    .arg(self.config.max_list_scan.max(1));
                cmd
            })
            .collect();
        let mut wanted = Vec::new();
        for (p, reply) in (0..self.partitions()).zip(self.run(cmds).await?) {
            for id in strings(reply)? {
                if wanted.len() < limit {
                    if let Ok(id) = id.parse::<JobId>() {
                        wanted.push((p, id));
                    }
                }
            }
        }
        let mut jobs = self.read_jobs(&wanted).await?;
        jobs.retain(|j| j.status == status);
        Ok(jobs)
    }

    async fn stats(&self) -> Result<QueueStats, BackendError> {
        let cmds = self
            .counts_keys
            .iter()
            .map(|key| {
                let mut cmd = redis::cmd("HGETALL");
                cmd.arg(key);
                cmd
            })
            .collect();
        let mut totals: HashMap<String, i64> = HashMap::new();
        for reply in self.run(cmds).await? {
            let counts: HashMap<String, i64> = redis::from_owned_redis_value(reply)
                .map_err(|e| BackendError::Storage(format!("redis: counts: {e}")))?;
            for (field, n) in counts {
                *totals.entry(field).or_default() += n;
            }
        }
        let get = |field: &str| totals.get(field).copied().unwrap_or(0).max(0) as u64;
        let mut queued = PriorityCounts::default();
        for priority in Priority::ALL {
            queued.set(priority, get(&format!("q{}", priority.rank())));
        }
        Ok(QueueStats {
            queued,
            scheduled: get("sched"),
            retrying: get("retry"),
            running: get("run"),
            completed: get("done"),
            dead: get("dead"),
            cancelled: get("cancel"),
        })
    }

    async fn wait_for_work(&self, max_wait: Duration) {
        tokio::time::sleep(max_wait.min(self.config.idle_poll)).await;
    }

    async fn close(&self) -> Result<(), BackendError> {
        self.closed.store(true, Ordering::Release);
        Ok(())
    }
}

#[cfg(all(test, feature = "testkit"))]
mod tests {
    use super::*;
    use crate::clock::now_ms;
    use crate::job::JobSpec;
    use crate::testkit::RedisServer;

    /// A batch naming one lease twice completes the job exactly once, with
    /// the attempt count the receipt carried plus one.
    #[tokio::test]
    async fn duplicate_receipts_in_one_batch_complete_once() {
        let server = RedisServer::start();
        let backend = RedisBackend::connect(RedisConfig::new(server.url()).namespace("dup"))
            .await
            .unwrap();
        let now = now_ms();
        let job = JobSpec::new("k", serde_json::json!(1))
            .into_job(JobId::new_random(), 0, now, &Default::default())
            .unwrap();
        backend.enqueue(vec![job.clone()]).await.unwrap();
        let lease = backend
            .fetch("c", 1, Duration::from_secs(30), now)
            .await
            .unwrap()
            .remove(0);
        let done = |result: i32| Completion {
            receipt: lease.receipt.clone(),
            result: serde_json::json!(result),
        };
        let outcomes = backend.complete(vec![done(1), done(2)], now).await.unwrap();
        assert_eq!(outcomes, vec![AckOutcome::Ok, AckOutcome::LeaseLost]);
        let stored = backend.get(job.id).await.unwrap().unwrap();
        assert_eq!(
            (stored.status, stored.attempts, stored.result),
            (JobStatus::Completed, 1, Some(serde_json::json!(1)))
        );
        let stats = backend.stats().await.unwrap();
        assert_eq!((stats.completed, stats.running), (1, 0));
        // A second batch for the same lease: nothing pending, lease lost.
        let again = backend.complete(vec![done(3)], now).await.unwrap();
        assert_eq!(again, vec![AckOutcome::LeaseLost]);
    }
}
