//! The processor's own SQLite storage: its pipeline state and the staged
//! chunks of the generation being built (texts, ranges, tags).
//!
//! Staged rows are invisible to queries; they reach D1 only in the commit.

use portfolio_core::chunk::Chunk;
use portfolio_core::pipeline::ProcessorState;
use serde::{Deserialize, Serialize};
use worker::{SqlStorage, SqlStorageValue};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS staged_chunks (
  generation   INTEGER NOT NULL,
  idx          INTEGER NOT NULL,
  heading_path TEXT NOT NULL,
  content      TEXT NOT NULL,
  embed_text   TEXT NOT NULL,
  token_count  INTEGER NOT NULL,
  start_byte   INTEGER NOT NULL,
  end_byte     INTEGER NOT NULL,
  start_line   INTEGER NOT NULL,
  end_line     INTEGER NOT NULL,
  tags         TEXT NOT NULL DEFAULT '[]',
  PRIMARY KEY (generation, idx)
);
CREATE TABLE IF NOT EXISTS staged_documents (generation INTEGER PRIMARY KEY, info TEXT NOT NULL);
";

/// Document-level facts of a staged generation, written at the chunk step.
#[derive(Debug, Clone, Serialize, Deserialize)]
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
    /// Content hash.
    pub sha256: String,
    /// R2 etag of the object that was chunked.
    pub etag: String,
    /// Object size in bytes.
    pub size: u64,
    /// Number of chunks.
    pub chunk_count: u32,
}

/// One staged chunk as read back for a batch or the commit.
#[derive(Debug, Clone, Deserialize)]
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
    /// JSON array of tags.
    pub tags: String,
}

/// Access to the processor's SQLite storage.
pub struct Staging {
    sql: SqlStorage,
}

impl std::fmt::Debug for Staging {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Staging")
    }
}

#[derive(Deserialize)]
struct MetaRow {
    value: String,
}

impl Staging {
    /// Opens the storage; `create_tables` runs the (idempotent) schema, which an object
    /// instance needs once, not on every request.
    pub fn open(sql: SqlStorage, create_tables: bool) -> worker::Result<Self> {
        if create_tables {
            for statement in SCHEMA.split(';').map(str::trim).filter(|s| !s.is_empty()) {
                sql.exec(statement, None)?;
            }
        }
        Ok(Self { sql })
    }

    fn meta(&self, name: &str) -> worker::Result<Option<String>> {
        let rows: Vec<MetaRow> = self
            .sql
            .exec("SELECT value FROM meta WHERE name = ?", vec![name.into()])?
            .to_array()?;
        Ok(rows.into_iter().next().map(|r| r.value))
    }

    fn set_meta(&self, name: &str, value: &str) -> worker::Result<()> {
        self.sql.exec(
            "INSERT INTO meta (name, value) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET value = excluded.value",
            vec![name.into(), value.into()],
        )?;
        Ok(())
    }

    /// The R2 key this object serves, once known.
    pub fn key(&self) -> worker::Result<Option<String>> {
        self.meta("key")
    }

    /// Records the R2 key (first command).
    pub fn set_key(&self, key: &str) -> worker::Result<()> {
        self.set_meta("key", key)
    }

    /// The persisted pipeline state (a fresh one if none or unreadable).
    pub fn state(&self) -> worker::Result<ProcessorState> {
        Ok(match self.meta("state")? {
            Some(json) => ProcessorState::from_json(&json).map_err(|e| {
                worker::Error::RustError(format!("stored processor state unreadable: {e}"))
            })?,
            None => ProcessorState::new(),
        })
    }

    /// Persists the pipeline state.
    pub fn save_state(&self, state: &ProcessorState) -> worker::Result<()> {
        let json = state
            .to_json()
            .map_err(|e| worker::Error::RustError(format!("serialising state: {e}")))?;
        self.set_meta("state", &json)
    }

    /// Replaces the staged chunks and document facts of `generation`.
    pub fn stage(
        &self,
        generation: u64,
        document: &StagedDocument,
        chunks: &[Chunk],
    ) -> worker::Result<()> {
        self.discard(generation)?;
        let generation = generation as i64;
        for chunk in chunks {
            self.sql.exec(
                "INSERT INTO staged_chunks (generation, idx, heading_path, content, embed_text, token_count, start_byte, end_byte, start_line, end_line) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                vec![
                    generation.into(),
                    i64::from(chunk.index).into(),
                    chunk.heading_path_display().into(),
                    chunk.text.as_str().into(),
                    chunk.embedding_text().into(),
                    (chunk.tokens as i64).into(),
                    (chunk.byte_range.start as i64).into(),
                    (chunk.byte_range.end as i64).into(),
                    (chunk.start_line as i64).into(),
                    (chunk.end_line as i64).into(),
                ],
            )?;
        }
        let info = serde_json::to_string(document)
            .map_err(|e| worker::Error::RustError(format!("serialising staged document: {e}")))?;
        self.sql.exec(
            "INSERT INTO staged_documents (generation, info) VALUES (?, ?)",
            vec![generation.into(), info.into()],
        )?;
        Ok(())
    }

    /// The staged document facts of `generation`, if staged.
    pub fn document(&self, generation: u64) -> worker::Result<Option<StagedDocument>> {
        let rows: Vec<MetaRow> = self
            .sql
            .exec(
                "SELECT info AS value FROM staged_documents WHERE generation = ?",
                vec![(generation as i64).into()],
            )?
            .to_array()?;
        rows.into_iter()
            .next()
            .map(|r| {
                serde_json::from_str(&r.value).map_err(|e| {
                    worker::Error::RustError(format!("staged document unreadable: {e}"))
                })
            })
            .transpose()
    }

    /// Staged chunks of `generation` with index in `range` (all when `None`), in order.
    pub fn chunks(
        &self,
        generation: u64,
        range: Option<std::ops::Range<u32>>,
    ) -> worker::Result<Vec<StagedChunk>> {
        // Chunk indexes are u32; the bound also stays a safe JS integer on its way to SQLite.
        let (start, end) = range.map_or((0, i64::from(u32::MAX)), |r| {
            (i64::from(r.start), i64::from(r.end))
        });
        self.sql
            .exec(
                "SELECT idx, heading_path, content, embed_text, token_count, start_byte, end_byte, start_line, end_line, tags FROM staged_chunks WHERE generation = ? AND idx >= ? AND idx < ? ORDER BY idx",
                vec![(generation as i64).into(), start.into(), end.into()],
            )?
            .to_array()
    }

    /// Records the tags of one staged chunk.
    pub fn set_tags(&self, generation: u64, idx: u32, tags: &[String]) -> worker::Result<()> {
        let json = serde_json::to_string(tags).unwrap_or_else(|_| "[]".to_owned());
        self.sql.exec(
            "UPDATE staged_chunks SET tags = ? WHERE generation = ? AND idx = ?",
            vec![
                SqlStorageValue::from(json),
                (generation as i64).into(),
                i64::from(idx).into(),
            ],
        )?;
        Ok(())
    }

    /// Drops everything staged for `generation`.
    pub fn discard(&self, generation: u64) -> worker::Result<()> {
        let g = generation as i64;
        self.sql.exec(
            "DELETE FROM staged_chunks WHERE generation = ?",
            vec![g.into()],
        )?;
        self.sql.exec(
            "DELETE FROM staged_documents WHERE generation = ?",
            vec![g.into()],
        )?;
        Ok(())
    }
}
