//! Workers AI through the `env.AI.run(model, input)` binding: request and response shapes,
//! their validation, and providers generic over a one-method [`AiBinding`].
//!
//! Owns the JSON the binding takes and returns, so the Worker only passes JSON through; must
//! never touch the binding itself.

use super::batch::{estimate_tokens, plan_batches, BatchError, BatchLimits, WORKERS_AI_BGE_LIMITS};
use super::error::ProviderError;
use super::retry::Retrier;
use super::transport::{Sleeper, TransportError};
use super::{ChatCompletion, ChatMessage, ChatModel, ChatRequest, Embedder};
use serde::{Deserialize, Serialize};
use serde_json::Value;

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
}

impl From<&ChatRequest> for WorkersAiChatRequest {
    fn from(req: &ChatRequest) -> Self {
        Self {
            messages: req.messages.clone(),
            max_tokens: req.max_tokens,
            temperature: req.temperature,
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

/// The `env.AI` binding as the Worker exposes it: run a model on JSON input. Errors are
/// reported as transport failures (the binding throws on capacity and upstream errors).
#[allow(async_fn_in_trait)]
pub trait AiBinding {
    /// Runs `model` on `input` and returns its JSON output.
    async fn run(&self, model: &str, input: Value) -> Result<Value, TransportError>;
}

impl<T: AiBinding + ?Sized> AiBinding for &T {
    async fn run(&self, model: &str, input: Value) -> Result<Value, TransportError> {
        (**self).run(model, input).await
    }
}

fn to_value(input: &impl Serialize) -> Result<Value, ProviderError> {
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
            .map_err(|source| ProviderError::Transport {
                provider: PROVIDER,
                source,
            })?;
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

/// Chat through the Workers AI binding; streaming delivers the whole answer as one delta.
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
            .map_err(|source| ProviderError::Transport {
                provider: PROVIDER,
                source,
            })?;
        parse_chat_output(output)
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
        let completion = self.complete(req).await?;
        on_delta(&completion.text);
        Ok(completion)
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

    /// A binding answering from a script, recording every input.
    #[derive(Debug, Default)]
    struct ScriptedBinding {
        calls: RefCell<Vec<(String, Value)>>,
        failures_left: RefCell<u32>,
    }

    impl AiBinding for ScriptedBinding {
        async fn run(&self, model: &str, input: Value) -> Result<Value, TransportError> {
            self.calls
                .borrow_mut()
                .push((model.to_owned(), input.clone()));
            if *self.failures_left.borrow() > 0 {
                *self.failures_left.borrow_mut() -= 1;
                return Err(TransportError::Connection(
                    "3040: Capacity temporarily exceeded".into(),
                ));
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
            failures_left: RefCell::new(1),
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
    fn chat_passes_messages_and_streams_one_delta() {
        let binding = ScriptedBinding::default();
        let chat = WorkersAiChat::new(
            &binding,
            Retrier::new(RetryPolicy::no_retries(), NoSleep, 1),
            "@cf/m",
        );
        let mut deltas = Vec::new();
        let req = ChatRequest::new(vec![ChatMessage::user("q")]);
        let done =
            pollster::block_on(chat.stream(&req, &mut |d| deltas.push(d.to_owned()))).unwrap();
        assert_eq!(done.text, "Answer [1]");
        assert_eq!(deltas, ["Answer [1]"]);
        assert_eq!(binding.calls.borrow()[0].1["messages"][0]["content"], "q");
        let empty = pollster::block_on(chat.complete(&ChatRequest::new(vec![])));
        assert!(matches!(empty, Err(ProviderError::InvalidRequest { .. })));
    }
}
