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
mod tests {
    use super::*;
    use crate::providers::retry::RetryPolicy;
    use serde_json::json;
    use std::cell::RefCell;

    #[derive(Debug, Default)]
    struct NoSleep;
    impl Sleeper for NoSleep {
        async fn sleep(&self, _ms: u64) {}
    }

    fn thrown(message: &str) -> AiBindingError {
        AiBindingError::Thrown {
            name: "InferenceUpstreamError".into(),
            message: message.into(),
        }
    }

    /// A binding answering from a script, recording every input. Failures are served first
    /// (`failures`, in order); a streamed answer is cut into `chunk_bytes`-byte chunks and,
    /// with `cut_after`, the stream breaks after that many chunks.
    #[derive(Debug, Default)]
    struct ScriptedBinding {
        calls: RefCell<Vec<(String, Value)>>,
        failures: RefCell<Vec<AiBindingError>>,
        chunk_bytes: usize,
        cut_after: Option<usize>,
    }

    impl ScriptedBinding {
        fn next_failure(&self) -> Option<AiBindingError> {
            let mut failures = self.failures.borrow_mut();
            (!failures.is_empty()).then(|| failures.remove(0))
        }
    }

    impl AiBinding for ScriptedBinding {
        async fn run(&self, model: &str, input: Value) -> Result<Value, AiBindingError> {
            self.calls
                .borrow_mut()
                .push((model.to_owned(), input.clone()));
            if let Some(failure) = self.next_failure() {
                return Err(failure);
            }
            if let Some(texts) = input.get("text").and_then(Value::as_array) {
                let data: Vec<Vec<f32>> = texts
                    .iter()
                    .map(|t| {
                        let len = t.as_str().map_or(0, str::len);
                        #[allow(clippy::cast_precision_loss)]
                        let first = len as f32;
                        let mut v = vec![0.0; 4];
                        v[0] = first;
                        v
                    })
                    .collect();
                return Ok(json!({ "shape": [data.len(), 4], "data": data }));
            }
            Ok(json!({ "response": "Answer [1]" }))
        }

        async fn run_stream(
            &self,
            model: &str,
            input: Value,
            on_chunk: &mut dyn FnMut(&[u8]) -> ControlFlow<()>,
        ) -> Result<(), AiBindingError> {
            self.calls
                .borrow_mut()
                .push((model.to_owned(), input.clone()));
            if let Some(failure) = self.next_failure() {
                return Err(failure);
            }
            let mut body = String::new();
            for piece in ["The answer", " is in", " [1]."] {
                body.push_str(&format!("data: {}\n\n", json!({ "response": piece })));
            }
            body.push_str(
                "data: {\"response\":\"\",\"usage\":{\"total_tokens\":9}}\n\ndata: [DONE]\n\n",
            );
            for (i, chunk) in body.as_bytes().chunks(self.chunk_bytes.max(1)).enumerate() {
                if self.cut_after == Some(i) {
                    return Err(AiBindingError::Timeout("no chunk within 1000 ms".into()));
                }
                if on_chunk(chunk).is_break() {
                    break;
                }
            }
            Ok(())
        }
    }

    #[test]
    fn documented_error_codes_decide_what_is_retried() {
        let cases = [
            (
                "3040: No more data centers to forward the request to",
                429,
                true,
            ),
            (
                "3036: You have used up your daily free allocation",
                429,
                true,
            ),
            ("3007: Request timeout", 408, true),
            ("5007: No such model @cf/x or task", 400, false),
            ("3023: Service unavailable for account", 403, false),
            ("3006: Request is too large", 413, false),
            ("9999: something new", 500, true),
        ];
        for (message, status, retryable) in cases {
            let err = binding_error(thrown(message));
            assert_eq!(err.status(), Some(status), "{message}");
            assert_eq!(err.is_retryable(), retryable, "{message}");
            assert!(err.to_string().contains(&message[..4]), "{err}");
        }
        // No code: a broken connection, retried; a timeout likewise.
        let broken = binding_error(thrown("Network connection lost."));
        assert!(matches!(broken, ProviderError::Transport { .. }) && broken.is_retryable());
        let slow = binding_error(AiBindingError::Timeout("30000 ms".into()));
        assert!(slow.is_retryable());
        assert_eq!(internal_code("12345: x"), None);
        assert_eq!(internal_code("ab12: x"), None);
    }

    #[test]
    fn stream_decoder_yields_responses_until_done() {
        let mut decoder = WorkersAiStreamDecoder::default();
        let body = b"data: {\"response\":\"Hel\"}\n\ndata: {\"response\":\"lo\"}\r\n\r\ndata: {\"response\":\"\"}\n\ndata: [DONE]\n\ndata: {\"response\":\"late\"}\n\n";
        let mut deltas = Vec::new();
        for chunk in body.chunks(5) {
            deltas.extend(decoder.push(chunk).unwrap());
        }
        assert_eq!(deltas, ["Hel", "lo"]);
        assert!(decoder.is_done());
        decoder.finish().unwrap();

        let mut cut = WorkersAiStreamDecoder::default();
        assert_eq!(cut.push(b"data: {\"response\":\"x\"}\n\n").unwrap(), ["x"]);
        assert!(matches!(
            cut.finish(),
            Err(ProviderError::MalformedResponse { .. })
        ));
        let mut garbled = WorkersAiStreamDecoder::default();
        assert!(garbled.push(b"data: <html>\n\n").is_err());
    }

    #[test]
    fn shapes_serialise_as_the_binding_expects() {
        let req = WorkersAiEmbeddingRequest {
            text: vec!["a".into()],
        };
        assert_eq!(serde_json::to_value(&req).unwrap(), json!({"text": ["a"]}));
        let chat = WorkersAiChatRequest::from(
            &ChatRequest::new(vec![ChatMessage::user("hi")]).with_max_tokens(5),
        );
        assert_eq!(
            serde_json::to_value(&chat).unwrap(),
            json!({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 5})
        );
    }

    #[test]
    fn embedding_output_is_validated() {
        let ok = json!({"shape": [2, 2], "data": [[1, 2], [3, 4]]});
        assert_eq!(
            parse_embedding_output(ok.clone(), 2, 2).unwrap(),
            vec![vec![1.0, 2.0], vec![3.0, 4.0]]
        );
        assert!(matches!(
            parse_embedding_output(ok.clone(), 3, 2),
            Err(ProviderError::CountMismatch { .. })
        ));
        assert!(matches!(
            parse_embedding_output(ok, 2, 768),
            Err(ProviderError::DimensionMismatch { .. })
        ));
        let bad_shape = json!({"shape": [2, 3], "data": [[1, 2], [3, 4]]});
        assert!(matches!(
            parse_embedding_output(bad_shape, 2, 2),
            Err(ProviderError::MalformedResponse { .. })
        ));
        assert!(matches!(
            parse_embedding_output(json!({"data": 1}), 1, 1),
            Err(ProviderError::MalformedResponse { .. })
        ));
        assert_eq!(parse_chat_output(json!({"response": "hi"})).unwrap(), "hi");
        assert!(parse_chat_output(json!({"result": "hi"})).is_err());
    }

    #[test]
    fn embedder_batches_by_one_hundred_and_retries_binding_failures() {
        let binding = ScriptedBinding {
            failures: RefCell::new(vec![thrown("3040: Capacity temporarily exceeded")]),
            ..ScriptedBinding::default()
        };
        let embedder = WorkersAiEmbedder::new(
            &binding,
            Retrier::new(RetryPolicy::default(), NoSleep, 3),
            BGE_BASE_EN_V1_5,
            4,
            WORKERS_AI_BGE_LIMITS,
        );
        let texts: Vec<String> = (0..250).map(|i| "x".repeat(i % 7 + 1)).collect();
        let vectors = pollster::block_on(embedder.embed(&texts)).unwrap();
        assert_eq!(vectors.len(), 250);
        #[allow(clippy::cast_precision_loss)]
        let in_order = vectors
            .iter()
            .zip(&texts)
            .all(|(v, t)| v[0] == t.len() as f32);
        assert!(in_order);
        let calls = binding.calls.borrow();
        // 1 failed + 3 batches (100, 100, 50).
        assert_eq!(calls.len(), 4);
        assert_eq!(calls[0].0, BGE_BASE_EN_V1_5);
        let sizes: Vec<usize> = calls
            .iter()
            .map(|(_, v)| v["text"].as_array().map_or(0, Vec::len))
            .collect();
        assert_eq!(sizes, [100, 100, 100, 50]);
    }

    #[test]
    fn chat_passes_messages_and_answers_whole() {
        let binding = ScriptedBinding::default();
        let chat = WorkersAiChat::new(
            &binding,
            Retrier::new(RetryPolicy::no_retries(), NoSleep, 1),
            "@cf/m",
        );
        let req = ChatRequest::new(vec![ChatMessage::user("q")]);
        let done = pollster::block_on(chat.complete(&req)).unwrap();
        assert_eq!(done.text, "Answer [1]");
        let calls = binding.calls.borrow();
        assert_eq!(calls[0].1["messages"][0]["content"], "q");
        assert!(calls[0].1.get("stream").is_none());
        drop(calls);
        let empty = pollster::block_on(chat.complete(&ChatRequest::new(vec![])));
        assert!(matches!(empty, Err(ProviderError::InvalidRequest { .. })));
    }

    #[test]
    fn chat_streams_deltas_and_retries_only_before_the_first() {
        // Chunks split anywhere; a capacity error before any text is retried.
        let binding = ScriptedBinding {
            failures: RefCell::new(vec![thrown("3040: No more data centers")]),
            chunk_bytes: 7,
            ..ScriptedBinding::default()
        };
        let chat = WorkersAiChat::new(
            &binding,
            Retrier::new(RetryPolicy::default(), NoSleep, 1),
            "@cf/m",
        );
        let req = ChatRequest::new(vec![ChatMessage::user("q")]);
        let mut deltas = Vec::new();
        let done =
            pollster::block_on(chat.stream(&req, &mut |d| deltas.push(d.to_owned()))).unwrap();
        assert_eq!(done.text, "The answer is in [1].");
        assert_eq!(deltas.concat(), done.text);
        assert!(deltas.len() >= 3, "{deltas:?}");
        let calls = binding.calls.borrow();
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[1].1["stream"], true);
        drop(calls);

        // Cut after some text: reported, not retried (a retry would repeat the text).
        let cut = ScriptedBinding {
            chunk_bytes: 16,
            cut_after: Some(3),
            ..ScriptedBinding::default()
        };
        let chat = WorkersAiChat::new(
            &cut,
            Retrier::new(RetryPolicy::default(), NoSleep, 1),
            "@cf/m",
        );
        let mut seen = String::new();
        let err = pollster::block_on(chat.stream(&req, &mut |d| seen.push_str(d))).unwrap_err();
        assert!(
            matches!(err, ProviderError::StreamInterrupted { delivered_chars, .. } if delivered_chars == seen.chars().count() && delivered_chars > 0),
            "{err:?}"
        );
        assert_eq!(cut.calls.borrow().len(), 1);

        // A model that does not exist fails at once.
        let missing = ScriptedBinding {
            failures: RefCell::new(vec![thrown("5007: No such model @cf/m or task")]),
            ..ScriptedBinding::default()
        };
        let chat = WorkersAiChat::new(
            &missing,
            Retrier::new(RetryPolicy::default(), NoSleep, 1),
            "@cf/m",
        );
        let err = pollster::block_on(chat.stream(&req, &mut |_| {})).unwrap_err();
        assert_eq!(err.status(), Some(400));
        assert_eq!(missing.calls.borrow().len(), 1);
    }
}
