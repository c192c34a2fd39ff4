//! Workers AI through the `env.AI.run(model, input)` binding: request and response shapes,
//! their validation, and providers generic over a one-method [`AiBinding`].
//!
//! Owns the JSON the binding takes and returns, so the Worker only passes JSON through; must
//! never touch the binding itself.

use super::batch::{estimate_tokens, plan_batches, BatchError, BatchLimits, WORKERS_AI_BGE_LIMITS};
use super::error::{body_excerpt, ProviderError};
use super::retry::Retrier;
use super::sse::SseParser;
use super::transport::{Sleeper, TransportError};
use super::{ChatCompletion, ChatMessage, ChatModel, ChatRequest, Embedder};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::ops::ControlFlow;

/// Provider name in errors and logs.
pub const PROVIDER: &str = "workers-ai";
/// The embedding model used in production.
pub const BGE_BASE_EN_V1_5: &str = "@cf/baai/bge-base-en-v1.5";
/// Output dimensions of [`BGE_BASE_EN_V1_5`] (Cloudflare model page: "Output Dimensions 768").
pub const BGE_BASE_EN_V1_5_DIMENSIONS: usize = 768;

/// Input of an embedding model: `{ "text": [...] }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkersAiEmbeddingRequest {
    /// Texts to embed.
    pub text: Vec<String>,
}

/// Output of an embedding model: `{ "shape": [n, d], "data": [[...], ...] }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkersAiEmbeddingResponse {
    /// `[count, dimensions]`.
    pub shape: Vec<usize>,
    /// One vector per input, in input order.
    pub data: Vec<Vec<f32>>,
}

impl WorkersAiEmbeddingResponse {
    /// Checks shape, count and dimensions against the request and returns the vectors.
    ///
    /// # Errors
    /// `CountMismatch`, `DimensionMismatch`, or `MalformedResponse` when `shape` disagrees with `data`.
    pub fn into_vectors(
        self,
        expected_count: usize,
        expected_dimensions: usize,
    ) -> Result<Vec<Vec<f32>>, ProviderError> {
        if self.data.len() != expected_count {
            return Err(ProviderError::CountMismatch {
                provider: PROVIDER,
                expected: expected_count,
                got: self.data.len(),
            });
        }
        if let Some((index, v)) = self
            .data
            .iter()
            .enumerate()
            .find(|(_, v)| v.len() != expected_dimensions)
        {
            return Err(ProviderError::DimensionMismatch {
                provider: PROVIDER,
                index,
                expected: expected_dimensions,
                got: v.len(),
            });
        }
        if self.shape != [expected_count, expected_dimensions] {
            return Err(ProviderError::malformed(
                PROVIDER,
                format!(
                    "shape {:?} disagrees with data [{expected_count}, {expected_dimensions}]",
                    self.shape
                ),
                b"",
            ));
        }
        Ok(self.data)
    }
}

/// Input of a text-generation model: `{ "messages": [...], "max_tokens", "temperature" }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkersAiChatRequest {
    /// Messages in order.
    pub messages: Vec<ChatMessage>,
    /// Output cap in tokens.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    /// Sampling temperature.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    /// `true` asks for a `text/event-stream` body instead of JSON.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
}

impl From<&ChatRequest> for WorkersAiChatRequest {
    fn from(req: &ChatRequest) -> Self {
        Self {
            messages: req.messages.clone(),
            max_tokens: req.max_tokens,
            temperature: req.temperature,
            stream: None,
        }
    }
}

/// Output of a text-generation model: `{ "response": "..." }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkersAiChatResponse {
    /// Generated text; absent when the model produced none.
    pub response: Option<String>,
}

/// Parses and validates an embedding output value.
///
/// # Errors
/// `MalformedResponse` for the wrong shape of JSON, plus those of [`WorkersAiEmbeddingResponse::into_vectors`].
pub fn parse_embedding_output(
    output: Value,
    expected_count: usize,
    expected_dimensions: usize,
) -> Result<Vec<Vec<f32>>, ProviderError> {
    let excerpt = output.to_string();
    let parsed: WorkersAiEmbeddingResponse = serde_json::from_value(output)
        .map_err(|e| ProviderError::malformed(PROVIDER, e.to_string(), excerpt.as_bytes()))?;
    parsed.into_vectors(expected_count, expected_dimensions)
}

/// Parses a text-generation output value into its text.
///
/// # Errors
/// `MalformedResponse` when there is no `response` string.
pub fn parse_chat_output(output: Value) -> Result<String, ProviderError> {
    let excerpt = output.to_string();
    serde_json::from_value::<WorkersAiChatResponse>(output)
        .ok()
        .and_then(|r| r.response)
        .ok_or_else(|| ProviderError::malformed(PROVIDER, "no response string", excerpt.as_bytes()))
}

/// How a call through the binding failed, as the Worker saw it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AiBindingError {
    /// The binding threw. Upstream failures are `InferenceUpstreamError`s whose message is
    /// `"<internal code>: <description>"` (workerd's `ai-api.ts` builds it from the API's
    /// error body); anything else (a broken connection) has no code.
    #[error("{name}: {message}")]
    Thrown {
        /// The error's `name`.
        name: String,
        /// The error's `message`.
        message: String,
    },
    /// No answer (or, streaming, no next chunk) within the Worker's time limit.
    #[error("timed out: {0}")]
    Timeout(String),
}

/// Workers AI's documented internal codes and their HTTP statuses
/// (<https://developers.cloudflare.com/workers-ai/platform/errors/>). The status decides
/// what is retried: 408 and 429 are, 4xx otherwise are not.
const ERROR_CODES: [(u32, u16); 16] = [
    (5007, 400), // No such model
    (5004, 400), // Invalid data
    (3039, 400), // Finetune missing required files
    (3003, 400), // Incomplete request
    (5018, 403), // Account not allowed for private model
    (5016, 403), // Model agreement
    (3023, 403), // Account blocked
    (3041, 403), // Account not allowed for private model
    (5019, 405), // Deprecated SDK version
    (5005, 405), // LoRa unsupported
    (3042, 404), // Invalid model ID
    (3006, 413), // Request too large
    (3007, 408), // Timeout
    (3008, 408), // Aborted
    (3036, 429), // Account limited (daily free allocation used up)
    (3040, 429), // Out of capacity
];

/// The internal code at the start of a binding error message (`"3040: ..."`).
fn internal_code(message: &str) -> Option<u32> {
    let (code, _) = message.split_once(':')?;
    let code = code.trim();
    (code.len() == 4 && code.bytes().all(|b| b.is_ascii_digit()))
        .then(|| code.parse().ok())
        .flatten()
}

/// A binding failure as a provider error: a documented code becomes its HTTP status (so
/// capacity and rate limits are retried and a missing model or a blocked account is not), an
/// undocumented code a 500, a failure without a code a broken connection (retried).
#[must_use]
pub fn binding_error(err: AiBindingError) -> ProviderError {
    match err {
        AiBindingError::Timeout(detail) => ProviderError::Transport {
            provider: PROVIDER,
            source: TransportError::Timeout(detail),
        },
        AiBindingError::Thrown { name, message } => match internal_code(&message) {
            Some(code) => ProviderError::Status {
                provider: PROVIDER,
                status: ERROR_CODES
                    .iter()
                    .find(|(c, _)| *c == code)
                    .map_or(500, |(_, status)| *status),
                body_excerpt: body_excerpt(format!("{name}: {message}").as_bytes()),
                retry_after: None,
            },
            None => ProviderError::Transport {
                provider: PROVIDER,
                source: TransportError::Connection(format!("{name}: {message}")),
            },
        },
    }
}

/// The `env.AI` binding as the Worker exposes it: run a model on JSON input.
#[allow(async_fn_in_trait)]
pub trait AiBinding {
    /// Runs `model` on `input` and returns its JSON output.
    async fn run(&self, model: &str, input: Value) -> Result<Value, AiBindingError>;

    /// Runs `model` on `input` (which asks for `"stream": true`) and passes the streamed
    /// body's chunks to `on_chunk` until the body ends or `on_chunk` breaks.
    async fn run_stream(
        &self,
        model: &str,
        input: Value,
        on_chunk: &mut dyn FnMut(&[u8]) -> ControlFlow<()>,
    ) -> Result<(), AiBindingError>;
}

impl<T: AiBinding + ?Sized> AiBinding for &T {
    async fn run(&self, model: &str, input: Value) -> Result<Value, AiBindingError> {
        (**self).run(model, input).await
    }

    async fn run_stream(
        &self,
        model: &str,
        input: Value,
        on_chunk: &mut dyn FnMut(&[u8]) -> ControlFlow<()>,
    ) -> Result<(), AiBindingError> {
        (**self).run_stream(model, input, on_chunk).await
    }
}

/// Turns a streamed text-generation body into text deltas: SSE events whose data is
/// `{"response": "<text>", ...}`, ended by `data: [DONE]`.
#[derive(Debug, Default)]
pub struct WorkersAiStreamDecoder {
    parser: SseParser,
    done: bool,
}

#[derive(Deserialize)]
struct StreamEvent {
    response: Option<String>,
}

impl WorkersAiStreamDecoder {
    /// Whether `data: [DONE]` was seen; later bytes are ignored.
    #[must_use]
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Feeds body bytes and returns the text deltas they completed.
    ///
    /// # Errors
    /// `MalformedResponse` when an event is not JSON with an optional `response` string.
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<String>, ProviderError> {
        let mut deltas = Vec::new();
        for event in self.parser.push(bytes) {
            if self.done {
                break;
            }
            let data = event.data.trim();
            if data == "[DONE]" {
                self.done = true;
                break;
            }
            let parsed: StreamEvent = serde_json::from_str(data).map_err(|e| {
                ProviderError::malformed(PROVIDER, format!("stream event: {e}"), data.as_bytes())
            })?;
            if let Some(text) = parsed.response.filter(|t| !t.is_empty()) {
                deltas.push(text);
            }
        }
        Ok(deltas)
    }

    /// Ends the stream.
    ///
    /// # Errors
    /// `MalformedResponse` when it ended before `data: [DONE]`.
    pub fn finish(&mut self) -> Result<(), ProviderError> {
        if let Some(event) = self.parser.finish() {
            if event.data.trim() == "[DONE]" {
                self.done = true;
            }
        }
        if self.done {
            Ok(())
        } else {
            Err(ProviderError::malformed(
                PROVIDER,
                "stream ended before [DONE]",
                b"",
            ))
        }
    }
}

pub(super) fn to_value(input: &impl Serialize) -> Result<Value, ProviderError> {
    serde_json::to_value(input).map_err(|e| ProviderError::InvalidRequest {
        provider: PROVIDER,
        reason: format!("cannot serialise input: {e}"),
    })
}

/// Embeddings through the Workers AI binding, batched within the model's limits, with retries.
#[derive(Debug)]
pub struct WorkersAiEmbedder<B, S> {
    binding: B,
    retrier: Retrier<S>,
    model: String,
    dimensions: usize,
    limits: BatchLimits,
}

impl<B: AiBinding, S: Sleeper> WorkersAiEmbedder<B, S> {
    /// An embedder for [`BGE_BASE_EN_V1_5`].
    #[must_use]
    pub fn bge_base(binding: B, retrier: Retrier<S>) -> Self {
        Self::new(
            binding,
            retrier,
            BGE_BASE_EN_V1_5,
            BGE_BASE_EN_V1_5_DIMENSIONS,
            WORKERS_AI_BGE_LIMITS,
        )
    }

    /// An embedder for any Workers AI embedding model.
    #[must_use]
    pub fn new(
        binding: B,
        retrier: Retrier<S>,
        model: impl Into<String>,
        dimensions: usize,
        limits: BatchLimits,
    ) -> Self {
        Self {
            binding,
            retrier,
            model: model.into(),
            dimensions,
            limits,
        }
    }

    async fn embed_once(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, ProviderError> {
        let input = to_value(&WorkersAiEmbeddingRequest {
            text: texts.to_vec(),
        })?;
        let output = self
            .binding
            .run(&self.model, input)
            .await
            .map_err(binding_error)?;
        parse_embedding_output(output, texts.len(), self.dimensions)
    }
}

impl<B: AiBinding, S: Sleeper> Embedder for WorkersAiEmbedder<B, S> {
    fn model(&self) -> &str {
        &self.model
    }

    fn dimensions(&self) -> usize {
        self.dimensions
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, ProviderError> {
        let batches = plan_batches(texts, &self.limits, estimate_tokens).map_err(|e| match e {
            BatchError::InputTooLarge {
                index,
                tokens,
                limit,
            } => ProviderError::InputTooLarge {
                provider: PROVIDER,
                index,
                tokens,
                limit,
            },
            other => ProviderError::InvalidRequest {
                provider: PROVIDER,
                reason: other.to_string(),
            },
        })?;
        let mut vectors = Vec::with_capacity(texts.len());
        for batch in batches {
            let slice = &texts[batch.range];
            vectors.extend(self.retrier.run(|_| self.embed_once(slice)).await?);
        }
        Ok(vectors)
    }
}

/// Chat through the Workers AI binding, whole or streamed (`"stream": true`: SSE deltas).
#[derive(Debug)]
pub struct WorkersAiChat<B, S> {
    binding: B,
    retrier: Retrier<S>,
    model: String,
}

impl<B: AiBinding, S: Sleeper> WorkersAiChat<B, S> {
    /// A chat model `model` (e.g. `@cf/meta/llama-3.1-8b-instruct`).
    #[must_use]
    pub fn new(binding: B, retrier: Retrier<S>, model: impl Into<String>) -> Self {
        Self {
            binding,
            retrier,
            model: model.into(),
        }
    }

    async fn complete_once(&self, req: &ChatRequest) -> Result<String, ProviderError> {
        let input = to_value(&WorkersAiChatRequest::from(req))?;
        let output = self
            .binding
            .run(&self.model, input)
            .await
            .map_err(binding_error)?;
        parse_chat_output(output)
    }

    /// One streamed attempt: deltas go to `on_delta` as they arrive. Once text is out, a
    /// failure is `StreamInterrupted` (a retry would repeat the text).
    async fn stream_once(
        &self,
        req: &ChatRequest,
        on_delta: &mut dyn FnMut(&str),
    ) -> Result<String, ProviderError> {
        let mut body = WorkersAiChatRequest::from(req);
        body.stream = Some(true);
        let input = to_value(&body)?;
        let mut decoder = WorkersAiStreamDecoder::default();
        let mut text = String::new();
        let mut error = None;
        let sent = self
            .binding
            .run_stream(&self.model, input, &mut |chunk| match decoder.push(chunk) {
                Ok(deltas) => {
                    for delta in deltas {
                        on_delta(&delta);
                        text.push_str(&delta);
                    }
                    if decoder.is_done() {
                        ControlFlow::Break(())
                    } else {
                        ControlFlow::Continue(())
                    }
                }
                Err(err) => {
                    error = Some(err);
                    ControlFlow::Break(())
                }
            })
            .await;
        let delivered = text.chars().count();
        let outcome = match (sent, error) {
            (Err(err), _) => Err(binding_error(err)),
            (Ok(()), Some(err)) => Err(err),
            (Ok(()), None) => decoder.finish(),
        };
        match outcome {
            Ok(()) => Ok(text),
            Err(err) if delivered == 0 => Err(err),
            Err(err) => Err(ProviderError::StreamInterrupted {
                provider: PROVIDER,
                delivered_chars: delivered,
                reason: err.to_string(),
            }),
        }
    }
}

impl<B: AiBinding, S: Sleeper> ChatModel for WorkersAiChat<B, S> {
    fn model(&self) -> &str {
        &self.model
    }

    async fn complete(&self, req: &ChatRequest) -> Result<ChatCompletion, ProviderError> {
        if req.messages.is_empty() {
            return Err(ProviderError::InvalidRequest {
                provider: PROVIDER,
                reason: "no messages".into(),
            });
        }
        let text = self.retrier.run(|_| self.complete_once(req)).await?;
        Ok(ChatCompletion {
            text,
            model: self.model.clone(),
        })
    }

    async fn stream(
        &self,
        req: &ChatRequest,
        on_delta: &mut dyn FnMut(&str),
    ) -> Result<ChatCompletion, ProviderError> {
        if req.messages.is_empty() {
            return Err(ProviderError::InvalidRequest {
                provider: PROVIDER,
                reason: "no messages".into(),
            });
        }
        let mut attempt = 1;
        loop {
            match self.stream_once(req, on_delta).await {
                Ok(text) => {
                    return Ok(ChatCompletion {
                        text,
                        model: self.model.clone(),
                    })
                }
                Err(err) => {
                    if !self.retrier.pause_before_retry(attempt, &err).await {
                        return Err(err);
                    }
                }
            }
            attempt += 1;
        }
    }
}

#[cfg(test)]
mod tests;
