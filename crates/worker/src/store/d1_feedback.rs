//! Readers' ratings in D1 (migration 0013): stored as checked by
//! `portfolio_core::api::feedback`, listed newest first, pruned by the daily
//! cron. Never validates or decides anything.

use portfolio_core::api::feedback::{Feedback, FeedbackFilter};
use portfolio_core::shared::storage::StoreError;
use serde::{Deserialize, Serialize};
use wasm_bindgen::JsValue;
use worker::D1Database;

fn d1(operation: &'static str) -> impl Fn(worker::Error) -> StoreError {
    move |e| StoreError::transient(operation, e)
}

/// One stored rating, as `GET /admin/feedback` lists it.
#[derive(Debug, Serialize)]
pub struct FeedbackRecord {
    pub id: u64,
    pub at: u64,
    pub answer_id: String,
    pub helpful: bool,
    pub question: String,
    pub sources: Vec<String>,
    pub comment: Option<String>,
}

#[derive(Deserialize)]
struct Row {
    id: f64,
    at: f64,
    answer_id: String,
    helpful: f64,
    question: String,
    sources: String,
    comment: Option<String>,
}

impl From<Row> for FeedbackRecord {
    fn from(r: Row) -> Self {
        Self {
            id: r.id as u64,
            at: r.at as u64,
            answer_id: r.answer_id,
            helpful: r.helpful != 0.0,
            question: r.question,
            // Written by `add` from a list of keys: always an array.
            sources: serde_json::from_str(&r.sources).unwrap_or_default(),
            comment: r.comment,
        }
    }
}

/// The `DB` database, for feedback.
pub struct D1Feedback {
    db: D1Database,
}

impl D1Feedback {
    pub fn new(db: D1Database) -> Self {
        Self { db }
    }

    /// Stores a rating received at `at_ms`; its id.
    pub async fn add(&self, feedback: &Feedback, at_ms: u64) -> Result<u64, StoreError> {
        let sources = serde_json::to_string(&feedback.sources).unwrap_or_else(|_| "[]".into());
        let id: Option<f64> = self
            .db
            .prepare(
                "INSERT INTO feedback (at, answer_id, helpful, question, sources, comment) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6) RETURNING id",
            )
            .bind(&[
                JsValue::from_f64(at_ms as f64),
                JsValue::from_str(&feedback.answer_id),
                JsValue::from_f64(if feedback.helpful { 1.0 } else { 0.0 }),
                JsValue::from_str(&feedback.question),
                JsValue::from_str(&sources),
                feedback
                    .comment
                    .as_deref()
                    .map_or(JsValue::NULL, JsValue::from_str),
            ])
            .map_err(d1("D1 feedback insert"))?
            .first(Some("id"))
            .await
            .map_err(d1("D1 feedback insert"))?;
        Ok(id.unwrap_or_default() as u64)
    }

    /// The newest ratings the filter selects.
    pub async fn recent(&self, filter: FeedbackFilter) -> Result<Vec<FeedbackRecord>, StoreError> {
        let helpful = filter.helpful.map_or(JsValue::NULL, |h| {
            JsValue::from_f64(if h { 1.0 } else { 0.0 })
        });
        let rows: Vec<Row> = self
            .db
            .prepare(
                "SELECT id, at, answer_id, helpful, question, sources, comment FROM feedback \
                 WHERE ?1 IS NULL OR helpful = ?1 ORDER BY id DESC LIMIT ?2",
            )
            .bind(&[helpful, JsValue::from_f64(f64::from(filter.limit))])
            .map_err(d1("D1 feedback list"))?
            .all()
            .await
            .map_err(d1("D1 feedback list"))?
            .results()
            .map_err(d1("D1 feedback list"))?;
        Ok(rows.into_iter().map(FeedbackRecord::from).collect())
    }

    /// Deletes ratings received before `before_ms`.
    pub async fn prune(&self, before_ms: u64) -> Result<(), StoreError> {
        self.db
            .prepare("DELETE FROM feedback WHERE at < ?1")
            .bind(&[JsValue::from_f64(before_ms as f64)])
            .map_err(d1("D1 feedback prune"))?
            .run()
            .await
            .map_err(d1("D1 feedback prune"))?;
        Ok(())
    }
}
