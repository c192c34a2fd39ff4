//! `/admin/documents`: the path for local use (where R2 emits no
//! notifications) and for operators. Every change goes through R2 and the
//! ingest queue, exactly like an R2 event, so there is one ingestion path.

use crate::bindings;
use crate::error::{json_response, ApiError};
use crate::ingest::PROCESSOR_ORIGIN;
use crate::store::queue::QueueProducer;
use crate::store::r2::R2Documents;
use portfolio_core::admin::{page_size, DocumentRoute, MAX_DOCUMENT_BYTES};
use portfolio_core::document::parse_document;
use portfolio_core::keys::{sha256_hex, DocumentKey};
use portfolio_core::pipeline::PublicStatus;
use portfolio_core::storage::{ObjectStore, StoreError};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::HashMap;
use wasm_bindgen::JsValue;
use worker::{Env, Request, Response};

/// Header a client may send to have the upload's SHA-256 verified.
const SHA256_HEADER: &str = "x-content-sha256";

pub async fn handle(route: DocumentRoute, req: Request, env: &Env) -> Result<Response, ApiError> {
    match route {
        DocumentRoute::Put(key) => put(key, req, env).await,
        DocumentRoute::Delete(key) => delete(key, env).await,
        DocumentRoute::Process(key) => process(key, req, env).await,
        DocumentRoute::Get(key) => status(key, env).await,
        DocumentRoute::List => list(req, env).await,
    }
}

fn store_error(e: StoreError) -> ApiError {
    ApiError::Platform(worker::Error::RustError(e.to_string()))
}

async fn enqueue(env: &Env, message: Value) -> Result<(), ApiError> {
    QueueProducer::from_env(env, bindings::INGEST_QUEUE)
        .map_err(|e| ApiError::Platform(worker::Error::RustError(format!("enqueue: {e}"))))?
        .send(&message)
        .await
        .map_err(|e| ApiError::Platform(worker::Error::RustError(format!("enqueue: {e}"))))
}

async fn put(key: DocumentKey, mut req: Request, env: &Env) -> Result<Response, ApiError> {
    let bytes = req.bytes().await?;
    if bytes.len() > MAX_DOCUMENT_BYTES {
        return Err(ApiError::PayloadTooLarge(format!(
            "document is {} bytes; the limit is {MAX_DOCUMENT_BYTES}",
            bytes.len()
        )));
    }
    // Refuse what can never become a document before storing anything.
    parse_document(&key, &bytes)
        .map_err(|e| ApiError::Unprocessable("invalid_document", e.to_string()))?;
    let sha256 = sha256_hex(&bytes);
    if let Some(claimed) = req.headers().get(SHA256_HEADER)? {
        if !claimed.trim().eq_ignore_ascii_case(&sha256) {
            return Err(ApiError::BadRequest(
                "sha256_mismatch",
                format!("body hashes to {sha256}, the request said {claimed}"),
            ));
        }
    }
    let size = bytes.len();
    let etag = R2Documents::from_env(env)
        .map_err(store_error)?
        .put_markdown(key.as_str(), bytes, &sha256)
        .await
        .map_err(store_error)?;
    // A new document is listed as `queued` at once; an existing row keeps the
    // status of what it serves until its processor reports otherwise.
    let now = worker::Date::now().as_millis() as f64;
    env.d1(bindings::DB)?
        .prepare(
            "INSERT INTO documents (key, status, created_at, updated_at) VALUES (?1, 'queued', ?2, ?2) \
             ON CONFLICT(key) DO NOTHING",
        )
        .bind(&[key.as_str().into(), JsValue::from_f64(now)])?
        .run()
        .await?;
    enqueue(
        env,
        json!({ "type": "process", "key": key.as_str(), "reason": "admin:put" }),
    )
    .await?;
    Ok(json_response(
        &json!({ "key": key.as_str(), "sha256": sha256, "size": size, "etag": etag, "status": "queued" }),
        202,
    )?)
}

async fn delete(key: DocumentKey, env: &Env) -> Result<Response, ApiError> {
    R2Documents::from_env(env)
        .map_err(store_error)?
        .delete(key.as_str())
        .await
        .map_err(store_error)?;
    enqueue(
        env,
        json!({ "type": "delete", "key": key.as_str(), "reason": "admin:delete" }),
    )
    .await?;
    Ok(json_response(
        &json!({ "key": key.as_str(), "status": "deleting" }),
        202,
    )?)
}

#[derive(Deserialize, Default)]
struct ProcessBody {
    #[serde(default)]
    force: bool,
}

async fn process(key: DocumentKey, mut req: Request, env: &Env) -> Result<Response, ApiError> {
    let query_force = req
        .url()?
        .query_pairs()
        .any(|(k, v)| k == "force" && (v == "true" || v == "1"));
    let text = req.text().await?;
    let body: ProcessBody = if text.trim().is_empty() {
        ProcessBody::default()
    } else {
        serde_json::from_str(&text).map_err(|e| ApiError::BadRequest("bad_json", e.to_string()))?
    };
    let objects = R2Documents::from_env(env).map_err(store_error)?;
    if objects
        .head(key.as_str())
        .await
        .map_err(store_error)?
        .is_none()
    {
        return Err(ApiError::NotFound(format!(
            "no object {} in the bucket",
            key.as_str()
        )));
    }
    let force = query_force || body.force;
    enqueue(
        env,
        json!({ "type": "process", "key": key.as_str(), "force": force, "reason": "admin:process" }),
    )
    .await?;
    Ok(json_response(
        &json!({ "key": key.as_str(), "force": force, "status": "queued" }),
        202,
    )?)
}

#[derive(Deserialize, Serialize)]
struct DocumentRow {
    id: i64,
    key: String,
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
}

const ROW_COLUMNS: &str = "d.id, d.key, d.status, d.title, c.slug AS company, d.sha256, d.etag, d.size, \
    d.active_version, d.chunk_count, d.attempts, d.last_error, d.created_at, d.updated_at, d.processed_at";

async fn status(key: DocumentKey, env: &Env) -> Result<Response, ApiError> {
    let db = env.d1(bindings::DB)?;
    let row: Option<DocumentRow> = db
        .prepare(format!(
            "SELECT {ROW_COLUMNS} FROM documents d LEFT JOIN companies c ON c.id = d.company_id WHERE d.key = ?1"
        ))
        .bind(&[key.as_str().into()])?
        .first(None)
        .await?;
    let stub = env
        .durable_object(bindings::DOCUMENT_PROCESSOR)?
        .id_from_name(key.as_str())?
        .get_stub()?;
    let mut processor = stub
        .fetch_with_str(&format!("{PROCESSOR_ORIGIN}/status"))
        .await?;
    let processor: Value = processor.json().await?;
    let has_processor_state = processor.get("status").is_some();
    let Some(row) = row else {
        if has_processor_state {
            return Ok(json_response(&processor, 200)?);
        }
        return Err(ApiError::NotFound(format!("no document {}", key.as_str())));
    };
    // The processor is authoritative for the run in progress; D1 for what is served.
    let mut body = serde_json::to_value(&row)
        .map_err(|e| ApiError::Platform(worker::Error::RustError(e.to_string())))?;
    if let (Some(map), Some(live)) = (body.as_object_mut(), processor.as_object()) {
        for field in [
            "status",
            "step",
            "progress",
            "attempts",
            "last_error",
            "generation",
            "queued_at_ms",
            "started_at_ms",
            "finished_at_ms",
        ] {
            if let Some(value) = live.get(field) {
                map.insert(field.to_owned(), value.clone());
            }
        }
    }
    Ok(json_response(&body, 200)?)
}

async fn list(req: Request, env: &Env) -> Result<Response, ApiError> {
    let url = req.url()?;
    let query: HashMap<String, String> = url.query_pairs().into_owned().collect();
    let limit = page_size(query.get("limit").map(String::as_str));
    let status = query.get("status").map(String::as_str);
    if let Some(s) = status {
        if PublicStatus::parse(s).is_none() {
            let names: Vec<&str> = PublicStatus::ALL.iter().map(|s| s.as_str()).collect();
            return Err(ApiError::BadRequest(
                "bad_status",
                format!("status must be one of {}", names.join(", ")),
            ));
        }
    }
    let prefix = query.get("prefix").cloned().unwrap_or_default();
    let cursor = query.get("cursor").cloned().unwrap_or_default();
    let db = env.d1(bindings::DB)?;
    // Keyset pagination on the key: stable while documents change. Deleted
    // tombstones are listed only when asked for (`status=deleted`): a sync
    // client must not take them for stored documents.
    let rows: Vec<DocumentRow> = db
        .prepare(format!(
            "SELECT {ROW_COLUMNS} FROM documents d LEFT JOIN companies c ON c.id = d.company_id \
             WHERE d.key > ?1 AND substr(d.key, 1, length(?2)) = ?2 \
             AND ((?3 IS NULL AND d.status != 'deleted') OR d.status = ?3) \
             ORDER BY d.key LIMIT ?4"
        ))
        .bind(&[
            cursor.into(),
            prefix.into(),
            status.map_or(JsValue::NULL, JsValue::from_str),
            JsValue::from_f64(f64::from(limit) + 1.0),
        ])?
        .all()
        .await?
        .results()?;
    let more = rows.len() > limit as usize;
    let page: Vec<DocumentRow> = rows.into_iter().take(limit as usize).collect();
    let next = if more {
        page.last().map(|r| r.key.clone())
    } else {
        None
    };
    Ok(json_response(
        &json!({ "documents": page, "cursor": next }),
        200,
    )?)
}
