//! The service's configuration, parsed once per invocation from the Worker's
//! vars into typed values that every driver takes as they are.
//!
//! Unset vars take their documented default; a var that is set but blank or
//! invalid is an error naming the var and what it accepts — never a silent
//! default — so `/api/health` can report it and nothing runs half-configured.
//! Never reads secrets' values: whether a provider has its key is the
//! provider's own check.
//!
//! Only assembles: each flow owns its settings type and defaults
//! (`ingest::settings`, `query::settings`, `providers::settings`,
//! `operations::metrics`, `index::IndexKind`, …); the readers here
//! (`ingest.rs`, `operations.rs`, `query.rs`) hold what each var accepts,
//! and [`ServiceConfig::from_vars`] reads them in one documented order.

mod ingest;
mod operations;
mod query;
#[cfg(test)]
mod tests;
mod vars;

pub use vars::{ConfigError, ConfigProblem};

use crate::index::{IndexKind, MAX_DIMENSIONS};
use crate::ingest::message::RETRY_MAX_DELAY_SECONDS;
use crate::ingest::pipeline::PipelineConfig;
use crate::ingest::settings::IngestSettings;
use crate::operations::alerts::AlertSettings;
use crate::operations::metrics::MetricsSettings;
use crate::providers::retry::DEFAULT_BASE_DELAY_MS as DEFAULT_PROVIDER_RETRY_BASE_MS;
use crate::providers::settings::{
    ProviderKind, WorkersAiModels, DEFAULT_WORKERS_AI_CHAT_MODEL,
    DEFAULT_WORKERS_AI_EMBEDDING_MODEL, MAX_PROVIDER_TIMEOUT_MS, WORKERS_AI_EMBEDDING_MODELS,
};
use crate::providers::DEFAULT_PROVIDER_TIMEOUT_MS;
use crate::query::fusion::FusionConfig;
use crate::query::settings::{RerankSettings, RerankerKind};
use crate::reconcile::ReconcileSettings;
use ingest::IngestVars;
use vars::Vars;

/// Everything the entry points and drivers need from the vars.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceConfig {
    /// `ENVIRONMENT`: `local`, `dev`, `staging`, `production`.
    pub environment: String,
    /// `EMBEDDING_PROVIDER`.
    pub embedding_provider: ProviderKind,
    /// `CHAT_PROVIDER`.
    pub chat_provider: ProviderKind,
    /// `VECTOR_INDEX`.
    pub vector_index: IndexKind,
    /// `EMBEDDING_DIMENSIONS`.
    pub dimensions: u32,
    /// `D1_INDEX_MAX_VECTORS`: past this many vectors the D1-exact index refuses queries
    /// (default and ceiling: what its isolate cache holds at `dimensions`).
    pub d1_index_max_vectors: u64,
    /// `INGEST_DLQ_NAME`: the consumer tells dead letters apart by it.
    pub dlq_name: String,
    /// `PROVIDER_TIMEOUT_MS`.
    pub provider_timeout_ms: u64,
    /// `PROVIDER_RETRY_BASE_MS`.
    pub provider_retry_base_ms: u64,
    /// `EMBED_BATCH_SIZE`, `TAG_BATCH_SIZE`.
    pub ingest: IngestSettings,
    /// `INGEST_RETRY_BASE_MS`, `INGEST_OVERLOAD_BASE_MS`, `INGEST_OVERLOAD_GIVE_UP_MS`.
    pub pipeline: PipelineConfig,
    /// `INGEST_PROVIDER_CONCURRENCY`: provider calls in flight at once across all documents'
    /// ingestion (`None` when set to 0: no limit).
    pub provider_gate: Option<crate::ingest::gate::GateSettings>,
    /// `INGEST_WATCHDOG_AFTER_MINUTES`: when the `*/5` cron wakes the processor of a
    /// `queued`/`processing` document whose row has not moved (re-arming a dropped alarm).
    pub watchdog: crate::ingest::watchdog::WatchdogSettings,
    /// `RECONCILE_PAGE_SIZE`, `RECONCILE_STUCK_AFTER_HOURS`, `RECONCILE_MAX_RETRIES`.
    pub reconcile: ReconcileSettings,
    /// `CHAT_PAGE`: whether `/` serves the chat page.
    pub chat_page: bool,
    /// `WORKERS_AI_EMBEDDING_MODEL`, `WORKERS_AI_CHAT_MODEL`.
    pub workers_ai: WorkersAiModels,
    /// `METRICS_SINK`, `METRICS_RETENTION_DAYS`, `METRICS_MAX_ROWS`, provider prices.
    pub metrics: MetricsSettings,
    /// `ALERT_*` thresholds (the webhook URL is read apart: it may be a secret).
    pub alerts: AlertSettings,
    /// `ROLLOUT_PERCENT`, `LEGACY_CHAT_URL`, `LEGACY_FIRST_BYTE_TIMEOUT_MS`: the
    /// cut-over from the old chat API.
    pub rollout: crate::operations::rollout::RolloutConfig,
    /// `SEARCH_FUSION` over the embedder kind's default ([`default_fusion`]).
    pub fusion: FusionConfig,
    /// The reranker and when searches use it.
    pub rerank: RerankSettings,
}

/// A secret or binding the configuration needs to work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Requirement {
    /// The secret's or binding's name (never its value).
    pub name: &'static str,
    /// Which setting needs it.
    pub needed_by: &'static str,
}

impl ServiceConfig {
    /// The secrets and bindings this configuration cannot work without
    /// (`/api/health` checks each is present).
    #[must_use]
    pub fn requirements(&self) -> Vec<Requirement> {
        let mut needs = Vec::new();
        for (kind, setting) in [
            (self.embedding_provider, "EMBEDDING_PROVIDER"),
            (self.chat_provider, "CHAT_PROVIDER"),
        ] {
            let name = match kind {
                ProviderKind::Offline => continue,
                ProviderKind::OpenAi => "OPENAI_API_KEY",
                ProviderKind::WorkersAi => "AI",
            };
            needs.push(Requirement {
                name,
                needed_by: setting,
            });
        }
        if self.rerank.kind == RerankerKind::WorkersAi {
            needs.push(Requirement {
                name: "AI",
                needed_by: "RERANKER",
            });
        }
        if self.vector_index == IndexKind::Vectorize {
            needs.push(Requirement {
                name: "VECTORIZE",
                needed_by: "VECTOR_INDEX",
            });
        }
        if self.metrics.sink.writes_analytics_engine() {
            needs.push(Requirement {
                name: "METRICS",
                needed_by: "METRICS_SINK",
            });
        }
        if self.metrics.sink.reads_analytics_engine() {
            // Reading the points back needs the SQL API's token (a secret)
            // and where to ask (two vars without a default).
            for name in [
                crate::operations::metrics::ANALYTICS_ENGINE_API_TOKEN,
                "ANALYTICS_ENGINE_ACCOUNT_ID",
                "METRICS_DATASET",
            ] {
                needs.push(Requirement {
                    name,
                    needed_by: "METRICS_SINK",
                });
            }
        }
        needs.dedup_by_key(|r| r.name);
        needs
    }

    /// Parses the vars `get` returns (`None`: unset).
    ///
    /// # Errors
    /// Every var that is set but blank or invalid.
    pub fn from_vars(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut vars = Vars {
            get,
            problems: Vec::new(),
        };
        let providers = "offline, openai or workers-ai";
        let environment = vars.text("ENVIRONMENT", "local");
        let embedding_provider = vars.read(
            "EMBEDDING_PROVIDER",
            ProviderKind::Offline,
            providers,
            ProviderKind::parse,
        );
        let chat_provider = vars.read(
            "CHAT_PROVIDER",
            ProviderKind::Offline,
            providers,
            ProviderKind::parse,
        );
        let vector_index = vars.read("VECTOR_INDEX", IndexKind::D1, "d1 or vectorize", |v| {
            [IndexKind::D1, IndexKind::Vectorize]
                .into_iter()
                .find(|k| k.as_str() == v)
        });
        let dimensions = vars.number("EMBEDDING_DIMENSIONS", 1_536, 1, MAX_DIMENSIONS);
        let cacheable = crate::index::cache::max_cached_vectors(dimensions as usize);
        let d1_index_max_vectors = vars.number("D1_INDEX_MAX_VECTORS", cacheable, 1, cacheable);
        let dlq_name = vars.text("INGEST_DLQ_NAME", "portfolio-ingest-dlq");
        let provider_timeout_ms = vars.number(
            "PROVIDER_TIMEOUT_MS",
            DEFAULT_PROVIDER_TIMEOUT_MS,
            1,
            MAX_PROVIDER_TIMEOUT_MS,
        );
        let retry_cap = u64::from(RETRY_MAX_DELAY_SECONDS) * 1_000;
        let provider_retry_base_ms = vars.number(
            "PROVIDER_RETRY_BASE_MS",
            DEFAULT_PROVIDER_RETRY_BASE_MS,
            1,
            retry_cap,
        );
        let IngestVars {
            ingest,
            pipeline,
            provider_gate,
            watchdog,
        } = ingest::read_ingest(&mut vars);
        let reconcile = ingest::read_reconcile(&mut vars);
        let chat_page = vars.read("CHAT_PAGE", true, "on or off", |v| match v {
            "on" => Some(true),
            "off" => Some(false),
            _ => None,
        });
        let known = WORKERS_AI_EMBEDDING_MODELS
            .iter()
            .map(|(m, _)| *m)
            .collect::<Vec<_>>()
            .join(", ");
        let embedding_model = vars.read(
            "WORKERS_AI_EMBEDDING_MODEL",
            DEFAULT_WORKERS_AI_EMBEDDING_MODEL.to_owned(),
            format!("one of {known}"),
            |v| {
                WORKERS_AI_EMBEDDING_MODELS
                    .iter()
                    .any(|(m, _)| *m == v)
                    .then(|| v.to_owned())
            },
        );
        let chat_model = vars.read(
            "WORKERS_AI_CHAT_MODEL",
            DEFAULT_WORKERS_AI_CHAT_MODEL.to_owned(),
            "a model name starting with @cf/ or @hf/",
            |v| (v.starts_with("@cf/") || v.starts_with("@hf/")).then(|| v.to_owned()),
        );
        if embedding_provider == ProviderKind::WorkersAi {
            if let Some((model, dims)) = WORKERS_AI_EMBEDDING_MODELS
                .iter()
                .find(|(m, _)| *m == embedding_model)
                .filter(|(_, d)| *d != dimensions)
            {
                vars.problems.push(ConfigProblem {
                    var: "EMBEDDING_DIMENSIONS",
                    value: dimensions.to_string(),
                    expected: format!(
                        "{dims}, the dimensions of {model} (EMBEDDING_PROVIDER=workers-ai)"
                    ),
                });
            }
        }
        let metrics = operations::read_metrics(&mut vars);
        let alerts = operations::read_alerts(&mut vars);
        let rollout = operations::read_rollout(&mut vars);
        let fusion = query::read_fusion(&mut vars, embedding_provider);
        let rerank = query::read_rerank(&mut vars);
        if !vars.problems.is_empty() {
            return Err(ConfigError {
                problems: vars.problems,
            });
        }
        Ok(Self {
            environment,
            embedding_provider,
            chat_provider,
            vector_index,
            dimensions,
            d1_index_max_vectors,
            dlq_name,
            provider_timeout_ms,
            provider_retry_base_ms,
            ingest,
            pipeline,
            provider_gate,
            watchdog,
            reconcile,
            chat_page,
            workers_ai: WorkersAiModels {
                embedding_model,
                chat_model,
            },
            metrics,
            alerts,
            rollout,
            fusion,
            rerank,
        })
    }
}
