//! The scheduled entry point: which cron trigger does what. The daily one
//! (`17 3 * * *`) starts reconciliation and prunes the metrics, alerts and
//! shadow-comparison tables; every trigger (the other is `*/5 * * * *`) runs the ingestion
//! watchdog (wakes processors of documents whose row has not moved) and evaluates the alerts.
//!
//! Wiring only; never panics (a scheduled handler has no caller to answer):
//! failures are logged.

use crate::root::Root;
use crate::store::{ConsoleLog, WorkerClock};
use crate::{alerts, ingest, reconcile};
use portfolio_core::config::ServiceConfig;
use portfolio_core::operations::OPERATIONS_RETENTION_MS;
use portfolio_core::shared::storage::{Clock, EventLog, Level};
use serde_json::json;

/// The daily trigger (`triggers.crons` in `wrangler.jsonc`): reconciliation
/// and the metrics table's retention.
pub const DAILY_CRON: &str = "17 3 * * *";

const DAY_MS: u64 = 24 * 60 * 60 * 1_000;

/// Runs what `cron` is for; the invocation's metrics are the root's
/// (flushed by the caller through `waitUntil`).
pub async fn run(cron: &str, root: &Root) {
    let config = match root.config() {
        Ok(config) => config,
        Err(e) => {
            ConsoleLog.log(
                Level::Error,
                json!({ "event": "cron_misconfigured", "cron": cron, "error": e.to_string() }),
            );
            return;
        }
    };
    if cron == DAILY_CRON {
        reconcile::run_scheduled(cron, root.env(), config, root.metrics()).await;
        prune(root, config).await;
    }
    // Before the alerts, so a document it re-arms is not reported stuck for a run longer.
    ingest::watchdog::run(root.env(), config).await;
    alerts::evaluate(root.env(), config, cron).await;
}

/// Deletes alerts and shadow comparisons past their keep, and metric points
/// past `METRICS_RETENTION_DAYS` and beyond `METRICS_MAX_ROWS`.
async fn prune(root: &Root, config: &ServiceConfig) {
    let now = WorkerClock.now_ms();
    let failed = |event: &str, e: String| {
        ConsoleLog.log(Level::Error, json!({ "event": event, "error": e }));
    };
    match root.alerts() {
        Ok(store) => {
            if let Err(e) = store
                .prune(now.saturating_sub(OPERATIONS_RETENTION_MS))
                .await
            {
                failed("alerts_prune_failed", e.to_string());
            }
        }
        Err(e) => failed("alerts_prune_failed", e.code().to_owned()),
    }
    match root.rollout() {
        Ok(store) => {
            if let Err(e) = store
                .prune(now.saturating_sub(OPERATIONS_RETENTION_MS))
                .await
            {
                failed("shadow_prune_failed", e.to_string());
            }
        }
        Err(e) => failed("shadow_prune_failed", e.code().to_owned()),
    }
    let settings = config.metrics;
    let cutoff = now.saturating_sub(u64::from(settings.retention_days) * DAY_MS);
    let pruned = match root.metric_points() {
        Ok(store) => store
            .prune(cutoff, settings.max_rows)
            .await
            .map_err(|e| e.to_string()),
        Err(e) => Err(e.code().to_owned()),
    };
    match pruned {
        Ok(deleted) => ConsoleLog.log(
            Level::Info,
            json!({ "event": "metrics_pruned", "deleted": deleted, "cutoff_ms": cutoff, "max_rows": settings.max_rows }),
        ),
        Err(e) => failed("metrics_prune_failed", e),
    }
}
