//! Advancing a run: start it, take each page message in turn, skip duplicate
//! and out-of-order pages, resend a continuation a redelivery may have lost,
//! and fail a run whose continuation was dead-lettered.
//!
//! A run is a chain of pages: the trigger creates the run row and does page
//! 1; each page enqueues the next as a `{ "type": "reconcile" }` message on
//! the ingest queue, and the last page marks the run `done`. A page is
//! claimed on the run row with a conditional update, so a redelivered page
//! message never counts twice. Never processes a document itself.

use super::driver::{ReconcilePorts, Reconciler, RunError};
use super::page::PageReport;
use super::store::{ClaimedPage, CreatedRun, ReconcileStore, RunRecord, RunStatus};
use super::{append_errors, merge_counts, PageEnd, RUN_STALE_AFTER_MS};
use crate::ingest::message::ReconcileContinuation;
use crate::operations::metrics::{DataPoint, MetricsSink};
use crate::shared::storage::{Clock, IngestQueue, StoreError};

/// Outcome of starting a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Started {
    /// A new run; `done` if it finished within its first page.
    Run {
        /// Its id.
        run_id: u64,
        /// Whether it is finished already.
        done: bool,
    },
    /// Another run is in progress: at most one at a time.
    AlreadyRunning {
        /// The running run.
        run_id: u64,
    },
}

/// Outcome of one page message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Advance {
    /// The page was processed and recorded.
    Page {
        /// The run is done.
        done: bool,
        /// What the page did.
        report: PageReport,
    },
    /// Nothing to do for this message (why).
    Skipped(&'static str),
}

impl<P: ReconcilePorts> Reconciler<P> {
    /// Starts a run (`trigger`: `cron` or `admin`) and processes its first
    /// page. Runs without progress for [`RUN_STALE_AFTER_MS`] are abandoned
    /// first: their continuation was lost, and they would block every run.
    ///
    /// # Errors
    /// Only when the run could not be created or its failure not recorded;
    /// a failed first page is left to the queue like any page.
    pub async fn start(&self, trigger: &str) -> Result<Started, RunError> {
        let now = self.ports.clock().now_ms();
        self.ports
            .store()
            .abandon_stale_runs(now, RUN_STALE_AFTER_MS)
            .await?;
        let run_id = match self
            .ports
            .store()
            .create_run(trigger, self.settings.page_size, now)
            .await?
        {
            CreatedRun::Started(id) => id,
            CreatedRun::AlreadyRunning(run_id) => return Ok(Started::AlreadyRunning { run_id }),
        };
        match self.advance(run_id, 1, false).await {
            Ok(Advance::Page { done, .. }) => Ok(Started::Run { run_id, done }),
            Ok(Advance::Skipped(_)) => Ok(Started::Run {
                run_id,
                done: false,
            }),
            Err(e) => {
                // Let the queue retry from where the run got (page 1 itself, or
                // the continuation of page 1 if only that failed) like any page.
                self.record_page_error(run_id, 1, &e).await;
                let run = self.ports.store().load_run(run_id).await?;
                let (page, cursor) = run.map_or((1, String::new()), |r| {
                    (r.pages + 1, r.cursor.unwrap_or_default())
                });
                if let Err(send) = self.send_continuation(run_id, page, &cursor).await {
                    let message = format!("page {page} could not be enqueued: {send}");
                    self.ports
                        .store()
                        .fail_run(run_id, &message, self.ports.clock().now_ms())
                        .await?;
                }
                Ok(Started::Run {
                    run_id,
                    done: false,
                })
            }
        }
    }

    /// Handles a continuation from the ingest queue (`attempts`: its
    /// delivery count). A failure is recorded on the run row and returned:
    /// the consumer retries the message.
    ///
    /// # Errors
    /// The page failed; retrying the message may succeed.
    pub async fn continue_run(
        &self,
        continuation: &ReconcileContinuation,
        attempts: u32,
    ) -> Result<Advance, RunError> {
        let advanced = self
            .advance(continuation.run_id, continuation.page, attempts > 1)
            .await;
        if let Err(e) = &advanced {
            self.record_page_error(continuation.run_id, continuation.page, e)
                .await;
        }
        advanced
    }

    /// A continuation that ran out of retries: its run can never finish.
    ///
    /// # Errors
    /// When the run row could not be updated.
    pub async fn dead_lettered(
        &self,
        continuation: &ReconcileContinuation,
        error: &str,
    ) -> Result<(), StoreError> {
        let message = format!("page {} dead-lettered: {error}", continuation.page);
        self.ports
            .store()
            .fail_run(continuation.run_id, &message, self.ports.clock().now_ms())
            .await
    }

    /// Best effort: the message is retried whether or not this is recorded.
    async fn record_page_error(&self, run_id: u64, page: u32, error: &RunError) {
        let message = format!("page {page}: {error}");
        // Ignored on failure: the caller reports the page error itself.
        let _ = self
            .ports
            .store()
            .append_run_error(run_id, &message, self.ports.clock().now_ms())
            .await;
    }

    async fn send_continuation(
        &self,
        run_id: u64,
        page: u32,
        cursor: &str,
    ) -> Result<(), StoreError> {
        let next = ReconcileContinuation {
            run_id,
            page,
            cursor: cursor.to_owned(),
        };
        self.ports
            .queue()
            .send_batch(&[next.to_message()])
            .await
            .map_err(|e| StoreError {
                operation: format!("enqueueing page {page}: {}", e.operation),
                ..e
            })
    }

    /// Processes page `page` of run `run_id` if it is the run's next page,
    /// records it on the run row and enqueues the next one (or finishes the
    /// run). `redelivered`: the message failed before, maybe after its page
    /// was recorded.
    async fn advance(
        &self,
        run_id: u64,
        page: u32,
        redelivered: bool,
    ) -> Result<Advance, RunError> {
        let Some(run) = self.ports.store().load_run(run_id).await? else {
            return Ok(Advance::Skipped("unknown run"));
        };
        if run.status != RunStatus::Running {
            return Ok(Advance::Skipped("run is not running"));
        }
        if page <= run.pages {
            // A duplicate. If it is a redelivery of the latest page, the failure
            // that caused it may have been the continuation's send: resend it (a
            // duplicate of that one is skipped here without resending again).
            if redelivered && page == run.pages {
                self.send_continuation(run_id, page + 1, run.cursor.as_deref().unwrap_or(""))
                    .await?;
            }
            return Ok(Advance::Skipped("page already done"));
        }
        if page > run.pages + 1 {
            return Ok(Advance::Skipped("page out of order"));
        }
        self.process_and_record(&run, page).await
    }

    async fn process_and_record(&self, run: &RunRecord, page: u32) -> Result<Advance, RunError> {
        let settings = self.settings.with_page_size(run.page_size);
        let cursor = run.cursor.clone().unwrap_or_default();
        let started = self.ports.clock().now_ms();
        let report = self.process_page(&cursor, &settings, started).await?;
        let enqueued = merge_counts(&run.enqueued, &report.enqueued)?;
        let errors = append_errors(&run.errors, &report.errors)?;
        let (last, next_cursor) = match &report.end {
            PageEnd::Through(key) => (false, key.clone()),
            PageEnd::Last => (true, cursor),
        };
        let claim = ClaimedPage {
            page,
            cursor: next_cursor.clone(),
            objects_seen: report.objects_seen,
            documents_seen: report.documents_seen,
            stores_checked: report.stores_checked,
            swept: report.swept,
            enqueued,
            errors,
            last,
            now_ms: self.ports.clock().now_ms(),
        };
        if !self.ports.store().claim_page(run.id, &claim).await? {
            return Ok(Advance::Skipped("page recorded concurrently"));
        }
        let now = self.ports.clock().now_ms();
        self.ports.metrics().record(DataPoint::reconcile_page(
            now,
            run.id,
            &report,
            last,
            now.saturating_sub(started),
        ));
        if !last {
            self.send_continuation(run.id, page + 1, &next_cursor)
                .await?;
        }
        Ok(Advance::Page { done: last, report })
    }
}
