//! `GET /api/companies` and `GET /api/documents`: what can be asked about,
//! without admin data (no errors, hashes or processing state). The reads are
//! in `store::d1_search`.

use crate::error::{json_response, ApiError};
use crate::root::Root;
use portfolio_core::admin::page_size;
use portfolio_core::api::paging::{cut_page, fetch_size};
use serde::Serialize;
use worker::{Request, Response};

#[derive(Serialize)]
struct PublicDocument {
    key: String,
    title: Option<String>,
    company: Option<String>,
    tags: Vec<String>,
    chunk_count: u64,
    updated_at: u64,
}

/// `GET /api/companies`: companies with at least one served document.
pub async fn companies(root: &Root) -> Result<Response, ApiError> {
    let companies = root.search()?.catalog_companies().await?;
    Ok(json_response(
        &serde_json::json!({ "companies": companies }),
        200,
    )?)
}

/// `GET /api/documents?company=&cursor=&limit=`: the served documents, a
/// page at a time in key order (`cursor`: the last key of the previous page).
pub async fn documents(req: &Request, root: &Root) -> Result<Response, ApiError> {
    let query: std::collections::HashMap<String, String> =
        req.url()?.query_pairs().into_owned().collect();
    let limit = page_size(query.get("limit").map(String::as_str))?;
    let cursor = query.get("cursor").map_or("", String::as_str);
    let rows = root
        .search()?
        .catalog_documents(
            query.get("company").map(String::as_str),
            cursor,
            fetch_size(limit),
        )
        .await?;
    let page = cut_page(rows, limit, |r| r.key.clone());
    let documents: Vec<PublicDocument> = page
        .rows
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
        &serde_json::json!({ "documents": documents, "cursor": page.cursor }),
        200,
    )?)
}
