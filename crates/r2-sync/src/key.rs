//! Maps local relative paths to object keys and owns the rules for what a
//! valid key and prefix are. Pure: never touches the filesystem or network.
//!
//! A key is `portfolio_core::document::keys::document_key` of the file's path in the
//! corpus (`--prefix` + its path under the pushed folder), the mapping
//! `migrate import` uses for a Supabase path: push the corpus root without a
//! prefix and a migrated document keeps its key.

use std::path::{Component, Path};

use portfolio_core::document::keys::document_key;

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// Why a path cannot become an object key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("path is not valid UTF-8: {path}")]
    NotUtf8 { path: String },
    #[error("path contains a control character: {path:?}")]
    ControlCharacter { path: String },
    #[error("path has a component that cannot be part of a key: {path}")]
    InvalidComponent { path: String },
    /// The key is not one the service accepts (the same rules as its admin
    /// API and R2 events: `portfolio_core::document::keys::DocumentKey`).
    #[error("{key:?} cannot be a document key: {reason}")]
    NotADocumentKey { key: String, reason: String },
    #[error("invalid prefix {prefix:?}: {reason}")]
    InvalidPrefix {
        prefix: String,
        reason: &'static str,
    },
}

/// Normalises a key prefix: no leading `/`, exactly one trailing `/` (unless
/// empty), no empty, `.` or `..` segments, no control characters.
///
/// The trailing `/` is what makes prefix isolation hold: `docs/` never
/// matches `docs-old/readme.md`.
pub fn normalize_prefix(prefix: &str) -> Result<String, KeyError> {
    let trimmed = prefix.trim_matches('/');
    if trimmed.is_empty() {
        return Ok(String::new());
    }
    if trimmed.chars().any(char::is_control) {
        return Err(KeyError::InvalidPrefix {
            prefix: prefix.to_owned(),
            reason: "contains a control character",
        });
    }
    for segment in trimmed.split('/') {
        if segment.is_empty() || segment == "." || segment == ".." {
            return Err(KeyError::InvalidPrefix {
                prefix: prefix.to_owned(),
                reason: "has an empty, '.' or '..' segment",
            });
        }
    }
    Ok(format!("{trimmed}/"))
}

/// The relative path of a file with `/` separators, or why it has none.
pub fn relative_key_path(rel: &Path) -> Result<String, KeyError> {
    let lossy = rel.to_string_lossy().into_owned();
    let mut parts = Vec::new();
    for component in rel.components() {
        match component {
            Component::Normal(os) => {
                let part = os.to_str().ok_or_else(|| KeyError::NotUtf8 {
                    path: lossy.clone(),
                })?;
                if part.chars().any(char::is_control) {
                    return Err(KeyError::ControlCharacter { path: lossy });
                }
                parts.push(part);
            }
            _ => return Err(KeyError::InvalidComponent { path: lossy }),
        }
    }
    if parts.is_empty() {
        return Err(KeyError::InvalidComponent { path: lossy });
    }
    Ok(parts.join("/"))
}

/// `prefix` (normalised: where the pushed folder sits in the corpus, empty
/// for the corpus root) + relative path, checked against the service's key
/// rules: a key the service would refuse or rename is an error here, before
/// anything is uploaded.
pub fn key_for(prefix: &str, rel: &Path) -> Result<String, KeyError> {
    checked_key(format!("{prefix}{}", relative_key_path(rel)?))
}

/// `key` if the service accepts it as it is (see [`key_for`]).
pub fn checked_key(key: String) -> Result<String, KeyError> {
    match document_key(&key) {
        Ok(normal) if normal.as_str() == key => Ok(key),
        Ok(normal) => Err(KeyError::NotADocumentKey {
            reason: format!("the service would address it as {:?}", normal.as_str()),
            key,
        }),
        Err(e) => Err(KeyError::NotADocumentKey {
            key,
            reason: e.to_string(),
        }),
    }
}

/// Whether `key` lies under `prefix` (normalised, so `docs/` ≠ `docs-old/`).
pub fn is_within_prefix(prefix: &str, key: &str) -> bool {
    key.starts_with(prefix) && key.len() > prefix.len()
}

/// Characters kept verbatim in a URL path segment (RFC 3986 unreserved).
const PATH_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encodes each `/`-separated segment of a key for use in a URL path.
pub fn encode_key_path(key: &str) -> String {
    key.split('/')
        .map(|segment| utf8_percent_encode(segment, PATH_SEGMENT).to_string())
        .collect::<Vec<_>>()
        .join("/")
}

/// Percent-encodes a query-string value.
pub fn encode_query_value(value: &str) -> String {
    utf8_percent_encode(value, PATH_SEGMENT).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn prefixes_are_normalised() {
        let cases = [
            ("", ""),
            ("/", ""),
            ("docs", "docs/"),
            ("/docs/", "docs/"),
            ("a/b", "a/b/"),
        ];
        for (input, want) in cases {
            assert_eq!(normalize_prefix(input).unwrap(), want, "{input}");
        }
        for bad in ["a//b", "a/../b", "./a", "a\tb"] {
            assert!(normalize_prefix(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn keys_join_prefix_and_relative_path() {
        let rel = PathBuf::from("companies").join("acme").join("about.md");
        assert_eq!(
            key_for("docs/", &rel).unwrap(),
            "docs/companies/acme/about.md"
        );
        assert_eq!(key_for("", &rel).unwrap(), "companies/acme/about.md");
    }

    #[test]
    fn a_corpus_file_gets_the_key_a_migrated_source_path_gets() {
        // The corpus root pushed without a prefix, and a sub-folder pushed
        // with its place in the corpus, give the key of the Supabase path.
        let cases = [
            ("", "companies/acme/about.md", "companies/acme/about.md"),
            ("companies/", "acme/about.md", "companies/acme/about.md"),
            ("", "notes/a b ü.md", "notes/a b ü.md"),
        ];
        for (prefix, rel, source_path) in cases {
            let migrated = document_key(source_path).unwrap();
            assert_eq!(
                key_for(prefix, Path::new(rel)).unwrap(),
                migrated.as_str(),
                "{prefix}{rel}"
            );
        }
    }

    #[test]
    fn control_characters_and_parent_components_are_rejected() {
        assert!(matches!(
            key_for("", Path::new("a\nb.md")),
            Err(KeyError::ControlCharacter { .. })
        ));
        assert!(matches!(
            key_for("", Path::new("../x.md")),
            Err(KeyError::InvalidComponent { .. })
        ));
    }

    #[cfg(unix)]
    #[test]
    fn non_utf8_paths_are_rejected() {
        use std::ffi::OsStr;
        use std::os::unix::ffi::OsStrExt;
        let rel = Path::new(OsStr::from_bytes(b"bad\xff.md"));
        assert!(matches!(key_for("", rel), Err(KeyError::NotUtf8 { .. })));
    }

    #[test]
    fn keys_follow_the_service_rules() {
        assert!(matches!(
            key_for("", Path::new("evil\\name.md")),
            Err(KeyError::NotADocumentKey { .. })
        ));
        let long = "a".repeat(1_100);
        assert!(matches!(
            key_for("", Path::new(&long)),
            Err(KeyError::NotADocumentKey { .. })
        ));
        assert!(key_for("docs/", Path::new("ok name ü.md")).is_ok());
    }

    #[test]
    fn prefix_isolation_is_by_segment() {
        assert!(is_within_prefix("docs/", "docs/a.md"));
        assert!(!is_within_prefix("docs/", "docs-old/a.md"));
        assert!(!is_within_prefix("docs/", "docs/"));
        assert!(is_within_prefix("", "anything.md"));
    }

    #[test]
    fn key_paths_are_encoded_per_segment() {
        assert_eq!(encode_key_path("a b/c?d#e.md"), "a%20b/c%3Fd%23e.md");
        assert_eq!(encode_key_path("ü/x.md"), "%C3%BC/x.md");
    }
}
