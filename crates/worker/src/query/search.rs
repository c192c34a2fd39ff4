//! Hybrid retrieval: vector search (through the configured index), FTS5 BM25
//! keyword search and tag matching run concurrently, then the core fuses,
//! joins with the active generation's rows, dedupes and cuts to `top_k`.

use crate::bindings;
use crate::config::ServiceConfig;
use crate::error::{json_response, ApiError};
use crate::providers::ServiceEmbedder;
use crate::store::vector_index_from_env;
use portfolio_core::fusion::{
    bm25_relevance, fuse_rankings, FusionConfig, RetrievalSource, SourceRanking,
};
use portfolio_core::providers::Embedder;
use portfolio_core::query::{
    assemble_results, fts_expression, plan_search, query_tag_terms, ChunkRow, SearchPlan,
    SearchResult,
};
use portfolio_core::vector_index::{MetadataFilter, VectorIndex, VectorQuery};
use serde::{Deserialize, Serialize};
use serde_json::json;
use wasm_bindgen::JsValue;
use worker::{console_warn, D1Database, Env, Request, Response};

/// Milliseconds spent in each part of a retrieval.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RetrievalTimings {
    /// Embedding the query and searching the vector index.
    pub vector_ms: u64,
    /// FTS5 keyword search.
    pub keyword_ms: u64,
    /// Tag matching.
    pub tag_ms: u64,
    /// The whole retrieval, including fusion and reading the chunks.
    pub total_ms: u64,
}

/// Ranked results plus where the time went.
#[derive(Debug, Clone, Serialize)]
pub struct Retrieval {
    /// Best first.
    pub results: Vec<SearchResult>,
    /// Timings.
    pub timings: RetrievalTimings,
}

fn now() -> u64 {
    worker::Date::now().as_millis()
}

#[derive(Deserialize)]
struct RankRow {
    vector_id: String,
    score: f64,
}

#[derive(Deserialize)]
struct IdRow {
    id: f64,
}

async fn company_id(db: &D1Database, slug: &str) -> worker::Result<Option<i64>> {
    let row: Option<IdRow> = db
        .prepare("SELECT id FROM companies WHERE slug = ?1")
        .bind(&[slug.into()])?
        .first(None)
        .await?;
    Ok(row.map(|r| r.id as i64))
}

fn opt_id(id: Option<i64>) -> JsValue {
    id.map_or(JsValue::NULL, |i| JsValue::from_f64(i as f64))
}

async fn vector_hits(
    env: &Env,
    config: &ServiceConfig,
    plan: &SearchPlan,
    company: Option<i64>,
) -> Result<Vec<(String, f64)>, String> {
    let embedder = ServiceEmbedder::from_env(env, config).map_err(|e| e.to_string())?;
    let mut vectors = embedder
        .embed(std::slice::from_ref(&plan.query))
        .await
        .map_err(|e| e.to_string())?;
    let vector = vectors.pop().ok_or("the embedder returned no vector")?;
    let index = vector_index_from_env(env, config).map_err(|e| e.to_string())?;
    let query = VectorQuery {
        vector,
        top_k: plan.candidates() as usize,
        filter: company.map(MetadataFilter::company),
        return_metadata: false,
    };
    let matches = index.query(&query).await.map_err(|e| e.to_string())?;
    Ok(matches
        .into_iter()
        .map(|m| (m.id, f64::from(m.score)))
        .collect())
}

async fn keyword_hits(
    db: &D1Database,
    plan: &SearchPlan,
    company: Option<i64>,
) -> worker::Result<Vec<(String, f64)>> {
    let Some(expression) = fts_expression(&plan.query) else {
        return Ok(Vec::new());
    };
    let rows: Vec<RankRow> = db
        .prepare(
            "SELECT c.vector_id AS vector_id, bm25(chunks_fts) AS score FROM chunks_fts \
             JOIN chunks c ON c.id = chunks_fts.rowid JOIN documents d ON d.id = c.document_id \
             WHERE chunks_fts MATCH ?1 AND c.version = d.active_version AND (?2 IS NULL OR d.company_id = ?2) \
             ORDER BY score LIMIT ?3",
        )
        .bind(&[expression.into(), opt_id(company), JsValue::from_f64(f64::from(plan.candidates()))])?
        .all()
        .await?
        .results()?;
    Ok(rows
        .into_iter()
        .map(|r| (r.vector_id, bm25_relevance(r.score)))
        .collect())
}

async fn tag_hits(
    db: &D1Database,
    plan: &SearchPlan,
    company: Option<i64>,
) -> worker::Result<Vec<(String, f64)>> {
    let tags = if plan.tags.is_empty() {
        query_tag_terms(&plan.query)
    } else {
        plan.tags.clone()
    };
    if tags.is_empty() {
        return Ok(Vec::new());
    }
    let tags_json = serde_json::to_string(&tags).unwrap_or_else(|_| "[]".to_owned());
    let rows: Vec<RankRow> = db
        .prepare(
            // chunk_tags (migration 0004) is the index of chunks.tags: read only the asked tags.
            "SELECT c.vector_id AS vector_id, COUNT(*) AS score FROM chunk_tags t \
             JOIN chunks c ON c.id = t.chunk_id JOIN documents d ON d.id = c.document_id \
             WHERE t.tag IN (SELECT value FROM json_each(?1)) AND c.version = d.active_version \
             AND (?2 IS NULL OR d.company_id = ?2) \
             GROUP BY c.id ORDER BY score DESC, c.id LIMIT ?3",
        )
        .bind(&[
            tags_json.into(),
            opt_id(company),
            JsValue::from_f64(f64::from(plan.candidates())),
        ])?
        .all()
        .await?
        .results()?;
    Ok(rows.into_iter().map(|r| (r.vector_id, r.score)).collect())
}

async fn chunk_rows(db: &D1Database, ids: &[String]) -> worker::Result<Vec<ChunkRow>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let ids_json = serde_json::to_string(ids).unwrap_or_else(|_| "[]".to_owned());
    // One JSON parameter instead of one per id: D1 allows 100 bound parameters.
    db.prepare(
        "SELECT c.vector_id, c.document_id, d.key, d.title, co.slug AS company, c.chunk_index, c.heading_path, \
         c.content, c.tags, c.start_byte, c.end_byte FROM chunks c JOIN documents d ON d.id = c.document_id \
         LEFT JOIN companies co ON co.id = d.company_id \
         WHERE c.vector_id IN (SELECT value FROM json_each(?1)) AND c.version = d.active_version",
    )
    .bind(&[ids_json.into()])?
    .all()
    .await?
    .results()
}

async fn timed<T>(future: impl std::future::Future<Output = T>) -> (T, u64) {
    let started = now();
    let out = future.await;
    (out, now().saturating_sub(started))
}

/// Runs the hybrid retrieval for a validated plan.
pub async fn retrieve(
    env: &Env,
    config: &ServiceConfig,
    plan: &SearchPlan,
) -> Result<Retrieval, ApiError> {
    let started = now();
    let db = env.d1(bindings::DB)?;
    let company = match &plan.company {
        Some(slug) => match company_id(&db, slug).await? {
            Some(id) => Some(id),
            // An unknown company has no documents: nothing can match.
            None => {
                return Ok(Retrieval {
                    results: Vec::new(),
                    timings: RetrievalTimings::default(),
                })
            }
        },
        None => None,
    };
    let ((vector, vector_ms), (keyword, keyword_ms), (tag, tag_ms)) = futures_util::join!(
        timed(vector_hits(env, config, plan, company)),
        timed(keyword_hits(&db, plan, company)),
        timed(tag_hits(&db, plan, company)),
    );
    // A failing source degrades the answer; only all three failing is an error.
    let mut rankings = Vec::new();
    let mut failures = Vec::new();
    match vector {
        Ok(hits) => rankings.push(SourceRanking::new(RetrievalSource::Vector, hits)),
        Err(e) => failures.push(format!("vector: {e}")),
    }
    match keyword {
        Ok(hits) => rankings.push(SourceRanking::new(RetrievalSource::Keyword, hits)),
        Err(e) => failures.push(format!("keyword: {e}")),
    }
    match tag {
        Ok(hits) => rankings.push(SourceRanking::new(RetrievalSource::Tag, hits)),
        Err(e) => failures.push(format!("tag: {e}")),
    }
    if !failures.is_empty() {
        console_warn!(
            "{}",
            json!({ "level": "warn", "event": "retrieval_source_failed", "failures": failures })
        );
    }
    if rankings.is_empty() {
        return Err(ApiError::Platform(worker::Error::RustError(format!(
            "every retrieval source failed: {}",
            failures.join("; ")
        ))));
    }
    let fused = fuse_rankings(&FusionConfig::new(), &rankings);
    let ids: Vec<String> = fused.iter().map(|h| h.id.clone()).collect();
    let rows = chunk_rows(&db, &ids).await?;
    let results = assemble_results(&fused, &rows, &plan.tags, plan.top_k as usize);
    Ok(Retrieval {
        results,
        timings: RetrievalTimings {
            vector_ms,
            keyword_ms,
            tag_ms,
            total_ms: now().saturating_sub(started),
        },
    })
}

/// `POST /api/search`.
pub async fn handle(
    mut req: Request,
    env: &Env,
    config: &ServiceConfig,
) -> Result<Response, ApiError> {
    let body = req.bytes().await?;
    let plan = plan_search(&body)?;
    let retrieval = retrieve(env, config, &plan).await?;
    Ok(json_response(&retrieval, 200)?)
}
