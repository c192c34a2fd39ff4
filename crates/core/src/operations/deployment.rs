//! Which Worker version is answering: the `version_metadata` binding's
//! fields (`id`, `tag`, `timestamp`) parsed once into a typed value, for
//! `GET /api/health` and the version label of every data point.
//!
//! Never reads the binding itself (the Worker does) and never fails: a
//! missing binding or field is a version that is not known.
//! Source: <https://developers.cloudflare.com/workers/runtime-apis/bindings/version-metadata/>.

use serde::{Deserialize, Serialize};

/// Longest field kept. Version ids are UUIDs (36 characters) and tags are
/// short; anything longer is not what the platform sends and is cut, so one
/// odd value cannot bloat every data point.
pub const MAX_VERSION_FIELD_CHARS: usize = 128;

/// The Worker version this invocation runs as. Every field is `None` when
/// the runtime did not say (no `version_metadata` binding, or a blank field:
/// a version uploaded without a tag has tag `""`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerVersion {
    /// The version's id (a UUID), as `wrangler versions` lists it.
    pub id: Option<String>,
    /// The tag given at upload (`wrangler versions upload --tag`).
    pub tag: Option<String>,
    /// When the version was created (RFC 3339, as the runtime gives it).
    pub timestamp: Option<String>,
}

fn field(value: Option<String>) -> Option<String> {
    let value = value?;
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return None;
    }
    Some(trimmed.chars().take(MAX_VERSION_FIELD_CHARS).collect())
}

impl WorkerVersion {
    /// The version named by the binding's fields as read (each `None` when
    /// absent or not a string); blank fields become `None`.
    #[must_use]
    pub fn from_fields(id: Option<String>, tag: Option<String>, timestamp: Option<String>) -> Self {
        Self {
            id: field(id),
            tag: field(tag),
            timestamp: field(timestamp),
        }
    }

    /// The label data points carry: the id, or `""` when unknown (the same
    /// value the `metric_points.version` column defaults to).
    #[must_use]
    pub fn metric_label(&self) -> &str {
        self.id.as_deref().unwrap_or("")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> Option<String> {
        Some(v.to_owned())
    }

    #[test]
    fn fields_are_kept_trimmed_and_blank_ones_are_unknown() {
        let version = WorkerVersion::from_fields(
            s("0b3c3f5e-2b1a-4c5d-9e8f-123456789abc"),
            s(""),
            s(" 2026-11-02T10:00:00.000Z "),
        );
        assert_eq!(
            version,
            WorkerVersion {
                id: s("0b3c3f5e-2b1a-4c5d-9e8f-123456789abc"),
                tag: None,
                timestamp: s("2026-11-02T10:00:00.000Z"),
            }
        );
        assert_eq!(
            version.metric_label(),
            "0b3c3f5e-2b1a-4c5d-9e8f-123456789abc"
        );
    }

    #[test]
    fn a_missing_binding_is_an_unknown_version_labelled_empty() {
        let version = WorkerVersion::from_fields(None, None, None);
        assert_eq!(version, WorkerVersion::default());
        assert_eq!(version.metric_label(), "");
        assert_eq!(
            serde_json::to_value(&version).unwrap_or_default(),
            serde_json::json!({ "id": null, "tag": null, "timestamp": null })
        );
        assert_eq!(WorkerVersion::from_fields(s("  "), None, None).id, None);
    }

    #[test]
    fn an_overlong_field_is_cut() {
        let long = "x".repeat(MAX_VERSION_FIELD_CHARS + 50);
        let version = WorkerVersion::from_fields(Some(long), s("canary"), None);
        assert_eq!(
            version.id.map(|id| id.chars().count()),
            Some(MAX_VERSION_FIELD_CHARS)
        );
        assert_eq!(version.tag.as_deref(), Some("canary"));
    }
}
