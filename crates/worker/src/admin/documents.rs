//! `/admin/documents`: the path for local use (where R2 emits no
//! notifications) and for operators. Every change goes through R2 and the
//! ingest queue, exactly like an R2 event, so there is one ingestion path.
//! What an upload must satisfy, which status filter is valid and how a
//! document's status is assembled are `portfolio_core::admin`'s.

use crate::body::{read_limited, read_text_limited};
use crate::error::{bad_json, json_response, ApiError};
use crate::ingest::PROCESSOR_ORIGIN;
use crate::root::Root;
use portfolio_core::admin::{
    check_sha_claim, document_status, page_size, runs_limit, status_filter, MAX_DOCUMENT_BYTES,
};
use portfolio_core::api::paging::{cut_page, fetch_size, id_cursor};
use portfolio_core::api::MAX_ADMIN_JSON_BYTES;
use portfolio_core::document::keys::{sha256_hex, DocumentKey, CONTENT_SHA256_HEADER};
use portfolio_core::document::parse_document;
use portfolio_core::ingest::message::IngestCommand;
use portfolio_core::ingest::pipeline::PublicStatus;
use portfolio_core::ingest::store::DocumentStore;
use portfolio_core::shared::storage::ObjectStore;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;
use worker::{Request, Response};

pub(super) async fn enqueue(root: &Root, command: IngestCommand) -> Result<(), ApiError> {
    root.ingest_queue()
        .map_err(|e| ApiError::Platform(worker::Error::RustError(format!("enqueue: {e}"))))?
        .send(&command)
        .await
        .map_err(|e| ApiError::Platform(worker::Error::RustError(format!("enqueue: {e}"))))
}

pub async fn put(key: DocumentKey, mut req: Request, root: &Root) -> Result<Response, ApiError> {
    let bytes = read_limited(&mut req, MAX_DOCUMENT_BYTES).await?;
    // Refuse what can never become a document before storing anything.
    parse_document(&key, &bytes)
        .map_err(|e| ApiError::Unprocessable("invalid_document", e.to_string()))?;
    let sha256 = sha256_hex(&bytes);
    check_sha_claim(
        req.headers().get(CONTENT_SHA256_HEADER)?.as_deref(),
        &sha256,
    )?;
    let size = bytes.len();
    let etag = root
        .objects()?
        .put_markdown(key.as_str(), bytes, &sha256)
        .await?;
    // A new document is listed as `queued` at once; an existing row keeps the
    // status of what it serves until its processor reports otherwise.
    root.documents()?
        .ensure_document(key.as_str(), worker::Date::now().as_millis())
        .await?;
    enqueue(
        root,
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

pub async fn delete(key: DocumentKey, root: &Root) -> Result<Response, ApiError> {
    root.objects()?.delete(key.as_str()).await?;
    enqueue(
        root,
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

pub async fn process(
    key: DocumentKey,
    mut req: Request,
    root: &Root,
) -> Result<Response, ApiError> {
    let query_force = req
        .url()?
        .query_pairs()
        .any(|(k, v)| k == "force" && (v == "true" || v == "1"));
    let text = read_text_limited(&mut req, MAX_ADMIN_JSON_BYTES).await?;
    let body: ProcessBody = if text.trim().is_empty() {
        ProcessBody::default()
    } else {
        serde_json::from_str(&text).map_err(|e| bad_json(&e))?
    };
    let objects = root.objects()?;
    if objects.head(key.as_str()).await?.is_none() {
        return Err(ApiError::NotFound(format!(
            "no object {} in the bucket",
            key.as_str()
        )));
    }
    let force = query_force || body.force;
    enqueue(
        root,
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

pub async fn status(key: DocumentKey, root: &Root) -> Result<Response, ApiError> {
    let row = root.documents()?.document_row(key.as_str()).await?;
    let row = row
        .map(|r| serde_json::to_value(&r))
        .transpose()
        .map_err(|e| ApiError::Platform(worker::Error::RustError(e.to_string())))?;
    let mut processor = root
        .processor(key.as_str())?
        .fetch_with_str(&format!("{PROCESSOR_ORIGIN}/status"))
        .await?;
    let processor: Value = processor.json().await?;
    match document_status(row, processor) {
        Some(body) => Ok(json_response(&body, 200)?),
        None => Err(ApiError::NotFound(format!("no document {}", key.as_str()))),
    }
}

/// `GET /admin/documents/{key}/runs`: the document's runs, newest first.
pub async fn runs(key: DocumentKey, req: Request, root: &Root) -> Result<Response, ApiError> {
    let query: HashMap<String, String> = req.url()?.query_pairs().into_owned().collect();
    let limit = runs_limit(query.get("limit").map(String::as_str))?;
    let before = id_cursor(query.get("cursor").map(String::as_str))?;
    let runs = root
        .history()?
        .runs(key.as_str(), before, fetch_size(limit))
        .await?;
    if runs.is_empty() && before == 0 {
        let row = root.documents()?.document_row(key.as_str()).await?;
        if row.is_none() {
            return Err(ApiError::NotFound(format!("no document {}", key.as_str())));
        }
    }
    let page = cut_page(runs, limit, |r| r.id.to_string());
    Ok(json_response(
        &json!({ "key": key.as_str(), "runs": page.rows, "cursor": page.cursor }),
        200,
    )?)
}

pub async fn list(req: Request, root: &Root) -> Result<Response, ApiError> {
    let url = req.url()?;
    let query: HashMap<String, String> = url.query_pairs().into_owned().collect();
    let limit = page_size(query.get("limit").map(String::as_str))?;
    let known: Vec<&str> = PublicStatus::ALL.iter().map(|s| s.as_str()).collect();
    let status = status_filter(query.get("status").map(String::as_str), &known)?;
    let prefix = query.get("prefix").cloned().unwrap_or_default();
    let cursor = query.get("cursor").cloned().unwrap_or_default();
    let rows = root
        .documents()?
        .list_documents(&cursor, &prefix, status, fetch_size(limit))
        .await?;
    let page = cut_page(rows, limit, |r| r.key.clone());
    Ok(json_response(
        &json!({ "documents": page.rows, "cursor": page.cursor }),
        200,
    )?)
}
