//! Backups of the service's base data, and restores from them.
//!
//! `wrangler d1 export` refuses databases with FTS5 virtual tables, and what
//! the service derives (chunks, the FTS index, vectors) is cheaper and safer
//! to rebuild than to copy. So a backup holds the base data, read through the
//! admin API: every company with its fields and legacy id
//! (`companies.jsonl`), every live document's row (`documents.jsonl`: key,
//! SHA-256, size, title, company, status, legacy id), and each document's R2
//! object, byte for byte, stored once per content under `objects/<sha256>` —
//! so the backup restores even if the bucket is gone. `backup.json` is
//! written last (rows, bytes and SHA-256 of each file): its presence means
//! the backup is complete.
//!
//! A restore checks the backup first (every file against `backup.json`,
//! every object against its name), then writes the companies (upserted by
//! slug, legacy ids recorded), stores each document whose R2 object is
//! missing or different (the admin PUT, which enqueues its ingestion:
//! chunks, FTS rows and vectors are rebuilt by the service), records the
//! documents' legacy ids, and can wait until everything is ready. Idempotent
//! and resumable: it plans against what the service holds, by SHA-256.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::{stream, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use thiserror::Error;

use crate::clock::Clock;
use crate::import::{wait_until_ready, ImportError};
use crate::manifest::{read_jsonl, FileEntry, JsonlWriter, ManifestError};
use crate::rollback::rfc3339_from_ms;
use crate::target::{ServiceTarget, TargetError};
use portfolio_core::admin::companies::{CompanyImport, DocumentLegacyId, MAX_IMPORT_ITEMS};

/// The backup's manifest, written last.
pub const BACKUP_FILE: &str = "backup.json";
pub const COMPANIES_FILE: &str = "companies.jsonl";
pub const DOCUMENTS_FILE: &str = "documents.jsonl";
pub const OBJECTS_DIR: &str = "objects";
/// Format of `backup.json`; a restore refuses any other.
pub const BACKUP_FORMAT: &str = "portfolio-backup/1";
/// Document uploads in flight at once during a restore.
pub const RESTORE_CONCURRENCY: usize = 8;

#[derive(Debug, Error)]
pub enum BackupError {
    #[error(transparent)]
    Files(#[from] ManifestError),
    #[error(transparent)]
    Target(#[from] TargetError),
    #[error("{path}: {message}")]
    Dir { path: PathBuf, message: String },
    #[error("the backup is damaged: {0}")]
    Damaged(String),
    #[error("waiting for ingestion: {0}")]
    Wait(String),
}

impl BackupError {
    pub fn stage(&self) -> &'static str {
        match self {
            Self::Files(_) | Self::Dir { .. } => "files",
            Self::Damaged(_) => "check",
            Self::Target(_) => "target",
            Self::Wait(_) => "wait",
        }
    }
}

impl From<ImportError> for BackupError {
    fn from(err: ImportError) -> Self {
        Self::Wait(err.to_string())
    }
}

/// `backup.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackupManifest {
    pub format: String,
    /// The service it was taken from.
    pub service: String,
    pub taken_at: String,
    pub taken_at_ms: u64,
    pub companies: u64,
    pub documents: u64,
    /// Distinct objects (documents with equal bytes share one).
    pub objects: u64,
    pub object_bytes: u64,
    pub files: BTreeMap<String, FileEntry>,
}

/// One line of `documents.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackedUpDocument {
    pub key: String,
    /// SHA-256 of the object's bytes (its file under `objects/`).
    pub sha256: String,
    pub size: u64,
    pub status: String,
    pub title: Option<String>,
    pub company: Option<String>,
    pub legacy_id: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct BackupReport {
    pub command: &'static str,
    pub service: String,
    pub out: String,
    pub companies: u64,
    pub documents: u64,
    pub objects: u64,
    pub object_bytes: u64,
    /// Documents whose listed SHA-256 differed from their object's (the row
    /// was behind R2 at backup time; the object's is kept).
    pub rows_behind_objects: Vec<String>,
    pub duration_ms: u64,
}

/// The company as `POST /admin/companies` takes it, from `GET /admin/companies`.
fn company_import(listed: &Value) -> CompanyImport {
    let text = |field: &str| listed[field].as_str().map(str::to_owned);
    CompanyImport {
        legacy_id: text("legacy_id"),
        slug: text("slug").unwrap_or_default(),
        name: text("name"),
        description: text("description"),
        website: text("website"),
        metadata: match &listed["metadata"] {
            Value::String(s) => serde_json::from_str(s).unwrap_or(Value::Null),
            other => other.clone(),
        },
        created_at_ms: listed["created_at"].as_i64(),
        updated_at_ms: listed["updated_at"].as_i64(),
    }
}

fn dir_error(path: &Path, e: impl std::fmt::Display) -> BackupError {
    BackupError::Dir {
        path: path.to_owned(),
        message: e.to_string(),
    }
}

/// Takes a backup of `target` into `out` (which must not hold one).
pub async fn run_backup(
    target: &ServiceTarget,
    out: &Path,
    clock: &dyn Clock,
) -> Result<BackupReport, BackupError> {
    let started = clock.elapsed_ms();
    std::fs::create_dir_all(out.join(OBJECTS_DIR)).map_err(|e| dir_error(out, e))?;
    if out.join(BACKUP_FILE).exists() {
        return Err(dir_error(
            out,
            "already holds a backup (backup.json); choose an empty directory",
        ));
    }
    let mut companies = JsonlWriter::create(out, COMPANIES_FILE)?;
    for listed in target.companies().await? {
        companies.write(&company_import(&listed))?;
    }
    let companies = companies.finish()?;

    let mut listed: Vec<_> = target.documents().await?.into_values().collect();
    listed.sort_by(|a, b| a.key.cmp(&b.key));
    let mut documents = JsonlWriter::create(out, DOCUMENTS_FILE)?;
    let (mut objects, mut object_bytes) = (0u64, 0u64);
    let mut behind = Vec::new();
    for d in &listed {
        let bytes = target.object(&d.key).await?;
        let sha256 = portfolio_core::document::keys::sha256_hex(&bytes);
        if d.sha256.as_deref() != Some(sha256.as_str()) {
            behind.push(d.key.clone());
        }
        let path = out.join(OBJECTS_DIR).join(&sha256);
        if !path.exists() {
            let tmp = path.with_extension("partial");
            std::fs::write(&tmp, &bytes).map_err(|e| dir_error(&tmp, e))?;
            std::fs::rename(&tmp, &path).map_err(|e| dir_error(&path, e))?;
            objects += 1;
            object_bytes += bytes.len() as u64;
        }
        documents.write(&BackedUpDocument {
            key: d.key.clone(),
            sha256,
            size: bytes.len() as u64,
            status: d.status.clone(),
            title: d.title.clone(),
            company: d.company.clone(),
            legacy_id: d.legacy_id.clone(),
        })?;
    }
    let documents = documents.finish()?;
    let taken_at_ms = clock.now_ms();
    let manifest = BackupManifest {
        format: BACKUP_FORMAT.to_owned(),
        service: target.base().to_owned(),
        taken_at: rfc3339_from_ms(i64::try_from(taken_at_ms).unwrap_or(0)),
        taken_at_ms,
        companies: companies.rows,
        documents: documents.rows,
        objects,
        object_bytes,
        files: BTreeMap::from([
            (COMPANIES_FILE.to_owned(), companies),
            (DOCUMENTS_FILE.to_owned(), documents),
        ]),
    };
    let text = serde_json::to_string_pretty(&manifest).map_err(|e| dir_error(out, e))? + "\n";
    let tmp = out.join(format!("{BACKUP_FILE}.partial"));
    std::fs::write(&tmp, text).map_err(|e| dir_error(&tmp, e))?;
    std::fs::rename(&tmp, out.join(BACKUP_FILE)).map_err(|e| dir_error(out, e))?;
    Ok(BackupReport {
        command: "backup",
        service: target.base().to_owned(),
        out: out.display().to_string(),
        companies: manifest.companies,
        documents: manifest.documents,
        objects,
        object_bytes,
        rows_behind_objects: behind,
        duration_ms: clock.elapsed_ms().saturating_sub(started),
    })
}

/// Reads `backup.json` and checks every file and object of the backup.
///
/// # Errors
/// `Damaged` naming the first file that disagrees with the manifest, or an
/// object whose bytes do not hash to its name.
pub fn check_backup(dir: &Path) -> Result<(BackupManifest, Vec<BackedUpDocument>), BackupError> {
    let path = dir.join(BACKUP_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| dir_error(&path, e))?;
    let manifest: BackupManifest = serde_json::from_str(&text)
        .map_err(|e| BackupError::Damaged(format!("{BACKUP_FILE}: {e}")))?;
    if manifest.format != BACKUP_FORMAT {
        return Err(BackupError::Damaged(format!(
            "{BACKUP_FILE} has format {:?}; this migrate reads {BACKUP_FORMAT}",
            manifest.format
        )));
    }
    let as_files = crate::manifest::Manifest {
        format_version: 0,
        source: String::new(),
        snapshot_at: String::new(),
        limit: None,
        files: manifest.files.clone(),
        source_counts: BTreeMap::new(),
    };
    as_files
        .check_files(dir)
        .map_err(|e| BackupError::Damaged(e.to_string()))?;
    let documents: Vec<BackedUpDocument> =
        read_jsonl(&dir.join(DOCUMENTS_FILE))?.collect::<Result<_, _>>()?;
    let mut checked = std::collections::HashSet::new();
    for d in &documents {
        if !checked.insert(d.sha256.clone()) {
            continue;
        }
        let object = dir.join(OBJECTS_DIR).join(&d.sha256);
        let bytes = std::fs::read(&object)
            .map_err(|e| BackupError::Damaged(format!("{}: {e}", object.display())))?;
        let actual = portfolio_core::document::keys::sha256_hex(&bytes);
        if actual != d.sha256 {
            return Err(BackupError::Damaged(format!(
                "objects/{} hashes to {actual} (document {})",
                d.sha256, d.key
            )));
        }
    }
    Ok((manifest, documents))
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct RestoreBackupReport {
    pub command: &'static str,
    pub service: String,
    pub dry_run: bool,
    pub companies_written: u64,
    pub companies_unchanged: u64,
    pub documents_uploaded: u64,
    pub documents_unchanged: u64,
    pub legacy_ids_mapped: u64,
    /// With `--wait`: how the uploaded documents ended.
    pub ready: u64,
    pub failed: Vec<String>,
    pub pending: Vec<String>,
    pub duration_ms: u64,
}

/// Restores the backup in `dir` into `target`.
pub async fn run_restore_backup(
    dir: &Path,
    target: &ServiceTarget,
    dry_run: bool,
    wait: Option<Duration>,
    clock: &dyn Clock,
) -> Result<RestoreBackupReport, BackupError> {
    let started = clock.elapsed_ms();
    let (_, documents) = check_backup(dir)?;
    let companies: Vec<CompanyImport> =
        read_jsonl(&dir.join(COMPANIES_FILE))?.collect::<Result<_, _>>()?;
    let mut report = RestoreBackupReport {
        command: "restore-backup",
        service: target.base().to_owned(),
        dry_run,
        ..RestoreBackupReport::default()
    };

    for batch in companies.chunks(MAX_IMPORT_ITEMS) {
        if dry_run {
            report.companies_written += batch.len() as u64;
            continue;
        }
        let answer = target.import_companies(batch).await?;
        report.companies_written += answer["written"].as_u64().unwrap_or(0);
        report.companies_unchanged += answer["unchanged"].as_u64().unwrap_or(0);
    }

    let stored = target.documents().await?;
    let to_upload: Vec<&BackedUpDocument> = documents
        .iter()
        .filter(|d| stored.get(&d.key).and_then(|s| s.sha256.as_deref()) != Some(&d.sha256))
        .collect();
    report.documents_unchanged = (documents.len() - to_upload.len()) as u64;
    if !dry_run {
        let results: Vec<Result<(), BackupError>> =
            stream::iter(to_upload.iter().map(|d| async move {
                let path = dir.join(OBJECTS_DIR).join(&d.sha256);
                let bytes = std::fs::read(&path).map_err(|e| dir_error(&path, e))?;
                let body = String::from_utf8(bytes).map_err(|_| {
                    BackupError::Damaged(format!("objects/{} is not UTF-8", d.sha256))
                })?;
                target.put_document(&d.key, &body, &d.sha256).await?;
                Ok(())
            }))
            .buffer_unordered(RESTORE_CONCURRENCY)
            .collect()
            .await;
        for result in results {
            result?;
        }
    }
    report.documents_uploaded = to_upload.len() as u64;

    let legacy: Vec<DocumentLegacyId> = documents
        .iter()
        .filter_map(|d| {
            d.legacy_id.as_ref().map(|id| DocumentLegacyId {
                legacy_id: id.clone(),
                key: d.key.clone(),
            })
        })
        .collect();
    for batch in legacy.chunks(MAX_IMPORT_ITEMS) {
        if !dry_run {
            let answer = target.map_documents(batch).await?;
            report.legacy_ids_mapped += answer["mapped"].as_u64().unwrap_or(0);
        }
    }

    if let (Some(wait), false) = (wait, dry_run) {
        let keys: Vec<String> = documents
            .iter()
            .filter(|d| d.status == "ready")
            .map(|d| d.key.clone())
            .collect();
        let totals = wait_until_ready(target, &keys, wait, clock).await?;
        report.ready = totals.ready;
        report.failed = totals.failed;
        report.pending = totals.pending;
    }
    report.duration_ms = clock.elapsed_ms().saturating_sub(started);
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn listed_companies_become_import_items() {
        let listed = json!({
            "id": 3, "slug": "acme", "name": "Acme Robotics", "description": "Forklifts",
            "website": null, "metadata": "{\"tier\":1}", "legacy_id": "7f0c…",
            "created_at": 1_700_000_000_000_i64, "updated_at": 1_700_000_100_000_i64, "documents": 4
        });
        let item = company_import(&listed);
        assert_eq!(item.slug, "acme");
        assert_eq!(item.name.as_deref(), Some("Acme Robotics"));
        assert_eq!(item.website, None);
        assert_eq!(item.metadata, json!({ "tier": 1 }));
        assert_eq!(item.legacy_id.as_deref(), Some("7f0c…"));
        assert_eq!(item.created_at_ms, Some(1_700_000_000_000));
        // The import route takes it as it is (deny_unknown_fields).
        let round: CompanyImport =
            serde_json::from_value(serde_json::to_value(&item).unwrap()).unwrap();
        assert_eq!(round, item);
    }
}
