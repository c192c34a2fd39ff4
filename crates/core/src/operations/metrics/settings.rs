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
    /// Workers Analytics Engine only (the `METRICS` binding), read back
    /// through its SQL API by `/admin/metrics`, availability and the alerts
    /// ([`AnalyticsSqlSettings`]): the deployed environments' sink, which adds
    /// no D1 write to any request.
    AnalyticsEngine,
    /// Both: Analytics Engine for dashboards and SQL, D1 for the admin route
    /// and the alerts (a transition between the two: every request then
    /// writes D1 too).
    Both,
    /// Nowhere: the benchmarks' baseline (what recording costs is measured
    /// against it). The readers read the local table, which stays empty.
    None,
}

impl MetricsSinkKind {
    /// The var value naming it.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::D1 => "d1",
            Self::AnalyticsEngine => "analytics-engine",
            Self::Both => "both",
            Self::None => "none",
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

    /// Whether `/admin/metrics`, availability and the alerts read the points
    /// from Analytics Engine's SQL API (else from the local table).
    #[must_use]
    pub fn reads_analytics_engine(self) -> bool {
        self == Self::AnalyticsEngine
    }

    pub(crate) fn parse(value: &str) -> Option<Self> {
        [Self::D1, Self::AnalyticsEngine, Self::Both, Self::None]
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

/// When an isolate's buffered points are written to the local table
/// (`METRICS_BUFFER_POINTS`, `METRICS_BUFFER_SECONDS`): by the first
/// invocation that finds at least `max_points` waiting, or the oldest
/// waiting at least `max_age_ms`, after its own answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BufferPolicy {
    /// Points that make a write due.
    pub max_points: u32,
    /// Age of the oldest point that makes a write due (ms).
    pub max_age_ms: u64,
}

/// Default points per local write: one D1 batch of a few statements.
pub const DEFAULT_BUFFER_POINTS: u32 = 100;
/// Default age that makes a local write due.
pub const DEFAULT_BUFFER_SECONDS: u32 = 10;

impl Default for BufferPolicy {
    fn default() -> Self {
        Self {
            max_points: DEFAULT_BUFFER_POINTS,
            max_age_ms: u64::from(DEFAULT_BUFFER_SECONDS) * 1_000,
        }
    }
}

impl BufferPolicy {
    /// Whether `points` waiting, the oldest recorded at `oldest_at_ms`,
    /// are to be written now (`now_ms`).
    #[must_use]
    pub fn due(&self, points: usize, oldest_at_ms: Option<u64>, now_ms: u64) -> bool {
        points > 0
            && (points >= self.max_points as usize
                || oldest_at_ms.is_some_and(|at| now_ms.saturating_sub(at) >= self.max_age_ms))
    }
}

/// Where the Analytics Engine SQL API is by default. Source: Workers
/// Analytics Engine, "SQL API" (<https://developers.cloudflare.com/analytics/analytics-engine/sql-api/>):
/// "hosted at https://api.cloudflare.com/client/v4/accounts/<account_id>/analytics_engine/sql".
pub const DEFAULT_ANALYTICS_SQL_BASE_URL: &str = "https://api.cloudflare.com/client/v4";

/// How the readers reach the points in Analytics Engine
/// (`METRICS_SINK=analytics-engine`): `ANALYTICS_ENGINE_ACCOUNT_ID`,
/// `METRICS_DATASET`, `ANALYTICS_ENGINE_SQL_URL`. The API token is a secret
/// (`ANALYTICS_ENGINE_API_TOKEN`), read by the Worker, never here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnalyticsSqlSettings {
    /// The 32-character account id (unset: the readers answer "not configured").
    pub account_id: Option<String>,
    /// The dataset the `METRICS` binding writes (its table in SQL).
    pub dataset: Option<String>,
    /// The API's base URL (tests point it at a stand-in).
    pub base_url: String,
}

impl Default for AnalyticsSqlSettings {
    fn default() -> Self {
        Self {
            account_id: None,
            dataset: None,
            base_url: DEFAULT_ANALYTICS_SQL_BASE_URL.to_owned(),
        }
    }
}

/// `METRICS_*` and the providers' prices.
#[derive(Debug, Clone, PartialEq, Eq)]
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
    /// Where Analytics Engine's points are read (`METRICS_SINK=analytics-engine`).
    pub analytics_sql: AnalyticsSqlSettings,
    /// When the local table's buffered points are written.
    pub buffer: BufferPolicy,
}

impl Default for MetricsSettings {
    fn default() -> Self {
        Self {
            sink: MetricsSinkKind::D1,
            retention_days: DEFAULT_METRICS_RETENTION_DAYS,
            max_rows: DEFAULT_METRICS_MAX_ROWS,
            openai_cost: CostPer1k::parse(DEFAULT_OPENAI_COST_PER_1K).unwrap_or_default(),
            workers_ai_cost: CostPer1k::parse(DEFAULT_WORKERS_AI_COST_PER_1K).unwrap_or_default(),
            analytics_sql: AnalyticsSqlSettings::default(),
            buffer: BufferPolicy::default(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_buffer_is_written_when_full_or_old_and_never_when_empty() {
        let policy = BufferPolicy {
            max_points: 3,
            max_age_ms: 1_000,
        };
        assert!(!policy.due(0, None, 5_000));
        assert!(!policy.due(2, Some(4_500), 5_000), "young and short");
        assert!(policy.due(3, Some(4_900), 5_000), "full");
        assert!(policy.due(1, Some(4_000), 5_000), "old enough");
        assert!(
            !policy.due(1, Some(6_000), 5_000),
            "a clock behind the point"
        );
    }
}
