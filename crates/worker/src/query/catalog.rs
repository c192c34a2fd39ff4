//! `GET /api/companies` and `GET /api/documents`: what can be asked about,
//! without admin data (no errors, hashes or processing state).

use crate::bindings;
use crate::error::{json_response, ApiError};
use serde::{Deserialize, Serialize};
use wasm_bindgen::JsValue;
use worker::{Env, Request, Response};

#[derive(Deserialize, Serialize)]
struct CompanyRow {
    slug: String,
    name: String,
    documents: i64,
}

/// `GET /api/companies`: companies with at least one served document.
pub async fn companies(env: &Env) -> Result<Response, ApiError> {
    let rows: Vec<CompanyRow> = env
        .d1(bindings::DB)?
        .prepare(
            "SELECT c.slug, c.name, COUNT(d.id) AS documents FROM companies c \
             JOIN documents d ON d.company_id = c.id AND d.active_version IS NOT NULL AND d.status != 'deleted' \
             GROUP BY c.id ORDER BY c.slug",
        )
        .all()
        .await?
        .results()?;
    Ok(json_response(
        &serde_json::json!({ "companies": rows }),
        200,
    )?)
}

#[derive(Deserialize, Serialize)]
struct DocumentRow {
    key: String,
    title: Option<String>,
    company: Option<String>,
    tags: String,
    chunk_count: f64,
    updated_at: f64,
}

#[derive(Serialize)]
struct PublicDocument {
    key: String,
    title: Option<String>,
    company: Option<String>,
    tags: Vec<String>,
    chunk_count: u64,
    updated_at: u64,
}

/// `GET /api/documents?company=`: the served documents.
pub async fn documents(req: &Request, env: &Env) -> Result<Response, ApiError> {
    let company = req
        .url()?
        .query_pairs()
        .find(|(k, _)| k == "company")
        .map(|(_, v)| v.into_owned());
    let rows: Vec<DocumentRow> = env
        .d1(bindings::DB)?
        .prepare(
            "SELECT d.key, d.title, c.slug AS company, d.tags, d.chunk_count, d.updated_at FROM documents d \
             LEFT JOIN companies c ON c.id = d.company_id \
             WHERE d.active_version IS NOT NULL AND d.status != 'deleted' AND (?1 IS NULL OR c.slug = ?1) \
             ORDER BY d.key LIMIT 1000",
        )
        .bind(&[company.map_or(JsValue::NULL, |c| JsValue::from_str(&c))])?
        .all()
        .await?
        .results()?;
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
        &serde_json::json!({ "documents": documents }),
        200,
    )?)
}
