//! The scheduled entry point: which cron trigger does what. The daily one
//! (`17 3 * * *`) starts reconciliation and prunes the metrics, alerts and
//! shadow-comparison tables; every trigger (the other is `*/5 * * * *`) runs the ingestion
//! watchdog (wakes processors of documents whose row has not moved) and evaluates the alerts.
//!
//! Wiring only; never panics (a scheduled handler has no caller to answer):
//! failures are logged.

use crate::store::d1_alerts::{D1Alerts, KEEP_MS};
use crate::store::d1_metrics::D1Metrics;
use crate::store::d1_rollout::{self as rollout_store, D1Rollout};
use crate::store::metrics::Metrics;
use crate::store::{ConsoleLog, WorkerClock};
use crate::{alerts, ingest, reconcile};
use crate::{bindings, config};
use portfolio_core::config::ServiceConfig;
use portfolio_core::operations::metrics::MetricsSinkKind;
use portfolio_core::shared::storage::{Clock, EventLog, Level};
use serde_json::json;
use worker::Env;

/// The daily trigger (`triggers.crons` in `wrangler.jsonc`): reconciliation
/// and the metrics table's retention.
pub const DAILY_CRON: &str = "17 3 * * *";

const DAY_MS: u64 = 24 * 60 * 60 * 1_000;

/// Runs what `cron` is for; returns the invocation's metrics (flushed by the
/// caller through `waitUntil`).
pub async fn run(cron: &str, env: &Env) -> Metrics {
    let config = match config::load(env) {
        Ok(config) => config,
        Err(e) => {
            ConsoleLog.log(
                Level::Error,
                json!({ "event": "cron_misconfigured", "cron": cron, "error": e.to_string() }),
            );
            return Metrics::from_env(env, MetricsSinkKind::D1);
        }
    };
    let metrics = Metrics::from_env(env, config.metrics.sink);
    if cron == DAILY_CRON {
        reconcile::run_scheduled(cron, env, &config, &metrics).await;
        prune_metrics(env, &config).await;
    }
    // Before the alerts, so a document it re-arms is not reported stuck for a run longer.
    ingest::watchdog::run(env, &config).await;
    alerts::evaluate(env, &config, cron).await;
    metrics
}

/// Deletes points past `METRICS_RETENTION_DAYS` and beyond `METRICS_MAX_ROWS`.
async fn prune_metrics(env: &Env, config: &ServiceConfig) {
    let Ok(db) = env.d1(bindings::DB) else {
        return;
    };
    let settings = config.metrics;
    let cutoff = WorkerClock
        .now_ms()
        .saturating_sub(u64::from(settings.retention_days) * DAY_MS);
    if let Ok(alerts_db) = env.d1(bindings::DB) {
        if let Err(e) = D1Alerts::new(alerts_db)
            .prune(WorkerClock.now_ms().saturating_sub(KEEP_MS))
            .await
        {
            ConsoleLog.log(
                Level::Error,
                json!({ "event": "alerts_prune_failed", "error": e.to_string() }),
            );
        }
    }
    if let Ok(rollout_db) = env.d1(bindings::DB) {
        let before = WorkerClock.now_ms().saturating_sub(rollout_store::KEEP_MS);
        if let Err(e) = D1Rollout::new(rollout_db).prune(before).await {
            ConsoleLog.log(
                Level::Error,
                json!({ "event": "shadow_prune_failed", "error": e.to_string() }),
            );
        }
    }
    match D1Metrics::new(db).prune(cutoff, settings.max_rows).await {
        Ok(deleted) => ConsoleLog.log(
            Level::Info,
            json!({ "event": "metrics_pruned", "deleted": deleted, "cutoff_ms": cutoff, "max_rows": settings.max_rows }),
        ),
        Err(e) => ConsoleLog.log(
            Level::Error,
            json!({ "event": "metrics_prune_failed", "error": e.to_string() }),
        ),
    }
}
