//! Reconciliation's entry points: the cron trigger, the admin start, and the
//! page continuations the queue consumer hands over. The run itself is
//! `portfolio_core::reconcile::Reconciler`, driven here over the Worker's
//! adapters (D1, R2, the ingest queue, the configured vector index).
//!
//! Builds the adapters and logs; never decides, never touches SQL.

use crate::bindings;
use crate::config::ServiceConfig;
use crate::store::d1_reconcile::D1ReconcileStore;
use crate::store::metrics::Metrics;
use crate::store::queue::QueueProducer;
use crate::store::r2::R2Documents;
use crate::store::{vector_index_from_env, ConfiguredIndex, WorkerClock};
use portfolio_core::ingest::message::ReconcileContinuation;
use portfolio_core::reconcile::{
    Advance, ReconcilePorts, ReconcileStore, Reconciler, VectorCounting, VECTOR_SETTLE_MS,
};
pub use portfolio_core::reconcile::{RunRecord as RunRow, Started};
use serde_json::json;
use worker::{console_error, console_log, console_warn, Env};

/// The run's ports over this invocation's bindings.
struct Adapters {
    store: D1ReconcileStore,
    objects: R2Documents,
    queue: QueueProducer,
    index: ConfiguredIndex,
    metrics: Metrics,
}

impl ReconcilePorts for Adapters {
    type Store = D1ReconcileStore;
    type Objects = R2Documents;
    type Queue = QueueProducer;
    type Index = ConfiguredIndex;
    type Clock = WorkerClock;
    type Metrics = Metrics;

    fn store(&self) -> &D1ReconcileStore {
        &self.store
    }
    fn objects(&self) -> &R2Documents {
        &self.objects
    }
    fn queue(&self) -> &QueueProducer {
        &self.queue
    }
    fn index(&self) -> &ConfiguredIndex {
        &self.index
    }
    fn clock(&self) -> &WorkerClock {
        &WorkerClock
    }
    fn metrics(&self) -> &Metrics {
        &self.metrics
    }
}

type WorkerReconciler = Reconciler<Adapters>;

fn rust_error(e: impl std::fmt::Display) -> worker::Error {
    worker::Error::RustError(e.to_string())
}

/// The driver over this invocation's bindings; `page_size` overrides
/// `RECONCILE_PAGE_SIZE` for a new run.
fn reconciler(
    env: &Env,
    config: &ServiceConfig,
    page_size: Option<u32>,
    metrics: &Metrics,
) -> worker::Result<WorkerReconciler> {
    let index = vector_index_from_env(env, config).map_err(rust_error)?;
    // Vectorize has no count by metadata and applies writes asynchronously;
    // the D1-exact index is counted next to the rows and is synchronous.
    let (vector_counting, settle_ms) = match index {
        ConfiguredIndex::D1(_) => (VectorCounting::Store, 0),
        ConfiguredIndex::Vectorize(_) => (VectorCounting::ByIds, VECTOR_SETTLE_MS),
    };
    let mut settings = config.reconcile.with_vector_settle_ms(settle_ms);
    if let Some(size) = page_size {
        settings = settings.with_page_size(size);
    }
    Ok(Reconciler {
        ports: Adapters {
            store: D1ReconcileStore::from_env(env).map_err(rust_error)?,
            objects: R2Documents::from_env(env).map_err(rust_error)?,
            queue: QueueProducer::from_env(env, bindings::INGEST_QUEUE).map_err(rust_error)?,
            index,
            metrics: metrics.clone(),
        },
        settings,
        vector_counting,
    })
}

/// The daily run's start from the cron: never panics, logs failures instead.
pub async fn run_scheduled(cron: &str, env: &Env, config: &ServiceConfig, metrics: &Metrics) {
    match start(env, config, "cron", None, metrics).await {
        Ok(Started::Run { run_id, done }) => console_log!(
            "{}",
            json!({ "level": "info", "event": "reconcile_started", "trigger": "cron", "cron": cron, "run_id": run_id, "done": done })
        ),
        Ok(Started::AlreadyRunning { run_id }) => console_warn!(
            "{}",
            json!({ "level": "warn", "event": "reconcile_skipped", "cron": cron, "running_run_id": run_id })
        ),
        Err(e) => console_error!(
            "{}",
            json!({ "level": "error", "event": "reconcile_failed", "cron": cron, "error": e.to_string() })
        ),
    }
}

/// Starts a run (`trigger` is `cron` or `admin`) and processes its first
/// page. `page_size` overrides `RECONCILE_PAGE_SIZE` for this run.
pub async fn start(
    env: &Env,
    config: &ServiceConfig,
    trigger: &str,
    page_size: Option<u32>,
    metrics: &Metrics,
) -> worker::Result<Started> {
    reconciler(env, config, page_size, metrics)?
        .start(trigger)
        .await
        .map_err(rust_error)
}

/// Handles a continuation from the ingest queue (`attempts`: its delivery
/// count). `Err` makes the consumer retry the message (with its delay); the
/// run row already says what failed.
pub async fn continue_run(
    env: &Env,
    config: &ServiceConfig,
    continuation: &ReconcileContinuation,
    attempts: u32,
    metrics: &Metrics,
) -> Result<(), String> {
    let reconciler = reconciler(env, config, None, metrics).map_err(|e| e.to_string())?;
    let (run_id, page) = (continuation.run_id, continuation.page);
    match reconciler.continue_run(continuation, attempts).await {
        Ok(Advance::Page { done, report }) => {
            console_log!(
                "{}",
                json!({ "level": "info", "event": "reconcile_page", "run_id": run_id, "page": page,
                        "cursor": continuation.cursor, "objects": report.objects_seen,
                        "documents": report.documents_seen, "stores_checked": report.stores_checked,
                        "swept": report.swept, "enqueued": report.enqueued, "errors": report.errors, "last": done })
            );
            if done {
                let summary = reconciler
                    .ports
                    .store
                    .load_run(run_id)
                    .await
                    .ok()
                    .flatten()
                    .map(|r| r.summary());
                console_log!(
                    "{}",
                    json!({ "level": "info", "event": "reconcile_done", "run_id": run_id, "summary": summary })
                );
            }
            Ok(())
        }
        Ok(Advance::Skipped(why)) => {
            console_warn!(
                "{}",
                json!({ "level": "warn", "event": "reconcile_page_skipped", "run_id": run_id, "page": page, "why": why })
            );
            Ok(())
        }
        Err(e) => {
            console_error!(
                "{}",
                json!({ "level": "error", "event": "reconcile_page_failed", "run_id": run_id, "page": page, "error": e.to_string() })
            );
            Err(e.to_string())
        }
    }
}

/// A continuation that ran out of retries: its run can never finish.
pub async fn dead_lettered(
    env: &Env,
    config: &ServiceConfig,
    continuation: &ReconcileContinuation,
    error: &str,
    metrics: &Metrics,
) -> worker::Result<()> {
    reconciler(env, config, None, metrics)?
        .dead_lettered(continuation, error)
        .await
        .map_err(rust_error)
}

/// `GET /admin/reconcile/runs`: the latest runs, newest first.
pub async fn latest_runs(env: &Env, limit: u32) -> worker::Result<Vec<RunRow>> {
    D1ReconcileStore::from_env(env)
        .map_err(rust_error)?
        .latest_runs(limit)
        .await
        .map_err(rust_error)
}
