//! In-memory stand-ins for the storage traits, with injectable faults: a call
//! can fail before doing anything, or do its work and lose its answer (the
//! case that breaks naive retries). The D1 fake keeps the same conditional
//! rules the SQL adapter has (forward-only flip, live rows never rewritten,
//! dead letters only on queued documents).

use super::consumer::{ProcessorGateway, ReconcilePages};
use super::store::{
    DeadLetter, DocumentStore, LiveRow, ProcessorStorage, StagedChunk, StagedDocument,
};
use crate::document::keys::vector_id;
use crate::ingest::message::{IngestCommand, ReconcileContinuation};
use crate::ingest::pipeline::{ProcessorState, RunRecord, StatusView};
use crate::shared::storage::{Clock, EventLog, IngestQueue, Level, StoreError};
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::ops::Range;

mod platform;
mod ports;

pub use platform::{FakeBucket, FakeIndex};
pub use ports::{FakeIngestPorts, NoGate};

/// How an injected fault plays out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The call fails and changes nothing.
    Fail,
    /// The call does its work, then its answer is lost.
    LoseAnswer,
    /// The invocation dies during the call: a panic, standing for a wasm
    /// trap or a stack overflow, after which no Rust code of that
    /// invocation runs again (the test catches it where the platform would).
    Crash,
}

/// Faults waiting for the next call of an operation, shared by every fake.
#[derive(Debug, Default)]
pub struct Faults {
    pending: RefCell<Vec<(&'static str, Fault)>>,
    /// `(after, then, fault)`: once `after` succeeds, plan `fault` for `then`.
    chained: RefCell<Vec<(&'static str, &'static str, Fault)>>,
}

impl Faults {
    pub fn inject(&self, operation: &'static str, fault: Fault) {
        self.pending.borrow_mut().push((operation, fault));
    }

    /// Plans `fault` for the first `then` call after `after` succeeded: a
    /// crash right after a given write.
    pub fn inject_after(&self, after: &'static str, then: &'static str, fault: Fault) {
        self.chained.borrow_mut().push((after, then, fault));
    }

    fn succeeded(&self, operation: &'static str) {
        let mut chained = self.chained.borrow_mut();
        if let Some(at) = chained.iter().position(|(after, _, _)| *after == operation) {
            let (_, then, fault) = chained.remove(at);
            self.pending.borrow_mut().push((then, fault));
        }
    }

    fn take(&self, operation: &'static str) -> Option<Fault> {
        let mut pending = self.pending.borrow_mut();
        let at = pending.iter().position(|(op, _)| *op == operation)?;
        Some(pending.remove(at).1)
    }

    /// Runs `work` under the fault planned for `operation`, if any.
    fn run<T>(&self, operation: &'static str, work: impl FnOnce() -> T) -> Result<T, StoreError> {
        match self.take(operation) {
            Some(Fault::Fail) => Err(StoreError::transient(operation, "injected failure")),
            Some(Fault::LoseAnswer) => {
                let _ = work();
                Err(StoreError::transient(operation, "injected lost answer"))
            }
            Some(Fault::Crash) => panic!("injected crash during {operation}"),
            None => {
                let out = work();
                self.succeeded(operation);
                Ok(out)
            }
        }
    }
}

#[derive(Debug, Default)]
pub struct ManualClock {
    pub now: Cell<u64>,
}

impl ManualClock {
    pub fn at(ms: u64) -> Self {
        Self { now: Cell::new(ms) }
    }

    pub fn advance(&self, ms: u64) {
        self.now.set(self.now.get() + ms);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.now.get()
    }
}

#[derive(Debug, Default)]
pub struct Lines {
    pub lines: RefCell<Vec<(Level, serde_json::Value)>>,
}

impl Lines {
    pub fn events(&self, name: &str) -> usize {
        self.lines
            .borrow()
            .iter()
            .filter(|(_, v)| v["event"] == name)
            .count()
    }
}

impl EventLog for Lines {
    fn log(&self, level: Level, fields: serde_json::Value) {
        self.lines.borrow_mut().push((level, fields));
    }
}

// ---- D1 ------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
pub struct DocRow {
    pub id: i64,
    pub status: String,
    pub active_version: Option<u64>,
    pub sha256: Option<String>,
    pub etag: Option<String>,
    pub chunk_count: u32,
    pub last_error: Option<String>,
    pub company_id: Option<i64>,
}

#[derive(Debug, Default)]
pub struct FakeDatabase<'f> {
    pub documents: RefCell<BTreeMap<String, DocRow>>,
    /// `(document_id, version, chunk_index)` → row.
    pub chunks: RefCell<BTreeMap<(i64, u64, u32), StagedChunk>>,
    pub companies: RefCell<BTreeMap<String, i64>>,
    pub runs: RefCell<Vec<(String, RunRecord)>>,
    pub dead_letters: RefCell<Vec<DeadLetter>>,
    /// How often the live generation's rows were written (must stay 0).
    pub live_rewrites: Cell<u32>,
    next_id: Cell<i64>,
    pub faults: Option<&'f Faults>,
}

impl<'f> FakeDatabase<'f> {
    pub fn with_faults(faults: &'f Faults) -> Self {
        Self {
            faults: Some(faults),
            ..Self::default()
        }
    }

    fn guard<T>(&self, operation: &'static str, work: impl FnOnce() -> T) -> Result<T, StoreError> {
        match self.faults {
            Some(faults) => faults.run(operation, work),
            None => Ok(work()),
        }
    }

    fn new_row(&self) -> DocRow {
        let id = self.next_id.get() + 1;
        self.next_id.set(id);
        DocRow {
            id,
            status: "queued".into(),
            active_version: None,
            sha256: None,
            etag: None,
            chunk_count: 0,
            last_error: None,
            company_id: None,
        }
    }

    pub fn row(&self, key: &str) -> Option<DocRow> {
        self.documents.borrow().get(key).cloned()
    }

    /// Chunk rows of one document, grouped by version.
    pub fn versions(&self, document_id: i64) -> BTreeMap<u64, u32> {
        let mut out = BTreeMap::new();
        for (id, version, _) in self.chunks.borrow().keys() {
            if *id == document_id {
                *out.entry(*version).or_insert(0) += 1;
            }
        }
        out
    }
}

impl DocumentStore for FakeDatabase<'_> {
    async fn ensure_document(&self, key: &str, _now_ms: u64) -> Result<i64, StoreError> {
        self.guard("D1 document row", || {
            let mut documents = self.documents.borrow_mut();
            if let Some(row) = documents.get(key) {
                return row.id;
            }
            let row = self.new_row();
            let id = row.id;
            documents.insert(key.to_owned(), row);
            id
        })
    }

    async fn ensure_company(&self, slug: &str, _now_ms: u64) -> Result<i64, StoreError> {
        self.guard("D1 company row", || {
            let mut companies = self.companies.borrow_mut();
            let next = companies.len() as i64 + 1;
            *companies.entry(slug.to_owned()).or_insert(next)
        })
    }

    async fn mark_status(
        &self,
        key: &str,
        view: &StatusView,
        _now_ms: u64,
    ) -> Result<(), StoreError> {
        self.guard("D1 status", || {
            let mut documents = self.documents.borrow_mut();
            let row = documents
                .entry(key.to_owned())
                .or_insert_with(|| self.new_row());
            row.status = view.status.as_str().to_owned();
            row.last_error = view.last_error.as_ref().map(|e| e.message.clone());
        })
    }

    async fn live_row(&self, key: &str) -> Result<Option<LiveRow>, StoreError> {
        self.guard("D1 live version", || {
            self.documents.borrow().get(key).map(|r| LiveRow {
                document_id: r.id,
                active_version: r.active_version,
            })
        })
    }

    async fn write_generation_chunks(
        &self,
        document: &StagedDocument,
        version: u64,
        chunks: &[StagedChunk],
        _now_ms: u64,
    ) -> Result<(), StoreError> {
        self.guard("D1 chunk rows", || {
            let live = self
                .documents
                .borrow()
                .values()
                .find(|r| r.id == document.document_id)
                .and_then(|r| r.active_version);
            if live == Some(version) {
                // The SQL adapter's statements are conditional on this too.
                self.live_rewrites.set(self.live_rewrites.get() + 1);
                return;
            }
            let mut rows = self.chunks.borrow_mut();
            rows.retain(|(id, v, _), _| !(*id == document.document_id && *v == version));
            for chunk in chunks {
                rows.insert((document.document_id, version, chunk.idx), chunk.clone());
            }
        })
    }

    async fn activate_generation(
        &self,
        document: &StagedDocument,
        version: u64,
        _now_ms: u64,
    ) -> Result<Option<u64>, StoreError> {
        self.guard("D1 activate generation", || {
            let mut documents = self.documents.borrow_mut();
            let row = documents
                .values_mut()
                .find(|r| r.id == document.document_id)?;
            if row.active_version.is_none_or(|v| v < version) {
                row.active_version = Some(version);
                row.status = "ready".into();
                row.sha256 = Some(document.sha256.clone());
                row.etag = Some(document.etag.clone());
                row.chunk_count = document.chunk_count;
                row.last_error = None;
                row.company_id = document.company_id;
            }
            row.active_version
        })
    }

    async fn generation_chunk_count(
        &self,
        document_id: i64,
        version: u64,
    ) -> Result<u32, StoreError> {
        self.guard("D1 chunk count", || {
            self.versions(document_id)
                .get(&version)
                .copied()
                .unwrap_or(0)
        })
    }

    async fn delete_generation_chunks(
        &self,
        document_id: i64,
        version: u64,
    ) -> Result<(), StoreError> {
        self.guard("D1 drop generation", || {
            let live = self
                .documents
                .borrow()
                .values()
                .find(|r| r.id == document_id)
                .and_then(|r| r.active_version);
            if live != Some(version) {
                self.chunks
                    .borrow_mut()
                    .retain(|(id, v, _), _| !(*id == document_id && *v == version));
            }
        })
    }

    async fn document_vector_ids(&self, key: &str) -> Result<Vec<String>, StoreError> {
        self.guard("D1 read vector ids", || {
            let Some(id) = self.documents.borrow().get(key).map(|r| r.id) else {
                return Vec::new();
            };
            self.chunks
                .borrow()
                .keys()
                .filter(|(d, _, _)| *d == id)
                .map(|(d, v, i)| vector_id(*d, *v as i64, *i))
                .collect()
        })
    }

    async fn delete_document(&self, key: &str, _now_ms: u64) -> Result<(), StoreError> {
        self.guard("D1 delete", || {
            let mut documents = self.documents.borrow_mut();
            if let Some(row) = documents.get_mut(key) {
                let id = row.id;
                self.chunks.borrow_mut().retain(|(d, _, _), _| *d != id);
                row.status = "deleted".into();
                row.active_version = None;
                row.chunk_count = 0;
                row.last_error = None;
            }
        })
    }

    async fn record_run(&self, key: &str, record: &RunRecord) -> Result<(), StoreError> {
        self.guard("D1 run record", || {
            self.runs
                .borrow_mut()
                .push((key.to_owned(), record.clone()));
        })
    }

    async fn record_dead_letter(
        &self,
        letter: &DeadLetter,
        _now_ms: u64,
    ) -> Result<(), StoreError> {
        self.guard("D1 dead letter", || {
            self.dead_letters.borrow_mut().push(letter.clone());
            if let Some(key) = &letter.document_key {
                if let Some(row) = self.documents.borrow_mut().get_mut(key) {
                    if row.status == "queued" || row.status == "processing" {
                        row.status = "failed".into();
                        row.last_error = Some(format!("dead-lettered: {}", letter.error));
                    }
                }
            }
        })
    }
}

// ---- the processor's own storage -----------------------------------------

#[derive(Debug, Default)]
pub struct FakeProcessorStorage<'f> {
    pub key: RefCell<Option<String>>,
    pub state: RefCell<Option<ProcessorState>>,
    pub staged: RefCell<BTreeMap<u64, (StagedDocument, Vec<StagedChunk>)>>,
    pub alarm: Cell<Option<u64>>,
    pub faults: Option<&'f Faults>,
}

impl FakeProcessorStorage<'_> {
    fn guard<T>(&self, operation: &'static str, work: impl FnOnce() -> T) -> Result<T, StoreError> {
        match self.faults {
            Some(faults) => faults.run(operation, work),
            None => Ok(work()),
        }
    }
}

impl ProcessorStorage for FakeProcessorStorage<'_> {
    async fn key(&self) -> Result<Option<String>, StoreError> {
        Ok(self.key.borrow().clone())
    }

    async fn set_key(&self, key: &str) -> Result<(), StoreError> {
        *self.key.borrow_mut() = Some(key.to_owned());
        Ok(())
    }

    async fn load_state(&self) -> Result<ProcessorState, StoreError> {
        Ok(self.state.borrow().clone().unwrap_or_default())
    }

    async fn save_state(&self, state: &ProcessorState) -> Result<(), StoreError> {
        // A crash before the save is a "Fail": the new state never lands.
        self.guard("save state", || {
            *self.state.borrow_mut() = Some(state.clone());
        })
    }

    async fn stage(
        &self,
        generation: u64,
        document: &StagedDocument,
        chunks: &[StagedChunk],
    ) -> Result<(), StoreError> {
        self.guard("staging chunks", || {
            self.staged
                .borrow_mut()
                .insert(generation, (document.clone(), chunks.to_vec()));
        })
    }

    async fn staged_document(&self, generation: u64) -> Result<Option<StagedDocument>, StoreError> {
        Ok(self
            .staged
            .borrow()
            .get(&generation)
            .map(|(d, _)| d.clone()))
    }

    async fn staged_chunks(
        &self,
        generation: u64,
        range: Option<Range<u32>>,
    ) -> Result<Vec<StagedChunk>, StoreError> {
        Ok(self
            .staged
            .borrow()
            .get(&generation)
            .map(|(_, chunks)| {
                chunks
                    .iter()
                    .filter(|c| range.as_ref().is_none_or(|r| r.contains(&c.idx)))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn set_tags(
        &self,
        generation: u64,
        tags: &[(u32, Vec<String>)],
    ) -> Result<(), StoreError> {
        if let Some((_, chunks)) = self.staged.borrow_mut().get_mut(&generation) {
            for (idx, chunk_tags) in tags {
                if let Some(chunk) = chunks.iter_mut().find(|c| c.idx == *idx) {
                    chunk.tags = chunk_tags.clone();
                }
            }
        }
        Ok(())
    }

    async fn discard(&self, generation: u64) -> Result<(), StoreError> {
        self.staged.borrow_mut().remove(&generation);
        Ok(())
    }

    async fn set_alarm(&self, at_ms: u64) -> Result<(), StoreError> {
        self.alarm.set(Some(at_ms));
        Ok(())
    }

    async fn alarm(&self) -> Result<Option<u64>, StoreError> {
        Ok(self.alarm.get())
    }
}

// ---- queues ----------------------------------------------------------------

/// A queue: messages in order, each with its delivery count.
#[derive(Debug, Default)]
pub struct FakeQueue {
    pub messages: RefCell<VecDeque<(serde_json::Value, u32)>>,
}

impl FakeQueue {
    pub fn push(&self, message: serde_json::Value) {
        self.messages.borrow_mut().push_back((message, 0));
    }
}

impl IngestQueue for FakeQueue {
    async fn send_batch(&self, messages: &[serde_json::Value]) -> Result<(), StoreError> {
        for message in messages {
            self.push(message.clone());
        }
        Ok(())
    }
}

/// A reconciler that is never asked (these tests send no continuations).
#[derive(Debug, Default)]
pub struct NoReconciler;

impl ReconcilePages for NoReconciler {
    async fn continue_run(
        &self,
        _continuation: &ReconcileContinuation,
        _attempts: u32,
    ) -> Result<(), StoreError> {
        Err(StoreError::permanent("reconcile", "not in this test"))
    }

    async fn dead_lettered(
        &self,
        _continuation: &ReconcileContinuation,
        _error: &str,
    ) -> Result<(), StoreError> {
        Ok(())
    }
}

/// Commands handed off, recorded (for consumer tests without processors).
#[derive(Debug, Default)]
pub struct RecordingGateway {
    pub handed: RefCell<Vec<IngestCommand>>,
    pub fail: Cell<bool>,
}

impl ProcessorGateway for RecordingGateway {
    async fn hand_off(&self, command: &IngestCommand) -> Result<(), StoreError> {
        if self.fail.get() {
            return Err(StoreError::transient("processor hand-off", "unreachable"));
        }
        self.handed.borrow_mut().push(command.clone());
        Ok(())
    }
}

/// Storages of every processor, one per key.
#[derive(Debug, Default)]
pub struct ProcessorStorages<'f> {
    pub by_key: RefCell<HashMap<String, std::rc::Rc<FakeProcessorStorage<'f>>>>,
    pub faults: Option<&'f Faults>,
}

impl<'f> ProcessorStorages<'f> {
    pub fn of(&self, key: &str) -> std::rc::Rc<FakeProcessorStorage<'f>> {
        self.by_key
            .borrow_mut()
            .entry(key.to_owned())
            .or_insert_with(|| {
                std::rc::Rc::new(FakeProcessorStorage {
                    faults: self.faults,
                    ..FakeProcessorStorage::default()
                })
            })
            .clone()
    }
}
