//! Which provider serves embeddings and chat, and the Workers AI models: the
//! settings the providers flow owns (`EMBEDDING_PROVIDER`, `CHAT_PROVIDER`,
//! `WORKERS_AI_*`). `crate::config` reads the vars into them.
//!
//! Never calls a provider and never reads a var.

/// Longest provider request time limit: a Worker invocation's wall time
/// budget is what bounds it in practice.
pub const MAX_PROVIDER_TIMEOUT_MS: u64 = 5 * 60 * 1_000;

/// Which provider serves embeddings or chat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderKind {
    /// No key: the feature-hashing embedder / the extractive answerer.
    Offline,
    /// Any OpenAI-compatible HTTP API.
    OpenAi,
    /// The Workers AI binding.
    WorkersAi,
}

impl ProviderKind {
    /// The var value naming it.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Offline => "offline",
            Self::OpenAi => "openai",
            Self::WorkersAi => "workers-ai",
        }
    }

    pub(crate) fn parse(value: &str) -> Option<Self> {
        [Self::Offline, Self::OpenAi, Self::WorkersAi]
            .into_iter()
            .find(|k| k.as_str() == value)
    }
}

/// The Workers AI models the `workers-ai` provider runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkersAiModels {
    /// Embedding model (one of [`WORKERS_AI_EMBEDDING_MODELS`]).
    pub embedding_model: String,
    /// Text-generation model.
    pub chat_model: String,
}

/// Workers AI embedding models and their output dimensions, from each model's page
/// (<https://developers.cloudflare.com/workers-ai/models/>): the index's dimensions must
/// equal the model's, so only models whose dimensions are known are accepted.
pub const WORKERS_AI_EMBEDDING_MODELS: [(&str, u32); 4] = [
    ("@cf/baai/bge-small-en-v1.5", 384),
    ("@cf/baai/bge-base-en-v1.5", 768),
    ("@cf/baai/bge-large-en-v1.5", 1_024),
    ("@cf/baai/bge-m3", 1_024),
];
/// Default `WORKERS_AI_EMBEDDING_MODEL`.
pub const DEFAULT_WORKERS_AI_EMBEDDING_MODEL: &str = "@cf/baai/bge-base-en-v1.5";
/// Default `WORKERS_AI_CHAT_MODEL`.
pub const DEFAULT_WORKERS_AI_CHAT_MODEL: &str = "@cf/meta/llama-3.1-8b-instruct-fp8-fast";
