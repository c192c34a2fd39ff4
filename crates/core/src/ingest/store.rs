//! The storage ingestion needs, as traits: the D1 side (`DocumentStore`:
//! document rows, the two-phase commit, run history, dead letters) and the
//! processor's own storage (`ProcessorStorage`: its state, staged chunks and
//! its alarm). The Worker implements them over D1 and Durable Object storage.
//!
//! Contracts, not decisions: every method does one thing and is idempotent
//! where the driver may repeat it after a lost answer.

use crate::ingest::chunk::Chunk;
use crate::ingest::pipeline::{ProcessorState, RunRecord, StatusView};
use crate::shared::storage::StoreError;
use serde::{Deserialize, Serialize};
use std::ops::Range;

/// Document-level facts of a staged generation, written at the chunk step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StagedDocument {
    /// D1 id of the document row.
    pub document_id: i64,
    /// Title from front matter, first heading or file name.
    pub title: String,
    /// D1 id of the company, when one was resolved.
    pub company_id: Option<i64>,
    /// Front-matter tags.
    pub tags: Vec<String>,
    /// Free front-matter metadata.
    pub metadata: serde_json::Map<String, serde_json::Value>,
    /// Content hash of the bytes that were chunked.
    pub sha256: String,
    /// R2 etag of the bytes that were chunked.
    pub etag: String,
    /// Object size in bytes.
    pub size: u64,
    /// Number of chunks.
    pub chunk_count: u32,
}

/// One staged chunk as read back for a batch or the commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StagedChunk {
    /// Chunk index within the document.
    pub idx: u32,
    /// `A > B > C`.
    pub heading_path: String,
    /// Exact chunk text.
    pub content: String,
    /// Text given to the embedder (heading path + text).
    pub embed_text: String,
    /// Approximate tokens.
    pub token_count: u32,
    /// Byte range start in the source.
    pub start_byte: u64,
    /// Byte range end in the source.
    pub end_byte: u64,
    /// First line (1-based).
    pub start_line: u64,
    /// Last line (1-based).
    pub end_line: u64,
    /// Tags (empty until the tag step).
    pub tags: Vec<String>,
}

impl StagedChunk {
    /// The staged form of a freshly cut chunk.
    #[must_use]
    pub fn of(chunk: &Chunk) -> Self {
        Self {
            idx: chunk.index,
            heading_path: chunk.heading_path_display(),
            content: chunk.text.clone(),
            embed_text: chunk.embedding_text(),
            token_count: u32::try_from(chunk.tokens).unwrap_or(u32::MAX),
            start_byte: chunk.byte_range.start as u64,
            end_byte: chunk.byte_range.end as u64,
            start_line: chunk.start_line as u64,
            end_line: chunk.end_line as u64,
            tags: Vec::new(),
        }
    }
}

/// A document row's identity and the generation it serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LiveRow {
    /// D1 `documents.id`.
    pub document_id: i64,
    /// `documents.active_version`: the generation queries read, if any.
    pub active_version: Option<u64>,
}

/// What a dead-lettered message leaves behind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// Queue the letter was consumed from.
    pub queue: String,
    /// Id of the original message.
    pub message_id: String,
    /// The document the message was about, when it named one.
    pub document_key: Option<String>,
    /// The original message body (JSON).
    pub body: serde_json::Value,
    /// Why it was dead-lettered.
    pub error: String,
    /// Deliveries it had.
    pub attempts: u64,
}

/// The D1 side of ingestion.
#[allow(async_fn_in_trait)]
pub trait DocumentStore {
    /// The id of the document row for `key`, creating it (`queued`) if needed.
    async fn ensure_document(&self, key: &str, now_ms: u64) -> Result<i64, StoreError>;
    /// The id of the company `slug`, creating it if needed.
    async fn ensure_company(&self, slug: &str, now_ms: u64) -> Result<i64, StoreError>;
    /// Mirrors the processor's status onto the document row (creating it if needed).
    async fn mark_status(
        &self,
        key: &str,
        view: &StatusView,
        now_ms: u64,
    ) -> Result<(), StoreError>;
    /// The row's id and live generation, `None` when there is no row.
    async fn live_row(&self, key: &str) -> Result<Option<LiveRow>, StoreError>;
    /// Phase one of the commit: replaces the chunk rows of a generation that
    /// is **not** live (the store refuses to touch the live one).
    async fn write_generation_chunks(
        &self,
        document: &StagedDocument,
        version: u64,
        chunks: &[StagedChunk],
        now_ms: u64,
    ) -> Result<(), StoreError>;
    /// Phase two: makes `version` live and the row `ready` in one write, only
    /// forward (when no generation or an older one is live). Returns the live
    /// generation after the write, whoever wrote it.
    async fn activate_generation(
        &self,
        document: &StagedDocument,
        version: u64,
        now_ms: u64,
    ) -> Result<Option<u64>, StoreError>;
    /// Number of chunk rows of one generation.
    async fn generation_chunk_count(
        &self,
        document_id: i64,
        version: u64,
    ) -> Result<u32, StoreError>;
    /// Deletes the chunk rows of one generation unless it is live.
    async fn delete_generation_chunks(
        &self,
        document_id: i64,
        version: u64,
    ) -> Result<(), StoreError>;
    /// Vector ids of every chunk row of the document (any generation).
    async fn document_vector_ids(&self, key: &str) -> Result<Vec<String>, StoreError>;
    /// Removes every chunk of the document and leaves a `deleted` tombstone row.
    async fn delete_document(&self, key: &str, now_ms: u64) -> Result<(), StoreError>;
    /// Appends one finished run to the run history.
    async fn record_run(&self, key: &str, record: &RunRecord) -> Result<(), StoreError>;
    /// Records a dead letter and marks its document `failed`, only while the
    /// document has no outcome yet (`queued`, `processing`): a processor that
    /// has since reached `ready`, `failed` or `deleted` has the newer word.
    async fn record_dead_letter(&self, letter: &DeadLetter, now_ms: u64) -> Result<(), StoreError>;
}

/// The processor's own storage (one per document key): its state, the
/// staged chunks of the generation being built, its single alarm.
#[allow(async_fn_in_trait)]
pub trait ProcessorStorage {
    /// The R2 key this processor serves, once known.
    async fn key(&self) -> Result<Option<String>, StoreError>;
    /// Records the key (first command).
    async fn set_key(&self, key: &str) -> Result<(), StoreError>;
    /// The persisted pipeline state (a fresh one if none).
    async fn load_state(&self) -> Result<ProcessorState, StoreError>;
    /// Persists the pipeline state.
    async fn save_state(&self, state: &ProcessorState) -> Result<(), StoreError>;
    /// Replaces what is staged for `generation`.
    async fn stage(
        &self,
        generation: u64,
        document: &StagedDocument,
        chunks: &[StagedChunk],
    ) -> Result<(), StoreError>;
    /// The staged document facts of `generation`, if staged.
    async fn staged_document(&self, generation: u64) -> Result<Option<StagedDocument>, StoreError>;
    /// Staged chunks of `generation` with index in `range` (all when `None`), in order.
    async fn staged_chunks(
        &self,
        generation: u64,
        range: Option<Range<u32>>,
    ) -> Result<Vec<StagedChunk>, StoreError>;
    /// Records the tags of staged chunks of `generation` (`(idx, tags)` pairs).
    async fn set_tags(
        &self,
        generation: u64,
        tags: &[(u32, Vec<String>)],
    ) -> Result<(), StoreError>;
    /// Drops everything staged for `generation`.
    async fn discard(&self, generation: u64) -> Result<(), StoreError>;
    /// Sets the object's single alarm to `at_ms` (ms since the epoch).
    async fn set_alarm(&self, at_ms: u64) -> Result<(), StoreError>;
    /// When the object's alarm is set to fire (ms since the epoch), `None`
    /// when none is set (also while its handler runs, until it sets the next).
    async fn alarm(&self) -> Result<Option<u64>, StoreError>;
}
