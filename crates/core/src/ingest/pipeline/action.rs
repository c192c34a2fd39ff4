//! Outputs of the processor state machine: the I/O the Durable Object must
//! perform, in order. Plain data; this module never performs any of it.

use serde::{Deserialize, Serialize};

use super::event::{ObjectVersion, PipelineStep, RunReason, StepError};
use super::state::{Run, RunOutcome, StatusView, StepTiming};

/// One thing for the Durable Object to do.
///
/// Step actions (`Download`, `Chunk`, `EmbedBatch`, `TagBatch`,
/// `CommitGeneration`, `DeleteDocument`) report back with the matching
/// [`Event`](super::Event) (or `StepFailed`) carrying the same generation.
/// The others are fire-and-forget: a failure there is logged and left to the
/// daily reconciliation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Action {
    /// Set the object's (single) alarm to `at_ms`, replacing any earlier one.
    ScheduleAlarm {
        /// When the alarm should fire, in ms since the epoch.
        at_ms: u64,
    },
    /// Get the object from R2, hash it, report `Downloaded`. The bytes may be
    /// staged in the object's storage for the chunk step.
    Download {
        /// Generation of the run.
        generation: u64,
        /// The version to get (its etag can make the R2 get conditional).
        object: ObjectVersion,
    },
    /// Chunk the downloaded content (staged bytes, or the object read again),
    /// stage the chunks for this generation and report `Chunked` with the batch plan.
    Chunk {
        /// Generation of the run.
        generation: u64,
        /// The version being ingested.
        object: ObjectVersion,
        /// SHA-256 reported by the download, to check a re-read against.
        sha256: String,
    },
    /// Embed batch `index` of the staged chunks and write its vectors under
    /// ids `<document_id>:<generation>:<chunk_index>`; invisible until the commit.
    EmbedBatch {
        /// Generation of the run.
        generation: u64,
        /// 0-based batch index.
        index: u32,
    },
    /// Tag batch `index` of the staged chunks; invisible until the commit.
    TagBatch {
        /// Generation of the run.
        generation: u64,
        /// 0-based batch index.
        index: u32,
    },
    /// Phase two of the commit: write the generation's remaining rows and flip
    /// `documents.active_version` to `version` in one D1 batch. Idempotent.
    CommitGeneration {
        /// The generation to make active.
        version: u64,
    },
    /// After a commit: delete the chunks and vectors of the generation it replaced.
    DeletePreviousGeneration {
        /// The generation that was active before the commit.
        version: u64,
    },
    /// Drop the staged chunks of a generation the state now records as live:
    /// only after that record is saved, so a commit retried after a lost
    /// answer still finds what it staged.
    ReleaseStaging {
        /// The generation that went live.
        version: u64,
    },
    /// Delete chunks, vectors and staged data of a generation that never went
    /// live (superseded or failed run). The adapter must skip the delete if
    /// `documents.active_version = version` (a commit whose result was lost).
    DiscardGeneration {
        /// The abandoned generation.
        version: u64,
    },
    /// Delete the document, all its generations' chunks and vectors; report `Deleted`.
    DeleteDocument {
        /// Generation of the delete run.
        generation: u64,
    },
    /// Append a finished run to the run history table.
    RecordRun(RunRecord),
    /// Write the public status to the `documents` row (status API, admin listing).
    MarkDocumentStatus(StatusView),
}

impl Action {
    /// The step this action performs, if it is a step action.
    #[must_use]
    pub fn step(&self) -> Option<PipelineStep> {
        match self {
            Self::Download { .. } => Some(PipelineStep::Download),
            Self::Chunk { .. } => Some(PipelineStep::Chunk),
            Self::EmbedBatch { .. } => Some(PipelineStep::Embed),
            Self::TagBatch { .. } => Some(PipelineStep::Tag),
            Self::CommitGeneration { .. } => Some(PipelineStep::Commit),
            Self::DeleteDocument { .. } => Some(PipelineStep::Delete),
            Self::ScheduleAlarm { .. }
            | Self::DeletePreviousGeneration { .. }
            | Self::ReleaseStaging { .. }
            | Self::DiscardGeneration { .. }
            | Self::RecordRun(_)
            | Self::MarkDocumentStatus(_) => None,
        }
    }
}

/// A finished run, as stored in the run history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    /// Generation number of the run.
    pub generation: u64,
    /// Why it ran.
    pub reason: RunReason,
    /// The object version ingested (`None` for a delete).
    pub object: Option<ObjectVersion>,
    /// Whether it was forced.
    pub force: bool,
    /// How it ended.
    pub outcome: RunOutcome,
    /// When it was accepted.
    pub queued_at_ms: u64,
    /// When its first step was issued.
    pub started_at_ms: Option<u64>,
    /// When it ended.
    pub finished_at_ms: u64,
    /// Per-step timings and attempts.
    pub steps: Vec<StepTiming>,
    /// SHA-256 of the content downloaded.
    pub sha256: Option<String>,
    /// Chunks produced.
    pub chunk_count: Option<u32>,
    /// Attempts summed over all steps.
    pub attempts: u32,
    /// Failed attempts that were tried again (`attempts` less first tries
    /// and the final failure, if any).
    #[serde(default)]
    pub retries: u32,
    /// The last error seen.
    pub error: Option<StepError>,
}

impl RunRecord {
    /// The record of `run`, which ended at `finished_at_ms` with `outcome`.
    #[must_use]
    pub fn of(run: &Run, outcome: RunOutcome, finished_at_ms: u64) -> Self {
        Self {
            generation: run.generation,
            reason: run.request.reason(),
            object: run.object().cloned(),
            force: run.force(),
            outcome,
            queued_at_ms: run.queued_at_ms,
            started_at_ms: run.started_at_ms,
            finished_at_ms,
            steps: run.steps.clone(),
            sha256: run.sha256.clone(),
            chunk_count: run.chunk_count,
            attempts: run.total_attempts(),
            retries: run.retries,
            error: run.last_error.clone(),
        }
    }

    /// Total wall time of the run from acceptance to end, in ms.
    #[must_use]
    pub fn duration_ms(&self) -> u64 {
        self.finished_at_ms.saturating_sub(self.queued_at_ms)
    }
}
