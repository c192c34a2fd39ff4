//! What the public query API reads from D1: retrieval's reads behind
//! `portfolio_core::query::SearchStore` (the first pass: company lookup, FTS5
//! BM25 matches, tag matches, the served-rows marker and, for the D1-exact
//! vector source, the index's state row in one batch; chunk rows), the isolate's chunk-row cache, and the public catalog (companies and
//! served documents).
//!
//! Translates calls only: which sources run, the degrade policy, fusion, how
//! rows become results and what the row cache keeps stay in the core. Every
//! query reads the active generation only (`c.version = d.active_version`).

use std::cell::RefCell;

use portfolio_core::query::{
    ChunkRow, ChunkRowCache, CompanyMatch, FirstPass, FirstPassRequest, KeywordHit, SearchStore,
    ServedGeneration, TagHit,
};
use portfolio_core::shared::storage::{EventLog, Level, StoreError};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::json;
use wasm_bindgen::JsValue;
use worker::{D1Database, D1PreparedStatement, D1Result};

use super::vector_cache::{state_from_row, StateRow, StateSender, STATE_SQL};
use super::ConsoleLog;

thread_local! {
    /// One chunk-row cache per isolate (wasm is single-threaded: this is module state), shared
    /// by every search the isolate serves; `portfolio_core::query::row_cache` decides what it
    /// keeps and hands out.
    static ROW_CACHE: RefCell<ChunkRowCache> = RefCell::new(ChunkRowCache::default());
}

/// The `DB` database, as the query API reads it.
pub struct D1Search {
    db: D1Database,
    /// Where the next first pass sends the vector index's state row, when it reads it.
    index_state: RefCell<Option<StateSender>>,
}

impl std::fmt::Debug for D1Search {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("D1Search")
    }
}

impl D1Search {
    /// Reads through `db`.
    pub fn new(db: D1Database) -> Self {
        Self {
            db,
            index_state: RefCell::new(None),
        }
    }

    /// The next first pass also reads the D1-exact index's state row and sends it to `state`
    /// (`vector_cache::prefetch_state`): the vector source then makes no D1 call of its own
    /// while its cache is current.
    #[must_use]
    pub fn with_index_state(self, state: StateSender) -> Self {
        *self.index_state.borrow_mut() = Some(state);
        self
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

#[derive(Deserialize)]
struct GenerationRow {
    generation: f64,
}

/// The statements of a first pass, in batch order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Company,
    Keyword,
    Tag,
    Served,
    IndexState,
}

impl Part {
    fn operation(self) -> &'static str {
        match self {
            Self::Company => "D1 company lookup",
            Self::Keyword => "D1 keyword search",
            Self::Tag => "D1 tag search",
            Self::Served => "D1 served generation",
            Self::IndexState => "D1 vector index state",
        }
    }
}

/// The restriction to a company, by slug: in the same batch as the company lookup, the hits
/// cannot use its answer. An unknown slug matches nothing (`= NULL`), no slug everything.
const COMPANY_FILTER: &str =
    "(?2 IS NULL OR d.company_id = (SELECT id FROM companies WHERE slug = ?2))";

fn transient(operation: &'static str) -> impl Fn(worker::Error) -> StoreError {
    move |e| StoreError::transient(operation, e)
}

/// A list as one JSON parameter instead of one per item: D1 allows 100 bound parameters.
fn json_list(items: &[String]) -> JsValue {
    serde_json::to_string(items)
        .unwrap_or_else(|_| "[]".to_owned())
        .into()
}

impl D1Search {
    /// The statement of one part of `request`'s first pass.
    fn first_pass_statement(
        &self,
        part: Part,
        request: &FirstPassRequest,
    ) -> worker::Result<D1PreparedStatement> {
        let slug = || {
            request
                .company
                .as_deref()
                .map_or(JsValue::NULL, JsValue::from_str)
        };
        match (part, &request.keyword, &request.tag) {
            (Part::Company, _, _) => self
                .db
                .prepare("SELECT id FROM companies WHERE slug = ?1")
                .bind(&[slug()]),
            (Part::Keyword, Some(keyword), _) => self
                .db
                .prepare(format!(
                    "SELECT c.vector_id AS vector_id, bm25(chunks_fts) AS score FROM chunks_fts \
                     JOIN chunks c ON c.id = chunks_fts.rowid JOIN documents d ON d.id = c.document_id \
                     WHERE chunks_fts MATCH ?1 AND c.version = d.active_version AND {COMPANY_FILTER} \
                     ORDER BY score LIMIT ?3"
                ))
                .bind(&[
                    keyword.expression.as_str().into(),
                    slug(),
                    JsValue::from_f64(f64::from(keyword.limit)),
                ]),
            (Part::Tag, _, Some(tag)) => self
                .db
                .prepare(format!(
                    // chunk_tags (migration 0004) is the index of chunks.tags: read only the asked tags.
                    "SELECT c.vector_id AS vector_id, COUNT(*) AS score FROM chunk_tags t \
                     JOIN chunks c ON c.id = t.chunk_id JOIN documents d ON d.id = c.document_id \
                     WHERE t.tag IN (SELECT value FROM json_each(?1)) AND c.version = d.active_version \
                     AND {COMPANY_FILTER} GROUP BY c.id ORDER BY score DESC, c.id LIMIT ?3"
                ))
                .bind(&[
                    json_list(&tag.tags),
                    slug(),
                    JsValue::from_f64(f64::from(tag.limit)),
                ]),
            // Migration 0014.
            (Part::Served, _, _) => Ok(self
                .db
                .prepare("SELECT generation FROM served_state WHERE id = 1")),
            (Part::IndexState, _, _) => Ok(self.db.prepare(STATE_SQL)),
            (Part::Keyword | Part::Tag, _, _) => Err(worker::Error::RustError(format!(
                "{} was not asked",
                part.operation()
            ))),
        }
    }
}

/// One part's answer, read from its statement's result.
type PartResult = Result<D1Result, worker::Error>;

fn rows<T: DeserializeOwned>(part: Part, result: Option<PartResult>) -> Result<Vec<T>, StoreError> {
    match result {
        None => Ok(Vec::new()),
        Some(result) => result
            .and_then(|r| r.results::<T>())
            .map_err(transient(part.operation())),
    }
}

impl SearchStore for D1Search {
    async fn first_pass(&self, request: &FirstPassRequest) -> Result<FirstPass, StoreError> {
        // Taken first: however this pass ends, the vector source is answered or (the sender
        // dropped) reads the row itself.
        let index_state = self.index_state.borrow_mut().take();
        let mut parts = Vec::with_capacity(5);
        if request.company.is_some() {
            parts.push(Part::Company);
        }
        if request.keyword.is_some() {
            parts.push(Part::Keyword);
        }
        if request.tag.is_some() {
            parts.push(Part::Tag);
        }
        parts.push(Part::Served);
        if index_state.is_some() {
            parts.push(Part::IndexState);
        }
        let mut statements = Vec::with_capacity(parts.len());
        for part in &parts {
            statements.push(
                self.first_pass_statement(*part, request)
                    .map_err(transient(part.operation()))?,
            );
        }
        // One round trip for every part. D1 runs a batch as a transaction: one failing
        // statement fails the whole batch, and no result comes back
        // (https://developers.cloudflare.com/d1/worker-api/d1-database/#batch). So when the
        // batch fails, each part is asked again alone, and only the failing one fails.
        let results: Vec<PartResult> = match self.db.batch(statements).await {
            Ok(results) if results.len() == parts.len() => results.into_iter().map(Ok).collect(),
            outcome => {
                let error = outcome.map_or_else(
                    |e| e.to_string(),
                    |r| format!("{} results for {} statements", r.len(), parts.len()),
                );
                ConsoleLog.log(
                    Level::Warn,
                    json!({ "event": "search_batch_failed", "statements": parts.len(), "error": error }),
                );
                let mut alone = Vec::with_capacity(parts.len());
                for part in &parts {
                    let result = match self.first_pass_statement(*part, request) {
                        Ok(statement) => statement.all().await,
                        Err(e) => Err(e),
                    };
                    alone.push(result);
                }
                alone
            }
        };
        let mut by_part: Vec<(Part, PartResult)> = parts.into_iter().zip(results).collect();
        let mut take = |part: Part| {
            by_part
                .iter()
                .position(|(p, _)| *p == part)
                .map(|i| by_part.swap_remove(i).1)
        };
        let company = match take(Part::Company) {
            None => CompanyMatch::Any,
            Some(result) => rows::<IdRow>(Part::Company, Some(result))?
                .first()
                .map_or(CompanyMatch::Unknown, |r| CompanyMatch::Id(r.id as i64)),
        };
        let keyword = rows::<RankRow>(Part::Keyword, take(Part::Keyword)).map(|rows| {
            rows.into_iter()
                .map(|r| KeywordHit {
                    vector_id: r.vector_id,
                    bm25: r.score,
                })
                .collect()
        });
        let tag = rows::<RankRow>(Part::Tag, take(Part::Tag)).map(|rows| {
            rows.into_iter()
                .map(|r| TagHit {
                    vector_id: r.vector_id,
                    matched_tags: r.score as u32,
                })
                .collect()
        });
        if let (Some(sender), Some(result)) = (index_state, take(Part::IndexState)) {
            sender.send(
                result
                    .and_then(|r| r.results::<StateRow>())
                    .map_err(|e| super::d1_rows::d1_error("query", e))
                    .and_then(|rows| state_from_row(rows.into_iter().next())),
            );
        }
        // Without the marker the search reads every row from D1 and keeps none.
        let served = rows::<GenerationRow>(Part::Served, take(Part::Served))
            .ok()
            .and_then(|rows| rows.first().map(|r| r.generation))
            .filter(|g| g.is_finite() && *g >= 0.0)
            .map(|g| ServedGeneration(g as u64));
        Ok(FirstPass {
            company,
            keyword,
            tag,
            served,
        })
    }

    fn with_row_cache<R>(&self, f: impl FnOnce(&mut ChunkRowCache) -> R) -> R {
        ROW_CACHE.with(|cache| f(&mut cache.borrow_mut()))
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
