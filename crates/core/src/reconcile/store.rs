//! What reconciliation needs from D1, as a trait: the document rows of a key
//! range, the counts it compares, the row claims, the run rows and the sweep
//! of leftover generations. The Worker implements it over D1
//! (`crates/worker/src/store/d1_reconcile.rs`); the tests in memory.
//!
//! Owns the shapes only. Never decides: every rule is in the driver or in
//! the pure functions of this module's parent.

use super::{DocumentRow, PlannedCommand, StoreProbe};
use crate::shared::storage::StoreError;
use std::collections::HashMap;

/// How the vectors of a page's ready documents are counted; which one
/// depends on the configured index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VectorCounting {
    /// One grouped count in the store ([`ReconcileStore::vector_counts`]):
    /// the D1-exact index keeps its vectors next to the rows.
    Store,
    /// Looking the deterministic ids up in the index (`get_by_ids`):
    /// Vectorize has no count by metadata.
    ByIds,
}

/// One row of a key range as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DocumentRead {
    /// A row the rules can judge.
    Row(DocumentRow),
    /// A row whose status is none the service writes (reported, not judged).
    UnknownStatus {
        /// Its key.
        key: String,
        /// The status column as stored.
        status: String,
    },
}

impl DocumentRead {
    /// The row's key.
    #[must_use]
    pub fn key(&self) -> &str {
        match self {
            Self::Row(row) => &row.key,
            Self::UnknownStatus { key, .. } => key,
        }
    }
}

/// Status of a run row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStatus {
    /// Pages left.
    Running,
    /// Every page done.
    Done,
    /// Ended by an error or abandoned.
    Failed,
}

impl RunStatus {
    /// The column value.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Done => "done",
            Self::Failed => "failed",
        }
    }

    /// Parses the column value.
    #[must_use]
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "running" => Some(Self::Running),
            "done" => Some(Self::Done),
            "failed" => Some(Self::Failed),
            _ => None,
        }
    }
}

/// One run as stored (`reconcile_runs`).
#[derive(Debug, Clone, PartialEq)]
pub struct RunRecord {
    /// Run id.
    pub id: u64,
    /// `cron` or `admin`.
    pub trigger: String,
    /// Where it stands.
    pub status: RunStatus,
    /// Start (ms since the epoch).
    pub started_at_ms: u64,
    /// End, once done or failed.
    pub finished_at_ms: Option<u64>,
    /// Objects judged so far.
    pub objects_seen: u64,
    /// Document rows judged so far.
    pub documents_seen: u64,
    /// Ready documents whose stores were compared.
    pub stores_checked: u64,
    /// Leftover generations removed.
    pub swept: u64,
    /// Pages completed.
    pub pages: u32,
    /// Last key of the last completed page.
    pub cursor: Option<String>,
    /// Objects (and rows) per page.
    pub page_size: u32,
    /// `{ reason: count }` as JSON text.
    pub enqueued: String,
    /// Error messages as a JSON array text.
    pub errors: String,
    /// Last progress.
    pub updated_at_ms: Option<u64>,
}

impl RunRecord {
    /// What `GET /admin/reconcile/runs` shows: counters parsed, duration added.
    #[must_use]
    pub fn summary(&self) -> serde_json::Value {
        let parse =
            |text: &str, empty: serde_json::Value| serde_json::from_str(text).unwrap_or(empty);
        serde_json::json!({
            "id": self.id,
            "trigger": self.trigger,
            "status": self.status.as_str(),
            "started_at": self.started_at_ms,
            "finished_at": self.finished_at_ms,
            "duration_ms": self.finished_at_ms.map(|f| f.saturating_sub(self.started_at_ms)),
            "objects_seen": self.objects_seen,
            "documents_seen": self.documents_seen,
            "stores_checked": self.stores_checked,
            "swept": self.swept,
            "pages": self.pages,
            "page_size": self.page_size,
            "enqueued": parse(&self.enqueued, serde_json::json!({})),
            "errors": parse(&self.errors, serde_json::json!([])),
        })
    }
}

/// Outcome of [`ReconcileStore::create_run`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreatedRun {
    /// The new run's id.
    Started(u64),
    /// Another run is running (at most one at a time).
    AlreadyRunning(u64),
}

/// What one completed page adds to its run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedPage {
    /// The page number; recorded only if the run has `page - 1` pages.
    pub page: u32,
    /// The page's last key.
    pub cursor: String,
    /// Objects judged by the page.
    pub objects_seen: u32,
    /// Rows judged by the page.
    pub documents_seen: u32,
    /// Ready documents compared by the page.
    pub stores_checked: u32,
    /// Leftover generations the page removed.
    pub swept: u32,
    /// The run's merged `{ reason: count }`.
    pub enqueued: String,
    /// The run's errors with the page's appended.
    pub errors: String,
    /// The last page: the run is done.
    pub last: bool,
    /// Now.
    pub now_ms: u64,
}

/// A document whose generations below `below_version` are garbage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct SweepTarget {
    /// Document row id.
    pub document_id: i64,
    /// Versions strictly below this one may be swept: the active version of
    /// a live document, one past the latest of a deleted one.
    pub below_version: u64,
}

/// A generation left behind: chunk rows of a version that is not live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeftoverGeneration {
    /// Document row id.
    pub document_id: i64,
    /// Its version.
    pub version: u64,
    /// Chunk rows it still has.
    pub chunk_rows: u32,
    /// One past its highest chunk index: its vector ids are
    /// `<document_id>:<version>:<0..span>`.
    pub span: u32,
}

/// Reconciliation's D1 side.
#[allow(async_fn_in_trait)]
pub trait ReconcileStore {
    /// Rows with keys after `after` (and up to `through`, when given), in key
    /// order, at most `limit`.
    async fn document_rows(
        &self,
        after: &str,
        through: Option<&str>,
        limit: u32,
    ) -> Result<Vec<DocumentRead>, StoreError>;

    /// Failed runs since the last successful one, by key, for the failed
    /// documents with keys after `after` (and up to `through`).
    async fn failed_run_counts(
        &self,
        after: &str,
        through: Option<&str>,
    ) -> Result<HashMap<String, u32>, StoreError>;

    /// Chunk rows of each probe's generation, by document id.
    async fn chunk_counts(&self, probes: &[StoreProbe]) -> Result<HashMap<i64, u32>, StoreError>;

    /// Vectors of each probe's generation held next to the rows (the
    /// D1-exact index), by document id.
    async fn vector_counts(&self, probes: &[StoreProbe]) -> Result<HashMap<i64, u32>, StoreError>;

    /// Marks each command's document `queued` now if its row is as the page
    /// read it (`expected_updated_at_ms`; `None`: insert a row unless one
    /// exists). One flag per command, in order: `true` when claimed.
    async fn claim_rows(
        &self,
        commands: &[PlannedCommand],
        now_ms: u64,
    ) -> Result<Vec<bool>, StoreError>;

    /// Generations of the targets below their `below_version`, counting only
    /// chunk rows written before `written_before_ms`.
    async fn leftover_generations(
        &self,
        targets: &[SweepTarget],
        written_before_ms: u64,
    ) -> Result<Vec<LeftoverGeneration>, StoreError>;

    /// Deletes the chunk rows (and by triggers their FTS and tag rows) of the
    /// generations, re-checking at delete time that each is still not live
    /// (below the active version, or of a deleted document) and written
    /// before `written_before_ms`. Returns the rows deleted.
    async fn delete_leftover_chunks(
        &self,
        generations: &[LeftoverGeneration],
        written_before_ms: u64,
    ) -> Result<u32, StoreError>;

    /// Marks running runs without progress for `stale_after_ms` as failed.
    async fn abandon_stale_runs(&self, now_ms: u64, stale_after_ms: u64) -> Result<(), StoreError>;

    /// Creates a running run unless one is running.
    async fn create_run(
        &self,
        trigger: &str,
        page_size: u32,
        now_ms: u64,
    ) -> Result<CreatedRun, StoreError>;

    /// One run.
    async fn load_run(&self, run_id: u64) -> Result<Option<RunRecord>, StoreError>;

    /// Records a page if it is the next one of a running run; `false` when it
    /// was recorded already (it must not count twice).
    async fn claim_page(&self, run_id: u64, page: &ClaimedPage) -> Result<bool, StoreError>;

    /// Appends an error message to a run (kept to the first 50).
    async fn append_run_error(
        &self,
        run_id: u64,
        message: &str,
        now_ms: u64,
    ) -> Result<(), StoreError>;

    /// Ends a running run as failed with a message.
    async fn fail_run(&self, run_id: u64, message: &str, now_ms: u64) -> Result<(), StoreError>;

    /// The latest runs, newest first.
    async fn latest_runs(&self, limit: u32) -> Result<Vec<RunRecord>, StoreError>;
}
