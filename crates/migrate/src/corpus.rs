//! `corpus`: an export's documents as the folder r2-sync pushes. Each usable
//! document goes to `<out>/<key>` with exactly the bytes `import` uploads
//! (same key mapping, same front matter), so once the repository's corpus
//! folder holds them, the first sync after the migration finds every
//! document unchanged. Reads only the export; never the source or the
//! service, and never overwrites a different file without `--force`.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::Serialize;
use thiserror::Error;

use crate::convert::{prepare_document, Unusable};
use crate::manifest::{read_jsonl, Manifest, ManifestError, DOCUMENTS_FILE};
use crate::records::DocumentRecord;

#[derive(Debug, Clone)]
pub struct CorpusOptions {
    /// Export directory (written by `export`).
    pub from: PathBuf,
    /// The corpus folder to write into (created if missing).
    pub out: PathBuf,
    /// Replace files that hold something else.
    pub force: bool,
    /// Report what would be written; write nothing.
    pub dry_run: bool,
}

#[derive(Debug, Error)]
pub enum CorpusError {
    #[error(transparent)]
    Export(#[from] ManifestError),
}

impl CorpusError {
    pub fn stage(&self) -> &'static str {
        match self {
            Self::Export(_) => "read",
        }
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct CorpusReport {
    pub command: &'static str,
    pub from: String,
    pub out: String,
    pub dry_run: bool,
    /// Documents in the export.
    pub source: u64,
    /// Files created (or that would be).
    pub written: u64,
    /// Files that already held exactly these bytes.
    pub unchanged: u64,
    /// Files that held something else and were replaced (`--force`).
    pub overwritten: u64,
    /// Keys whose file holds something else, left alone (no `--force`).
    pub conflicts: Vec<String>,
    /// Keys with a segment starting with `.`: r2-sync leaves such files out
    /// unless given `--hidden`, so a sync with `--delete` would remove them.
    pub hidden: Vec<String>,
    /// Source rows that cannot be documents (as `import` reports them).
    pub unusable: Vec<Unusable>,
    /// Files that could not be written.
    pub failed: Vec<Unusable>,
    pub exit_code: i32,
}

/// What happened to one file.
enum Written {
    Created,
    Unchanged,
    Overwritten,
    Conflict,
}

fn write_document(path: &Path, body: &[u8], options: &CorpusOptions) -> std::io::Result<Written> {
    let outcome = match std::fs::read(path) {
        Ok(existing) if existing == body => return Ok(Written::Unchanged),
        Ok(_) if !options.force => return Ok(Written::Conflict),
        Ok(_) => Written::Overwritten,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Written::Created,
        Err(e) => return Err(e),
    };
    if !options.dry_run {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(path, body)?;
    }
    Ok(outcome)
}

/// Writes the export's documents into the corpus folder (see the module docs).
pub fn run_corpus(options: &CorpusOptions) -> Result<CorpusReport, CorpusError> {
    let manifest = Manifest::load(&options.from)?;
    manifest.check_files(&options.from)?;
    let mut report = CorpusReport {
        command: "corpus",
        from: options.from.display().to_string(),
        out: options.out.display().to_string(),
        dry_run: options.dry_run,
        ..CorpusReport::default()
    };
    let mut seen_keys = HashSet::new();
    for record in read_jsonl::<DocumentRecord>(&options.from.join(DOCUMENTS_FILE))? {
        let record = record?;
        report.source += 1;
        let doc = match prepare_document(&record) {
            Ok(doc) => doc,
            Err(unusable) => {
                report.unusable.push(unusable);
                continue;
            }
        };
        if !seen_keys.insert(doc.key.as_str().to_owned()) {
            report.unusable.push(Unusable {
                legacy_id: doc.legacy_id,
                path: record.path.clone(),
                reason: format!("another source path is also key {}", doc.key),
            });
            continue;
        }
        if doc.key.segments().any(|s| s.starts_with('.')) {
            report.hidden.push(doc.key.as_str().to_owned());
        }
        // A key has no `..`, `.`, empty or absolute segment: it stays inside `out`.
        let path = options.out.join(doc.key.as_str());
        match write_document(&path, doc.body.as_bytes(), options) {
            Ok(Written::Created) => report.written += 1,
            Ok(Written::Unchanged) => report.unchanged += 1,
            Ok(Written::Overwritten) => report.overwritten += 1,
            Ok(Written::Conflict) => report.conflicts.push(doc.key.as_str().to_owned()),
            Err(e) => report.failed.push(Unusable {
                legacy_id: doc.legacy_id,
                path: path.display().to_string(),
                reason: e.to_string(),
            }),
        }
    }
    report.exit_code = i32::from(!report.conflicts.is_empty() || !report.failed.is_empty());
    Ok(report)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::manifest::JsonlWriter;

    fn record(id: &str, path: &str, company: Option<&str>, content: &str) -> DocumentRecord {
        DocumentRecord {
            id: id.into(),
            company_id: company.map(|_| "c1".into()),
            company_slug: company.map(Into::into),
            path: path.into(),
            title: None,
            content: Some(content.into()),
            content_sha256: String::new(),
            checksum: None,
            tags: Vec::new(),
            metadata: serde_json::Value::Null,
            created_at: None,
            updated_at: None,
        }
    }

    fn export(dir: &Path, records: &[DocumentRecord]) {
        let mut writer = JsonlWriter::create(dir, DOCUMENTS_FILE).unwrap();
        for r in records {
            writer.write(r).unwrap();
        }
        let entry = writer.finish().unwrap();
        Manifest {
            format_version: crate::records::FORMAT_VERSION,
            source: "test".into(),
            snapshot_at: "2024-01-01T00:00:00.000Z".into(),
            limit: None,
            files: BTreeMap::from([(DOCUMENTS_FILE.to_owned(), entry)]),
            source_counts: BTreeMap::new(),
        }
        .save(dir)
        .unwrap();
    }

    #[test]
    fn the_corpus_holds_what_import_uploads_under_the_same_keys() {
        let from = tempfile::tempdir().unwrap();
        let out = tempfile::tempdir().unwrap();
        let records = [
            record("1", "companies/acme/a.md", Some("acme"), "# A\n"),
            record("2", "notes/n.md", None, "# N\n"),
            record("3", "./notes//n.md", None, "# same key\n"),
            record("4", "a/../b.md", None, "# B\n"),
            record("5", "companies/acme/.draft.md", Some("acme"), "# D\n"),
        ];
        export(from.path(), &records);
        let options = CorpusOptions {
            from: from.path().to_owned(),
            out: out.path().join("corpus"),
            force: false,
            dry_run: false,
        };
        let first = run_corpus(&options).unwrap();
        assert_eq!(
            (first.source, first.written, first.unusable.len()),
            (5, 3, 2)
        );
        assert_eq!(first.hidden, ["companies/acme/.draft.md"]);
        assert_eq!(first.exit_code, 0);
        for r in &records[..2] {
            let doc = prepare_document(r).unwrap();
            let file = options.out.join(doc.key.as_str());
            assert_eq!(std::fs::read(file).unwrap(), doc.body.as_bytes());
        }
        assert_eq!(
            std::fs::read_to_string(options.out.join("notes/n.md")).unwrap(),
            "---\ncompany: null\n---\n# N\n"
        );

        let again = run_corpus(&options).unwrap();
        assert_eq!((again.written, again.unchanged), (0, 3));

        let edited = options.out.join("companies/acme/a.md");
        std::fs::write(&edited, "# edited\n").unwrap();
        let conflict = run_corpus(&options).unwrap();
        assert_eq!(conflict.conflicts, ["companies/acme/a.md"]);
        assert_eq!(conflict.exit_code, 1);
        assert_eq!(std::fs::read_to_string(&edited).unwrap(), "# edited\n");

        let forced = run_corpus(&CorpusOptions {
            force: true,
            ..options.clone()
        })
        .unwrap();
        assert_eq!((forced.overwritten, forced.exit_code), (1, 0));
        assert_ne!(std::fs::read_to_string(&edited).unwrap(), "# edited\n");
    }
}
