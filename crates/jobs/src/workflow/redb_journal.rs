//! A durable [`WorkflowJournal`] for a single machine: workflow specs and
//! histories in their own redb file, so a restarted embedded node takes its
//! unfinished workflows over instead of forgetting them.
//!
//! Layout (one redb database, four tables):
//!
//! - `workflow_specs`: workflow id -> `[format 1][partition u32 LE][spec JSON]`;
//!   written once by `create`, the header lets appends find the partition
//!   without decoding the spec;
//! - `workflow_events`: (workflow id, seq) -> event JSON; an event whose seq
//!   is not past the last stored one is dropped, so re-appending is a no-op;
//! - `workflow_unfinished`: (partition, workflow id) -> (); an entry is
//!   removed when the workflow-end event ([`is_workflow_end`]) is appended,
//!   so `unfinished` reads only live workflows;
//! - `workflow_finished`: finish order -> workflow id; beyond
//!   `max_finished` (the engine passes
//!   [`DEFAULT_MAX_FINISHED_WORKFLOWS`](super::DEFAULT_MAX_FINISHED_WORKFLOWS),
//!   10,000) the oldest finished workflows are deleted with their events.
//!
//! Each `create` and each `append_batch` (the runner's flush of every
//! workflow that changed) is one write transaction, committed with redb's
//! default durability (fsync) before the call returns. Calls run on
//! tokio's blocking pool. Unfinished workflows are bounded by the runner's
//! live bounds (it creates a workflow only when under them); a history by
//! the workflow limits (a few events per job and retry).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::RwLock;
use redb::{Database, ReadableTable, ReadableTableMetadata, TableDefinition, WriteTransaction};

use super::event::WorkflowEvent;
use super::journal::{is_workflow_end, JournalError, WorkflowJournal, WorkflowRecord};
use super::spec::{WorkflowId, WorkflowSpec};

/// Workflow id -> `[format][partition u32 LE][spec JSON]`.
const SPECS: TableDefinition<u128, &[u8]> = TableDefinition::new("workflow_specs");
/// (workflow id, seq) -> event JSON.
const EVENTS: TableDefinition<(u128, u64), &[u8]> = TableDefinition::new("workflow_events");
/// (partition, workflow id) of every workflow without its end event.
const UNFINISHED: TableDefinition<(u32, u128), ()> = TableDefinition::new("workflow_unfinished");
/// Finish order -> workflow id, oldest first.
const FINISHED: TableDefinition<u64, u128> = TableDefinition::new("workflow_finished");

const SPEC_FORMAT_V1: u8 = 1;
const SPEC_HEADER_LEN: usize = 5;

/// The workflow journal of one embedded node, kept in a redb file.
///
/// ```
/// use ironforge_jobs::workflow::{
///     EventKind, RedbJournal, WorkflowEvent, WorkflowId, WorkflowJournal, WorkflowSpec,
///     DEFAULT_MAX_FINISHED_WORKFLOWS,
/// };
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("workflows.redb");
/// let journal = RedbJournal::open(&path, DEFAULT_MAX_FINISHED_WORKFLOWS)?;
/// let id = WorkflowId::new_random();
/// journal.create(id, 3, &WorkflowSpec::default()).await?;
/// let created = WorkflowEvent { seq: 1, at: 0, key: None, kind: EventKind::Created, error: None };
/// journal.append(id, 3, &[created]).await?;
/// journal.close();
///
/// let reopened = RedbJournal::open(&path, DEFAULT_MAX_FINISHED_WORKFLOWS)?;
/// assert_eq!(reopened.unfinished(&[3]).await?, vec![id]);
/// assert_eq!(reopened.load(id).await?.map(|r| r.events.len()), Some(1));
/// # Ok(()) }
/// ```
pub struct RedbJournal {
    path: PathBuf,
    max_finished: usize,
    /// `None` once closed.
    db: RwLock<Option<Arc<Database>>>,
}

impl std::fmt::Debug for RedbJournal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbJournal")
            .field("path", &self.path)
            .field("max_finished", &self.max_finished)
            .finish_non_exhaustive()
    }
}

fn unavailable(context: &str, error: impl std::fmt::Display) -> JournalError {
    JournalError::Unavailable(format!("{context}: {error}"))
}

fn corrupt(id: WorkflowId, reason: impl Into<String>) -> JournalError {
    JournalError::Corrupt {
        id,
        reason: reason.into(),
    }
}

impl RedbJournal {
    /// Opens (or creates) the journal at `path`, keeping at most
    /// `max_finished` finished workflows. Blocking: call it at start-up.
    /// Fails if another process has the file open.
    pub fn open(path: impl AsRef<Path>, max_finished: usize) -> Result<Self, JournalError> {
        let path = path.as_ref();
        let db = Database::create(path).map_err(|e| {
            unavailable(
                &format!("cannot open workflow journal {}", path.display()),
                e,
            )
        })?;
        let txn = db
            .begin_write()
            .map_err(|e| unavailable("journal write", e))?;
        open_tables(&txn)?;
        txn.commit().map_err(|e| unavailable("journal commit", e))?;
        tracing::info!(path = %path.display(), "workflow journal opened");
        Ok(RedbJournal {
            path: path.to_path_buf(),
            max_finished,
            db: RwLock::new(Some(Arc::new(db))),
        })
    }

    /// Closes the file (once calls in flight finish), so another journal
    /// can open it; later calls fail with [`JournalError::Unavailable`].
    pub fn close(&self) {
        self.db.write().take();
    }

    /// Runs `work` on the blocking pool: redb reads and fsyncs block.
    async fn run<T, F>(&self, work: F) -> Result<T, JournalError>
    where
        T: Send + 'static,
        F: FnOnce(&Database) -> Result<T, JournalError> + Send + 'static,
    {
        let db = self
            .db
            .read()
            .clone()
            .ok_or_else(|| JournalError::Unavailable("workflow journal closed".into()))?;
        tokio::task::spawn_blocking(move || work(&db))
            .await
            .map_err(|e| unavailable("workflow journal task failed", e))?
    }
}

fn open_tables(txn: &WriteTransaction) -> Result<(), JournalError> {
    let open = |e: redb::TableError| unavailable("journal table", e);
    txn.open_table(SPECS).map_err(open)?;
    txn.open_table(EVENTS).map_err(open)?;
    txn.open_table(UNFINISHED).map_err(open)?;
    txn.open_table(FINISHED).map_err(open)?;
    Ok(())
}

fn encode_spec(
    id: WorkflowId,
    partition: u32,
    spec: &WorkflowSpec,
) -> Result<Vec<u8>, JournalError> {
    let mut out = Vec::with_capacity(256);
    out.push(SPEC_FORMAT_V1);
    out.extend_from_slice(&partition.to_le_bytes());
    serde_json::to_writer(&mut out, spec)
        .map_err(|e| corrupt(id, format!("spec does not encode: {e}")))?;
    Ok(out)
}

/// The partition and the spec JSON of a spec record.
fn split_spec(id: WorkflowId, bytes: &[u8]) -> Result<(u32, &[u8]), JournalError> {
    match bytes {
        [SPEC_FORMAT_V1, p0, p1, p2, p3, json @ ..] => {
            Ok((u32::from_le_bytes([*p0, *p1, *p2, *p3]), json))
        }
        _ if bytes.len() < SPEC_HEADER_LEN => Err(corrupt(id, "spec record too short")),
        _ => Err(corrupt(
            id,
            format!("unknown spec record format {}", bytes[0]),
        )),
    }
}

fn decode_event(id: WorkflowId, seq: u64, bytes: &[u8]) -> Result<WorkflowEvent, JournalError> {
    let event: WorkflowEvent = serde_json::from_slice(bytes)
        .map_err(|e| corrupt(id, format!("event {seq} does not decode: {e}")))?;
    if event.seq != seq {
        return Err(corrupt(
            id,
            format!("event stored at seq {seq} says seq {}", event.seq),
        ));
    }
    Ok(event)
}

/// Deletes a workflow's spec and events (not its index entries).
fn delete_workflow(txn: &WriteTransaction, id: u128) -> Result<(), JournalError> {
    let err = |e: redb::StorageError| unavailable("journal delete", e);
    let mut specs = txn
        .open_table(SPECS)
        .map_err(|e| unavailable("journal table", e))?;
    specs.remove(id).map_err(err)?;
    let mut events = txn
        .open_table(EVENTS)
        .map_err(|e| unavailable("journal table", e))?;
    events
        .retain_in((id, 0)..=(id, u64::MAX), |_, _| false)
        .map_err(err)?;
    Ok(())
}

/// Records `id` as finished and deletes the oldest finished workflows
/// beyond `max_finished`.
/// `(seq, ends the workflow, JSON)` of each event.
type EncodedEvent = (u64, bool, Vec<u8>);

fn encode_events(
    id: WorkflowId,
    events: &[WorkflowEvent],
) -> Result<Vec<EncodedEvent>, JournalError> {
    events
        .iter()
        .map(|event| {
            serde_json::to_vec(event)
                .map(|json| (event.seq, is_workflow_end(event), json))
                .map_err(|e| corrupt(id, format!("event {} does not encode: {e}", event.seq)))
        })
        .collect()
}

/// Appends one workflow's events inside `txn`. Checks come before any
/// write, so a `Corrupt` error leaves the transaction untouched.
fn append_in(
    txn: &WriteTransaction,
    id: WorkflowId,
    encoded: &[EncodedEvent],
    max_finished: usize,
) -> Result<(), JournalError> {
    let err = |e: redb::StorageError| unavailable("journal append", e);
    let table = |e: redb::TableError| unavailable("journal table", e);
    let key = id.0.as_u128();
    let mut ended = false;
    {
        let specs = txn.open_table(SPECS).map_err(table)?;
        let Some(spec) = specs.get(key).map_err(err)? else {
            return Err(corrupt(
                id,
                "events appended before the workflow was created",
            ));
        };
        // The stored partition, not the caller's: it names the index entry.
        let (partition, _) = split_spec(id, spec.value())?;
        drop(spec);
        let mut stored = txn.open_table(EVENTS).map_err(table)?;
        let mut last = stored
            .range((key, 0)..=(key, u64::MAX))
            .map_err(err)?
            .next_back()
            .transpose()
            .map_err(err)?
            .map_or(0, |(k, _)| k.value().1);
        for (seq, end, json) in encoded {
            if *seq <= last {
                continue;
            }
            stored.insert((key, *seq), json.as_slice()).map_err(err)?;
            last = *seq;
            ended |= *end;
        }
        if ended {
            let mut unfinished = txn.open_table(UNFINISHED).map_err(table)?;
            // Only the first end event moves it to the finished queue.
            ended = unfinished.remove((partition, key)).map_err(err)?.is_some();
        }
    }
    if ended {
        mark_finished(txn, key, max_finished)?;
    }
    Ok(())
}

fn mark_finished(
    txn: &WriteTransaction,
    id: u128,
    max_finished: usize,
) -> Result<(), JournalError> {
    let err = |e: redb::StorageError| unavailable("journal finished index", e);
    let mut evicted = Vec::new();
    {
        let mut finished = txn
            .open_table(FINISHED)
            .map_err(|e| unavailable("journal table", e))?;
        let next = finished
            .last()
            .map_err(err)?
            .map_or(0, |(order, _)| order.value().saturating_add(1));
        finished.insert(next, id).map_err(err)?;
        let mut len = finished.len().map_err(err)?;
        while len > max_finished as u64 {
            let Some((_, old)) = finished.pop_first().map_err(err)? else {
                break;
            };
            evicted.push(old.value());
            len -= 1;
        }
    }
    for old in evicted {
        delete_workflow(txn, old)?;
    }
    Ok(())
}

#[async_trait]
impl WorkflowJournal for RedbJournal {
    async fn create(
        &self,
        id: WorkflowId,
        partition: u32,
        spec: &WorkflowSpec,
    ) -> Result<(), JournalError> {
        let record = encode_spec(id, partition, spec)?;
        self.run(move |db| {
            let err = |e: redb::StorageError| unavailable("journal create", e);
            let key = id.0.as_u128();
            let txn = db
                .begin_write()
                .map_err(|e| unavailable("journal write", e))?;
            {
                let mut specs = txn
                    .open_table(SPECS)
                    .map_err(|e| unavailable("journal table", e))?;
                // Creating twice keeps the first record, like MemoryJournal.
                if specs.get(key).map_err(err)?.is_some() {
                    return Ok(());
                }
                specs.insert(key, record.as_slice()).map_err(err)?;
                let mut unfinished = txn
                    .open_table(UNFINISHED)
                    .map_err(|e| unavailable("journal table", e))?;
                unfinished.insert((partition, key), ()).map_err(err)?;
            }
            txn.commit().map_err(|e| unavailable("journal commit", e))
        })
        .await
    }

    async fn append(
        &self,
        id: WorkflowId,
        partition: u32,
        events: &[WorkflowEvent],
    ) -> Result<(), JournalError> {
        let batch = [(id, partition, events.to_vec())];
        self.append_batch(&batch).await.pop().unwrap_or(Ok(()))
    }

    /// One write transaction (one fsync) for the whole batch. A workflow
    /// whose record is corrupt or missing gets its error and writes
    /// nothing; the others are committed.
    async fn append_batch(
        &self,
        batch: &[(WorkflowId, u32, Vec<WorkflowEvent>)],
    ) -> Vec<Result<(), JournalError>> {
        let mut results: Vec<Result<(), JournalError>> = Vec::with_capacity(batch.len());
        let mut work = Vec::with_capacity(batch.len());
        for (index, (id, _, events)) in batch.iter().enumerate() {
            match encode_events(*id, events) {
                Ok(encoded) if encoded.is_empty() => results.push(Ok(())),
                Ok(encoded) => {
                    results.push(Ok(()));
                    work.push((index, *id, encoded));
                }
                Err(error) => results.push(Err(error)),
            }
        }
        if work.is_empty() {
            return results;
        }
        let max_finished = self.max_finished;
        let outcome = self
            .run(move |db| {
                let txn = db
                    .begin_write()
                    .map_err(|e| unavailable("journal write", e))?;
                let mut refused = Vec::new();
                for (index, id, encoded) in &work {
                    match append_in(&txn, *id, encoded, max_finished) {
                        Ok(()) => {}
                        Err(error @ JournalError::Corrupt { .. }) => refused.push((*index, error)),
                        Err(error) => return Err(error),
                    }
                }
                txn.commit().map_err(|e| unavailable("journal commit", e))?;
                Ok(refused)
            })
            .await;
        match outcome {
            Ok(refused) => {
                for (index, error) in refused {
                    results[index] = Err(error);
                }
            }
            Err(error) => {
                for (index, _) in batch.iter().enumerate() {
                    if results[index].is_ok() {
                        results[index] = Err(error.clone());
                    }
                }
            }
        }
        results
    }

    async fn load(&self, id: WorkflowId) -> Result<Option<WorkflowRecord>, JournalError> {
        self.run(move |db| {
            let err = |e: redb::StorageError| unavailable("journal read", e);
            let table = |e: redb::TableError| unavailable("journal table", e);
            let key = id.0.as_u128();
            let txn = db
                .begin_read()
                .map_err(|e| unavailable("journal read", e))?;
            let specs = txn.open_table(SPECS).map_err(table)?;
            let Some(spec) = specs.get(key).map_err(err)? else {
                return Ok(None);
            };
            let (partition, json) = split_spec(id, spec.value())?;
            let spec: WorkflowSpec = serde_json::from_slice(json)
                .map_err(|e| corrupt(id, format!("spec does not decode: {e}")))?;
            let stored = txn.open_table(EVENTS).map_err(table)?;
            let mut events = Vec::new();
            for entry in stored.range((key, 0)..=(key, u64::MAX)).map_err(err)? {
                let (k, v) = entry.map_err(err)?;
                events.push(decode_event(id, k.value().1, v.value())?);
            }
            Ok(Some(WorkflowRecord {
                partition,
                spec,
                events,
            }))
        })
        .await
    }

    async fn unfinished(&self, partitions: &[u32]) -> Result<Vec<WorkflowId>, JournalError> {
        let partitions: BTreeSet<u32> = partitions.iter().copied().collect();
        self.run(move |db| {
            let err = |e: redb::StorageError| unavailable("journal read", e);
            let txn = db
                .begin_read()
                .map_err(|e| unavailable("journal read", e))?;
            let unfinished = txn
                .open_table(UNFINISHED)
                .map_err(|e| unavailable("journal table", e))?;
            let mut ids = Vec::new();
            for partition in partitions {
                for entry in unfinished
                    .range((partition, 0)..=(partition, u128::MAX))
                    .map_err(err)?
                {
                    let (k, _) = entry.map_err(err)?;
                    ids.push(WorkflowId(uuid::Uuid::from_u128(k.value().1)));
                }
            }
            Ok(ids)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workflow::event::EventKind;

    fn event(seq: u64, kind: EventKind) -> WorkflowEvent {
        WorkflowEvent {
            seq,
            at: seq,
            key: None,
            kind,
            error: None,
        }
    }

    /// Overwrites raw records, the way a damaged file would hold them.
    fn poke(path: &Path, spec: (u128, &[u8]), events: &[((u128, u64), &[u8])]) {
        let db = Database::create(path).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(SPECS)
            .unwrap()
            .insert(spec.0, spec.1)
            .unwrap();
        let mut table = txn.open_table(EVENTS).unwrap();
        for (key, bytes) in events {
            table.insert(*key, *bytes).unwrap();
        }
        drop(table);
        txn.commit().unwrap();
    }

    #[tokio::test]
    async fn corrupt_records_are_reported_not_panicked_on() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("workflows.redb");
        let (spec_broken, event_broken, seq_broken) = (
            WorkflowId::new_random(),
            WorkflowId::new_random(),
            WorkflowId::new_random(),
        );
        let journal = RedbJournal::open(&path, 10).unwrap();
        for id in [spec_broken, event_broken, seq_broken] {
            journal
                .create(id, 0, &WorkflowSpec::default())
                .await
                .unwrap();
            journal
                .append(id, 0, &[event(1, EventKind::Created)])
                .await
                .unwrap();
        }
        journal.close();
        let moved = serde_json::to_vec(&event(7, EventKind::Created)).unwrap();
        poke(
            &path,
            (spec_broken.0.as_u128(), &[SPEC_FORMAT_V1, 0]),
            &[
                ((event_broken.0.as_u128(), 1), b"{not json"),
                ((seq_broken.0.as_u128(), 1), &moved),
            ],
        );

        let journal = RedbJournal::open(&path, 10).unwrap();
        for id in [spec_broken, event_broken, seq_broken] {
            match journal.load(id).await {
                Err(JournalError::Corrupt { id: named, reason }) => {
                    assert_eq!(named, id, "{reason}");
                }
                other => panic!("expected Corrupt for {id}, got {other:?}"),
            }
        }
        assert!(matches!(
            journal
                .append(spec_broken, 0, &[event(2, EventKind::Completed)])
                .await,
            Err(JournalError::Corrupt { .. })
        ));
        assert!(matches!(
            journal
                .append(WorkflowId::new_random(), 0, &[event(1, EventKind::Created)])
                .await,
            Err(JournalError::Corrupt { .. })
        ));
    }

    #[tokio::test]
    async fn a_closed_journal_is_unavailable() {
        let dir = tempfile::tempdir().unwrap();
        let journal = RedbJournal::open(dir.path().join("w.redb"), 10).unwrap();
        journal.close();
        assert!(matches!(
            journal.unfinished(&[0]).await,
            Err(JournalError::Unavailable(_))
        ));
    }
}
