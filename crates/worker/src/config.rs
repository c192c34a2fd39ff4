//! Service configuration read from the Worker's vars (never secrets' values).

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
        }
    }
}

fn var_or(env: &Env, name: &str, default: &str) -> String {
    env.var(name)
        .map(|v| v.to_string())
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| default.to_owned())
}
