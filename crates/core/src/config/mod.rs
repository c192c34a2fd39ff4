//! The service's configuration, parsed once per invocation from the Worker's
//! vars into typed values that every driver takes as they are.
//!
//! Unset vars take their documented default; a var that is set but blank or
//! invalid is an error naming the var and what it accepts — never a silent
//! default — so `/api/health` can report it and nothing runs half-configured.
//! Never reads secrets' values: whether a provider has its key is the
//! provider's own check.

use crate::ingest::message::RETRY_MAX_DELAY_SECONDS;
use crate::ingest::pipeline::{OverloadWait, PipelineConfig, RetryPolicy};
use crate::ingest::settings::IngestSettings;
use crate::operations::alerts::AlertSettings;
use crate::operations::metrics::CostPer1k;
use crate::providers::retry::DEFAULT_BASE_DELAY_MS as DEFAULT_PROVIDER_RETRY_BASE_MS;
use crate::providers::DEFAULT_PROVIDER_TIMEOUT_MS;
use crate::query::fusion::FusionConfig;
use crate::query::rerank::{RerankPolicy, RERANK_CANDIDATES_RANGE};
use crate::query::DEFAULT_RERANK_CANDIDATES;
use crate::reconcile::{ReconcileSettings, R2_LIST_MAX};
use std::fmt;

/// Largest embedding dimension accepted (Vectorize's own maximum is 1536;
/// the D1-exact index takes more, up to this).
pub const MAX_DIMENSIONS: u32 = 4_096;

/// Most inputs in one embedding request (OpenAI's `/v1/embeddings` limit).
pub const MAX_EMBED_BATCH: u32 = 2_048;

/// Most chunks in one tagging prompt: beyond it the answer gets unreliable.
pub const MAX_TAG_BATCH: u32 = 100;

/// Largest `INGEST_PROVIDER_CONCURRENCY`.
pub const MAX_PROVIDER_CONCURRENCY: u32 = 256;

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

    fn parse(value: &str) -> Option<Self> {
        [Self::Offline, Self::OpenAi, Self::WorkersAi]
            .into_iter()
            .find(|k| k.as_str() == value)
    }
}

/// Which reranker reorders a reranked search's fused candidates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RerankerKind {
    /// No reranker: `fused_reranked` searches keep the fused order.
    None,
    /// A Workers AI reranker (`@cf/baai/bge-reranker-base`) through the `AI` binding.
    WorkersAi,
    /// Any server answering `POST {RERANK_URL}/v1/rerank` (the local embed server).
    Http,
}

impl RerankerKind {
    /// The var value naming it.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::WorkersAi => "workers-ai",
            Self::Http => "http",
        }
    }

    fn parse(value: &str) -> Option<Self> {
        [Self::None, Self::WorkersAi, Self::Http]
            .into_iter()
            .find(|k| k.as_str() == value)
    }
}

/// `RERANKER`, `RERANK_MODEL`, `RERANK_URL`, `RERANK_CANDIDATES`, `SEARCH_MODE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RerankSettings {
    /// Which reranker.
    pub kind: RerankerKind,
    /// Model it runs (Workers AI: a `@cf/` name; HTTP: what the server calls it).
    pub model: String,
    /// Base URL of the HTTP reranker.
    pub url: Option<String>,
    /// Candidates and whether searches rerank by default.
    pub policy: RerankPolicy,
}

/// Default `RERANK_MODEL` of the `http` reranker (the local embed server's name for its scorer).
pub const DEFAULT_HTTP_RERANK_MODEL: &str = "local-rerank";

/// Which vector index the service uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexKind {
    /// Exact cosine over the `vector_index` table in D1.
    D1,
    /// The `VECTORIZE` binding.
    Vectorize,
}

impl IndexKind {
    /// The var value naming it.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::D1 => "d1",
            Self::Vectorize => "vectorize",
        }
    }
}

/// Where data points go (`METRICS_SINK`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricsSinkKind {
    /// The local `metric_points` table only (the default: tests, `wrangler dev`).
    D1,
    /// Workers Analytics Engine only (the `METRICS` binding). `/admin/metrics`
    /// and the request-based alerts then see no points.
    AnalyticsEngine,
    /// Both: Analytics Engine for dashboards and SQL, D1 for the admin route
    /// and the alerts.
    Both,
}

impl MetricsSinkKind {
    /// The var value naming it.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::D1 => "d1",
            Self::AnalyticsEngine => "analytics-engine",
            Self::Both => "both",
        }
    }

    /// Whether points go to the local table.
    #[must_use]
    pub fn writes_d1(self) -> bool {
        matches!(self, Self::D1 | Self::Both)
    }

    /// Whether points go to Analytics Engine.
    #[must_use]
    pub fn writes_analytics_engine(self) -> bool {
        matches!(self, Self::AnalyticsEngine | Self::Both)
    }

    fn parse(value: &str) -> Option<Self> {
        [Self::D1, Self::AnalyticsEngine, Self::Both]
            .into_iter()
            .find(|k| k.as_str() == value)
    }
}

/// Default days a data point stays in the local table.
pub const DEFAULT_METRICS_RETENTION_DAYS: u32 = 8;
/// Default most rows the local table keeps (the daily cron deletes the oldest beyond).
pub const DEFAULT_METRICS_MAX_ROWS: u32 = 200_000;
/// Default price of 1K OpenAI tokens in USD (gpt-4o-mini's input price).
pub const DEFAULT_OPENAI_COST_PER_1K: &str = "0.00015";
/// Default price of 1K Workers AI tokens in USD (llama-3.1-8b-instruct-fp8-fast's input
/// price, $0.045 per million, from the public pricing page; see docs/configuration.md,
/// "Providers").
pub const DEFAULT_WORKERS_AI_COST_PER_1K: &str = "0.000045";

/// `METRICS_*` and the providers' prices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricsSettings {
    /// `METRICS_SINK`.
    pub sink: MetricsSinkKind,
    /// `METRICS_RETENTION_DAYS`: older points are deleted by the daily cron.
    pub retention_days: u32,
    /// `METRICS_MAX_ROWS`: the daily cron keeps at most this many points.
    pub max_rows: u32,
    /// `OPENAI_COST_PER_1K_TOKENS`.
    pub openai_cost: CostPer1k,
    /// `WORKERS_AI_COST_PER_1K_TOKENS`.
    pub workers_ai_cost: CostPer1k,
}

impl Default for MetricsSettings {
    fn default() -> Self {
        Self {
            sink: MetricsSinkKind::D1,
            retention_days: DEFAULT_METRICS_RETENTION_DAYS,
            max_rows: DEFAULT_METRICS_MAX_ROWS,
            openai_cost: CostPer1k::parse(DEFAULT_OPENAI_COST_PER_1K).unwrap_or_default(),
            workers_ai_cost: CostPer1k::parse(DEFAULT_WORKERS_AI_COST_PER_1K).unwrap_or_default(),
        }
    }
}

impl MetricsSettings {
    /// The price of 1K tokens of `provider` (the offline ones cost nothing).
    #[must_use]
    pub fn cost_of(&self, provider: ProviderKind) -> CostPer1k {
        match provider {
            ProviderKind::Offline => CostPer1k::FREE,
            ProviderKind::OpenAi => self.openai_cost,
            ProviderKind::WorkersAi => self.workers_ai_cost,
        }
    }
}

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

/// Fusion of the offline hashing embedder's vectors with the keyword and tag
/// rankings, chosen on the tuning set (docs/benchmarks.md, "Retrieval quality").
pub const DEFAULT_FUSION_HASHING: &str = "vector=1,keyword=8,tag=0.25,k=5";
/// Fusion for semantic embedders (OpenAI, Workers AI, the local MiniLM server),
/// chosen on the tuning set (docs/benchmarks.md, "Retrieval quality").
pub const DEFAULT_FUSION_SEMANTIC: &str = "vector=1,keyword=1,tag=0.25,k=10";

/// The fusion the service runs with when `SEARCH_FUSION` is unset: the
/// offline embedder hashes words, so its vectors are a keyword ranking of
/// their own, while a semantic embedder's are not.
#[must_use]
pub fn default_fusion(embedder: ProviderKind) -> FusionConfig {
    let spec = match embedder {
        ProviderKind::Offline => DEFAULT_FUSION_HASHING,
        ProviderKind::OpenAi | ProviderKind::WorkersAi => DEFAULT_FUSION_SEMANTIC,
    };
    FusionConfig::new().with_spec(spec).unwrap_or_default()
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

/// One var that is set to something the service cannot use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// The var's name.
    pub var: &'static str,
    /// Its value as set.
    pub value: String,
    /// What it accepts.
    pub expected: String,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.value.trim().is_empty() {
            write!(f, "{} is blank; expected {}", self.var, self.expected)
        } else {
            write!(
                f,
                "{} is {:?}; expected {}",
                self.var, self.value, self.expected
            )
        }
    }
}

/// Every var that is set wrongly (all of them, not just the first).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration: {}", self.problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
pub struct ConfigError {
    /// The problems, in the order the vars are read.
    pub problems: Vec<ConfigProblem>,
}

/// Reads vars and collects problems.
struct Vars<F> {
    get: F,
    problems: Vec<ConfigProblem>,
}

impl<F: Fn(&str) -> Option<String>> Vars<F> {
    /// `parse` of the var's trimmed value; `default` when unset; a problem
    /// (and `default`, to keep reading) when blank or refused.
    fn read<T>(
        &mut self,
        var: &'static str,
        default: T,
        expected: impl Into<String>,
        parse: impl FnOnce(&str) -> Option<T>,
    ) -> T {
        let Some(value) = (self.get)(var) else {
            return default;
        };
        match Some(value.trim()).filter(|v| !v.is_empty()).and_then(parse) {
            Some(parsed) => parsed,
            None => {
                self.problems.push(ConfigProblem {
                    var,
                    value,
                    expected: expected.into(),
                });
                default
            }
        }
    }

    fn text(&mut self, var: &'static str, default: &str) -> String {
        self.read(var, default.to_owned(), "a non-blank name", |v| {
            Some(v.to_owned())
        })
    }

    fn number<T: std::str::FromStr + PartialOrd + fmt::Display + Copy>(
        &mut self,
        var: &'static str,
        default: T,
        min: T,
        max: T,
    ) -> T {
        self.read(
            var,
            default,
            format!("a whole number from {min} to {max}"),
            |v| v.parse::<T>().ok().filter(|n| *n >= min && *n <= max),
        )
    }
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
        let defaults = IngestSettings::default();
        let ingest = defaults
            .with_embed_batch(vars.number(
                "EMBED_BATCH_SIZE",
                defaults.embed_batch,
                1,
                MAX_EMBED_BATCH,
            ))
            .with_tag_batch(vars.number("TAG_BATCH_SIZE", defaults.tag_batch, 1, MAX_TAG_BATCH));
        let default_retry = RetryPolicy::new();
        let pipeline = vars.read(
            "INGEST_RETRY_BASE_MS",
            PipelineConfig::new(),
            "a positive whole number of ms, at most the step backoff's cap",
            |v| {
                let ms = v.parse::<u64>().ok()?;
                let retry = default_retry.with_base_delay_ms(ms).ok()?;
                Some(PipelineConfig::new().with_retry(retry))
            },
        );
        let overload_defaults = OverloadWait::default();
        let overload_base_ms = vars.number(
            "INGEST_OVERLOAD_BASE_MS",
            overload_defaults.base_ms,
            1,
            overload_defaults.max_ms,
        );
        let overload_give_up_ms = vars.number(
            "INGEST_OVERLOAD_GIVE_UP_MS",
            overload_defaults.give_up_ms,
            overload_base_ms,
            30 * 24 * 60 * 60 * 1_000,
        );
        let overload = OverloadWait {
            base_ms: overload_base_ms,
            max_ms: overload_defaults.max_ms.min(overload_give_up_ms),
            give_up_ms: overload_give_up_ms,
        };
        let pipeline = pipeline.with_overload_wait(overload).unwrap_or(pipeline);
        let gate_limit = vars.number(
            "INGEST_PROVIDER_CONCURRENCY",
            crate::ingest::gate::DEFAULT_GATE_LIMIT,
            0,
            MAX_PROVIDER_CONCURRENCY,
        );
        let provider_gate = (gate_limit > 0).then(|| crate::ingest::gate::GateSettings {
            limit: gate_limit,
            ..crate::ingest::gate::GateSettings::default()
        });
        let watchdog_defaults = crate::ingest::watchdog::WatchdogSettings::default();
        let watchdog = crate::ingest::watchdog::WatchdogSettings {
            after_ms: u64::from(vars.number(
                "INGEST_WATCHDOG_AFTER_MINUTES",
                crate::ingest::watchdog::DEFAULT_WATCHDOG_AFTER_MINUTES,
                1,
                24 * 60,
            )) * 60_000,
            ..watchdog_defaults
        };
        let reconcile_defaults = ReconcileSettings::default();
        let hour_ms = 60 * 60 * 1_000;
        let reconcile = ReconcileSettings {
            page_size: vars.number(
                "RECONCILE_PAGE_SIZE",
                reconcile_defaults.page_size,
                1,
                R2_LIST_MAX,
            ),
            stuck_after_ms: u64::from(vars.number(
                "RECONCILE_STUCK_AFTER_HOURS",
                u32::try_from(reconcile_defaults.stuck_after_ms / hour_ms).unwrap_or(24),
                1,
                24 * 30,
            )) * hour_ms,
            max_failed_runs: vars.number(
                "RECONCILE_MAX_RETRIES",
                reconcile_defaults.max_failed_runs,
                0,
                100,
            ),
            ..reconcile_defaults
        };
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
        let metrics_defaults = MetricsSettings::default();
        let price = "a price in USD per 1K tokens (a decimal such as 0.00015)";
        let metrics = MetricsSettings {
            sink: vars.read(
                "METRICS_SINK",
                metrics_defaults.sink,
                "d1, analytics-engine or both",
                MetricsSinkKind::parse,
            ),
            retention_days: vars.number(
                "METRICS_RETENTION_DAYS",
                metrics_defaults.retention_days,
                1,
                90,
            ),
            max_rows: vars.number(
                "METRICS_MAX_ROWS",
                metrics_defaults.max_rows,
                1_000,
                5_000_000,
            ),
            openai_cost: vars.read(
                "OPENAI_COST_PER_1K_TOKENS",
                metrics_defaults.openai_cost,
                price,
                |v| CostPer1k::parse(v).ok(),
            ),
            workers_ai_cost: vars.read(
                "WORKERS_AI_COST_PER_1K_TOKENS",
                metrics_defaults.workers_ai_cost,
                price,
                |v| CostPer1k::parse(v).ok(),
            ),
        };
        let alert_defaults = AlertSettings::default();
        let minute_ms = 60 * 1_000;
        let alerts = AlertSettings {
            window_ms: u64::from(vars.number(
                "ALERT_WINDOW_MINUTES",
                u32::try_from(alert_defaults.window_ms / minute_ms).unwrap_or(5),
                1,
                60,
            )) * minute_ms,
            error_rate_percent: vars.number(
                "ALERT_ERROR_RATE_PERCENT",
                alert_defaults.error_rate_percent,
                0,
                100,
            ),
            min_requests: vars.number(
                "ALERT_MIN_REQUESTS",
                alert_defaults.min_requests,
                1,
                1_000_000,
            ),
            p95_ms: vars.number("ALERT_P95_MS", alert_defaults.p95_ms, 1, 600_000),
            stuck_after_ms: u64::from(vars.number(
                "ALERT_STUCK_MINUTES",
                u32::try_from(alert_defaults.stuck_after_ms / minute_ms).unwrap_or(30),
                1,
                7 * 24 * 60,
            )) * minute_ms,
            dead_letters: vars.number(
                "ALERT_DEAD_LETTERS",
                alert_defaults.dead_letters,
                0,
                1_000_000,
            ),
            reconcile_enqueued: vars.number(
                "ALERT_RECONCILE_ENQUEUED",
                alert_defaults.reconcile_enqueued,
                0,
                1_000_000,
            ),
        };
        let rollout = crate::operations::rollout::RolloutConfig {
            ceiling_percent: vars.number("ROLLOUT_PERCENT", 100, 0, 100),
            legacy_url: vars.read(
                "LEGACY_CHAT_URL",
                None,
                "an http:// or https:// URL of the old chat endpoint",
                |v| {
                    (v.starts_with("https://") || v.starts_with("http://"))
                        .then(|| Some(v.to_owned()))
                },
            ),
            first_byte_timeout_ms: vars.number(
                "LEGACY_FIRST_BYTE_TIMEOUT_MS",
                crate::operations::rollout::DEFAULT_FIRST_BYTE_TIMEOUT_MS,
                crate::operations::rollout::FIRST_BYTE_TIMEOUT_MS_RANGE.0,
                crate::operations::rollout::FIRST_BYTE_TIMEOUT_MS_RANGE.1,
            ),
        };
        let fusion = vars.read(
            "SEARCH_FUSION",
            default_fusion(embedding_provider),
            "comma-separated vector=W,keyword=W,tag=W,k=K (any of them; weights >= 0 and \
             not all 0, k > 0)",
            |v| default_fusion(embedding_provider).with_spec(v).ok(),
        );
        let rerank = read_rerank(&mut vars);
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

/// The reranker vars; a reranked default mode needs a reranker, and the HTTP
/// reranker needs its URL.
fn read_rerank<F: Fn(&str) -> Option<String>>(vars: &mut Vars<F>) -> RerankSettings {
    let kind = vars.read(
        "RERANKER",
        RerankerKind::None,
        "none, workers-ai or http",
        RerankerKind::parse,
    );
    let default_model = match kind {
        RerankerKind::WorkersAi => crate::providers::rerank::BGE_RERANKER_BASE,
        RerankerKind::None | RerankerKind::Http => DEFAULT_HTTP_RERANK_MODEL,
    };
    let model = vars.read(
        "RERANK_MODEL",
        default_model.to_owned(),
        if kind == RerankerKind::WorkersAi {
            "a model name starting with @cf/ or @hf/"
        } else {
            "a non-blank model name"
        },
        |v| {
            (kind != RerankerKind::WorkersAi || v.starts_with("@cf/") || v.starts_with("@hf/"))
                .then(|| v.to_owned())
        },
    );
    let url = vars.read(
        "RERANK_URL",
        None,
        "an http:// or https:// base URL of a /v1/rerank server",
        |v| (v.starts_with("https://") || v.starts_with("http://")).then(|| Some(v.to_owned())),
    );
    let (min, max) = RERANK_CANDIDATES_RANGE;
    let candidates = vars.number("RERANK_CANDIDATES", DEFAULT_RERANK_CANDIDATES, min, max);
    let by_default = vars.read(
        "SEARCH_MODE",
        false,
        "fused or fused_reranked",
        |v| match v {
            "fused" => Some(false),
            "fused_reranked" => Some(true),
            _ => None,
        },
    );
    if kind == RerankerKind::Http && url.is_none() {
        vars.problems.push(ConfigProblem {
            var: "RERANK_URL",
            value: String::new(),
            expected: "the base URL of the /v1/rerank server (RERANKER=http needs it)".into(),
        });
    }
    if by_default && kind == RerankerKind::None {
        vars.problems.push(ConfigProblem {
            var: "SEARCH_MODE",
            value: "fused_reranked".into(),
            expected: "fused, or a RERANKER (workers-ai or http) to rerank with".into(),
        });
    }
    RerankSettings {
        kind,
        model,
        url,
        policy: RerankPolicy {
            candidates,
            by_default,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn parse(pairs: &[(&str, &str)]) -> Result<ServiceConfig, ConfigError> {
        let vars: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        ServiceConfig::from_vars(|name| vars.get(name).cloned())
    }

    #[test]
    fn unset_vars_take_the_documented_defaults() {
        let config = parse(&[]).expect("defaults");
        assert_eq!(config.environment, "local");
        assert_eq!(config.embedding_provider, ProviderKind::Offline);
        assert_eq!(config.chat_provider, ProviderKind::Offline);
        assert_eq!(config.vector_index, IndexKind::D1);
        assert_eq!(config.dimensions, 1_536);
        assert_eq!(config.dlq_name, "portfolio-ingest-dlq");
        assert_eq!(config.provider_timeout_ms, 30_000);
        assert_eq!(config.provider_retry_base_ms, 500);
        assert_eq!(config.ingest, IngestSettings::default());
        assert_eq!(config.pipeline, PipelineConfig::new());
        assert_eq!(
            config.pipeline.overload_wait(),
            &OverloadWait {
                base_ms: 5_000,
                max_ms: 300_000,
                give_up_ms: 86_400_000
            }
        );
        assert_eq!(
            config.provider_gate,
            Some(crate::ingest::gate::GateSettings {
                limit: 8,
                lease_ms: 180_000
            })
        );
        assert_eq!(config.reconcile, ReconcileSettings::default());
        assert_eq!(
            config.watchdog,
            crate::ingest::watchdog::WatchdogSettings {
                after_ms: 15 * 60_000,
                max_wakes: 25
            }
        );
        assert!(config.chat_page);
        assert_eq!(config.metrics, MetricsSettings::default());
        assert_eq!(config.alerts, AlertSettings::default());
        assert_eq!(config.metrics.sink, MetricsSinkKind::D1);
        assert_eq!(
            (config.metrics.retention_days, config.metrics.max_rows),
            (8, 200_000)
        );
        assert_eq!(config.fusion, default_fusion(ProviderKind::Offline));
        assert_eq!(config.rerank.kind, RerankerKind::None);
        assert_eq!(config.rerank.policy, RerankPolicy::default());
        assert_eq!(config.d1_index_max_vectors, 24_160);
    }

    #[test]
    fn the_d1_index_budget_may_only_shrink() {
        let config = parse(&[("D1_INDEX_MAX_VECTORS", "500")]).unwrap();
        assert_eq!(config.d1_index_max_vectors, 500);
        let small = parse(&[("EMBEDDING_DIMENSIONS", "384")]).unwrap();
        assert_eq!(small.d1_index_max_vectors, 71_820);
        for bad in ["0", "24161", "many"] {
            let err = parse(&[("D1_INDEX_MAX_VECTORS", bad)]).unwrap_err();
            assert_eq!(err.problems[0].var, "D1_INDEX_MAX_VECTORS", "{bad}");
        }
    }

    #[test]
    fn reranker_vars_name_the_reranker_its_candidates_and_the_default_mode() {
        let config = parse(&[
            ("RERANKER", "http"),
            ("RERANK_URL", "http://127.0.0.1:8791"),
            ("RERANK_CANDIDATES", "30"),
            ("SEARCH_MODE", "fused_reranked"),
        ])
        .unwrap();
        assert_eq!(config.rerank.kind, RerankerKind::Http);
        assert_eq!(config.rerank.model, DEFAULT_HTTP_RERANK_MODEL);
        assert_eq!(config.rerank.url.as_deref(), Some("http://127.0.0.1:8791"));
        assert_eq!(
            config.rerank.policy,
            RerankPolicy {
                candidates: 30,
                by_default: true
            }
        );
        let workers_ai = parse(&[("RERANKER", "workers-ai")]).unwrap();
        assert_eq!(workers_ai.rerank.model, "@cf/baai/bge-reranker-base");
        assert!(workers_ai
            .requirements()
            .iter()
            .any(|r| r.name == "AI" && r.needed_by == "RERANKER"));
        for (pairs, var) in [
            (vec![("RERANKER", "cohere")], "RERANKER"),
            (vec![("RERANKER", "http")], "RERANK_URL"),
            (
                vec![("RERANKER", "http"), ("RERANK_URL", "ftp://x")],
                "RERANK_URL",
            ),
            (
                vec![("RERANKER", "workers-ai"), ("RERANK_MODEL", "bge")],
                "RERANK_MODEL",
            ),
            (vec![("RERANK_CANDIDATES", "1")], "RERANK_CANDIDATES"),
            (vec![("RERANK_CANDIDATES", "51")], "RERANK_CANDIDATES"),
            (vec![("SEARCH_MODE", "fused_reranked")], "SEARCH_MODE"),
            (vec![("SEARCH_MODE", "vector")], "SEARCH_MODE"),
        ] {
            let err = parse(&pairs).unwrap_err();
            assert!(
                err.problems.iter().any(|p| p.var == var),
                "{pairs:?}: {err}"
            );
        }
    }

    #[test]
    fn search_fusion_applies_over_the_embedder_kinds_default() {
        use crate::query::fusion::RetrievalSource;
        let hashing = FusionConfig::new()
            .with_spec(DEFAULT_FUSION_HASHING)
            .unwrap();
        let semantic = FusionConfig::new()
            .with_spec(DEFAULT_FUSION_SEMANTIC)
            .unwrap();
        assert_eq!(default_fusion(ProviderKind::Offline), hashing);
        assert_eq!(default_fusion(ProviderKind::WorkersAi), semantic);
        assert_eq!(default_fusion(ProviderKind::OpenAi), semantic);
        let config = parse(&[("SEARCH_FUSION", "keyword=0.25, k=30")]).unwrap();
        assert_eq!(config.fusion.weight(RetrievalSource::Keyword), 0.25);
        assert_eq!(config.fusion.k(), 30.0);
        assert_eq!(
            config.fusion.weight(RetrievalSource::Vector),
            hashing.weight(RetrievalSource::Vector)
        );
        for bad in ["keyword", "bm25=1", "vector=0,keyword=0,tag=0", "k=-1", " "] {
            let err = parse(&[("SEARCH_FUSION", bad)]).unwrap_err().to_string();
            assert!(err.contains("SEARCH_FUSION"), "{bad}: {err}");
        }
    }

    #[test]
    fn alert_vars_set_the_thresholds() {
        let config = parse(&[
            ("ALERT_WINDOW_MINUTES", "10"),
            ("ALERT_ERROR_RATE_PERCENT", "2"),
            ("ALERT_MIN_REQUESTS", "5"),
            ("ALERT_P95_MS", "300"),
            ("ALERT_STUCK_MINUTES", "15"),
            ("ALERT_DEAD_LETTERS", "3"),
            ("ALERT_RECONCILE_ENQUEUED", "2"),
        ])
        .expect("valid");
        assert_eq!(
            config.alerts,
            AlertSettings {
                window_ms: 600_000,
                error_rate_percent: 2,
                min_requests: 5,
                p95_ms: 300,
                stuck_after_ms: 900_000,
                dead_letters: 3,
                reconcile_enqueued: 2,
            }
        );
        for (var, value) in [
            ("ALERT_WINDOW_MINUTES", "0"),
            ("ALERT_ERROR_RATE_PERCENT", "101"),
            ("ALERT_P95_MS", "5s"),
        ] {
            assert_eq!(parse(&[(var, value)]).unwrap_err().problems[0].var, var);
        }
    }

    #[test]
    fn metrics_vars_choose_the_sink_retention_and_prices() {
        let config = parse(&[
            ("METRICS_SINK", "both"),
            ("METRICS_RETENTION_DAYS", "3"),
            ("METRICS_MAX_ROWS", "5000"),
            ("OPENAI_COST_PER_1K_TOKENS", "0.002"),
        ])
        .expect("valid");
        assert_eq!(config.metrics.sink, MetricsSinkKind::Both);
        assert!(config.metrics.sink.writes_d1() && config.metrics.sink.writes_analytics_engine());
        assert_eq!(config.metrics.retention_days, 3);
        assert_eq!(config.metrics.max_rows, 5_000);
        assert!((config.metrics.cost_of(ProviderKind::OpenAi).usd(1_000) - 0.002).abs() < 1e-12);
        assert_eq!(
            config.metrics.cost_of(ProviderKind::Offline),
            CostPer1k::FREE
        );
        // Unset, Workers AI costs its default chat model's input price, not nothing.
        let workers_ai = config.metrics.cost_of(ProviderKind::WorkersAi);
        assert!((workers_ai.usd(1_000_000) - 0.045).abs() < 1e-9);
        let names: Vec<_> = config.requirements().iter().map(|r| r.name).collect();
        assert_eq!(names, ["METRICS"]);
        for (var, value) in [
            ("METRICS_SINK", "clickhouse"),
            ("METRICS_RETENTION_DAYS", "0"),
            ("OPENAI_COST_PER_1K_TOKENS", "-1"),
        ] {
            assert_eq!(parse(&[(var, value)]).unwrap_err().problems[0].var, var);
        }
    }

    #[test]
    fn rollout_vars_set_the_ceiling_and_the_old_endpoint() {
        let unset = parse(&[]).expect("valid");
        assert_eq!(unset.rollout.ceiling_percent, 100);
        assert_eq!(unset.rollout.legacy_url, None);
        assert_eq!(unset.rollout.first_byte_timeout_ms, 2_000);
        let config = parse(&[
            ("ROLLOUT_PERCENT", "0"),
            ("LEGACY_CHAT_URL", " https://old.example/api/chat "),
            ("LEGACY_FIRST_BYTE_TIMEOUT_MS", "750"),
        ])
        .expect("valid");
        assert_eq!(config.rollout.ceiling_percent, 0);
        assert_eq!(
            config.rollout.legacy_url.as_deref(),
            Some("https://old.example/api/chat")
        );
        assert_eq!(config.rollout.first_byte_timeout_ms, 750);
        for (var, value) in [
            ("ROLLOUT_PERCENT", "101"),
            ("ROLLOUT_PERCENT", "ten"),
            ("LEGACY_CHAT_URL", "old.example/api/chat"),
            ("LEGACY_CHAT_URL", "ftp://old.example"),
            ("LEGACY_FIRST_BYTE_TIMEOUT_MS", "99"),
            ("LEGACY_FIRST_BYTE_TIMEOUT_MS", "60001"),
            ("LEGACY_FIRST_BYTE_TIMEOUT_MS", "2s"),
            ("LEGACY_FIRST_BYTE_TIMEOUT_MS", " "),
        ] {
            assert_eq!(parse(&[(var, value)]).unwrap_err().problems[0].var, var);
        }
    }

    #[test]
    fn set_vars_are_parsed_into_typed_values() {
        let config = parse(&[
            ("ENVIRONMENT", " staging "),
            ("EMBEDDING_PROVIDER", "workers-ai"),
            ("CHAT_PROVIDER", "openai"),
            ("VECTOR_INDEX", "vectorize"),
            ("EMBEDDING_DIMENSIONS", "768"),
            ("EMBED_BATCH_SIZE", "16"),
            ("TAG_BATCH_SIZE", "5"),
            ("INGEST_RETRY_BASE_MS", "200"),
            ("INGEST_OVERLOAD_BASE_MS", "100"),
            ("INGEST_OVERLOAD_GIVE_UP_MS", "4000"),
            ("INGEST_PROVIDER_CONCURRENCY", "0"),
            ("RECONCILE_PAGE_SIZE", "50"),
            ("RECONCILE_STUCK_AFTER_HOURS", "2"),
            ("RECONCILE_MAX_RETRIES", "0"),
            ("INGEST_WATCHDOG_AFTER_MINUTES", "1"),
            ("CHAT_PAGE", "off"),
        ])
        .expect("valid");
        assert_eq!(config.environment, "staging");
        assert_eq!(config.embedding_provider, ProviderKind::WorkersAi);
        assert_eq!(config.chat_provider, ProviderKind::OpenAi);
        assert_eq!(config.vector_index, IndexKind::Vectorize);
        assert_eq!(config.dimensions, 768);
        assert_eq!(
            (config.ingest.embed_batch, config.ingest.tag_batch),
            (16, 5)
        );
        assert_eq!(config.pipeline.retry().delay_after(2), 400);
        // The cap of the overload wait never exceeds the give-up time.
        assert_eq!(
            config.pipeline.overload_wait(),
            &OverloadWait {
                base_ms: 100,
                max_ms: 4_000,
                give_up_ms: 4_000
            }
        );
        assert_eq!(config.provider_gate, None);
        assert_eq!(config.reconcile.page_size, 50);
        assert_eq!(config.reconcile.stuck_after_ms, 2 * 60 * 60 * 1_000);
        assert_eq!(config.reconcile.max_failed_runs, 0);
        assert_eq!(config.watchdog.after_ms, 60_000);
        assert!(!config.chat_page);
    }

    #[test]
    fn each_provider_and_index_names_what_it_needs() {
        let names = |pairs: &[(&str, &str)]| -> Vec<&'static str> {
            parse(pairs)
                .expect("valid")
                .requirements()
                .iter()
                .map(|r| r.name)
                .collect()
        };
        assert!(names(&[]).is_empty(), "the offline defaults need nothing");
        assert_eq!(
            names(&[
                ("EMBEDDING_PROVIDER", "openai"),
                ("CHAT_PROVIDER", "openai")
            ]),
            ["OPENAI_API_KEY"]
        );
        assert_eq!(
            names(&[
                ("CHAT_PROVIDER", "workers-ai"),
                ("VECTOR_INDEX", "vectorize")
            ]),
            ["AI", "VECTORIZE"]
        );
    }

    #[test]
    fn blank_or_invalid_values_are_errors_naming_every_var() {
        let cases: &[(&str, &str)] = &[
            ("EMBEDDING_PROVIDER", "OpenAI"),
            ("CHAT_PROVIDER", " "),
            ("VECTOR_INDEX", "pinecone"),
            ("EMBEDDING_DIMENSIONS", "0"),
            ("PROVIDER_TIMEOUT_MS", "30s"),
            ("EMBED_BATCH_SIZE", "5000"),
            ("INGEST_RETRY_BASE_MS", "0"),
            ("INGEST_OVERLOAD_BASE_MS", "600000"),
            ("INGEST_PROVIDER_CONCURRENCY", "-1"),
            ("RECONCILE_PAGE_SIZE", "1001"),
            ("INGEST_WATCHDOG_AFTER_MINUTES", "0"),
            ("CHAT_PAGE", "no"),
            ("ENVIRONMENT", ""),
            ("WORKERS_AI_EMBEDDING_MODEL", "@cf/some/unknown-embedder"),
            ("WORKERS_AI_CHAT_MODEL", "gpt-4o"),
        ];
        for (var, value) in cases {
            let error = parse(&[(var, value)]).expect_err(var);
            assert_eq!(error.problems.len(), 1, "{var}");
            assert_eq!(error.problems[0].var, *var);
            assert!(error.to_string().contains(var), "{error}");
        }
        let all = parse(cases).expect_err("all");
        assert_eq!(all.problems.len(), cases.len());
        assert!(all
            .to_string()
            .contains("CHAT_PROVIDER is blank; expected offline, openai or workers-ai"));
        assert!(all
            .to_string()
            .contains("VECTOR_INDEX is \"pinecone\"; expected d1 or vectorize"));
    }

    #[test]
    fn workers_ai_models_default_and_their_dimensions_must_match_the_index() {
        let config = parse(&[
            ("EMBEDDING_PROVIDER", "workers-ai"),
            ("EMBEDDING_DIMENSIONS", "768"),
        ])
        .expect("bge-base is 768");
        assert_eq!(
            config.workers_ai.embedding_model,
            "@cf/baai/bge-base-en-v1.5"
        );
        assert_eq!(
            config.workers_ai.chat_model,
            "@cf/meta/llama-3.1-8b-instruct-fp8-fast"
        );
        // The default 1,536 dimensions are OpenAI's, not bge-base's.
        let error = parse(&[("EMBEDDING_PROVIDER", "workers-ai")]).expect_err("1536 ≠ 768");
        assert_eq!(error.problems.len(), 1);
        assert_eq!(
            error.problems[0].to_string(),
            "EMBEDDING_DIMENSIONS is \"1536\"; expected 768, the dimensions of @cf/baai/bge-base-en-v1.5 (EMBEDDING_PROVIDER=workers-ai)"
        );
        let m3 = parse(&[
            ("EMBEDDING_PROVIDER", "workers-ai"),
            ("WORKERS_AI_EMBEDDING_MODEL", "@cf/baai/bge-m3"),
            ("EMBEDDING_DIMENSIONS", "1024"),
        ])
        .expect("bge-m3 is 1024");
        assert_eq!(m3.workers_ai.embedding_model, "@cf/baai/bge-m3");
        // Other providers do not care which Workers AI model is named.
        assert!(parse(&[("EMBEDDING_DIMENSIONS", "1536")]).is_ok());
    }
}
