//! What happened to documents, for operators: each document's ingestion
//! runs (`processing_runs`) and the dead letters (`dead_letters`), paged
//! newest first by id, and a dead letter's replay count.
//!
//! Reads and one counter update only; what a replay enqueues is the admin
//! route's business.

use portfolio_core::shared::storage::StoreError;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use wasm_bindgen::JsValue;
use worker::{D1Database, Env};

fn d1(operation: &'static str) -> impl Fn(worker::Error) -> StoreError {
    move |e| StoreError::transient(operation, e)
}

fn num(n: f64) -> JsValue {
    JsValue::from_f64(n)
}

/// The `DB` database, for run history and dead letters.
pub struct D1History {
    db: D1Database,
}

impl std::fmt::Debug for D1History {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("D1History")
    }
}

#[derive(Deserialize)]
struct RunColumns {
    id: f64,
    version: Option<f64>,
    reason: String,
    status: String,
    started_at: f64,
    finished_at: Option<f64>,
    chunk_count: Option<f64>,
    attempts: f64,
    error: Option<String>,
    steps: String,
}

/// One run as `GET /admin/documents/{key}/runs` shows it.
#[derive(Debug, Serialize)]
pub struct RunEntry {
    /// Row id (the page cursor).
    pub id: u64,
    version: Option<u64>,
    reason: String,
    status: String,
    started_at: u64,
    finished_at: Option<u64>,
    duration_ms: Option<u64>,
    chunk_count: Option<u64>,
    attempts: u64,
    error: Option<String>,
    steps: Value,
}

impl From<RunColumns> for RunEntry {
    fn from(r: RunColumns) -> Self {
        let started = r.started_at as u64;
        let finished = r.finished_at.map(|f| f as u64);
        Self {
            id: r.id as u64,
            version: r.version.map(|v| v as u64),
            reason: r.reason,
            status: r.status,
            started_at: started,
            finished_at: finished,
            duration_ms: finished.map(|f| f.saturating_sub(started)),
            chunk_count: r.chunk_count.map(|c| c as u64),
            attempts: r.attempts as u64,
            error: r.error,
            steps: serde_json::from_str(&r.steps).unwrap_or(Value::Array(Vec::new())),
        }
    }
}

#[derive(Deserialize)]
struct LetterColumns {
    id: f64,
    queue: String,
    message_id: String,
    document_key: Option<String>,
    body: String,
    error: Option<String>,
    attempts: f64,
    received_at: f64,
    replayed_at: Option<f64>,
    replays: f64,
}

/// One dead letter as `GET /admin/dead-letters` shows it.
#[derive(Debug, Serialize)]
pub struct DeadLetterEntry {
    /// Row id (the page cursor, and what a replay names).
    pub id: u64,
    queue: String,
    message_id: String,
    /// The document the message was about, when it named one.
    pub document_key: Option<String>,
    body: Value,
    error: Option<String>,
    attempts: u64,
    received_at: u64,
    replayed_at: Option<u64>,
    /// Times it was replayed.
    pub replays: u64,
}

impl From<LetterColumns> for DeadLetterEntry {
    fn from(l: LetterColumns) -> Self {
        Self {
            id: l.id as u64,
            queue: l.queue,
            message_id: l.message_id,
            document_key: l.document_key,
            body: serde_json::from_str(&l.body).unwrap_or(Value::String(l.body)),
            error: l.error,
            attempts: l.attempts as u64,
            received_at: l.received_at as u64,
            replayed_at: l.replayed_at.map(|r| r as u64),
            replays: l.replays as u64,
        }
    }
}

const LETTER_COLUMNS: &str =
    "id, queue, message_id, document_key, body, error, attempts, received_at, replayed_at, replays";

impl D1History {
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

    /// Up to `limit` runs of `key` with ids below `before` (0: from the newest), newest first.
    pub async fn runs(
        &self,
        key: &str,
        before: u64,
        limit: u32,
    ) -> Result<Vec<RunEntry>, StoreError> {
        let rows: Vec<RunColumns> = self
            .db
            .prepare(
                "SELECT id, version, reason, status, started_at, finished_at, chunk_count, attempts, error, steps \
                 FROM processing_runs WHERE document_key = ?1 AND (?2 = 0 OR id < ?2) ORDER BY id DESC LIMIT ?3",
            )
            .bind(&[key.into(), num(before as f64), num(f64::from(limit))])
            .map_err(d1("D1 run history"))?
            .all()
            .await
            .map_err(d1("D1 run history"))?
            .results()
            .map_err(d1("D1 run history"))?;
        Ok(rows.into_iter().map(RunEntry::from).collect())
    }

    /// Up to `limit` dead letters with ids below `before` (0: from the newest), newest first.
    pub async fn dead_letters(
        &self,
        before: u64,
        limit: u32,
    ) -> Result<Vec<DeadLetterEntry>, StoreError> {
        let rows: Vec<LetterColumns> = self
            .db
            .prepare(format!(
                "SELECT {LETTER_COLUMNS} FROM dead_letters WHERE (?1 = 0 OR id < ?1) ORDER BY id DESC LIMIT ?2"
            ))
            .bind(&[num(before as f64), num(f64::from(limit))])
            .map_err(d1("D1 dead letters"))?
            .all()
            .await
            .map_err(d1("D1 dead letters"))?
            .results()
            .map_err(d1("D1 dead letters"))?;
        Ok(rows.into_iter().map(DeadLetterEntry::from).collect())
    }

    /// One dead letter, `None` when there is none with that id.
    pub async fn dead_letter(&self, id: u64) -> Result<Option<DeadLetterEntry>, StoreError> {
        let row: Option<LetterColumns> = self
            .db
            .prepare(format!(
                "SELECT {LETTER_COLUMNS} FROM dead_letters WHERE id = ?1"
            ))
            .bind(&[num(id as f64)])
            .map_err(d1("D1 dead letter"))?
            .first(None)
            .await
            .map_err(d1("D1 dead letter"))?;
        Ok(row.map(DeadLetterEntry::from))
    }

    /// Counts a replay of dead letter `id` at `now_ms`; returns the new count.
    pub async fn mark_replayed(&self, id: u64, now_ms: u64) -> Result<u64, StoreError> {
        #[derive(Deserialize)]
        struct Replays {
            replays: f64,
        }
        let row: Option<Replays> = self
            .db
            .prepare(
                "UPDATE dead_letters SET replays = replays + 1, replayed_at = ?2 WHERE id = ?1 RETURNING replays",
            )
            .bind(&[num(id as f64), num(now_ms as f64)])
            .map_err(d1("D1 dead letter replay"))?
            .first(None)
            .await
            .map_err(d1("D1 dead letter replay"))?;
        Ok(row.map_or(0, |r| r.replays as u64))
    }
}
