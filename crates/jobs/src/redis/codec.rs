//! How jobs, receipts and fetch order keys are written to and read from
//! Redis. The immutable part of a job (kind, payload, limits, labels) is one
//! JSON string written once at submission; the mutable part lives in other
//! fields of the same hash, so a status change never re-encodes the payload.
//! Pure: no I/O.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::backend::Receipt;
use crate::error::BackendError;
use crate::job::{Job, JobId, JobStatus, Priority};

/// The immutable part of a job, as written (borrowed, no copy of the payload).
#[derive(Serialize)]
struct SpecOut<'a> {
    kind: &'a str,
    payload: &'a serde_json::Value,
    priority: Priority,
    max_retries: u32,
    timeout_ms: u64,
    created_at: u64,
    partition: u32,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    metadata: &'a BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    idempotency_key: &'a Option<String>,
}

/// The immutable part of a job, as read.
#[derive(Deserialize)]
struct SpecIn {
    kind: String,
    #[serde(default)]
    payload: serde_json::Value,
    priority: Priority,
    max_retries: u32,
    timeout_ms: u64,
    created_at: u64,
    partition: u32,
    #[serde(default)]
    metadata: BTreeMap<String, String>,
    #[serde(default)]
    idempotency_key: Option<String>,
}

/// Encodes the immutable part of `job` (stored as the `spec` hash field).
pub(crate) fn encode_spec(job: &Job) -> Result<String, BackendError> {
    serde_json::to_string(&SpecOut {
        kind: &job.kind,
        payload: &job.payload,
        priority: job.priority,
        max_retries: job.max_retries,
        timeout_ms: job.timeout_ms,
        created_at: job.created_at,
        partition: job.partition,
        metadata: &job.metadata,
        idempotency_key: &job.idempotency_key,
    })
    .map_err(|e| BackendError::Storage(format!("cannot encode job {}: {e}", job.id)))
}

/// The kind recorded in a spec (empty if the spec is unreadable).
pub(crate) fn kind_of(spec: &str) -> String {
    #[derive(Deserialize)]
    struct KindOnly {
        kind: String,
    }
    serde_json::from_str::<KindOnly>(spec)
        .map(|k| k.kind)
        .unwrap_or_default()
}

/// The mutable fields of a job, as strings from its hash.
#[derive(Debug)]
pub(crate) struct Mutable<'a> {
    pub status: JobStatus,
    pub attempts: &'a str,
    pub deliveries: &'a str,
    pub run_at: &'a str,
    pub started_at: Option<&'a str>,
    pub finished_at: Option<&'a str>,
    pub last_error: Option<&'a str>,
    pub result: Option<&'a str>,
    pub progress: Option<&'a str>,
}

fn number<T: std::str::FromStr>(id: JobId, field: &str, text: &str) -> Result<T, BackendError> {
    text.parse().map_err(|_| {
        BackendError::Storage(format!("job {id}: field {field} is not a number: {text:?}"))
    })
}

fn non_empty(value: Option<&str>) -> Option<&str> {
    value.filter(|v| !v.is_empty())
}

/// Builds a job from its spec and mutable fields.
pub(crate) fn decode_job(id: JobId, spec: &str, m: &Mutable<'_>) -> Result<Job, BackendError> {
    let spec: SpecIn = serde_json::from_str(spec)
        .map_err(|e| BackendError::Storage(format!("job {id}: unreadable spec: {e}")))?;
    let result = match non_empty(m.result) {
        Some(text) => Some(
            serde_json::from_str(text)
                .map_err(|e| BackendError::Storage(format!("job {id}: unreadable result: {e}")))?,
        ),
        None => None,
    };
    let optional = |field: &str, value: Option<&str>| -> Result<Option<u64>, BackendError> {
        non_empty(value).map(|v| number(id, field, v)).transpose()
    };
    Ok(Job {
        id,
        kind: spec.kind,
        payload: spec.payload,
        priority: spec.priority,
        status: m.status,
        max_retries: spec.max_retries,
        attempts: number(id, "att", m.attempts)?,
        deliveries: number(id, "del", m.deliveries)?,
        created_at: spec.created_at,
        run_at: number(id, "run", m.run_at)?,
        timeout_ms: spec.timeout_ms,
        metadata: spec.metadata,
        idempotency_key: spec.idempotency_key,
        partition: spec.partition,
        started_at: optional("sta", m.started_at)?,
        finished_at: optional("fin", m.finished_at)?,
        last_error: non_empty(m.last_error).map(str::to_string),
        result,
        progress: optional("prog", m.progress)?.map(|p| p.min(100) as u8),
    })
}

/// Builds a job from the whole hash (HGETALL) and its field in the
/// partition's leases hash, if any (a `queued` job with a lease is
/// running); `None` for an empty hash (unknown or expired job).
pub(crate) fn job_from_hash(
    id: JobId,
    hash: &HashMap<String, String>,
    lease: Option<&str>,
) -> Result<Option<Job>, BackendError> {
    let Some(spec) = hash.get("spec") else {
        return Ok(None);
    };
    let field = |name: &str| hash.get(name).map(String::as_str);
    let mut status = field("st")
        .unwrap_or("queued")
        .parse::<JobStatus>()
        .map_err(|e| BackendError::Storage(format!("job {id}: {e}")))?;
    let lease = lease
        .and_then(LeaseFields::parse)
        .filter(|l| status == JobStatus::Queued && l.job == id.to_string());
    let mut m = Mutable {
        status,
        attempts: field("att").unwrap_or("0"),
        deliveries: field("del").unwrap_or("0"),
        run_at: field("run").unwrap_or("0"),
        started_at: field("sta"),
        finished_at: field("fin"),
        last_error: field("err"),
        result: field("res"),
        progress: field("prog"),
    };
    if let Some(lease) = &lease {
        status = JobStatus::Running;
        m.status = status;
        m.attempts = lease.attempts;
        m.deliveries = lease.deliveries;
        m.started_at = Some(lease.started_at);
    }
    decode_job(id, spec, &m).map(Some)
}

/// A value of the partition's leases hash (its field is `rank:entry id`):
/// `job id|deliveries|attempts|started_at|lease_ms`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LeaseFields<'a> {
    pub job: &'a str,
    pub deliveries: &'a str,
    pub attempts: &'a str,
    pub started_at: &'a str,
    pub lease_ms: &'a str,
}

impl<'a> LeaseFields<'a> {
    /// `None` if the text is not five `|`-separated parts.
    pub fn parse(text: &'a str) -> Option<LeaseFields<'a>> {
        let mut parts = text.split('|');
        let lease = LeaseFields {
            job: parts.next()?,
            deliveries: parts.next()?,
            attempts: parts.next()?,
            started_at: parts.next()?,
            lease_ms: parts.next()?,
        };
        parts.next().is_none().then_some(lease)
    }
}

/// Where a lease lives: partition, priority stream, entry id and consumer,
/// plus what the lease started with: the job's attempts, its deliveries
/// (this one included) and the lease start. Attempts only change when a
/// lease ends, and the job hash is not written at lease time, so completion
/// writes these from the receipt without parsing the lease record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Token {
    pub partition: u32,
    pub rank: usize,
    pub entry: String,
    pub consumer: String,
    /// `None` for tokens issued before this field existed.
    pub attempts: Option<u32>,
    /// Deliveries and lease start; `None` for tokens issued before them.
    pub lease: Option<(u32, u64)>,
}

impl Token {
    /// `partition:rank:entry/attempts/deliveries/started:consumer` (the
    /// consumer last: it may hold `:`; stream entry ids never hold `/`).
    pub fn encode(&self) -> String {
        let mut entry = self.entry.clone();
        if let Some(attempts) = self.attempts {
            entry.push_str(&format!("/{attempts}"));
            if let Some((deliveries, started)) = self.lease {
                entry.push_str(&format!("/{deliveries}/{started}"));
            }
        }
        format!(
            "{}:{}:{}:{}",
            self.partition, self.rank, entry, self.consumer
        )
    }

    /// The token of a receipt this backend issued, or `None` for a foreign one.
    pub fn decode(receipt: &Receipt) -> Option<Token> {
        let mut parts = receipt.token.splitn(4, ':');
        let partition = parts.next()?.parse().ok()?;
        let rank: usize = parts.next()?.parse().ok()?;
        let mut field = parts.next()?.split('/');
        let entry = field.next()?.to_string();
        let attempts = match field.next() {
            Some(text) => Some(text.parse().ok()?),
            None => None,
        };
        let lease = match (field.next(), field.next()) {
            (Some(deliveries), Some(started)) => {
                Some((deliveries.parse().ok()?, started.parse().ok()?))
            }
            (None, None) => None,
            _ => return None,
        };
        if field.next().is_some() {
            return None;
        }
        let consumer = parts.next()?.to_string();
        if rank > 3 || entry.is_empty() {
            return None;
        }
        Some(Token {
            partition,
            rank,
            entry,
            consumer,
            attempts,
            lease,
        })
    }
}

/// The FIFO position of a stream entry: enqueue time and a per-process
/// sequence (`ms-seq`), comparable across partitions. Unparsable keys sort last.
pub(crate) fn order_key(text: &str) -> (u64, u64) {
    let mut parts = text.splitn(2, '-');
    let ms = parts.next().and_then(|p| p.parse().ok());
    let seq = parts.next().and_then(|p| p.parse().ok());
    match (ms, seq) {
        (Some(ms), Some(seq)) => (ms, seq),
        _ => (u64::MAX, u64::MAX),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::JobSpec;

    #[test]
    fn spec_and_mutable_fields_round_trip() {
        let job = JobSpec::new("mail", serde_json::json!({"to": "x"}))
            .priority(Priority::High)
            .idempotency_key("k")
            .into_job(JobId::new_random(), 3, 1_000, &Default::default())
            .unwrap();
        let spec = encode_spec(&job).unwrap();
        assert_eq!(kind_of(&spec), "mail");
        assert_eq!(kind_of("not json"), "");
        let mut hash = HashMap::new();
        hash.insert("spec".to_string(), spec);
        hash.insert("st".to_string(), "queued".to_string());
        hash.insert("att".to_string(), "0".to_string());
        hash.insert("del".to_string(), "0".to_string());
        hash.insert("run".to_string(), "1000".to_string());
        assert_eq!(
            job_from_hash(job.id, &hash, None).unwrap(),
            Some(job.clone())
        );
        // A queued job with a lease is running, with the lease's counters.
        let running = job_from_hash(job.id, &hash, Some(&format!("{}|2|1|1500|30000", job.id)))
            .unwrap()
            .unwrap();
        assert_eq!(
            (
                running.status,
                running.deliveries,
                running.attempts,
                running.started_at
            ),
            (JobStatus::Running, 2, 1, Some(1500))
        );
        hash.insert("st".to_string(), "completed".to_string());
        hash.insert("res".to_string(), "[1,2]".to_string());
        hash.insert("fin".to_string(), "2000".to_string());
        let done = job_from_hash(job.id, &hash, Some(&format!("{}|2|1|1500|30000", job.id)))
            .unwrap()
            .unwrap();
        assert_eq!(done.status, JobStatus::Completed);
        assert_eq!(done.result, Some(serde_json::json!([1, 2])));
        assert_eq!(done.finished_at, Some(2000));
        assert_eq!(job_from_hash(job.id, &HashMap::new(), None).unwrap(), None);
        hash.insert("att".to_string(), "many".to_string());
        assert!(job_from_hash(job.id, &hash, None).is_err());
    }

    #[test]
    fn tokens_round_trip_and_reject_foreign_ones() {
        let token = Token {
            partition: 7,
            rank: 2,
            entry: "1700000000000-3".into(),
            consumer: "host:worker-1".into(),
            attempts: Some(4),
            lease: Some((2, 1_700_000_000_123)),
        };
        let receipt = Receipt {
            job_id: JobId::new_random(),
            kind: "k".into(),
            priority: Priority::Medium,
            token: token.encode(),
        };
        assert_eq!(
            receipt.token,
            "7:2:1700000000000-3/4/2/1700000000123:host:worker-1"
        );
        assert_eq!(Token::decode(&receipt), Some(token.clone()));
        // Tokens of older versions (without the lease start, without the
        // attempt count) still decode.
        let older = Token {
            lease: None,
            ..token.clone()
        };
        let older_receipt = Receipt {
            token: older.encode(),
            ..receipt.clone()
        };
        assert_eq!(older_receipt.token, "7:2:1700000000000-3/4:host:worker-1");
        assert_eq!(Token::decode(&older_receipt), Some(older));
        let old = Token {
            attempts: None,
            lease: None,
            ..token
        };
        let receipt = Receipt {
            token: old.encode(),
            ..receipt
        };
        assert_eq!(receipt.token, "7:2:1700000000000-3:host:worker-1");
        assert_eq!(Token::decode(&receipt), Some(old));
        for bad in [
            "",
            "42",
            "1:9:1-1:c",
            "x:1:1-1:c",
            "1:1::c",
            "1:1:1-1/x:c",
            "1:1:/2:c",
            "1:1:1-1/2/3:c",
            "1:1:1-1/2/3/x:c",
            "1:1:1-1/2/3/4/5:c",
        ] {
            let receipt = Receipt {
                token: bad.into(),
                ..receipt.clone()
            };
            assert_eq!(Token::decode(&receipt), None, "{bad}");
        }
    }

    #[test]
    fn lease_fields_parse() {
        assert_eq!(
            LeaseFields::parse("job-1|3|0|99|500"),
            Some(LeaseFields {
                job: "job-1",
                deliveries: "3",
                attempts: "0",
                started_at: "99",
                lease_ms: "500",
            })
        );
        assert_eq!(LeaseFields::parse("1-2|3|0|99"), None);
        assert_eq!(LeaseFields::parse("1-2|3|0|99|5|6"), None);
    }

    #[test]
    fn order_keys_compare_by_time_then_sequence() {
        assert!(order_key("5-9") < order_key("6-0"));
        assert!(order_key("6-1") < order_key("6-2"));
        assert_eq!(order_key("junk"), (u64::MAX, u64::MAX));
    }
}
