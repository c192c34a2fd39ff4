//! `/admin/metrics` (and its split per Worker version), `/admin/dead-letters`
//! (and their replay): operating the service without SQL. The reports'
//! arithmetic is `portfolio_core::operations::metrics`; the rows come from
//! `store::d1_metrics` and `store::d1_history`.

use super::documents::{enqueue, id_cursor, store_error};
use crate::bindings;
use crate::config::ServiceConfig;
use crate::error::{json_response, ApiError};
use crate::store::d1_history::D1History;
use crate::store::d1_metrics::D1Metrics;
use crate::store::r2::R2Documents;
use crate::store::WorkerClock;
use portfolio_core::admin::page_size;
use portfolio_core::ingest::message::IngestCommand;
use portfolio_core::operations::metrics::{
    ComparisonWindow, ComparisonWindowError, MetricsSummary, MetricsWindow, VersionComparison,
    WindowError,
};
use portfolio_core::shared::storage::{Clock, ObjectStore};
use serde_json::json;
use std::collections::HashMap;
use worker::{Env, Request, Response};

fn query(req: &Request) -> Result<HashMap<String, String>, ApiError> {
    Ok(req.url()?.query_pairs().into_owned().collect())
}

/// `GET /admin/metrics?window=1h|24h|7d`.
pub async fn metrics(
    req: Request,
    env: &Env,
    config: &ServiceConfig,
) -> Result<Response, ApiError> {
    let query = query(&req)?;
    let window = MetricsWindow::parse(query.get("window").map(String::as_str))
        .map_err(|e| ApiError::BadRequest(WindowError::CODE, e.to_string()))?;
    let now = WorkerClock.now_ms();
    let store = D1Metrics::new(env.d1(bindings::DB)?);
    let mut summary = MetricsSummary::for_window(window, now);
    let rows = store
        .read_into(&mut summary, now, config.metrics.max_rows)
        .await
        .map_err(store_error)?;
    let mut report = summary.report();
    let documents = store.document_counts(now).await.map_err(store_error)?;
    report.queue = Some(
        store
            .queue_counts(&documents, report.from_ms)
            .await
            .map_err(store_error)?,
    );
    report.documents = Some(documents);
    let mut body = serde_json::to_value(&report)
        .map_err(|e| ApiError::Platform(worker::Error::RustError(e.to_string())))?;
    if let Some(map) = body.as_object_mut() {
        map.insert("sink".into(), config.metrics.sink.as_str().into());
        map.insert("rows_read".into(), rows.into());
    }
    Ok(json_response(&body, 200)?)
}

/// `GET /admin/metrics/versions?window=15m`: public requests per Worker
/// version over the window (default 1h), for a gradual deployment's checks.
pub async fn metrics_by_version(
    req: Request,
    env: &Env,
    config: &ServiceConfig,
) -> Result<Response, ApiError> {
    let query = query(&req)?;
    let window = ComparisonWindow::parse(query.get("window").map(String::as_str))
        .map_err(|e| ApiError::BadRequest(ComparisonWindowError::CODE, e.to_string()))?;
    let store = D1Metrics::new(env.d1(bindings::DB)?);
    let mut comparison = VersionComparison::new(window, WorkerClock.now_ms());
    let rows = store
        .read_requests_into(&mut comparison, config.metrics.max_rows)
        .await
        .map_err(store_error)?;
    let mut body = serde_json::to_value(comparison.report())
        .map_err(|e| ApiError::Platform(worker::Error::RustError(e.to_string())))?;
    if let Some(map) = body.as_object_mut() {
        map.insert("rows_read".into(), rows.into());
    }
    Ok(json_response(&body, 200)?)
}

/// `GET /admin/dead-letters?cursor=&limit=`: newest first.
pub async fn dead_letters(req: Request, env: &Env) -> Result<Response, ApiError> {
    let query = query(&req)?;
    let limit = page_size(query.get("limit").map(String::as_str))?;
    let before = id_cursor(query.get("cursor"))?;
    let mut letters = D1History::from_env(env)
        .map_err(store_error)?
        .dead_letters(before, limit + 1)
        .await
        .map_err(store_error)?;
    let more = letters.len() > limit as usize;
    letters.truncate(limit as usize);
    let cursor = if more {
        letters.last().map(|l| l.id.to_string())
    } else {
        None
    };
    Ok(json_response(
        &json!({ "dead_letters": letters, "cursor": cursor }),
        200,
    )?)
}

/// `POST /admin/dead-letters/{id}/replay`: enqueues a forced run of the
/// letter's document as R2 holds it now, like `POST /admin/documents/{key}/process`.
pub async fn replay(id: u64, env: &Env) -> Result<Response, ApiError> {
    let history = D1History::from_env(env).map_err(store_error)?;
    let letter = history
        .dead_letter(id)
        .await
        .map_err(store_error)?
        .ok_or_else(|| ApiError::NotFound(format!("no dead letter {id}")))?;
    let Some(key) = letter.document_key else {
        return Err(ApiError::Conflict(
            "not_replayable",
            format!("dead letter {id} names no document (its message was malformed)"),
        ));
    };
    let objects = R2Documents::from_env(env).map_err(store_error)?;
    if objects.head(&key).await.map_err(store_error)?.is_none() {
        return Err(ApiError::NotFound(format!(
            "no object {key} in the bucket; nothing to replay"
        )));
    }
    enqueue(
        env,
        IngestCommand::Process {
            key: key.clone(),
            object: None,
            force: true,
            reason: "admin:replay".into(),
        },
    )
    .await?;
    let replays = history
        .mark_replayed(id, WorkerClock.now_ms())
        .await
        .map_err(store_error)?;
    Ok(json_response(
        &json!({ "id": id, "key": key, "force": true, "status": "queued", "replays": replays }),
        202,
    )?)
}
