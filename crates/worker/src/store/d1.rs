//! The D1 side of ingestion behind `portfolio_core::ingest::store::DocumentStore`:
//! document rows, companies, the two-phase commit of a generation's chunk
//! rows, deletions, run history and dead letters.
//!
//! Ordering matters for the commit: a generation's chunk rows are written
//! first (invisible: queries read only `documents.active_version`), then one
//! conditional update flips `active_version` forward. Neither statement ever
//! touches the live generation's rows.

use portfolio_core::document::keys::vector_id;
use portfolio_core::ingest::pipeline::{RunRecord, StatusView};
use portfolio_core::ingest::settings::rows_per_statement;
use portfolio_core::ingest::store::{
    DeadLetter, DocumentStore, LiveRow, StagedChunk, StagedDocument,
};
use portfolio_core::shared::storage::StoreError;
use serde::Deserialize;
use wasm_bindgen::JsValue;
use worker::{D1Database, D1PreparedStatement, Env};

/// Statements per D1 batch when writing chunk rows: keeps each batch's
/// payload (and its time inside D1's 30 s limit) small.
const STATEMENTS_PER_BATCH: usize = 25;

/// Columns of one chunk row insert.
const CHUNK_COLUMNS: usize = 13;

fn num(n: impl Into<f64>) -> JsValue {
    JsValue::from_f64(n.into())
}

fn opt_num(n: Option<f64>) -> JsValue {
    n.map_or(JsValue::NULL, JsValue::from_f64)
}

fn ms(now_ms: u64) -> JsValue {
    num(now_ms as f64)
}

fn d1(operation: &'static str) -> impl Fn(worker::Error) -> StoreError {
    move |e| StoreError::transient(operation, e)
}

/// The `DB` database, for ingestion.
pub struct D1Documents {
    db: D1Database,
}

impl std::fmt::Debug for D1Documents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("D1Documents")
    }
}

#[derive(Deserialize)]
struct IdRow {
    id: f64,
}

#[derive(Deserialize)]
struct LiveColumns {
    id: f64,
    active_version: Option<f64>,
}

#[derive(Deserialize)]
struct CountRow {
    n: f64,
}

#[derive(Deserialize)]
struct ProbeRow {
    id: f64,
    active_version: f64,
}

#[derive(Deserialize)]
struct VectorIdRow {
    vector_id: String,
}

impl D1Documents {
    /// The database bound as `DB`.
    ///
    /// # Errors
    /// When the binding is missing.
    pub fn from_env(env: &Env) -> Result<Self, StoreError> {
        let db = env
            .d1(crate::bindings::DB)
            .map_err(|e| StoreError::permanent("D1 binding", e))?;
        Ok(Self { db })
    }

    /// Runs an `INSERT … ON CONFLICT … RETURNING id` and returns the id.
    async fn upsert_returning_id(
        &self,
        sql: &str,
        binds: &[JsValue],
        operation: &'static str,
    ) -> Result<i64, StoreError> {
        let row: Option<IdRow> = self
            .db
            .prepare(sql)
            .bind(binds)
            .map_err(d1(operation))?
            .first(None)
            .await
            .map_err(d1(operation))?;
        row.map(|r| r.id as i64)
            .ok_or_else(|| StoreError::transient(operation, "no id returned"))
    }

    fn chunk_insert(
        &self,
        document_id: i64,
        version: u64,
        rows: &[StagedChunk],
        now_ms: u64,
    ) -> worker::Result<D1PreparedStatement> {
        let placeholders: Vec<String> = (0..rows.len())
            .map(|r| {
                let base = r * CHUNK_COLUMNS;
                let params: Vec<String> = (1..=CHUNK_COLUMNS)
                    .map(|c| format!("?{}", base + c))
                    .collect();
                format!("({})", params.join(", "))
            })
            .collect();
        // Never into the live generation: a retried commit must not rewrite what queries read.
        let sql = format!(
            "INSERT INTO chunks (document_id, version, chunk_index, heading_path, content, token_count, \
             start_byte, end_byte, start_line, end_line, tags, vector_id, created_at) SELECT * FROM (VALUES {}) \
             WHERE NOT EXISTS (SELECT 1 FROM documents WHERE id = ?1 AND active_version = ?2)",
            placeholders.join(", ")
        );
        let mut values = Vec::with_capacity(rows.len() * CHUNK_COLUMNS);
        for row in rows {
            let tags = serde_json::to_string(&row.tags).unwrap_or_else(|_| "[]".to_owned());
            values.extend([
                num(document_id as f64),
                num(version as f64),
                num(row.idx),
                row.heading_path.as_str().into(),
                row.content.as_str().into(),
                num(row.token_count),
                num(row.start_byte as f64),
                num(row.end_byte as f64),
                num(row.start_line as f64),
                num(row.end_line as f64),
                tags.into(),
                vector_id(document_id, version as i64, row.idx).into(),
                ms(now_ms),
            ]);
        }
        self.db.prepare(sql).bind(&values)
    }
}

impl DocumentStore for D1Documents {
    async fn ensure_document(&self, key: &str, now_ms: u64) -> Result<i64, StoreError> {
        self.upsert_returning_id(
            "INSERT INTO documents (key, status, created_at, updated_at) VALUES (?1, 'queued', ?2, ?2) \
             ON CONFLICT(key) DO UPDATE SET updated_at = documents.updated_at RETURNING id",
            &[key.into(), ms(now_ms)],
            "D1 document row",
        )
        .await
    }

    async fn ensure_company(&self, slug: &str, now_ms: u64) -> Result<i64, StoreError> {
        self.upsert_returning_id(
            "INSERT INTO companies (slug, name, created_at, updated_at) VALUES (?1, ?1, ?2, ?2) \
             ON CONFLICT(slug) DO UPDATE SET updated_at = excluded.updated_at RETURNING id",
            &[slug.into(), ms(now_ms)],
            "D1 company row",
        )
        .await
    }

    async fn mark_status(
        &self,
        key: &str,
        view: &StatusView,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        let error = view.last_error.as_ref().map(|e| e.message.clone());
        let step = view.step.map(|s| s.as_str());
        self.db
            .prepare(
                "INSERT INTO documents (key, status, step, attempts, last_error, latest_version, created_at, updated_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7) \
                 ON CONFLICT(key) DO UPDATE SET status = excluded.status, step = excluded.step, \
                   attempts = excluded.attempts, last_error = excluded.last_error, \
                   latest_version = MAX(documents.latest_version, excluded.latest_version), updated_at = excluded.updated_at",
            )
            .bind(&[
                key.into(),
                view.status.as_str().into(),
                step.map_or(JsValue::NULL, JsValue::from_str),
                num(view.attempts),
                error.map_or(JsValue::NULL, |e| JsValue::from_str(&e)),
                num(view.generation as f64),
                ms(now_ms),
            ])
            .map_err(d1("D1 status"))?
            .run()
            .await
            .map_err(d1("D1 status"))?;
        Ok(())
    }

    async fn live_row(&self, key: &str) -> Result<Option<LiveRow>, StoreError> {
        let row: Option<LiveColumns> = self
            .db
            .prepare("SELECT id, active_version FROM documents WHERE key = ?1")
            .bind(&[key.into()])
            .map_err(d1("D1 live version"))?
            .first(None)
            .await
            .map_err(d1("D1 live version"))?;
        Ok(row.map(|r| LiveRow {
            document_id: r.id as i64,
            active_version: r.active_version.map(|v| v as u64),
        }))
    }

    async fn write_generation_chunks(
        &self,
        document: &StagedDocument,
        version: u64,
        chunks: &[StagedChunk],
        now_ms: u64,
    ) -> Result<(), StoreError> {
        let id = num(document.document_id as f64);
        // Idempotent: a re-run first removes what an earlier attempt wrote,
        // unless the generation went live in between.
        let clear = self
            .db
            .prepare(
                "DELETE FROM chunks WHERE document_id = ?1 AND version = ?2 \
                 AND ?2 IS NOT (SELECT active_version FROM documents WHERE id = ?1)",
            )
            .bind(&[id, num(version as f64)])
            .map_err(d1("D1 chunk rows"))?;
        let mut statements = vec![clear];
        let widest = chunks
            .iter()
            .map(|c| c.content.len() * 2 + c.heading_path.len() + 200)
            .max()
            .unwrap_or(0);
        let per_statement = rows_per_statement(CHUNK_COLUMNS, widest);
        for rows in chunks.chunks(per_statement) {
            statements.push(
                self.chunk_insert(document.document_id, version, rows, now_ms)
                    .map_err(d1("D1 chunk rows"))?,
            );
            if statements.len() >= STATEMENTS_PER_BATCH {
                self.db
                    .batch(std::mem::take(&mut statements))
                    .await
                    .map_err(d1("D1 chunk rows"))?;
            }
        }
        if !statements.is_empty() {
            self.db
                .batch(statements)
                .await
                .map_err(d1("D1 chunk rows"))?;
        }
        Ok(())
    }

    async fn activate_generation(
        &self,
        document: &StagedDocument,
        version: u64,
        now_ms: u64,
    ) -> Result<Option<u64>, StoreError> {
        let tags = serde_json::to_string(&document.tags).unwrap_or_else(|_| "[]".to_owned());
        let metadata = serde_json::Value::Object(document.metadata.clone()).to_string();
        // Forward only: a generation never replaces a newer live one.
        let flip = self
            .db
            .prepare(
                "UPDATE documents SET active_version = ?2, status = 'ready', step = NULL, title = ?3, company_id = ?4, \
                 tags = ?5, metadata = ?6, sha256 = ?7, etag = ?8, size = ?9, chunk_count = ?10, attempts = 0, \
                 last_error = NULL, latest_version = MAX(latest_version, ?2), processed_at = ?11, updated_at = ?11 \
                 WHERE id = ?1 AND (active_version IS NULL OR active_version < ?2)",
            )
            .bind(&[
                num(document.document_id as f64),
                num(version as f64),
                document.title.as_str().into(),
                opt_num(document.company_id.map(|c| c as f64)),
                tags.into(),
                metadata.into(),
                document.sha256.as_str().into(),
                document.etag.as_str().into(),
                num(document.size as f64),
                num(document.chunk_count),
                ms(now_ms),
            ])
            .map_err(d1("D1 activate generation"))?;
        let read = self
            .db
            .prepare("SELECT active_version FROM documents WHERE id = ?1")
            .bind(&[num(document.document_id as f64)])
            .map_err(d1("D1 activate generation"))?;
        let results = self
            .db
            .batch(vec![flip, read])
            .await
            .map_err(d1("D1 activate generation"))?;
        #[derive(Deserialize)]
        struct Active {
            active_version: Option<f64>,
        }
        let active = results
            .get(1)
            .map(|r| r.results::<Active>())
            .transpose()
            .map_err(d1("D1 activate generation"))?
            .and_then(|rows| rows.into_iter().next())
            .and_then(|r| r.active_version);
        Ok(active.map(|v| v as u64))
    }

    async fn generation_chunk_count(
        &self,
        document_id: i64,
        version: u64,
    ) -> Result<u32, StoreError> {
        let row: Option<CountRow> = self
            .db
            .prepare("SELECT COUNT(*) AS n FROM chunks WHERE document_id = ?1 AND version = ?2")
            .bind(&[num(document_id as f64), num(version as f64)])
            .map_err(d1("D1 chunk count"))?
            .first(None)
            .await
            .map_err(d1("D1 chunk count"))?;
        Ok(row.map_or(0, |r| r.n as u32))
    }

    async fn delete_generation_chunks(
        &self,
        document_id: i64,
        version: u64,
    ) -> Result<(), StoreError> {
        self.db
            .prepare(
                "DELETE FROM chunks WHERE document_id = ?1 AND version = ?2 \
                 AND version IS NOT (SELECT active_version FROM documents WHERE id = ?1)",
            )
            .bind(&[num(document_id as f64), num(version as f64)])
            .map_err(d1("D1 drop generation"))?
            .run()
            .await
            .map_err(d1("D1 drop generation"))?;
        Ok(())
    }

    async fn document_vector_ids(&self, key: &str) -> Result<Vec<String>, StoreError> {
        let rows: Vec<VectorIdRow> = self
            .db
            .prepare("SELECT c.vector_id FROM chunks c JOIN documents d ON d.id = c.document_id WHERE d.key = ?1")
            .bind(&[key.into()])
            .map_err(d1("D1 read vector ids"))?
            .all()
            .await
            .map_err(d1("D1 read vector ids"))?
            .results()
            .map_err(d1("D1 read vector ids"))?;
        Ok(rows.into_iter().map(|r| r.vector_id).collect())
    }

    async fn delete_document(&self, key: &str, now_ms: u64) -> Result<(), StoreError> {
        let chunks = self
            .db
            .prepare(
                "DELETE FROM chunks WHERE document_id = (SELECT id FROM documents WHERE key = ?1)",
            )
            .bind(&[key.into()])
            .map_err(d1("D1 delete"))?;
        let tombstone = self
            .db
            .prepare(
                "UPDATE documents SET status = 'deleted', step = NULL, active_version = NULL, chunk_count = 0, \
                 last_error = NULL, updated_at = ?2 WHERE key = ?1",
            )
            .bind(&[key.into(), ms(now_ms)])
            .map_err(d1("D1 delete"))?;
        self.db
            .batch(vec![chunks, tombstone])
            .await
            .map_err(d1("D1 delete"))?;
        Ok(())
    }

    async fn record_run(&self, key: &str, record: &RunRecord) -> Result<(), StoreError> {
        let steps = serde_json::to_string(&record.steps).unwrap_or_else(|_| "[]".to_owned());
        let reason = serde_json::to_value(record.reason)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        self.db
            .prepare(
                "INSERT INTO processing_runs (document_key, document_id, version, reason, status, started_at, finished_at, \
                 chunk_count, attempts, error, steps) \
                 VALUES (?1, (SELECT id FROM documents WHERE key = ?1), ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            )
            .bind(&[
                key.into(),
                num(record.generation as f64),
                reason.into(),
                record.outcome.run_status().into(),
                num(record.started_at_ms.unwrap_or(record.queued_at_ms) as f64),
                num(record.finished_at_ms as f64),
                opt_num(record.chunk_count.map(f64::from)),
                num(record.attempts),
                record
                    .error
                    .as_ref()
                    .map_or(JsValue::NULL, |e| JsValue::from_str(&e.message)),
                steps.into(),
            ])
            .map_err(d1("D1 run record"))?
            .run()
            .await
            .map_err(d1("D1 run record"))?;
        Ok(())
    }

    async fn record_dead_letter(&self, letter: &DeadLetter, now_ms: u64) -> Result<(), StoreError> {
        let key = letter
            .document_key
            .as_deref()
            .map_or(JsValue::NULL, JsValue::from_str);
        let insert = self
            .db
            .prepare(
                "INSERT INTO dead_letters (queue, message_id, document_key, body, error, attempts, received_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )
            .bind(&[
                letter.queue.as_str().into(),
                letter.message_id.as_str().into(),
                key.clone(),
                letter.body.to_string().into(),
                letter.error.as_str().into(),
                num(letter.attempts as f64),
                ms(now_ms),
            ])
            .map_err(d1("D1 dead letter"))?;
        // Only a document without an outcome yet (queued or processing): one
        // whose processor has since reached ready, failed or deleted keeps its word.
        let mark_document = self
            .db
            .prepare(
                "UPDATE documents SET status = 'failed', last_error = ?2, updated_at = ?3 \
                 WHERE key = ?1 AND status IN ('queued', 'processing')",
            )
            .bind(&[
                key,
                format!("dead-lettered: {}", letter.error).into(),
                ms(now_ms),
            ])
            .map_err(d1("D1 dead letter"))?;
        self.db
            .batch(vec![insert, mark_document])
            .await
            .map_err(d1("D1 dead letter"))?;
        Ok(())
    }
}

/// A document row as the admin API shows it.
#[derive(Debug, Deserialize, serde::Serialize)]
pub struct AdminDocumentRow {
    id: i64,
    /// The R2 key (the listing's cursor).
    pub key: String,
    status: String,
    title: Option<String>,
    company: Option<String>,
    sha256: Option<String>,
    etag: Option<String>,
    size: Option<i64>,
    active_version: Option<i64>,
    chunk_count: i64,
    attempts: i64,
    last_error: Option<String>,
    created_at: i64,
    updated_at: i64,
    processed_at: Option<i64>,
    /// The source's id when the document was migrated (`legacy_id_map`).
    legacy_id: Option<String>,
}

const ADMIN_ROW_COLUMNS: &str = "d.id, d.key, d.status, d.title, c.slug AS company, d.sha256, d.etag, d.size, \
    d.active_version, d.chunk_count, d.attempts, d.last_error, d.created_at, d.updated_at, d.processed_at, \
    (SELECT m.legacy_id FROM legacy_id_map m WHERE m.entity = 'document' AND m.new_id = d.id LIMIT 1) AS legacy_id";

impl D1Documents {
    /// The admin view of one document row.
    pub async fn document_row(&self, key: &str) -> Result<Option<AdminDocumentRow>, StoreError> {
        self.db
            .prepare(format!(
                "SELECT {ADMIN_ROW_COLUMNS} FROM documents d LEFT JOIN companies c ON c.id = d.company_id WHERE d.key = ?1"
            ))
            .bind(&[key.into()])
            .map_err(d1("D1 document"))?
            .first(None)
            .await
            .map_err(d1("D1 document"))
    }

    /// Up to `limit` rows with keys after `after` under `prefix`, in key
    /// order (keyset pagination: stable while documents change). Deleted
    /// tombstones only when `status` asks for them: a sync client must not
    /// take them for stored documents.
    pub async fn list_documents(
        &self,
        after: &str,
        prefix: &str,
        status: Option<&str>,
        limit: u32,
    ) -> Result<Vec<AdminDocumentRow>, StoreError> {
        self.db
            .prepare(format!(
                "SELECT {ADMIN_ROW_COLUMNS} FROM documents d LEFT JOIN companies c ON c.id = d.company_id \
                 WHERE d.key > ?1 AND substr(d.key, 1, length(?2)) = ?2 \
                 AND ((?3 IS NULL AND d.status != 'deleted') OR d.status = ?3) \
                 ORDER BY d.key LIMIT ?4"
            ))
            .bind(&[
                after.into(),
                prefix.into(),
                status.map_or(JsValue::NULL, JsValue::from_str),
                num(limit),
            ])
            .map_err(d1("D1 document listing"))?
            .all()
            .await
            .map_err(d1("D1 document listing"))?
            .results()
            .map_err(d1("D1 document listing"))
    }
}

impl D1Documents {
    /// Vector ids to probe the index's filters with (`GET /admin/index/check`): the first
    /// chunk of the live generation of the most recently updated ready documents, those with
    /// a company first (only they exercise the company filter).
    pub async fn probe_vector_ids(&self, limit: u32) -> Result<Vec<String>, StoreError> {
        let rows: Vec<ProbeRow> = self
            .db
            .prepare(
                "SELECT id, active_version FROM documents \
                 WHERE status = 'ready' AND active_version IS NOT NULL AND chunk_count > 0 \
                 ORDER BY company_id IS NULL, updated_at DESC LIMIT ?1",
            )
            .bind(&[num(limit)])
            .map_err(d1("D1 probe vectors"))?
            .all()
            .await
            .map_err(d1("D1 probe vectors"))?
            .results()
            .map_err(d1("D1 probe vectors"))?;
        Ok(rows
            .into_iter()
            .map(|r| vector_id(r.id as i64, r.active_version as i64, 0))
            .collect())
    }

    /// One cheap query, for `/api/health`.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.db
            .prepare("SELECT 1 AS n")
            .first::<CountRow>(None)
            .await
            .map(|_| ())
            .map_err(d1("D1 probe"))
    }
}
