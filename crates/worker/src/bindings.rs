//! Names of the platform bindings, defined once (they must match `wrangler.jsonc`).

use portfolio_core::api::health::ExpectedBinding;

/// D1 database: companies, documents, chunks, FTS, run history.
pub const DB: &str = "DB";
/// R2 bucket holding the markdown documents.
pub const DOCUMENTS: &str = "DOCUMENTS";
/// Producer for the ingest queue.
pub const INGEST_QUEUE: &str = "INGEST_QUEUE";
/// Producer for the ingest dead-letter queue.
pub const INGEST_DLQ: &str = "INGEST_DLQ";
/// Durable Object namespace of the per-document processors.
pub const DOCUMENT_PROCESSOR: &str = "DOCUMENT_PROCESSOR";
/// Durable Object namespace of the provider gate (one object: the concurrency limit of
/// ingestion's provider calls across documents).
pub const INGEST_GATE: &str = "INGEST_GATE";
/// Vectorize index (absent locally: Vectorize has no local simulation).
pub const VECTORIZE: &str = "VECTORIZE";
/// Workers Analytics Engine dataset of the data points (deployed environments).
pub const METRICS: &str = crate::store::analytics_engine::METRICS_BINDING;
/// Which Worker version this is (`version_metadata`: id, tag, timestamp).
pub const VERSION_METADATA: &str = "CF_VERSION_METADATA";

/// Rate limiter for `/api/chat` (per IPv4 address or IPv6 /64).
pub const CHAT_RATE_LIMITER: &str = "CHAT_RATE_LIMITER";
/// Rate limiter for `/api/search`, a budget of its own (each search embeds
/// the query: a paid provider call in production); `/mcp` and the catalog
/// (`/api/companies`, `/api/documents`) share it.
pub const SEARCH_RATE_LIMITER: &str = "SEARCH_RATE_LIMITER";

/// Secret: optional keys required on the public routes (comma- or
/// newline-separated; unset: the routes stay public).
pub const PUBLIC_API_KEYS: &str = "PUBLIC_API_KEYS";

/// The binding of a route's rate limiter (`portfolio_core::api::routes`).
#[must_use]
pub fn rate_limiter(limiter: portfolio_core::api::routes::Limiter) -> &'static str {
    match limiter {
        portfolio_core::api::routes::Limiter::Search => SEARCH_RATE_LIMITER,
        portfolio_core::api::routes::Limiter::Chat => CHAT_RATE_LIMITER,
    }
}

/// The period of both limiters' budgets (`simple.period` in `wrangler.jsonc`),
/// sent as `Retry-After` on a 429.
pub const RATE_LIMIT_PERIOD_SECONDS: u32 = 60;

/// Every binding with its kind, as reported by `GET /api/health`.
/// `required` ones make the service `degraded` when missing.
pub const ALL: [ExpectedBinding; 9] = [
    expect(DB, "d1", true),
    expect(DOCUMENTS, "r2", true),
    expect(INGEST_QUEUE, "queue", true),
    expect(INGEST_DLQ, "queue", true),
    expect(DOCUMENT_PROCESSOR, "durable_object", true),
    // Without it ingestion still runs, with no limit on its provider calls (logged).
    expect(INGEST_GATE, "durable_object", false),
    expect(VECTORIZE, "vectorize", false),
    expect(METRICS, "analytics_engine", false),
    // Without it the version is unknown: health says null, points carry "".
    expect(VERSION_METADATA, "version_metadata", false),
];

const fn expect(name: &'static str, kind: &'static str, required: bool) -> ExpectedBinding {
    ExpectedBinding {
        name,
        kind,
        required,
    }
}
