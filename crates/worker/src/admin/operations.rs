//! `/admin/metrics` (and its split per Worker version), `/admin/dead-letters`
//! (and their replay): operating the service without SQL. The reports'
//! arithmetic is `portfolio_core::operations::metrics`; the points come from
//! the configured reader (`store::point_reader`: D1 or Analytics Engine), the
//! document and queue counts from `store::d1_metrics`, the letters from
//! `store::d1_history`.

use super::documents::enqueue;
use crate::config::ServiceConfig;
use crate::error::{json_response, ApiError};
use crate::root::Root;
use crate::store::WorkerClock;
use portfolio_core::admin::page_size;
use portfolio_core::api::paging::{cut_page, fetch_size, id_cursor};
use portfolio_core::ingest::message::IngestCommand;
use portfolio_core::operations::metrics::{ComparisonWindow, MetricsReader, MetricsWindow};
use portfolio_core::shared::storage::{Clock, ObjectStore};
use serde_json::json;
use std::collections::HashMap;
use worker::{Request, Response};

fn query(req: &Request) -> Result<HashMap<String, String>, ApiError> {
    Ok(req.url()?.query_pairs().into_owned().collect())
}

/// `GET /admin/metrics?window=1h|24h|7d`.
pub async fn metrics(
    req: Request,
    root: &Root,
    config: &ServiceConfig,
) -> Result<Response, ApiError> {
    let query = query(&req)?;
    let window = MetricsWindow::parse(query.get("window").map(String::as_str))?;
    let reader = root.point_reader(config)?;
    // The isolate's waiting points first (locally), so the report has them.
    root.metrics().flush().await;
    let now = WorkerClock.now_ms();
    let (mut report, rows) = reader.report(window, now).await?;
    let store = root.metric_points()?;
    let documents = store.document_counts(now).await?;
    report.queue = Some(store.queue_counts(&documents, report.from_ms).await?);
    report.documents = Some(documents);
    let mut body = serde_json::to_value(&report)
        .map_err(|e| ApiError::Platform(worker::Error::RustError(e.to_string())))?;
    if let Some(map) = body.as_object_mut() {
        map.insert("sink".into(), config.metrics.sink.as_str().into());
        map.insert("source".into(), reader.source().into());
        map.insert("rows_read".into(), rows.into());
    }
    Ok(json_response(&body, 200)?)
}

/// `GET /admin/metrics/versions?window=15m`: public requests per Worker
/// version over the window (default 1h), for a gradual deployment's checks.
pub async fn metrics_by_version(
    req: Request,
    root: &Root,
    config: &ServiceConfig,
) -> Result<Response, ApiError> {
    let query = query(&req)?;
    let window = ComparisonWindow::parse(query.get("window").map(String::as_str))?;
    let reader = root.point_reader(config)?;
    root.metrics().flush().await;
    let (report, rows) = reader.versions(window, WorkerClock.now_ms()).await?;
    let mut body = serde_json::to_value(report)
        .map_err(|e| ApiError::Platform(worker::Error::RustError(e.to_string())))?;
    if let Some(map) = body.as_object_mut() {
        map.insert("source".into(), reader.source().into());
        map.insert("rows_read".into(), rows.into());
    }
    Ok(json_response(&body, 200)?)
}

/// `GET /admin/dead-letters?cursor=&limit=`: newest first.
pub async fn dead_letters(req: Request, root: &Root) -> Result<Response, ApiError> {
    let query = query(&req)?;
    let limit = page_size(query.get("limit").map(String::as_str))?;
    let before = id_cursor(query.get("cursor").map(String::as_str))?;
    let letters = root
        .history()?
        .dead_letters(before, fetch_size(limit))
        .await?;
    let page = cut_page(letters, limit, |l| l.id.to_string());
    Ok(json_response(
        &json!({ "dead_letters": page.rows, "cursor": page.cursor }),
        200,
    )?)
}

/// `POST /admin/dead-letters/{id}/replay`: enqueues a forced run of the
/// letter's document as R2 holds it now, like `POST /admin/documents/{key}/process`.
pub async fn replay(id: u64, root: &Root) -> Result<Response, ApiError> {
    let history = root.history()?;
    let letter = history
        .dead_letter(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no dead letter {id}")))?;
    let Some(key) = letter.document_key else {
        return Err(ApiError::Conflict(
            "not_replayable",
            format!("dead letter {id} names no document (its message was malformed)"),
        ));
    };
    let objects = root.objects()?;
    if objects.head(&key).await?.is_none() {
        return Err(ApiError::NotFound(format!(
            "no object {key} in the bucket; nothing to replay"
        )));
    }
    enqueue(
        root,
        IngestCommand::Process {
            key: key.clone(),
            object: None,
            force: true,
            reason: "admin:replay".into(),
        },
    )
    .await?;
    let replays = history.mark_replayed(id, WorkerClock.now_ms()).await?;
    Ok(json_response(
        &json!({ "id": id, "key": key, "force": true, "status": "queued", "replays": replays }),
        202,
    )?)
}
