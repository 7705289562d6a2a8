//! The embedded backend's on-disk layout (redb) and record encodings. The
//! immutable part of a job (kind, payload, ...) is written once to `specs`;
//! everything that changes lives in a small record in `states`, so a status
//! change never re-encodes the payload. Spec records start with a tiny
//! binary header (priority, kind) so opening the database can rebuild the
//! queues without decoding payloads; state records are a compact binary.

use std::collections::BTreeMap;

use redb::{ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::error::BackendError;
use crate::job::{Job, JobId, JobStatus, Priority};

/// id -> header + JSON of [`SpecRecord`]; written once.
pub(crate) const SPECS: TableDefinition<u128, &[u8]> = TableDefinition::new("job_specs");
/// id -> binary [`StateRecord`] (see [`encode_state`]); rewritten on every status change.
pub(crate) const STATES: TableDefinition<u128, &[u8]> = TableDefinition::new("job_states");
/// idempotency key -> id of the first job submitted with it.
pub(crate) const IDEMPOTENCY: TableDefinition<&str, u128> = TableDefinition::new("idempotency");

const SPEC_FORMAT_V1: u8 = 1;

/// Turns any redb error into a storage error (never a panic).
pub(crate) fn storage_err(e: impl std::fmt::Display) -> BackendError {
    BackendError::Storage(e.to_string())
}

/// The immutable part of a job.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct SpecRecord {
    pub kind: String,
    pub payload: serde_json::Value,
    pub priority: Priority,
    pub max_retries: u32,
    pub created_at: u64,
    pub timeout_ms: u64,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    pub partition: u32,
}

/// The mutable part of a job.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct StateRecord {
    pub status: JobStatus,
    pub attempts: u32,
    pub deliveries: u32,
    pub run_at: u64,
    /// Enqueue order within a priority; queues are rebuilt in this order.
    pub seq: u64,
    pub started_at: Option<u64>,
    pub finished_at: Option<u64>,
    pub last_error: Option<String>,
    pub result: Option<serde_json::Value>,
}

/// Encodes the immutable part of `job`: `[version][priority rank][kind len u16 LE][kind][json]`.
pub(crate) fn encode_spec(job: &Job) -> Result<Vec<u8>, BackendError> {
    let record = SpecRecord {
        kind: job.kind.clone(),
        payload: job.payload.clone(),
        priority: job.priority,
        max_retries: job.max_retries,
        created_at: job.created_at,
        timeout_ms: job.timeout_ms,
        metadata: job.metadata.clone(),
        idempotency_key: job.idempotency_key.clone(),
        partition: job.partition,
    };
    let kind = job.kind.as_bytes();
    let kind_len = u16::try_from(kind.len())
        .map_err(|_| BackendError::Storage(format!("kind of {} bytes is too long", kind.len())))?;
    let mut out = Vec::with_capacity(64 + kind.len());
    out.push(SPEC_FORMAT_V1);
    out.push(job.priority.rank() as u8);
    out.extend_from_slice(&kind_len.to_le_bytes());
    out.extend_from_slice(kind);
    serde_json::to_writer(&mut out, &record).map_err(storage_err)?;
    Ok(out)
}

fn split_spec(bytes: &[u8]) -> Result<(Priority, &str, &[u8]), BackendError> {
    let corrupt = || BackendError::Storage("corrupt job spec record".to_string());
    if bytes.len() < 4 || bytes[0] != SPEC_FORMAT_V1 {
        return Err(corrupt());
    }
    let priority = Priority::from_rank(bytes[1] as usize).ok_or_else(corrupt)?;
    let kind_len = u16::from_le_bytes([bytes[2], bytes[3]]) as usize;
    let kind_end = 4 + kind_len;
    let kind = bytes
        .get(4..kind_end)
        .and_then(|k| std::str::from_utf8(k).ok())
        .ok_or_else(corrupt)?;
    Ok((priority, kind, &bytes[kind_end..]))
}

/// Priority and kind of a spec record, without decoding the payload.
pub(crate) fn spec_head(bytes: &[u8]) -> Result<(Priority, &str), BackendError> {
    split_spec(bytes).map(|(p, k, _)| (p, k))
}

/// The full spec record.
pub(crate) fn decode_spec(bytes: &[u8]) -> Result<SpecRecord, BackendError> {
    let (_, _, json) = split_spec(bytes)?;
    serde_json::from_slice(json).map_err(storage_err)
}

/// The initial state record of a freshly submitted job.
pub(crate) fn initial_state(job: &Job, seq: u64) -> StateRecord {
    StateRecord {
        status: job.status,
        attempts: job.attempts,
        deliveries: job.deliveries,
        run_at: job.run_at,
        seq,
        started_at: None,
        finished_at: None,
        last_error: None,
        result: None,
    }
}

const STATE_FORMAT_V1: u8 = 1;
const HAS_STARTED: u8 = 1;
const HAS_FINISHED: u8 = 2;
const HAS_ERROR: u8 = 4;
const HAS_RESULT: u8 = 8;

fn status_code(status: JobStatus) -> u8 {
    match status {
        JobStatus::Queued => 0,
        JobStatus::Scheduled => 1,
        JobStatus::Running => 2,
        JobStatus::Completed => 3,
        JobStatus::Failed => 4,
        JobStatus::Dead => 5,
        JobStatus::Cancelled => 6,
    }
}

/// Encodes a state record compactly (about 35 bytes without error or
/// result): it is rewritten on every status change, so its size is most of
/// what the store writes per job.
/// `[version][status][attempts u32][deliveries u32][run_at u64][seq u64][flags]`
/// then, as flagged, `started u64`, `finished u64`, `error len u32 + utf8`,
/// `result len u32 + json`; integers little-endian.
pub(crate) fn encode_state(state: &StateRecord) -> Result<Vec<u8>, BackendError> {
    let result = match &state.result {
        Some(value) => Some(serde_json::to_vec(value).map_err(storage_err)?),
        None => None,
    };
    let mut out = Vec::with_capacity(40);
    out.push(STATE_FORMAT_V1);
    out.push(status_code(state.status));
    out.extend_from_slice(&state.attempts.to_le_bytes());
    out.extend_from_slice(&state.deliveries.to_le_bytes());
    out.extend_from_slice(&state.run_at.to_le_bytes());
    out.extend_from_slice(&state.seq.to_le_bytes());
    let mut flags = 0;
    if state.started_at.is_some() {
        flags |= HAS_STARTED;
    }
    if state.finished_at.is_some() {
        flags |= HAS_FINISHED;
    }
    if state.last_error.is_some() {
        flags |= HAS_ERROR;
    }
    if result.is_some() {
        flags |= HAS_RESULT;
    }
    out.push(flags);
    if let Some(at) = state.started_at {
        out.extend_from_slice(&at.to_le_bytes());
    }
    if let Some(at) = state.finished_at {
        out.extend_from_slice(&at.to_le_bytes());
    }
    for bytes in [
        state.last_error.as_ref().map(|e| e.as_bytes()),
        result.as_deref(),
    ]
    .into_iter()
    .flatten()
    {
        let len = u32::try_from(bytes.len())
            .map_err(|_| BackendError::Storage("state field over 4 GiB".into()))?;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(bytes);
    }
    Ok(out)
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], BackendError> {
        if self.0.len() < n {
            return Err(BackendError::Storage("truncated job state record".into()));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, BackendError> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, BackendError> {
        let mut b = [0; 4];
        b.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(b))
    }

    fn u64(&mut self) -> Result<u64, BackendError> {
        let mut b = [0; 8];
        b.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(b))
    }

    fn bytes(&mut self) -> Result<&'a [u8], BackendError> {
        let len = self.u32()? as usize;
        self.take(len)
    }
}

pub(crate) fn decode_state(bytes: &[u8]) -> Result<StateRecord, BackendError> {
    let mut r = Reader(bytes);
    if r.u8()? != STATE_FORMAT_V1 {
        return Err(BackendError::Storage("unknown job state format".into()));
    }
    let code = r.u8()?;
    let status = JobStatus::ALL
        .into_iter()
        .find(|s| status_code(*s) == code)
        .ok_or_else(|| BackendError::Storage(format!("unknown job status code {code}")))?;
    let attempts = r.u32()?;
    let deliveries = r.u32()?;
    let run_at = r.u64()?;
    let seq = r.u64()?;
    let flags = r.u8()?;
    let started_at = if flags & HAS_STARTED != 0 {
        Some(r.u64()?)
    } else {
        None
    };
    let finished_at = if flags & HAS_FINISHED != 0 {
        Some(r.u64()?)
    } else {
        None
    };
    let last_error = if flags & HAS_ERROR != 0 {
        Some(
            std::str::from_utf8(r.bytes()?)
                .map_err(storage_err)?
                .to_string(),
        )
    } else {
        None
    };
    let result = if flags & HAS_RESULT != 0 {
        Some(serde_json::from_slice(r.bytes()?).map_err(storage_err)?)
    } else {
        None
    };
    Ok(StateRecord {
        status,
        attempts,
        deliveries,
        run_at,
        seq,
        started_at,
        finished_at,
        last_error,
        result,
    })
}

/// Joins both records into the public job.
pub(crate) fn to_job(id: JobId, spec: SpecRecord, state: StateRecord) -> Job {
    Job {
        id,
        kind: spec.kind,
        payload: spec.payload,
        priority: spec.priority,
        status: state.status,
        max_retries: spec.max_retries,
        attempts: state.attempts,
        deliveries: state.deliveries,
        created_at: spec.created_at,
        run_at: state.run_at,
        timeout_ms: spec.timeout_ms,
        metadata: spec.metadata,
        idempotency_key: spec.idempotency_key,
        partition: spec.partition,
        started_at: state.started_at,
        finished_at: state.finished_at,
        last_error: state.last_error,
        result: state.result,
        progress: None,
    }
}

/// Reads one state record from any table handle.
pub(crate) fn read_state(
    table: &impl ReadableTable<u128, &'static [u8]>,
    id: JobId,
) -> Result<Option<StateRecord>, BackendError> {
    match table.get(id.as_u128()).map_err(storage_err)? {
        Some(guard) => decode_state(guard.value()).map(Some),
        None => Ok(None),
    }
}

/// Reads one full job from read-only tables.
pub(crate) fn read_job(
    specs: &impl ReadableTable<u128, &'static [u8]>,
    states: &impl ReadableTable<u128, &'static [u8]>,
    id: JobId,
) -> Result<Option<Job>, BackendError> {
    let Some(spec) = specs.get(id.as_u128()).map_err(storage_err)? else {
        return Ok(None);
    };
    let spec = decode_spec(spec.value())?;
    let Some(state) = read_state(states, id)? else {
        return Err(BackendError::Storage(format!(
            "job {id} has no state record"
        )));
    };
    Ok(Some(to_job(id, spec, state)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::{JobLimits, JobSpec};

    #[test]
    fn spec_round_trips_and_head_needs_no_payload() {
        let job = JobSpec::new("résumé", serde_json::json!({"n": [1, 2, 3]}))
            .priority(Priority::Critical)
            .into_job(JobId::new_random(), 3, 10, &JobLimits::default())
            .unwrap();
        let bytes = encode_spec(&job).unwrap();
        assert_eq!(spec_head(&bytes).unwrap(), (Priority::Critical, "résumé"));
        let spec = decode_spec(&bytes).unwrap();
        let state = initial_state(&job, 1);
        assert_eq!(to_job(job.id, spec, state), job);
        assert!(spec_head(&bytes[..3]).is_err());
        assert!(spec_head(&[9, 0, 0, 0]).is_err());
    }

    #[test]
    fn state_round_trips_and_rejects_garbage() {
        let mut state = StateRecord {
            status: JobStatus::Failed,
            attempts: 2,
            deliveries: 3,
            run_at: 99,
            seq: 7,
            started_at: None,
            finished_at: None,
            last_error: None,
            result: None,
        };
        let bytes = encode_state(&state).unwrap();
        assert!(bytes.len() < 40);
        assert_eq!(decode_state(&bytes).unwrap(), state);
        state.started_at = Some(5);
        state.finished_at = Some(6);
        state.last_error = Some("bö".into());
        state.result = Some(serde_json::json!({"a": [1]}));
        let bytes = encode_state(&state).unwrap();
        assert_eq!(decode_state(&bytes).unwrap(), state);
        for cut in 0..bytes.len() {
            assert!(decode_state(&bytes[..cut]).is_err());
        }
        let mut bad = bytes.clone();
        bad[1] = 200;
        assert!(decode_state(&bad).is_err());
    }
}
