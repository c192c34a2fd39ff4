//! `/admin/companies` and `/admin/legacy-ids/documents`: the migration's
//! way in for companies with their real names and fields, and for the map
//! from the source's UUIDs to integer ids. Validation is
//! `portfolio_core::admin::companies`'; the SQL is `store::d1_companies`'.

use crate::error::{bad_json, json_response, ApiError};
use crate::root::Root;
use portfolio_core::admin::companies::{
    validate_companies, validate_document_legacy_ids, CompanyImportBatch, DocumentLegacyIdBatch,
};
use portfolio_core::admin::page_size;
use portfolio_core::api::paging::{cut_page, fetch_size};
use serde::de::DeserializeOwned;
use serde_json::json;
use std::collections::HashMap;
use worker::{Request, Response};

async fn body<T: DeserializeOwned>(mut req: Request) -> Result<T, ApiError> {
    let text = req.text().await?;
    serde_json::from_str(&text).map_err(|e| bad_json(&e))
}

pub async fn import(req: Request, root: &Root) -> Result<Response, ApiError> {
    let store = root.companies()?;
    let batch: CompanyImportBatch = body(req).await?;
    let companies = validate_companies(batch)
        .map_err(|e| ApiError::BadRequest("bad_company", e.to_string()))?;
    let outcomes = store
        .import(&companies, worker::Date::now().as_millis())
        .await?;
    let written = outcomes.iter().filter(|o| o.written).count();
    let mapped = outcomes.iter().filter(|o| o.mapped).count();
    Ok(json_response(
        &json!({
            "companies": outcomes,
            "written": written,
            "mapped": mapped,
            "unchanged": outcomes.len() - written,
        }),
        200,
    )?)
}

pub async fn map_documents(req: Request, root: &Root) -> Result<Response, ApiError> {
    let store = root.companies()?;
    let batch: DocumentLegacyIdBatch = body(req).await?;
    let documents = validate_document_legacy_ids(batch)
        .map_err(|e| ApiError::BadRequest("bad_mapping", e.to_string()))?;
    let outcomes = store.map_documents(&documents).await?;
    let missing: Vec<&str> = documents
        .iter()
        .zip(&outcomes)
        .filter(|(_, (_, present))| !present)
        .map(|((_, key), _)| key.as_str())
        .collect();
    Ok(json_response(
        &json!({
            "mapped": outcomes.iter().filter(|(written, _)| *written).count(),
            "missing": missing,
        }),
        200,
    )?)
}

pub async fn list(req: Request, root: &Root) -> Result<Response, ApiError> {
    let store = root.companies()?;
    let url = req.url()?;
    let query: HashMap<String, String> = url.query_pairs().into_owned().collect();
    let limit = page_size(query.get("limit").map(String::as_str))?;
    let after = match query.get("cursor") {
        Some(c) => c.parse::<i64>().map_err(|_| {
            ApiError::BadRequest("bad_cursor", format!("cursor {c:?} is not an id"))
        })?,
        None => 0,
    };
    let rows = store.list(after, fetch_size(limit)).await?;
    let page = cut_page(rows, limit, |r| r.id.to_string());
    Ok(json_response(
        &json!({ "companies": page.rows, "cursor": page.cursor }),
        200,
    )?)
}
