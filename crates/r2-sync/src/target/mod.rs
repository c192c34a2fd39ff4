//! Where documents go: the [`SyncTarget`] trait and its two implementations,
//! an S3-compatible bucket (R2's S3 API) and the service's ingest API. A
//! target only moves bytes and lists state; it never decides what to sync.

use std::fmt;
use std::future::Future;
use std::path::Path;

use serde::Serialize;
use sha2::{Digest, Sha256};

pub mod ingest_api;
pub mod s3;

/// Custom metadata name carrying the content hash (`x-amz-meta-sha256`); the Worker reads it
/// under the same name (`portfolio_core::document::keys::SHA256_METADATA`).
pub use portfolio_core::document::keys::SHA256_METADATA;

/// An object as listed by a target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteObject {
    pub key: String,
    pub size: u64,
    /// Cache validator only (S3 ETags are not content hashes for multipart).
    pub etag: Option<String>,
    /// Known when the listing carries it (ingest API) or after a HEAD.
    pub sha256: Option<String>,
}

/// One file to store under `key`; `sha256` is what planning saw, and the
/// target verifies the bytes it sends still hash to it.
#[derive(Debug, Clone, Copy)]
pub struct PutRequest<'a> {
    pub key: &'a str,
    pub path: &'a Path,
    pub sha256: &'a str,
    pub size: u64,
}

impl PutRequest<'_> {
    /// Reads the whole file and checks it still hashes to what planning saw.
    pub async fn read_verified(self) -> Result<Vec<u8>, TargetError> {
        let bytes = tokio::fs::read(self.path).await.map_err(|e| {
            TargetError::new(
                TargetErrorKind::Permanent,
                "put",
                Some(self.key),
                e.to_string(),
            )
        })?;
        self.verify_content(&hex::encode(Sha256::digest(&bytes)))?;
        Ok(bytes)
    }

    /// Checks that the bytes sent hash to `actual` = what planning saw.
    pub fn verify_content(self, actual: &str) -> Result<(), TargetError> {
        if actual.eq_ignore_ascii_case(self.sha256) {
            Ok(())
        } else {
            Err(TargetError::new(
                TargetErrorKind::ContentChanged,
                "put",
                Some(self.key),
                "file changed while syncing; re-run to pick up the new content",
            ))
        }
    }
}

/// The deletion guard both targets apply: nothing outside the sync's prefix is ever deleted.
pub fn guard_delete(prefix: &str, key: &str) -> Result<(), TargetError> {
    if crate::key::is_within_prefix(prefix, key) {
        Ok(())
    } else {
        Err(TargetError::new(
            TargetErrorKind::Permanent,
            "delete",
            Some(key),
            format!("refusing to delete outside prefix {prefix:?}"),
        ))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutOutcome {
    pub etag: Option<String>,
    pub bytes: u64,
    pub multipart: bool,
}

/// Describes the target in reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TargetInfo {
    /// `s3` or `ingest-api`.
    pub kind: &'static str,
    /// Endpoint + bucket, or the API base URL (never credentials).
    pub location: String,
    pub prefix: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetErrorKind {
    /// Worth retrying: 5xx, 429, timeouts, dropped connections.
    Transient,
    /// Retrying cannot help (4xx, bad request, refused operation).
    Permanent,
    /// Credentials missing, wrong or not allowed (401/403).
    Auth,
    /// The local file changed between hashing and sending; re-run.
    ContentChanged,
}

/// A failed target operation, with what a person needs to act on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetError {
    pub kind: TargetErrorKind,
    /// `list`, `head`, `put`, `delete`.
    pub op: &'static str,
    pub key: Option<String>,
    pub status: Option<u16>,
    pub message: String,
}

impl TargetError {
    pub fn new(
        kind: TargetErrorKind,
        op: &'static str,
        key: Option<&str>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            kind,
            op,
            key: key.filter(|k| !k.is_empty()).map(str::to_owned),
            status: None,
            message: message.into(),
        }
    }

    #[must_use]
    pub fn with_status(mut self, status: u16) -> Self {
        self.status = Some(status);
        self
    }

    pub fn is_retryable(&self) -> bool {
        self.kind == TargetErrorKind::Transient
    }
}

impl fmt::Display for TargetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ", self.op)?;
        if let Some(key) = &self.key {
            write!(f, "{key} ")?;
        }
        write!(f, "failed")?;
        if let Some(status) = self.status {
            write!(f, " (HTTP {status})")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for TargetError {}

/// A place documents are synced to. Keys are full keys (prefix included).
pub trait SyncTarget: Send + Sync {
    /// Namespace of this target's entries in the state cache.
    fn cache_id(&self) -> String;

    fn info(&self) -> TargetInfo;

    /// Every object under the prefix.
    fn list(&self) -> impl Future<Output = Result<Vec<RemoteObject>, TargetError>> + Send;

    /// The object's current ETag and stored SHA-256, or `None` if it is gone.
    fn head(
        &self,
        key: &str,
    ) -> impl Future<Output = Result<Option<RemoteObject>, TargetError>> + Send;

    /// Stores the file atomically: either the whole new content becomes
    /// visible or the old object stays.
    fn put(
        &self,
        request: PutRequest<'_>,
    ) -> impl Future<Output = Result<PutOutcome, TargetError>> + Send;

    /// Deletes `key`; refuses keys outside the prefix.
    fn delete(&self, key: &str) -> impl Future<Output = Result<(), TargetError>> + Send;
}
