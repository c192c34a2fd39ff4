//! What the public query API reads from D1: retrieval's reads behind
//! `portfolio_core::query::SearchStore` (the company lookup, FTS5 BM25
//! matches, tag matches, chunk rows) and the public catalog (companies and
//! served documents).
//!
//! Translates calls only: which sources run, the degrade policy, fusion and
//! how rows become results stay in the core. Every query reads the active
//! generation only (`c.version = d.active_version`).

use portfolio_core::query::{ChunkRow, KeywordHit, SearchStore, TagHit};
use portfolio_core::shared::storage::StoreError;
use serde::{Deserialize, Serialize};
use wasm_bindgen::JsValue;
use worker::D1Database;

/// The `DB` database, as the query API reads it.
pub struct D1Search {
    db: D1Database,
}

impl std::fmt::Debug for D1Search {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("D1Search")
    }
}

impl D1Search {
    /// Reads through `db`.
    pub fn new(db: D1Database) -> Self {
        Self { db }
    }
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

fn transient(operation: &'static str) -> impl Fn(worker::Error) -> StoreError {
    move |e| StoreError::transient(operation, e)
}

fn opt_id(id: Option<i64>) -> JsValue {
    id.map_or(JsValue::NULL, |i| JsValue::from_f64(i as f64))
}

/// A list as one JSON parameter instead of one per item: D1 allows 100 bound parameters.
fn json_list(items: &[String]) -> JsValue {
    serde_json::to_string(items)
        .unwrap_or_else(|_| "[]".to_owned())
        .into()
}

impl SearchStore for D1Search {
    async fn company_id(&self, slug: &str) -> Result<Option<i64>, StoreError> {
        const OP: &str = "D1 company lookup";
        let row: Option<IdRow> = self
            .db
            .prepare("SELECT id FROM companies WHERE slug = ?1")
            .bind(&[slug.into()])
            .map_err(transient(OP))?
            .first(None)
            .await
            .map_err(transient(OP))?;
        Ok(row.map(|r| r.id as i64))
    }

    async fn keyword_hits(
        &self,
        expression: &str,
        company_id: Option<i64>,
        limit: u32,
    ) -> Result<Vec<KeywordHit>, StoreError> {
        const OP: &str = "D1 keyword search";
        let rows: Vec<RankRow> = self
            .db
            .prepare(
                "SELECT c.vector_id AS vector_id, bm25(chunks_fts) AS score FROM chunks_fts \
                 JOIN chunks c ON c.id = chunks_fts.rowid JOIN documents d ON d.id = c.document_id \
                 WHERE chunks_fts MATCH ?1 AND c.version = d.active_version AND (?2 IS NULL OR d.company_id = ?2) \
                 ORDER BY score LIMIT ?3",
            )
            .bind(&[
                expression.into(),
                opt_id(company_id),
                JsValue::from_f64(f64::from(limit)),
            ])
            .map_err(transient(OP))?
            .all()
            .await
            .map_err(transient(OP))?
            .results()
            .map_err(transient(OP))?;
        Ok(rows
            .into_iter()
            .map(|r| KeywordHit {
                vector_id: r.vector_id,
                bm25: r.score,
            })
            .collect())
    }

    async fn tag_hits(
        &self,
        tags: &[String],
        company_id: Option<i64>,
        limit: u32,
    ) -> Result<Vec<TagHit>, StoreError> {
        const OP: &str = "D1 tag search";
        let rows: Vec<RankRow> = self
            .db
            .prepare(
                // chunk_tags (migration 0004) is the index of chunks.tags: read only the asked tags.
                "SELECT c.vector_id AS vector_id, COUNT(*) AS score FROM chunk_tags t \
                 JOIN chunks c ON c.id = t.chunk_id JOIN documents d ON d.id = c.document_id \
                 WHERE t.tag IN (SELECT value FROM json_each(?1)) AND c.version = d.active_version \
                 AND (?2 IS NULL OR d.company_id = ?2) \
                 GROUP BY c.id ORDER BY score DESC, c.id LIMIT ?3",
            )
            .bind(&[
                json_list(tags),
                opt_id(company_id),
                JsValue::from_f64(f64::from(limit)),
            ])
            .map_err(transient(OP))?
            .all()
            .await
            .map_err(transient(OP))?
            .results()
            .map_err(transient(OP))?;
        Ok(rows
            .into_iter()
            .map(|r| TagHit {
                vector_id: r.vector_id,
                matched_tags: r.score as u32,
            })
            .collect())
    }

    async fn chunk_rows(&self, vector_ids: &[String]) -> Result<Vec<ChunkRow>, StoreError> {
        const OP: &str = "D1 chunk rows";
        self.db
            .prepare(
                "SELECT c.vector_id, c.document_id, d.key, d.title, co.slug AS company, c.chunk_index, c.heading_path, \
                 c.content, c.tags, c.start_byte, c.end_byte FROM chunks c JOIN documents d ON d.id = c.document_id \
                 LEFT JOIN companies co ON co.id = d.company_id \
                 WHERE c.vector_id IN (SELECT value FROM json_each(?1)) AND c.version = d.active_version",
            )
            .bind(&[json_list(vector_ids)])
            .map_err(transient(OP))?
            .all()
            .await
            .map_err(transient(OP))?
            .results()
            .map_err(transient(OP))
    }
}

/// A company with at least one served document (`GET /api/companies`).
#[derive(Debug, Deserialize, Serialize)]
pub struct CatalogCompany {
    /// Company slug.
    pub slug: String,
    /// Display name.
    pub name: String,
    /// Served documents.
    pub documents: i64,
}

/// A served document as D1 stores it (`GET /api/documents`).
#[derive(Debug, Deserialize)]
pub struct CatalogDocument {
    /// R2 key.
    pub key: String,
    /// Title from the front matter or first heading.
    pub title: Option<String>,
    /// Company slug.
    pub company: Option<String>,
    /// JSON array of tags.
    pub tags: String,
    /// Chunks of the active generation.
    pub chunk_count: f64,
    /// Last update, ms since the epoch.
    pub updated_at: f64,
}

impl D1Search {
    /// Companies with at least one served document, by slug.
    pub async fn catalog_companies(&self) -> Result<Vec<CatalogCompany>, StoreError> {
        const OP: &str = "D1 catalog companies";
        self.db
            .prepare(
                "SELECT c.slug, c.name, COUNT(d.id) AS documents FROM companies c \
                 JOIN documents d ON d.company_id = c.id AND d.active_version IS NOT NULL AND d.status != 'deleted' \
                 GROUP BY c.id ORDER BY c.slug",
            )
            .all()
            .await
            .map_err(transient(OP))?
            .results()
            .map_err(transient(OP))
    }

    /// The served document under `key`, if there is one.
    pub async fn catalog_document(&self, key: &str) -> Result<Option<CatalogDocument>, StoreError> {
        const OP: &str = "D1 catalog document";
        self.db
            .prepare(
                "SELECT d.key, d.title, c.slug AS company, d.tags, d.chunk_count, d.updated_at FROM documents d \
                 LEFT JOIN companies c ON c.id = d.company_id \
                 WHERE d.active_version IS NOT NULL AND d.status != 'deleted' AND d.key = ?1",
            )
            .bind(&[key.into()])
            .map_err(transient(OP))?
            .first(None)
            .await
            .map_err(transient(OP))
    }

    /// Served documents (of one company when given), by key, at most 1000.
    pub async fn catalog_documents(
        &self,
        company: Option<&str>,
        after: &str,
        limit: u32,
    ) -> Result<Vec<CatalogDocument>, StoreError> {
        const OP: &str = "D1 catalog documents";
        self.db
            .prepare(
                "SELECT d.key, d.title, c.slug AS company, d.tags, d.chunk_count, d.updated_at FROM documents d \
                 LEFT JOIN companies c ON c.id = d.company_id \
                 WHERE d.active_version IS NOT NULL AND d.status != 'deleted' AND (?1 IS NULL OR c.slug = ?1) \
                 AND d.key > ?2 ORDER BY d.key LIMIT ?3",
            )
            .bind(&[
                company.map_or(JsValue::NULL, JsValue::from_str),
                after.into(),
                JsValue::from_f64(f64::from(limit)),
            ])
            .map_err(transient(OP))?
            .all()
            .await
            .map_err(transient(OP))?
            .results()
            .map_err(transient(OP))
    }
}
