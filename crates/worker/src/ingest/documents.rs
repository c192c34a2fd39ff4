//! D1 writes of the ingestion path: document rows, companies, the two-phase
//! commit of a generation's chunks, deletions and run history.
//!
//! Ordering matters for the commit: a generation's chunk rows are written
//! first (invisible: queries read only `documents.active_version`), then one
//! batch flips `active_version` and the status together.

use super::staging::{StagedChunk, StagedDocument};
use portfolio_core::ingestion::rows_per_statement;
use portfolio_core::keys::vector_id;
use portfolio_core::pipeline::{RunRecord, StatusView};
use serde::Deserialize;
use wasm_bindgen::JsValue;
use worker::{D1Database, D1PreparedStatement};

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

#[derive(Deserialize)]
struct IdRow {
    id: f64,
}

/// Runs an `INSERT … ON CONFLICT … RETURNING id` and returns the id.
async fn upsert_returning_id(
    db: &D1Database,
    sql: &str,
    binds: &[JsValue],
    what: &str,
) -> worker::Result<i64> {
    let row: Option<IdRow> = db.prepare(sql).bind(binds)?.first(None).await?;
    row.map(|r| r.id as i64)
        .ok_or_else(|| worker::Error::RustError(format!("no id returned for {what}")))
}

/// The id of the document row for `key`, creating the row (status `queued`) if needed.
pub async fn ensure_document(db: &D1Database, key: &str, now: f64) -> worker::Result<i64> {
    upsert_returning_id(
        db,
        "INSERT INTO documents (key, status, created_at, updated_at) VALUES (?1, 'queued', ?2, ?2) \
         ON CONFLICT(key) DO UPDATE SET updated_at = documents.updated_at RETURNING id",
        &[key.into(), num(now)],
        key,
    )
    .await
}

/// The id of the company `slug`, creating it if needed.
pub async fn ensure_company(db: &D1Database, slug: &str, now: f64) -> worker::Result<i64> {
    upsert_returning_id(
        db,
        "INSERT INTO companies (slug, name, created_at, updated_at) VALUES (?1, ?1, ?2, ?2) \
         ON CONFLICT(slug) DO UPDATE SET updated_at = excluded.updated_at RETURNING id",
        &[slug.into(), num(now)],
        slug,
    )
    .await
}

/// Mirrors the processor's status onto the document row (creating it if needed).
pub async fn mark_status(
    db: &D1Database,
    key: &str,
    view: &StatusView,
    now: f64,
) -> worker::Result<()> {
    let error = view.last_error.as_ref().map(|e| e.message.clone());
    let step = view.step.map(|s| s.as_str());
    db.prepare(
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
        num(now),
    ])?
    .run()
    .await?;
    Ok(())
}

fn chunk_insert(
    db: &D1Database,
    document_id: i64,
    version: u64,
    rows: &[StagedChunk],
    now: f64,
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
    let sql = format!(
        "INSERT INTO chunks (document_id, version, chunk_index, heading_path, content, token_count, \
         start_byte, end_byte, start_line, end_line, tags, vector_id, created_at) VALUES {}",
        placeholders.join(", ")
    );
    let mut values = Vec::with_capacity(rows.len() * CHUNK_COLUMNS);
    for row in rows {
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
            row.tags.as_str().into(),
            vector_id(document_id, version as i64, row.idx).into(),
            num(now),
        ]);
    }
    db.prepare(sql).bind(&values)
}

/// Phase one of the commit: (re)writes the generation's chunk rows. Idempotent:
/// a re-run after a crash first removes what an earlier attempt wrote.
pub async fn write_generation_chunks(
    db: &D1Database,
    document: &StagedDocument,
    version: u64,
    chunks: &[StagedChunk],
    now: f64,
) -> worker::Result<()> {
    let clear = db
        .prepare("DELETE FROM chunks WHERE document_id = ?1 AND version = ?2")
        .bind(&[num(document.document_id as f64), num(version as f64)])?;
    let mut statements = vec![clear];
    let widest = chunks
        .iter()
        .map(|c| c.content.len() * 2 + c.heading_path.len() + 200)
        .max()
        .unwrap_or(0);
    let per_statement = rows_per_statement(CHUNK_COLUMNS, widest);
    for rows in chunks.chunks(per_statement) {
        statements.push(chunk_insert(db, document.document_id, version, rows, now)?);
        if statements.len() >= STATEMENTS_PER_BATCH {
            db.batch(std::mem::take(&mut statements)).await?;
        }
    }
    if !statements.is_empty() {
        db.batch(statements).await?;
    }
    Ok(())
}

/// Phase two: makes `version` the live generation and the document `ready`, in one batch.
pub async fn activate_generation(
    db: &D1Database,
    document: &StagedDocument,
    version: u64,
    now: f64,
) -> worker::Result<()> {
    let tags = serde_json::to_string(&document.tags).unwrap_or_else(|_| "[]".to_owned());
    let metadata = serde_json::Value::Object(document.metadata.clone()).to_string();
    let flip = db
        .prepare(
            "UPDATE documents SET active_version = ?2, status = 'ready', step = NULL, title = ?3, company_id = ?4, \
             tags = ?5, metadata = ?6, sha256 = ?7, etag = ?8, size = ?9, chunk_count = ?10, attempts = 0, \
             last_error = NULL, latest_version = MAX(latest_version, ?2), processed_at = ?11, updated_at = ?11 \
             WHERE id = ?1",
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
            num(now),
        ])?;
    db.batch(vec![flip]).await?;
    Ok(())
}

#[derive(Deserialize)]
struct LiveRow {
    id: f64,
    active_version: Option<f64>,
}

/// The id of the document row for `key` and its live generation, if the row exists.
pub async fn live_version(
    db: &D1Database,
    key: &str,
) -> worker::Result<Option<(i64, Option<u64>)>> {
    let row: Option<LiveRow> = db
        .prepare("SELECT id, active_version FROM documents WHERE key = ?1")
        .bind(&[key.into()])?
        .first(None)
        .await?;
    Ok(row.map(|r| (r.id as i64, r.active_version.map(|v| v as u64))))
}

/// Deletes the chunk rows of one generation (never the live one).
pub async fn delete_generation_chunks(
    db: &D1Database,
    document_id: i64,
    version: u64,
) -> worker::Result<()> {
    db.prepare(
        "DELETE FROM chunks WHERE document_id = ?1 AND version = ?2 \
         AND version IS NOT (SELECT active_version FROM documents WHERE id = ?1)",
    )
    .bind(&[num(document_id as f64), num(version as f64)])?
    .run()
    .await?;
    Ok(())
}

#[derive(Deserialize)]
struct CountRow {
    n: f64,
}

/// Number of chunk rows of one generation.
pub async fn generation_chunk_count(
    db: &D1Database,
    document_id: i64,
    version: u64,
) -> worker::Result<u32> {
    let row: Option<CountRow> = db
        .prepare("SELECT COUNT(*) AS n FROM chunks WHERE document_id = ?1 AND version = ?2")
        .bind(&[num(document_id as f64), num(version as f64)])?
        .first(None)
        .await?;
    Ok(row.map_or(0, |r| r.n as u32))
}

#[derive(Deserialize)]
struct VectorIdRow {
    vector_id: String,
}

/// Vector ids of every chunk row of the document `key` (any generation).
pub async fn document_vector_ids(db: &D1Database, key: &str) -> worker::Result<Vec<String>> {
    let rows: Vec<VectorIdRow> = db
        .prepare("SELECT c.vector_id FROM chunks c JOIN documents d ON d.id = c.document_id WHERE d.key = ?1")
        .bind(&[key.into()])?
        .all()
        .await?
        .results()?;
    Ok(rows.into_iter().map(|r| r.vector_id).collect())
}

/// Removes every chunk of the document and leaves a `deleted` tombstone row
/// (so status and reconciliation can see what happened).
pub async fn delete_document(db: &D1Database, key: &str, now: f64) -> worker::Result<Option<i64>> {
    let Some((id, _)) = live_version(db, key).await? else {
        return Ok(None);
    };
    let id = id as f64;
    let chunks = db
        .prepare("DELETE FROM chunks WHERE document_id = ?1")
        .bind(&[num(id)])?;
    let tombstone = db
        .prepare(
            "UPDATE documents SET status = 'deleted', step = NULL, active_version = NULL, chunk_count = 0, \
             last_error = NULL, updated_at = ?2 WHERE id = ?1",
        )
        .bind(&[num(id), num(now)])?;
    db.batch(vec![chunks, tombstone]).await?;
    Ok(Some(id as i64))
}

/// Appends one finished run to `processing_runs` (with the document's id, when its row exists).
pub async fn record_run(db: &D1Database, key: &str, record: &RunRecord) -> worker::Result<()> {
    let steps = serde_json::to_string(&record.steps).unwrap_or_else(|_| "[]".to_owned());
    let reason = serde_json::to_value(record.reason)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    db.prepare(
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
        record.error.as_ref().map_or(JsValue::NULL, |e| JsValue::from_str(&e.message)),
        steps.into(),
    ])?
    .run()
    .await?;
    Ok(())
}
