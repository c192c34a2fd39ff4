//! Messages on the ingest queue: R2 event notifications and the service's own.
//!
//! Owns turning a queue message body into an [`IngestCommand`] or a
//! reconciliation continuation (or a typed reason why it never can be one)
//! and the queue's retry delays. Never touches the queue itself: acking,
//! retrying and dead-lettering are the Worker's.

use crate::document::keys::DocumentKey;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use thiserror::Error;

/// Queue messages may be delayed at most 12 hours.
/// Source: Cloudflare Queues limits, "delaySeconds" maximum of 43,200 s.
pub const QUEUE_MAX_DELAY_SECONDS: u32 = 43_200;

/// First retry delay of a message whose hand-off failed.
pub const RETRY_BASE_DELAY_SECONDS: u32 = 10;

/// Longest delay we choose ourselves between two deliveries (15 minutes):
/// long enough to ride out a provider outage, short enough to heal the same hour.
pub const RETRY_MAX_DELAY_SECONDS: u32 = 900;

/// What a message asks the ingestion pipeline to do with one document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum IngestCommand {
    /// (Re)process the object stored under `key`.
    Process {
        /// R2 object key of the document.
        key: String,
        /// The object version the event was about, when the sender knew it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        object: Option<ObjectVersion>,
        /// Process even if the content hash is unchanged.
        #[serde(default)]
        force: bool,
        /// Why the message was sent (`r2:PutObject`, `admin`, `reconcile:missing`…).
        reason: String,
    },
    /// Remove the document, its chunks and its vectors.
    Delete {
        /// R2 object key of the document.
        key: String,
        /// RFC 3339 time of the deletion, when the sender knew it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        event_time: Option<String>,
        /// Why the message was sent.
        reason: String,
    },
}

impl IngestCommand {
    /// The R2 key the command is about.
    #[must_use]
    pub fn key(&self) -> &str {
        match self {
            Self::Process { key, .. } | Self::Delete { key, .. } => key,
        }
    }

    /// Why the command was sent.
    #[must_use]
    pub fn reason(&self) -> &str {
        match self {
            Self::Process { reason, .. } | Self::Delete { reason, .. } => reason,
        }
    }
}

/// The version of an R2 object an event refers to, as R2 reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ObjectVersion {
    /// R2 ETag (not a content hash for multipart uploads).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    /// Object size in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// RFC 3339 time of the event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_time: Option<String>,
}

/// Why a message body can never become a command. Every variant is permanent:
/// redelivering the same body cannot succeed, so the consumer dead-letters it.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MessageError {
    /// The body is not a JSON object.
    #[error("message body is not a JSON object (got {found})")]
    NotAnObject {
        /// JSON type that was found instead.
        found: &'static str,
    },
    /// Neither an R2 notification (`action`) nor a service message (`type`).
    #[error("message has neither an `action` (R2 event) nor a `type` (service message)")]
    UnknownShape,
    /// An R2 notification action this service does not handle.
    #[error("unsupported R2 event action `{0}`")]
    UnsupportedAction(String),
    /// A service message type this service does not know.
    #[error("unknown message type `{0}`")]
    UnknownType(String),
    /// A required field is missing or has the wrong type.
    #[error("field `{field}` is missing or not a {expected}")]
    BadField {
        /// Dotted path of the field (`object.key`).
        field: &'static str,
        /// Expected JSON type.
        expected: &'static str,
    },
    /// The object key is empty or otherwise unusable.
    #[error("invalid object key {key:?}: {why}")]
    InvalidKey {
        /// The key as received.
        key: String,
        /// What is wrong with it.
        why: String,
    },
}

/// Continuation of a reconciliation run: process page `page` of run `run_id`,
/// starting after key `cursor`. Sent by the reconciler to itself through the
/// ingest queue, so a large bucket is worked through page by page, each page
/// in its own invocation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReconcileContinuation {
    /// `reconcile_runs.id`.
    pub run_id: u64,
    /// 1-based number of the page to process.
    pub page: u32,
    /// The last key of the previous page (`""` before the first page).
    pub cursor: String,
}

impl ReconcileContinuation {
    /// The queue message body: `{ "type": "reconcile", run_id, page, cursor }`.
    #[must_use]
    pub fn to_message(&self) -> Value {
        serde_json::json!({
            "type": "reconcile",
            "run_id": self.run_id,
            "page": self.page,
            "cursor": self.cursor,
        })
    }
}

/// Anything the ingest queue carries: a command for one document's processor,
/// or a reconciliation page (which never reaches a processor).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueMessage {
    /// For the document's `DocumentProcessor`.
    Document(IngestCommand),
    /// For the reconciler.
    Reconcile(ReconcileContinuation),
}

/// Parses an ingest queue message body: a reconciliation continuation
/// (`type: "reconcile"`) or anything [`parse_ingest_message`] accepts.
pub fn parse_queue_message(body: &Value) -> Result<QueueMessage, MessageError> {
    let Some(map) = body
        .as_object()
        .filter(|m| m.get("type").and_then(Value::as_str) == Some("reconcile"))
    else {
        return parse_ingest_message(body).map(QueueMessage::Document);
    };
    let run_id = map
        .get("run_id")
        .and_then(Value::as_u64)
        .filter(|id| *id > 0)
        .ok_or(MessageError::BadField {
            field: "run_id",
            expected: "positive integer",
        })?;
    let page = map
        .get("page")
        .and_then(Value::as_u64)
        .and_then(|p| u32::try_from(p).ok())
        .filter(|p| *p > 0)
        .ok_or(MessageError::BadField {
            field: "page",
            expected: "positive integer",
        })?;
    let cursor = match map.get("cursor") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(c)) => c.clone(),
        Some(_) => {
            return Err(MessageError::BadField {
                field: "cursor",
                expected: "string",
            })
        }
    };
    Ok(QueueMessage::Reconcile(ReconcileContinuation {
        run_id,
        page,
        cursor,
    }))
}

/// R2 event-notification actions that create or replace an object.
const R2_WRITE_ACTIONS: [&str; 3] = ["PutObject", "CopyObject", "CompleteMultipartUpload"];
/// R2 event-notification actions that remove an object.
const R2_DELETE_ACTIONS: [&str; 2] = ["DeleteObject", "LifecycleDeletion"];

/// Parses a queue message body into a command.
///
/// Accepts R2 event notifications (`{ action, bucket, object: { key, size, eTag }, eventTime }`)
/// and the service's own messages (`{ type: "process" | "delete" | "retry", key, reason?, force?, object? }`;
/// `retry` is a `process` that says so in its reason).
pub fn parse_ingest_message(body: &Value) -> Result<IngestCommand, MessageError> {
    let Value::Object(map) = body else {
        return Err(MessageError::NotAnObject {
            found: json_type(body),
        });
    };
    if let Some(action) = map.get("action") {
        let action = action.as_str().ok_or(MessageError::BadField {
            field: "action",
            expected: "string",
        })?;
        return parse_r2_event(action, map);
    }
    if let Some(kind) = map.get("type") {
        let kind = kind.as_str().ok_or(MessageError::BadField {
            field: "type",
            expected: "string",
        })?;
        return parse_service_message(kind, map);
    }
    Err(MessageError::UnknownShape)
}

fn parse_r2_event(
    action: &str,
    map: &serde_json::Map<String, Value>,
) -> Result<IngestCommand, MessageError> {
    let object = map
        .get("object")
        .and_then(Value::as_object)
        .ok_or(MessageError::BadField {
            field: "object",
            expected: "object",
        })?;
    let key = object
        .get("key")
        .and_then(Value::as_str)
        .ok_or(MessageError::BadField {
            field: "object.key",
            expected: "string",
        })?;
    let key = checked_key(key)?;
    let reason = format!("r2:{action}");
    let event_time = map
        .get("eventTime")
        .and_then(Value::as_str)
        .map(str::to_owned);
    if R2_DELETE_ACTIONS.contains(&action) {
        return Ok(IngestCommand::Delete {
            key,
            event_time,
            reason,
        });
    }
    if !R2_WRITE_ACTIONS.contains(&action) {
        return Err(MessageError::UnsupportedAction(action.to_owned()));
    }
    let version = ObjectVersion {
        etag: object
            .get("eTag")
            .and_then(Value::as_str)
            .map(str::to_owned),
        size: object.get("size").and_then(Value::as_u64),
        event_time,
    };
    Ok(IngestCommand::Process {
        key,
        object: Some(version),
        force: false,
        reason,
    })
}

fn parse_service_message(
    kind: &str,
    map: &serde_json::Map<String, Value>,
) -> Result<IngestCommand, MessageError> {
    let key = map
        .get("key")
        .and_then(Value::as_str)
        .ok_or(MessageError::BadField {
            field: "key",
            expected: "string",
        })?;
    let key = checked_key(key)?;
    let reason = match map.get("reason") {
        None | Some(Value::Null) => kind.to_owned(),
        Some(Value::String(r)) => r.clone(),
        Some(_) => {
            return Err(MessageError::BadField {
                field: "reason",
                expected: "string",
            })
        }
    };
    let force = match map.get("force") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            return Err(MessageError::BadField {
                field: "force",
                expected: "boolean",
            })
        }
    };
    // The sender may say which object version it saw (reconciliation does,
    // dated when it looked), so a command round-trips through JSON unchanged.
    let object = match map.get("object") {
        None | Some(Value::Null) => None,
        Some(value) => Some(
            serde_json::from_value::<ObjectVersion>(value.clone()).map_err(|_| {
                MessageError::BadField {
                    field: "object",
                    expected: "object { etag?, size?, event_time? }",
                }
            })?,
        ),
    };
    match kind {
        "process" | "retry" => Ok(IngestCommand::Process {
            key,
            object,
            force,
            reason,
        }),
        "delete" => Ok(IngestCommand::Delete {
            key,
            event_time: match map.get("event_time") {
                None | Some(Value::Null) => None,
                Some(Value::String(t)) => Some(t.clone()),
                Some(_) => {
                    return Err(MessageError::BadField {
                        field: "event_time",
                        expected: "string",
                    })
                }
            },
            reason,
        }),
        other => Err(MessageError::UnknownType(other.to_owned())),
    }
}

/// A key the service can address: valid by the same rules as the admin
/// API's keys and already in their normal form. An object stored under
/// `a//b.md` or `./x.md` (possible through the S3 API) would otherwise get a
/// document row no admin route can reach.
fn checked_key(key: &str) -> Result<String, MessageError> {
    let invalid = |why: String| MessageError::InvalidKey {
        key: key.to_owned(),
        why,
    };
    let normal = DocumentKey::parse(key).map_err(|e| invalid(e.to_string()))?;
    if normal.as_str() != key {
        return Err(invalid(format!(
            "not in normal form (the service would address it as {:?}); upload it under that key",
            normal.as_str()
        )));
    }
    Ok(key.to_owned())
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Delay before redelivering a message whose hand-off failed on its
/// `attempts`-th delivery (1-based): 10 s, 20 s, 40 s, … capped at 15 minutes.
#[must_use]
pub fn retry_delay_seconds(attempts: u32) -> u32 {
    let exponent = attempts.saturating_sub(1).min(16);
    RETRY_BASE_DELAY_SECONDS
        .saturating_mul(1 << exponent)
        .min(RETRY_MAX_DELAY_SECONDS)
        .min(QUEUE_MAX_DELAY_SECONDS)
}

#[cfg(test)]
mod tests;
