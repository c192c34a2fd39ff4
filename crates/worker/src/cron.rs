//! The scheduled entry point: which cron trigger does what. Every trigger
//! (`*/5 * * * *` and the daily one) counts the availability days, runs the
//! ingestion watchdog (wakes processors of documents whose row has not moved)
//! and evaluates the alerts; the daily one (`17 3 * * *`) also starts
//! reconciliation and prunes the metrics, alerts, shadow-comparison,
//! feedback and availability tables.
//!
//! Wiring only; never panics (a scheduled handler has no caller to answer):
//! failures are logged.

use crate::error::ApiError;
use crate::root::Root;
use crate::store::d1_availability::recent_since;
use crate::store::{ConsoleLog, WorkerClock};
use crate::{alerts, ingest, reconcile};
use portfolio_core::config::ServiceConfig;
use portfolio_core::operations::availability::window_start;
use portfolio_core::operations::metrics::{MetricsReadError, MetricsReader};
use portfolio_core::operations::OPERATIONS_RETENTION_MS;
use portfolio_core::shared::storage::{Clock, EventLog, Level, StoreError};
use serde_json::json;
use std::future::Future;

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
    // The isolate's waiting points first, so the counts below include them.
    root.metrics().flush().await;
    // Before the daily prune, so yesterday is counted before its points go.
    roll_up_availability(root, config).await;
    if cron == DAILY_CRON {
        reconcile::run_scheduled(cron, root.env(), config, root.metrics()).await;
        prune(root, config).await;
    }
    // Before the alerts, so a document it re-arms is not reported stuck for a run longer.
    ingest::watchdog::run(root.env(), config).await;
    alerts::evaluate(root.env(), config, cron).await;
}

/// Runs one housekeeping step on the store `opened`, if it opened, and
/// logs a failure under `event` (the store's detail, or the code of a
/// binding that could not be opened). Its result, if it ran.
async fn housekeep<S, T, F>(
    event: &str,
    opened: Result<S, ApiError>,
    step: impl FnOnce(S) -> F,
) -> Option<T>
where
    F: Future<Output = Result<T, StoreError>>,
{
    let outcome = match opened {
        Ok(store) => step(store).await.map_err(|e| e.to_string()),
        Err(e) => Err(e.code().to_owned()),
    };
    match outcome {
        Ok(value) => Some(value),
        Err(e) => {
            ConsoleLog.log(Level::Error, json!({ "event": event, "error": e }));
            None
        }
    }
}

/// Counts yesterday's and today's public requests into the availability
/// days (every run: the report's 30 days outlive the metric points).
async fn roll_up_availability(root: &Root, config: &ServiceConfig) {
    let now = WorkerClock.now_ms();
    let live = match root.point_reader(config) {
        Ok(reader) => reader.public_days(recent_since(now), now).await,
        Err(e) => Err(MetricsReadError::Unreachable(e.code().to_owned())),
    };
    let live = match live {
        Ok(live) => live,
        Err(e) => {
            ConsoleLog.log(
                Level::Error,
                json!({ "event": "availability_roll_up_failed", "error": e.to_string() }),
            );
            return;
        }
    };
    housekeep(
        "availability_roll_up_failed",
        root.availability(),
        |store| async move { store.roll_up(now, &live).await },
    )
    .await;
}

/// Deletes alerts, shadow comparisons and readers' ratings past their keep,
/// availability days past the objective's window, and metric points past
/// `METRICS_RETENTION_DAYS` and beyond `METRICS_MAX_ROWS`.
async fn prune(root: &Root, config: &ServiceConfig) {
    let now = WorkerClock.now_ms();
    let before = now.saturating_sub(OPERATIONS_RETENTION_MS);
    housekeep("alerts_prune_failed", root.alerts(), |store| async move {
        store.prune(before).await
    })
    .await;
    housekeep("shadow_prune_failed", root.rollout(), |store| async move {
        store.prune(before).await
    })
    .await;
    housekeep(
        "feedback_prune_failed",
        root.feedback(),
        |store| async move { store.prune(before).await },
    )
    .await;
    let first_day = window_start(now);
    housekeep(
        "availability_prune_failed",
        root.availability(),
        |store| async move { store.prune(&first_day).await },
    )
    .await;
    let settings = &config.metrics;
    let cutoff = now.saturating_sub(u64::from(settings.retention_days) * DAY_MS);
    let pruned = housekeep(
        "metrics_prune_failed",
        root.metric_points(),
        |store| async move { store.prune(cutoff, settings.max_rows).await },
    )
    .await;
    if let Some(deleted) = pruned {
        ConsoleLog.log(
            Level::Info,
            json!({ "event": "metrics_pruned", "deleted": deleted, "cutoff_ms": cutoff, "max_rows": settings.max_rows }),
        );
    }
}
