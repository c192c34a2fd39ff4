//! Companies and legacy ids as the admin API imports them: a migration
//! brings real names and fields (front matter only ever gives a slug) and
//! maps the source's UUIDs to integer ids in `legacy_id_map`. Owns what a
//! valid import request is; never stores anything.

use crate::document::keys::DocumentKey;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Companies (or document mappings) per import request. Each company is two
/// D1 statements in one batch (row upsert, legacy id), and the follow-up
/// lookup binds one parameter per company: 50 stays under D1's 100 bound
/// parameters per statement (Cloudflare D1 docs, "Limits").
pub const MAX_IMPORT_ITEMS: usize = 50;

/// Longest slug accepted, in bytes: a slug is a key segment.
pub const MAX_SLUG_BYTES: usize = 255;

/// Longest legacy id accepted, in bytes (a UUID is 36).
pub const MAX_LEGACY_ID_BYTES: usize = 128;

/// One company of `POST /admin/companies`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompanyImport {
    /// The source's id (a UUID), recorded in `legacy_id_map`.
    #[serde(default)]
    pub legacy_id: Option<String>,
    pub slug: String,
    /// The display name; the slug when absent.
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub website: Option<String>,
    /// A JSON object (or null, stored as `{}`).
    #[serde(default)]
    pub metadata: serde_json::Value,
    /// Milliseconds since the epoch; the import time when absent.
    #[serde(default)]
    pub created_at_ms: Option<i64>,
    #[serde(default)]
    pub updated_at_ms: Option<i64>,
}

/// Body of `POST /admin/companies`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompanyImportBatch {
    pub companies: Vec<CompanyImport>,
}

/// A company ready to store: validated, defaults applied, metadata as JSON text.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidCompany {
    pub legacy_id: Option<String>,
    pub slug: String,
    pub name: String,
    pub description: Option<String>,
    pub website: Option<String>,
    pub metadata_json: String,
    pub created_at_ms: Option<i64>,
    pub updated_at_ms: Option<i64>,
}

/// One document of `POST /admin/legacy-ids/documents`: the source id of the
/// document stored under `key`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DocumentLegacyId {
    pub legacy_id: String,
    pub key: String,
}

/// Body of `POST /admin/legacy-ids/documents`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DocumentLegacyIdBatch {
    pub documents: Vec<DocumentLegacyId>,
}

/// Why an import request was refused; nothing was stored.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CompanyImportError {
    #[error("empty request: nothing to import")]
    Empty,
    #[error("{count} items in one request; the limit is {MAX_IMPORT_ITEMS}")]
    TooMany { count: usize },
    #[error("item {index}: {message}")]
    Invalid { index: usize, message: String },
}

fn invalid(index: usize, message: impl Into<String>) -> CompanyImportError {
    CompanyImportError::Invalid {
        index,
        message: message.into(),
    }
}

fn check_count(count: usize) -> Result<(), CompanyImportError> {
    match count {
        0 => Err(CompanyImportError::Empty),
        n if n > MAX_IMPORT_ITEMS => Err(CompanyImportError::TooMany { count: n }),
        _ => Ok(()),
    }
}

fn check_legacy_id(index: usize, id: &str) -> Result<(), CompanyImportError> {
    if id.trim().is_empty() || id.len() > MAX_LEGACY_ID_BYTES {
        return Err(invalid(
            index,
            format!("legacy_id must be 1..={MAX_LEGACY_ID_BYTES} bytes"),
        ));
    }
    Ok(())
}

/// Validates a company import and applies the defaults.
///
/// A slug is stored exactly as given (`Acme` and `acme` are two companies,
/// as they were in the source): it must be what the ingestion reads from
/// front matter or a key segment, so it may not be empty, contain `/` or
/// control characters, or have surrounding spaces (front matter is trimmed).
pub fn validate_companies(
    batch: CompanyImportBatch,
) -> Result<Vec<ValidCompany>, CompanyImportError> {
    check_count(batch.companies.len())?;
    let mut seen = std::collections::HashSet::new();
    batch
        .companies
        .into_iter()
        .enumerate()
        .map(|(index, c)| {
            let slug = c.slug;
            if slug.is_empty() || slug.len() > MAX_SLUG_BYTES {
                return Err(invalid(
                    index,
                    format!("slug must be 1..={MAX_SLUG_BYTES} bytes"),
                ));
            }
            if slug.trim() != slug || slug.contains('/') || slug.chars().any(char::is_control) {
                return Err(invalid(
                    index,
                    format!("slug {slug:?} has surrounding spaces, '/' or control characters"),
                ));
            }
            if !seen.insert(slug.clone()) {
                return Err(invalid(index, format!("slug {slug:?} appears twice")));
            }
            if let Some(id) = &c.legacy_id {
                check_legacy_id(index, id)?;
            }
            let metadata_json = match c.metadata {
                serde_json::Value::Null => "{}".to_owned(),
                v @ serde_json::Value::Object(_) => v.to_string(),
                _ => return Err(invalid(index, "metadata must be a JSON object or null")),
            };
            let name = c
                .name
                .filter(|n| !n.trim().is_empty())
                .unwrap_or_else(|| slug.clone());
            Ok(ValidCompany {
                legacy_id: c.legacy_id,
                slug,
                name,
                description: c.description,
                website: c.website,
                metadata_json,
                created_at_ms: c.created_at_ms,
                updated_at_ms: c.updated_at_ms,
            })
        })
        .collect()
}

/// Validates a document legacy-id mapping; keys are normalised.
pub fn validate_document_legacy_ids(
    batch: DocumentLegacyIdBatch,
) -> Result<Vec<(String, DocumentKey)>, CompanyImportError> {
    check_count(batch.documents.len())?;
    batch
        .documents
        .into_iter()
        .enumerate()
        .map(|(index, d)| {
            check_legacy_id(index, &d.legacy_id)?;
            let key = DocumentKey::parse(&d.key).map_err(|e| invalid(index, e.to_string()))?;
            Ok((d.legacy_id, key))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn batch(companies: serde_json::Value) -> CompanyImportBatch {
        serde_json::from_value(json!({ "companies": companies })).unwrap()
    }

    #[test]
    fn defaults_are_applied_and_case_is_kept() {
        let valid = validate_companies(batch(json!([
            { "slug": "acme", "name": "Acme Corp", "metadata": { "a": 1 }, "legacy_id": "u1", "created_at_ms": 5 },
            { "slug": "Acme", "name": "  " },
        ])))
        .unwrap();
        assert_eq!(valid[0].name, "Acme Corp");
        assert_eq!(valid[0].metadata_json, r#"{"a":1}"#);
        assert_eq!(valid[0].created_at_ms, Some(5));
        assert_eq!(valid[1].slug, "Acme");
        assert_eq!(valid[1].name, "Acme");
        assert_eq!(valid[1].metadata_json, "{}");
    }

    #[test]
    fn bad_requests_are_refused_with_the_item() {
        let cases = [
            (json!([]), "empty"),
            (json!([{ "slug": "" }]), "item 0"),
            (json!([{ "slug": " acme" }]), "item 0"),
            (json!([{ "slug": "a/b" }]), "item 0"),
            (json!([{ "slug": "a" }, { "slug": "a" }]), "item 1"),
            (json!([{ "slug": "a", "metadata": [1] }]), "item 0"),
            (json!([{ "slug": "a", "legacy_id": "" }]), "item 0"),
        ];
        for (companies, expected) in cases {
            let err = validate_companies(batch(companies.clone())).unwrap_err();
            assert!(err.to_string().contains(expected), "{companies}: {err}");
        }
        let many: Vec<_> = (0..=MAX_IMPORT_ITEMS)
            .map(|i| json!({ "slug": format!("c{i}") }))
            .collect();
        assert!(matches!(
            validate_companies(batch(json!(many))),
            Err(CompanyImportError::TooMany { .. })
        ));
        assert!(serde_json::from_value::<CompanyImportBatch>(
            json!({ "companies": [{ "slug": "a", "extra": 1 }] })
        )
        .is_err());
    }

    #[test]
    fn document_mappings_need_valid_keys() {
        let ok = validate_document_legacy_ids(DocumentLegacyIdBatch {
            documents: vec![DocumentLegacyId {
                legacy_id: "u".into(),
                key: "./a//b.md".into(),
            }],
        })
        .unwrap();
        assert_eq!(ok[0].1.as_str(), "a/b.md");
        assert!(validate_document_legacy_ids(DocumentLegacyIdBatch {
            documents: vec![DocumentLegacyId {
                legacy_id: "u".into(),
                key: "../a.md".into(),
            }],
        })
        .is_err());
    }
}
