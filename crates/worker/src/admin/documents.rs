//! `/admin/documents`: the path for local use (where R2 emits no
//! notifications) and for operators. Every change goes through R2 and the
//! ingest queue, exactly like an R2 event, so there is one ingestion path.

use crate::bindings;
use crate::body::{read_limited, read_text_limited};
use crate::error::{json_response, ApiError};
use crate::ingest::PROCESSOR_ORIGIN;
use crate::store::d1::D1Documents;
use crate::store::d1_history::D1History;
use crate::store::queue::QueueProducer;
use crate::store::r2::R2Documents;
use portfolio_core::admin::{merge_processor_status, page_size, runs_limit, MAX_DOCUMENT_BYTES};
use portfolio_core::api::MAX_ADMIN_JSON_BYTES;
use portfolio_core::document::keys::{sha256_hex, DocumentKey, CONTENT_SHA256_HEADER};
use portfolio_core::document::parse_document;
use portfolio_core::ingest::message::IngestCommand;
use portfolio_core::ingest::pipeline::PublicStatus;
use portfolio_core::ingest::store::DocumentStore;
use portfolio_core::shared::storage::{ObjectStore, StoreError};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;
use worker::{Env, Request, Response};

pub(super) fn store_error(e: StoreError) -> ApiError {
    ApiError::Platform(worker::Error::RustError(e.to_string()))
}

pub(super) async fn enqueue(env: &Env, command: IngestCommand) -> Result<(), ApiError> {
    QueueProducer::from_env(env, bindings::INGEST_QUEUE)
        .map_err(|e| ApiError::Platform(worker::Error::RustError(format!("enqueue: {e}"))))?
        .send(&command)
        .await
        .map_err(|e| ApiError::Platform(worker::Error::RustError(format!("enqueue: {e}"))))
}

pub async fn put(key: DocumentKey, mut req: Request, env: &Env) -> Result<Response, ApiError> {
    let bytes = read_limited(&mut req, MAX_DOCUMENT_BYTES).await?;
    // Refuse what can never become a document before storing anything.
    parse_document(&key, &bytes)
        .map_err(|e| ApiError::Unprocessable("invalid_document", e.to_string()))?;
    let sha256 = sha256_hex(&bytes);
    if let Some(claimed) = req.headers().get(CONTENT_SHA256_HEADER)? {
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
    D1Documents::from_env(env)
        .map_err(store_error)?
        .ensure_document(key.as_str(), worker::Date::now().as_millis())
        .await
        .map_err(store_error)?;
    enqueue(
        env,
        IngestCommand::Process {
            key: key.as_str().to_owned(),
            object: None,
            force: false,
            reason: "admin:put".into(),
        },
    )
    .await?;
    Ok(json_response(
        &json!({ "key": key.as_str(), "sha256": sha256, "size": size, "etag": etag, "status": "queued" }),
        202,
    )?)
}

pub async fn delete(key: DocumentKey, env: &Env) -> Result<Response, ApiError> {
    R2Documents::from_env(env)
        .map_err(store_error)?
        .delete(key.as_str())
        .await
        .map_err(store_error)?;
    enqueue(
        env,
        IngestCommand::Delete {
            key: key.as_str().to_owned(),
            event_time: None,
            reason: "admin:delete".into(),
        },
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

pub async fn process(key: DocumentKey, mut req: Request, env: &Env) -> Result<Response, ApiError> {
    let query_force = req
        .url()?
        .query_pairs()
        .any(|(k, v)| k == "force" && (v == "true" || v == "1"));
    let text = read_text_limited(&mut req, MAX_ADMIN_JSON_BYTES).await?;
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
        IngestCommand::Process {
            key: key.as_str().to_owned(),
            object: None,
            force,
            reason: "admin:process".into(),
        },
    )
    .await?;
    Ok(json_response(
        &json!({ "key": key.as_str(), "force": force, "status": "queued" }),
        202,
    )?)
}

pub async fn status(key: DocumentKey, env: &Env) -> Result<Response, ApiError> {
    let row = D1Documents::from_env(env)
        .map_err(store_error)?
        .document_row(key.as_str())
        .await
        .map_err(store_error)?;
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
    let mut body = serde_json::to_value(&row)
        .map_err(|e| ApiError::Platform(worker::Error::RustError(e.to_string())))?;
    merge_processor_status(&mut body, &processor);
    Ok(json_response(&body, 200)?)
}

/// An id cursor (`cursor=` of a newest-first listing): absent is 0, the start.
pub(super) fn id_cursor(cursor: Option<&String>) -> Result<u64, ApiError> {
    match cursor.map(String::as_str) {
        None | Some("") => Ok(0),
        Some(text) => text.parse::<u64>().map_err(|_| {
            ApiError::BadRequest(
                "bad_cursor",
                "`cursor` must be the `cursor` of a previous page".into(),
            )
        }),
    }
}

/// `GET /admin/documents/{key}/runs`: the document's runs, newest first.
pub async fn runs(key: DocumentKey, req: Request, env: &Env) -> Result<Response, ApiError> {
    let query: HashMap<String, String> = req.url()?.query_pairs().into_owned().collect();
    let limit = runs_limit(query.get("limit").map(String::as_str))?;
    let before = id_cursor(query.get("cursor"))?;
    let mut runs = D1History::from_env(env)
        .map_err(store_error)?
        .runs(key.as_str(), before, limit + 1)
        .await
        .map_err(store_error)?;
    if runs.is_empty() && before == 0 {
        let row = D1Documents::from_env(env)
            .map_err(store_error)?
            .document_row(key.as_str())
            .await
            .map_err(store_error)?;
        if row.is_none() {
            return Err(ApiError::NotFound(format!("no document {}", key.as_str())));
        }
    }
    let more = runs.len() > limit as usize;
    runs.truncate(limit as usize);
    let cursor = if more {
        runs.last().map(|r| r.id.to_string())
    } else {
        None
    };
    Ok(json_response(
        &json!({ "key": key.as_str(), "runs": runs, "cursor": cursor }),
        200,
    )?)
}

pub async fn list(req: Request, env: &Env) -> Result<Response, ApiError> {
    let url = req.url()?;
    let query: HashMap<String, String> = url.query_pairs().into_owned().collect();
    let limit = page_size(query.get("limit").map(String::as_str))?;
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
    let mut page = D1Documents::from_env(env)
        .map_err(store_error)?
        .list_documents(&cursor, &prefix, status, limit + 1)
        .await
        .map_err(store_error)?;
    let more = page.len() > limit as usize;
    page.truncate(limit as usize);
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
