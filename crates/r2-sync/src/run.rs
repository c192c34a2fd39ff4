//! One sync run from folder to report: walk → hash (with the cache) → list →
//! resolve remote hashes → plan → guard → confirm → execute → save cache.
//! Everything a person sees goes through [`SyncUi`]; this module never reads
//! the terminal or the environment itself.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Instant;

use crate::execute::{execute_plan, ExecuteOptions, ProgressSink};
use crate::hash_cache::{hash_files, HashOptions, StateCache};
use crate::plan::{plan_sync, DeleteGuard, LocalEntry, PlanOptions, SyncPlan};
use crate::remote::resolve_remote;
use crate::report::{LocalSummary, Mode, SyncReport};
use crate::target::SyncTarget;
use crate::walk::{walk_folder, WalkOptions};

/// Everything one run needs to know, already validated.
#[derive(Debug, Clone)]
pub struct SyncRequest {
    /// `push`, `status` or `diff` (recorded in the report).
    pub command: String,
    pub root: PathBuf,
    /// Normalised prefix.
    pub prefix: String,
    pub walk: WalkOptions,
    pub cache_path: PathBuf,
    /// Re-hash every file (`--checksum`).
    pub checksum: bool,
    pub delete: bool,
    pub guard: DeleteGuard,
    /// Plan only: change nothing (dry run, status, diff).
    pub dry_run: bool,
    /// Exit with [`crate::report::EXIT_CHANGES_PENDING`] when a dry run finds changes.
    pub exit_code_on_changes: bool,
    pub hash_workers: usize,
    pub head_concurrency: usize,
    pub execute: ExecuteOptions,
    /// Files modified at or after this instant (ns since epoch) are not stamped.
    pub trust_before_ns: u64,
    /// When the run started (for `duration_ms`).
    pub started: Instant,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Confirmation {
    Proceed,
    Declined,
    /// No terminal to ask on.
    CannotAsk,
}

/// What the person running the sync sees and answers.
pub trait SyncUi: ProgressSink {
    /// A step started or something worth knowing (not an error).
    fn notice(&self, _message: &str) {}
    /// Shown the plan before applying it; may ask.
    fn confirm(&self, plan: &SyncPlan) -> Confirmation;
}

/// Runs one sync and reports what happened; never panics on outside input.
pub async fn run_sync<T: SyncTarget>(
    target: &T,
    request: &SyncRequest,
    ui: &dyn SyncUi,
) -> SyncReport {
    let mode = if request.dry_run {
        Mode::DryRun
    } else {
        Mode::Apply
    };
    let mut report = SyncReport::new(&request.command, mode, target.info());
    report.local.root = request.root.display().to_string();
    let done = |mut report: SyncReport, refused: bool, interrupted: bool| {
        report.duration_ms =
            u64::try_from(request.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        report.finish(refused, interrupted, request.exit_code_on_changes);
        report
    };

    ui.notice("scanning folder");
    let walked = match walk_folder(&request.root, &request.prefix, &request.walk) {
        Ok(walked) => walked,
        Err(err) => {
            report.error(
                "walk",
                None,
                Some(&report.local.root.clone()),
                err.to_string(),
            );
            return done(report, false, false);
        }
    };
    for issue in &walked.issues {
        report.error("walk", None, Some(&issue.path), issue.message.clone());
    }
    let walk_errors = walked.issues.len();

    let (mut cache, warning) = StateCache::load(&request.cache_path);
    if let Some(warning) = warning {
        ui.notice(&warning);
    }
    ui.notice(&format!("hashing {} files", walked.files.len()));
    let hashed = hash_files(
        walked.files,
        &cache.files,
        HashOptions {
            force: request.checksum,
            workers: request.hash_workers,
            trust_before_ns: request.trust_before_ns,
        },
    );
    for issue in &hashed.issues {
        report.error("hash", None, Some(&issue.path), issue.message.clone());
    }
    report.local = LocalSummary {
        root: report.local.root.clone(),
        files: hashed.files.len(),
        bytes: hashed.files.iter().map(|f| f.file.size).sum(),
        hash: hashed.stats,
        skipped_special: walked.skipped_special,
    };

    ui.notice("listing remote objects");
    let listed = match target.list().await {
        Ok(listed) => listed,
        Err(err) => {
            report.error("list", None, None, err.to_string());
            return done(report, false, false);
        }
    };
    let local_keys: HashSet<&str> = hashed.files.iter().map(|f| f.file.key.as_str()).collect();
    let cache_id = target.cache_id();
    let cached_stamps = cache.remote_stamps(&cache_id);
    let resolved = resolve_remote(
        target,
        listed,
        &cached_stamps,
        &local_keys,
        request.head_concurrency,
    )
    .await;
    report.remote = resolved.stats;
    for err in &resolved.errors {
        report.error("head", err.key.as_deref(), None, err.to_string());
    }

    let local_entries: Vec<LocalEntry> = hashed
        .files
        .iter()
        .map(|f| LocalEntry {
            key: f.file.key.clone(),
            sha256: f.sha256.clone(),
            size: f.file.size,
        })
        .collect();
    let plan = match plan_sync(
        &local_entries,
        &resolved.entries,
        PlanOptions {
            prefix: &request.prefix,
            delete: request.delete,
        },
    ) {
        Ok(plan) => plan,
        Err(err) => {
            report.error("plan", None, None, err.to_string());
            return done(report, false, false);
        }
    };
    report.set_plan(&plan);
    let guarded = plan
        .check_local_scan(walk_errors + hashed.issues.len(), request.guard.force)
        .and_then(|()| plan.check_delete_guard(request.guard));
    if let Err(err) = guarded {
        report.error("plan", None, None, err.to_string());
        return done(report, true, false);
    }
    if request.dry_run {
        return done(report, false, false);
    }

    let mut stamps = resolved.stamps;
    let mut interrupted = false;
    if !plan.is_empty() {
        match ui.confirm(&plan) {
            Confirmation::Proceed => {}
            Confirmation::Declined => {
                report.error("confirm", None, None, "declined; nothing was changed");
                return done(report, true, false);
            }
            Confirmation::CannotAsk => {
                report.error(
                    "confirm",
                    None,
                    None,
                    "stdin is not a terminal, so cannot ask for confirmation; pass --yes to apply or --dry-run to preview",
                );
                return done(report, true, false);
            }
        }
        let paths: HashMap<String, PathBuf> = hashed
            .files
            .iter()
            .map(|f| (f.file.key.clone(), f.file.path.clone()))
            .collect();
        report.results =
            execute_plan(target, &plan, &paths, &mut stamps, &request.execute, ui).await;
        interrupted = request.execute.cancel.load(Ordering::SeqCst);
    }

    // Only after the work is done, and atomically: a crash before this point
    // leaves the previous cache, which is merely slower, never wrong.
    cache.files = hashed.stamps;
    cache.remotes.insert(cache_id, stamps);
    if let Err(err) = cache.save(&request.cache_path) {
        report.error(
            "cache",
            None,
            Some(&request.cache_path.display().to_string()),
            err.to_string(),
        );
    }
    done(report, false, interrupted)
}
