//! The rules: how the keys of a page pair R2 objects with document rows, what
//! each pair is judged (missing, changed, gone, stuck, failed-retry, store
//! mismatch), and the commands a page plans from those verdicts
//! ([`plan_page`]). Pure, like the rest of `reconcile`'s decisions.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::{
    DocumentRow, DocumentStatus, ListedObject, PageEnd, Reason, ReconcileSettings, StoreCounts,
    StoreProbe,
};
use crate::ingest::message::{IngestCommand, ObjectVersion};

/// How a key pairs up within a page.
#[derive(Debug, Clone, Copy)]
struct Pair<'a> {
    object: Option<&'a ListedObject>,
    row: Option<&'a DocumentRow>,
}

fn pairs<'a>(
    objects: &'a [ListedObject],
    documents: &'a [DocumentRow],
    end: &PageEnd,
) -> BTreeMap<&'a str, Pair<'a>> {
    let mut map: BTreeMap<&str, Pair<'_>> = BTreeMap::new();
    for object in objects.iter().filter(|o| end.covers(&o.key)) {
        map.entry(object.key.as_str())
            .or_insert(Pair {
                object: None,
                row: None,
            })
            .object = Some(object);
    }
    for row in documents.iter().filter(|d| end.covers(&d.key)) {
        map.entry(row.key.as_str())
            .or_insert(Pair {
                object: None,
                row: None,
            })
            .row = Some(row);
    }
    map
}

/// Whether the object differs from what the document serves: the uploader's
/// SHA-256 against the served content's when both are known (an etag changes
/// on a re-upload of the same bytes, a multipart etag is no content hash),
/// else the etags.
#[must_use]
pub fn content_differs(object: &ListedObject, row: &DocumentRow) -> bool {
    match (object.sha256.as_deref(), row.sha256.as_deref()) {
        (Some(a), Some(b)) => !a.trim().eq_ignore_ascii_case(b.trim()),
        _ => row.etag.as_deref() != Some(object.etag.as_str()),
    }
}

/// Everything known about one page, for [`plan_page`].
#[derive(Debug, Clone, Copy)]
pub struct PageFacts<'a> {
    /// The R2 listing of the page.
    pub objects: &'a [ListedObject],
    /// The document rows of the page.
    pub documents: &'a [DocumentRow],
    /// Where the page ends.
    pub end: &'a PageEnd,
    /// Store counts of the probed documents, by document id.
    pub stores: &'a HashMap<i64, StoreCounts>,
    /// Failed runs since the last success, by key (failed documents only).
    pub failed_runs: &'a HashMap<String, u32>,
    /// Now (ms since the epoch).
    pub now_ms: u64,
    /// Now as RFC 3339, the event time of the commands: reconciliation
    /// observed the object now, so its request is never older than what the
    /// processor has seen (which would make it stale and ignored).
    pub observed_at: &'a str,
}

/// A command to enqueue and the row change that claims it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedCommand {
    /// Why.
    pub reason: Reason,
    /// The message for the ingest queue.
    pub command: IngestCommand,
    /// The row is marked `queued` only if its `updated_at` still has this
    /// value (`None`: no row yet, insert one): a row someone changed since the
    /// page was read is being handled already, and a redelivered page finds
    /// its rows claimed and enqueues nothing twice.
    pub expected_updated_at_ms: Option<u64>,
}

/// The outcome of one page.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PagePlan {
    /// Commands to enqueue, in key order.
    pub commands: Vec<PlannedCommand>,
    /// Objects in the page.
    pub objects_seen: u32,
    /// Document rows in the page (tombstones excluded).
    pub documents_seen: u32,
    /// Ready documents whose stores were compared.
    pub stores_checked: u32,
}

impl PagePlan {
    /// Commands per reason.
    #[must_use]
    pub fn counts(&self) -> BTreeMap<&'static str, u32> {
        count_reasons(self.commands.iter().map(|c| c.reason))
    }
}

/// Counts reasons into a `{ reason: count }` map.
pub fn count_reasons(reasons: impl IntoIterator<Item = Reason>) -> BTreeMap<&'static str, u32> {
    let mut counts = BTreeMap::new();
    for reason in reasons {
        *counts.entry(reason.as_str()).or_insert(0) += 1;
    }
    counts
}

fn is_stale(row: &DocumentRow, now_ms: u64, settings: &ReconcileSettings) -> bool {
    row.updated_at_ms < now_ms.saturating_sub(settings.stuck_after_ms)
}

/// Whether the document's vectors have had `settle_ms` to become visible
/// (see [`VECTOR_SETTLE_MS`]); `updated_at` is the commit time of a ready row.
#[must_use]
pub fn vectors_settled(row: &DocumentRow, now_ms: u64, settle_ms: u64) -> bool {
    row.updated_at_ms.saturating_add(settle_ms) <= now_ms
}

/// What one key needs, before store counts are known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Consistent,
    Enqueue(Reason),
    /// Ready and unchanged: compare the stores.
    CheckStores,
}

fn judge_ready(object: &ListedObject, row: &DocumentRow) -> Verdict {
    if content_differs(object, row) {
        Verdict::Enqueue(Reason::Changed)
    } else if row.active_version.is_none() {
        Verdict::Enqueue(Reason::ChunksMismatch)
    } else {
        Verdict::CheckStores
    }
}

fn judge(pair: Pair<'_>, facts: &PageFacts<'_>, settings: &ReconcileSettings) -> Verdict {
    use DocumentStatus as S;
    match (pair.object, pair.row) {
        (None, None) => Verdict::Consistent,
        (Some(_), None) => Verdict::Enqueue(Reason::Missing),
        (Some(object), Some(row)) => match row.status {
            // A re-created object: the tombstone is history, not a document.
            S::Deleted => Verdict::Enqueue(Reason::Missing),
            S::Queued | S::Processing => {
                if is_stale(row, facts.now_ms, settings) {
                    Verdict::Enqueue(Reason::Stuck)
                } else {
                    // In flight: its processor reports back.
                    Verdict::Consistent
                }
            }
            S::Failed => {
                if object.uploaded_ms > row.updated_at_ms {
                    // Uploaded after the failure: a new version nobody processed.
                    Verdict::Enqueue(Reason::Changed)
                } else if facts.failed_runs.get(&row.key).copied().unwrap_or(0)
                    < settings.max_failed_runs
                {
                    Verdict::Enqueue(Reason::FailedRetry)
                } else {
                    Verdict::Consistent
                }
            }
            S::Ready => judge_ready(object, row),
        },
        (None, Some(row)) => match row.status {
            S::Deleted => Verdict::Consistent,
            S::Queued | S::Processing if !is_stale(row, facts.now_ms, settings) => {
                Verdict::Consistent
            }
            S::Queued | S::Processing | S::Ready | S::Failed => Verdict::Enqueue(Reason::Gone),
        },
    }
}

/// The ready documents of the page whose stores must be counted before
/// [`plan_page`] can judge them.
#[must_use]
pub fn store_probes(
    objects: &[ListedObject],
    documents: &[DocumentRow],
    end: &PageEnd,
) -> Vec<StoreProbe> {
    pairs(objects, documents, end)
        .into_values()
        .filter_map(|pair| match (pair.object, pair.row) {
            (Some(object), Some(row))
                if row.status == DocumentStatus::Ready
                    && judge_ready(object, row) == Verdict::CheckStores =>
            {
                Some(StoreProbe {
                    document_id: row.id,
                    version: row.active_version?,
                    chunk_count: row.chunk_count,
                })
            }
            _ => None,
        })
        .collect()
}

/// Keys of the failed documents of the page (their failed runs must be counted).
#[must_use]
pub fn failed_keys<'a>(documents: &'a [DocumentRow], end: &PageEnd) -> BTreeSet<&'a str> {
    documents
        .iter()
        .filter(|d| d.status == DocumentStatus::Failed && end.covers(&d.key))
        .map(|d| d.key.as_str())
        .collect()
}

fn command_for(
    reason: Reason,
    key: &str,
    object: Option<&ListedObject>,
    observed_at: &str,
) -> IngestCommand {
    match object {
        // Forced: reconciliation only acts on a discrepancy, which the
        // processor's duplicate check (same etag as its live generation)
        // would otherwise swallow.
        Some(object) => IngestCommand::Process {
            key: key.to_owned(),
            object: Some(ObjectVersion {
                etag: Some(object.etag.clone()),
                size: Some(object.size),
                event_time: Some(observed_at.to_owned()),
            }),
            force: true,
            reason: reason.as_str().to_owned(),
        },
        None => IngestCommand::Delete {
            key: key.to_owned(),
            event_time: Some(observed_at.to_owned()),
            reason: reason.as_str().to_owned(),
        },
    }
}

/// Judges every key of the page.
#[must_use]
pub fn plan_page(facts: &PageFacts<'_>, settings: &ReconcileSettings) -> PagePlan {
    let mut plan = PagePlan::default();
    for (key, pair) in pairs(facts.objects, facts.documents, facts.end) {
        if pair.object.is_some() {
            plan.objects_seen += 1;
        }
        if pair
            .row
            .is_some_and(|r| r.status != DocumentStatus::Deleted)
        {
            plan.documents_seen += 1;
        }
        let reason = match judge(pair, facts, settings) {
            Verdict::Consistent => None,
            Verdict::Enqueue(reason) => Some(reason),
            Verdict::CheckStores => {
                let counts = pair
                    .row
                    .and_then(|row| facts.stores.get(&row.id).map(|c| (row, c)));
                counts.and_then(|(row, counts)| {
                    plan.stores_checked += 1;
                    if counts.vectors != row.chunk_count
                        && vectors_settled(row, facts.now_ms, settings.vector_settle_ms)
                    {
                        Some(Reason::VectorsMismatch)
                    } else if counts.chunks != row.chunk_count {
                        Some(Reason::ChunksMismatch)
                    } else {
                        None
                    }
                })
            }
        };
        if let Some(reason) = reason {
            plan.commands.push(PlannedCommand {
                reason,
                command: command_for(reason, key, pair.object, facts.observed_at),
                expected_updated_at_ms: pair.row.map(|r| r.updated_at_ms),
            });
        }
    }
    plan
}
