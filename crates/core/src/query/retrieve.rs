//! Hybrid retrieval, the driver: one first pass to the document store (the
//! company, FTS5 keyword and tag hits, the served-rows marker) alongside the
//! vector source, the degrade policy, fusion, and the active generation's chunk
//! rows (from the isolate's row cache when the marker has not moved) assembled
//! into results.
//!
//! Generic over what it reads ([`SearchStore`], an [`Embedder`], a
//! [`VectorIndex`]) and over the [`Clock`]; never names a platform. The
//! Worker builds the adapters, calls [`retrieve`] and logs what degraded.

use super::rerank::{annotate_rerank_scores, apply_rerank, rerank_passage, rerank_window};
use super::row_cache::{CachedRows, ChunkRowCache, ServedGeneration};
use super::{
    assemble_results, fts_expression, query_tag_terms, ChunkRow, RerankPolicy, SearchPlan,
    SearchResult,
};
use crate::index::{MetadataFilter, VectorIndex, VectorQuery};
use crate::providers::{Embedder, Reranker};
use crate::query::fusion::{
    bm25_relevance, fuse_rankings, FusedHit, FusionConfig, RetrievalSource, SourceRanking,
};
use crate::shared::storage::{Clock, StoreError};
use serde::Serialize;
use std::fmt;
use std::future::Future;
use thiserror::Error;

/// One FTS5 match: the chunk's vector id and its raw `bm25(chunks_fts)`
/// (negative; more negative is better, as FTS5 reports it).
#[derive(Debug, Clone, PartialEq)]
pub struct KeywordHit {
    /// Vector id of the chunk.
    pub vector_id: String,
    /// FTS5 `bm25()`, unconverted.
    pub bm25: f64,
}

/// One tag match: the chunk's vector id and how many of the asked tags it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagHit {
    /// Vector id of the chunk.
    pub vector_id: String,
    /// Asked tags the chunk carries (at least 1).
    pub matched_tags: u32,
}

/// The keyword search of a first pass: an FTS5 expression (see [`fts_expression`]) and how
/// many hits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeywordSearch {
    /// FTS5 `MATCH` expression.
    pub expression: String,
    /// At most this many hits.
    pub limit: u32,
}

/// The tag search of a first pass: the tags and how many hits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagSearch {
    /// Asked tags (or tags taken from the query's words).
    pub tags: Vec<String>,
    /// At most this many hits.
    pub limit: u32,
}

/// What a search asks the document store first, all in one round trip: the company, the
/// keyword and tag hits restricted to it, and the served-rows marker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirstPassRequest {
    /// The company's slug, when the search is restricted to one.
    pub company: Option<String>,
    /// The keyword search, when the search asks that source.
    pub keyword: Option<KeywordSearch>,
    /// The tag search, when the search asks that source.
    pub tag: Option<TagSearch>,
}

/// The company a first pass restricted its hits to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompanyMatch {
    /// No company was asked: every company's chunks.
    Any,
    /// The slug names no company: no chunk matches.
    Unknown,
    /// The company's id.
    Id(i64),
}

/// The answer to a [`FirstPassRequest`]. Each source answers for itself: a failing keyword
/// statement fails that source only.
#[derive(Debug, Clone, PartialEq)]
pub struct FirstPass {
    /// The asked company.
    pub company: CompanyMatch,
    /// Keyword hits, best (lowest bm25) first; empty when not asked or the company is unknown.
    pub keyword: Result<Vec<KeywordHit>, StoreError>,
    /// Tag hits, most matched tags first; empty when not asked or the company is unknown.
    pub tag: Result<Vec<TagHit>, StoreError>,
    /// The served-rows marker as the same round trip saw it; `None` when it could not be read
    /// (the search then reads every chunk row from the store and leaves the cache alone).
    pub served: Option<ServedGeneration>,
}

/// What retrieval reads from the document store (D1). Every method reads
/// only chunks of their document's active generation, so a half-written
/// newer generation stays invisible.
#[allow(async_fn_in_trait)]
pub trait SearchStore {
    /// The first pass of a search, in one round trip: the company lookup, the keyword hits (up
    /// to `limit` chunks matching the expression), the tag hits (up to `limit` chunks carrying
    /// at least one tag, most matched first), both restricted to the company when one is
    /// asked, and the [`ServedGeneration`].
    ///
    /// # Errors
    /// Only when the company lookup fails; a failing source is an `Err` in its field.
    async fn first_pass(&self, request: &FirstPassRequest) -> Result<FirstPass, StoreError>;
    /// The rows of the chunks among `vector_ids` (ids of other generations or
    /// deleted documents are skipped; order is free).
    async fn chunk_rows(&self, vector_ids: &[String]) -> Result<Vec<ChunkRow>, StoreError>;
    /// Runs `f` on the chunk-row cache this store keeps (one per isolate in the Worker). Never
    /// called across an `await`.
    fn with_row_cache<R>(&self, f: impl FnOnce(&mut ChunkRowCache) -> R) -> R;
}

/// Milliseconds spent in each part of a retrieval (part of the HTTP
/// responses of `/api/search` and `/api/chat`: keep the field names).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RetrievalTimings {
    /// Embedding the query and searching the vector index.
    pub vector_ms: u64,
    /// FTS5 keyword search (the first pass's round trip, shared with the tags).
    pub keyword_ms: u64,
    /// Tag matching (the first pass's round trip, shared with the keywords).
    pub tag_ms: u64,
    /// Reranking the fused candidates (0 when the search was not reranked).
    pub rerank_ms: u64,
    /// The whole retrieval, including fusion and reading the chunks.
    pub total_ms: u64,
}

/// A source that failed while the others answered (or all failed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFailure {
    /// Which source.
    pub source: RetrievalSource,
    /// What went wrong, as the embedder, index or store said it.
    pub message: String,
}

impl fmt::Display for SourceFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.source.as_str(), self.message)
    }
}

/// Ranked results plus where the time went. Serialises as the `/api/search`
/// response (`results`, `timings`).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Retrieval {
    /// Best first, at most `top_k`.
    pub results: Vec<SearchResult>,
    /// Timings.
    pub timings: RetrievalTimings,
    /// Whether the reranker ordered the results (false when the search did not
    /// ask for it, and when the reranker was missing or failed).
    pub reranked: bool,
    /// Sources that failed: the answer is degraded, and the caller logs them.
    #[serde(skip)]
    pub degraded: Vec<SourceFailure>,
    /// Why a reranked search fell back to the fused order; the caller logs it.
    #[serde(skip)]
    pub rerank_failure: Option<String>,
}

/// The reranker a search may use and the policy for it.
#[derive(Debug)]
pub struct Rerank<'a, R> {
    /// What the caller could build from its configuration; `Err` (the reason)
    /// when no reranker is configured or it could not be built.
    pub reranker: Result<&'a R, String>,
    /// Candidates, and whether a search without a mode reranks.
    pub policy: RerankPolicy,
}

impl<R> Rerank<'_, R> {
    /// No reranker: reranked searches keep the fused order.
    #[must_use]
    pub fn none() -> Self {
        Self {
            reranker: Err("no reranker is configured (RERANKER)".into()),
            policy: RerankPolicy::default(),
        }
    }
}

/// Why a retrieval produced no answer at all.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RetrievalError {
    /// Every source the search asked (vector, keyword, tag, or one alone) failed.
    #[error("every retrieval source failed: {}", join_failures(failures))]
    AllSourcesFailed {
        /// One failure per asked source, in [`RetrievalSource::ALL`] order.
        failures: Vec<SourceFailure>,
    },
    /// The company lookup or the chunk rows could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl RetrievalError {
    /// Whether the same retrieval may succeed later.
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::AllSourcesFailed { .. } => true,
            Self::Store(e) => e.retryable,
        }
    }
}

fn join_failures(failures: &[SourceFailure]) -> String {
    failures
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

async fn timed<T, K: Clock>(clock: &K, future: impl Future<Output = T>) -> (T, u64) {
    let started = clock.now_ms();
    let out = future.await;
    (out, clock.now_ms().saturating_sub(started))
}

/// Embeds the query and searches the index. A missing embedder or index (the
/// Worker could not build it from its configuration) fails this source only.
async fn vector_hits<E: Embedder, V: VectorIndex>(
    embedder: Result<&E, String>,
    index: Result<&V, String>,
    plan: &SearchPlan,
    company_id: Option<i64>,
) -> Result<Vec<(String, f64)>, String> {
    let embedder = embedder?;
    let index = index?;
    let mut vectors = embedder
        .embed(std::slice::from_ref(&plan.query))
        .await
        .map_err(|e| e.to_string())?;
    let vector = vectors.pop().ok_or("the embedder returned no vector")?;
    let query = VectorQuery {
        vector,
        top_k: plan.candidates() as usize,
        filter: company_id.map(MetadataFilter::company),
        return_metadata: false,
        approximate: !plan.exact_vectors,
    };
    let matches = index.query(&query).await.map_err(|e| e.to_string())?;
    Ok(matches
        .into_iter()
        .map(|m| (m.id, f64::from(m.score)))
        .collect())
}

/// The first pass a plan asks: keyword and tag searches only for the sources fusion uses, and
/// only when the query has something to search for (a query without a word searches no
/// keyword; without tags or words, no tag).
fn first_pass_request(plan: &SearchPlan, fusion: &FusionConfig) -> FirstPassRequest {
    let keyword = fusion
        .uses(RetrievalSource::Keyword)
        .then(|| fts_expression(&plan.query))
        .flatten()
        .map(|expression| KeywordSearch {
            expression,
            limit: plan.candidates(),
        });
    let tags = if plan.tags.is_empty() {
        query_tag_terms(&plan.query)
    } else {
        plan.tags.clone()
    };
    let tag = (fusion.uses(RetrievalSource::Tag) && !tags.is_empty()).then(|| TagSearch {
        tags,
        limit: plan.candidates(),
    });
    FirstPassRequest {
        company: plan.company.clone(),
        keyword,
        tag,
    }
}

/// The keyword hits as fusion ranks them (BM25 relevance, higher is better).
fn keyword_ranking(hits: Vec<KeywordHit>) -> Vec<(String, f64)> {
    hits.into_iter()
        .map(|h| (h.vector_id, bm25_relevance(h.bm25)))
        .collect()
}

/// The tag hits as fusion ranks them (matched tags).
fn tag_ranking(hits: Vec<TagHit>) -> Vec<(String, f64)> {
    hits.into_iter()
        .map(|h| (h.vector_id, f64::from(h.matched_tags)))
        .collect()
}

/// Runs `search` when `on`, else answers an empty list at once (and takes no time).
async fn when<T, E>(
    on: bool,
    search: impl Future<Output = Result<Vec<T>, E>>,
) -> Result<Vec<T>, E> {
    if on {
        search.await
    } else {
        Ok(Vec::new())
    }
}

/// Runs the hybrid retrieval for a validated plan.
///
/// The fusion is the plan's over the service's `fusion` ([`SearchPlan::fusion_config`]);
/// a source it gives weight 0 (every other source in a single-source mode) is
/// not asked at all. The keyword and tag sources share one first pass to the
/// store, which the vector source runs alongside (after it, when the search
/// names a company: the vector filter needs its id). A failing
/// source degrades the answer (it is listed in [`Retrieval::degraded`]); only
/// every asked source failing is an error. An unknown company has no
/// documents: the result is empty and no source is asked.
///
/// `embedder` and `index` are what the caller could build from its
/// configuration; an `Err` (the reason) fails the vector source only.
///
/// # Errors
/// [`RetrievalError::AllSourcesFailed`] when no source answered;
/// [`RetrievalError::Store`] when the company lookup or the chunk rows fail.
pub async fn retrieve<S: SearchStore, E: Embedder, V: VectorIndex, R: Reranker, K: Clock>(
    store: &S,
    embedder: Result<&E, String>,
    index: Result<&V, String>,
    rerank: Rerank<'_, R>,
    clock: &K,
    fusion: &FusionConfig,
    plan: &SearchPlan,
) -> Result<Retrieval, RetrievalError> {
    let started = clock.now_ms();
    let fusion = plan.fusion_config(fusion);
    let uses = |source| fusion.uses(source);
    let request = first_pass_request(plan, &fusion);
    // Without a company the vector source runs alongside the first pass; with one it needs
    // the company's id, which the first pass brings (an unknown company asks no source).
    let ((first, first_ms), (vector, vector_ms)) = if plan.company.is_none() {
        futures_util::future::join(
            timed(clock, store.first_pass(&request)),
            timed(
                clock,
                when(
                    uses(RetrievalSource::Vector),
                    vector_hits(embedder, index, plan, None),
                ),
            ),
        )
        .await
    } else {
        let (first, first_ms) = timed(clock, store.first_pass(&request)).await;
        let company_id = match first.as_ref().map_err(Clone::clone)?.company {
            CompanyMatch::Unknown => return Ok(Retrieval::default()),
            CompanyMatch::Id(id) => Some(id),
            CompanyMatch::Any => None,
        };
        let vector = timed(
            clock,
            when(
                uses(RetrievalSource::Vector),
                vector_hits(embedder, index, plan, company_id),
            ),
        )
        .await;
        ((first, first_ms), vector)
    };
    let first = first?;
    // Keyword and tag hits come back in one round trip: each is charged its time.
    let keyword_ms = if request.keyword.is_some() {
        first_ms
    } else {
        0
    };
    let tag_ms = if request.tag.is_some() { first_ms } else { 0 };
    let outcomes = [
        (RetrievalSource::Vector, vector),
        (
            RetrievalSource::Keyword,
            first
                .keyword
                .map(keyword_ranking)
                .map_err(|e| e.to_string()),
        ),
        (
            RetrievalSource::Tag,
            first.tag.map(tag_ranking).map_err(|e| e.to_string()),
        ),
    ];
    let mut rankings = Vec::new();
    let mut degraded = Vec::new();
    for (source, outcome) in outcomes {
        if !uses(source) {
            continue;
        }
        match outcome {
            Ok(hits) => rankings.push(SourceRanking::new(source, hits)),
            Err(message) => degraded.push(SourceFailure { source, message }),
        }
    }
    if rankings.is_empty() {
        return Err(RetrievalError::AllSourcesFailed { failures: degraded });
    }
    let fused = fuse_rankings(&fusion, &rankings);
    let reranks = plan.reranks(rerank.policy.by_default);
    let window = if reranks {
        rerank.policy.candidates as usize
    } else {
        0
    };
    let (rows, read, assembled) =
        rows_for_prefix(store, first.served, &fused, plan, window).await?;
    let mut fused = fused;
    fused.truncate(read);
    let rerank_started = clock.now_ms();
    let (fused, reranked, rerank_failure) = if reranks {
        match rerank_fused(&rerank, plan, fused, &rows).await {
            Ok((fused, window, scores)) => (fused, Some((window, scores)), None),
            Err((fused, why)) => (fused, None, Some(why)),
        }
    } else {
        (fused, None, None)
    };
    let rerank_ms = if reranked.is_some() || rerank_failure.is_some() {
        clock.now_ms().saturating_sub(rerank_started)
    } else {
        0
    };
    // The reranker reorders the list; otherwise it is the one the rows were read for.
    let results = match &reranked {
        Some((window, scores)) => {
            let mut results = assemble_results(&fused, &rows, &plan.tags, plan.top_k as usize);
            annotate_rerank_scores(&mut results, window, scores);
            results
        }
        None => assembled,
    };
    Ok(Retrieval {
        results,
        timings: RetrievalTimings {
            vector_ms,
            keyword_ms,
            tag_ms,
            rerank_ms,
            total_ms: clock.now_ms().saturating_sub(started),
        },
        reranked: reranked.is_some(),
        degraded,
        rerank_failure,
    })
}

type Fused = Vec<FusedHit<String>>;

/// Reads chunk rows for a prefix of the fused list: for `ROWS_PER_RESULT` × `top_k` hits (or
/// the reranker's `window`, if larger) first, then for the rest only if that prefix assembles
/// to fewer than `top_k` results (rows missing, dropped by the tag filter or overlapping) or
/// fewer rows than the window. Returns the rows, the prefix's length and its results.
async fn rows_for_prefix<S: SearchStore>(
    store: &S,
    served: Option<ServedGeneration>,
    fused: &[FusedHit<String>],
    plan: &SearchPlan,
    window: usize,
) -> Result<(Vec<ChunkRow>, usize, Vec<SearchResult>), StoreError> {
    let top_k = plan.top_k as usize;
    let mut rows = Vec::new();
    let mut read = 0;
    loop {
        let take = if read == 0 {
            (top_k * ROWS_PER_RESULT).max(window)
        } else {
            fused.len()
        };
        let end = fused.len().min(read + take);
        if end > read {
            let ids: Vec<String> = fused[read..end].iter().map(|h| h.id.clone()).collect();
            rows.extend(read_rows(store, served, &ids).await?);
        }
        read = end;
        let results = assemble_results(&fused[..read], &rows, &plan.tags, top_k);
        if (results.len() >= top_k && rows.len() >= window) || read == fused.len() {
            return Ok((rows, read, results));
        }
    }
}

/// The served rows among `ids`: from the row cache when it holds them under the marker the
/// first pass read, the rest from the store (then kept). Without a marker, all from the store.
async fn read_rows<S: SearchStore>(
    store: &S,
    served: Option<ServedGeneration>,
    ids: &[String],
) -> Result<Vec<ChunkRow>, StoreError> {
    let Some(generation) = served else {
        return store.chunk_rows(ids).await;
    };
    let CachedRows { mut rows, missing } = store.with_row_cache(|c| c.lookup(generation, ids));
    if missing.is_empty() {
        return Ok(rows);
    }
    let read = store.chunk_rows(&missing).await?;
    store.with_row_cache(|c| c.store(generation, &missing, &read));
    rows.extend(read);
    Ok(rows)
}

/// Fused hits whose chunk rows the first read fetches, per result asked: room for the
/// chunks that overlap a better one, miss the tag filter or belong to a superseded generation.
const ROWS_PER_RESULT: usize = 2;

/// Reorders the fused list's best candidates by the reranker's scores; on any
/// failure, hands the fused list back untouched with the reason.
async fn rerank_fused<'r, R: Reranker>(
    rerank: &Rerank<'_, R>,
    plan: &SearchPlan,
    fused: Fused,
    rows: &'r [ChunkRow],
) -> Result<(Fused, Vec<&'r ChunkRow>, Vec<f64>), (Fused, String)> {
    let reranker = match &rerank.reranker {
        Ok(reranker) => *reranker,
        Err(why) => return Err((fused, why.clone())),
    };
    let window = rerank_window(&fused, rows, rerank.policy.candidates);
    if window.is_empty() {
        return Ok((fused, window, Vec::new()));
    }
    let passages: Vec<String> = window.iter().map(|row| rerank_passage(row)).collect();
    match reranker.rerank(&plan.query, &passages).await {
        Ok(scores) if scores.len() == window.len() => {
            let reordered = apply_rerank(fused, &window, &scores);
            Ok((reordered, window, scores))
        }
        Ok(scores) => Err((
            fused,
            format!(
                "the reranker returned {} scores for {} passages",
                scores.len(),
                window.len()
            ),
        )),
        Err(e) => Err((fused, e.to_string())),
    }
}

#[cfg(test)]
mod tests;
