//! The body of each pipeline step, over the storage traits: one bounded
//! piece of work reported as the event the state machine expects, or a
//! typed step error (retryable or not).
//!
//! Owns the step rules (size limit before reading, chunk cap, hash check of
//! a re-read, the etag of the bytes actually read, the idempotent and
//! forward-only commit). Never decides what runs next: the state machine does.

use super::ports::{Commit, IngestPorts, Processor, StepResult, Tagger};
use super::processor::Leased;
use super::store::{DocumentStore, ProcessorStorage, StagedChunk, StagedDocument};
use crate::admin::MAX_DOCUMENT_BYTES;
use crate::document::keys::{sha256_hex, vector_id, DocumentKey};
use crate::document::parse_document;
use crate::index::{VectorIndex, VectorIndexError, VectorMetadata, VectorRecord};
use crate::ingest::chunk::{chunk_document, split_heading_path};
use crate::ingest::pipeline::{PipelineStep, StepError};
use crate::ingest::tags::{extract_keyword_tags, parse_batch_tags, MAX_TAGS_PER_CHUNK};
use crate::providers::{ChatModel, ChatRequest, Embedder, ProviderError};
use crate::shared::storage::{Clock, ObjectHead, ObjectRead, ObjectStore, StoreError};
use std::cell::Cell;

/// Most chunks one document may produce: beyond it the document fails
/// permanently with a clear error instead of growing without bound (a
/// 10 MiB file of one-line sections would otherwise stage ~100,000 chunks).
pub const MAX_CHUNKS_PER_DOCUMENT: u32 = 20_000;

fn store(e: StoreError) -> StepError {
    StepError {
        message: e.to_string(),
        retryable: e.retryable,
        overloaded: false,
    }
}

/// Provider failures keep their own verdict on whether a later attempt may succeed.
fn provider(context: &str, e: &ProviderError) -> StepError {
    StepError {
        message: format!("{context}: {e}"),
        retryable: e.may_succeed_later(),
        overloaded: e.is_overload(),
    }
}

fn index(context: &str, e: &VectorIndexError) -> StepError {
    StepError {
        message: format!("{context}: {e}"),
        retryable: e.is_retryable(),
        overloaded: false,
    }
}

/// What a step that reads the object found.
enum Fetched {
    /// The run's version and its bytes.
    Bytes(ObjectHead, Vec<u8>),
    /// R2 holds another version now (or none).
    Moved(Option<ObjectHead>),
}

/// The ids of a generation's first `count` vectors.
#[must_use]
pub fn generation_vector_ids(document_id: i64, version: u64, count: u32) -> Vec<String> {
    (0..count)
        .map(|i| vector_id(document_id, version as i64, i))
        .collect()
}

impl<P: IngestPorts> Processor<P> {
    /// The bytes of the version `etag` names, refusing an oversized one
    /// before reading it. `Moved` when R2 now holds another version (or none):
    /// the run's version is gone, and R2 is the source of truth.
    async fn read_version(&self, key: &str, etag: &str) -> Result<Fetched, StepError> {
        match self
            .ports
            .objects()
            .get(key, MAX_DOCUMENT_BYTES as u64)
            .await
            .map_err(store)?
        {
            ObjectRead::Found { head, .. } | ObjectRead::TooLarge(head) if head.etag != etag => {
                Ok(Fetched::Moved(Some(head)))
            }
            ObjectRead::Found { head, bytes } => Ok(Fetched::Bytes(head, bytes)),
            ObjectRead::TooLarge(head) => Err(StepError::permanent(format!(
                "document is {} bytes; the limit is {MAX_DOCUMENT_BYTES}",
                head.size
            ))),
            ObjectRead::Missing => Ok(Fetched::Moved(None)),
        }
    }

    /// Download: fetch the run's version and hash it.
    pub(super) async fn download(
        &self,
        key: &str,
        etag: &str,
    ) -> Result<StepResult<(String, u64)>, StepError> {
        Ok(match self.read_version(key, etag).await? {
            Fetched::Bytes(_, bytes) => StepResult::Done((sha256_hex(&bytes), bytes.len() as u64)),
            Fetched::Moved(current) => StepResult::Moved(current),
        })
    }

    /// Chunk: parse and cut the document, stage the chunks; returns the chunk count.
    pub(super) async fn chunk(
        &self,
        key: &str,
        generation: u64,
        etag: &str,
        sha256: &str,
    ) -> Result<StepResult<u32>, StepError> {
        let (head, bytes) = match self.read_version(key, etag).await? {
            Fetched::Bytes(head, bytes) => (head, bytes),
            Fetched::Moved(current) => return Ok(StepResult::Moved(current)),
        };
        let actual = sha256_hex(&bytes);
        if actual != sha256 {
            return Err(StepError::permanent(format!(
                "object {etag} read back with sha256 {actual}, expected {sha256}"
            )));
        }
        let document_key = DocumentKey::parse(key)
            .map_err(|e| StepError::permanent(format!("invalid key {key}: {e}")))?;
        let parsed = parse_document(&document_key, &bytes)
            .map_err(|e| StepError::permanent(e.to_string()))?;
        let chunks = chunk_document(&parsed, &self.settings.chunking);
        let chunk_count = u32::try_from(chunks.len()).unwrap_or(u32::MAX);
        if chunk_count > MAX_CHUNKS_PER_DOCUMENT {
            return Err(StepError::permanent(format!(
                "document has {chunk_count} chunks; the limit is {MAX_CHUNKS_PER_DOCUMENT}"
            )));
        }
        let now = self.ports.clock().now_ms();
        let document_id = self
            .ports
            .documents()
            .ensure_document(key, now)
            .await
            .map_err(store)?;
        let company_id = match &parsed.company {
            Some(slug) => Some(
                self.ports
                    .documents()
                    .ensure_company(slug, now)
                    .await
                    .map_err(store)?,
            ),
            None => None,
        };
        let staged = StagedDocument {
            document_id,
            title: parsed.title.clone(),
            company_id,
            tags: parsed.tags.clone(),
            metadata: parsed.metadata.clone(),
            sha256: actual,
            // The version actually read, not the one an event announced.
            etag: head.etag,
            size: bytes.len() as u64,
            chunk_count,
        };
        let rows: Vec<StagedChunk> = chunks.iter().map(StagedChunk::of).collect();
        self.ports
            .storage()
            .stage(generation, &staged, &rows)
            .await
            .map_err(store)?;
        Ok(StepResult::Done(chunk_count))
    }

    async fn staged_document(&self, generation: u64) -> Result<StagedDocument, StepError> {
        self.ports
            .storage()
            .staged_document(generation)
            .await
            .map_err(store)?
            .ok_or_else(|| {
                StepError::permanent(format!("generation {generation} has no staged chunks"))
            })
    }

    /// The staged document and the staged chunks of one of its batches
    /// (`range` maps the chunk count to the batch's indexes).
    async fn staged_batch(
        &self,
        generation: u64,
        range: impl FnOnce(u32) -> std::ops::Range<u32>,
    ) -> Result<(StagedDocument, Vec<StagedChunk>), StepError> {
        let document = self.staged_document(generation).await?;
        let chunks = self
            .ports
            .storage()
            .staged_chunks(generation, Some(range(document.chunk_count)))
            .await
            .map_err(store)?;
        Ok((document, chunks))
    }

    /// Embed batch `index`: embed its chunks (the provider call under a gate lease) and
    /// write their vectors (invisible until commit).
    pub(super) async fn embed_batch(
        &self,
        key: &str,
        generation: u64,
        batch: u32,
        gate_wait_ms: &Cell<u64>,
    ) -> Result<Leased<()>, StepError> {
        let (document, chunks) = self
            .staged_batch(generation, |count| self.settings.embed_range(batch, count))
            .await?;
        if chunks.is_empty() {
            return Ok(Leased::Ran(()));
        }
        let embedder = self
            .ports
            .embedder()
            .map_err(|e| StepError::permanent(format!("embedding provider: {e}")))?;
        let texts: Vec<String> = chunks.iter().map(|c| c.embed_text.clone()).collect();
        let call = embedder.embed(&texts);
        let embeddings = match self
            .leased(
                key,
                generation,
                PipelineStep::Embed,
                batch,
                gate_wait_ms,
                call,
            )
            .await
        {
            Leased::Ran(result) => {
                result.map_err(|e| provider(&format!("embedding batch {batch}"), &e))?
            }
            Leased::Deferred { retry_at_ms } => return Ok(Leased::Deferred { retry_at_ms }),
        };
        if embeddings.len() != chunks.len() {
            return Err(StepError::retryable(format!(
                "embedding batch {batch}: {} vectors for {} chunks",
                embeddings.len(),
                chunks.len()
            )));
        }
        let records: Vec<VectorRecord> = chunks
            .iter()
            .zip(embeddings)
            .map(|(chunk, values)| VectorRecord {
                id: vector_id(document.document_id, generation as i64, chunk.idx),
                values,
                metadata: VectorMetadata {
                    document_id: document.document_id,
                    company_id: document.company_id,
                    version: generation,
                },
            })
            .collect();
        self.ports
            .index()
            .upsert(&records)
            .await
            .map(|_| Leased::Ran(()))
            .map_err(|e| index("vector index upsert", &e))
    }

    /// Tag batch `index`: tags from the LLM when one is configured (the call under a gate
    /// lease), else keyword tags.
    pub(super) async fn tag_batch(
        &self,
        key: &str,
        generation: u64,
        batch: u32,
        gate_wait_ms: &Cell<u64>,
    ) -> Result<Leased<()>, StepError> {
        let (_, chunks) = self
            .staged_batch(generation, |count| self.settings.tag_range(batch, count))
            .await?;
        if chunks.is_empty() {
            return Ok(Leased::Ran(()));
        }
        let keyword_tags = |c: &StagedChunk| {
            extract_keyword_tags(
                &split_heading_path(&c.heading_path),
                &c.content,
                MAX_TAGS_PER_CHUNK,
            )
        };
        let tags: Vec<Vec<String>> = match self.ports.tagger() {
            Tagger::Keywords => chunks.iter().map(keyword_tags).collect(),
            Tagger::Unavailable(why) => {
                return Err(StepError::permanent(format!("chat provider: {why}")))
            }
            Tagger::Model(chat) => {
                let texts: Vec<&str> = chunks.iter().map(|c| c.content.as_str()).collect();
                let request = ChatRequest::for_tags(&texts);
                let call = chat.complete(&request);
                let completion = match self
                    .leased(
                        key,
                        generation,
                        PipelineStep::Tag,
                        batch,
                        gate_wait_ms,
                        call,
                    )
                    .await
                {
                    Leased::Ran(result) => {
                        result.map_err(|e| provider(&format!("tagging batch {batch}"), &e))?
                    }
                    Leased::Deferred { retry_at_ms } => {
                        return Ok(Leased::Deferred { retry_at_ms })
                    }
                };
                match parse_batch_tags(&completion.text, chunks.len()) {
                    Ok(parsed) => parsed,
                    // An unusable answer is not worth a retry: fall back to keywords.
                    Err(_) => chunks.iter().map(keyword_tags).collect(),
                }
            }
        };
        let pairs: Vec<(u32, Vec<String>)> = chunks.iter().map(|c| c.idx).zip(tags).collect();
        self.ports
            .storage()
            .set_tags(generation, &pairs)
            .await
            .map(|()| Leased::Ran(()))
            .map_err(store)
    }

    /// Commit: check that the generation's vectors are visible, write its
    /// chunk rows, then flip the live version forward. Idempotent: a retry
    /// after a lost answer finds the generation live and succeeds without
    /// touching its rows.
    ///
    /// On an index that applies writes later (Vectorize), a generation whose
    /// vectors do not all show yet is not flipped live: "ready" means the
    /// document is found by vector search too, and the previous generation
    /// keeps serving meanwhile. The check reads before anything is written, so
    /// waiting leaves nothing half done.
    pub(super) async fn commit(&self, key: &str, version: u64) -> Result<Commit, StepError> {
        let live = self.ports.documents().live_row(key).await.map_err(store)?;
        match live.and_then(|row| row.active_version) {
            Some(active) if active == version => return Ok(Commit::Done),
            Some(active) if active > version => {
                return Err(StepError::permanent(format!(
                    "generation {active} is live, newer than {version}: not flipping back"
                )))
            }
            _ => {}
        }
        let document = self.staged_document(version).await?;
        if self.ports.index().writes_land_later() && document.chunk_count > 0 {
            let ids = generation_vector_ids(document.document_id, version, document.chunk_count);
            let present = self
                .ports
                .index()
                .count_present(&ids)
                .await
                .map_err(|e| index("vector index visibility check", &e))?;
            let visible = u32::try_from(present).unwrap_or(u32::MAX);
            if visible < document.chunk_count {
                return Ok(Commit::VectorsPending {
                    visible,
                    expected: document.chunk_count,
                });
            }
        }
        let chunks = self
            .ports
            .storage()
            .staged_chunks(version, None)
            .await
            .map_err(store)?;
        let now = self.ports.clock().now_ms();
        self.ports
            .documents()
            .write_generation_chunks(&document, version, &chunks, now)
            .await
            .map_err(store)?;
        match self
            .ports
            .documents()
            .activate_generation(&document, version, now)
            .await
            .map_err(store)?
        {
            Some(active) if active == version => Ok(Commit::Done),
            other => Err(StepError::permanent(format!(
                "generation {version} could not go live: the live generation is {other:?}"
            ))),
        }
    }

    /// Removes a generation that is no longer (or never was) live: its
    /// vectors, chunk rows and staged data. Keeps it if it is live after all
    /// (a commit whose answer was lost).
    pub(super) async fn drop_generation(&self, key: &str, version: u64) -> Result<(), StoreError> {
        let Some(row) = self.ports.documents().live_row(key).await? else {
            // No row: the chunk step (which creates it) never ran, so nothing
            // reached D1 or the index.
            return self.ports.storage().discard(version).await;
        };
        if row.active_version == Some(version) {
            return Ok(());
        }
        // Every id the generation may have written: its chunk rows, or what was staged.
        let committed = self
            .ports
            .documents()
            .generation_chunk_count(row.document_id, version)
            .await?;
        let staged = self
            .ports
            .storage()
            .staged_document(version)
            .await?
            .map_or(0, |d| d.chunk_count);
        let ids = generation_vector_ids(row.document_id, version, committed.max(staged));
        if !ids.is_empty() {
            self.ports
                .index()
                .delete_by_ids(&ids)
                .await
                .map_err(|e| StoreError {
                    operation: "vector index delete".into(),
                    message: e.to_string(),
                    retryable: e.is_retryable(),
                })?;
        }
        self.ports
            .documents()
            .delete_generation_chunks(row.document_id, version)
            .await?;
        self.ports.storage().discard(version).await
    }

    /// Delete: remove the document's chunks and vectors, leave a tombstone.
    pub(super) async fn delete_document(&self, key: &str) -> Result<(), StepError> {
        // Vectors first: once the chunk rows are gone their ids are unknown.
        let ids = self
            .ports
            .documents()
            .document_vector_ids(key)
            .await
            .map_err(store)?;
        if !ids.is_empty() {
            self.ports
                .index()
                .delete_by_ids(&ids)
                .await
                .map_err(|e| index("vector index delete", &e))?;
        }
        self.ports
            .documents()
            .delete_document(key, self.ports.clock().now_ms())
            .await
            .map_err(store)
    }
}
