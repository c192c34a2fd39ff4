//! The query flow's settings: the reranker (`RERANKER`, `RERANK_MODEL`,
//! `RERANK_URL`, `RERANK_CANDIDATES`, `SEARCH_MODE`) and the fusion defaults
//! per embedder kind (`SEARCH_FUSION` when unset). `crate::config` reads the
//! vars into them.
//!
//! Never ranks and never reads a var.

use crate::providers::settings::ProviderKind;
use crate::query::fusion::FusionConfig;
use crate::query::rerank::RerankPolicy;

/// Which reranker reorders a reranked search's fused candidates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RerankerKind {
    /// No reranker: `fused_reranked` searches keep the fused order.
    None,
    /// A Workers AI reranker (`@cf/baai/bge-reranker-base`) through the `AI` binding.
    WorkersAi,
    /// Any server answering `POST {RERANK_URL}/v1/rerank` (the local embed server).
    Http,
}

impl RerankerKind {
    /// The var value naming it.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::WorkersAi => "workers-ai",
            Self::Http => "http",
        }
    }

    pub(crate) fn parse(value: &str) -> Option<Self> {
        [Self::None, Self::WorkersAi, Self::Http]
            .into_iter()
            .find(|k| k.as_str() == value)
    }
}

/// `RERANKER`, `RERANK_MODEL`, `RERANK_URL`, `RERANK_CANDIDATES`, `SEARCH_MODE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RerankSettings {
    /// Which reranker.
    pub kind: RerankerKind,
    /// Model it runs (Workers AI: a `@cf/` name; HTTP: what the server calls it).
    pub model: String,
    /// Base URL of the HTTP reranker.
    pub url: Option<String>,
    /// Candidates and whether searches rerank by default.
    pub policy: RerankPolicy,
}

/// Default `RERANK_MODEL` of the `http` reranker (the local embed server's name for its scorer).
pub const DEFAULT_HTTP_RERANK_MODEL: &str = "local-rerank";

/// Fusion of the offline hashing embedder's vectors with the keyword and tag
/// rankings: of every setting tried on the four evaluation sets (three kinds of
/// corpus), the one whose worst margin over each set's best single source is
/// largest (docs/benchmarks.md, "Retrieval quality").
pub const DEFAULT_FUSION_HASHING: &str = "method=rrf,vector=1,keyword=8,tag=0.25,k=5";
/// Fusion for semantic embedders (OpenAI, Workers AI, the local MiniLM server):
/// a convex combination of min-max scaled vector and keyword scores, chosen by
/// the same rule on three kinds of corpus; it beats the best single source on
/// each (docs/benchmarks.md, "Retrieval quality"). The tag source, which lowered
/// every set's score, is asked only by searches that filter by tags
/// ([`TAG_FILTER_WEIGHT`]).
pub const DEFAULT_FUSION_SEMANTIC: &str = "method=convex,vector=1,keyword=1,tag=0";

/// The tag source's weight in a search that filters by tags while its fusion gives
/// the source none (and the request did not set it): the filter then still has
/// tagged candidates to keep.
pub const TAG_FILTER_WEIGHT: f64 = 0.25;

/// The fusion the service runs with when `SEARCH_FUSION` is unset: the
/// offline embedder hashes words, so its vectors are a keyword ranking of
/// their own, while a semantic embedder's are not.
#[must_use]
pub fn default_fusion(embedder: ProviderKind) -> FusionConfig {
    let spec = match embedder {
        ProviderKind::Offline => DEFAULT_FUSION_HASHING,
        ProviderKind::OpenAi | ProviderKind::WorkersAi => DEFAULT_FUSION_SEMANTIC,
    };
    FusionConfig::new().with_spec(spec).unwrap_or_default()
}
