//! From source rows to what the service stores: a document key from the
//! source path, the markdown object with the source's company (and title and
//! tags) in its front matter, and a company import request. Pure: no I/O.
//!
//! The key is `portfolio_core::document::keys::document_key` of the source path, the
//! mapping r2-sync uses for the corpus folder, so a later sync of that folder
//! finds the migrated documents under the same keys.
//!
//! Front matter choice: the ingestion takes a document's company from front
//! matter `company:`, else from the key's first segment. A source row's
//! `company_id` is the truth in Supabase, so the object gets
//! `company: "<slug>"` in its front matter — added when absent, replacing a
//! different value when present (reported). A row without a company gets
//! `company: null` (which the ingestion reads as "no company") wherever the
//! key or the content's own front matter would otherwise name one, so no
//! company is invented. `title:` and `tags:` are added
//! from the row only when the content's front matter has none. Content
//! without front matter gets a new block; content is otherwise verbatim
//! (escapes such as `\xe9` included), so the object's SHA-256 is that of
//! the source content exactly when nothing had to be added.

use portfolio_core::admin::companies::CompanyImport;
use portfolio_core::document::keys::{document_key, sha256_hex, DocumentKey};
use portfolio_core::document::parse_document;
use serde::Serialize;

use crate::records::{CompanyRecord, DocumentRecord};

/// A document ready to upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparedDocument {
    pub legacy_id: String,
    pub key: DocumentKey,
    pub body: String,
    pub sha256: String,
    /// The company the ingestion will assign (what verification expects).
    pub company: Option<String>,
    /// Things worth telling a person (front matter rewritten, company inferred…).
    pub notes: Vec<String>,
}

/// Why a source document cannot be imported; the run goes on without it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unusable {
    pub legacy_id: String,
    pub path: String,
    pub reason: String,
}

/// Quotes a value as a YAML double-quoted scalar (JSON strings are one).
fn yaml_string(value: &str) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "\"\"".to_owned())
}

/// Splits `content` into (front matter lines without fences, body) if it
/// opens with a `---` fence closed by `---` or `...`.
fn split_front_matter(content: &str) -> Option<(Vec<&str>, &str)> {
    let mut lines = content.split_inclusive('\n');
    let first = lines.next()?;
    if first.trim_end() != "---" {
        return None;
    }
    let mut offset = first.len();
    let mut yaml = Vec::new();
    for line in lines {
        offset += line.len();
        let trimmed = line.trim_end();
        if trimmed == "---" || trimmed == "..." {
            return Some((yaml, &content[offset..]));
        }
        yaml.push(line);
    }
    None
}

/// The top-level key of a YAML line, if it has one (`title: x` → `title`).
fn top_level_key(line: &str) -> Option<&str> {
    if line.starts_with([' ', '\t', '#', '-']) {
        return None;
    }
    let (key, _) = line.split_once(':')?;
    Some(key.trim())
}

/// Lines of a top-level field: its own and the indented ones after it.
fn field_span(yaml: &[&str], field: &str) -> Option<(usize, usize)> {
    let start = yaml.iter().position(|l| top_level_key(l) == Some(field))?;
    let mut end = start + 1;
    while end < yaml.len() && yaml[end].starts_with([' ', '\t']) {
        end += 1;
    }
    Some((start, end))
}

/// Builds the object body from a source row (see the module docs). With
/// `no_company`, a row without a company gets `company: null`.
pub fn merge_front_matter(
    record: &DocumentRecord,
    no_company: bool,
    notes: &mut Vec<String>,
) -> String {
    let content = record.content.as_deref().unwrap_or("");
    let mut wanted: Vec<(&str, String, bool)> = Vec::new();
    match &record.company_slug {
        Some(slug) => wanted.push(("company", yaml_string(slug), true)),
        None if no_company => wanted.push(("company", "null".to_owned(), true)),
        None => {}
    }
    if let Some(title) = record.title.as_deref().filter(|t| !t.trim().is_empty()) {
        wanted.push(("title", yaml_string(title), false));
    }
    if !record.tags.is_empty() {
        let tags: Vec<String> = record.tags.iter().map(|t| yaml_string(t)).collect();
        wanted.push(("tags", format!("[{}]", tags.join(", ")), false));
    }
    if wanted.is_empty() {
        return content.to_owned();
    }
    let (mut yaml, body): (Vec<String>, &str) = match split_front_matter(content) {
        Some((lines, body)) => (lines.iter().map(|l| (*l).to_owned()).collect(), body),
        None => (Vec::new(), content),
    };
    let mut added = Vec::new();
    for (field, value, authoritative) in wanted {
        let refs: Vec<&str> = yaml.iter().map(String::as_str).collect();
        match field_span(&refs, field) {
            Some((start, end)) if authoritative => {
                let current = yaml[start..end].concat();
                let replacement = format!("{field}: {value}\n");
                if current.trim_end() != replacement.trim_end() {
                    notes.push(format!(
                        "front matter {field} {:?} replaced by the source's {value}",
                        current.trim_end()
                    ));
                    yaml.splice(start..end, [replacement]);
                }
            }
            Some(_) => {}
            None => {
                added.push(format!("{field}: {value}\n"));
            }
        }
    }
    // New fields go first, in a fixed order, so the result is deterministic.
    let mut out = String::from("---\n");
    for line in added.iter().chain(yaml.iter()) {
        out.push_str(line);
        if !line.ends_with('\n') {
            out.push('\n');
        }
    }
    out.push_str("---\n");
    out.push_str(body);
    out
}

/// Prepares one source document, or says why it cannot be imported.
pub fn prepare_document(record: &DocumentRecord) -> Result<PreparedDocument, Unusable> {
    let unusable = |reason: String| Unusable {
        legacy_id: record.id.clone(),
        path: record.path.clone(),
        reason,
    };
    let key = document_key(&record.path).map_err(|e| unusable(e.to_string()))?;
    if !key.is_markdown() {
        return Err(unusable(
            "not a markdown key (the ingestion reads .md/.markdown only)".to_owned(),
        ));
    }
    let mut notes = Vec::new();
    if record.content.is_none() {
        notes.push("content was NULL; imported as empty".to_owned());
    }
    let company_of = |body: &str| {
        parse_document(&key, body.as_bytes())
            .map(|parsed| parsed.company)
            .map_err(|e| unusable(format!("the service would refuse it: {e}")))
    };
    let mut body = merge_front_matter(record, false, &mut notes);
    let mut company = company_of(&body)?;
    if let (None, Some(inferred)) = (&record.company_slug, &company) {
        notes.push(format!(
            "no company in the source; `company: null` added so the ingestion does not file it under {inferred:?}"
        ));
        body = merge_front_matter(record, true, &mut notes);
        company = company_of(&body)?;
    }
    let sha256 = sha256_hex(body.as_bytes());
    Ok(PreparedDocument {
        legacy_id: record.id.clone(),
        key,
        sha256,
        body,
        company,
        notes,
    })
}

/// The company import request for a source row.
pub fn company_import(record: &CompanyRecord) -> CompanyImport {
    let metadata = match &record.metadata {
        v @ (serde_json::Value::Null | serde_json::Value::Object(_)) => v.clone(),
        other => serde_json::json!({ "value": other }),
    };
    CompanyImport {
        legacy_id: Some(record.id.clone()),
        slug: record.slug.clone(),
        name: record.name.clone(),
        description: record.description.clone(),
        website: record.website.clone(),
        metadata,
        created_at_ms: record.created_at.as_ref().map(|t| t.ms),
        updated_at_ms: record.updated_at.as_ref().map(|t| t.ms),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(path: &str, slug: Option<&str>, content: Option<&str>) -> DocumentRecord {
        DocumentRecord {
            id: "u1".into(),
            company_id: slug.map(|_| "c1".into()),
            company_slug: slug.map(Into::into),
            path: path.into(),
            title: None,
            content: content.map(Into::into),
            content_sha256: String::new(),
            checksum: None,
            tags: Vec::new(),
            metadata: serde_json::Value::Null,
            created_at: None,
            updated_at: None,
        }
    }

    #[test]
    fn front_matter_is_added_merged_or_left_alone() {
        // (slug, title, tags, content, expected body)
        type Case<'a> = (
            Option<&'a str>,
            Option<&'a str>,
            &'a [&'a str],
            &'a str,
            &'a str,
        );
        let cases: &[Case] = &[
            (None, None, &[], "# A\n", "# A\n"),
            (
                Some("acme"),
                None,
                &[],
                "# A\n",
                "---\ncompany: \"acme\"\n---\n# A\n",
            ),
            (
                Some("Acme"),
                Some("Über \"uns\""),
                &[" Rust ", "rust"],
                "",
                "---\ncompany: \"Acme\"\ntitle: \"Über \\\"uns\\\"\"\ntags: [\" Rust \", \"rust\"]\n---\n",
            ),
            // Existing front matter: company replaced, title kept, tags added.
            (
                Some("zürich-ag"),
                Some("Source title"),
                &["x"],
                "---\ntitle: Own\ncompany: wrong\n---\nBody\n",
                "---\ntags: [\"x\"]\ntitle: Own\ncompany: \"zürich-ag\"\n---\nBody\n",
            ),
            // A multi-line company value is replaced whole.
            (
                Some("a"),
                None,
                &[],
                "---\ncompany:\n  - b\nother: 1\n---\nB\n",
                "---\ncompany: \"a\"\nother: 1\n---\nB\n",
            ),
            // Already right: untouched.
            (
                Some("a"),
                None,
                &[],
                "---\ncompany: \"a\"\n---\nB\n",
                "---\ncompany: \"a\"\n---\nB\n",
            ),
        ];
        for &(slug, title, tags, content, expected) in cases {
            let mut record = doc("companies/x/a.md", slug, Some(content));
            record.title = title.map(Into::into);
            record.tags = tags.iter().map(|t| (*t).to_owned()).collect();
            let mut notes = Vec::new();
            assert_eq!(
                merge_front_matter(&record, false, &mut notes),
                expected,
                "{content:?}"
            );
        }
    }

    #[test]
    fn the_ingestion_sees_the_source_company() {
        let record = doc(
            "misplaced/x.md",
            Some("acme"),
            Some("---\ncompany: wrong\n---\n# X\n"),
        );
        let prepared = prepare_document(&record).unwrap();
        assert_eq!(prepared.company.as_deref(), Some("acme"));
        assert_eq!(prepared.notes.len(), 1, "{:?}", prepared.notes);
        assert_eq!(prepared.sha256, sha256_hex(prepared.body.as_bytes()));
    }

    #[test]
    fn a_document_without_a_company_stays_without_one() {
        // (path, content, expected body): `company: null` only where the key
        // or the content's own front matter would name a company.
        let cases = [
            ("notes/n.md", "# N\n", "---\ncompany: null\n---\n# N\n"),
            (
                "companies/acme/n.md",
                "---\ntitle: T\n---\n# N\n",
                "---\ncompany: null\ntitle: T\n---\n# N\n",
            ),
            (
                "n.md",
                "---\ncompany: acme\n---\n# N\n",
                "---\ncompany: null\n---\n# N\n",
            ),
            ("readme.md", "# N\n", "# N\n"),
            ("companies/n.md", "# N\n", "# N\n"),
        ];
        for (path, content, expected) in cases {
            let orphan = prepare_document(&doc(path, None, Some(content))).unwrap();
            assert_eq!(orphan.body, expected, "{path}");
            assert_eq!(orphan.company, None, "{path}");
            assert_eq!(orphan.sha256, sha256_hex(expected.as_bytes()));
            let key = DocumentKey::parse(path).unwrap();
            let parsed = parse_document(&key, orphan.body.as_bytes()).unwrap();
            assert_eq!(parsed.company, None, "{path}: what the ingestion reads");
            let noted = orphan.notes.iter().any(|n| n.contains("company: null"));
            assert_eq!(noted, expected != content, "{path}: {:?}", orphan.notes);
        }
    }

    #[test]
    fn unusable_paths_are_reported_not_fatal() {
        for path in [
            "/abs.md",
            "a/../b.md",
            "a\\b.md",
            "tab\there.md",
            "folder/",
            "",
            "image.png",
        ] {
            let err = prepare_document(&doc(path, None, Some("# x\n"))).unwrap_err();
            assert_eq!(err.path, path);
        }
        let ok = prepare_document(&doc("./companies//acme/a b ü.md", Some("acme"), None)).unwrap();
        assert_eq!(ok.key.as_str(), "companies/acme/a b ü.md");
        assert!(ok.notes[0].contains("NULL"));
    }
}
