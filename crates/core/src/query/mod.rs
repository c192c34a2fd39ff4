//! The public query API's decisions, in the order a request meets them:
//! what a search or chat request may contain (`plan`), what the keyword and
//! tag sources search for (`terms`), the hybrid retrieval driver
//! ([`retrieve()`]), and how fused chunks become results and cited sources
//! (`results`); `fusion` merges the sources' rankings; `row_cache` keeps
//! served chunk rows between searches.
//!
//! The driver reads through traits: this module never names D1, the vector
//! index's backend or a provider. Everything is re-exported here, so callers
//! use `portfolio_core::query::*`.

pub mod fusion;
pub mod rerank;
pub mod retrieve;
pub mod row_cache;
pub mod settings;

pub use rerank::{RerankPolicy, DEFAULT_RERANK_CANDIDATES};
pub use retrieve::{
    retrieve, CompanyMatch, FirstPass, FirstPassRequest, KeywordHit, KeywordSearch, Rerank,
    Retrieval, RetrievalError, RetrievalTimings, SearchStore, SourceFailure, TagHit, TagSearch,
};
pub use row_cache::{ChunkRowCache, ServedGeneration, ROW_CACHE_MAX_BYTES, ROW_CACHE_MAX_ENTRIES};
pub use settings::{default_fusion, RerankSettings, RerankerKind};

mod plan;
mod results;
mod terms;

pub use plan::*;
pub use results::*;
pub use terms::*;
