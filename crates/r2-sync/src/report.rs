//! The run report: one JSON document for CI (`--json`) and the plain-text
//! renderings of the plan. Owns the exit codes. Changing a field name here
//! is a breaking change for CI users: bump [`REPORT_SCHEMA`].

use serde::Serialize;

use crate::execute::{OpResult, OpStatus};
use crate::hash_cache::HashStats;
use crate::plan::{ChangeKind, PlannedChange, SyncPlan};
use crate::remote::RemoteStats;
use crate::target::TargetInfo;

/// Identifies the report format.
pub const REPORT_SCHEMA: &str = "r2-sync.report/v1";

/// In sync, or every operation succeeded.
pub const EXIT_OK: i32 = 0;
/// At least one operation (walk, hash, list, upload, delete) failed.
pub const EXIT_FAILED: i32 = 1;
/// Bad arguments or configuration (also clap's own code).
pub const EXIT_USAGE: i32 = 2;
/// Refused: deletion guard tripped, confirmation declined or impossible.
pub const EXIT_REFUSED: i32 = 3;
/// `--exit-code` with `--dry-run`, `status` or `diff`: changes are pending.
pub const EXIT_CHANGES_PENDING: i32 = 4;
/// Interrupted (Ctrl-C); completed operations stand, re-run to finish.
pub const EXIT_INTERRUPTED: i32 = 130;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// `push`: changes were applied (after confirmation).
    Apply,
    /// `push --dry-run`, `status`, `diff`: nothing was changed.
    DryRun,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Nothing to do, or everything done.
    Ok,
    /// Dry run found changes.
    ChangesPending,
    Failed,
    Refused,
    Interrupted,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReportError {
    /// `config`, `walk`, `hash`, `list`, `head`, `plan`, `confirm`, `put`, `delete`, `cache`.
    pub stage: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    pub message: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LocalSummary {
    pub root: String,
    pub files: usize,
    pub bytes: u64,
    pub hash: HashStats,
    /// Symlinks and other non-regular entries left out.
    pub skipped_special: usize,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PlanReport {
    pub changes: Vec<PlannedChange>,
    pub unchanged: usize,
    pub remote_only_kept: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    pub upload: usize,
    pub update: usize,
    pub delete: usize,
    pub unchanged: usize,
    pub remote_only_kept: usize,
    pub succeeded: usize,
    pub failed: usize,
    pub skipped: usize,
    pub bytes_uploaded: u64,
    pub errors: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SyncReport {
    pub schema: &'static str,
    pub command: String,
    pub mode: Mode,
    pub target: TargetInfo,
    pub local: LocalSummary,
    pub remote: RemoteStats,
    pub plan: PlanReport,
    pub results: Vec<OpResult>,
    pub errors: Vec<ReportError>,
    pub totals: Totals,
    pub duration_ms: u64,
    pub outcome: Outcome,
    pub exit_code: i32,
}

impl SyncReport {
    pub fn new(command: &str, mode: Mode, target: TargetInfo) -> Self {
        Self {
            schema: REPORT_SCHEMA,
            command: command.to_owned(),
            mode,
            target,
            local: LocalSummary::default(),
            remote: RemoteStats::default(),
            plan: PlanReport::default(),
            results: Vec::new(),
            errors: Vec::new(),
            totals: Totals::default(),
            duration_ms: 0,
            outcome: Outcome::Ok,
            exit_code: EXIT_OK,
        }
    }

    pub fn error(
        &mut self,
        stage: &str,
        key: Option<&str>,
        path: Option<&str>,
        message: impl Into<String>,
    ) {
        self.errors.push(ReportError {
            stage: stage.to_owned(),
            key: key.map(str::to_owned),
            path: path.map(str::to_owned),
            message: message.into(),
        });
    }

    pub fn set_plan(&mut self, plan: &SyncPlan) {
        self.plan = PlanReport {
            changes: plan.changes.clone(),
            unchanged: plan.unchanged.len(),
            remote_only_kept: plan.remote_only_kept.clone(),
        };
    }

    /// Fills `totals`, `outcome` and `exit_code` from everything recorded.
    /// `refused` and `interrupted` come from the run; `exit_code_on_changes`
    /// is `--exit-code`.
    pub fn finish(&mut self, refused: bool, interrupted: bool, exit_code_on_changes: bool) {
        let count = |kind| self.plan.changes.iter().filter(|c| c.kind == kind).count();
        let status = |s| self.results.iter().filter(|r| r.status == s).count();
        self.totals = Totals {
            upload: count(ChangeKind::Upload),
            update: count(ChangeKind::Update),
            delete: count(ChangeKind::Delete),
            unchanged: self.plan.unchanged,
            remote_only_kept: self.plan.remote_only_kept.len(),
            succeeded: status(OpStatus::Ok),
            failed: status(OpStatus::Failed),
            skipped: status(OpStatus::Skipped),
            bytes_uploaded: self
                .results
                .iter()
                .filter(|r| r.status == OpStatus::Ok)
                .map(|r| r.bytes)
                .sum(),
            errors: self.errors.len(),
        };
        let failed = self.totals.failed > 0 || !self.errors.is_empty();
        let pending = self.mode == Mode::DryRun && !self.plan.changes.is_empty();
        (self.outcome, self.exit_code) = if interrupted {
            (Outcome::Interrupted, EXIT_INTERRUPTED)
        } else if refused {
            (Outcome::Refused, EXIT_REFUSED)
        } else if failed {
            (Outcome::Failed, EXIT_FAILED)
        } else if pending {
            let code = if exit_code_on_changes {
                EXIT_CHANGES_PENDING
            } else {
                EXIT_OK
            };
            (Outcome::ChangesPending, code)
        } else {
            (Outcome::Ok, EXIT_OK)
        };
    }
}

fn symbol(kind: ChangeKind) -> char {
    match kind {
        ChangeKind::Upload => '+',
        ChangeKind::Update => '~',
        ChangeKind::Delete => '-',
    }
}

/// One line per change: `+ key (size)`, `~ key`, `- key`.
pub fn render_plan_lines(changes: &[PlannedChange]) -> String {
    let mut out = String::new();
    for change in changes {
        out.push(symbol(change.kind));
        out.push(' ');
        out.push_str(&change.key);
        if change.kind != ChangeKind::Delete {
            out.push_str(&format!(" ({})", human_bytes(change.size)));
        }
        out.push('\n');
    }
    out
}

/// `3 to upload, 1 to update, 0 to delete, 120 unchanged (2 remote-only kept; pass --delete to remove)`.
pub fn render_plan_summary(
    changes: &[PlannedChange],
    unchanged: usize,
    remote_only_kept: usize,
) -> String {
    let count = |kind| changes.iter().filter(|c| c.kind == kind).count();
    let mut out = format!(
        "{} to upload, {} to update, {} to delete, {} unchanged",
        count(ChangeKind::Upload),
        count(ChangeKind::Update),
        count(ChangeKind::Delete),
        unchanged
    );
    if remote_only_kept > 0 {
        out.push_str(&format!(
            " ({remote_only_kept} remote-only kept; pass --delete to remove)"
        ));
    }
    out
}

pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report_with(changes: Vec<PlannedChange>, mode: Mode) -> SyncReport {
        let mut report = SyncReport::new(
            "push",
            mode,
            TargetInfo {
                kind: "s3",
                location: "x".into(),
                prefix: String::new(),
            },
        );
        report.plan.changes = changes;
        report
    }

    fn change(kind: ChangeKind) -> PlannedChange {
        PlannedChange {
            key: "k".into(),
            kind,
            size: 3,
            local_sha256: None,
            remote_sha256: None,
        }
    }

    #[test]
    fn exit_codes() {
        let mut r = report_with(vec![], Mode::DryRun);
        r.finish(false, false, true);
        assert_eq!((r.outcome, r.exit_code), (Outcome::Ok, EXIT_OK));

        let mut r = report_with(vec![change(ChangeKind::Upload)], Mode::DryRun);
        r.finish(false, false, true);
        assert_eq!(
            (r.outcome, r.exit_code),
            (Outcome::ChangesPending, EXIT_CHANGES_PENDING)
        );
        r.finish(false, false, false);
        assert_eq!(r.exit_code, EXIT_OK);

        let mut r = report_with(vec![change(ChangeKind::Delete)], Mode::Apply);
        r.finish(true, false, false);
        assert_eq!(r.exit_code, EXIT_REFUSED);

        let mut r = report_with(vec![change(ChangeKind::Upload)], Mode::Apply);
        r.results.push(OpResult {
            key: "k".into(),
            action: ChangeKind::Upload,
            status: OpStatus::Failed,
            bytes: 0,
            multipart: false,
            error_kind: None,
            error: Some("boom".into()),
        });
        r.finish(false, false, false);
        assert_eq!(
            (r.outcome, r.exit_code, r.totals.failed),
            (Outcome::Failed, EXIT_FAILED, 1)
        );
        r.finish(false, true, false);
        assert_eq!(r.exit_code, EXIT_INTERRUPTED);
    }

    #[test]
    fn plan_renderings() {
        let changes = vec![
            PlannedChange {
                key: "a.md".into(),
                ..change(ChangeKind::Upload)
            },
            PlannedChange {
                key: "b.md".into(),
                ..change(ChangeKind::Delete)
            },
        ];
        assert_eq!(render_plan_lines(&changes), "+ a.md (3 B)\n- b.md\n");
        assert_eq!(
            render_plan_summary(&changes, 1, 0),
            "1 to upload, 0 to update, 1 to delete, 1 unchanged"
        );
        assert_eq!(
            render_plan_summary(&[], 0, 2),
            "0 to upload, 0 to update, 0 to delete, 0 unchanged (2 remote-only kept; pass --delete to remove)"
        );
        assert_eq!(human_bytes(1536), "1.5 KiB");
    }
}
