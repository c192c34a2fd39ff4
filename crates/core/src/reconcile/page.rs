//! One page of a run: list the bucket after the cursor, read the document
//! rows of the same key range, count the stores of the ready ones, plan,
//! claim the rows, enqueue the commands, sweep leftover generations.
//!
//! Bounded by the page size: one listing, a few store queries and one claim
//! per page, whatever the bucket's size. Never touches the run row.

use super::driver::{ReconcilePorts, Reconciler, RunError};
use super::store::{DocumentRead, LeftoverGeneration, ReconcileStore, VectorCounting};
use super::sweep::{MAX_SWEPT_VECTOR_IDS_PER_PAGE, SWEEP_GRACE_MS};
use super::{
    count_reasons, failed_keys, page_end, plan_page, store_probes, sweep_targets, vectors_settled,
    DocumentRow, PageEnd, PageFacts, PlannedCommand, Reason, ReconcileSettings, StoreCounts,
    StoreProbe, QUEUE_SEND_BATCH_MAX,
};
use crate::document::keys::vector_id;
use crate::index::VectorIndex;
use crate::operations::metrics::{DataPoint, MetricKind};
use crate::shared::storage::{IngestQueue, ObjectStore};
use std::collections::{BTreeMap, HashMap};

/// Rows read per page: twice the objects, so a range with a few more rows
/// than objects (tombstones, documents gone) still ends at R2's horizon
/// instead of cutting the page short; only a range of mostly gone documents
/// ends the page early.
fn rows_limit(page_size: u32) -> u32 {
    page_size.saturating_mul(2)
}

/// Most ids looked up in the index per page when counting by ids: bounds one
/// page's `getByIds` calls (the Vectorize adapter sends
/// [`crate::index::VECTORIZE_MAX_IDS_PER_CALL`] ids per call, so 50 calls).
pub const MAX_VECTOR_IDS_PER_PAGE: usize = 5_000;

/// What a page did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageReport {
    /// Where it ended.
    pub end: PageEnd,
    /// Objects judged.
    pub objects_seen: u32,
    /// Rows judged.
    pub documents_seen: u32,
    /// Ready documents whose stores were compared.
    pub stores_checked: u32,
    /// Leftover generations removed.
    pub swept: u32,
    /// Commands actually enqueued, per reason.
    pub enqueued: BTreeMap<&'static str, u32>,
    /// Problems that did not stop the page (they go on the run row).
    pub errors: Vec<String>,
}

// A page as a data point: reconciliation knows what a page did and fills
// the point; metrics owns only its shape.
impl DataPoint {
    /// Page `page` of reconciliation run `run_id`, done in `duration_ms`.
    #[must_use]
    pub fn reconcile_page(
        at_ms: u64,
        run_id: u64,
        report: &PageReport,
        last: bool,
        duration_ms: u64,
    ) -> Self {
        Self {
            outcome: if last { "last" } else { "page" }.into(),
            duration_ms: duration_ms as f64,
            items: f64::from(report.objects_seen),
            enqueued: f64::from(report.enqueued.values().sum::<u32>()),
            ..Self::new(at_ms, MetricKind::Reconcile, format!("run {run_id}"))
        }
    }
}

fn through(end: &PageEnd) -> Option<&str> {
    match end {
        PageEnd::Through(key) => Some(key),
        PageEnd::Last => None,
    }
}

impl<P: ReconcilePorts> Reconciler<P> {
    /// Processes the page after `cursor` with the run's `settings`.
    ///
    /// # Errors
    /// A store that failed before the page's commands were claimed (nothing
    /// was enqueued: the page can be retried as a whole).
    pub async fn process_page(
        &self,
        cursor: &str,
        settings: &ReconcileSettings,
        now_ms: u64,
    ) -> Result<PageReport, RunError> {
        let page_size = settings.page_size;
        let mut errors = Vec::new();

        let listing = self.ports.objects().list(cursor, page_size).await?;
        let upper = if listing.truncated {
            listing.objects.last().map(|o| o.key.clone())
        } else {
            None
        };
        let limit = rows_limit(page_size);
        let reads = self
            .ports
            .store()
            .document_rows(cursor, upper.as_deref(), limit.saturating_add(1))
            .await?;
        let documents_truncated = reads.len() > limit as usize;
        let mut documents = Vec::with_capacity(reads.len());
        for read in reads.into_iter().take(limit as usize) {
            match read {
                DocumentRead::Row(row) => documents.push(row),
                DocumentRead::UnknownStatus { key, status } => {
                    errors.push(format!("document {key} has unknown status {status:?}"));
                }
            }
        }
        let objects = listing.objects;
        let end = page_end(
            cursor,
            &objects,
            listing.truncated,
            &documents,
            documents_truncated,
        )?;

        let probes = store_probes(&objects, &documents, &end);
        let stores = self
            .count_stores(&probes, &documents, now_ms, settings.vector_settle_ms)
            .await?;
        let failed_runs = if failed_keys(&documents, &end).is_empty() {
            HashMap::new()
        } else {
            self.ports
                .store()
                .failed_run_counts(cursor, through(&end))
                .await?
        };

        let observed_at = rfc3339_ms(now_ms);
        let plan = plan_page(
            &PageFacts {
                objects: &objects,
                documents: &documents,
                end: &end,
                stores: &stores,
                failed_runs: &failed_runs,
                now_ms,
                observed_at: &observed_at,
            },
            settings,
        );

        let flags = self
            .ports
            .store()
            .claim_rows(&plan.commands, now_ms)
            .await?;
        let claimed: Vec<&PlannedCommand> = plan
            .commands
            .iter()
            .zip(flags)
            .filter_map(|(command, claimed)| claimed.then_some(command))
            .collect();
        let sent = self.send_commands(&claimed, &mut errors).await;
        let swept = self.sweep(&documents, &end, now_ms, &mut errors).await;
        Ok(PageReport {
            end,
            objects_seen: plan.objects_seen,
            documents_seen: plan.documents_seen,
            stores_checked: plan.stores_checked,
            swept,
            enqueued: count_reasons(sent),
            errors,
        })
    }

    /// Chunk and vector counts of the probed documents. Documents whose
    /// vectors may still be settling are not looked up (and count as
    /// consistent): the rules skip their vector check anyway.
    async fn count_stores(
        &self,
        probes: &[StoreProbe],
        documents: &[DocumentRow],
        now_ms: u64,
        settle_ms: u64,
    ) -> Result<HashMap<i64, StoreCounts>, RunError> {
        if probes.is_empty() {
            return Ok(HashMap::new());
        }
        let chunks = self.ports.store().chunk_counts(probes).await?;
        let settled: Vec<StoreProbe> = probes
            .iter()
            .filter(|p| {
                documents
                    .iter()
                    .any(|d| d.id == p.document_id && vectors_settled(d, now_ms, settle_ms))
            })
            .copied()
            .collect();
        let vectors = if settled.is_empty() {
            HashMap::new()
        } else {
            match self.vector_counting {
                VectorCounting::Store => self.ports.store().vector_counts(&settled).await?,
                VectorCounting::ByIds => self.count_vectors_by_ids(&settled).await?,
            }
        };
        Ok(probes
            .iter()
            .map(|probe| {
                let counts = StoreCounts {
                    chunks: chunks.get(&probe.document_id).copied().unwrap_or(0),
                    // Not counted (settling, or beyond the lookup budget): assume consistent.
                    vectors: vectors
                        .get(&probe.document_id)
                        .copied()
                        .unwrap_or(probe.chunk_count),
                };
                (probe.document_id, counts)
            })
            .collect())
    }

    /// Looks each probe's vector ids `<document_id>:<version>:<i>` up; documents
    /// beyond [`MAX_VECTOR_IDS_PER_PAGE`] ids are left out (absent from the map).
    async fn count_vectors_by_ids(
        &self,
        probes: &[StoreProbe],
    ) -> Result<HashMap<i64, u32>, RunError> {
        let mut counts = HashMap::with_capacity(probes.len());
        let mut budget = MAX_VECTOR_IDS_PER_PAGE;
        for probe in probes {
            let wanted = probe.chunk_count as usize;
            if wanted > budget {
                continue;
            }
            budget -= wanted;
            let ids: Vec<String> = (0..probe.chunk_count)
                .map(|i| vector_id(probe.document_id, probe.version as i64, i))
                .collect();
            let found = self.ports.index().count_present(&ids).await?;
            counts.insert(probe.document_id, u32::try_from(found).unwrap_or(u32::MAX));
        }
        Ok(counts)
    }

    /// Enqueues the claimed commands in batches; returns the reasons of those
    /// sent. A failed batch is reported, not retried: its rows stay `queued`
    /// and the stuck rule re-enqueues them on a later run.
    async fn send_commands(
        &self,
        claimed: &[&PlannedCommand],
        errors: &mut Vec<String>,
    ) -> Vec<Reason> {
        let mut sent = Vec::with_capacity(claimed.len());
        for group in claimed.chunks(QUEUE_SEND_BATCH_MAX) {
            let messages: Result<Vec<_>, _> = group
                .iter()
                .map(|p| serde_json::to_value(&p.command))
                .collect();
            let outcome = match messages {
                Ok(messages) => self
                    .ports
                    .queue()
                    .send_batch(&messages)
                    .await
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            match outcome {
                Ok(()) => sent.extend(group.iter().map(|p| p.reason)),
                Err(e) => errors.push(format!(
                    "enqueueing {} command(s) failed ({e}); their rows stay queued until the stuck rule picks them up",
                    group.len()
                )),
            }
        }
        sent
    }

    /// Removes the page's leftover generations: vectors first, then chunk
    /// rows, so a generation whose vectors could not be deleted keeps its rows
    /// and is found again by the next run. Failures are reported, never fatal:
    /// the page's repairs matter more. Returns the generations removed.
    async fn sweep(
        &self,
        documents: &[DocumentRow],
        end: &PageEnd,
        now_ms: u64,
        errors: &mut Vec<String>,
    ) -> u32 {
        let targets = sweep_targets(documents, end);
        if targets.is_empty() {
            return 0;
        }
        let written_before = now_ms.saturating_sub(SWEEP_GRACE_MS);
        let leftovers = match self
            .ports
            .store()
            .leftover_generations(&targets, written_before)
            .await
        {
            Ok(leftovers) => leftovers,
            Err(e) => {
                errors.push(format!("sweep: {e}"));
                return 0;
            }
        };
        let mut budget = MAX_SWEPT_VECTOR_IDS_PER_PAGE;
        let mut cleared: Vec<LeftoverGeneration> = Vec::new();
        for generation in leftovers {
            let span = generation.span as usize;
            if span > budget {
                continue;
            }
            budget -= span;
            let ids: Vec<String> = (0..generation.span)
                .map(|i| vector_id(generation.document_id, generation.version as i64, i))
                .collect();
            // The index splits the ids into calls it accepts.
            match self.ports.index().delete_by_ids(&ids).await {
                Ok(_) => cleared.push(generation),
                Err(e) => errors.push(format!(
                    "sweep: vectors of document {} version {}: {e}",
                    generation.document_id, generation.version
                )),
            }
        }
        if cleared.is_empty() {
            return 0;
        }
        match self
            .ports
            .store()
            .delete_leftover_chunks(&cleared, written_before)
            .await
        {
            Ok(_) => u32::try_from(cleared.len()).unwrap_or(u32::MAX),
            Err(e) => {
                errors.push(format!("sweep: {e}"));
                0
            }
        }
    }
}

/// `ms` since the epoch as RFC 3339 UTC with milliseconds
/// (`2027-01-15T08:00:00.000Z`, what JavaScript's `toISOString` gives).
#[must_use]
pub fn rfc3339_ms(ms: u64) -> String {
    crate::shared::calendar::rfc3339_ms(i64::try_from(ms).unwrap_or(i64::MAX))
}
