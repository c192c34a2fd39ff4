//! The configured embedding and chat providers, built from the Worker's vars
//! and secrets. Offline defaults need no key; OpenAI-compatible APIs go
//! through `worker::Fetch` (see `fetch_transport`).

pub(crate) mod fetch_transport;
mod workers_ai;

pub use fetch_transport::{FetchTransport, TimerSleeper};
pub use workers_ai::WorkersAiBinding;

use crate::config::ServiceConfig;
use crate::store::metrics::Metrics;
use crate::store::WorkerClock;
use portfolio_core::operations::metrics::Metered;
use portfolio_core::providers::batch::WORKERS_AI_BGE_LIMITS;
use portfolio_core::providers::ProviderKind;
use portfolio_core::providers::{
    ChatCompletion, ChatModel, ChatRequest, Embedder, ExtractiveAnswerer, HashingEmbedder,
    HttpReranker, OpenAiChat, OpenAiConfig, OpenAiEmbedder, ProviderError, Reranker, Retrier,
    RetryPolicy, WorkersAiChat, WorkersAiEmbedder, WorkersAiReranker,
};
use portfolio_core::query::RerankerKind;
use worker::Env;

/// Default OpenAI-compatible endpoint and models (overridable by vars).
const OPENAI_DEFAULT_BASE: &str = "https://api.openai.com";
const OPENAI_DEFAULT_EMBEDDING_MODEL: &str = "text-embedding-3-small";
const OPENAI_DEFAULT_CHAT_MODEL: &str = "gpt-4o-mini";

/// Why a provider could not be built from the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ProviderSetupError {
    /// The provider needs a secret that is not set.
    #[error("provider `{provider}` needs the secret {secret}")]
    MissingSecret {
        /// Configured provider name.
        provider: String,
        /// Name of the missing secret.
        secret: &'static str,
    },
    /// The provider's binding is not there.
    #[error("provider `{provider}` needs the binding {binding}")]
    MissingBinding {
        /// Configured provider name.
        provider: &'static str,
        /// Name of the missing binding.
        binding: &'static str,
    },
    /// The provider rejected its own configuration.
    #[error(transparent)]
    Provider(#[from] ProviderError),
}

/// The in-call retries, seeded from the clock (jitter differs per call, as it should).
fn retrier(config: &ServiceConfig) -> Retrier<TimerSleeper> {
    let policy = RetryPolicy::default().with_base_delay_ms(config.provider_retry_base_ms);
    let seed = worker::Date::now().as_millis();
    Retrier::new(policy, TimerSleeper, seed).with_clock(|| worker::Date::now().as_millis())
}

fn transport(config: &ServiceConfig) -> FetchTransport {
    FetchTransport::new(config.provider_timeout_ms)
}

fn openai_config(
    env: &Env,
    model_var: &str,
    default_model: &str,
    provider: &str,
) -> Result<OpenAiConfig, ProviderSetupError> {
    let key = env
        .secret("OPENAI_API_KEY")
        .map(|s| s.to_string())
        .map_err(|_| ProviderSetupError::MissingSecret {
            provider: provider.to_owned(),
            secret: "OPENAI_API_KEY",
        })?;
    let base = env
        .var("OPENAI_BASE_URL")
        .map(|v| v.to_string())
        .unwrap_or_else(|_| OPENAI_DEFAULT_BASE.to_owned());
    let model = env
        .var(model_var)
        .map(|v| v.to_string())
        .unwrap_or_else(|_| default_model.to_owned());
    Ok(OpenAiConfig::new(base, model).with_api_key(key))
}

/// The `AI` binding for the `workers-ai` provider.
fn workers_ai(env: &Env, config: &ServiceConfig) -> Result<WorkersAiBinding, ProviderSetupError> {
    WorkersAiBinding::from_env(env, "AI", config.provider_timeout_ms).map_err(|_| {
        ProviderSetupError::MissingBinding {
            provider: "workers-ai",
            binding: "AI",
        }
    })
}

/// The configured embedder, its calls recorded as data points.
pub type MeteredEmbedder = Metered<ServiceEmbedder, Metrics, WorkerClock>;
/// The configured chat model, its calls recorded as data points.
pub type MeteredChat = Metered<ServiceChat, Metrics, WorkerClock>;

/// The configured embedder, recording each call in `metrics`.
pub fn metered_embedder(
    env: &Env,
    config: &ServiceConfig,
    metrics: &Metrics,
) -> Result<MeteredEmbedder, ProviderSetupError> {
    let kind = config.embedding_provider;
    Ok(Metered::new(
        ServiceEmbedder::from_env(env, config)?,
        kind.as_str(),
        config.metrics.cost_of(kind),
        metrics.clone(),
        WorkerClock,
    ))
}

/// The configured chat model, recording each call in `metrics`.
pub fn metered_chat(
    env: &Env,
    config: &ServiceConfig,
    metrics: &Metrics,
) -> Result<MeteredChat, ProviderSetupError> {
    let kind = config.chat_provider;
    Ok(Metered::new(
        ServiceChat::from_env(env, config)?,
        kind.as_str(),
        config.metrics.cost_of(kind),
        metrics.clone(),
        WorkerClock,
    ))
}

/// The embedder the configuration names.
pub enum ServiceEmbedder {
    /// Feature hashing, deterministic, no key.
    Offline(HashingEmbedder),
    /// Any OpenAI-compatible `/v1/embeddings`.
    OpenAi(OpenAiEmbedder<FetchTransport, TimerSleeper>),
    /// A Workers AI embedding model through the `AI` binding.
    WorkersAi(WorkersAiEmbedder<WorkersAiBinding, TimerSleeper>),
}

impl std::fmt::Debug for ServiceEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.model())
    }
}

impl ServiceEmbedder {
    /// Builds the configured embedder.
    pub fn from_env(env: &Env, config: &ServiceConfig) -> Result<Self, ProviderSetupError> {
        let dims = config.dimensions as usize;
        match config.embedding_provider {
            ProviderKind::Offline => Ok(Self::Offline(HashingEmbedder::new(dims)?)),
            ProviderKind::OpenAi => {
                let cfg = openai_config(
                    env,
                    "OPENAI_EMBEDDING_MODEL",
                    OPENAI_DEFAULT_EMBEDDING_MODEL,
                    "openai",
                )?;
                Ok(Self::OpenAi(
                    OpenAiEmbedder::new(cfg, transport(config), retrier(config), dims)
                        .with_dimensions_parameter(),
                ))
            }
            // The configuration checked that the model's dimensions are EMBEDDING_DIMENSIONS.
            ProviderKind::WorkersAi => Ok(Self::WorkersAi(WorkersAiEmbedder::new(
                workers_ai(env, config)?,
                retrier(config),
                config.workers_ai.embedding_model.clone(),
                dims,
                WORKERS_AI_BGE_LIMITS,
            ))),
        }
    }
}

impl Embedder for ServiceEmbedder {
    fn model(&self) -> &str {
        match self {
            Self::Offline(e) => e.model(),
            Self::OpenAi(e) => e.model(),
            Self::WorkersAi(e) => e.model(),
        }
    }

    fn dimensions(&self) -> usize {
        match self {
            Self::Offline(e) => e.dimensions(),
            Self::OpenAi(e) => e.dimensions(),
            Self::WorkersAi(e) => e.dimensions(),
        }
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, ProviderError> {
        match self {
            Self::Offline(e) => e.embed(texts).await,
            Self::OpenAi(e) => e.embed(texts).await,
            Self::WorkersAi(e) => e.embed(texts).await,
        }
    }
}

/// The reranker the configuration names (`RERANKER`).
pub enum ServiceReranker {
    /// A Workers AI reranker through the `AI` binding.
    WorkersAi(WorkersAiReranker<WorkersAiBinding, TimerSleeper>),
    /// Any `/v1/rerank` server; its key, if it needs one, is the secret `RERANK_API_KEY`.
    Http(HttpReranker<FetchTransport, TimerSleeper>),
}

impl ServiceReranker {
    /// Builds the configured reranker; `Ok(None)` when `RERANKER=none`.
    pub fn from_env(env: &Env, config: &ServiceConfig) -> Result<Option<Self>, ProviderSetupError> {
        let settings = &config.rerank;
        match (settings.kind, &settings.url) {
            (RerankerKind::None, _) => Ok(None),
            (RerankerKind::WorkersAi, _) => Ok(Some(Self::WorkersAi(WorkersAiReranker::new(
                workers_ai(env, config)?,
                retrier(config),
                settings.model.clone(),
            )))),
            (RerankerKind::Http, url) => {
                // The configuration refuses RERANKER=http without RERANK_URL.
                let mut cfg = OpenAiConfig::new(url.clone().unwrap_or_default(), &settings.model);
                if let Ok(key) = env.secret("RERANK_API_KEY") {
                    cfg = cfg.with_api_key(key.to_string());
                }
                Ok(Some(Self::Http(HttpReranker::new(
                    cfg,
                    transport(config),
                    retrier(config),
                ))))
            }
        }
    }
}

impl Reranker for ServiceReranker {
    fn model(&self) -> &str {
        match self {
            Self::WorkersAi(r) => r.model(),
            Self::Http(r) => r.model(),
        }
    }

    async fn rerank(&self, query: &str, passages: &[String]) -> Result<Vec<f64>, ProviderError> {
        match self {
            Self::WorkersAi(r) => r.rerank(query, passages).await,
            Self::Http(r) => r.rerank(query, passages).await,
        }
    }
}

/// The chat model the configuration names.
pub enum ServiceChat {
    /// Extractive answers from the retrieved passages, no key.
    Offline(ExtractiveAnswerer),
    /// Any OpenAI-compatible `/v1/chat/completions`.
    OpenAi(OpenAiChat<FetchTransport, TimerSleeper>),
    /// A Workers AI text-generation model through the `AI` binding.
    WorkersAi(WorkersAiChat<WorkersAiBinding, TimerSleeper>),
}

impl std::fmt::Debug for ServiceChat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.model())
    }
}

impl ServiceChat {
    /// Builds the configured chat model.
    pub fn from_env(env: &Env, config: &ServiceConfig) -> Result<Self, ProviderSetupError> {
        match config.chat_provider {
            ProviderKind::Offline => Ok(Self::Offline(ExtractiveAnswerer::default())),
            ProviderKind::OpenAi => {
                let cfg = openai_config(
                    env,
                    "OPENAI_CHAT_MODEL",
                    OPENAI_DEFAULT_CHAT_MODEL,
                    "openai",
                )?;
                Ok(Self::OpenAi(OpenAiChat::new(
                    cfg,
                    transport(config),
                    retrier(config),
                )))
            }
            ProviderKind::WorkersAi => Ok(Self::WorkersAi(WorkersAiChat::new(
                workers_ai(env, config)?,
                retrier(config),
                config.workers_ai.chat_model.clone(),
            ))),
        }
    }
}

impl ChatModel for ServiceChat {
    fn model(&self) -> &str {
        match self {
            Self::Offline(c) => c.model(),
            Self::OpenAi(c) => c.model(),
            Self::WorkersAi(c) => c.model(),
        }
    }

    async fn complete(&self, req: &ChatRequest) -> Result<ChatCompletion, ProviderError> {
        match self {
            Self::Offline(c) => c.complete(req).await,
            Self::OpenAi(c) => c.complete(req).await,
            Self::WorkersAi(c) => c.complete(req).await,
        }
    }

    async fn stream(
        &self,
        req: &ChatRequest,
        on_delta: &mut dyn FnMut(&str),
    ) -> Result<ChatCompletion, ProviderError> {
        match self {
            Self::Offline(c) => c.stream(req, on_delta).await,
            Self::OpenAi(c) => c.stream(req, on_delta).await,
            Self::WorkersAi(c) => c.stream(req, on_delta).await,
        }
    }
}
