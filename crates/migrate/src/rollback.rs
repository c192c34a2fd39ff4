//! The way back: `rollback-export` takes the service's companies and
//! documents (with each R2 object's bytes and SHA-256) into the export
//! format, and `restore` writes such a directory into a Postgres with the
//! Supabase schema. Restore upserts by slug and path in one transaction and
//! never deletes; chunks are not restored (their embeddings would have to be
//! recomputed), and documents whose content changed are reported for that.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Serialize;
use serde_json::{json, Value};
use thiserror::Error;

use crate::clock::Clock;
use crate::manifest::{
    read_jsonl, JsonlWriter, Manifest, ManifestError, CHUNKS_FILE, COMPANIES_FILE, DOCUMENTS_FILE,
};
use crate::postgres::{ConnectError, Database};
use crate::records::{CompanyRecord, DocumentRecord, Timestamp, FORMAT_VERSION};
use crate::runlog::RunLog;
use crate::target::{ServiceTarget, TargetError};

#[derive(Debug, Error)]
pub enum RollbackError {
    #[error(transparent)]
    Files(#[from] ManifestError),
    #[error(transparent)]
    Target(#[from] TargetError),
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("{path}: {message}")]
    OutDir { path: PathBuf, message: String },
    #[error("restoring {what}: {message}")]
    Restore { what: String, message: String },
}

impl RollbackError {
    pub fn stage(&self) -> &'static str {
        match self {
            Self::Files(_) | Self::OutDir { .. } => "files",
            Self::Target(_) => "target",
            Self::Connect(e) if e.is_usage() => "config",
            Self::Connect(_) => "connect",
            Self::Restore { .. } => "restore",
        }
    }
}

/// A UUID derived from a name, for rows the service created (no legacy id):
/// the same row always gets the same id, so a repeated restore upserts it.
#[must_use]
pub fn derived_uuid(kind: &str, name: &str) -> String {
    let h = portfolio_core::document::keys::sha256_hex(format!("{kind}:{name}").as_bytes());
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// RFC 3339 (UTC, milliseconds) of epoch milliseconds.
#[must_use]
pub fn rfc3339_from_ms(ms: i64) -> String {
    portfolio_core::shared::calendar::rfc3339_ms(ms)
}

fn timestamp(value: &Value) -> Option<Timestamp> {
    value.as_i64().map(|ms| Timestamp {
        rfc3339: rfc3339_from_ms(ms),
        ms,
    })
}

#[derive(Debug, Clone, Serialize)]
pub struct RollbackExportReport {
    pub command: &'static str,
    pub target: String,
    pub out: String,
    pub companies: u64,
    pub documents: u64,
    /// Documents written as their original row (`--original`).
    pub documents_as_originally_exported: u64,
    pub duration_ms: u64,
}

/// Where each document of the original export is, by key: the SHA-256 of
/// the object `import` made of it and the byte offset of its line, so a
/// record is read back only when needed (never the whole export in memory).
struct OriginalIndex {
    path: PathBuf,
    by_key: std::collections::HashMap<String, (String, u64)>,
}

impl OriginalIndex {
    fn build(dir: &std::path::Path) -> Result<Self, RollbackError> {
        use std::io::BufRead;
        let path = dir.join(DOCUMENTS_FILE);
        let file = std::fs::File::open(&path).map_err(|e| RollbackError::OutDir {
            path: path.clone(),
            message: e.to_string(),
        })?;
        let mut reader = std::io::BufReader::new(file);
        let mut by_key = std::collections::HashMap::new();
        let (mut offset, mut line) = (0u64, String::new());
        loop {
            line.clear();
            let n = reader
                .read_line(&mut line)
                .map_err(|e| RollbackError::OutDir {
                    path: path.clone(),
                    message: e.to_string(),
                })?;
            if n == 0 {
                break;
            }
            if let Ok(record) = serde_json::from_str::<DocumentRecord>(&line) {
                if let Ok(doc) = crate::convert::prepare_document(&record) {
                    by_key
                        .entry(doc.key.as_str().to_owned())
                        .or_insert((doc.sha256, offset));
                }
            }
            offset += n as u64;
        }
        Ok(Self { path, by_key })
    }

    /// The original record of `key` if the service still holds exactly what
    /// `import` made of it.
    fn unchanged(
        &self,
        key: &str,
        served_sha256: &str,
    ) -> Result<Option<DocumentRecord>, RollbackError> {
        use std::io::{BufRead, Seek};
        let Some((sha, offset)) = self.by_key.get(key) else {
            return Ok(None);
        };
        if sha != served_sha256 {
            return Ok(None);
        }
        let io = |e: std::io::Error| RollbackError::OutDir {
            path: self.path.clone(),
            message: e.to_string(),
        };
        let mut file = std::fs::File::open(&self.path).map_err(io)?;
        file.seek(std::io::SeekFrom::Start(*offset)).map_err(io)?;
        let mut line = String::new();
        std::io::BufReader::new(file)
            .read_line(&mut line)
            .map_err(io)?;
        Ok(serde_json::from_str(&line).ok())
    }
}

/// Exports the service's companies and documents (with content) to `out`.
/// With the `original` export the service was migrated from, a document the
/// service still holds unchanged is written as its original row (content
/// without the front matter import added, source id, tags, timestamps), so
/// a restore gives it back byte for byte; changed and new documents carry
/// the object's content.
pub async fn run_rollback_export(
    target: &ServiceTarget,
    out: &std::path::Path,
    original: Option<&std::path::Path>,
    clock: &dyn Clock,
    log: &mut RunLog,
) -> Result<RollbackExportReport, RollbackError> {
    let original = original.map(OriginalIndex::build).transpose()?;
    let started = clock.elapsed_ms();
    std::fs::create_dir_all(out).map_err(|e| RollbackError::OutDir {
        path: out.to_owned(),
        message: e.to_string(),
    })?;
    if out.join(crate::manifest::MANIFEST_FILE).exists() {
        return Err(RollbackError::OutDir {
            path: out.to_owned(),
            message: "already holds an export (manifest.json); choose an empty directory".into(),
        });
    }
    let companies = target.companies().await?;
    let mut slug_to_id = BTreeMap::new();
    let mut writer = JsonlWriter::create(out, COMPANIES_FILE)?;
    for c in &companies {
        let slug = c["slug"].as_str().unwrap_or_default().to_owned();
        let id = c["legacy_id"]
            .as_str()
            .map_or_else(|| derived_uuid("company", &slug), str::to_owned);
        slug_to_id.insert(slug.clone(), id.clone());
        writer.write(&CompanyRecord {
            id,
            slug,
            name: c["name"].as_str().map(str::to_owned),
            description: c["description"].as_str().map(str::to_owned),
            website: c["website"].as_str().map(str::to_owned),
            metadata: c["metadata"]
                .as_str()
                .and_then(|m| serde_json::from_str(m).ok())
                .unwrap_or(Value::Null),
            created_at: timestamp(&c["created_at"]),
            updated_at: timestamp(&c["updated_at"]),
        })?;
    }
    let companies_entry = writer.finish()?;

    let mut documents: Vec<_> = target.documents().await?.into_values().collect();
    documents.sort_by(|a, b| a.key.cmp(&b.key));
    let mut writer = JsonlWriter::create(out, DOCUMENTS_FILE)?;
    let mut unchanged = 0u64;
    for d in &documents {
        let bytes = target.object(&d.key).await?;
        let served = portfolio_core::document::keys::sha256_hex(&bytes);
        if let Some(index) = &original {
            if let Some(record) = index.unchanged(&d.key, &served)? {
                unchanged += 1;
                writer.write(&record)?;
                continue;
            }
        }
        let content = String::from_utf8_lossy(&bytes).into_owned();
        let _ = log.record(clock.now_ms(), "document", json!({ "key": d.key }));
        writer.write(&DocumentRecord {
            id: derived_uuid("document", &d.key),
            company_id: d.company.as_ref().and_then(|s| slug_to_id.get(s).cloned()),
            company_slug: d.company.clone(),
            path: d.key.clone(),
            title: d.title.clone(),
            content_sha256: portfolio_core::document::keys::sha256_hex(content.as_bytes()),
            content: Some(content),
            checksum: d.sha256.clone(),
            tags: Vec::new(),
            metadata: Value::Null,
            created_at: None,
            updated_at: None,
        })?;
    }
    let documents_entry = writer.finish()?;
    let chunks_entry = JsonlWriter::create(out, CHUNKS_FILE)?.finish()?;
    let manifest = Manifest {
        format_version: FORMAT_VERSION,
        source: target.base().to_owned(),
        snapshot_at: rfc3339_from_ms(i64::try_from(clock.now_ms()).unwrap_or(0)),
        limit: None,
        files: BTreeMap::from([
            (COMPANIES_FILE.to_owned(), companies_entry.clone()),
            (DOCUMENTS_FILE.to_owned(), documents_entry.clone()),
            (CHUNKS_FILE.to_owned(), chunks_entry),
        ]),
        source_counts: BTreeMap::from([
            ("companies".to_owned(), companies_entry.rows),
            ("documents".to_owned(), documents_entry.rows),
        ]),
    };
    manifest.save(out)?;
    Ok(RollbackExportReport {
        command: "rollback-export",
        target: target.base().to_owned(),
        out: out.display().to_string(),
        companies: companies_entry.rows,
        documents: documents_entry.rows,
        documents_as_originally_exported: unchanged,
        duration_ms: clock.elapsed_ms().saturating_sub(started),
    })
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct RestoreReport {
    pub command: &'static str,
    pub database: String,
    pub dry_run: bool,
    pub companies_written: u64,
    pub documents_inserted: u64,
    pub documents_updated: u64,
    pub documents_unchanged: u64,
    /// Paths whose content changed: their chunks (and embeddings) are stale.
    pub reembed: Vec<String>,
    pub duration_ms: u64,
}

fn restore_error(what: &str, e: &tokio_postgres::Error) -> RollbackError {
    RollbackError::Restore {
        what: what.to_owned(),
        message: e
            .as_db_error()
            .map_or_else(|| e.to_string(), |d| d.message().to_owned()),
    }
}

/// Writes a (rollback) export into a Postgres with the Supabase schema, in
/// one transaction: companies upserted by slug, documents by path.
pub async fn run_restore(
    from: &std::path::Path,
    database: &Database,
    dry_run: bool,
    clock: &dyn Clock,
) -> Result<RestoreReport, RollbackError> {
    let started = clock.elapsed_ms();
    // A mistake in the URL or --ca-cert, or a transaction pooler, is reported
    // before anything is read.
    database.check()?;
    let manifest = Manifest::load(from)?;
    manifest.check_files(from)?;
    let mut report = RestoreReport {
        command: "restore",
        database: database.name()?,
        dry_run,
        ..RestoreReport::default()
    };
    let mut client = database.connect().await?;
    let tx = client
        .transaction()
        .await
        .map_err(|e| restore_error("begin", &e))?;
    for record in read_jsonl::<CompanyRecord>(&from.join(COMPANIES_FILE))? {
        let c = record?;
        let n = tx
            .execute(
                "INSERT INTO companies (id, slug, name, description, website, metadata, created_at, updated_at) \
                 VALUES ($1::text::uuid, $2, $3, $4, $5, nullif($6::text, 'null')::jsonb, to_timestamp($7::int8 / 1000.0), to_timestamp($8::int8 / 1000.0)) \
                 ON CONFLICT (slug) DO UPDATE SET name = excluded.name, description = excluded.description, \
                 website = excluded.website, metadata = excluded.metadata \
                 WHERE (companies.name, companies.description, companies.website, companies.metadata) \
                 IS DISTINCT FROM (excluded.name, excluded.description, excluded.website, excluded.metadata)",
                &[
                    &c.id,
                    &c.slug,
                    &c.name,
                    &c.description,
                    &c.website,
                    &c.metadata.to_string(),
                    &c.created_at.as_ref().map(|t| t.ms),
                    &c.updated_at.as_ref().map(|t| t.ms),
                ],
            )
            .await
            .map_err(|e| restore_error(&format!("company {}", c.slug), &e))?;
        report.companies_written += n;
    }
    for record in read_jsonl::<DocumentRecord>(&from.join(DOCUMENTS_FILE))? {
        let d = record?;
        let content = d.content.clone().unwrap_or_default();
        let existing = tx
            .query_opt(
                "SELECT coalesce(content, '') = $2 FROM documents WHERE path = $1",
                &[&d.path, &content],
            )
            .await
            .map_err(|e| restore_error(&format!("document {}", d.path), &e))?;
        match existing {
            Some(row) if row.get::<_, bool>(0) => {
                report.documents_unchanged += 1;
                continue;
            }
            Some(_) => {
                report.documents_updated += 1;
                report.reembed.push(d.path.clone());
            }
            None => {
                report.documents_inserted += 1;
                report.reembed.push(d.path.clone());
            }
        }
        let checksum = d
            .checksum
            .clone()
            .unwrap_or_else(|| d.content_sha256.clone());
        tx.execute(
            "INSERT INTO documents (id, company_id, path, title, content, checksum, tags, metadata, created_at, updated_at) \
             VALUES ($1::text::uuid, (SELECT id FROM companies WHERE slug = $2), $3, $4, $5, $6, $7, \
             nullif($8::text, 'null')::jsonb, coalesce(to_timestamp($9::int8 / 1000.0), now()), \
             coalesce(to_timestamp($10::int8 / 1000.0), now())) \
             ON CONFLICT (path) DO UPDATE SET content = excluded.content, checksum = excluded.checksum, \
             company_id = coalesce(excluded.company_id, documents.company_id), \
             title = coalesce(documents.title, excluded.title), updated_at = now()",
            &[
                &d.id,
                &d.company_slug,
                &d.path,
                &d.title,
                &content,
                &checksum,
                &d.tags,
                &d.metadata.to_string(),
                &d.created_at.as_ref().map(|t| t.ms),
                &d.updated_at.as_ref().map(|t| t.ms),
            ],
        )
        .await
        .map_err(|e| restore_error(&format!("document {}", d.path), &e))?;
    }
    if dry_run {
        tx.rollback()
            .await
            .map_err(|e| restore_error("rollback", &e))?;
    } else {
        tx.commit().await.map_err(|e| restore_error("commit", &e))?;
    }
    report.duration_ms = clock.elapsed_ms().saturating_sub(started);
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_render_as_rfc3339() {
        assert_eq!(rfc3339_from_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            rfc3339_from_ms(1_609_497_000_000),
            "2021-01-01T10:30:00.000Z"
        );
        assert_eq!(
            rfc3339_from_ms(1_709_251_199_999),
            "2024-02-29T23:59:59.999Z"
        );
        assert_eq!(rfc3339_from_ms(-1), "1969-12-31T23:59:59.999Z");
    }

    #[test]
    fn derived_ids_are_stable_uuids() {
        let id = derived_uuid("document", "a.md");
        assert_eq!(id, derived_uuid("document", "a.md"));
        assert_ne!(id, derived_uuid("document", "b.md"));
        assert_eq!(id.len(), 36);
    }
}
