//! Reads the query flow's vars (`SEARCH_FUSION`, `RERANKER`, `RERANK_*`,
//! `SEARCH_MODE`) into its settings types, with what each var accepts.
//!
//! Owns the checks across vars (a reranked default needs a reranker); the
//! settings types and their defaults are the query flow's.

use super::vars::{ConfigProblem, Vars};
use crate::providers::settings::ProviderKind;
use crate::query::fusion::FusionConfig;
use crate::query::rerank::{RerankPolicy, RERANK_CANDIDATES_RANGE};
use crate::query::settings::{
    default_fusion, RerankSettings, RerankerKind, DEFAULT_HTTP_RERANK_MODEL,
};
use crate::query::DEFAULT_RERANK_CANDIDATES;

/// `SEARCH_FUSION` over the embedder kind's default.
pub(super) fn read_fusion<F: Fn(&str) -> Option<String>>(
    vars: &mut Vars<F>,
    embedding_provider: ProviderKind,
) -> FusionConfig {
    vars.read(
        "SEARCH_FUSION",
        default_fusion(embedding_provider),
        "comma-separated vector=W,keyword=W,tag=W,k=K (any of them; weights >= 0 and \
         not all 0, k > 0)",
        |v| default_fusion(embedding_provider).with_spec(v).ok(),
    )
}

/// The reranker vars; a reranked default mode needs a reranker, and the HTTP
/// reranker needs its URL.
pub(super) fn read_rerank<F: Fn(&str) -> Option<String>>(vars: &mut Vars<F>) -> RerankSettings {
    let kind = vars.read(
        "RERANKER",
        RerankerKind::None,
        "none, workers-ai or http",
        RerankerKind::parse,
    );
    let default_model = match kind {
        RerankerKind::WorkersAi => crate::providers::rerank::BGE_RERANKER_BASE,
        RerankerKind::None | RerankerKind::Http => DEFAULT_HTTP_RERANK_MODEL,
    };
    let model = vars.read(
        "RERANK_MODEL",
        default_model.to_owned(),
        if kind == RerankerKind::WorkersAi {
            "a model name starting with @cf/ or @hf/"
        } else {
            "a non-blank model name"
        },
        |v| {
            (kind != RerankerKind::WorkersAi || v.starts_with("@cf/") || v.starts_with("@hf/"))
                .then(|| v.to_owned())
        },
    );
    let url = vars.read(
        "RERANK_URL",
        None,
        "an http:// or https:// base URL of a /v1/rerank server",
        |v| (v.starts_with("https://") || v.starts_with("http://")).then(|| Some(v.to_owned())),
    );
    let (min, max) = RERANK_CANDIDATES_RANGE;
    let candidates = vars.number("RERANK_CANDIDATES", DEFAULT_RERANK_CANDIDATES, min, max);
    let by_default = vars.read(
        "SEARCH_MODE",
        false,
        "fused or fused_reranked",
        |v| match v {
            "fused" => Some(false),
            "fused_reranked" => Some(true),
            _ => None,
        },
    );
    if kind == RerankerKind::Http && url.is_none() {
        vars.problems.push(ConfigProblem {
            var: "RERANK_URL",
            value: String::new(),
            expected: "the base URL of the /v1/rerank server (RERANKER=http needs it)".into(),
        });
    }
    if by_default && kind == RerankerKind::None {
        vars.problems.push(ConfigProblem {
            var: "SEARCH_MODE",
            value: "fused_reranked".into(),
            expected: "fused, or a RERANKER (workers-ai or http) to rerank with".into(),
        });
    }
    RerankSettings {
        kind,
        model,
        url,
        policy: RerankPolicy {
            candidates,
            by_default,
        },
    }
}
