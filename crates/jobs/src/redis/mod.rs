//! Redis Streams backend: jobs survive in Redis (append-only file), many
//! worker processes on many hosts share one queue, and a Redis Cluster can
//! hold the partitions.
//!
//! Layout ([`keys`], [`scripts`]): per partition and priority one stream
//! with one consumer group, whose entries each carry a *batch* of jobs (the
//! jobs of one submission for that partition and priority, each as its
//! immutable JSON record); beside them a `meta` hash with one compact
//! mutable-state value per job (status, attempts, timestamps, error,
//! progress, result); a sorted set of delayed jobs and retries; a dead-letter
//! stream; a counts hash. Every state change of a partition is one Lua
//! script, and every call batches its partitions into one pipeline.
//!
//! Why batch entries: Redis work *per job* is what bounds a job queue's
//! throughput (each command costs about a microsecond of the single Redis
//! thread). Here a submission batch costs one XADD and one HSET per
//! partition and priority, a lease one XREADGROUP per entry, a completion
//! one update of the entry's state (a bit per job) and one append of its
//! jobs' completion records; what stays per job is a field of the `meta`
//! hash written at submission.
//!
//! - **Fetch** reads the queued counts of every owned partition, then, one
//!   priority at a time from critical down, leases whole entries from the
//!   partitions that hold that priority ([`plan`]). Jobs of a leased entry
//!   beyond what the caller asked for wait in this process (`held`) and
//!   are handed out first by the next fetch of their priority: strict
//!   priority across partitions, FIFO within a partition.
//! - **Leases** are the stream's pending entries: Redis measures the idle
//!   time, renew resets it (`XCLAIM … JUSTID`), reclaim returns entries
//!   idle past their lease, so worker clock skew cannot expire a lease
//!   early. An entry is acknowledged when its last job finishes.
//! - **Delays and retries** sit in a sorted set moved to the streams by one
//!   script per partition (range, add, remove), so concurrent promoters
//!   cannot queue a job twice.
//! - **Outages**: a [`ConnectionManager`] reconnects with backoff; meanwhile
//!   every call fails fast with [`BackendError::Unavailable`].

mod codec;
mod keys;
mod plan;
mod scripts;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Cmd, ErrorKind, RedisError, Value};

use self::codec::{decode_record, encode_record, frame, job_from, kind_of, unframe, Meta, Token};
use self::keys::{check_namespace, counts_key, meta_key, partition_prefix};
use self::scripts::{LuaScript, Scripts};
use crate::backend::{
    AckOutcome, Completion, Enqueued, Lease, PriorityCounts, QueueBackend, QueueStats, Receipt,
    Reclaimed,
};
use crate::backoff::FailDecision;
use crate::error::BackendError;
use crate::job::{Job, JobId, JobStatus, Priority};
use crate::partition::{OwnedPartitions, Partitioner, DEFAULT_PARTITIONS};

/// Oldest Redis with everything used here (`XPENDING … IDLE`-era stream
/// commands, exclusive `XRANGE` bounds).
const MIN_REDIS_VERSION: (u32, u32) = (6, 2);

/// Upper bound of [`RedisConfig::entry_jobs`]: what one fetch may hold
/// beyond what it hands out stays small.
const MAX_ENTRY_JOBS: usize = 10_000;

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
    /// Most jobs one stream entry carries [256, at most 10,000]. Bigger entries cost Redis
    /// less per job; a fetch may lease up to one entry more per partition
    /// than it hands out, held in this process for the next fetch: at most
    /// `partitions × entry_jobs` jobs per priority (a fetch leases at a
    /// priority only once nothing of it is held).
    pub entry_jobs: usize,
    /// Newest cancelled ids kept per partition for `list` [10,000]
    /// (completed jobs are found in their stream entries).
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
            entry_jobs: 256,
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

/// A leased entry whose jobs are not all handed to callers yet.
#[derive(Debug)]
struct HeldEntry {
    partition: u32,
    rank: usize,
    entry: String,
    consumer: String,
    lease_ms: u64,
    /// When its lease was last renewed, ms since the epoch.
    renewed_at: AtomicU64,
}

/// A leased job not yet handed to a caller (its entry held more than the
/// fetch asked for).
#[derive(Debug)]
struct HeldJob {
    lease: Lease,
    entry: Arc<HeldEntry>,
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
    /// Leased jobs waiting for a fetch, per priority rank, in stream order.
    held: Mutex<[VecDeque<HeldJob>; 4]>,
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
type Group<'a> = Vec<(usize, Token<'a>, &'a Receipt)>;

fn reply<T: redis::FromRedisValue>(value: Value, what: &str) -> Result<T, BackendError> {
    redis::from_owned_redis_value(value)
        .map_err(|e| BackendError::Storage(format!("redis: unexpected {what} reply: {e}")))
}

fn millis(duration: Duration) -> u64 {
    duration.as_millis().min(u128::from(u64::MAX)) as u64
}

fn outcome(flag: char) -> AckOutcome {
    if flag == '1' {
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

/// Held entries to renew by (partition, lease, consumer): their ranks and ids.
type RenewGroups<'a> = HashMap<(u32, u64, &'a str), Vec<(usize, &'a str)>>;

/// What one fetch asked for, the same for every entry it leases.
#[derive(Clone, Copy)]
struct Asked<'a> {
    consumer: &'a str,
    lease_ms: u64,
    now_ms: u64,
}

/// One entry as the lease script returns it: id, header, blob, and the
/// jobs' meta values for a non-fresh entry.
type LeasedEntry = (String, String, String, Vec<String>, String);

/// What one COMPLETE sends for one entry: the positions completed (`1` at
/// each) and their completion records; `jobs` maps the caller's batch
/// index to the position (a receipt named twice is sent once: the second
/// is left out and reads as a lost lease).
struct EntryCompletion {
    positions: String,
    records: String,
    jobs: Vec<(usize, usize)>,
}

impl EntryCompletion {
    /// From the receipts of one entry, sorted by position.
    fn build(
        items: &[(usize, Token<'_>, &Receipt)],
        result_of: impl Fn(usize) -> String,
        now_ms: u64,
    ) -> EntryCompletion {
        use std::fmt::Write;
        let mut positions = String::new();
        let mut records = String::new();
        let mut jobs = Vec::with_capacity(items.len());
        let mut header = None;
        let mut record = String::new();
        for (i, token, _) in items {
            if positions.len() > token.position {
                continue;
            }
            positions.extend(std::iter::repeat_n('0', token.position - positions.len()));
            positions.push('1');
            // Writing to a String cannot fail.
            let lease = (
                token.attempts.saturating_add(1),
                token.deliveries,
                token.started,
            );
            // The jobs of one lease share a header (normally all of them).
            if header != Some(lease) {
                record.clear();
                let _ = write!(record, "h{}|{}|{}|{now_ms}", lease.0, lease.1, lease.2);
                let _ = write!(records, "{}:{record}", record.len());
                header = Some(lease);
            }
            record.clear();
            let _ = write!(record, "{}|", token.position);
            let result = result_of(*i);
            let _ = write!(records, "{}:{record}{result}", record.len() + result.len());
            jobs.push((*i, token.position));
        }
        EntryCompletion {
            positions,
            records,
            jobs,
        }
    }
}

impl RedisBackend {
    /// Connects, checks the server version, loads the scripts and creates
    /// the consumer groups. Fails with `Unavailable` if Redis cannot be
    /// reached, `Storage` if the URL or namespace is invalid, the server is
    /// too old, or the namespace holds jobs of an older key layout.
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
            held: Mutex::new(Default::default()),
            closed: AtomicBool::new(false),
        };
        backend.check_version().await?;
        backend.load_scripts().await?;
        let cmds = (0..backend.partitions())
            .map(|p| backend.script(&backend.scripts.ensure_groups, p))
            .collect();
        backend.run(cmds).await.map_err(|e| match e {
            BackendError::Storage(m) if m.contains("OLDLAYOUT") => BackendError::Storage(format!(
                "redis namespace {:?} holds jobs written by an older IronForge layout; \
                 drain it with the older version or use another --namespace ({m})",
                backend.config.namespace
            )),
            other => other,
        })?;
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

    /// Jobs per stream entry: the setting, within 1..=[`MAX_ENTRY_JOBS`].
    fn entry_jobs(&self) -> usize {
        self.config.entry_jobs.clamp(1, MAX_ENTRY_JOBS)
    }

    /// Runs a script about one lease, answering '1' (done) or '0' (lost).
    async fn run_one_lease(&self, cmd: Cmd, what: &str) -> Result<AckOutcome, BackendError> {
        let value = self.run(vec![cmd]).await?.pop().unwrap_or(Value::Nil);
        let flag = reply::<String>(value, what)?;
        Ok(outcome(flag.chars().next().unwrap_or('0')))
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
        let field = id.to_string();
        let probe = |ps: &[u32]| {
            ps.iter()
                .map(|p| {
                    let mut cmd = redis::cmd("HEXISTS");
                    cmd.arg(meta_key(&self.prefixes[*p as usize])).arg(&field);
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

    /// Reads jobs (meta, record, and whether their entry is leased), one
    /// script per partition; unknown ids are left out.
    async fn read_jobs(&self, wanted: &[(u32, JobId)]) -> Result<Vec<Job>, BackendError> {
        let mut groups: HashMap<u32, Vec<JobId>> = HashMap::new();
        for (p, id) in wanted {
            groups.entry(*p).or_default().push(*id);
        }
        let groups: Vec<(u32, Vec<JobId>)> = groups.into_iter().collect();
        let cmds = groups
            .iter()
            .map(|(p, ids)| {
                let mut cmd = self.script(&self.scripts.read, *p);
                for id in ids {
                    cmd.arg(id.to_string());
                }
                cmd
            })
            .collect();
        let mut jobs = Vec::with_capacity(wanted.len());
        for ((p, ids), value) in groups.iter().zip(self.run(cmds).await?) {
            let rows: Vec<(String, String, String, String)> = reply(value, "read")?;
            for (id, (meta, record, running, started)) in ids.iter().zip(rows) {
                if meta.is_empty() {
                    continue;
                }
                let meta = Meta::parse(&meta).ok_or_else(|| {
                    BackendError::Storage(format!("job {id}: unreadable state {meta:?}"))
                })?;
                let lease = (running == "1").then(|| started.parse().unwrap_or(0));
                jobs.push(job_from(*id, &record, *p, &meta, lease)?);
            }
        }
        Ok(jobs)
    }

    /// Leases from the partitions in `shares` at priority `rank`; returns
    /// the leased jobs in stream order, partition by partition.
    async fn lease(
        &self,
        rank: usize,
        shares: &[(u32, usize)],
        asked: &Asked<'_>,
    ) -> Result<Vec<HeldJob>, BackendError> {
        let cmds = shares
            .iter()
            .map(|(p, want)| {
                let mut cmd = self.script(&self.scripts.lease, *p);
                cmd.arg(asked.consumer)
                    .arg(rank)
                    .arg(*want)
                    .arg(asked.lease_ms)
                    .arg(asked.now_ms);
                cmd
            })
            .collect();
        let mut held = Vec::new();
        for ((partition, _), value) in shares.iter().zip(self.run(cmds).await?) {
            let entries: Vec<LeasedEntry> = reply(value, "lease")?;
            for entry in entries {
                unpack_entry(*partition, rank, entry, asked, &mut held);
            }
        }
        Ok(held)
    }

    /// RENEW commands for held entries not renewed for a third of their
    /// lease (so jobs waiting in this process keep their lease), marking
    /// them renewed.
    fn renew_held(&self, now_ms: u64) -> Vec<Cmd> {
        let mut due: RenewGroups<'_> = HashMap::new();
        let mut entries: Vec<Arc<HeldEntry>> = Vec::new();
        {
            let mut held = self.held.lock();
            for job in held.iter_mut().flatten() {
                let entry = &job.entry;
                let last = entry.renewed_at.load(Ordering::Relaxed);
                if last == now_ms || now_ms.saturating_sub(last) >= entry.lease_ms / 3 {
                    if last != now_ms {
                        entry.renewed_at.store(now_ms, Ordering::Relaxed);
                        entries.push(entry.clone());
                    }
                    job.lease.expires_at = now_ms.saturating_add(entry.lease_ms);
                }
            }
        }
        for entry in &entries {
            due.entry((entry.partition, entry.lease_ms, entry.consumer.as_str()))
                .or_default()
                .push((entry.rank, entry.entry.as_str()));
        }
        due.into_iter()
            .map(|((p, lease_ms, consumer), entries)| {
                let mut cmd = self.script(&self.scripts.renew, p);
                cmd.arg(lease_ms).arg(consumer);
                for (rank, entry) in entries {
                    cmd.arg(rank).arg(entry);
                }
                cmd
            })
            .collect()
    }

    /// Takes up to `max` held jobs of priority `rank`.
    fn take_held(&self, rank: usize, max: usize, out: &mut Vec<Lease>) {
        let mut held = self.held.lock();
        let queue = &mut held[rank];
        let n = max.min(queue.len());
        out.extend(queue.drain(..n).map(|h| h.lease));
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
        build: impl Fn(u32, &[(usize, Token<'a>, &'a Receipt)]) -> Cmd,
    ) -> Result<Vec<AckOutcome>, BackendError> {
        let mut outcomes = vec![AckOutcome::LeaseLost; total];
        let groups: Vec<(u32, Group<'a>)> = groups.into_iter().collect();
        let cmds = groups.iter().map(|(p, items)| build(*p, items)).collect();
        let replies = self.run(cmds).await?;
        for ((_, items), value) in groups.iter().zip(replies) {
            let flags: String = reply(value, "acknowledgement")?;
            for ((i, _, _), flag) in items.iter().zip(flags.chars()) {
                outcomes[*i] = outcome(flag);
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

    /// Hands every held job back to its queue.
    async fn release_held(&self) -> Result<(), BackendError> {
        let receipts: Vec<Receipt> = {
            let mut held = self.held.lock();
            held.iter_mut()
                .flat_map(|q| q.drain(..))
                .map(|h| h.lease.receipt)
                .collect()
        };
        if !receipts.is_empty() {
            self.release_receipts(receipts).await?;
        }
        Ok(())
    }

    async fn release_receipts(
        &self,
        receipts: Vec<Receipt>,
    ) -> Result<Vec<AckOutcome>, BackendError> {
        let groups = self.by_partition(receipts.iter());
        self.per_item(receipts.len(), groups, |p, items| {
            let mut cmd = self.script(&self.scripts.release, p);
            for (_, token, receipt) in items {
                cmd.arg(token.rank)
                    .arg(token.entry)
                    .arg(receipt.job_id.to_string())
                    .arg(token.deliveries)
                    .arg(token.position);
            }
            cmd
        })
        .await
    }
}

/// Turns one leased entry into leases (jobs whose record cannot be read
/// are logged and left to the reclaimer).
fn unpack_entry(
    partition: u32,
    rank: usize,
    (entry, header, blob, metas, bits): LeasedEntry,
    asked: &Asked<'_>,
    out: &mut Vec<HeldJob>,
) {
    let Asked {
        consumer,
        lease_ms,
        now_ms,
    } = *asked;
    let jobs = match unframe(&blob) {
        Ok(jobs) => jobs,
        Err(error) => {
            tracing::error!(%entry, %error, "leased entry is unreadable; it will be reclaimed");
            return;
        }
    };
    let (deliveries, attempts) = header
        .split_once('|')
        .and_then(|(d, a)| Some((d.parse::<u32>().ok()?, a.parse::<u32>().ok()?)))
        .unwrap_or((0, 0));
    let deliveries = deliveries.saturating_add(1);
    let held = Arc::new(HeldEntry {
        partition,
        rank,
        entry,
        consumer: consumer.to_string(),
        lease_ms,
        renewed_at: AtomicU64::new(now_ms),
    });
    let tokens = Token {
        partition,
        rank,
        entry: &held.entry,
        position: 0,
        consumer: &held.consumer,
        attempts,
        deliveries,
        started: now_ms,
    }
    .of_entry();
    let priority = Priority::from_rank(rank).unwrap_or_default();
    for (i, (id, record)) in jobs.into_iter().enumerate() {
        // Bits (when sent) say which jobs are still queued in the entry.
        if !bits.is_empty() && bits.as_bytes().get(i) != Some(&b'1') {
            continue;
        }
        let id: JobId = match id.parse() {
            Ok(id) => id,
            Err(_) => {
                tracing::error!(entry = %held.entry, "stream entry with an invalid job id skipped");
                continue;
            }
        };
        let mut job = match decode_record(id, record, partition, priority) {
            Ok(job) => job,
            Err(error) => {
                tracing::error!(%id, %error, "leased job is unreadable; it will be reclaimed");
                continue;
            }
        };
        if let Some(meta) = metas.get(i).and_then(|m| Meta::parse(m)) {
            job.run_at = meta.run_at.unwrap_or(job.run_at);
            job.last_error = Some(meta.last_error).filter(|e| !e.is_empty());
        }
        job.status = JobStatus::Running;
        job.attempts = attempts;
        job.deliveries = deliveries;
        job.started_at = Some(now_ms);
        out.push(HeldJob {
            lease: Lease {
                receipt: Receipt {
                    job_id: id,
                    kind: job.kind.clone(),
                    priority,
                    token: tokens.at(i),
                },
                delivery_count: deliveries,
                expires_at: now_ms.saturating_add(lease_ms),
                job,
            },
            entry: held.clone(),
        });
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
        let mut groups: HashMap<u32, Vec<usize>> = HashMap::new();
        for (i, job) in jobs.iter().enumerate() {
            groups.entry(self.home(job)).or_default().push(i);
        }
        let entry_jobs = self.entry_jobs();
        // Per partition: the call's job order (entries' jobs, then delayed
        // ones), which the script's duplicate indexes refer to.
        let mut calls: Vec<Vec<usize>> = Vec::with_capacity(groups.len());
        let mut cmds = Vec::with_capacity(groups.len());
        for (p, members) in groups {
            let mut cmd = self.script(&self.scripts.enqueue, p);
            let (delayed, ready): (Vec<usize>, Vec<usize>) = members
                .into_iter()
                .partition(|&i| jobs[i].status == JobStatus::Scheduled);
            let mut by_rank: [Vec<usize>; 4] = Default::default();
            for i in ready {
                by_rank[jobs[i].priority.rank()].push(i);
            }
            let entries = by_rank
                .iter()
                .map(|r| r.len().div_ceil(entry_jobs))
                .sum::<usize>();
            cmd.arg(per_partition_limit).arg(idem_ttl).arg(entries);
            let mut order = Vec::new();
            for (rank, members) in by_rank.iter().enumerate() {
                for chunk in members.chunks(entry_jobs) {
                    let ids: Vec<String> = chunk.iter().map(|&i| jobs[i].id.to_string()).collect();
                    let mut blob = String::new();
                    for (&i, id) in chunk.iter().zip(&ids) {
                        frame(&mut blob, id, &encode_record(&jobs[i])?);
                    }
                    cmd.arg(rank).arg(chunk.len()).arg(blob);
                    for id in &ids {
                        cmd.arg(id);
                    }
                    let keyed: Vec<(usize, &str)> = chunk
                        .iter()
                        .enumerate()
                        .filter_map(|(k, &i)| Some((k, jobs[i].idempotency_key.as_deref()?)))
                        .collect();
                    cmd.arg(keyed.len());
                    for (k, key) in keyed {
                        cmd.arg(k).arg(key);
                    }
                    order.extend_from_slice(chunk);
                }
            }
            for i in delayed {
                let job = &jobs[i];
                cmd.arg(job.id.to_string())
                    .arg(job.priority.rank())
                    .arg(job.run_at)
                    .arg(encode_record(job)?)
                    .arg(job.idempotency_key.as_deref().unwrap_or(""));
                order.push(i);
            }
            calls.push(order);
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
        for (members, value) in calls.iter().zip(replies) {
            let duplicates: Vec<String> = reply(value, "enqueue")?;
            for pair in duplicates.chunks_exact(2) {
                let slot = pair[0].parse::<usize>().ok().and_then(|k| members.get(k));
                let (Some(&i), Ok(id)) = (slot, pair[1].parse::<JobId>()) else {
                    return Err(BackendError::Storage(format!(
                        "redis: enqueue reported an unreadable duplicate {pair:?}"
                    )));
                };
                out[i] = Enqueued {
                    id,
                    duplicate: true,
                };
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
        let mut cmds: Vec<Cmd> = consumed
            .iter()
            .map(|p| {
                let mut cmd = redis::cmd("HMGET");
                cmd.arg(&self.counts_keys[*p as usize])
                    .arg("q0")
                    .arg("q1")
                    .arg("q2")
                    .arg("q3");
                cmd
            })
            .collect();
        cmds.extend(self.renew_held(now_ms));
        let replies = self.run(cmds).await?;
        let mut queued: Vec<(u32, [u64; 4])> = Vec::with_capacity(consumed.len());
        for (p, value) in consumed.iter().zip(replies) {
            let counts: Vec<Option<i64>> = reply(value, "counts")?;
            let mut per_rank = [0u64; 4];
            for (slot, n) in per_rank.iter_mut().zip(counts) {
                *slot = n.unwrap_or(0).max(0) as u64;
            }
            queued.push((*p, per_rank));
        }
        let asked = Asked {
            consumer,
            lease_ms: millis(lease),
            now_ms,
        };
        let mut out = Vec::with_capacity(max);
        for rank in 0..4 {
            self.take_held(rank, max - out.len(), &mut out);
            if out.len() == max {
                break;
            }
            let at_rank: Vec<(u32, u64)> = queued
                .iter()
                .map(|(p, counts)| (*p, counts[rank]))
                .filter(|(_, n)| *n > 0)
                .collect();
            let plan = plan::shares(max - out.len(), &at_rank);
            if plan.is_empty() {
                continue;
            }
            let leased = self.lease(rank, &plan, &asked).await?;
            self.held.lock()[rank].extend(leased);
            self.take_held(rank, max - out.len(), &mut out);
            if out.len() == max {
                break;
            }
        }
        Ok(out)
    }

    async fn complete(
        &self,
        done: Vec<Completion>,
        now_ms: u64,
    ) -> Result<Vec<AckOutcome>, BackendError> {
        if done.is_empty() {
            return Ok(Vec::new());
        }
        let mut outcomes = vec![AckOutcome::LeaseLost; done.len()];
        // Per partition: one script, and what it sent per entry.
        let mut cmds = Vec::new();
        let mut sent: Vec<Vec<EntryCompletion>> = Vec::new();
        for (p, mut items) in self.by_partition(done.iter().map(|c| &c.receipt)) {
            items.sort_by(|a, b| {
                (a.1.rank, a.1.entry, a.1.position).cmp(&(b.1.rank, b.1.entry, b.1.position))
            });
            let mut cmd = self.script(&self.scripts.complete, p);
            let mut entries = Vec::new();
            for same_entry in items.chunk_by(|a, b| (a.1.rank, a.1.entry) == (b.1.rank, b.1.entry))
            {
                let entry = EntryCompletion::build(
                    same_entry,
                    |i| self.encode_result(&done[i].result),
                    now_ms,
                );
                cmd.arg(same_entry[0].1.rank)
                    .arg(same_entry[0].1.entry)
                    .arg(&entry.positions)
                    .arg(&entry.records);
                entries.push(entry);
            }
            cmds.push(cmd);
            sent.push(entries);
        }
        let replies = self.run(cmds).await?;
        for (entries, value) in sent.iter().zip(replies) {
            let completed: Vec<String> = reply(value, "complete")?;
            for (entry, flags) in entries.iter().zip(completed) {
                for &(i, position) in &entry.jobs {
                    if flags.as_bytes().get(position) == Some(&b'1') {
                        outcomes[i] = AckOutcome::Ok;
                    }
                }
            }
        }
        Ok(outcomes)
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
            .arg(token.entry)
            .arg(receipt.job_id.to_string())
            .arg(&error)
            .arg(mode)
            .arg(at)
            .arg(token.attempts)
            .arg(token.deliveries)
            .arg(token.started)
            .arg(token.position);
        self.run_one_lease(cmd, "fail").await
    }

    /// Also hands back every job this process holds unstarted (leased with
    /// an entry but not yet fetched): a release means the process is
    /// giving work up.
    async fn release(
        &self,
        receipts: Vec<Receipt>,
        _now_ms: u64,
    ) -> Result<Vec<AckOutcome>, BackendError> {
        let outcomes = if receipts.is_empty() {
            Vec::new()
        } else {
            self.release_receipts(receipts).await?
        };
        self.release_held().await?;
        Ok(outcomes)
    }

    async fn renew(
        &self,
        receipts: &[Receipt],
        lease: Duration,
        now_ms: u64,
    ) -> Result<Vec<AckOutcome>, BackendError> {
        let held = self.renew_held(now_ms);
        if !held.is_empty() {
            self.run(held).await?;
        }
        if receipts.is_empty() {
            return Ok(Vec::new());
        }
        let lease_ms = millis(lease);
        let groups = self.by_partition(receipts.iter());
        self.per_item(receipts.len(), groups, |p, items| {
            let mut cmd = self.script(&self.scripts.renew, p);
            cmd.arg(lease_ms).arg(
                items
                    .first()
                    .map(|(_, t, _)| t.consumer)
                    .unwrap_or("renewer"),
            );
            for (_, token, _) in items {
                cmd.arg(token.rank).arg(token.entry);
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
            .arg(token.entry)
            .arg(receipt.job_id.to_string())
            .arg(value.min(100))
            .arg(token.position);
        self.run_one_lease(cmd, "progress").await
    }

    async fn promote_due(&self, now_ms: u64) -> Result<usize, BackendError> {
        let limit = self.config.max_promote_per_pass.max(1);
        let cmds = self
            .consumed()
            .into_iter()
            .map(|p| {
                let mut cmd = self.script(&self.scripts.promote, p);
                cmd.arg(now_ms).arg(limit).arg(self.entry_jobs());
                cmd
            })
            .collect();
        let mut moved = 0;
        for value in self.run(cmds).await? {
            moved += reply::<String>(value, "promote")?
                .parse::<usize>()
                .unwrap_or(0);
        }
        Ok(moved)
    }

    async fn reclaim_expired(
        &self,
        now_ms: u64,
        max_deliveries: u32,
    ) -> Result<Vec<Reclaimed>, BackendError> {
        let scan = self.config.max_reclaim_scan.max(1);
        let cmds = self
            .consumed()
            .iter()
            .map(|&p| {
                let mut cmd = self.script(&self.scripts.reclaim, p);
                cmd.arg(now_ms).arg(max_deliveries.max(1)).arg(scan);
                cmd
            })
            .collect();
        let mut reclaimed = Vec::new();
        for value in self.run(cmds).await? {
            for f in reply::<Vec<String>>(value, "reclaim")?.chunks_exact(3) {
                if let Ok(id) = f[0].parse::<JobId>() {
                    reclaimed.push(Reclaimed {
                        id,
                        kind: kind_of(&f[2]),
                        dead: f[1] == "1",
                    });
                }
            }
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
        let value = self.run(vec![cmd]).await?.pop().unwrap_or(Value::Nil);
        match reply::<String>(value, "cancel")?.as_str() {
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
            .arg(id.to_string())
            .arg(if reset_attempts { 1 } else { 0 });
        let value = self.run(vec![cmd]).await?.pop().unwrap_or(Value::Nil);
        match reply::<String>(value, "retry")?.as_str() {
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
                    .arg(self.config.max_list_scan.max(1))
                    .arg(self.config.max_list_scan.max(1));
                cmd
            })
            .collect();
        let mut jobs = Vec::new();
        for (p, value) in (0..self.partitions()).zip(self.run(cmds).await?) {
            let mut ids: Vec<JobId> = reply::<Vec<String>>(value, "list")?
                .iter()
                .filter_map(|id| id.parse().ok())
                .collect();
            ids.sort();
            ids.dedup();
            for chunk in ids.chunks(1_000) {
                if jobs.len() >= limit {
                    break;
                }
                let wanted: Vec<(u32, JobId)> = chunk.iter().map(|id| (p, *id)).collect();
                let mut found = self.read_jobs(&wanted).await?;
                found.retain(|j| j.status == status);
                jobs.extend(found);
            }
        }
        jobs.truncate(limit);
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
        for value in self.run(cmds).await? {
            let counts: HashMap<String, i64> = reply(value, "counts")?;
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
        if self.held.lock().iter().any(|q| !q.is_empty()) {
            return;
        }
        tokio::time::sleep(max_wait.min(self.config.idle_poll)).await;
    }

    async fn close(&self) -> Result<(), BackendError> {
        let released = self.release_held().await;
        self.closed.store(true, Ordering::Release);
        released
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
