//! Rerankers: score each of a query's candidate passages, behind one trait,
//! [`Reranker`]. Workers AI's `@cf/baai/bge-reranker-base` through the `AI`
//! binding in deployed environments; any server speaking the common
//! `POST /v1/rerank` shape (`{model, query, documents, top_n}` answered
//! `{results: [{index, relevance_score}]}`) over HTTP, such as the local
//! embed server (`scripts/dev/embed-server.sh`).
//!
//! Owns the wire shapes and their validation; must never do I/O itself.

use super::error::ProviderError;
use super::openai::{send_checked_as, OpenAiConfig};
use super::retry::Retrier;
use super::transport::{HttpTransport, Sleeper};
use super::workers_ai::{binding_error, to_value, AiBinding};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Workers AI's reranker (a cross-encoder; 512 tokens of query and passage).
pub const BGE_RERANKER_BASE: &str = "@cf/baai/bge-reranker-base";
/// Provider name of [`HttpReranker`] in errors and logs.
pub const HTTP_PROVIDER: &str = "rerank-http";
/// Most passages one rerank call takes (the query service sends at most `MAX_TOP_K`).
pub const MAX_RERANK_PASSAGES: usize = 100;

/// Scores passages against a query.
#[allow(async_fn_in_trait)]
pub trait Reranker {
    /// Model name, for logs.
    fn model(&self) -> &str;
    /// One relevance score per passage, in input order; higher is more relevant.
    /// Scores compare only within one call.
    async fn rerank(&self, query: &str, passages: &[String]) -> Result<Vec<f64>, ProviderError>;
}

/// Puts `(index, score)` pairs back in input order, checking that each of the
/// `count` passages got exactly one finite score.
fn scores_in_order(
    provider: &'static str,
    pairs: impl IntoIterator<Item = (usize, f64)>,
    count: usize,
    body: &[u8],
) -> Result<Vec<f64>, ProviderError> {
    let mut slots: Vec<Option<f64>> = vec![None; count];
    for (index, score) in pairs {
        let slot = slots.get_mut(index).ok_or_else(|| {
            ProviderError::malformed(provider, format!("index {index} out of range"), body)
        })?;
        if slot.is_some() {
            return Err(ProviderError::malformed(
                provider,
                format!("index {index} repeated"),
                body,
            ));
        }
        if !score.is_finite() {
            return Err(ProviderError::malformed(
                provider,
                format!("score of index {index} is not a number"),
                body,
            ));
        }
        *slot = Some(score);
    }
    let got = slots.iter().flatten().count();
    if got != count {
        return Err(ProviderError::CountMismatch {
            provider,
            expected: count,
            got,
        });
    }
    Ok(slots.into_iter().flatten().collect())
}

/// What both rerankers do around one call: refuse more than [`MAX_RERANK_PASSAGES`], answer
/// no passages without calling, and retry `once` under `retrier`'s policy.
async fn rerank_with_retries<S, F, Fut>(
    provider: &'static str,
    retrier: &Retrier<S>,
    passages: &[String],
    once: F,
) -> Result<Vec<f64>, ProviderError>
where
    S: Sleeper,
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<Vec<f64>, ProviderError>>,
{
    if passages.len() > MAX_RERANK_PASSAGES {
        return Err(ProviderError::InvalidRequest {
            provider,
            reason: format!(
                "{} passages; one rerank call takes at most {MAX_RERANK_PASSAGES}",
                passages.len()
            ),
        });
    }
    if passages.is_empty() {
        return Ok(Vec::new());
    }
    retrier.run(|_| once()).await
}

/// Input of `@cf/baai/bge-reranker-base`.
#[derive(Debug, Serialize)]
struct WorkersAiRerankInput<'a> {
    query: &'a str,
    contexts: Vec<WorkersAiContext<'a>>,
    top_k: usize,
}

#[derive(Debug, Serialize)]
struct WorkersAiContext<'a> {
    text: &'a str,
}

/// Output: `{ "response": [{ "id": index, "score": s }] }`, best first.
#[derive(Debug, Deserialize)]
struct WorkersAiRerankOutput {
    response: Vec<WorkersAiRerankItem>,
}

#[derive(Debug, Deserialize)]
struct WorkersAiRerankItem {
    id: usize,
    score: f64,
}

/// Parses the reranker's output into one score per passage, in input order.
///
/// # Errors
/// `MalformedResponse` for another shape, an id out of range or repeated;
/// `CountMismatch` when a passage got no score.
pub fn parse_workers_ai_rerank(output: Value, count: usize) -> Result<Vec<f64>, ProviderError> {
    let provider = super::workers_ai::PROVIDER;
    let excerpt = output.to_string();
    let parsed: WorkersAiRerankOutput = serde_json::from_value(output)
        .map_err(|e| ProviderError::malformed(provider, e.to_string(), excerpt.as_bytes()))?;
    scores_in_order(
        provider,
        parsed.response.into_iter().map(|i| (i.id, i.score)),
        count,
        excerpt.as_bytes(),
    )
}

/// Reranking through the Workers AI binding, with retries.
#[derive(Debug)]
pub struct WorkersAiReranker<B, S> {
    binding: B,
    retrier: Retrier<S>,
    model: String,
}

impl<B: AiBinding, S: Sleeper> WorkersAiReranker<B, S> {
    /// A reranker running `model` (e.g. [`BGE_RERANKER_BASE`]).
    #[must_use]
    pub fn new(binding: B, retrier: Retrier<S>, model: impl Into<String>) -> Self {
        Self {
            binding,
            retrier,
            model: model.into(),
        }
    }

    async fn rerank_once(
        &self,
        query: &str,
        passages: &[String],
    ) -> Result<Vec<f64>, ProviderError> {
        let input = WorkersAiRerankInput {
            query,
            contexts: passages
                .iter()
                .map(|text| WorkersAiContext { text })
                .collect(),
            top_k: passages.len(),
        };
        let output = self
            .binding
            .run(&self.model, to_value(&input)?)
            .await
            .map_err(binding_error)?;
        parse_workers_ai_rerank(output, passages.len())
    }
}

impl<B: AiBinding, S: Sleeper> Reranker for WorkersAiReranker<B, S> {
    fn model(&self) -> &str {
        &self.model
    }

    async fn rerank(&self, query: &str, passages: &[String]) -> Result<Vec<f64>, ProviderError> {
        rerank_with_retries(super::workers_ai::PROVIDER, &self.retrier, passages, || {
            self.rerank_once(query, passages)
        })
        .await
    }
}

#[derive(Debug, Serialize)]
struct HttpRerankBody<'a> {
    model: &'a str,
    query: &'a str,
    documents: &'a [String],
    top_n: usize,
}

#[derive(Debug, Deserialize)]
struct HttpRerankResponse {
    results: Vec<HttpRerankItem>,
}

#[derive(Debug, Deserialize)]
struct HttpRerankItem {
    index: usize,
    relevance_score: f64,
}

/// Parses a `/v1/rerank` answer into one score per passage, in input order.
///
/// # Errors
/// `MalformedResponse` for another shape, an index out of range or repeated;
/// `CountMismatch` when a passage got no score.
pub fn parse_http_rerank(body: &[u8], count: usize) -> Result<Vec<f64>, ProviderError> {
    let parsed: HttpRerankResponse = serde_json::from_slice(body)
        .map_err(|e| ProviderError::malformed(HTTP_PROVIDER, e.to_string(), body))?;
    scores_in_order(
        HTTP_PROVIDER,
        parsed
            .results
            .into_iter()
            .map(|i| (i.index, i.relevance_score)),
        count,
        body,
    )
}

/// Reranking over `POST {base}/v1/rerank`, with retries. The base URL, key
/// and model are an [`OpenAiConfig`] (the same endpoint rules).
#[derive(Debug)]
pub struct HttpReranker<T, S> {
    config: OpenAiConfig,
    transport: T,
    retrier: Retrier<S>,
}

impl<T: HttpTransport, S: Sleeper> HttpReranker<T, S> {
    /// A reranker at `config`'s base URL running its model.
    #[must_use]
    pub fn new(config: OpenAiConfig, transport: T, retrier: Retrier<S>) -> Self {
        Self {
            config,
            transport,
            retrier,
        }
    }

    async fn rerank_once(
        &self,
        query: &str,
        passages: &[String],
    ) -> Result<Vec<f64>, ProviderError> {
        let body = HttpRerankBody {
            model: self.config.model(),
            query,
            documents: passages,
            top_n: passages.len(),
        };
        let request = self.config.request("rerank", &body)?;
        let response = send_checked_as(HTTP_PROVIDER, &self.transport, request).await?;
        parse_http_rerank(&response.body, passages.len())
    }
}

impl<T: HttpTransport, S: Sleeper> Reranker for HttpReranker<T, S> {
    fn model(&self) -> &str {
        self.config.model()
    }

    async fn rerank(&self, query: &str, passages: &[String]) -> Result<Vec<f64>, ProviderError> {
        rerank_with_retries(HTTP_PROVIDER, &self.retrier, passages, || {
            self.rerank_once(query, passages)
        })
        .await
    }
}

#[cfg(test)]
mod tests;
