//! Group commit: the single writer thread of the embedded backend. Callers
//! send requests over a bounded channel; the writer drains it greedily, runs
//! every request it got into ONE redb write transaction, commits (fsync),
//! and only then answers, so an acknowledged submission survives `kill -9`.
//! Under load batches grow by themselves and the fsync cost is shared.
//!
//! Memory and disk stay consistent this way: new jobs (and revived dead
//! ones) enter the in-memory queues only after their commit, so no worker
//! can see a job that is not durable; the other changes move jobs in memory
//! first, and if a commit fails the indexes are rebuilt from the database.

use std::collections::HashMap;
use std::sync::Arc;

use redb::{ReadableTable, Table};
use tokio::sync::{mpsc, oneshot};

use super::index::{Live, Slot};
use super::store::{
    decode_state, encode_spec, encode_state, initial_state, read_state, spec_head, storage_err,
    StateRecord, IDEMPOTENCY, SPECS, STATES,
};
use super::Shared;
use crate::backend::{AckOutcome, Completion, Enqueued, Receipt, Reclaimed};
use crate::backoff::FailDecision;
use crate::error::BackendError;
use crate::job::{Job, JobId, JobStatus};

/// Longest stored error message; longer ones are cut [4096 bytes].
pub(crate) const MAX_ERROR_LEN: usize = 4096;

/// A change to make durable.
pub(crate) enum Op {
    Enqueue(Vec<Job>),
    Complete(Vec<Completion>, u64),
    Fail {
        receipt: Receipt,
        error: String,
        decision: FailDecision,
        now_ms: u64,
    },
    Promote(u64),
    Reclaim {
        now_ms: u64,
        max_deliveries: u32,
    },
    Cancel(JobId, u64),
    RetryDead {
        id: JobId,
        reset_attempts: bool,
        now_ms: u64,
    },
    Shutdown,
}

/// What the writer answers.
#[derive(Debug)]
pub(crate) enum Answer {
    Enqueued(Vec<Enqueued>),
    Acks(Vec<AckOutcome>),
    Ack(AckOutcome),
    Count(usize),
    Reclaimed(Vec<Reclaimed>),
    Done,
}

pub(crate) type Reply = oneshot::Sender<Result<Answer, BackendError>>;

/// One request to the writer.
pub(crate) struct Request {
    pub op: Op,
    pub reply: Reply,
}

/// Changes to the in-memory indexes that must wait for the commit.
#[derive(Default)]
struct AfterCommit {
    inserts: Vec<(JobId, Live)>,
    revived_dead: u64,
    wake_workers: bool,
}

struct Tables<'txn> {
    specs: Table<'txn, u128, &'static [u8]>,
    states: Table<'txn, u128, &'static [u8]>,
    idempotency: Table<'txn, &'static str, u128>,
}

/// The writer loop; returns when the channel closes or on `Shutdown`.
pub(crate) fn run(shared: Arc<Shared>, db: Arc<redb::Database>, mut rx: mpsc::Receiver<Request>) {
    let max_batch = shared.config.max_requests_per_commit.max(1);
    let mut shutdown_replies = Vec::new();
    while let Some(first) = rx.blocking_recv() {
        let mut batch = vec![first];
        while batch.len() < max_batch {
            match rx.try_recv() {
                Ok(request) => batch.push(request),
                Err(_) => break,
            }
        }
        let (work, shutdowns): (Vec<Request>, Vec<Request>) = batch
            .into_iter()
            .partition(|r| !matches!(r.op, Op::Shutdown));
        if !work.is_empty() {
            process(&shared, &db, work);
        }
        if !shutdowns.is_empty() {
            shutdown_replies.extend(shutdowns.into_iter().map(|r| r.reply));
            break;
        }
    }
    drop(db);
    tracing::debug!("embedded job store writer stopped");
    for reply in shutdown_replies {
        let _ = reply.send(Ok(Answer::Done));
    }
}

fn process(shared: &Shared, db: &redb::Database, batch: Vec<Request>) {
    let (ops, replies): (Vec<Op>, Vec<Reply>) = batch.into_iter().map(|r| (r.op, r.reply)).unzip();
    let mut after = AfterCommit::default();
    let outcome = write_batch(shared, db, ops, &mut after);
    match outcome {
        Ok(answers) => {
            if !after.inserts.is_empty() || after.revived_dead > 0 {
                let mut index = shared.index.lock();
                for (id, live) in after.inserts {
                    index.insert(id, live);
                }
                index.counts.dead = index.counts.dead.saturating_sub(after.revived_dead);
            }
            if after.wake_workers {
                shared.work.notify_waiters();
            }
            for (reply, answer) in replies.into_iter().zip(answers) {
                let _ = reply.send(answer);
            }
        }
        Err(error) => {
            tracing::error!(%error, "embedded job store commit failed; rebuilding indexes from disk");
            if let Err(rebuild) = shared.rebuild_index(db) {
                tracing::error!(error = %rebuild, "rebuilding the embedded job indexes failed");
            }
            shared.work.notify_waiters();
            for reply in replies {
                let _ = reply.send(Err(error.clone()));
            }
        }
    }
}

fn write_batch(
    shared: &Shared,
    db: &redb::Database,
    ops: Vec<Op>,
    after: &mut AfterCommit,
) -> Result<Vec<Result<Answer, BackendError>>, BackendError> {
    let txn = db.begin_write().map_err(storage_err)?;
    let mut answers = Vec::with_capacity(ops.len());
    {
        let mut tables = Tables {
            specs: txn.open_table(SPECS).map_err(storage_err)?,
            states: txn.open_table(STATES).map_err(storage_err)?,
            idempotency: txn.open_table(IDEMPOTENCY).map_err(storage_err)?,
        };
        for op in ops {
            answers.push(execute(shared, &mut tables, op, after)?);
        }
    }
    txn.commit().map_err(storage_err)?;
    Ok(answers)
}

/// Runs one op inside the batch transaction. The outer error aborts the
/// whole batch (storage failure); the inner one is this request's answer.
fn execute(
    shared: &Shared,
    tables: &mut Tables<'_>,
    op: Op,
    after: &mut AfterCommit,
) -> Result<Result<Answer, BackendError>, BackendError> {
    match op {
        Op::Enqueue(jobs) => enqueue(shared, tables, jobs, after),
        Op::Complete(done, now_ms) => complete(shared, tables, done, now_ms).map(Ok),
        Op::Fail {
            receipt,
            error,
            decision,
            now_ms,
        } => fail(shared, tables, receipt, error, decision, now_ms, after).map(Ok),
        Op::Promote(now_ms) => promote(shared, tables, now_ms, after).map(Ok),
        Op::Reclaim {
            now_ms,
            max_deliveries,
        } => reclaim(shared, tables, now_ms, max_deliveries, after).map(Ok),
        Op::Cancel(id, now_ms) => cancel(shared, tables, id, now_ms),
        Op::RetryDead {
            id,
            reset_attempts,
            now_ms,
        } => retry_dead(shared, tables, id, reset_attempts, now_ms, after),
        Op::Shutdown => Ok(Ok(Answer::Done)),
    }
}

fn token_of(receipt: &Receipt) -> Option<u64> {
    receipt.token.parse().ok()
}

fn put_state(tables: &mut Tables<'_>, id: JobId, state: &StateRecord) -> Result<(), BackendError> {
    let bytes = encode_state(state)?;
    tables
        .states
        .insert(id.as_u128(), bytes.as_slice())
        .map_err(storage_err)?;
    Ok(())
}

/// Reads, changes and writes back one state record (missing: skipped).
fn update_state(
    tables: &mut Tables<'_>,
    id: JobId,
    change: impl FnOnce(&mut StateRecord),
) -> Result<(), BackendError> {
    let Some(mut state) = read_state(&tables.states, id)? else {
        tracing::warn!(%id, "job without a state record; skipped");
        return Ok(());
    };
    change(&mut state);
    put_state(tables, id, &state)
}

fn cut(mut error: String) -> String {
    if error.len() > MAX_ERROR_LEN {
        let mut end = MAX_ERROR_LEN;
        while !error.is_char_boundary(end) {
            end -= 1;
        }
        error.truncate(end);
    }
    error
}

fn enqueue(
    shared: &Shared,
    tables: &mut Tables<'_>,
    jobs: Vec<Job>,
    after: &mut AfterCommit,
) -> Result<Result<Answer, BackendError>, BackendError> {
    let seqs: Vec<u64> = {
        let mut index = shared.index.lock();
        let limit = shared.config.max_live_jobs;
        if index.live_len() + after.inserts.len() + jobs.len() > limit {
            return Ok(Err(BackendError::QueueFull { limit }));
        }
        jobs.iter().map(|_| index.alloc_seq()).collect()
    };
    let mut out = Vec::with_capacity(jobs.len());
    let mut kinds: HashMap<&str, Arc<str>> = HashMap::new();
    for (job, seq) in jobs.iter().zip(seqs) {
        if let Some(key) = job.idempotency_key.as_deref() {
            if let Some(existing) = tables.idempotency.get(key).map_err(storage_err)? {
                out.push(Enqueued {
                    id: JobId::from_u128(existing.value()),
                    duplicate: true,
                });
                continue;
            }
            tables
                .idempotency
                .insert(key, job.id.as_u128())
                .map_err(storage_err)?;
        }
        let spec = encode_spec(job)?;
        tables
            .specs
            .insert(job.id.as_u128(), spec.as_slice())
            .map_err(storage_err)?;
        put_state(tables, job.id, &initial_state(job, seq))?;
        let slot = if job.status == JobStatus::Scheduled {
            Slot::Delayed {
                run_at: job.run_at,
                seq,
                retry: false,
            }
        } else {
            Slot::Ready { seq }
        };
        let kind = kinds
            .entry(job.kind.as_str())
            .or_insert_with(|| Arc::from(job.kind.as_str()))
            .clone();
        after.inserts.push((
            job.id,
            Live {
                priority: job.priority,
                kind,
                attempts: job.attempts,
                deliveries: job.deliveries,
                slot,
            },
        ));
        out.push(Enqueued {
            id: job.id,
            duplicate: false,
        });
    }
    after.wake_workers = true;
    Ok(Ok(Answer::Enqueued(out)))
}

fn bounded_result(shared: &Shared, result: serde_json::Value) -> serde_json::Value {
    let size = serde_json::to_vec(&result).map(|v| v.len()).unwrap_or(0);
    if size > shared.config.max_result_bytes {
        serde_json::json!({ "truncated": true, "bytes": size })
    } else {
        result
    }
}

fn complete(
    shared: &Shared,
    tables: &mut Tables<'_>,
    done: Vec<Completion>,
    now_ms: u64,
) -> Result<Answer, BackendError> {
    let mut outcomes = Vec::with_capacity(done.len());
    let mut finished = Vec::with_capacity(done.len());
    {
        let mut index = shared.index.lock();
        for completion in done {
            let live = token_of(&completion.receipt)
                .and_then(|token| index.finish_lease(&completion.receipt.job_id, token));
            match live {
                Some(live) => {
                    index.counts.completed += 1;
                    outcomes.push(AckOutcome::Ok);
                    finished.push((completion.receipt.job_id, live, completion.result));
                }
                None => outcomes.push(AckOutcome::LeaseLost),
            }
        }
    }
    for (id, live, result) in finished {
        let started_at = match &live.slot {
            Slot::Leased(lease) => Some(lease.started_at),
            _ => None,
        };
        let result = bounded_result(shared, result);
        update_state(tables, id, |s| {
            s.status = JobStatus::Completed;
            s.attempts = live.attempts.saturating_add(1);
            s.deliveries = live.deliveries;
            s.started_at = started_at;
            s.finished_at = Some(now_ms);
            s.result = Some(result);
        })?;
    }
    Ok(Answer::Acks(outcomes))
}

fn fail(
    shared: &Shared,
    tables: &mut Tables<'_>,
    receipt: Receipt,
    error: String,
    decision: FailDecision,
    now_ms: u64,
    after: &mut AfterCommit,
) -> Result<Answer, BackendError> {
    let id = receipt.job_id;
    let Some(token) = token_of(&receipt) else {
        return Ok(Answer::Ack(AckOutcome::LeaseLost));
    };
    let error = cut(error);
    let mut index = shared.index.lock();
    let Some(lease) = index.lease_of(&id, token).cloned() else {
        return Ok(Answer::Ack(AckOutcome::LeaseLost));
    };
    let deliveries = index.get(&id).map(|l| l.deliveries).unwrap_or(0);
    match decision {
        FailDecision::Retry { at } => {
            let Some((seq, attempts)) = index.retry_lease(&id, token, at, now_ms) else {
                return Ok(Answer::Ack(AckOutcome::LeaseLost));
            };
            drop(index);
            if at <= now_ms {
                after.wake_workers = true;
            }
            update_state(tables, id, |s| {
                s.status = if at <= now_ms {
                    JobStatus::Queued
                } else {
                    JobStatus::Failed
                };
                s.attempts = attempts;
                s.deliveries = deliveries;
                s.run_at = at.max(now_ms);
                s.seq = seq;
                s.started_at = Some(lease.started_at);
                s.last_error = Some(error);
            })?;
        }
        FailDecision::Dead => {
            let Some(live) = index.finish_lease(&id, token) else {
                return Ok(Answer::Ack(AckOutcome::LeaseLost));
            };
            index.counts.dead += 1;
            drop(index);
            update_state(tables, id, |s| {
                s.status = JobStatus::Dead;
                s.attempts = live.attempts.saturating_add(1);
                s.deliveries = live.deliveries;
                s.started_at = Some(lease.started_at);
                s.finished_at = Some(now_ms);
                s.last_error = Some(error);
            })?;
        }
    }
    Ok(Answer::Ack(AckOutcome::Ok))
}

fn promote(
    shared: &Shared,
    tables: &mut Tables<'_>,
    now_ms: u64,
    after: &mut AfterCommit,
) -> Result<Answer, BackendError> {
    let promoted = shared
        .index
        .lock()
        .promote_due(now_ms, shared.config.max_promote_per_pass);
    if !promoted.is_empty() {
        after.wake_workers = true;
    }
    for (id, seq) in &promoted {
        update_state(tables, *id, |s| {
            s.status = JobStatus::Queued;
            s.seq = *seq;
        })?;
    }
    Ok(Answer::Count(promoted.len()))
}

fn reclaim(
    shared: &Shared,
    tables: &mut Tables<'_>,
    now_ms: u64,
    max_deliveries: u32,
    after: &mut AfterCommit,
) -> Result<Answer, BackendError> {
    let expired = {
        let mut index = shared.index.lock();
        let expired =
            index.reclaim_expired(now_ms, max_deliveries, shared.config.max_promote_per_pass);
        index.counts.dead += expired.iter().filter(|e| e.dead).count() as u64;
        expired
    };
    let mut out = Vec::with_capacity(expired.len());
    for item in expired {
        if item.dead {
            let message = format!(
                "poison job: delivered {} times without being acknowledged (its worker died or stalled past the lease each time)",
                item.deliveries
            );
            update_state(tables, item.id, |s| {
                s.status = JobStatus::Dead;
                s.deliveries = item.deliveries;
                s.finished_at = Some(now_ms);
                s.last_error = Some(message);
            })?;
        } else {
            after.wake_workers = true;
        }
        out.push(Reclaimed {
            id: item.id,
            kind: item.kind.to_string(),
            dead: item.dead,
        });
    }
    Ok(Answer::Reclaimed(out))
}

fn cancel(
    shared: &Shared,
    tables: &mut Tables<'_>,
    id: JobId,
    now_ms: u64,
) -> Result<Result<Answer, BackendError>, BackendError> {
    {
        let mut index = shared.index.lock();
        match index.get(&id).map(|l| &l.slot) {
            Some(Slot::Leased(_)) => {
                return Ok(Err(BackendError::InvalidState {
                    id,
                    status: JobStatus::Running,
                    action: "cancel",
                }))
            }
            Some(_) => {
                index.remove(&id);
                index.counts.cancelled += 1;
            }
            None => {
                drop(index);
                return Ok(Err(match read_state(&tables.states, id)? {
                    None => BackendError::NotFound(id),
                    Some(state) => BackendError::InvalidState {
                        id,
                        status: state.status,
                        action: "cancel",
                    },
                }));
            }
        }
    }
    update_state(tables, id, |s| {
        s.status = JobStatus::Cancelled;
        s.finished_at = Some(now_ms);
    })?;
    Ok(Ok(Answer::Done))
}

fn retry_dead(
    shared: &Shared,
    tables: &mut Tables<'_>,
    id: JobId,
    reset_attempts: bool,
    now_ms: u64,
    after: &mut AfterCommit,
) -> Result<Result<Answer, BackendError>, BackendError> {
    let Some(mut state) = read_state(&tables.states, id)? else {
        return Ok(Err(BackendError::NotFound(id)));
    };
    let live_status = shared.index.lock().get(&id).map(|l| match l.slot {
        Slot::Leased(_) => JobStatus::Running,
        Slot::Ready { .. } => JobStatus::Queued,
        Slot::Delayed { retry: true, .. } => JobStatus::Failed,
        Slot::Delayed { retry: false, .. } => JobStatus::Scheduled,
    });
    let pending = after.inserts.iter().any(|(pending, _)| *pending == id);
    if state.status != JobStatus::Dead || live_status.is_some() || pending {
        return Ok(Err(BackendError::InvalidState {
            id,
            status: live_status.unwrap_or(state.status),
            action: "retry",
        }));
    }
    let (priority, kind) = match tables.specs.get(id.as_u128()).map_err(storage_err)? {
        Some(spec) => {
            let (priority, kind) = spec_head(spec.value())?;
            (priority, Arc::<str>::from(kind))
        }
        None => return Ok(Err(BackendError::NotFound(id))),
    };
    let seq = shared.index.lock().alloc_seq();
    state.status = JobStatus::Queued;
    if reset_attempts {
        state.attempts = 0;
        state.deliveries = 0;
    }
    state.run_at = now_ms;
    state.seq = seq;
    state.finished_at = None;
    put_state(tables, id, &state)?;
    after.inserts.push((
        id,
        Live {
            priority,
            kind,
            attempts: state.attempts,
            deliveries: state.deliveries,
            slot: Slot::Ready { seq },
        },
    ));
    after.revived_dead += 1;
    after.wake_workers = true;
    Ok(Ok(Answer::Done))
}

/// Decodes a state record (used by the rebuild in the parent module).
pub(crate) fn state_of(bytes: &[u8]) -> Result<StateRecord, BackendError> {
    decode_state(bytes)
}
