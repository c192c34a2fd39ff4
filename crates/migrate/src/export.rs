//! `export`: the source's companies, documents (with content) and chunk
//! metadata into JSONL files plus a manifest, page by page inside one
//! snapshot. Owns the export directory's layout; never writes to the source
//! and never reads embeddings.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::json;
use thiserror::Error;

use crate::clock::Clock;
use crate::manifest::{
    FileEntry, JsonlWriter, Manifest, ManifestError, CHUNKS_FILE, COMPANIES_FILE, DOCUMENTS_FILE,
};
use crate::postgres::Database;
use crate::records::FORMAT_VERSION;
use crate::runlog::RunLog;
use crate::source::{Source, SourceCounts, SourceError};

/// Rows asked for per query. Documents carry their full content, so a page
/// is kept modest; rows are streamed, never collected.
pub const DEFAULT_PAGE_SIZE: u32 = 200;

#[derive(Debug, Clone)]
pub struct ExportOptions {
    pub database: Database,
    pub out: PathBuf,
    /// Export at most this many documents (and their chunks).
    pub limit: Option<u64>,
    pub page_size: u32,
    /// Count only; write nothing.
    pub dry_run: bool,
}

#[derive(Debug, Error)]
pub enum ExportError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Files(#[from] ManifestError),
    #[error("{path}: {message}")]
    OutDir { path: PathBuf, message: String },
}

impl ExportError {
    /// Stage name for reports.
    pub fn stage(&self) -> &'static str {
        match self {
            Self::Source(SourceError::Connect(e)) if e.is_usage() => "config",
            Self::Source(SourceError::BadArgument(_)) => "config",
            Self::Source(SourceError::Connect(_)) => "connect",
            Self::Source(_) => "read",
            Self::Files(_) | Self::OutDir { .. } => "write",
        }
    }
}

/// Progress of an export, for a progress bar or lines.
pub trait ExportProgress {
    fn started(&self, _counts: &SourceCounts, _documents_to_export: u64) {}
    fn documents_done(&self, _done: u64) {}
}

/// No progress display.
#[derive(Debug)]
pub struct NoProgress;
impl ExportProgress for NoProgress {}

#[derive(Debug, Clone, Serialize)]
pub struct ExportReport {
    pub command: &'static str,
    pub dry_run: bool,
    pub source: String,
    pub out: String,
    pub snapshot_at: Option<String>,
    pub source_counts: BTreeMap<String, u64>,
    pub exported: BTreeMap<String, u64>,
    pub files: BTreeMap<String, FileEntry>,
    pub duration_ms: u64,
}

fn counts_map(c: &SourceCounts) -> BTreeMap<String, u64> {
    BTreeMap::from([
        ("companies".to_owned(), c.companies),
        ("documents".to_owned(), c.documents),
        ("chunks".to_owned(), c.chunks),
    ])
}

fn prepare_out_dir(out: &Path) -> Result<(), ExportError> {
    let err = |message: String| ExportError::OutDir {
        path: out.to_owned(),
        message,
    };
    std::fs::create_dir_all(out).map_err(|e| err(e.to_string()))?;
    // A previous complete export must not be silently mixed with this one.
    if out.join(crate::manifest::MANIFEST_FILE).exists() {
        return Err(err(
            "already holds an export (manifest.json); choose an empty directory".to_owned(),
        ));
    }
    Ok(())
}

/// Runs one export. The manifest is written last: a directory without one
/// holds an incomplete export.
pub async fn run_export(
    options: &ExportOptions,
    clock: &dyn Clock,
    log: &mut RunLog,
    progress: &dyn ExportProgress,
) -> Result<ExportReport, ExportError> {
    let started = clock.elapsed_ms();
    let mut source = Source::connect(&options.database).await?;
    let snapshot_at = source.begin_snapshot().await?;
    let counts = source.counts().await?;
    let to_export = options
        .limit
        .map_or(counts.documents, |l| l.min(counts.documents));
    let mut report = ExportReport {
        command: "export",
        dry_run: options.dry_run,
        source: source.name().to_owned(),
        out: options.out.display().to_string(),
        snapshot_at: Some(snapshot_at.clone()),
        source_counts: counts_map(&counts),
        exported: BTreeMap::new(),
        files: BTreeMap::new(),
        duration_ms: 0,
    };
    let _ = log.record(
        clock.now_ms(),
        "start",
        json!({ "source": source.name(), "snapshot_at": snapshot_at, "counts": report.source_counts, "limit": options.limit }),
    );
    progress.started(&counts, to_export);
    if options.dry_run {
        source.end_snapshot().await?;
        report.duration_ms = clock.elapsed_ms().saturating_sub(started);
        return Ok(report);
    }
    prepare_out_dir(&options.out)?;
    let page = i64::from(options.page_size.max(1));

    // Companies: all of them (a document's company must exist on import).
    let mut companies = JsonlWriter::create(&options.out, COMPANIES_FILE)?;
    let mut after: Option<String> = None;
    loop {
        let mut last = None;
        let mut write_err = None;
        let n = source
            .companies_page(after.as_deref(), page, |c| {
                if write_err.is_none() {
                    if let Err(e) = companies.write(&c) {
                        write_err = Some(e);
                    }
                }
                last = Some(c.id);
                Ok(())
            })
            .await?;
        if let Some(e) = write_err {
            return Err(e.into());
        }
        let _ = log.record(
            clock.now_ms(),
            "page",
            json!({ "table": "companies", "rows": n, "after": after }),
        );
        if n < page as u64 {
            break;
        }
        after = last;
    }

    let mut documents = JsonlWriter::create(&options.out, DOCUMENTS_FILE)?;
    let mut chunks = JsonlWriter::create(&options.out, CHUNKS_FILE)?;
    let mut after: Option<String> = None;
    let mut remaining = to_export;
    while remaining > 0 {
        let ask = page.min(i64::try_from(remaining).unwrap_or(i64::MAX));
        let mut ids = Vec::new();
        let mut write_err = None;
        let n = source
            .documents_page(after.as_deref(), ask, |d| {
                if write_err.is_none() {
                    if let Err(e) = documents.write(&d) {
                        write_err = Some(e);
                    }
                }
                ids.push(d.id);
                Ok(())
            })
            .await?;
        if let Some(e) = write_err {
            return Err(e.into());
        }
        let mut chunk_err = None;
        let chunk_rows = if ids.is_empty() {
            0
        } else {
            source
                .chunks_of(&ids, |c| {
                    if chunk_err.is_none() {
                        if let Err(e) = chunks.write(&c) {
                            chunk_err = Some(e);
                        }
                    }
                    Ok(())
                })
                .await?
        };
        if let Some(e) = chunk_err {
            return Err(e.into());
        }
        remaining = remaining.saturating_sub(n);
        let _ = log.record(
            clock.now_ms(),
            "page",
            json!({ "table": "documents", "rows": n, "chunks": chunk_rows, "after": after }),
        );
        progress.documents_done(documents.rows());
        if n < ask as u64 {
            break;
        }
        after = ids.pop();
    }
    source.end_snapshot().await?;

    let files = BTreeMap::from([
        (COMPANIES_FILE.to_owned(), companies.finish()?),
        (DOCUMENTS_FILE.to_owned(), documents.finish()?),
        (CHUNKS_FILE.to_owned(), chunks.finish()?),
    ]);
    report.exported = BTreeMap::from([
        ("companies".to_owned(), files[COMPANIES_FILE].rows),
        ("documents".to_owned(), files[DOCUMENTS_FILE].rows),
        ("chunks".to_owned(), files[CHUNKS_FILE].rows),
    ]);
    let manifest = Manifest {
        format_version: FORMAT_VERSION,
        source: report.source.clone(),
        snapshot_at,
        limit: options.limit,
        files: files.clone(),
        source_counts: report.source_counts.clone(),
    };
    manifest.save(&options.out)?;
    report.files = files;
    report.duration_ms = clock.elapsed_ms().saturating_sub(started);
    let _ = log.record(
        clock.now_ms(),
        "end",
        json!({ "exported": report.exported, "duration_ms": report.duration_ms }),
    );
    Ok(report)
}
