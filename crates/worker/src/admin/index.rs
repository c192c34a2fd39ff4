//! Operator endpoints over the configured vector index: describe, query, upsert, get, delete,
//! and the check that the index answers the metadata filters the service sends.
//!
//! Owns the request/response bodies of `/admin/index*`; must never validate vectors or rank
//! (the index and the core do), so these routes exercise exactly the code ingestion uses.

use crate::body::read_text_limited;
use crate::config::ServiceConfig;
use crate::error::{json_response, ApiError};
use crate::root::Root;
use portfolio_core::api::MAX_ADMIN_JSON_BYTES;
use portfolio_core::index::{
    check_metadata_filters, MetadataFilter, VectorIndex, VectorQuery, VectorRecord,
};
use portfolio_core::providers::offline_embedder::HashingEmbedder;
use portfolio_core::providers::Embedder;
use portfolio_core::providers::ProviderKind;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::json;
use worker::{Request, Response};

/// `POST /admin/index/query`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct QueryBody {
    vector: Option<Vec<f32>>,
    text: Option<String>,
    top_k: usize,
    #[serde(default)]
    filter: Option<MetadataFilter>,
    #[serde(default = "default_true")]
    return_metadata: bool,
}

fn default_true() -> bool {
    true
}

/// `POST /admin/index/upsert`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UpsertBody {
    vectors: Vec<VectorRecord>,
}

/// `POST /admin/index/get` and `POST /admin/index/delete`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct IdsBody {
    ids: Vec<String>,
}

async fn read_json<T: DeserializeOwned>(req: &mut Request) -> Result<T, ApiError> {
    let text = read_text_limited(req, MAX_ADMIN_JSON_BYTES).await?;
    serde_json::from_str(&text)
        .map_err(|e| ApiError::BadRequest("invalid_request", format!("invalid JSON body: {e}")))
}

/// `GET /admin/index`: implementation, dimensions, vector count (and, for Vectorize, the
/// last mutation applied).
pub async fn describe(root: &Root, config: &ServiceConfig) -> Result<Response, ApiError> {
    let index = root.vector_index(config)?;
    let info = index.describe().await?;
    Ok(json_response(&info, 200)?)
}

/// Documents tried as the filter check's sample, newest first (the first visible one is used).
const CHECK_CANDIDATES: u32 = 5;

/// `GET /admin/index/check`: whether the index answers the metadata filters the service sends
/// (`portfolio_core::index::check_metadata_filters`). The Vectorize binding cannot list
/// metadata indexes, so this probes their effect with a vector of a recent ready document.
pub async fn check(root: &Root, config: &ServiceConfig) -> Result<Response, ApiError> {
    let candidates = root.documents()?.probe_vector_ids(CHECK_CANDIDATES).await?;
    let index = root.vector_index(config)?;
    let report = check_metadata_filters(&index, &candidates).await?;
    Ok(json_response(&report, 200)?)
}

/// `POST /admin/index/query`: `{ vector | text, top_k, filter?, return_metadata? }` → matches.
pub async fn query(
    mut req: Request,
    root: &Root,
    config: &ServiceConfig,
) -> Result<Response, ApiError> {
    let body: QueryBody = read_json(&mut req).await?;
    let vector = match (body.vector, body.text) {
        (Some(vector), None) => vector,
        (None, Some(text)) => embed_text(config, text).await?,
        _ => {
            return Err(ApiError::BadRequest(
                "invalid_request",
                "give exactly one of `vector` and `text`".into(),
            ))
        }
    };
    let index = root.vector_index(config)?;
    let matches = index
        .query(&VectorQuery {
            vector,
            top_k: body.top_k,
            filter: body.filter,
            return_metadata: body.return_metadata,
            approximate: false,
        })
        .await?;
    Ok(json_response(
        &json!({ "implementation": index.implementation(), "matches": matches }),
        200,
    )?)
}

/// Embeds a text query. Only the offline embedder is wired here so far; the provider-backed
/// embedders arrive with the query service.
async fn embed_text(config: &ServiceConfig, text: String) -> Result<Vec<f32>, ApiError> {
    if config.embedding_provider != ProviderKind::Offline {
        return Err(ApiError::BadRequest(
            "embedder_not_available",
            format!(
                "text queries need an embedder; EMBEDDING_PROVIDER={} is not wired to this endpoint yet, send `vector`",
                config.embedding_provider.as_str()
            ),
        ));
    }
    let embedder = HashingEmbedder::new(config.dimensions as usize)
        .map_err(|e| ApiError::BadRequest("embedder_not_available", e.to_string()))?;
    let mut vectors = embedder
        .embed(&[text])
        .await
        .map_err(|e| ApiError::BadRequest("embedder_not_available", e.to_string()))?;
    vectors.pop().ok_or_else(|| {
        ApiError::BadRequest(
            "embedder_not_available",
            "the embedder returned nothing".into(),
        )
    })
}

/// `POST /admin/index/upsert`: `{ vectors: [{ id, values, metadata }] }` → `{ count, mutation_ids }`.
pub async fn upsert(
    mut req: Request,
    root: &Root,
    config: &ServiceConfig,
) -> Result<Response, ApiError> {
    let body: UpsertBody = read_json(&mut req).await?;
    let index = root.vector_index(config)?;
    let receipt = index.upsert(&body.vectors).await?;
    Ok(json_response(&receipt, 200)?)
}

/// `POST /admin/index/get`: `{ ids }` → `{ vectors }` (missing ids are left out).
pub async fn get(
    mut req: Request,
    root: &Root,
    config: &ServiceConfig,
) -> Result<Response, ApiError> {
    let body: IdsBody = read_json(&mut req).await?;
    let index = root.vector_index(config)?;
    let vectors = index.get_by_ids(&body.ids).await?;
    Ok(json_response(&json!({ "vectors": vectors }), 200)?)
}

/// `POST /admin/index/delete`: `{ ids }` → `{ count, mutation_ids }`.
pub async fn delete(
    mut req: Request,
    root: &Root,
    config: &ServiceConfig,
) -> Result<Response, ApiError> {
    let body: IdsBody = read_json(&mut req).await?;
    let index = root.vector_index(config)?;
    let receipt = index.delete_by_ids(&body.ids).await?;
    Ok(json_response(&receipt, 200)?)
}
