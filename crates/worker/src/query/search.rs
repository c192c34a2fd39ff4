//! `POST /api/search`, and the retrieval both query routes share: builds the
//! adapters (D1, the configured embedder and vector index, the clock), runs
//! the core's hybrid retrieval and logs the sources that degraded it.
//!
//! Holds no retrieval decision: sources, degrade policy, fusion and the
//! active-generation rule live in `portfolio_core::query::retrieve`.

use crate::body::read_limited;
use crate::config::ServiceConfig;
use crate::error::{json_response, ApiError};
use crate::root::Root;
use crate::store::{vector_cache, ConfiguredIndex, WorkerClock};
use portfolio_core::api::MAX_SEARCH_BODY_BYTES;
use portfolio_core::query::{
    fusion::RetrievalSource, plan_search, Rerank, Retrieval, RetrievalError, SearchPlan,
    SourceFailure,
};
use serde_json::json;
use worker::{console_warn, Request, Response};

fn log_source_failures(failures: &[SourceFailure]) {
    if failures.is_empty() {
        return;
    }
    let failures: Vec<String> = failures.iter().map(ToString::to_string).collect();
    console_warn!(
        "{}",
        json!({ "level": "warn", "event": "retrieval_source_failed", "failures": failures })
    );
}

/// Runs the hybrid retrieval for a validated plan.
pub async fn retrieve(
    root: &Root,
    config: &ServiceConfig,
    plan: &SearchPlan,
) -> Result<Retrieval, ApiError> {
    let mut store = root.search()?;
    // A provider or index that cannot be built degrades the vector source only.
    let embedder = root.embedder(config).map_err(|e| e.to_string());
    let mut index = root.vector_index(config).map_err(|e| e.to_string());
    // The D1-exact index's state row comes in the first pass's batch: one D1 call fewer.
    if plan
        .fusion_config(&config.fusion)
        .uses(RetrievalSource::Vector)
    {
        if let Ok(ConfiguredIndex::D1(d1)) = index {
            let (sender, prefetched) = vector_cache::prefetch_state();
            store = store.with_index_state(sender);
            index = Ok(ConfiguredIndex::D1(d1.with_prefetched_state(prefetched)));
        }
    }
    // Only a search that reranks builds the reranker; one that cannot be
    // built leaves the fused order.
    let reranker = if plan.reranks(config.rerank.policy.by_default) {
        match root.reranker(config) {
            Ok(Some(r)) => Ok(r),
            Ok(None) => Err("no reranker is configured (RERANKER=none)".to_owned()),
            Err(e) => Err(e.to_string()),
        }
    } else {
        Err("not asked".to_owned())
    };
    let rerank = Rerank {
        reranker: reranker.as_ref().map_err(Clone::clone),
        policy: config.rerank.policy,
    };
    let outcome = portfolio_core::query::retrieve(
        &store,
        embedder.as_ref().map_err(Clone::clone),
        index.as_ref().map_err(Clone::clone),
        rerank,
        &WorkerClock,
        &config.fusion,
        plan,
    )
    .await;
    match &outcome {
        Ok(retrieval) => {
            log_source_failures(&retrieval.degraded);
            if let Some(why) = &retrieval.rerank_failure {
                console_warn!(
                    "{}",
                    json!({ "level": "warn", "event": "rerank_failed", "reason": why })
                );
            }
        }
        Err(RetrievalError::AllSourcesFailed { failures }) => log_source_failures(failures),
        Err(RetrievalError::Store(_)) => {}
    }
    Ok(outcome?)
}

/// `POST /api/search`.
pub async fn handle(
    mut req: Request,
    root: &Root,
    config: &ServiceConfig,
) -> Result<Response, ApiError> {
    let body = read_limited(&mut req, MAX_SEARCH_BODY_BYTES).await?;
    let plan = plan_search(&body)?;
    let retrieval = retrieve(root, config, &plan).await?;
    Ok(json_response(&retrieval, 200)?)
}
