//! Where data points go and how long they stay (`METRICS_SINK`,
//! `METRICS_RETENTION_DAYS`, `METRICS_MAX_ROWS`) and the providers' prices
//! (`*_COST_PER_1K_TOKENS`): the metrics flow's settings. `crate::config`
//! reads the vars into them.
//!
//! Never writes a point and never reads a var.

use super::CostPer1k;
use crate::providers::settings::ProviderKind;

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

    pub(crate) fn parse(value: &str) -> Option<Self> {
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
