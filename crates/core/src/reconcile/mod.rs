//! Reconciliation decisions: given one page of R2 objects and the document
//! rows of the same key range (plus store counts and failed-run counts), which
//! documents to re-enqueue and why, and where the next page starts.
//!
//! Owns the rules (missing, changed, gone, stuck, failed-retry, store
//! mismatches), the page window and the run counters. Never lists a bucket,
//! queries D1, sends a message or reads a clock: the Worker does, then asks.
//!
//! # The page window
//!
//! A run walks R2 and the `documents` table together in key order (a merge
//! join), so every key is judged once with both sides in view and the rules
//! stay disjoint. A page lists up to `page_size` objects after the cursor and
//! reads up to `page_size` rows in the same range; [`page_end`] cuts the page
//! at the smaller of the two horizons, so neither side is judged on a key the
//! other side has not reached yet. R2 lists keys in UTF-8 byte order, which is
//! also how SQLite's default `BINARY` collation and Rust's `str` compare.

mod driver;
#[cfg(test)]
mod driver_tests;
mod page;
mod rules;
mod run;
mod store;
mod sweep;

pub use driver::{ReconcilePorts, Reconciler, RunError};
pub use page::PageReport;
pub use rules::{
    content_differs, count_reasons, failed_keys, plan_page, store_probes, vectors_settled,
    PageFacts, PagePlan, PlannedCommand,
};
pub use run::{Advance, Started};
pub use store::{
    ClaimedPage, CreatedRun, DocumentRead, LeftoverGeneration, ReconcileStore, RunRecord,
    RunStatus, SweepTarget, VectorCounting,
};
pub use sweep::{sweep_targets, SWEEP_GRACE_MS};

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use thiserror::Error;

/// Largest page R2 `list` returns. Source: R2 Workers API, `list()` `limit` ≤ 1000.
pub const R2_LIST_MAX: u32 = 1_000;

/// Objects (and rows) per page unless `RECONCILE_PAGE_SIZE` says otherwise:
/// one R2 list, three D1 queries and one D1 batch per page keep an invocation
/// far below the CPU, subrequest and wall-time limits.
pub const DEFAULT_PAGE_SIZE: u32 = 500;

/// A queued/processing document untouched for this long is stuck.
pub const DEFAULT_STUCK_AFTER_HOURS: u32 = 24;

/// A failed document is retried by reconciliation while it has fewer failed
/// runs than this since its last success: a permanent error (a binary file)
/// fails every time and must not be retried forever.
pub const DEFAULT_MAX_FAILED_RUNS: u32 = 3;

/// A `running` run without progress for this long is abandoned (its
/// continuation was lost); the next trigger marks it failed and starts anew.
pub const RUN_STALE_AFTER_MS: u64 = 60 * 60 * 1_000;

/// Messages per `sendBatch`. Source: Cloudflare Queues limits, 100 messages
/// (and 256 KB) per batch.
pub const QUEUE_SEND_BATCH_MAX: usize = 100;

/// Most error messages kept on a run row (the rest are only logged).
pub const MAX_RUN_ERRORS: usize = 50;

const HOUR_MS: u64 = 60 * 60 * 1_000;

/// A document committed within this window is not checked against the
/// vector index: Vectorize applies writes asynchronously, so a fresh commit
/// could look like missing vectors and be re-enqueued for nothing (the commit
/// itself waits for its vectors, but a read elsewhere may still lag).
pub use crate::index::VECTOR_SETTLE_MS;

/// Why reconciliation enqueued a command; the string is the command's `reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reason {
    /// An object with no document row (or only a `deleted` tombstone).
    Missing,
    /// An object whose content differs from what the document serves.
    Changed,
    /// A document whose object is no longer in the bucket.
    Gone,
    /// A document queued or processing for longer than the stuck threshold.
    Stuck,
    /// A failed document with reconciliation retries left.
    FailedRetry,
    /// A ready document whose vector count differs from its chunk count.
    VectorsMismatch,
    /// A ready document whose chunk rows differ from its chunk count (or
    /// that has no active generation at all).
    ChunksMismatch,
}

impl Reason {
    /// Every reason, in a stable order.
    pub const ALL: [Reason; 7] = [
        Reason::Missing,
        Reason::Changed,
        Reason::Gone,
        Reason::Stuck,
        Reason::FailedRetry,
        Reason::VectorsMismatch,
        Reason::ChunksMismatch,
    ];

    /// The command reason, e.g. `reconcile:missing`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Missing => "reconcile:missing",
            Self::Changed => "reconcile:changed",
            Self::Gone => "reconcile:gone",
            Self::Stuck => "reconcile:stuck",
            Self::FailedRetry => "reconcile:failed-retry",
            Self::VectorsMismatch => "reconcile:vectors-mismatch",
            Self::ChunksMismatch => "reconcile:chunks-mismatch",
        }
    }
}

/// Status of a document row (`documents.status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DocumentStatus {
    /// Waiting for its processor.
    Queued,
    /// Its processor is running a step.
    Processing,
    /// Serving its active generation.
    Ready,
    /// The last run failed.
    Failed,
    /// A tombstone: the object was deleted.
    Deleted,
}

impl DocumentStatus {
    /// Parses the column value; `None` for anything else.
    #[must_use]
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "queued" => Some(Self::Queued),
            "processing" => Some(Self::Processing),
            "ready" => Some(Self::Ready),
            "failed" => Some(Self::Failed),
            "deleted" => Some(Self::Deleted),
            _ => None,
        }
    }
}

/// One object of an R2 listing: the shared object-store head.
pub type ListedObject = crate::shared::storage::ObjectHead;

/// The columns of a `documents` row reconciliation needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentRow {
    /// Row id (vector ids start with it).
    pub id: i64,
    /// R2 key.
    pub key: String,
    /// Current status.
    pub status: DocumentStatus,
    /// Content hash of the active generation.
    pub sha256: Option<String>,
    /// R2 etag of the active generation's object.
    pub etag: Option<String>,
    /// Last change of the row (ms since the epoch).
    pub updated_at_ms: u64,
    /// Chunks of the active generation.
    pub chunk_count: u32,
    /// The live generation, if any.
    pub active_version: Option<u64>,
    /// The highest generation ever started (a tombstone keeps it).
    pub latest_version: u64,
}

/// What the stores hold for one document's active generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StoreCounts {
    /// Chunk rows in D1.
    pub chunks: u32,
    /// Vectors in the vector index.
    pub vectors: u32,
}

/// A ready document whose stores the Worker must count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct StoreProbe {
    /// Document row id.
    pub document_id: i64,
    /// Its active generation.
    pub version: u64,
    /// How many chunks (and vectors) it should have.
    pub chunk_count: u32,
}

/// The knobs of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReconcileSettings {
    /// Objects (and rows) per page, 1..=1000.
    pub page_size: u32,
    /// A queued/processing row older than this is stuck.
    pub stuck_after_ms: u64,
    /// Failed runs since the last success after which reconciliation gives up.
    pub max_failed_runs: u32,
    /// A document committed less recently than this is not checked against
    /// the vector index: [`VECTOR_SETTLE_MS`] for an index that applies
    /// writes asynchronously (Vectorize), 0 for a synchronous one (D1-exact).
    pub vector_settle_ms: u64,
}

impl Default for ReconcileSettings {
    fn default() -> Self {
        Self {
            page_size: DEFAULT_PAGE_SIZE,
            stuck_after_ms: u64::from(DEFAULT_STUCK_AFTER_HOURS) * HOUR_MS,
            max_failed_runs: DEFAULT_MAX_FAILED_RUNS,
            vector_settle_ms: VECTOR_SETTLE_MS,
        }
    }
}

impl ReconcileSettings {
    /// Sets how long a commit's vectors may take to become visible (0: the
    /// index applies writes before answering).
    #[must_use]
    pub fn with_vector_settle_ms(mut self, ms: u64) -> Self {
        self.vector_settle_ms = ms;
        self
    }

    /// Sets the page size, clamped to what one R2 list returns.
    #[must_use]
    pub fn with_page_size(mut self, size: u32) -> Self {
        self.page_size = size.clamp(1, R2_LIST_MAX);
        self
    }
}

/// Why a page cannot be judged.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ReconcileError {
    /// R2 said there is more but returned no key to continue after.
    #[error("R2 listing after {cursor:?} is truncated but returned no objects")]
    EmptyTruncatedListing {
        /// Where the page started.
        cursor: String,
    },
    /// The run row's `enqueued` column is not a JSON object of counts.
    #[error("run counters are not a JSON object of counts: {0}")]
    BadCounters(String),
}

/// Where a page stops.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PageEnd {
    /// The page covers keys up to and including this one; the next page
    /// starts after it.
    Through(String),
    /// The page covers every remaining key: the run ends with it.
    Last,
}

impl PageEnd {
    fn covers(&self, key: &str) -> bool {
        match self {
            Self::Through(end) => key <= end.as_str(),
            Self::Last => true,
        }
    }
}

/// Where a page ends. `objects` is one R2 listing after the cursor (and
/// `objects_truncated` whether R2 has more); `documents` the rows after the
/// cursor up to the listing's last key when truncated, at most a page, and
/// `documents_truncated` whether more rows exist in that range.
pub fn page_end(
    cursor: &str,
    objects: &[ListedObject],
    objects_truncated: bool,
    documents: &[DocumentRow],
    documents_truncated: bool,
) -> Result<PageEnd, ReconcileError> {
    let object_horizon = if objects_truncated {
        let last = objects
            .iter()
            .map(|o| o.key.as_str())
            .max()
            .ok_or_else(|| ReconcileError::EmptyTruncatedListing {
                cursor: cursor.to_owned(),
            })?;
        Some(last)
    } else {
        None
    };
    let row_horizon = if documents_truncated {
        documents.iter().map(|d| d.key.as_str()).max()
    } else {
        None
    };
    Ok(match (object_horizon, row_horizon) {
        (None, None) => PageEnd::Last,
        (Some(k), None) | (None, Some(k)) => PageEnd::Through(k.to_owned()),
        (Some(a), Some(b)) => PageEnd::Through(a.min(b).to_owned()),
    })
}

/// Adds a page's `{ reason: count }` to the run's (the `enqueued` column).
pub fn merge_counts(
    run_counts: &str,
    page: &BTreeMap<&'static str, u32>,
) -> Result<String, ReconcileError> {
    let text = if run_counts.trim().is_empty() {
        "{}"
    } else {
        run_counts
    };
    let mut merged: BTreeMap<String, u64> =
        serde_json::from_str(text).map_err(|e| ReconcileError::BadCounters(e.to_string()))?;
    for (reason, n) in page {
        *merged.entry((*reason).to_owned()).or_insert(0) += u64::from(*n);
    }
    serde_json::to_string(&merged).map_err(|e| ReconcileError::BadCounters(e.to_string()))
}

/// Appends a page's error messages to the run's (the `errors` column),
/// keeping at most [`MAX_RUN_ERRORS`].
pub fn append_errors(run_errors: &str, page: &[String]) -> Result<String, ReconcileError> {
    let text = if run_errors.trim().is_empty() {
        "[]"
    } else {
        run_errors
    };
    let mut errors: Vec<String> =
        serde_json::from_str(text).map_err(|e| ReconcileError::BadCounters(e.to_string()))?;
    errors.extend(page.iter().cloned());
    errors.truncate(MAX_RUN_ERRORS);
    serde_json::to_string(&errors).map_err(|e| ReconcileError::BadCounters(e.to_string()))
}

#[cfg(test)]
mod tests;
