//! `import`: an export directory into the service through its admin API —
//! companies with their real fields and legacy ids first, then each document
//! as the R2 object the ingestion reads (key = its normalised path, SHA-256
//! checked by the API), then the documents' legacy ids. Owns the plan
//! against the target's current state, which makes a repeated run a no-op
//! and an interrupted run resumable; never reads the source database.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::time::Duration;

use futures::stream::{self, StreamExt};
use portfolio_core::admin::companies::{
    validate_companies, CompanyImport, CompanyImportBatch, DocumentLegacyId, MAX_IMPORT_ITEMS,
};
use serde::Serialize;
use serde_json::json;
use thiserror::Error;

use crate::clock::Clock;
use crate::convert::{company_import, prepare_document, PreparedDocument, Unusable};
use crate::manifest::{read_jsonl, Manifest, ManifestError, COMPANIES_FILE, DOCUMENTS_FILE};
use crate::records::{CompanyRecord, DocumentRecord};
use crate::runlog::RunLog;
use crate::target::{ServiceTarget, TargetError};

/// Document uploads in flight at once.
pub const DEFAULT_CONCURRENCY: usize = 4;

#[derive(Debug, Clone)]
pub struct ImportOptions {
    pub from: PathBuf,
    pub dry_run: bool,
    /// Import at most this many documents (in export order).
    pub limit: Option<u64>,
    pub concurrency: usize,
    /// Wait this long for every imported document to be ready.
    pub wait: Option<Duration>,
}

#[derive(Debug, Error)]
pub enum ImportError {
    #[error(transparent)]
    Export(#[from] ManifestError),
    #[error(transparent)]
    Target(#[from] TargetError),
}

impl ImportError {
    pub fn stage(&self) -> &'static str {
        match self {
            Self::Export(_) => "read",
            Self::Target(_) => "target",
        }
    }
}

pub trait ImportProgress {
    fn documents_started(&self, _total: u64) {}
    fn document_done(&self, _key: &str) {}
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct CompanyTotals {
    pub source: u64,
    pub written: u64,
    pub unchanged: u64,
    pub mapped: u64,
    pub unusable: Vec<Unusable>,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct DocumentTotals {
    pub source: u64,
    pub uploaded: u64,
    pub unchanged: u64,
    pub mapped: u64,
    pub unusable: Vec<Unusable>,
    pub failed: Vec<Unusable>,
    /// Key → notes (front matter rewritten, `company: null` added, NULL content).
    pub notes: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct ReadyTotals {
    pub ready: u64,
    pub failed: Vec<String>,
    pub pending: Vec<String>,
    pub waited_ms: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ImportReport {
    pub command: &'static str,
    pub dry_run: bool,
    pub target: String,
    pub from: String,
    pub companies: CompanyTotals,
    pub documents: DocumentTotals,
    pub ready: Option<ReadyTotals>,
    pub duration_ms: u64,
    pub exit_code: i32,
}

fn unusable_company(record: &CompanyRecord, reason: String) -> Unusable {
    Unusable {
        legacy_id: record.id.clone(),
        path: record.slug.clone(),
        reason,
    }
}

async fn import_companies(
    options: &ImportOptions,
    target: &ServiceTarget,
    totals: &mut CompanyTotals,
    log: &mut RunLog,
    clock: &dyn Clock,
) -> Result<(), ImportError> {
    let mut batch: Vec<CompanyImport> = Vec::new();
    let flush = |batch: Vec<CompanyImport>| async move {
        if batch.is_empty() || options.dry_run {
            return Ok::<_, ImportError>(None);
        }
        Ok(Some(target.import_companies(&batch).await?))
    };
    let mut answers = Vec::new();
    for record in read_jsonl::<CompanyRecord>(&options.from.join(COMPANIES_FILE))? {
        let record = record?;
        totals.source += 1;
        let request = company_import(&record);
        // Refuse one bad company here rather than a whole batch there.
        if let Err(e) = validate_companies(CompanyImportBatch {
            companies: vec![request.clone()],
        }) {
            totals
                .unusable
                .push(unusable_company(&record, e.to_string()));
            continue;
        }
        batch.push(request);
        if batch.len() == MAX_IMPORT_ITEMS {
            answers.extend(flush(std::mem::take(&mut batch)).await?);
        }
    }
    answers.extend(flush(batch).await?);
    for answer in answers {
        let n = |k: &str| answer[k].as_u64().unwrap_or(0);
        totals.written += n("written");
        totals.unchanged += n("unchanged");
        totals.mapped += n("mapped");
    }
    let _ = log.record(
        clock.now_ms(),
        "companies",
        json!({ "source": totals.source, "written": totals.written, "unchanged": totals.unchanged, "unusable": totals.unusable.len() }),
    );
    Ok(())
}

async fn map_documents(
    target: &ServiceTarget,
    pending: &mut Vec<DocumentLegacyId>,
    totals: &mut DocumentTotals,
) -> Result<(), ImportError> {
    for batch in pending.chunks(MAX_IMPORT_ITEMS) {
        let answer = target.map_documents(batch).await?;
        totals.mapped += answer["mapped"].as_u64().unwrap_or(0);
    }
    pending.clear();
    Ok(())
}

/// Runs one import. Safe to repeat: companies are upserted only where a
/// field differs, documents uploaded only where the stored SHA-256 differs.
pub async fn run_import(
    options: &ImportOptions,
    target: &ServiceTarget,
    clock: &dyn Clock,
    log: &mut RunLog,
    progress: &dyn ImportProgress,
) -> Result<ImportReport, ImportError> {
    let started = clock.elapsed_ms();
    let manifest = Manifest::load(&options.from)?;
    manifest.check_files(&options.from)?;
    let mut report = ImportReport {
        command: "import",
        dry_run: options.dry_run,
        target: target.base().to_owned(),
        from: options.from.display().to_string(),
        companies: CompanyTotals::default(),
        documents: DocumentTotals::default(),
        ready: None,
        duration_ms: 0,
        exit_code: 0,
    };
    let _ = log.record(
        clock.now_ms(),
        "start",
        json!({ "target": target.base(), "from": report.from, "dry_run": options.dry_run }),
    );
    import_companies(options, target, &mut report.companies, log, clock).await?;

    let stored = target.documents().await?;
    let total = manifest
        .files
        .get(DOCUMENTS_FILE)
        .map_or(0, |f| f.rows)
        .min(options.limit.unwrap_or(u64::MAX));
    progress.documents_started(total);
    let mut seen_keys = HashSet::new();
    let mut imported_keys = Vec::new();
    let mut to_upload: Vec<PreparedDocument> = Vec::new();
    let mut pending_map: Vec<DocumentLegacyId> = Vec::new();
    let totals = &mut report.documents;
    let mut rows = read_jsonl::<DocumentRecord>(&options.from.join(DOCUMENTS_FILE))?;
    loop {
        let next = if totals.source < total {
            rows.next()
        } else {
            None
        };
        let done = next.is_none();
        if let Some(record) = next {
            let record = record?;
            totals.source += 1;
            match prepare_document(&record) {
                Err(unusable) => {
                    let _ = log.record(clock.now_ms(), "unusable", json!(unusable));
                    totals.unusable.push(unusable);
                    progress.document_done(&record.path);
                }
                Ok(doc) if !seen_keys.insert(doc.key.as_str().to_owned()) => {
                    totals.unusable.push(Unusable {
                        legacy_id: doc.legacy_id,
                        path: record.path.clone(),
                        reason: format!("another source path is also key {}", doc.key),
                    });
                }
                Ok(doc) => {
                    if !doc.notes.is_empty() {
                        totals
                            .notes
                            .insert(doc.key.as_str().to_owned(), doc.notes.clone());
                    }
                    imported_keys.push(doc.key.as_str().to_owned());
                    let same = stored
                        .get(doc.key.as_str())
                        .and_then(|s| s.sha256.as_deref())
                        .is_some_and(|s| s.eq_ignore_ascii_case(&doc.sha256));
                    if same {
                        totals.unchanged += 1;
                        pending_map.push(DocumentLegacyId {
                            legacy_id: doc.legacy_id,
                            key: doc.key.as_str().to_owned(),
                        });
                        progress.document_done(doc.key.as_str());
                    } else {
                        to_upload.push(doc);
                    }
                }
            }
        }
        // Upload in groups, so memory holds a group's bodies, not the export.
        if to_upload.len() >= options.concurrency.max(1) * 4 || (done && !to_upload.is_empty()) {
            let group = std::mem::take(&mut to_upload);
            if options.dry_run {
                totals.uploaded += group.len() as u64;
            } else {
                let results: Vec<_> = stream::iter(group)
                    .map(|doc| async move {
                        let result = target
                            .put_document(doc.key.as_str(), &doc.body, &doc.sha256)
                            .await;
                        (doc, result)
                    })
                    .buffer_unordered(options.concurrency.max(1))
                    .collect()
                    .await;
                for (doc, result) in results {
                    progress.document_done(doc.key.as_str());
                    match result {
                        Ok(()) => {
                            totals.uploaded += 1;
                            let _ = log.record(
                                clock.now_ms(),
                                "uploaded",
                                json!({ "key": doc.key, "sha256": doc.sha256, "legacy_id": doc.legacy_id }),
                            );
                            pending_map.push(DocumentLegacyId {
                                legacy_id: doc.legacy_id,
                                key: doc.key.as_str().to_owned(),
                            });
                        }
                        Err(e) => {
                            let _ = log.record(
                                clock.now_ms(),
                                "failed",
                                json!({ "key": doc.key, "error": e.to_string() }),
                            );
                            totals.failed.push(Unusable {
                                legacy_id: doc.legacy_id,
                                path: doc.key.as_str().to_owned(),
                                reason: e.to_string(),
                            });
                        }
                    }
                }
            }
        }
        if !options.dry_run && (pending_map.len() >= MAX_IMPORT_ITEMS || done) {
            map_documents(target, &mut pending_map, totals).await?;
        }
        if done {
            break;
        }
    }
    let _ = log.record(
        clock.now_ms(),
        "documents",
        json!({ "source": totals.source, "uploaded": totals.uploaded, "unchanged": totals.unchanged,
                "unusable": totals.unusable.len(), "failed": totals.failed.len() }),
    );

    if let (Some(wait), false) = (options.wait, options.dry_run) {
        report.ready = Some(wait_until_ready(target, &imported_keys, wait, clock).await?);
    }
    let failed_ingestion = report
        .ready
        .as_ref()
        .is_some_and(|r| !r.failed.is_empty() || !r.pending.is_empty());
    report.exit_code = i32::from(!report.documents.failed.is_empty() || failed_ingestion);
    report.duration_ms = clock.elapsed_ms().saturating_sub(started);
    let _ = log.record(
        clock.now_ms(),
        "end",
        json!({ "duration_ms": report.duration_ms, "exit_code": report.exit_code }),
    );
    Ok(report)
}

/// Polls the listing until every key is `ready` or `failed`, or `wait` passes.
pub(crate) async fn wait_until_ready(
    target: &ServiceTarget,
    keys: &[String],
    wait: Duration,
    clock: &dyn Clock,
) -> Result<ReadyTotals, ImportError> {
    let started = clock.elapsed_ms();
    let deadline = started.saturating_add(u64::try_from(wait.as_millis()).unwrap_or(u64::MAX));
    loop {
        let stored: HashMap<_, _> = target.documents().await?;
        let mut totals = ReadyTotals::default();
        for key in keys {
            match stored.get(key).map(|d| d.status.as_str()) {
                Some("ready") => totals.ready += 1,
                Some("failed") => totals.failed.push(key.clone()),
                _ => totals.pending.push(key.clone()),
            }
        }
        let now = clock.elapsed_ms();
        totals.waited_ms = now.saturating_sub(started);
        if totals.pending.is_empty() || now >= deadline {
            return Ok(totals);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
