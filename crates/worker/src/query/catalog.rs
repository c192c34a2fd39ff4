//! `GET /api/companies` and `GET /api/documents`: what can be asked about,
//! without admin data (no errors, hashes or processing state). The reads are
//! in `store::d1_search`.

use crate::bindings;
use crate::error::{json_response, ApiError};
use crate::store::d1_search::D1Search;
use portfolio_core::admin::page_size;
use portfolio_core::shared::storage::StoreError;
use serde::Serialize;
use worker::{Env, Request, Response};

#[derive(Serialize)]
struct PublicDocument {
    key: String,
    title: Option<String>,
    company: Option<String>,
    tags: Vec<String>,
    chunk_count: u64,
    updated_at: u64,
}

fn store_error(e: StoreError) -> ApiError {
    ApiError::Platform(worker::Error::RustError(e.to_string()))
}

/// `GET /api/companies`: companies with at least one served document.
pub async fn companies(env: &Env) -> Result<Response, ApiError> {
    let companies = D1Search::new(env.d1(bindings::DB)?)
        .catalog_companies()
        .await
        .map_err(store_error)?;
    Ok(json_response(
        &serde_json::json!({ "companies": companies }),
        200,
    )?)
}

/// `GET /api/documents?company=&cursor=&limit=`: the served documents, a
/// page at a time in key order (`cursor`: the last key of the previous page).
pub async fn documents(req: &Request, env: &Env) -> Result<Response, ApiError> {
    let query: std::collections::HashMap<String, String> =
        req.url()?.query_pairs().into_owned().collect();
    let limit = page_size(query.get("limit").map(String::as_str))?;
    let cursor = query.get("cursor").map_or("", String::as_str);
    let mut rows = D1Search::new(env.d1(bindings::DB)?)
        .catalog_documents(query.get("company").map(String::as_str), cursor, limit + 1)
        .await
        .map_err(store_error)?;
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let next = if more {
        rows.last().map(|r| r.key.clone())
    } else {
        None
    };
    let documents: Vec<PublicDocument> = rows
        .into_iter()
        .map(|r| PublicDocument {
            tags: serde_json::from_str(&r.tags).unwrap_or_default(),
            key: r.key,
            title: r.title,
            company: r.company,
            chunk_count: r.chunk_count as u64,
            updated_at: r.updated_at as u64,
        })
        .collect();
    Ok(json_response(
        &serde_json::json!({ "documents": documents, "cursor": next }),
        200,
    )?)
}
