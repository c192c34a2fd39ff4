//! Reads the operations flow's vars (`METRICS_*`, provider prices, `ALERT_*`,
//! `ROLLOUT_PERCENT`, `LEGACY_*`) into its settings types, with the ranges
//! each var accepts.
//!
//! Owns the ranges; the settings types and their defaults are the flows'.

use super::vars::Vars;
use crate::operations::alerts::AlertSettings;
use crate::operations::availability::Objective;
use crate::operations::metrics::{
    AnalyticsSqlSettings, BufferPolicy, CostPer1k, MetricsSettings, MetricsSinkKind,
    DEFAULT_ANALYTICS_SQL_BASE_URL, DEFAULT_BUFFER_POINTS, DEFAULT_BUFFER_SECONDS,
};
use crate::operations::rollout::{
    RolloutConfig, DEFAULT_FIRST_BYTE_TIMEOUT_MS, FIRST_BYTE_TIMEOUT_MS_RANGE,
};

/// `METRICS_SINK`, `METRICS_RETENTION_DAYS`, `METRICS_MAX_ROWS`, `*_COST_PER_1K_TOKENS`.
pub(super) fn read_metrics<F: Fn(&str) -> Option<String>>(vars: &mut Vars<F>) -> MetricsSettings {
    let metrics_defaults = MetricsSettings::default();
    let price = "a price in USD per 1K tokens (a decimal such as 0.00015)";
    MetricsSettings {
        sink: vars.read(
            "METRICS_SINK",
            metrics_defaults.sink,
            "d1, analytics-engine, both or none",
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
        analytics_sql: read_analytics_sql(vars),
        buffer: BufferPolicy {
            max_points: vars.number("METRICS_BUFFER_POINTS", DEFAULT_BUFFER_POINTS, 1, 1_000),
            max_age_ms: u64::from(vars.number(
                "METRICS_BUFFER_SECONDS",
                DEFAULT_BUFFER_SECONDS,
                1,
                300,
            )) * 1_000,
        },
    }
}

/// Whether `value` is an account id: "your 32 character account ID" (Workers
/// Analytics Engine, "SQL API"), which the dashboard shows as hex digits.
fn is_account_id(value: &str) -> bool {
    value.len() == 32 && value.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Whether `value` can stand as the table name in the SQL the readers send
/// unquoted: letters, digits and `_`, as wrangler's example datasets are.
fn is_dataset_name(value: &str) -> bool {
    (1..=64).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !value.as_bytes()[0].is_ascii_digit()
}

/// `ANALYTICS_ENGINE_ACCOUNT_ID`, `METRICS_DATASET`, `ANALYTICS_ENGINE_SQL_URL`.
fn read_analytics_sql<F: Fn(&str) -> Option<String>>(vars: &mut Vars<F>) -> AnalyticsSqlSettings {
    let account_id = vars.read(
        "ANALYTICS_ENGINE_ACCOUNT_ID",
        None,
        "the 32-character (hex) Cloudflare account id",
        // wrangler.jsonc's placeholder (all zeros, like its other resource ids)
        // counts as unset: health names it until the real id is filled in.
        |v| {
            is_account_id(v)
                .then(|| (!v.bytes().all(|b| b == b'0')).then(|| v.to_ascii_lowercase()))
        },
    );
    let dataset = vars.read(
        "METRICS_DATASET",
        None,
        "the Analytics Engine dataset the METRICS binding writes (letters, digits and _, \
         not starting with a digit, at most 64)",
        |v| is_dataset_name(v).then(|| Some(v.to_owned())),
    );
    let base_url = vars.read(
        "ANALYTICS_ENGINE_SQL_URL",
        DEFAULT_ANALYTICS_SQL_BASE_URL.to_owned(),
        "an http(s) URL without a trailing slash",
        |v| {
            ((v.starts_with("https://") || v.starts_with("http://")) && !v.ends_with('/'))
                .then(|| v.to_owned())
        },
    );
    AnalyticsSqlSettings {
        account_id,
        dataset,
        base_url,
    }
}

/// `ALERT_*` thresholds.
pub(super) fn read_alerts<F: Fn(&str) -> Option<String>>(vars: &mut Vars<F>) -> AlertSettings {
    let alert_defaults = AlertSettings::default();
    let minute_ms = 60 * 1_000;
    AlertSettings {
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
        availability: vars.read(
            "SLO_AVAILABILITY_PERCENT",
            alert_defaults.availability,
            "a percentage above 0 and below 100, such as 99.9",
            |v| v.parse::<f64>().ok().and_then(Objective::new),
        ),
    }
}

/// `ROLLOUT_PERCENT`, `LEGACY_CHAT_URL`, `LEGACY_FIRST_BYTE_TIMEOUT_MS`.
pub(super) fn read_rollout<F: Fn(&str) -> Option<String>>(vars: &mut Vars<F>) -> RolloutConfig {
    RolloutConfig {
        ceiling_percent: vars.number("ROLLOUT_PERCENT", 100, 0, 100),
        legacy_url: vars.read(
            "LEGACY_CHAT_URL",
            None,
            "an http:// or https:// URL of the old chat endpoint",
            |v| (v.starts_with("https://") || v.starts_with("http://")).then(|| Some(v.to_owned())),
        ),
        first_byte_timeout_ms: vars.number(
            "LEGACY_FIRST_BYTE_TIMEOUT_MS",
            DEFAULT_FIRST_BYTE_TIMEOUT_MS,
            FIRST_BYTE_TIMEOUT_MS_RANGE.0,
            FIRST_BYTE_TIMEOUT_MS_RANGE.1,
        ),
    }
}
