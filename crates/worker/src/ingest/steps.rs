//! The I/O of each pipeline step, performed for the DocumentProcessor. Each
//! function does one bounded piece of work and reports it as the pipeline
//! event the state machine expects (or a typed step error).

use super::documents;
use super::staging::{StagedChunk, StagedDocument, Staging};
use super::vectors;
use crate::bindings;
use crate::providers::{ServiceChat, ServiceEmbedder};
use portfolio_core::admin::MAX_DOCUMENT_BYTES;
use portfolio_core::chunk::{chunk_document, split_heading_path};
use portfolio_core::document::parse_document;
use portfolio_core::ingestion::IngestSettings;
use portfolio_core::keys::{sha256_hex, vector_id, DocumentKey};
use portfolio_core::pipeline::{ObjectVersion, StepError};
use portfolio_core::providers::{ChatModel, ChatRequest, Embedder, ProviderError};
use portfolio_core::tags::{extract_keyword_tags, parse_batch_tags, MAX_TAGS_PER_CHUNK};
use portfolio_core::vector_index::{VectorIndexError, VectorMetadata, VectorRecord};
use worker::{D1Database, Env};

/// What every step needs.
pub struct StepContext<'a> {
    /// The Worker environment (bindings, vars, secrets).
    pub env: &'a Env,
    /// The processor's own storage.
    pub staging: &'a Staging,
    /// The R2 key of the document.
    pub key: &'a str,
    /// Batch sizes and chunking.
    pub settings: IngestSettings,
    /// Now, in ms since the epoch.
    pub now: f64,
}

impl std::fmt::Debug for StepContext<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StepContext")
            .field("key", &self.key)
            .finish()
    }
}

/// Provider failures keep their own verdict on whether a later attempt may succeed.
fn provider_error(context: &str, e: &ProviderError) -> StepError {
    StepError {
        message: format!("{context}: {e}"),
        retryable: e.may_succeed_later(),
    }
}

fn index_error(context: &str, e: &VectorIndexError) -> StepError {
    StepError {
        message: format!("{context}: {e}"),
        retryable: e.is_retryable(),
    }
}

/// Platform failures are worth retrying: D1, R2 and the index recover.
fn platform(context: &str) -> impl Fn(worker::Error) -> StepError + '_ {
    move |e| StepError::retryable(format!("{context}: {e}"))
}

impl StepContext<'_> {
    fn db(&self) -> Result<D1Database, StepError> {
        self.env.d1(bindings::DB).map_err(platform("D1 binding"))
    }

    async fn object_bytes(&self) -> Result<(Vec<u8>, String, u64), StepError> {
        let bucket = self
            .env
            .bucket(bindings::DOCUMENTS)
            .map_err(platform("R2 binding"))?;
        let object = bucket
            .get(self.key)
            .execute()
            .await
            .map_err(platform("R2 get"))?
            .ok_or_else(|| StepError::permanent(format!("object {} not found in R2", self.key)))?;
        let etag = object.etag();
        let size = object.size();
        let body = object
            .body()
            .ok_or_else(|| StepError::permanent(format!("object {} has no body", self.key)))?;
        let bytes = body.bytes().await.map_err(platform("R2 read"))?;
        Ok((bytes, etag, size))
    }

    /// Download: fetch the object and hash it.
    pub async fn download(&self) -> Result<(String, u64), StepError> {
        let (bytes, _, _) = self.object_bytes().await?;
        // The same ceiling as the admin upload: beyond it, it is not a document.
        if bytes.len() > MAX_DOCUMENT_BYTES {
            return Err(StepError::permanent(format!(
                "document is {} bytes; the limit is {MAX_DOCUMENT_BYTES}",
                bytes.len()
            )));
        }
        Ok((sha256_hex(&bytes), bytes.len() as u64))
    }

    /// Chunk: parse and cut the document, stage the chunks; returns the chunk count.
    pub async fn chunk(
        &self,
        generation: u64,
        object: &ObjectVersion,
        sha256: &str,
    ) -> Result<u32, StepError> {
        let (bytes, etag, size) = self.object_bytes().await?;
        let actual = sha256_hex(&bytes);
        if actual != sha256 {
            // The object changed after the download; its own event will start a newer run.
            return Err(StepError::permanent(format!(
                "object changed during processing (sha256 {actual}, expected {sha256})"
            )));
        }
        let key = DocumentKey::parse(self.key)
            .map_err(|e| StepError::permanent(format!("invalid key {}: {e}", self.key)))?;
        let parsed =
            parse_document(&key, &bytes).map_err(|e| StepError::permanent(e.to_string()))?;
        let chunks = chunk_document(&parsed, &self.settings.chunking);
        let db = self.db()?;
        let document_id = documents::ensure_document(&db, self.key, self.now)
            .await
            .map_err(platform("D1 document row"))?;
        let company_id = match &parsed.company {
            Some(slug) => Some(
                documents::ensure_company(&db, slug, self.now)
                    .await
                    .map_err(platform("D1 company row"))?,
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
            etag: if object.etag.is_empty() {
                etag
            } else {
                object.etag.clone()
            },
            size: if object.size == 0 { size } else { object.size },
            chunk_count: chunks.len() as u32,
        };
        self.staging
            .stage(generation, &staged, &chunks)
            .map_err(platform("staging chunks"))?;
        Ok(staged.chunk_count)
    }

    fn staged_document(&self, generation: u64) -> Result<StagedDocument, StepError> {
        self.staging
            .document(generation)
            .map_err(platform("reading staged document"))?
            .ok_or_else(|| {
                StepError::permanent(format!("generation {generation} has no staged chunks"))
            })
    }

    /// The staged document and the staged chunks of one batch of it.
    fn batch(
        &self,
        generation: u64,
        range: impl FnOnce(u32) -> std::ops::Range<u32>,
    ) -> Result<(StagedDocument, Vec<StagedChunk>), StepError> {
        let document = self.staged_document(generation)?;
        let chunks = self
            .staging
            .chunks(generation, Some(range(document.chunk_count)))
            .map_err(platform("reading staged chunks"))?;
        Ok((document, chunks))
    }

    /// Embed batch `index`: embed its chunks and write their vectors (invisible until commit).
    pub async fn embed_batch(&self, generation: u64, index: u32) -> Result<(), StepError> {
        let (document, chunks) =
            self.batch(generation, |count| self.settings.embed_range(index, count))?;
        if chunks.is_empty() {
            return Ok(());
        }
        let config = crate::config::ServiceConfig::from_env(self.env);
        let embedder = ServiceEmbedder::from_env(self.env, &config)
            .map_err(|e| StepError::permanent(format!("embedding provider: {e}")))?;
        let texts: Vec<String> = chunks.iter().map(|c| c.embed_text.clone()).collect();
        let embeddings = embedder
            .embed(&texts)
            .await
            .map_err(|e| provider_error(&format!("embedding batch {index}"), &e))?;
        if embeddings.len() != chunks.len() {
            return Err(StepError::retryable(format!(
                "embedding batch {index}: {} vectors for {} chunks",
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
                    tags: Vec::new(),
                },
            })
            .collect();
        vectors::upsert(self.env, &records)
            .await
            .map_err(|e| index_error("vector index upsert", &e))
    }

    /// Tag batch `index`: tags from the LLM when one is configured, else keyword tags.
    pub async fn tag_batch(&self, generation: u64, index: u32) -> Result<(), StepError> {
        let (_, chunks) = self.batch(generation, |count| self.settings.tag_range(index, count))?;
        if chunks.is_empty() {
            return Ok(());
        }
        let keyword_tags = |c: &StagedChunk| {
            extract_keyword_tags(
                &split_heading_path(&c.heading_path),
                &c.content,
                MAX_TAGS_PER_CHUNK,
            )
        };
        let config = crate::config::ServiceConfig::from_env(self.env);
        let chat = ServiceChat::from_env(self.env, &config)
            .map_err(|e| StepError::permanent(format!("chat provider: {e}")))?;
        let tags: Vec<Vec<String>> = if chat.is_offline() {
            chunks.iter().map(keyword_tags).collect()
        } else {
            let texts: Vec<&str> = chunks.iter().map(|c| c.content.as_str()).collect();
            let completion = chat
                .complete(&ChatRequest::for_tags(&texts))
                .await
                .map_err(|e| provider_error(&format!("tagging batch {index}"), &e))?;
            match parse_batch_tags(&completion.text, chunks.len()) {
                Ok(parsed) => parsed,
                // An unusable answer is not worth a retry: fall back to keywords.
                Err(_) => chunks.iter().map(keyword_tags).collect(),
            }
        };
        for (chunk, tags) in chunks.iter().zip(tags) {
            self.staging
                .set_tags(generation, chunk.idx, &tags)
                .map_err(platform("staging tags"))?;
        }
        Ok(())
    }

    /// Commit: write the generation's chunks to D1, then flip the live version.
    pub async fn commit(&self, version: u64) -> Result<(), StepError> {
        let document = self.staged_document(version)?;
        let chunks = self
            .staging
            .chunks(version, None)
            .map_err(platform("reading staged chunks"))?;
        let db = self.db()?;
        documents::write_generation_chunks(&db, &document, version, &chunks, self.now)
            .await
            .map_err(platform("D1 chunk rows"))?;
        documents::activate_generation(&db, &document, version, self.now)
            .await
            .map_err(platform("D1 activate generation"))?;
        // Staged rows are no longer needed once the generation is live.
        let _ = self.staging.discard(version);
        Ok(())
    }

    /// Removes a generation that is no longer (or never was) live.
    pub async fn drop_generation(&self, version: u64) -> worker::Result<()> {
        let db = self.env.d1(bindings::DB)?;
        let Some((document_id, live)) = documents::live_version(&db, self.key).await? else {
            // No row: the chunk step (which creates it) never ran, so nothing reached D1
            // or the index.
            return self.staging.discard(version);
        };
        if live == Some(version) {
            // A commit whose result was lost: the generation is live, keep it.
            return Ok(());
        }
        // Every id the generation may have written: its chunk rows, or what was staged.
        let committed = documents::generation_chunk_count(&db, document_id, version).await?;
        let staged = self.staging.document(version)?.map_or(0, |d| d.chunk_count);
        let ids = vectors::generation_ids(document_id, version, committed.max(staged));
        vectors::delete(self.env, &ids)
            .await
            .map_err(|e| worker::Error::RustError(e.to_string()))?;
        documents::delete_generation_chunks(&db, document_id, version).await?;
        self.staging.discard(version)
    }

    /// Delete: remove the document's chunks and vectors, leave a tombstone.
    pub async fn delete_document(&self) -> Result<(), StepError> {
        let db = self.db()?;
        // Vectors first: once the chunk rows are gone their ids are unknown.
        let ids = documents::document_vector_ids(&db, self.key)
            .await
            .map_err(platform("D1 read vector ids"))?;
        vectors::delete(self.env, &ids)
            .await
            .map_err(|e| index_error("vector index delete", &e))?;
        documents::delete_document(&db, self.key, self.now)
            .await
            .map_err(platform("D1 delete"))?;
        Ok(())
    }
}
