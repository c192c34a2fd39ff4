//! The `reconcile_runs` rows: creating a run, claiming its pages, recording
//! errors, finishing or abandoning it, listing the latest runs.
//!
//! A page is claimed with a conditional update on `pages`, so a redelivered
//! page message can never count twice. Never decides what to enqueue.

use portfolio_core::reconcile::RUN_STALE_AFTER_MS;
use serde::{Deserialize, Serialize};
use wasm_bindgen::JsValue;
use worker::D1Database;

fn num(n: impl Into<f64>) -> JsValue {
    JsValue::from_f64(n.into())
}

/// One run as stored.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct RunRow {
    pub id: f64,
    pub trigger: String,
    pub status: String,
    pub started_at: f64,
    pub finished_at: Option<f64>,
    pub objects_seen: f64,
    pub documents_seen: f64,
    pub stores_checked: f64,
    pub pages: f64,
    pub cursor: Option<String>,
    pub page_size: f64,
    pub enqueued: String,
    pub errors: String,
    pub updated_at: Option<f64>,
}

impl RunRow {
    pub fn run_id(&self) -> u64 {
        self.id as u64
    }

    pub fn pages_done(&self) -> u32 {
        self.pages as u32
    }

    /// What `GET /admin/reconcile/runs` shows: counters parsed, duration added.
    pub fn summary(&self) -> serde_json::Value {
        let parse =
            |text: &str, empty: serde_json::Value| serde_json::from_str(text).unwrap_or(empty);
        serde_json::json!({
            "id": self.run_id(),
            "trigger": self.trigger,
            "status": self.status,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "duration_ms": self.finished_at.map(|f| f - self.started_at),
            "objects_seen": self.objects_seen,
            "documents_seen": self.documents_seen,
            "stores_checked": self.stores_checked,
            "pages": self.pages,
            "page_size": self.page_size,
            "enqueued": parse(&self.enqueued, serde_json::json!({})),
            "errors": parse(&self.errors, serde_json::json!([])),
        })
    }
}

const COLUMNS: &str =
    "id, trigger, status, started_at, finished_at, objects_seen, documents_seen, \
    stores_checked, pages, cursor, page_size, enqueued, errors, updated_at";

/// Outcome of [`create`].
pub enum Created {
    Started(u64),
    AlreadyRunning(u64),
}

/// Marks runs without progress for [`RUN_STALE_AFTER_MS`] as failed: their
/// continuation was lost, and they would block every later run.
pub async fn abandon_stale(db: &D1Database, now: f64) -> worker::Result<()> {
    db.prepare(
        "UPDATE reconcile_runs SET status = 'failed', finished_at = ?1, updated_at = ?1, \
         errors = json_insert(errors, '$[#]', 'abandoned: no progress for ' || ?2 || ' ms') \
         WHERE status = 'running' AND COALESCE(updated_at, started_at) < ?1 - ?2",
    )
    .bind(&[num(now), num(RUN_STALE_AFTER_MS as f64)])?
    .run()
    .await?;
    Ok(())
}

async fn running(db: &D1Database) -> worker::Result<Option<u64>> {
    let row: Option<f64> = db
        .prepare("SELECT id FROM reconcile_runs WHERE status = 'running' LIMIT 1")
        .first(Some("id"))
        .await?;
    Ok(row.map(|id| id as u64))
}

/// Creates a run unless one is running (at most one at a time; the partial
/// unique index settles a race between two triggers).
pub async fn create(
    db: &D1Database,
    trigger: &str,
    page_size: u32,
    now: f64,
) -> worker::Result<Created> {
    if let Some(id) = running(db).await? {
        return Ok(Created::AlreadyRunning(id));
    }
    let inserted = db
        .prepare(
            "INSERT INTO reconcile_runs (trigger, status, started_at, page_size, updated_at) \
             VALUES (?1, 'running', ?2, ?3, ?2) RETURNING id",
        )
        .bind(&[trigger.into(), num(now), num(page_size)])?
        .first::<f64>(Some("id"))
        .await;
    match inserted {
        Ok(Some(id)) => Ok(Created::Started(id as u64)),
        Ok(None) => Err(worker::Error::RustError("reconcile run id missing".into())),
        Err(e) => match running(db).await? {
            Some(id) => Ok(Created::AlreadyRunning(id)),
            None => Err(e),
        },
    }
}

pub async fn load(db: &D1Database, run_id: u64) -> worker::Result<Option<RunRow>> {
    db.prepare(format!(
        "SELECT {COLUMNS} FROM reconcile_runs WHERE id = ?1"
    ))
    .bind(&[num(run_id as f64)])?
    .first(None)
    .await
}

pub async fn latest(db: &D1Database, limit: u32) -> worker::Result<Vec<RunRow>> {
    db.prepare(format!(
        "SELECT {COLUMNS} FROM reconcile_runs ORDER BY started_at DESC, id DESC LIMIT ?1"
    ))
    .bind(&[num(limit)])?
    .all()
    .await?
    .results()
}

/// What one completed page adds to its run.
pub struct PageClaim<'a> {
    pub page: u32,
    pub cursor: &'a str,
    pub objects_seen: u32,
    pub documents_seen: u32,
    pub stores_checked: u32,
    /// The run's merged `{ reason: count }`.
    pub enqueued: &'a str,
    /// The run's errors with the page's appended.
    pub errors: &'a str,
    /// The last page: the run is done.
    pub last: bool,
    pub now: f64,
}

/// Records a page, only if it is the next one of a running run. `false`: the
/// page was already recorded (a redelivered message) and must not count.
pub async fn claim_page(
    db: &D1Database,
    run_id: u64,
    claim: &PageClaim<'_>,
) -> worker::Result<bool> {
    let result = db
        .prepare(
            "UPDATE reconcile_runs SET pages = ?2, cursor = ?3, objects_seen = objects_seen + ?4, \
             documents_seen = documents_seen + ?5, stores_checked = stores_checked + ?6, enqueued = ?7, \
             errors = ?8, updated_at = ?9, \
             status = CASE WHEN ?10 = 1 THEN 'done' ELSE status END, \
             finished_at = CASE WHEN ?10 = 1 THEN ?9 ELSE finished_at END \
             WHERE id = ?1 AND pages = ?2 - 1 AND status = 'running'",
        )
        .bind(&[
            num(run_id as f64),
            num(claim.page),
            claim.cursor.into(),
            num(claim.objects_seen),
            num(claim.documents_seen),
            num(claim.stores_checked),
            claim.enqueued.into(),
            claim.errors.into(),
            num(claim.now),
            num(u8::from(claim.last)),
        ])?
        .run()
        .await?;
    Ok(result.meta()?.and_then(|m| m.changes).unwrap_or(0) > 0)
}

/// Appends an error message to a run (a page that failed and will be retried).
pub async fn append_error(
    db: &D1Database,
    run_id: u64,
    message: &str,
    now: f64,
) -> worker::Result<()> {
    db.prepare(
        "UPDATE reconcile_runs SET errors = json_insert(errors, '$[#]', ?2), updated_at = ?3 \
         WHERE id = ?1 AND json_array_length(errors) < 50",
    )
    .bind(&[num(run_id as f64), message.into(), num(now)])?
    .run()
    .await?;
    Ok(())
}

/// Ends a run as failed (a page that can never complete).
pub async fn fail(db: &D1Database, run_id: u64, message: &str, now: f64) -> worker::Result<()> {
    db.prepare(
        "UPDATE reconcile_runs SET status = 'failed', finished_at = ?3, updated_at = ?3, \
         errors = json_insert(errors, '$[#]', ?2) WHERE id = ?1 AND status = 'running'",
    )
    .bind(&[num(run_id as f64), message.into(), num(now)])?
    .run()
    .await?;
    Ok(())
}
