//! How jobs, their mutable state and receipts are written to and read from
//! Redis. The immutable part of a job (kind, payload, limits, labels) is one
//! JSON record written once, inside a stream entry (or the `parked` hash);
//! the mutable part is one compact string in the partition's `meta` hash
//! (format in [`super::scripts`]), so a status change never re-encodes the
//! payload. Pure: no I/O.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::backend::Receipt;
use crate::error::BackendError;
use crate::job::{Job, JobId, JobStatus, Priority, DEFAULT_MAX_RETRIES, DEFAULT_TIMEOUT_MS};

/// The immutable part of a job, as written (borrowed, no copy of the
/// payload). Short field names: a record is written, stored, logged to the
/// append-only file and read once per job, so its bytes count. Priority and
/// partition are not stored: the stream and key holding the record say them.
#[derive(Serialize)]
struct RecordOut<'a> {
    #[serde(rename = "k")]
    kind: &'a str,
    #[serde(rename = "p")]
    payload: &'a serde_json::Value,
    /// Only when it differs from the default (as is `t`).
    #[serde(rename = "m", skip_serializing_if = "is_default_retries")]
    max_retries: u32,
    #[serde(rename = "t", skip_serializing_if = "is_default_timeout")]
    timeout_ms: u64,
    #[serde(rename = "c")]
    created_at: u64,
    /// Only when it differs from `created_at` (a delayed submission).
    #[serde(rename = "a", skip_serializing_if = "Option::is_none")]
    run_at: Option<u64>,
    #[serde(rename = "l", skip_serializing_if = "BTreeMap::is_empty")]
    metadata: &'a BTreeMap<String, String>,
    #[serde(rename = "i", skip_serializing_if = "Option::is_none")]
    idempotency_key: &'a Option<String>,
}

/// The immutable part of a job, as read.
#[derive(Deserialize)]
struct RecordIn {
    #[serde(rename = "k")]
    kind: String,
    #[serde(rename = "p", default)]
    payload: serde_json::Value,
    #[serde(rename = "m", default = "default_retries")]
    max_retries: u32,
    #[serde(rename = "t", default = "default_timeout")]
    timeout_ms: u64,
    #[serde(rename = "c")]
    created_at: u64,
    #[serde(rename = "a", default)]
    run_at: Option<u64>,
    #[serde(rename = "l", default)]
    metadata: BTreeMap<String, String>,
    #[serde(rename = "i", default)]
    idempotency_key: Option<String>,
}

fn is_default_retries(n: &u32) -> bool {
    *n == DEFAULT_MAX_RETRIES
}

fn is_default_timeout(ms: &u64) -> bool {
    *ms == DEFAULT_TIMEOUT_MS
}

fn default_retries() -> u32 {
    DEFAULT_MAX_RETRIES
}

fn default_timeout() -> u64 {
    DEFAULT_TIMEOUT_MS
}

/// Encodes the immutable part of `job`: its record.
pub(crate) fn encode_record(job: &Job) -> Result<String, BackendError> {
    serde_json::to_string(&RecordOut {
        kind: &job.kind,
        payload: &job.payload,
        max_retries: job.max_retries,
        timeout_ms: job.timeout_ms,
        created_at: job.created_at,
        run_at: (job.run_at != job.created_at).then_some(job.run_at),
        metadata: &job.metadata,
        idempotency_key: &job.idempotency_key,
    })
    .map_err(|e| BackendError::Storage(format!("cannot encode job {}: {e}", job.id)))
}

/// Appends one job to an entry's blob: `<len>:<id><len>:<record>` (byte
/// lengths), the framing the scripts' `unframe` reads.
pub(crate) fn frame(blob: &mut String, id: &str, record: &str) {
    use std::fmt::Write;
    // Writing to a String cannot fail.
    let _ = write!(blob, "{}:{id}{}:", id.len(), record.len());
    blob.push_str(record);
}

/// The (id, record) pairs of an entry's blob.
pub(crate) fn unframe(blob: &str) -> Result<Vec<(&str, &str)>, BackendError> {
    fn item(rest: &str) -> Option<(&str, &str)> {
        let (len, tail) = rest.split_once(':')?;
        let len: usize = len.parse().ok()?;
        Some((tail.get(..len)?, tail.get(len..)?))
    }
    let mut jobs = Vec::new();
    let mut rest = blob;
    while !rest.is_empty() {
        let (id, tail) = item(rest).ok_or_else(|| bad_blob(blob))?;
        let (record, tail) = item(tail).ok_or_else(|| bad_blob(blob))?;
        jobs.push((id, record));
        rest = tail;
    }
    Ok(jobs)
}

fn bad_blob(blob: &str) -> BackendError {
    let start: String = blob.chars().take(60).collect();
    BackendError::Storage(format!("redis: unreadable stream entry {start:?}…"))
}

/// The kind recorded in a record (empty if the record is unreadable).
pub(crate) fn kind_of(record: &str) -> String {
    #[derive(Deserialize)]
    struct KindOnly {
        #[serde(rename = "k")]
        kind: String,
    }
    serde_json::from_str::<KindOnly>(record)
        .map(|k| k.kind)
        .unwrap_or_default()
}

/// A job built from its record, stored in `partition` at `priority`, with
/// the state of a fresh, never-run job (the caller overlays what the meta
/// or the lease says).
pub(crate) fn decode_record(
    id: JobId,
    record: &str,
    partition: u32,
    priority: Priority,
) -> Result<Job, BackendError> {
    let r: RecordIn = serde_json::from_str(record)
        .map_err(|e| BackendError::Storage(format!("job {id}: unreadable record: {e}")))?;
    Ok(Job {
        id,
        kind: r.kind,
        payload: r.payload,
        priority,
        status: JobStatus::Queued,
        max_retries: r.max_retries,
        attempts: 0,
        deliveries: 0,
        created_at: r.created_at,
        run_at: r.run_at.unwrap_or(r.created_at),
        timeout_ms: r.timeout_ms,
        metadata: r.metadata,
        idempotency_key: r.idempotency_key,
        partition,
        started_at: None,
        finished_at: None,
        last_error: None,
        result: None,
        progress: None,
    })
}

/// The mutable state of a job: one value of the partition's `meta` hash,
/// `st|r|ent|att|del|run|sta|fin|prog|dent|errlen|` + error + result.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Meta {
    /// `q` queued (running while its entry is pending), `s` scheduled, `f`
    /// failed (retry pending), `c` completed, `d` dead, `x` cancelled.
    pub status: char,
    pub rank: usize,
    /// Stream entry holding the record, `-` when parked.
    pub entry: String,
    pub attempts: u32,
    pub deliveries: u32,
    pub run_at: Option<u64>,
    pub started_at: Option<u64>,
    pub finished_at: Option<u64>,
    pub progress: Option<u8>,
    pub dead_entry: String,
    pub last_error: String,
    /// Result JSON ('' for none).
    pub result: String,
}

impl Meta {
    /// Parses a meta value (also the short form `q|r|ent` of a job just
    /// submitted); `None` if it is not one.
    pub fn parse(text: &str) -> Option<Meta> {
        if let Some(("q", rest)) = text.split_once('|') {
            if let Some((rank, entry)) = rest.split_once('|').filter(|(_, e)| !e.contains('|')) {
                let rank = rank.parse().ok().filter(|r| *r <= 3)?;
                return Some(Meta {
                    status: 'q',
                    rank,
                    entry: entry.to_string(),
                    ..Meta::default()
                });
            }
        }
        let mut parts = text.splitn(12, '|');
        let mut next = || parts.next();
        let status = next()?.chars().next()?;
        let rank = next()?.parse().ok()?;
        let entry = next()?.to_string();
        let number = |s: &str| -> Option<u64> {
            if s.is_empty() {
                Some(0)
            } else {
                s.parse().ok()
            }
        };
        let optional = |s: &str| -> Option<Option<u64>> {
            if s.is_empty() {
                Some(None)
            } else {
                s.parse().ok().map(Some)
            }
        };
        let attempts = number(next()?)? as u32;
        let deliveries = number(next()?)? as u32;
        let run_at = optional(next()?)?;
        let started_at = optional(next()?)?;
        let finished_at = optional(next()?)?;
        let progress = optional(next()?)?.map(|p| p.min(100) as u8);
        let dead_entry = next()?.to_string();
        let error_len: usize = next()?.parse().ok()?;
        let rest = next()?;
        if rank > 3 || rest.len() < error_len || !rest.is_char_boundary(error_len) {
            return None;
        }
        Some(Meta {
            status,
            rank,
            entry,
            attempts,
            deliveries,
            run_at,
            started_at,
            finished_at,
            progress,
            dead_entry,
            last_error: rest[..error_len].to_string(),
            result: rest[error_len..].to_string(),
        })
    }

    /// The value as stored (the scripts write it; tests check the round trip).
    #[cfg(test)]
    pub fn format(&self) -> String {
        use std::fmt::Write;
        let mut out = String::with_capacity(48 + self.last_error.len() + self.result.len());
        // Writing to a String cannot fail.
        let _ = write!(
            out,
            "{}|{}|{}|{}|{}|",
            self.status, self.rank, self.entry, self.attempts, self.deliveries
        );
        for value in [self.run_at, self.started_at, self.finished_at] {
            if let Some(v) = value {
                let _ = write!(out, "{v}");
            }
            out.push('|');
        }
        if let Some(p) = self.progress {
            let _ = write!(out, "{p}");
        }
        out.push('|');
        out.push_str(&self.dead_entry);
        let _ = write!(out, "|{}|", self.last_error.len());
        out.push_str(&self.last_error);
        out.push_str(&self.result);
        out
    }

    /// The job's status (`running` needs the entry's lease, see [`job_from`]).
    fn job_status(&self) -> Option<JobStatus> {
        Some(match self.status {
            'q' => JobStatus::Queued,
            's' => JobStatus::Scheduled,
            'f' => JobStatus::Failed,
            'c' => JobStatus::Completed,
            'd' => JobStatus::Dead,
            'x' => JobStatus::Cancelled,
            _ => return None,
        })
    }
}

/// Builds a job from its record and meta; `running` with the lease start
/// when its entry is pending.
pub(crate) fn job_from(
    id: JobId,
    record: &str,
    partition: u32,
    meta: &Meta,
    lease: Option<u64>,
) -> Result<Job, BackendError> {
    let priority = Priority::from_rank(meta.rank)
        .ok_or_else(|| BackendError::Storage(format!("job {id}: no priority {}", meta.rank)))?;
    let mut job = decode_record(id, record, partition, priority)?;
    job.status = meta
        .job_status()
        .ok_or_else(|| BackendError::Storage(format!("job {id}: unknown status in {meta:?}")))?;
    job.attempts = meta.attempts;
    job.deliveries = meta.deliveries;
    if let Some(run_at) = meta.run_at {
        job.run_at = run_at;
    }
    job.started_at = meta.started_at;
    job.finished_at = meta.finished_at;
    job.progress = meta.progress;
    job.last_error = Some(meta.last_error.clone()).filter(|e| !e.is_empty());
    if !meta.result.is_empty() {
        job.result = Some(
            serde_json::from_str(&meta.result)
                .map_err(|e| BackendError::Storage(format!("job {id}: unreadable result: {e}")))?,
        );
    }
    if let (JobStatus::Queued, Some(started)) = (job.status, lease) {
        job.status = JobStatus::Running;
        job.deliveries = job.deliveries.saturating_add(1);
        job.started_at = Some(started);
    }
    Ok(job)
}

/// Where a lease lives: partition, priority stream, entry id, the job's
/// position in the entry and the consumer, plus what the lease started
/// with: the job's attempts, its deliveries (this one included) and the
/// lease start. The meta is not written at lease time, so completion
/// writes these from the receipt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Token<'a> {
    pub partition: u32,
    pub rank: usize,
    pub entry: &'a str,
    pub position: usize,
    pub consumer: &'a str,
    pub attempts: u32,
    pub deliveries: u32,
    pub started: u64,
}

/// The tokens of one leased entry, which differ only in the position.
pub(crate) struct EntryTokens {
    head: String,
    tail: String,
}

impl EntryTokens {
    /// The token of the job at `position`.
    pub fn at(&self, position: usize) -> String {
        use std::fmt::Write;
        let mut token = String::with_capacity(self.head.len() + self.tail.len() + 5);
        token.push_str(&self.head);
        // Writing to a String cannot fail.
        let _ = write!(token, "{position}");
        token.push_str(&self.tail);
        token
    }
}

impl<'a> Token<'a> {
    /// `partition:rank:entry/attempts/deliveries/started/position:consumer`
    /// (the consumer last: it may hold `:`; stream entry ids never hold `/`).
    #[cfg(test)]
    pub fn encode(&self) -> String {
        self.of_entry().at(self.position)
    }

    /// The tokens of this token's entry (its position is ignored).
    pub fn of_entry(&self) -> EntryTokens {
        EntryTokens {
            head: format!(
                "{}:{}:{}/{}/{}/{}/",
                self.partition, self.rank, self.entry, self.attempts, self.deliveries, self.started,
            ),
            tail: format!(":{}", self.consumer),
        }
    }

    /// The token of a receipt this backend issued (borrowing from it), or
    /// `None` for a foreign one.
    pub fn decode(receipt: &'a Receipt) -> Option<Token<'a>> {
        let mut parts = receipt.token.splitn(4, ':');
        let partition = parts.next()?.parse().ok()?;
        let rank: usize = parts.next()?.parse().ok()?;
        let mut lease = parts.next()?.split('/');
        let entry = lease.next()?;
        let attempts = lease.next()?.parse().ok()?;
        let deliveries = lease.next()?.parse().ok()?;
        let started = lease.next()?.parse().ok()?;
        let position = lease.next()?.parse().ok()?;
        let consumer = parts.next()?;
        if rank > 3 || entry.is_empty() || lease.next().is_some() {
            return None;
        }
        Some(Token {
            partition,
            rank,
            entry,
            position,
            consumer,
            attempts,
            deliveries,
            started,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::JobSpec;

    #[test]
    fn records_and_meta_round_trip_into_jobs() {
        let job = JobSpec::new("mail", serde_json::json!({"to": "x"}))
            .priority(Priority::High)
            .idempotency_key("k")
            .into_job(JobId::new_random(), 3, 1_000, &Default::default())
            .unwrap();
        let record = encode_record(&job).unwrap();
        assert_eq!(kind_of(&record), "mail");
        assert_eq!(kind_of("not json"), "");
        assert_eq!(
            decode_record(job.id, &record, job.partition, job.priority).unwrap(),
            job
        );
        assert!(!record.contains("priority"), "short names: {record}");
        assert!(
            !record.contains("\"m\"") && !record.contains("\"t\""),
            "defaults left out: {record}"
        );
        let limited = JobSpec::new("mail", serde_json::Value::Null)
            .max_retries(0)
            .timeout_ms(5)
            .into_job(JobId::new_random(), 3, 1_000, &Default::default())
            .unwrap();
        let limited_record = encode_record(&limited).unwrap();
        assert!(limited_record.contains("\"m\":0"), "{limited_record}");
        assert_eq!(
            decode_record(limited.id, &limited_record, 3, limited.priority).unwrap(),
            limited
        );
        // What ENQUEUE writes for a ready job, and its long form.
        let fresh = Meta::parse("q|1|1700-0").unwrap();
        assert_eq!(Meta::parse("q|1|1700-0|0|0||||||0|"), Some(fresh.clone()));
        assert_eq!(
            job_from(job.id, &record, job.partition, &fresh, None).unwrap(),
            job
        );
        let running = job_from(job.id, &record, job.partition, &fresh, Some(1_500)).unwrap();
        assert_eq!(
            (running.status, running.deliveries, running.started_at),
            (JobStatus::Running, 1, Some(1_500))
        );
        let done = Meta {
            status: 'c',
            rank: 1,
            entry: "1700-0".into(),
            attempts: 2,
            deliveries: 3,
            run_at: Some(1_200),
            started_at: Some(1_300),
            finished_at: Some(2_000),
            progress: None,
            dead_entry: String::new(),
            last_error: "a|b 1|2".into(),
            result: "[1,2]".into(),
        };
        assert_eq!(Meta::parse(&done.format()), Some(done.clone()));
        let finished = job_from(job.id, &record, job.partition, &done, Some(5)).unwrap();
        assert_eq!(finished.status, JobStatus::Completed);
        assert_eq!(finished.result, Some(serde_json::json!([1, 2])));
        assert_eq!(finished.last_error.as_deref(), Some("a|b 1|2"));
        assert_eq!(
            (finished.run_at, finished.finished_at),
            (1_200, Some(2_000))
        );
        // What ENQUEUE writes for a delayed job.
        let scheduled = Meta::parse("s|0|-|0|0|5000|||||0|").unwrap();
        assert_eq!((scheduled.status, scheduled.run_at), ('s', Some(5_000)));
        for bad in [
            "",
            "q",
            "q|9|e|0|0||||||0|",
            "q|1|e|x|0||||||0|",
            "q|1|e|0|0||||||5|ab",
            "q|7|e",
            "q|x|e",
        ] {
            assert_eq!(Meta::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn blobs_frame_and_unframe_any_text() {
        let mut blob = String::new();
        frame(&mut blob, "id-1", r#"{"a":"x:y","é":1}"#);
        frame(&mut blob, "id-2", "");
        assert_eq!(blob, r#"4:id-118:{"a":"x:y","é":1}4:id-20:"#);
        assert_eq!(
            unframe(&blob).unwrap(),
            vec![("id-1", r#"{"a":"x:y","é":1}"#), ("id-2", "")]
        );
        assert_eq!(unframe("").unwrap(), vec![]);
        for bad in ["4:id", "x:id-10:", "4:id-19:{", "4:id-1", "2:é"] {
            assert!(unframe(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn tokens_round_trip_and_reject_foreign_ones() {
        let token = Token {
            partition: 7,
            rank: 2,
            entry: "1700000000000-3",
            position: 17,
            consumer: "host:worker-1",
            attempts: 4,
            deliveries: 2,
            started: 1_700_000_000_123,
        };
        let receipt = Receipt {
            job_id: JobId::new_random(),
            kind: "k".into(),
            priority: Priority::Medium,
            token: token.encode(),
        };
        assert_eq!(
            receipt.token,
            "7:2:1700000000000-3/4/2/1700000000123/17:host:worker-1"
        );
        assert_eq!(Token::decode(&receipt), Some(token));
        for bad in [
            "",
            "42",
            "1:9:1-1/0/1/2:c",
            "x:1:1-1/0/1/2:c",
            "1:1:/0/1/2:c",
            "1:1:1-1/x/1/2:c",
            "1:1:1-1/2/3/4:c",
            "1:1:1-1/2/3/4/x:c",
            "1:1:1-1/2/3/4/5/6:c",
        ] {
            let receipt = Receipt {
                token: bad.into(),
                ..receipt.clone()
            };
            assert_eq!(Token::decode(&receipt), None, "{bad}");
        }
    }
}
