//! Embedding and chat providers behind two traits, [`Embedder`] and [`ChatModel`]: an
//! OpenAI-compatible HTTP API, Workers AI payloads, and offline defaults needing no key.
//!
//! Owns request building, response validation, batching and retries. Must never do I/O
//! itself: HTTP goes through an injected [`HttpTransport`], waiting through a [`Sleeper`].

pub mod batch;
pub mod error;
pub mod extractive;
pub mod offline_embedder;
pub mod openai;
pub mod prompts;
pub mod rerank;
pub mod retry;
pub mod retry_after;
pub mod settings;
pub mod sse;
pub mod transport;
pub mod workers_ai;

pub use batch::{estimate_tokens, plan_batches, BatchError, BatchLimits, EmbeddingBatch};
pub use error::ProviderError;
pub use extractive::ExtractiveAnswerer;
pub use offline_embedder::HashingEmbedder;
pub use openai::{OpenAiChat, OpenAiConfig, OpenAiEmbedder};
pub use rerank::{HttpReranker, Reranker, WorkersAiReranker};
pub use retry::{Retrier, RetryPolicy, SeededJitter};
pub use retry_after::RetryAfter;
pub use settings::{ProviderKind, WorkersAiModels};
pub use sse::{SseEvent, SseParser};
pub use transport::{
    HttpMethod, HttpRequest, HttpResponse, HttpTransport, ResponseSink, Sleeper, TransportError,
    DEFAULT_PROVIDER_TIMEOUT_MS,
};
pub use workers_ai::{AiBinding, WorkersAiChat, WorkersAiEmbedder};

use prompts::{ContextPassage, HistoryRole, HistoryTurn};
use serde::{Deserialize, Serialize};

/// Who wrote a chat message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChatRole {
    /// Instructions to the model.
    System,
    /// The person asking.
    User,
    /// The model.
    Assistant,
}

/// One chat message, serialised as `{"role": "...", "content": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// Author.
    pub role: ChatRole,
    /// Text.
    pub content: String,
}

impl ChatMessage {
    /// A system message.
    #[must_use]
    pub fn system(content: impl Into<String>) -> Self {
        Self {
            role: ChatRole::System,
            content: content.into(),
        }
    }

    /// A user message.
    #[must_use]
    pub fn user(content: impl Into<String>) -> Self {
        Self {
            role: ChatRole::User,
            content: content.into(),
        }
    }

    /// An assistant message.
    #[must_use]
    pub fn assistant(content: impl Into<String>) -> Self {
        Self {
            role: ChatRole::Assistant,
            content: content.into(),
        }
    }
}

/// A retrieved passage offered to the answerer, cited as `[number]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Passage {
    /// Citation number, 1-based, in retrieval order.
    pub number: usize,
    /// Title of the source document.
    pub title: String,
    /// Headings above the passage, outermost first.
    pub heading_path: Vec<String>,
    /// Passage text.
    pub text: String,
}

/// The question and passages behind an answer request, kept for answerers that read them
/// directly instead of the rendered prompt (the extractive answerer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grounding {
    /// The question as asked.
    pub question: String,
    /// Ranked passages.
    pub passages: Vec<Passage>,
}

/// Default sampling temperature for answers: low, since answers must stick to the context.
pub const ANSWER_TEMPERATURE: f32 = 0.2;
/// Default answer length cap in tokens.
pub const ANSWER_MAX_TOKENS: u32 = 800;
/// Temperature for tag extraction: deterministic output parses best.
pub const TAG_TEMPERATURE: f32 = 0.0;
/// Tag output cap in tokens, enough for 8 tags for each chunk of a batch.
pub const TAG_MAX_TOKENS: u32 = 1_500;

/// A chat completion request.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatRequest {
    /// Messages in order.
    pub messages: Vec<ChatMessage>,
    /// Sampling temperature, provider default when `None`.
    pub temperature: Option<f32>,
    /// Output cap in tokens, provider default when `None`.
    pub max_tokens: Option<u32>,
    /// Question and passages, for answer requests.
    pub grounding: Option<Grounding>,
    /// Version of the prompt that built the messages, for logs.
    pub prompt_version: Option<&'static str>,
}

impl ChatRequest {
    /// A request from raw messages.
    #[must_use]
    pub fn new(messages: Vec<ChatMessage>) -> Self {
        Self {
            messages,
            temperature: None,
            max_tokens: None,
            grounding: None,
            prompt_version: None,
        }
    }

    /// An answer request: the answer system prompt, then the question with numbered passages
    /// and earlier turns (system messages in `history` are ignored).
    #[must_use]
    pub fn for_answer(question: &str, passages: Vec<Passage>, history: &[ChatMessage]) -> Self {
        let context: Vec<ContextPassage<'_>> = passages
            .iter()
            .map(|p| ContextPassage {
                number: p.number,
                title: &p.title,
                heading_path: &p.heading_path,
                text: &p.text,
            })
            .collect();
        let turns: Vec<HistoryTurn<'_>> = history
            .iter()
            .filter_map(|m| {
                let role = match m.role {
                    ChatRole::User => HistoryRole::User,
                    ChatRole::Assistant => HistoryRole::Assistant,
                    ChatRole::System => return None,
                };
                Some(HistoryTurn {
                    role,
                    content: &m.content,
                })
            })
            .collect();
        let user = prompts::render_answer_user_message(question, &context, &turns);
        Self {
            messages: vec![
                ChatMessage::system(prompts::ANSWER_SYSTEM_PROMPT),
                ChatMessage::user(user),
            ],
            temperature: Some(ANSWER_TEMPERATURE),
            max_tokens: Some(ANSWER_MAX_TOKENS),
            grounding: Some(Grounding {
                question: question.to_owned(),
                passages,
            }),
            prompt_version: Some(prompts::ANSWER_PROMPT_VERSION),
        }
    }

    /// A tag-extraction request for a batch of chunk texts, numbered from 1.
    #[must_use]
    pub fn for_tags(chunks: &[&str]) -> Self {
        Self {
            messages: vec![
                ChatMessage::system(prompts::TAG_SYSTEM_PROMPT),
                ChatMessage::user(prompts::render_tag_user_message(chunks)),
            ],
            temperature: Some(TAG_TEMPERATURE),
            max_tokens: Some(TAG_MAX_TOKENS),
            grounding: None,
            prompt_version: Some(prompts::TAG_PROMPT_VERSION),
        }
    }

    /// Sets the sampling temperature.
    #[must_use]
    pub fn with_temperature(mut self, temperature: f32) -> Self {
        self.temperature = Some(temperature);
        self
    }

    /// Sets the output cap in tokens.
    #[must_use]
    pub fn with_max_tokens(mut self, max_tokens: u32) -> Self {
        self.max_tokens = Some(max_tokens);
        self
    }
}

/// A finished answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatCompletion {
    /// The full text.
    pub text: String,
    /// Model that produced it.
    pub model: String,
}

/// Turns texts into vectors of a fixed dimension, in input order.
#[allow(async_fn_in_trait)]
pub trait Embedder {
    /// Model name, for logs and the index metadata.
    fn model(&self) -> &str;
    /// Length of every returned vector.
    fn dimensions(&self) -> usize;
    /// Embeds `texts`; the result has one vector per text, in order.
    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, ProviderError>;
}

/// Answers chat requests, whole or as a stream of text deltas.
#[allow(async_fn_in_trait)]
pub trait ChatModel {
    /// Model name, for logs.
    fn model(&self) -> &str;
    /// Returns the whole answer.
    async fn complete(&self, req: &ChatRequest) -> Result<ChatCompletion, ProviderError>;
    /// Passes answer text to `on_delta` as it is produced, then returns the whole answer.
    async fn stream(
        &self,
        req: &ChatRequest,
        on_delta: &mut dyn FnMut(&str),
    ) -> Result<ChatCompletion, ProviderError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn passage(number: usize, text: &str) -> Passage {
        Passage {
            number,
            title: format!("Doc {number}"),
            heading_path: vec!["H".into()],
            text: text.into(),
        }
    }

    #[test]
    fn answer_request_carries_prompt_grounding_and_version() {
        let history = [
            ChatMessage::system("ignored"),
            ChatMessage::user("earlier?"),
            ChatMessage::assistant("yes [1]"),
        ];
        let req = ChatRequest::for_answer(
            "What now?",
            vec![passage(1, "Alpha."), passage(2, "Beta.")],
            &history,
        );
        assert_eq!(req.messages.len(), 2);
        assert_eq!(req.messages[0].content, prompts::ANSWER_SYSTEM_PROMPT);
        let user = &req.messages[1].content;
        assert!(user.contains("[2] Doc 2\nSection: H\nBeta."));
        assert!(user.contains("User: earlier?") && !user.contains("ignored"));
        assert_eq!(req.prompt_version, Some("answer-v1"));
        assert_eq!(req.grounding.as_ref().map(|g| g.passages.len()), Some(2));
    }

    #[test]
    fn messages_serialise_in_the_openai_shape() {
        let json = serde_json::to_value(ChatMessage::assistant("hi")).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"role": "assistant", "content": "hi"})
        );
        let tags = ChatRequest::for_tags(&["one", "two"]).with_max_tokens(10);
        assert_eq!(tags.max_tokens, Some(10));
        assert!(tags.messages[1].content.contains("Chunk 2:\ntwo"));
        assert_eq!(tags.prompt_version, Some(prompts::TAG_PROMPT_VERSION));
    }
}
