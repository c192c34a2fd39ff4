//! The persisted state of one DocumentProcessor (one per R2 key) and the
//! public status derived from it. Saved as JSON in the Durable Object's
//! storage after every step; changing its shape means bumping `SCHEMA_VERSION`.

use serde::{Deserialize, Serialize};

use super::event::{BatchCounts, ObjectVersion, PipelineStep, Request, RunReason, StepError};

/// Version of the persisted JSON shape of [`ProcessorState`].
pub const SCHEMA_VERSION: u32 = 1;

/// Where the processor is. `Queued` → `Downloading` → `Chunking` →
/// `Embedding` → `Tagging` → `Committing` → `Ready`, or `Failed` / `Deleting` → `Deleted`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "stage", rename_all = "snake_case")]
pub enum Stage {
    /// Nothing was ever requested for this key.
    Idle,
    /// A run was accepted and waits for its first alarm.
    Queued,
    /// The download step is due or running.
    Downloading,
    /// The chunk step is due or running (the issue's `Chunked` state).
    Chunking,
    /// Embedding: `done` of `total` batches finished.
    Embedding {
        /// Batches finished.
        done: u32,
        /// Batches planned.
        total: u32,
    },
    /// Tagging: `done` of `total` batches finished.
    Tagging {
        /// Batches finished.
        done: u32,
        /// Batches planned.
        total: u32,
    },
    /// The commit (active-version flip) is due or running.
    Committing,
    /// The last run finished; the live generation serves queries.
    Ready,
    /// The last run failed at `step`; the previous live generation (if any) still serves.
    Failed {
        /// The step whose attempts ran out, or that failed permanently.
        step: PipelineStep,
    },
    /// The delete step is due or running.
    Deleting,
    /// The document was removed.
    Deleted,
}

impl Stage {
    /// The step this stage runs, if a run is in progress.
    #[must_use]
    pub fn step(&self) -> Option<PipelineStep> {
        match self {
            Self::Queued | Self::Downloading => Some(PipelineStep::Download),
            Self::Chunking => Some(PipelineStep::Chunk),
            Self::Embedding { .. } => Some(PipelineStep::Embed),
            Self::Tagging { .. } => Some(PipelineStep::Tag),
            Self::Committing => Some(PipelineStep::Commit),
            Self::Deleting => Some(PipelineStep::Delete),
            Self::Idle | Self::Ready | Self::Failed { .. } | Self::Deleted => None,
        }
    }

    /// Whether a run is in progress.
    #[must_use]
    pub fn is_running(&self) -> bool {
        self.step().is_some()
    }

    /// Whether the running step writes the live document (commit, delete):
    /// requests arriving meanwhile wait for it instead of superseding it.
    #[must_use]
    pub fn is_exclusive(&self) -> bool {
        matches!(self, Self::Committing | Self::Deleting)
    }
}

/// The generation that currently serves queries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveGeneration {
    /// Generation number (`documents.active_version`, `chunks.version`).
    pub version: u64,
    /// The object version it was built from (updated by unchanged-content runs).
    pub object: ObjectVersion,
    /// SHA-256 of the content it was built from.
    pub sha256: String,
    /// Number of chunks in it.
    pub chunk_count: u32,
}

/// An issued step action whose result has not come back yet. An alarm that
/// finds one counts that attempt as failed (its invocation died).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct InFlight {
    /// When the action was issued.
    pub issued_at_ms: u64,
    /// When the watchdog alarm armed with the action fires.
    pub deadline_ms: u64,
}

/// When a step started and finished, and how many attempts it took.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepTiming {
    /// The step.
    pub step: PipelineStep,
    /// When its first attempt (first batch) was issued.
    pub started_at_ms: u64,
    /// When it succeeded, failed for good, or was abandoned.
    pub finished_at_ms: Option<u64>,
    /// Attempts issued, summed over all batches of the step.
    pub attempts: u32,
}

impl StepTiming {
    /// Wall time of the step in ms, once finished.
    #[must_use]
    pub fn duration_ms(&self) -> Option<u64> {
        self.finished_at_ms
            .map(|end| end.saturating_sub(self.started_at_ms))
    }
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunOutcome {
    /// A new generation was committed and is live.
    Committed,
    /// Same SHA-256 as the live generation: nothing re-embedded.
    Unchanged,
    /// A step ran out of attempts or failed permanently.
    Failed,
    /// A newer request (or a delete) replaced the run.
    Superseded,
    /// The document was deleted.
    Deleted,
}

impl RunOutcome {
    /// The run's status as stored in `processing_runs.status`.
    #[must_use]
    pub fn run_status(self) -> &'static str {
        match self {
            Self::Committed => "ready",
            Self::Unchanged => "unchanged",
            Self::Failed => "failed",
            Self::Superseded => "superseded",
            Self::Deleted => "deleted",
        }
    }
}

/// One run: an ingestion or a deletion, with its own generation number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Run {
    /// Generation number; results carrying another one are ignored.
    pub generation: u64,
    /// What was requested.
    pub request: Request,
    /// When the run was accepted.
    pub queued_at_ms: u64,
    /// When its first step was issued.
    pub started_at_ms: Option<u64>,
    /// When the run last changed.
    pub updated_at_ms: u64,
    /// When it ended.
    pub finished_at_ms: Option<u64>,
    /// Attempts of the current step (batch) so far; reset when it succeeds.
    pub attempts: u32,
    /// Failed attempts this run tried again (absent in states saved before
    /// it was counted).
    #[serde(default)]
    pub retries: u32,
    /// Attempts of the current step in a row that found the provider overloaded (they do not
    /// count in `attempts`); reset when a step succeeds.
    #[serde(default)]
    pub overloads: u32,
    /// When the first of those overloaded attempts failed.
    #[serde(default)]
    pub overloaded_since_ms: Option<u64>,
    /// The issued action awaiting its result, if any.
    pub in_flight: Option<InFlight>,
    /// The next attempt must not be issued before this time (backoff).
    pub not_before_ms: u64,
    /// The last error seen in this run.
    pub last_error: Option<StepError>,
    /// SHA-256 of the downloaded content.
    pub sha256: Option<String>,
    /// Size of the downloaded content.
    pub bytes_len: Option<u64>,
    /// Chunks produced by the chunk step.
    pub chunk_count: Option<u32>,
    /// Batches planned by the chunk step.
    pub batches: Option<BatchCounts>,
    /// Batches finished so far.
    pub batches_done: BatchCounts,
    /// Per-step timings, in order.
    pub steps: Vec<StepTiming>,
    /// How the run ended, once it has.
    pub outcome: Option<RunOutcome>,
}

impl Run {
    /// A fresh run for `request`, accepted at `now_ms`.
    #[must_use]
    pub fn new(generation: u64, request: Request, now_ms: u64) -> Self {
        Self {
            generation,
            request,
            queued_at_ms: now_ms,
            started_at_ms: None,
            updated_at_ms: now_ms,
            finished_at_ms: None,
            attempts: 0,
            retries: 0,
            overloads: 0,
            overloaded_since_ms: None,
            in_flight: None,
            not_before_ms: now_ms,
            last_error: None,
            sha256: None,
            bytes_len: None,
            chunk_count: None,
            batches: None,
            batches_done: BatchCounts::default(),
            steps: Vec::new(),
            outcome: None,
        }
    }

    /// The object version being ingested (`None` for a delete run).
    #[must_use]
    pub fn object(&self) -> Option<&ObjectVersion> {
        match &self.request {
            Request::Ingest { object, .. } => Some(object),
            Request::Delete { .. } => None,
        }
    }

    /// Whether the run was forced (re-run even if unchanged).
    #[must_use]
    pub fn force(&self) -> bool {
        matches!(self.request, Request::Ingest { force: true, .. })
    }

    /// Attempts summed over all steps.
    #[must_use]
    pub fn total_attempts(&self) -> u32 {
        self.steps.iter().map(|s| s.attempts).sum()
    }
}

/// Status as the API shows it: exactly these five values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PublicStatus {
    /// Accepted, not started.
    Queued,
    /// A step is running or due.
    Processing,
    /// The last run finished and the document is served.
    Ready,
    /// The last run failed.
    Failed,
    /// The document was deleted.
    Deleted,
}

impl PublicStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [Self; 5] = [
        Self::Queued,
        Self::Processing,
        Self::Ready,
        Self::Failed,
        Self::Deleted,
    ];

    /// The status named `name` (as [`Self::as_str`] writes it).
    #[must_use]
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// Lowercase name, as stored in `documents.status`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Processing => "processing",
            Self::Ready => "ready",
            Self::Failed => "failed",
            Self::Deleted => "deleted",
        }
    }
}

/// Progress through a batched step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// Batches finished.
    pub done: u32,
    /// Batches planned.
    pub total: u32,
}

/// The public view of a processor's state (status API, `documents` row).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusView {
    /// One of queued, processing, ready, failed, deleted.
    pub status: PublicStatus,
    /// The current step (processing) or the failed step (failed).
    pub step: Option<PipelineStep>,
    /// Batch progress while embedding or tagging.
    pub progress: Option<Progress>,
    /// Attempts of the current step.
    pub attempts: u32,
    /// Last error of the current or last run.
    pub last_error: Option<StepError>,
    /// Generation of the current or last run.
    pub generation: u64,
    /// When the current or last run was accepted.
    pub queued_at_ms: Option<u64>,
    /// When its first step was issued.
    pub started_at_ms: Option<u64>,
    /// When it last changed.
    pub updated_at_ms: Option<u64>,
    /// When it ended.
    pub finished_at_ms: Option<u64>,
    /// The generation serving queries (`documents.active_version`).
    pub active_version: Option<u64>,
    /// Chunks in the serving generation.
    pub chunk_count: Option<u32>,
}

/// The persisted state could not be read back.
#[derive(Debug, thiserror::Error)]
pub enum StateDecodeError {
    /// Not JSON, or not the expected shape.
    #[error("processor state is not valid JSON of the expected shape: {0}")]
    Malformed(#[from] serde_json::Error),
    /// Written by another schema version; a migration is needed.
    #[error("processor state has schema version {found}, this build reads {supported}")]
    UnsupportedSchema {
        /// The version found in storage.
        found: u64,
        /// The version this build reads.
        supported: u32,
    },
}

/// Everything the DocumentProcessor persists between events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessorState {
    /// Shape version of this JSON ([`SCHEMA_VERSION`]).
    pub schema_version: u32,
    /// Where the processor is.
    pub stage: Stage,
    /// Highest generation number handed out; never decreases.
    pub last_generation: u64,
    /// The generation serving queries, if any.
    pub live: Option<LiveGeneration>,
    /// The current run, or the last finished one.
    pub run: Option<Run>,
    /// A request that arrived during an exclusive step (commit, delete), started after it.
    pub deferred: Option<Request>,
    /// Event time of the newest request accepted; older requests are stale.
    pub newest_event_ms: Option<u64>,
}

impl Default for ProcessorState {
    fn default() -> Self {
        Self::new()
    }
}

impl ProcessorState {
    /// The state of a processor that has never seen an event.
    #[must_use]
    pub fn new() -> Self {
        Self {
            schema_version: SCHEMA_VERSION,
            stage: Stage::Idle,
            last_generation: 0,
            live: None,
            run: None,
            deferred: None,
            newest_event_ms: None,
        }
    }

    /// Reads a state saved with [`ProcessorState::to_json`], checking its schema version.
    pub fn from_json(json: &str) -> Result<Self, StateDecodeError> {
        let value: serde_json::Value = serde_json::from_str(json)?;
        let found = value
            .get("schema_version")
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0);
        if found != u64::from(SCHEMA_VERSION) {
            return Err(StateDecodeError::UnsupportedSchema {
                found,
                supported: SCHEMA_VERSION,
            });
        }
        Ok(serde_json::from_value(value)?)
    }

    /// Serialises the state for the Durable Object's storage.
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string(self)
    }

    /// The public status, or `None` if nothing was ever requested for this key.
    #[must_use]
    pub fn status_view(&self) -> Option<StatusView> {
        let (status, step, progress) = match &self.stage {
            Stage::Idle => return None,
            Stage::Queued => (PublicStatus::Queued, None, None),
            Stage::Embedding { done, total } | Stage::Tagging { done, total } => (
                PublicStatus::Processing,
                self.stage.step(),
                Some(Progress {
                    done: *done,
                    total: *total,
                }),
            ),
            Stage::Downloading | Stage::Chunking | Stage::Committing | Stage::Deleting => {
                (PublicStatus::Processing, self.stage.step(), None)
            }
            Stage::Ready => (PublicStatus::Ready, None, None),
            Stage::Failed { step } => (PublicStatus::Failed, Some(*step), None),
            Stage::Deleted => (PublicStatus::Deleted, None, None),
        };
        let run = self.run.as_ref();
        Some(StatusView {
            status,
            step,
            progress,
            attempts: run.map_or(0, |r| r.attempts),
            last_error: run.and_then(|r| r.last_error.clone()),
            generation: run.map_or(0, |r| r.generation),
            queued_at_ms: run.map(|r| r.queued_at_ms),
            started_at_ms: run.and_then(|r| r.started_at_ms),
            updated_at_ms: run.map(|r| r.updated_at_ms),
            finished_at_ms: run.and_then(|r| r.finished_at_ms),
            active_version: self.live.as_ref().map(|l| l.version),
            chunk_count: self.live.as_ref().map(|l| l.chunk_count),
        })
    }

    /// Why the current or last run was started.
    #[must_use]
    pub fn run_reason(&self) -> Option<RunReason> {
        self.run.as_ref().map(|r| r.request.reason())
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn public_statuses_parse_back_from_their_names() {
        for status in PublicStatus::ALL {
            assert_eq!(PublicStatus::parse(status.as_str()), Some(status));
        }
        assert_eq!(PublicStatus::parse("weird"), None);
        assert_eq!(RunOutcome::Committed.run_status(), "ready");
        assert_eq!(RunOutcome::Superseded.run_status(), "superseded");
    }

    use super::*;

    #[test]
    fn json_round_trip_and_schema_check() {
        let mut state = ProcessorState::new();
        state.stage = Stage::Embedding { done: 2, total: 9 };
        state.last_generation = 4;
        state.run = Some(Run::new(
            4,
            Request::Delete {
                event_time_ms: 5,
                reason: RunReason::Admin,
            },
            10,
        ));
        let json = state.to_json().unwrap();
        assert!(json.contains("\"stage\":\"embedding\""), "{json}");
        assert_eq!(ProcessorState::from_json(&json).unwrap(), state);

        let future = json.replace("\"schema_version\":1", "\"schema_version\":2");
        assert!(matches!(
            ProcessorState::from_json(&future),
            Err(StateDecodeError::UnsupportedSchema { found: 2, .. })
        ));
        assert!(matches!(
            ProcessorState::from_json("{\"schema_version\":1}"),
            Err(StateDecodeError::Malformed(_))
        ));
        assert!(ProcessorState::from_json("not json").is_err());
    }

    #[test]
    fn status_maps_every_stage_to_the_five_public_values() {
        let cases = [
            (Stage::Queued, PublicStatus::Queued, None),
            (
                Stage::Downloading,
                PublicStatus::Processing,
                Some(PipelineStep::Download),
            ),
            (
                Stage::Chunking,
                PublicStatus::Processing,
                Some(PipelineStep::Chunk),
            ),
            (
                Stage::Embedding { done: 1, total: 3 },
                PublicStatus::Processing,
                Some(PipelineStep::Embed),
            ),
            (
                Stage::Tagging { done: 0, total: 2 },
                PublicStatus::Processing,
                Some(PipelineStep::Tag),
            ),
            (
                Stage::Committing,
                PublicStatus::Processing,
                Some(PipelineStep::Commit),
            ),
            (
                Stage::Deleting,
                PublicStatus::Processing,
                Some(PipelineStep::Delete),
            ),
            (Stage::Ready, PublicStatus::Ready, None),
            (
                Stage::Failed {
                    step: PipelineStep::Tag,
                },
                PublicStatus::Failed,
                Some(PipelineStep::Tag),
            ),
            (Stage::Deleted, PublicStatus::Deleted, None),
        ];
        for (stage, status, step) in cases {
            let state = ProcessorState {
                stage: stage.clone(),
                ..ProcessorState::new()
            };
            let view = state.status_view().unwrap();
            assert_eq!(view.status, status, "{stage:?}");
            assert_eq!(view.step, step, "{stage:?}");
        }
        let embedding = ProcessorState {
            stage: Stage::Embedding { done: 1, total: 3 },
            ..ProcessorState::new()
        };
        assert_eq!(
            embedding.status_view().unwrap().progress,
            Some(Progress { done: 1, total: 3 })
        );
        assert_eq!(ProcessorState::new().status_view(), None);
        let names: Vec<&str> = [
            PublicStatus::Queued,
            PublicStatus::Processing,
            PublicStatus::Ready,
            PublicStatus::Failed,
            PublicStatus::Deleted,
        ]
        .iter()
        .map(|s| s.as_str())
        .collect();
        assert_eq!(
            names,
            ["queued", "processing", "ready", "failed", "deleted"]
        );
    }
}
