//! The OpenAI-compatible HTTP API: `/v1/embeddings` and `/v1/chat/completions` (whole and
//! streamed as Server-Sent Events), against any base URL.
//!
//! Owns the wire shapes and their validation; must never hold a client or read the key from
//! the environment (the Worker passes configuration in).

use super::batch::{
    estimate_tokens, plan_batches, BatchError, BatchLimits, OPENAI_EMBEDDING_LIMITS,
};
use super::error::ProviderError;
use super::retry::Retrier;
use super::sse::SseParser;
use super::transport::{HttpRequest, HttpResponse, HttpTransport, ResponseSink, Sleeper};
use super::{ChatCompletion, ChatMessage, ChatModel, ChatRequest, Embedder};
use serde::{Deserialize, Serialize};
use std::ops::ControlFlow;

/// Provider name in errors and logs.
pub const PROVIDER: &str = "openai-compatible";
/// OpenAI's API origin, the default base URL.
pub const OPENAI_BASE_URL: &str = "https://api.openai.com";
/// Largest error body kept from a failed streamed response.
const MAX_ERROR_BODY_BYTES: usize = 4_096;

/// Where and as whom to call an OpenAI-compatible API.
#[derive(Clone, PartialEq, Eq)]
pub struct OpenAiConfig {
    base_url: String,
    api_key: Option<String>,
    model: String,
}

impl std::fmt::Debug for OpenAiConfig {
    // The key must never reach a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiConfig")
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("model", &self.model)
            .finish()
    }
}

impl OpenAiConfig {
    /// A configuration for `model` at `base_url` (origin, with or without a trailing `/v1`).
    #[must_use]
    pub fn new(base_url: impl Into<String>, model: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            api_key: None,
            model: model.into(),
        }
    }

    /// Sends `Authorization: Bearer <key>`; local compatible servers may need none.
    #[must_use]
    pub fn with_api_key(mut self, key: impl Into<String>) -> Self {
        self.api_key = Some(key.into());
        self
    }

    /// The model name sent with each request.
    #[must_use]
    pub fn model(&self) -> &str {
        &self.model
    }

    /// Full URL of an API path such as `embeddings`.
    #[must_use]
    pub fn endpoint(&self, path: &str) -> String {
        let base = self.base_url.trim_end_matches('/');
        let base = base.strip_suffix("/v1").unwrap_or(base);
        format!("{base}/v1/{path}")
    }

    pub(super) fn request(
        &self,
        path: &str,
        body: &impl Serialize,
    ) -> Result<HttpRequest, ProviderError> {
        let mut req = HttpRequest::post_json(self.endpoint(path), body).map_err(|e| {
            ProviderError::InvalidRequest {
                provider: PROVIDER,
                reason: format!("cannot serialise request: {e}"),
            }
        })?;
        if let Some(key) = &self.api_key {
            req = req.with_header("Authorization", format!("Bearer {key}"));
        }
        Ok(req)
    }
}

#[derive(Debug, Serialize)]
struct EmbeddingRequestBody<'a> {
    model: &'a str,
    input: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    dimensions: Option<usize>,
}

#[derive(Debug, Deserialize)]
struct EmbeddingResponseBody {
    data: Vec<EmbeddingItem>,
}

#[derive(Debug, Deserialize)]
struct EmbeddingItem {
    index: usize,
    embedding: Vec<f32>,
}

/// Parses a `/v1/embeddings` body into vectors ordered by `index`, checking count and dimension.
///
/// # Errors
/// `MalformedResponse` for bad JSON or indexes, `CountMismatch`, `DimensionMismatch`.
pub fn parse_embedding_response(
    body: &[u8],
    expected_count: usize,
    expected_dimensions: usize,
) -> Result<Vec<Vec<f32>>, ProviderError> {
    let parsed: EmbeddingResponseBody = serde_json::from_slice(body)
        .map_err(|e| ProviderError::malformed(PROVIDER, e.to_string(), body))?;
    if parsed.data.len() != expected_count {
        return Err(ProviderError::CountMismatch {
            provider: PROVIDER,
            expected: expected_count,
            got: parsed.data.len(),
        });
    }
    let mut slots: Vec<Option<Vec<f32>>> = vec![None; expected_count];
    for item in parsed.data {
        let slot = slots.get_mut(item.index).ok_or_else(|| {
            ProviderError::malformed(PROVIDER, format!("index {} out of range", item.index), body)
        })?;
        if slot.is_some() {
            return Err(ProviderError::malformed(
                PROVIDER,
                format!("index {} repeated", item.index),
                body,
            ));
        }
        if item.embedding.len() != expected_dimensions {
            return Err(ProviderError::DimensionMismatch {
                provider: PROVIDER,
                index: item.index,
                expected: expected_dimensions,
                got: item.embedding.len(),
            });
        }
        *slot = Some(item.embedding);
    }
    // Count matched and no index repeated, so every slot is filled.
    Ok(slots.into_iter().flatten().collect())
}

fn map_batch_error(err: BatchError) -> ProviderError {
    match err {
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
    }
}

async fn send_checked<T: HttpTransport>(
    transport: &T,
    req: HttpRequest,
) -> Result<HttpResponse, ProviderError> {
    send_checked_as(PROVIDER, transport, req).await
}

/// Sends `req`; a transport failure or a non-2xx status becomes the error of `provider`.
pub(super) async fn send_checked_as<T: HttpTransport>(
    provider: &'static str,
    transport: &T,
    req: HttpRequest,
) -> Result<HttpResponse, ProviderError> {
    let response = transport
        .send(req)
        .await
        .map_err(|source| ProviderError::Transport { provider, source })?;
    if response.is_success() {
        Ok(response)
    } else {
        Err(ProviderError::from_status(provider, &response))
    }
}

/// Embeddings over `/v1/embeddings`, batched within the provider's limits, with retries.
#[derive(Debug)]
pub struct OpenAiEmbedder<T, S> {
    config: OpenAiConfig,
    transport: T,
    retrier: Retrier<S>,
    dimensions: usize,
    send_dimensions: bool,
    limits: BatchLimits,
}

impl<T: HttpTransport, S: Sleeper> OpenAiEmbedder<T, S> {
    /// An embedder expecting `dimensions`-long vectors, with OpenAI's batch limits.
    #[must_use]
    pub fn new(config: OpenAiConfig, transport: T, retrier: Retrier<S>, dimensions: usize) -> Self {
        Self {
            config,
            transport,
            retrier,
            dimensions,
            send_dimensions: false,
            limits: OPENAI_EMBEDDING_LIMITS,
        }
    }

    /// Also sends `dimensions` in the request (text-embedding-3-* can shorten vectors).
    #[must_use]
    pub fn with_dimensions_parameter(mut self) -> Self {
        self.send_dimensions = true;
        self
    }

    /// Replaces the batch limits, for compatible servers with other limits.
    #[must_use]
    pub fn with_limits(mut self, limits: BatchLimits) -> Self {
        self.limits = limits;
        self
    }

    async fn embed_once(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, ProviderError> {
        let body = EmbeddingRequestBody {
            model: &self.config.model,
            input: texts,
            dimensions: self.send_dimensions.then_some(self.dimensions),
        };
        let response =
            send_checked(&self.transport, self.config.request("embeddings", &body)?).await?;
        parse_embedding_response(&response.body, texts.len(), self.dimensions)
    }
}

impl<T: HttpTransport, S: Sleeper> Embedder for OpenAiEmbedder<T, S> {
    fn model(&self) -> &str {
        &self.config.model
    }

    fn dimensions(&self) -> usize {
        self.dimensions
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, ProviderError> {
        let batches =
            plan_batches(texts, &self.limits, estimate_tokens).map_err(map_batch_error)?;
        let mut vectors = Vec::with_capacity(texts.len());
        for batch in batches {
            let slice = &texts[batch.range];
            vectors.extend(self.retrier.run(|_| self.embed_once(slice)).await?);
        }
        Ok(vectors)
    }
}

#[derive(Debug, Serialize)]
struct ChatRequestBody<'a> {
    model: &'a str,
    messages: &'a [ChatMessage],
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u32>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    stream: bool,
}

#[derive(Debug, Deserialize)]
struct ChatResponseBody {
    choices: Vec<ChatChoice>,
}

#[derive(Debug, Deserialize)]
struct ChatChoice {
    message: ChatChoiceMessage,
}

#[derive(Debug, Deserialize)]
struct ChatChoiceMessage {
    content: Option<String>,
}

/// Parses a non-streamed `/v1/chat/completions` body: `choices[0].message.content`.
///
/// # Errors
/// `MalformedResponse` for bad JSON, no choices or no content.
pub fn parse_chat_response(body: &[u8]) -> Result<String, ProviderError> {
    let parsed: ChatResponseBody = serde_json::from_slice(body)
        .map_err(|e| ProviderError::malformed(PROVIDER, e.to_string(), body))?;
    parsed
        .choices
        .into_iter()
        .next()
        .and_then(|c| c.message.content)
        .ok_or_else(|| ProviderError::malformed(PROVIDER, "no choices[0].message.content", body))
}

#[derive(Debug, Deserialize)]
struct StreamChunk {
    #[serde(default)]
    choices: Vec<StreamChoice>,
    error: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
struct StreamChoice {
    #[serde(default)]
    delta: StreamDelta,
    finish_reason: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct StreamDelta {
    content: Option<String>,
}

/// Turns a streamed chat body into text deltas: SSE framing, `choices[0].delta.content`,
/// `data: [DONE]` as the end.
#[derive(Debug, Default)]
pub struct ChatStreamDecoder {
    parser: SseParser,
    done: bool,
    finished_choice: bool,
}

impl ChatStreamDecoder {
    /// A decoder at the start of a stream.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether `data: [DONE]` was seen; later bytes are ignored.
    #[must_use]
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Feeds body bytes and returns the text deltas they completed.
    ///
    /// # Errors
    /// `MalformedResponse` when an event is not a chat chunk or reports an error.
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
            let chunk: StreamChunk = serde_json::from_str(data).map_err(|e| {
                ProviderError::malformed(PROVIDER, format!("stream event: {e}"), data.as_bytes())
            })?;
            if let Some(error) = chunk.error {
                return Err(ProviderError::malformed(
                    PROVIDER,
                    "error event in stream",
                    error.to_string().as_bytes(),
                ));
            }
            if let Some(choice) = chunk.choices.into_iter().next() {
                self.finished_choice |= choice.finish_reason.is_some();
                if let Some(text) = choice.delta.content.filter(|t| !t.is_empty()) {
                    deltas.push(text);
                }
            }
        }
        Ok(deltas)
    }

    /// Ends the stream.
    ///
    /// # Errors
    /// `MalformedResponse` when it ended before `[DONE]` or a finish reason.
    pub fn finish(&mut self) -> Result<(), ProviderError> {
        let _ = self.parser.finish();
        if self.done || self.finished_choice {
            Ok(())
        } else {
            Err(ProviderError::malformed(
                PROVIDER,
                "stream ended before data: [DONE]",
                b"",
            ))
        }
    }
}

/// Chat over `/v1/chat/completions`, whole or streamed, with retries before any text is out.
#[derive(Debug)]
pub struct OpenAiChat<T, S> {
    config: OpenAiConfig,
    transport: T,
    retrier: Retrier<S>,
}

struct StreamSink<'a> {
    status: u16,
    headers: Vec<(String, String)>,
    error_body: Vec<u8>,
    decoder: ChatStreamDecoder,
    on_delta: &'a mut dyn FnMut(&str),
    text: String,
    error: Option<ProviderError>,
}

impl ResponseSink for StreamSink<'_> {
    fn on_head(&mut self, status: u16, headers: &[(String, String)]) {
        self.status = status;
        self.headers = headers.to_vec();
    }

    fn on_chunk(&mut self, chunk: &[u8]) -> ControlFlow<()> {
        if !(200..300).contains(&self.status) {
            let room = MAX_ERROR_BODY_BYTES.saturating_sub(self.error_body.len());
            self.error_body
                .extend_from_slice(&chunk[..chunk.len().min(room)]);
            return ControlFlow::Continue(());
        }
        match self.decoder.push(chunk) {
            Ok(deltas) => {
                for delta in deltas {
                    (self.on_delta)(&delta);
                    self.text.push_str(&delta);
                }
                if self.decoder.is_done() {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            }
            Err(err) => {
                self.error = Some(err);
                ControlFlow::Break(())
            }
        }
    }
}

impl<T: HttpTransport, S: Sleeper> OpenAiChat<T, S> {
    /// A chat model at `config`.
    #[must_use]
    pub fn new(config: OpenAiConfig, transport: T, retrier: Retrier<S>) -> Self {
        Self {
            config,
            transport,
            retrier,
        }
    }

    fn build(&self, req: &ChatRequest, stream: bool) -> Result<HttpRequest, ProviderError> {
        if req.messages.is_empty() {
            return Err(ProviderError::InvalidRequest {
                provider: PROVIDER,
                reason: "no messages".into(),
            });
        }
        let body = ChatRequestBody {
            model: &self.config.model,
            messages: &req.messages,
            temperature: req.temperature,
            max_tokens: req.max_tokens,
            stream,
        };
        let http = self.config.request("chat/completions", &body)?;
        Ok(if stream {
            http.with_header("Accept", "text/event-stream")
        } else {
            http
        })
    }

    async fn complete_once(&self, req: &ChatRequest) -> Result<String, ProviderError> {
        let response = send_checked(&self.transport, self.build(req, false)?).await?;
        parse_chat_response(&response.body)
    }

    async fn stream_once(
        &self,
        req: &ChatRequest,
        on_delta: &mut dyn FnMut(&str),
    ) -> Result<String, ProviderError> {
        let http = self.build(req, true)?;
        let mut sink = StreamSink {
            status: 0,
            headers: Vec::new(),
            error_body: Vec::new(),
            decoder: ChatStreamDecoder::new(),
            on_delta,
            text: String::new(),
            error: None,
        };
        let sent = self.transport.send_streaming(http, &mut sink).await;
        let interrupted = |reason: String, delivered: usize| ProviderError::StreamInterrupted {
            provider: PROVIDER,
            delivered_chars: delivered,
            reason,
        };
        let delivered = sink.text.chars().count();
        if let Err(source) = sent {
            // Once text is out, a retry would repeat it: report instead.
            return Err(if delivered == 0 {
                ProviderError::Transport {
                    provider: PROVIDER,
                    source,
                }
            } else {
                interrupted(source.to_string(), delivered)
            });
        }
        if !(200..300).contains(&sink.status) {
            let head = HttpResponse {
                status: sink.status,
                headers: sink.headers,
                body: sink.error_body,
            };
            return Err(ProviderError::from_status(PROVIDER, &head));
        }
        let outcome = match sink.error.take() {
            Some(err) => Err(err),
            None => sink.decoder.finish(),
        };
        match outcome {
            Ok(()) => Ok(sink.text),
            Err(err) if delivered == 0 => Err(err),
            Err(err) => Err(interrupted(err.to_string(), delivered)),
        }
    }
}

impl<T: HttpTransport, S: Sleeper> ChatModel for OpenAiChat<T, S> {
    fn model(&self) -> &str {
        &self.config.model
    }

    async fn complete(&self, req: &ChatRequest) -> Result<ChatCompletion, ProviderError> {
        let text = self.retrier.run(|_| self.complete_once(req)).await?;
        Ok(ChatCompletion {
            text,
            model: self.config.model.clone(),
        })
    }

    async fn stream(
        &self,
        req: &ChatRequest,
        on_delta: &mut dyn FnMut(&str),
    ) -> Result<ChatCompletion, ProviderError> {
        let mut attempt = 1;
        loop {
            match self.stream_once(req, on_delta).await {
                Ok(text) => {
                    return Ok(ChatCompletion {
                        text,
                        model: self.config.model.clone(),
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
