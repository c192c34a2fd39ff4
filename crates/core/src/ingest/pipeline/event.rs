//! Inputs of the processor state machine: requests from the queue or the
//! admin API, alarms, and the results of the step actions the Durable Object
//! performed. Plain data; deciding what an event means is `transition`'s job.

use serde::{Deserialize, Serialize};

/// One version of an R2 object, as described by the event that announced it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectVersion {
    /// R2 etag; two versions with the same etag are the same content delivery.
    pub etag: String,
    /// Object size in bytes.
    pub size: u64,
    /// Upload time, or the event notification's `eventTime`, in ms since the epoch.
    pub event_time_ms: u64,
    /// Hex SHA-256 of the content if the uploader recorded it (r2-sync does).
    pub sha256: Option<String>,
}

/// Why a run was requested (recorded in the run history).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunReason {
    /// An R2 event notification delivered through the queue.
    ObjectEvent,
    /// An operator call to the admin API (ingest, retry, delete).
    Admin,
    /// The daily reconciliation found the document missing, stale or stuck.
    Reconciliation,
}

/// A step of the pipeline: each one is performed by one action in one alarm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PipelineStep {
    /// Get the object from R2 and hash it.
    Download,
    /// Split the downloaded markdown into chunks and plan the batches.
    Chunk,
    /// Embed one batch of chunks and write its vectors (new generation).
    Embed,
    /// Tag one batch of chunks (new generation).
    Tag,
    /// Flip `documents.active_version` to the new generation.
    Commit,
    /// Remove the document, its chunks and vectors.
    Delete,
}

impl PipelineStep {
    /// Stable lowercase name, as shown by the status API.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Download => "download",
            Self::Chunk => "chunk",
            Self::Embed => "embed",
            Self::Tag => "tag",
            Self::Commit => "commit",
            Self::Delete => "delete",
        }
    }
}

/// How many batches the chunk step planned for the embed and tag steps.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchCounts {
    /// Embedding batches (each within the provider's input and token limits).
    pub embed: u32,
    /// Tagging batches (0 when tagging is switched off).
    pub tag: u32,
}

/// A step's failure as reported by the Durable Object's adapters.
///
/// `retryable` comes from the typed adapter error (`is_retryable()`), never
/// from matching on the message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct StepError {
    /// What went wrong, for people (status API, run history).
    pub message: String,
    /// Whether trying the same step again may succeed (429, 5xx, timeouts).
    pub retryable: bool,
    /// The provider was overloaded or unreachable (429, 503, 504, a timeout, a refused
    /// connection): not the document's fault, so the attempt is not counted and the step
    /// waits for minutes rather than seconds (absent in states saved before it existed).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub overloaded: bool,
}

impl StepError {
    /// A transient failure: the step is retried with backoff.
    #[must_use]
    pub fn retryable(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            retryable: true,
            overloaded: false,
        }
    }

    /// The provider is overloaded or unreachable: retried after the overload backoff,
    /// without using up the step's attempts.
    #[must_use]
    pub fn overloaded(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            retryable: true,
            overloaded: true,
        }
    }

    /// A permanent failure: the run fails at once.
    #[must_use]
    pub fn permanent(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            retryable: false,
            overloaded: false,
        }
    }
}

/// A request that starts a run (kept aside while an exclusive step runs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Request {
    /// Ingest this object version.
    Ingest {
        /// The object version to ingest.
        object: ObjectVersion,
        /// Re-run every step even if the content is unchanged.
        force: bool,
        /// Why.
        reason: RunReason,
    },
    /// Delete the document.
    Delete {
        /// Time of the delete event, in ms since the epoch.
        event_time_ms: u64,
        /// Why.
        reason: RunReason,
    },
}

impl Request {
    /// The event time used to order requests (see `transition` for the rule).
    #[must_use]
    pub fn event_time_ms(&self) -> u64 {
        match self {
            Self::Ingest { object, .. } => object.event_time_ms,
            Self::Delete { event_time_ms, .. } => *event_time_ms,
        }
    }

    /// Why the request was made.
    #[must_use]
    pub fn reason(&self) -> RunReason {
        match self {
            Self::Ingest { reason, .. } | Self::Delete { reason, .. } => *reason,
        }
    }
}

/// Everything the state machine reacts to.
///
/// Step results carry the `generation` of the run that issued the action, so
/// results of a superseded run are recognised and ignored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// An object version should be ingested (queue message or admin call).
    Requested {
        /// The object version announced.
        object_version: ObjectVersion,
        /// Re-run even if the content (SHA-256) is unchanged or already running.
        force: bool,
        /// Why.
        reason: RunReason,
    },
    /// The object was deleted (or an operator asked to remove the document).
    DeleteRequested {
        /// Time of the delete event, in ms since the epoch.
        event_time_ms: u64,
        /// Why.
        reason: RunReason,
    },
    /// The object's alarm fired.
    AlarmFired,
    /// `Action::Download` succeeded.
    Downloaded {
        /// Generation of the run that issued the action.
        generation: u64,
        /// Hex SHA-256 of the downloaded bytes.
        sha256: String,
        /// Number of bytes downloaded.
        bytes_len: u64,
    },
    /// `Action::Chunk` succeeded.
    Chunked {
        /// Generation of the run that issued the action.
        generation: u64,
        /// Number of chunks produced.
        chunk_count: u32,
        /// Batches planned for the embed and tag steps.
        batches: BatchCounts,
    },
    /// `Action::EmbedBatch { index }` succeeded.
    EmbeddedBatch {
        /// Generation of the run that issued the action.
        generation: u64,
        /// 0-based batch index.
        index: u32,
    },
    /// `Action::TagBatch { index }` succeeded.
    TaggedBatch {
        /// Generation of the run that issued the action.
        generation: u64,
        /// 0-based batch index.
        index: u32,
    },
    /// `Action::CommitGeneration` succeeded: `version` is now the active generation.
    Committed {
        /// The generation made active (equal to the run's generation).
        version: u64,
    },
    /// `Action::CommitGeneration` found the generation's vectors not all visible in the vector
    /// index yet (an index that applies writes later, like Vectorize) and wrote nothing: the
    /// commit is tried again after a wait, without counting as a failed attempt.
    VectorsPending {
        /// The generation waiting to go live (equal to the run's generation).
        version: u64,
        /// Its vectors the index shows now.
        visible: u32,
        /// Its vectors (one per chunk).
        expected: u32,
    },
    /// A step action was not performed: the provider gate (a concurrency limit shared by all
    /// documents) said to come back at `retry_at_ms`. Not an attempt; the same action is
    /// issued again then.
    StepDeferred {
        /// Generation of the run that issued the action.
        generation: u64,
        /// The step that waits.
        step: PipelineStep,
        /// Its batch index, for batch steps.
        index: Option<u32>,
        /// When to issue it again, in ms since the epoch.
        retry_at_ms: u64,
    },
    /// `Action::DeleteDocument` succeeded.
    Deleted {
        /// Generation of the delete run that issued the action.
        generation: u64,
    },
    /// A step action failed.
    StepFailed {
        /// Generation of the run that issued the action.
        generation: u64,
        /// Which step failed.
        step: PipelineStep,
        /// What went wrong and whether retrying may help.
        error: StepError,
    },
}
