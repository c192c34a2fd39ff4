//! The storage the drivers share, as traits: the object store (R2), the
//! ingest queue, and the clock. The Worker implements each once over its
//! binding (`crates/worker/src/store/`); tests implement them in memory.
//!
//! Owns the shapes of what crosses the boundary and the one error type the
//! adapters report. Never holds a decision: drivers decide, stores obey.

use thiserror::Error;

/// A storage call that failed (R2, D1, a queue, the processor's own storage).
///
/// `retryable` is the adapter's verdict: platform hiccups are worth another
/// attempt; a value the store will never accept is not.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{operation}: {message}")]
pub struct StoreError {
    /// What was attempted (`"R2 get"`, `"D1 chunk rows"`, …).
    pub operation: String,
    /// What went wrong, as the platform said it.
    pub message: String,
    /// Whether the same call may succeed later.
    pub retryable: bool,
}

impl StoreError {
    /// A transient failure of `operation`.
    #[must_use]
    pub fn transient(operation: impl Into<String>, message: impl ToString) -> Self {
        Self {
            operation: operation.into(),
            message: message.to_string(),
            retryable: true,
        }
    }

    /// A failure of `operation` that repeating will not cure.
    #[must_use]
    pub fn permanent(operation: impl Into<String>, message: impl ToString) -> Self {
        Self {
            operation: operation.into(),
            message: message.to_string(),
            retryable: false,
        }
    }
}

/// What the object store knows about one object, without its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectHead {
    /// The object key.
    pub key: String,
    /// R2 etag (unquoted); a new upload always gets a new one.
    pub etag: String,
    /// Size in bytes.
    pub size: u64,
    /// Upload time, ms since the epoch.
    pub uploaded_ms: u64,
    /// The `sha256` custom metadata, when the uploader recorded it.
    pub sha256: Option<String>,
}

/// The answer to [`ObjectStore::get`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ObjectRead {
    /// The object and its bytes (at most the `max_bytes` asked for).
    Found {
        /// The version that was read.
        head: ObjectHead,
        /// Its content.
        bytes: Vec<u8>,
    },
    /// The object is larger than `max_bytes`; its body was not read.
    TooLarge(ObjectHead),
    /// No object under that key.
    Missing,
}

/// One page of a listing in key order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObjectPage {
    /// Objects after the cursor, in key order (UTF-8 byte order).
    pub objects: Vec<ObjectHead>,
    /// More objects follow the last one.
    pub truncated: bool,
}

/// The document bucket (R2).
#[allow(async_fn_in_trait)]
pub trait ObjectStore {
    /// The object's metadata, `None` when absent.
    async fn head(&self, key: &str) -> Result<Option<ObjectHead>, StoreError>;
    /// The object's bytes, unless it is larger than `max_bytes` (checked
    /// before the body is read, so an oversized object never reaches memory).
    async fn get(&self, key: &str, max_bytes: u64) -> Result<ObjectRead, StoreError>;
    /// Up to `limit` objects with keys after `start_after` (`""`: from the start).
    async fn list(&self, start_after: &str, limit: u32) -> Result<ObjectPage, StoreError>;
}

/// The ingest queue: JSON messages for the consumer.
#[allow(async_fn_in_trait)]
pub trait IngestQueue {
    /// Sends the messages (at most `QUEUE_SEND_BATCH_MAX` per call) as one batch.
    async fn send_batch(&self, messages: &[serde_json::Value]) -> Result<(), StoreError>;
}

/// Time, passed in: std's clocks panic on wasm.
pub trait Clock {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;
}

/// How much a log line matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Normal progress.
    Info,
    /// Something went wrong and was handled.
    Warn,
    /// Something went wrong that an operator may need to look at.
    Error,
}

/// Structured log lines from the drivers (the Worker writes them as JSON to
/// the console; tests collect them). Logging never fails.
pub trait EventLog {
    /// Writes one line: `fields` is a JSON object with at least `event`.
    fn log(&self, level: Level, fields: serde_json::Value);
}
