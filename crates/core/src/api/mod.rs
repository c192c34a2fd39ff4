//! Shapes of the HTTP API that the site's chat client and operators rely on.
//!
//! Owns the JSON bodies, the error envelope, the route table (`routes`) and
//! keyset paging (`paging`); never decides status codes of platform failures
//! (the Worker maps errors in one place).

pub mod health;
pub mod paging;
pub mod resolve;
pub mod routes;

pub mod access;
pub mod feedback;
pub mod mcp;
pub mod openai;
pub mod ui_stream;

use crate::operations::deployment::WorkerVersion;
use serde::{Deserialize, Serialize};

/// The error envelope every non-2xx JSON response carries:
/// `{ "error": { "code", "message" } }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The error itself.
    pub error: ErrorDetail,
}

/// A machine-readable code plus a sentence a person can act on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// Stable, snake_case code (e.g. `not_found`, `unauthorized`).
    pub code: String,
    /// Human-readable explanation.
    pub message: String,
}

impl ErrorBody {
    /// Builds the envelope from a code and a message.
    #[must_use]
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            error: ErrorDetail {
                code: code.into(),
                message: message.into(),
            },
        }
    }
}

/// Whether one platform binding is present in the Worker's environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BindingStatus {
    /// Binding name as declared in `wrangler.jsonc` (e.g. `DB`).
    pub name: String,
    /// What kind of binding it is (`d1`, `r2`, `queue`, `durable_object`, `vectorize`).
    pub kind: String,
    /// True when the Worker can see it.
    pub present: bool,
}

/// Which provider answers each role, as configured by environment variables.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderStatus {
    /// Embedding provider (`offline`, `openai`, `workers-ai`).
    pub embedding: String,
    /// Chat provider (`offline`, `openai`, `workers-ai`).
    pub chat: String,
    /// Vector index implementation (`d1`, `vectorize`).
    pub vector_index: String,
    /// Embedding dimension the index is built for.
    pub dimensions: u32,
}

/// `GET /api/health`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthReport {
    /// `ok` when every required binding is present and the configuration
    /// is valid, `degraded` otherwise.
    pub status: String,
    /// Deployment environment name (`local`, `dev`, `staging`, `production`).
    pub environment: String,
    /// The Worker version answering (the `version_metadata` binding: id,
    /// tag, timestamp; each null when unknown). During a gradual deployment
    /// two of them answer side by side; a smoke test checks it reached the
    /// one it meant to.
    #[serde(default)]
    pub version: WorkerVersion,
    /// The service's crate version (the same in every upload of one build).
    pub service_version: String,
    /// Every binding the service expects and whether it is present.
    pub bindings: Vec<BindingStatus>,
    /// The configured providers (`null` while the configuration is invalid).
    pub providers: Option<ProviderStatus>,
    /// Vars set to values the service cannot use (name, value and what it
    /// accepts; vars are never secrets). Absent when there are none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub configuration_errors: Vec<String>,
    /// Services that did not answer their probe (D1). Absent when none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unavailable: Vec<String>,
}

impl HealthReport {
    /// Builds a report; `status` is derived from the bindings and the
    /// configuration errors so it cannot disagree with them.
    #[must_use]
    pub fn new(
        environment: impl Into<String>,
        service_version: impl Into<String>,
        bindings: Vec<BindingStatus>,
        providers: Option<ProviderStatus>,
        configuration_errors: Vec<String>,
    ) -> Self {
        let status = if bindings.iter().all(|b| b.present) && configuration_errors.is_empty() {
            "ok"
        } else {
            "degraded"
        };
        Self {
            status: status.to_owned(),
            environment: environment.into(),
            version: WorkerVersion::default(),
            service_version: service_version.into(),
            bindings,
            providers,
            configuration_errors,
            unavailable: Vec::new(),
        }
    }

    /// The same report naming the Worker version that answers.
    #[must_use]
    pub fn with_worker_version(mut self, version: WorkerVersion) -> Self {
        self.version = version;
        self
    }
}

/// Largest `POST /api/search` body: a 2,000-character query with filters
/// fits many times over.
pub const MAX_SEARCH_BODY_BYTES: usize = 16 * 1024;

/// Largest `POST /api/chat` body: room for the question and a long history
/// (20 turns of up to 8,000 characters are checked after parsing).
pub const MAX_CHAT_BODY_BYTES: usize = 256 * 1024;

/// Largest JSON body of the admin API (vector upserts: 1,000 vectors of
/// 1,536 numbers as JSON text are about 20 MB).
pub const MAX_ADMIN_JSON_BYTES: usize = 32 * 1024 * 1024;

/// Whether a request's `Content-Length` already says its body is over
/// `limit` (so it is refused before a byte is read). A missing or
/// unparsable header says nothing: the body is then counted while read.
#[must_use]
pub fn declared_too_large(content_length: Option<&str>, limit: usize) -> bool {
    content_length
        .and_then(|v| v.trim().parse::<u64>().ok())
        .is_some_and(|n| n > limit as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding(name: &str, present: bool) -> BindingStatus {
        BindingStatus {
            name: name.into(),
            kind: "d1".into(),
            present,
        }
    }

    fn providers() -> ProviderStatus {
        ProviderStatus {
            embedding: "offline".into(),
            chat: "offline".into(),
            vector_index: "d1".into(),
            dimensions: 1536,
        }
    }

    #[test]
    fn error_envelope_has_the_documented_shape() {
        let body = serde_json::to_value(ErrorBody::new("not_found", "no such route")).unwrap();
        assert_eq!(
            body,
            serde_json::json!({ "error": { "code": "not_found", "message": "no such route" } })
        );
    }

    #[test]
    fn health_is_degraded_when_any_binding_is_missing() {
        let ok = HealthReport::new(
            "local",
            "0.1.0",
            vec![binding("DB", true)],
            Some(providers()),
            Vec::new(),
        );
        assert_eq!(ok.status, "ok");
        let misconfigured = HealthReport::new(
            "local",
            "0.1.0",
            vec![binding("DB", true)],
            None,
            vec!["VECTOR_INDEX is \"x\"; expected d1 or vectorize".into()],
        );
        assert_eq!(misconfigured.status, "degraded");
        let degraded = HealthReport::new(
            "local",
            "0.1.0",
            vec![binding("DB", true), binding("VECTORIZE", false)],
            Some(providers()),
            Vec::new(),
        );
        assert_eq!(degraded.status, "degraded");
    }

    #[test]
    fn health_names_the_answering_worker_version_or_nulls() {
        let report = || {
            HealthReport::new(
                "local",
                "0.1.0",
                vec![binding("DB", true)],
                None,
                Vec::new(),
            )
        };
        let unknown = serde_json::to_value(report()).unwrap();
        assert_eq!(
            unknown["version"],
            serde_json::json!({ "id": null, "tag": null, "timestamp": null })
        );
        assert_eq!(unknown["service_version"], "0.1.0");
        let known = report().with_worker_version(WorkerVersion::from_fields(
            Some("v-1".into()),
            Some("canary".into()),
            Some("2026-11-02T10:00:00Z".into()),
        ));
        assert_eq!(
            serde_json::to_value(known).unwrap()["version"],
            serde_json::json!({ "id": "v-1", "tag": "canary", "timestamp": "2026-11-02T10:00:00Z" })
        );
    }

    #[test]
    fn declared_lengths_over_the_limit_are_refused_before_reading() {
        assert!(declared_too_large(Some("16385"), 16_384));
        assert!(!declared_too_large(Some("16384"), 16_384));
        assert!(!declared_too_large(Some(" 12 "), 16_384));
        assert!(!declared_too_large(None, 16_384));
        assert!(!declared_too_large(Some("lots"), 16_384));
        assert!(declared_too_large(Some("18446744073709551615"), 16_384));
    }
}
