//! Service configuration read from the Worker's vars (never secrets' values).

use portfolio_core::providers::{self, DEFAULT_PROVIDER_TIMEOUT_MS};
use worker::Env;

/// Configuration the handlers need, with the offline defaults applied.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// `local`, `dev`, `staging` or `production`.
    pub environment: String,
    /// `offline`, `openai` or `workers-ai`.
    pub embedding_provider: String,
    /// `offline`, `openai` or `workers-ai`.
    pub chat_provider: String,
    /// `d1` or `vectorize`.
    pub vector_index: String,
    /// Embedding dimension of the index.
    pub dimensions: u32,
    /// Name of the ingest dead-letter queue (its batches are recorded, not processed).
    pub dlq_name: String,
    /// Time limit of one provider request (`PROVIDER_TIMEOUT_MS`).
    pub provider_timeout_ms: u64,
    /// First backoff of a provider call's in-call retries (`PROVIDER_RETRY_BASE_MS`).
    pub provider_retry_base_ms: u64,
}

impl ServiceConfig {
    /// Reads the vars, falling back to the offline defaults for anything unset.
    pub fn from_env(env: &Env) -> Self {
        Self {
            environment: var_or(env, "ENVIRONMENT", "local"),
            embedding_provider: var_or(env, "EMBEDDING_PROVIDER", "offline"),
            chat_provider: var_or(env, "CHAT_PROVIDER", "offline"),
            vector_index: var_or(env, "VECTOR_INDEX", "d1"),
            dimensions: var_or(env, "EMBEDDING_DIMENSIONS", "1536")
                .parse()
                .unwrap_or(1536),
            dlq_name: var_or(env, "INGEST_DLQ_NAME", "portfolio-ingest-dlq"),
            provider_timeout_ms: millis_or(env, "PROVIDER_TIMEOUT_MS", DEFAULT_PROVIDER_TIMEOUT_MS),
            provider_retry_base_ms: millis_or(
                env,
                "PROVIDER_RETRY_BASE_MS",
                providers::retry::DEFAULT_BASE_DELAY_MS,
            ),
        }
    }
}

/// A positive millisecond var, or `default` when unset or not a positive integer.
fn millis_or(env: &Env, name: &str, default: u64) -> u64 {
    var_or(env, name, "")
        .parse()
        .ok()
        .filter(|ms| *ms > 0)
        .unwrap_or(default)
}

/// A var's value, `None` when unset or blank.
pub fn var(env: &Env, name: &str) -> Option<String> {
    env.var(name)
        .map(|v| v.to_string())
        .ok()
        .filter(|v| !v.trim().is_empty())
}

fn var_or(env: &Env, name: &str, default: &str) -> String {
    var(env, name).unwrap_or_else(|| default.to_owned())
}
