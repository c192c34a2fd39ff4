//! Reconciliation: the daily safety net comparing R2, D1 and the vector
//! index, and re-enqueueing what disagrees (`portfolio_core::reconcile` decides).
//!
//! A run is a chain of pages: the trigger (cron or `POST /admin/reconcile`)
//! creates the run row and does page 1; each page enqueues the next as a
//! `{ "type": "reconcile" }` message on the ingest queue, and the last page
//! marks the run `done`. Never processes a document itself: every repair goes
//! through the ingest queue to the document's processor.

mod page;
mod runs;
mod stores;

use crate::bindings;
use crate::config::ServiceConfig;
use crate::store::queue::QueueProducer;
use portfolio_core::ingest_message::ReconcileContinuation;
use portfolio_core::reconcile::{append_errors, merge_counts, PageEnd};
pub use runs::RunRow;
use serde_json::json;
use worker::{console_error, console_log, console_warn, Env};

fn now_ms() -> u64 {
    worker::Date::now().as_millis()
}

fn rust_error(e: impl std::fmt::Display) -> worker::Error {
    worker::Error::RustError(e.to_string())
}

/// Outcome of starting a run.
pub enum Started {
    /// A new run; `done` if it finished within its first page.
    Run { run_id: u64, done: bool },
    /// Another run is in progress: at most one at a time.
    AlreadyRunning { run_id: u64 },
}

/// Outcome of one page message.
enum Advance {
    Page { done: bool },
    Skipped(&'static str),
}

/// Cron entry point: never panics, logs failures instead.
pub async fn run_scheduled(cron: &str, env: &Env) {
    let config = match crate::config::load(env) {
        Ok(config) => config,
        Err(e) => {
            console_error!(
                "{}",
                json!({ "level": "error", "event": "reconcile_failed", "cron": cron, "error": e.to_string() })
            );
            return;
        }
    };
    match start(env, &config, "cron", None).await {
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
) -> worker::Result<Started> {
    let db = env.d1(bindings::DB)?;
    let mut settings = config.reconcile;
    if let Some(size) = page_size {
        settings = settings.with_page_size(size);
    }
    let now = now_ms() as f64;
    runs::abandon_stale(&db, now).await?;
    let run_id = match runs::create(&db, trigger, settings.page_size, now).await? {
        runs::Created::Started(id) => id,
        runs::Created::AlreadyRunning(run_id) => return Ok(Started::AlreadyRunning { run_id }),
    };
    match advance(env, config, run_id, 1, false).await {
        Ok(Advance::Page { done }) => Ok(Started::Run { run_id, done }),
        Ok(Advance::Skipped(_)) => Ok(Started::Run {
            run_id,
            done: false,
        }),
        Err(e) => {
            // Let the queue retry from where the run got (page 1 itself, or
            // the continuation of page 1 if only that failed) like any page.
            page_failed(env, run_id, 1, &e).await;
            let run = runs::load(&db, run_id).await?;
            let (page, cursor) = run.map_or((1, String::new()), |r| {
                (r.pages_done() + 1, r.cursor.unwrap_or_default())
            });
            if let Err(send) = send_continuation(env, run_id, page, &cursor).await {
                let message = format!("page {page} could not be enqueued: {send}");
                runs::fail(&db, run_id, &message, now_ms() as f64).await?;
            }
            Ok(Started::Run {
                run_id,
                done: false,
            })
        }
    }
}

/// Handles a continuation from the ingest queue (`attempts`: its delivery
/// count). `Err` makes the consumer retry the message (with its delay); the
/// run row already says what failed.
pub async fn continue_run(
    env: &Env,
    config: &ServiceConfig,
    continuation: &ReconcileContinuation,
    attempts: u32,
) -> Result<(), String> {
    match advance(
        env,
        config,
        continuation.run_id,
        continuation.page,
        attempts > 1,
    )
    .await
    {
        Ok(Advance::Page { .. }) => Ok(()),
        Ok(Advance::Skipped(why)) => {
            console_warn!(
                "{}",
                json!({ "level": "warn", "event": "reconcile_page_skipped", "run_id": continuation.run_id, "page": continuation.page, "why": why })
            );
            Ok(())
        }
        Err(e) => {
            page_failed(env, continuation.run_id, continuation.page, &e).await;
            Err(e.to_string())
        }
    }
}

/// A continuation that ran out of retries: its run can never finish.
pub async fn dead_lettered(
    env: &Env,
    continuation: &ReconcileContinuation,
    error: &str,
) -> worker::Result<()> {
    let db = env.d1(bindings::DB)?;
    let message = format!("page {} dead-lettered: {error}", continuation.page);
    runs::fail(&db, continuation.run_id, &message, now_ms() as f64).await
}

/// `GET /admin/reconcile/runs`: the latest runs, newest first.
pub async fn latest_runs(env: &Env, limit: u32) -> worker::Result<Vec<RunRow>> {
    runs::latest(&env.d1(bindings::DB)?, limit).await
}

async fn page_failed(env: &Env, run_id: u64, page: u32, error: &worker::Error) {
    console_error!(
        "{}",
        json!({ "level": "error", "event": "reconcile_page_failed", "run_id": run_id, "page": page, "error": error.to_string() })
    );
    let recorded = async {
        let db = env.d1(bindings::DB)?;
        runs::append_error(
            &db,
            run_id,
            &format!("page {page}: {error}"),
            now_ms() as f64,
        )
        .await
    };
    if let Err(e) = recorded.await {
        console_error!(
            "{}",
            json!({ "level": "error", "event": "reconcile_error_not_recorded", "run_id": run_id, "error": e.to_string() })
        );
    }
}

async fn send_continuation(env: &Env, run_id: u64, page: u32, cursor: &str) -> worker::Result<()> {
    let next = ReconcileContinuation {
        run_id,
        page,
        cursor: cursor.to_owned(),
    };
    QueueProducer::from_env(env, bindings::INGEST_QUEUE)
        .map_err(rust_error)?
        .send(&next.to_message())
        .await
        .map_err(|e| rust_error(format!("enqueueing page {page}: {e}")))
}

/// Processes page `page` of run `run_id` if it is the run's next page, records
/// it on the run row and enqueues the next one (or finishes the run).
/// `redelivered`: the message failed before, maybe after its page was recorded.
async fn advance(
    env: &Env,
    config: &ServiceConfig,
    run_id: u64,
    page: u32,
    redelivered: bool,
) -> worker::Result<Advance> {
    let db = env.d1(bindings::DB)?;
    let Some(run) = runs::load(&db, run_id).await? else {
        return Ok(Advance::Skipped("unknown run"));
    };
    if run.status != "running" {
        return Ok(Advance::Skipped("run is not running"));
    }
    let done_pages = run.pages_done();
    if page <= done_pages {
        // A duplicate. If it is a redelivery of the latest page, the failure
        // that caused it may have been the continuation's send: resend it (a
        // duplicate of that one is skipped here without resending again).
        if redelivered && page == done_pages {
            send_continuation(env, run_id, page + 1, run.cursor.as_deref().unwrap_or("")).await?;
        }
        return Ok(Advance::Skipped("page already done"));
    }
    if page > done_pages + 1 {
        return Ok(Advance::Skipped("page out of order"));
    }

    let started = now_ms();
    let settings = config.reconcile.with_page_size(run.page_size as u32);
    let cursor = run.cursor.clone().unwrap_or_default();
    let report = page::process(env, config, &cursor, &settings, started).await?;
    let enqueued = merge_counts(&run.enqueued, &report.enqueued).map_err(rust_error)?;
    let errors = append_errors(&run.errors, &report.errors).map_err(rust_error)?;
    let (last, next_cursor) = match &report.end {
        PageEnd::Through(key) => (false, key.clone()),
        PageEnd::Last => (true, cursor.clone()),
    };
    let finished = now_ms();
    let claim = runs::PageClaim {
        page,
        cursor: &next_cursor,
        objects_seen: report.objects_seen,
        documents_seen: report.documents_seen,
        stores_checked: report.stores_checked,
        enqueued: &enqueued,
        errors: &errors,
        last,
        now: finished as f64,
    };
    if !runs::claim_page(&db, run_id, &claim).await? {
        return Ok(Advance::Skipped("page recorded concurrently"));
    }
    console_log!(
        "{}",
        json!({ "level": "info", "event": "reconcile_page", "run_id": run_id, "page": page, "cursor": cursor,
                "objects": report.objects_seen, "documents": report.documents_seen, "stores_checked": report.stores_checked,
                "enqueued": report.enqueued, "errors": report.errors, "ms": finished.saturating_sub(started), "last": last })
    );
    if last {
        let summary = runs::load(&db, run_id).await?.map(|r| r.summary());
        console_log!(
            "{}",
            json!({ "level": "info", "event": "reconcile_done", "run_id": run_id, "summary": summary })
        );
    } else {
        send_continuation(env, run_id, page + 1, &next_cursor).await?;
    }
    Ok(Advance::Page { done: last })
}
