//! The DocumentProcessor's own SQLite storage behind
//! `portfolio_core::ingest::store::ProcessorStorage`: its pipeline state, the
//! staged chunks of the generation being built, and its alarm.
//!
//! Staged rows are invisible to queries; they reach D1 only in the commit.

use portfolio_core::ingest::pipeline::ProcessorState;
use portfolio_core::ingest::store::{ProcessorStorage, StagedChunk, StagedDocument};
use portfolio_core::shared::storage::StoreError;
use serde::Deserialize;
use worker::{SqlStorage, SqlStorageValue, Storage};

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

/// The object's storage.
pub struct DurableStorage {
    storage: Storage,
    sql: SqlStorage,
}

impl std::fmt::Debug for DurableStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DurableStorage")
    }
}

fn sql(operation: &'static str) -> impl Fn(worker::Error) -> StoreError {
    move |e| StoreError::transient(operation, e)
}

#[derive(Deserialize)]
struct MetaRow {
    value: String,
}

#[derive(Deserialize)]
struct ChunkRow {
    idx: u32,
    heading_path: String,
    content: String,
    embed_text: String,
    token_count: u32,
    start_byte: u64,
    end_byte: u64,
    start_line: u64,
    end_line: u64,
    tags: String,
}

impl DurableStorage {
    /// Opens the storage; `create_tables` runs the (idempotent) schema, which
    /// an object instance needs once, not on every request.
    ///
    /// # Errors
    /// When the schema cannot be created.
    pub fn open(storage: Storage, create_tables: bool) -> Result<Self, StoreError> {
        let sql_storage = storage.sql();
        if create_tables {
            for statement in SCHEMA.split(';').map(str::trim).filter(|s| !s.is_empty()) {
                sql_storage
                    .exec(statement, None)
                    .map_err(sql("processor schema"))?;
            }
        }
        Ok(Self {
            storage,
            sql: sql_storage,
        })
    }

    fn meta(&self, name: &str) -> Result<Option<String>, StoreError> {
        let rows: Vec<MetaRow> = self
            .sql
            .exec("SELECT value FROM meta WHERE name = ?", vec![name.into()])
            .and_then(|c| c.to_array())
            .map_err(sql("processor meta"))?;
        Ok(rows.into_iter().next().map(|r| r.value))
    }

    fn set_meta(&self, name: &str, value: &str) -> Result<(), StoreError> {
        self.sql
            .exec(
                "INSERT INTO meta (name, value) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET value = excluded.value",
                vec![name.into(), value.into()],
            )
            .map_err(sql("processor meta"))?;
        Ok(())
    }
}

impl ProcessorStorage for DurableStorage {
    async fn key(&self) -> Result<Option<String>, StoreError> {
        self.meta("key")
    }

    async fn set_key(&self, key: &str) -> Result<(), StoreError> {
        self.set_meta("key", key)
    }

    async fn load_state(&self) -> Result<ProcessorState, StoreError> {
        match self.meta("state")? {
            Some(json) => ProcessorState::from_json(&json)
                .map_err(|e| StoreError::permanent("processor state", e)),
            None => Ok(ProcessorState::new()),
        }
    }

    async fn save_state(&self, state: &ProcessorState) -> Result<(), StoreError> {
        let json = state
            .to_json()
            .map_err(|e| StoreError::permanent("processor state", e))?;
        self.set_meta("state", &json)
    }

    async fn stage(
        &self,
        generation: u64,
        document: &StagedDocument,
        chunks: &[StagedChunk],
    ) -> Result<(), StoreError> {
        self.discard(generation).await?;
        let g = generation as i64;
        for chunk in chunks {
            self.sql
                .exec(
                    "INSERT INTO staged_chunks (generation, idx, heading_path, content, embed_text, token_count, start_byte, end_byte, start_line, end_line) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    vec![
                        g.into(),
                        i64::from(chunk.idx).into(),
                        chunk.heading_path.as_str().into(),
                        chunk.content.as_str().into(),
                        chunk.embed_text.as_str().into(),
                        i64::from(chunk.token_count).into(),
                        (chunk.start_byte as i64).into(),
                        (chunk.end_byte as i64).into(),
                        (chunk.start_line as i64).into(),
                        (chunk.end_line as i64).into(),
                    ],
                )
                .map_err(sql("staging chunks"))?;
        }
        let info = serde_json::to_string(document)
            .map_err(|e| StoreError::permanent("staging chunks", e))?;
        self.sql
            .exec(
                "INSERT INTO staged_documents (generation, info) VALUES (?, ?)",
                vec![g.into(), info.into()],
            )
            .map_err(sql("staging chunks"))?;
        Ok(())
    }

    async fn staged_document(&self, generation: u64) -> Result<Option<StagedDocument>, StoreError> {
        let rows: Vec<MetaRow> = self
            .sql
            .exec(
                "SELECT info AS value FROM staged_documents WHERE generation = ?",
                vec![(generation as i64).into()],
            )
            .and_then(|c| c.to_array())
            .map_err(sql("reading staged document"))?;
        rows.into_iter()
            .next()
            .map(|r| {
                serde_json::from_str(&r.value)
                    .map_err(|e| StoreError::permanent("reading staged document", e))
            })
            .transpose()
    }

    async fn staged_chunks(
        &self,
        generation: u64,
        range: Option<std::ops::Range<u32>>,
    ) -> Result<Vec<StagedChunk>, StoreError> {
        // Chunk indexes are u32; the bound also stays a safe JS integer on its way to SQLite.
        let (start, end) = range.map_or((0, i64::from(u32::MAX)), |r| {
            (i64::from(r.start), i64::from(r.end))
        });
        let rows: Vec<ChunkRow> = self
            .sql
            .exec(
                "SELECT idx, heading_path, content, embed_text, token_count, start_byte, end_byte, start_line, end_line, tags FROM staged_chunks WHERE generation = ? AND idx >= ? AND idx < ? ORDER BY idx",
                vec![(generation as i64).into(), start.into(), end.into()],
            )
            .and_then(|c| c.to_array())
            .map_err(sql("reading staged chunks"))?;
        Ok(rows
            .into_iter()
            .map(|r| StagedChunk {
                idx: r.idx,
                heading_path: r.heading_path,
                content: r.content,
                embed_text: r.embed_text,
                token_count: r.token_count,
                start_byte: r.start_byte,
                end_byte: r.end_byte,
                start_line: r.start_line,
                end_line: r.end_line,
                tags: serde_json::from_str(&r.tags).unwrap_or_default(),
            })
            .collect())
    }

    async fn set_tags(
        &self,
        generation: u64,
        tags: &[(u32, Vec<String>)],
    ) -> Result<(), StoreError> {
        for (idx, chunk_tags) in tags {
            let json = serde_json::to_string(chunk_tags).unwrap_or_else(|_| "[]".to_owned());
            self.sql
                .exec(
                    "UPDATE staged_chunks SET tags = ? WHERE generation = ? AND idx = ?",
                    vec![
                        SqlStorageValue::from(json),
                        (generation as i64).into(),
                        i64::from(*idx).into(),
                    ],
                )
                .map_err(sql("staging tags"))?;
        }
        Ok(())
    }

    async fn discard(&self, generation: u64) -> Result<(), StoreError> {
        let g = generation as i64;
        for statement in [
            "DELETE FROM staged_chunks WHERE generation = ?",
            "DELETE FROM staged_documents WHERE generation = ?",
        ] {
            self.sql
                .exec(statement, vec![g.into()])
                .map_err(sql("discarding staged chunks"))?;
        }
        Ok(())
    }

    async fn set_alarm(&self, at_ms: u64) -> Result<(), StoreError> {
        let offset = at_ms.saturating_sub(worker::Date::now().as_millis()) as i64;
        self.storage
            .set_alarm(offset)
            .await
            .map_err(sql("setting the alarm"))
    }

    async fn alarm(&self) -> Result<Option<u64>, StoreError> {
        let at = self
            .storage
            .get_alarm()
            .await
            .map_err(sql("reading the alarm"))?;
        Ok(at.map(|ms| u64::try_from(ms).unwrap_or(0)))
    }
}
