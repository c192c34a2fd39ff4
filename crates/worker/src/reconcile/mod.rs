//! Reconciliation: the daily safety net comparing R2, D1 and the vector index.
//!
//! This first version takes the inventory (objects in the bucket, document
//! rows) and records a run summary in D1; healing builds on it.

use crate::bindings;
use serde_json::json;
use wasm_bindgen::JsValue;
use worker::{console_error, console_log, Env};

/// Largest page R2 `list` returns. Source: R2 Workers API, `list()` limit 1000.
const R2_LIST_PAGE: u32 = 1000;

/// Cron entry point: never panics, logs and records failures instead.
pub async fn run_scheduled(cron: &str, env: &Env) {
    match run(env, "cron").await {
        Ok(summary) => console_log!(
            "{}",
            json!({ "level": "info", "event": "reconcile_done", "cron": cron, "summary": summary })
        ),
        Err(e) => console_error!(
            "{}",
            json!({ "level": "error", "event": "reconcile_failed", "cron": cron, "error": e.to_string() })
        ),
    }
}

async fn run(env: &Env, trigger: &str) -> worker::Result<serde_json::Value> {
    let db = env.d1(bindings::DB)?;
    let started = worker::Date::now().as_millis() as f64;
    let run_id: Option<f64> = db
        .prepare("INSERT INTO reconcile_runs (trigger, status, started_at) VALUES (?1, 'running', ?2) RETURNING id")
        .bind(&[trigger.into(), JsValue::from_f64(started)])?
        .first(Some("id"))
        .await?;
    let run_id =
        run_id.ok_or_else(|| worker::Error::RustError("reconcile run id missing".into()))?;

    let outcome = inventory(env).await;
    let finished = worker::Date::now().as_millis() as f64;
    let (status, objects, documents, errors) = match &outcome {
        Ok((objects, documents)) => ("done", *objects, *documents, json!([])),
        Err(e) => ("failed", 0, 0, json!([e.to_string()])),
    };
    db.prepare(
        "UPDATE reconcile_runs SET status = ?2, finished_at = ?3, objects_seen = ?4, documents_seen = ?5, errors = ?6 WHERE id = ?1",
    )
    .bind(&[
        JsValue::from_f64(run_id),
        status.into(),
        JsValue::from_f64(finished),
        JsValue::from_f64(objects as f64),
        JsValue::from_f64(documents as f64),
        errors.to_string().into(),
    ])?
    .run()
    .await?;
    outcome?;
    Ok(
        json!({ "run_id": run_id, "objects_seen": objects, "documents_seen": documents, "duration_ms": finished - started }),
    )
}

async fn inventory(env: &Env) -> worker::Result<(u64, u64)> {
    let bucket = env.bucket(bindings::DOCUMENTS)?;
    let mut objects = 0u64;
    let mut cursor: Option<String> = None;
    loop {
        let mut list = bucket.list().limit(R2_LIST_PAGE);
        if let Some(c) = &cursor {
            list = list.cursor(c.clone());
        }
        let page = list.execute().await?;
        objects += page.objects().len() as u64;
        cursor = page.cursor();
        if !page.truncated() || cursor.is_none() {
            break;
        }
    }
    let db = env.d1(bindings::DB)?;
    let documents: Option<f64> = db
        .prepare("SELECT COUNT(*) AS n FROM documents WHERE status != 'deleted'")
        .first(Some("n"))
        .await?;
    Ok((objects, documents.unwrap_or(0.0) as u64))
}
