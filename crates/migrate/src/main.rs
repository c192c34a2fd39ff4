//! `migrate`: argument parsing, terminal interaction and wiring. Every
//! decision lives in the library.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Mutex;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use migrate::backup::{run_backup, run_restore_backup};
use migrate::clock::{Clock, SystemClock};
use migrate::corpus::{run_corpus, CorpusOptions};
use migrate::export::{run_export, ExportOptions, ExportProgress, DEFAULT_PAGE_SIZE};
use migrate::import::{run_import, ImportOptions, ImportProgress, DEFAULT_CONCURRENCY};
use migrate::postgres::Database;
use migrate::rollback::{run_restore, run_rollback_export};
use migrate::runlog::{RunLog, RUN_LOG_FILE};
use migrate::source::SourceCounts;
use migrate::target::{AdminToken, ServiceTarget};
use migrate::target_spec::{resolve_target, wrangler_environments};
use migrate::verify::{render_markdown, run_verify, ParityOptions, VerifyOptions};

/// Move a Supabase Postgres into the service, verify it, and go back.
///
/// Exit codes: 0 ok, 1 the run failed, 2 usage or configuration error.
#[derive(Debug, Parser)]
#[command(name = "migrate", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Export companies, documents and chunk metadata to JSONL + manifest.
    Export(ExportArgs),
    /// Import an export into the service through its admin API.
    Import(ImportArgs),
    /// Write an export's documents as the corpus folder r2-sync pushes
    /// (<out>/<key>, the bytes import uploads), so the first sync after the
    /// migration uploads nothing.
    Corpus(CorpusArgs),
    /// Check that an import arrived: counts, checksums, readiness, parity.
    Verify(VerifyArgs),
    /// Export the service's companies and documents (with content) to go back.
    RollbackExport(RollbackExportArgs),
    /// Write an export (e.g. from rollback-export) into a Postgres with the Supabase schema.
    Restore(RestoreArgs),
    /// Back up the service's base data (companies, documents, every R2 object's bytes).
    Backup(BackupArgs),
    /// Restore a backup into a service; its ingestion rebuilds chunks, FTS and vectors.
    RestoreBackup(RestoreBackupArgs),
}

#[derive(Debug, Args)]
struct CorpusArgs {
    /// Export directory (written by `export`).
    #[arg(long)]
    from: PathBuf,
    /// The corpus folder (the repository's `corpus/`); created if missing.
    #[arg(long)]
    out: PathBuf,
    /// Replace files that hold something else (otherwise listed, exit 1).
    #[arg(long)]
    force: bool,
    /// Report what would be written; write nothing.
    #[arg(long, short = 'n')]
    dry_run: bool,
    /// Print one machine-readable JSON report on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct BackupArgs {
    #[command(flatten)]
    service: TargetArgs,
    /// Directory to write the backup into (must not hold one already).
    #[arg(long)]
    out: PathBuf,
    /// Print one machine-readable JSON report on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct RestoreBackupArgs {
    /// Backup directory (written by `backup`).
    #[arg(long)]
    from: PathBuf,
    #[command(flatten)]
    service: TargetArgs,
    /// Wait up to this many seconds for the documents that were ready at
    /// backup time to be ready again.
    #[arg(long, value_name = "SECONDS")]
    wait: Option<u64>,
    /// Check the backup and report what would be written; change nothing.
    #[arg(long, short = 'n')]
    dry_run: bool,
    /// Print one machine-readable JSON report on stdout.
    #[arg(long)]
    json: bool,
}

/// Help of `--ca-cert`, the same on every command that connects to Postgres.
const CA_CERT_HELP: &str = "CA certificate(s), PEM, to trust besides the system's and Mozilla's \
roots (besides the system's only with sslrootcert=system; as sslrootcert=FILE in the URL). Needs \
sslmode=verify-full, verify-ca or require in the URL; with require it makes the chain checked, \
as libpq does";

/// The service and the admin token to call it with.
#[derive(Debug, Args)]
struct TargetArgs {
    /// The service: a base URL (http://… or https://…), `local`
    /// (http://localhost:8787, where scripts/dev.sh serves it), or an
    /// environment of wrangler.jsonc (dev, staging, production) whose URL
    /// is in the variable MIGRATE_TARGET_URL_<ENV>, e.g.
    /// MIGRATE_TARGET_URL_STAGING.
    #[arg(long, env = "MIGRATE_TARGET", value_name = "URL|local|ENV")]
    target: String,
    /// File holding the admin token (otherwise env ADMIN_TOKEN).
    #[arg(long)]
    admin_token_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct RollbackExportArgs {
    #[command(flatten)]
    service: TargetArgs,
    /// Directory to write into (must not hold an export already).
    #[arg(long)]
    out: PathBuf,
    /// The export the service was migrated from: documents still unchanged
    /// go back as their original rows (content without the added front matter).
    #[arg(long)]
    original: Option<PathBuf>,
    #[command(flatten)]
    common: Common,
}

#[derive(Debug, Args)]
struct RestoreArgs {
    /// Export directory to restore.
    #[arg(long)]
    from: PathBuf,
    /// Postgres URL of the database to restore into (never logged);
    /// `?sslmode=` and `sslrootcert=` as for export; not a transaction pooler.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: String,
    #[arg(long, value_name = "FILE", help = CA_CERT_HELP)]
    ca_cert: Option<PathBuf>,
    #[command(flatten)]
    common: Common,
}

#[derive(Debug, Args)]
struct VerifyArgs {
    /// Export directory the import read.
    #[arg(long)]
    from: PathBuf,
    #[command(flatten)]
    service: TargetArgs,
    /// Source Postgres URL, for answer parity (skipped without it); never
    /// logged. `?sslmode=`, `sslrootcert=` and poolers as for export.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    #[arg(long, value_name = "FILE", help = CA_CERT_HELP)]
    ca_cert: Option<PathBuf>,
    /// SQL function the source uses to embed a question for hybrid_search.
    #[arg(long, default_value = "embed_query")]
    embed_function: String,
    /// Documents compared per question (overlap@k).
    #[arg(long, default_value_t = 5)]
    k: usize,
    /// Mean overlap@k below this fails the report.
    #[arg(long, default_value_t = 0.6)]
    threshold: f64,
    /// Questions, one per line (plain text or JSON {"question","company"}); default: document headings.
    #[arg(long)]
    questions: Option<PathBuf>,
    /// Most questions asked.
    #[arg(long, default_value_t = 30)]
    max_questions: usize,
    /// Directory for verify-report.json and verify-report.md (default: --from).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Print the JSON report on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct ImportArgs {
    /// Export directory (written by `export`).
    #[arg(long)]
    from: PathBuf,
    #[command(flatten)]
    service: TargetArgs,
    /// Import at most this many documents (in export order).
    #[arg(long)]
    limit: Option<u64>,
    /// Document uploads in flight at once.
    #[arg(long, default_value_t = DEFAULT_CONCURRENCY)]
    concurrency: usize,
    /// Wait up to this many seconds for every imported document to be ready.
    #[arg(long, value_name = "SECONDS")]
    wait: Option<u64>,
    /// Continue an interrupted import. Every import plans against what the
    /// service already holds (by SHA-256), so this is the same as running
    /// it again; the flag is accepted for scripts that say what they mean.
    #[arg(long)]
    resume: bool,
    #[command(flatten)]
    common: Common,
}

#[derive(Debug, Args)]
struct Common {
    /// Print one machine-readable JSON report on stdout.
    #[arg(long)]
    json: bool,
    /// Change nothing; report what would happen.
    #[arg(long, short = 'n')]
    dry_run: bool,
    /// Only errors and the final summary.
    #[arg(short, long)]
    quiet: bool,
    /// Run log (JSONL; default <dir>/migrate-log.jsonl).
    #[arg(long)]
    log: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct ExportArgs {
    /// Postgres URL of the source (never logged). TLS follows its
    /// `?sslmode=`: disable, prefer (the default: TLS if offered),
    /// require (TLS, certificate unchecked), verify-ca or verify-full;
    /// `sslrootcert=system` means verify-full against the system's CAs
    /// only, as in libpq. Not Supabase's transaction pooler (port 6543,
    /// refused): use its session pooler (port 5432) or the direct connection.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: String,
    #[arg(long, value_name = "FILE", help = CA_CERT_HELP)]
    ca_cert: Option<PathBuf>,
    /// Directory to write the export into (must not hold one already).
    #[arg(long)]
    out: PathBuf,
    /// Export at most this many documents (and their chunks).
    #[arg(long)]
    limit: Option<u64>,
    /// Rows per source query.
    #[arg(long, default_value_t = DEFAULT_PAGE_SIZE)]
    page_size: u32,
    #[command(flatten)]
    common: Common,
}

/// A progress bar on a terminal, nothing otherwise.
struct Bar(Mutex<Option<ProgressBar>>);

impl std::fmt::Debug for Bar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Bar")
    }
}

impl Bar {
    fn new(enabled: bool) -> Self {
        Self(Mutex::new(enabled.then(|| {
            let bar = ProgressBar::new(0);
            if let Ok(style) = ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {per_sec} {wide_msg}",
            ) {
                bar.set_style(style);
            }
            bar
        })))
    }

    fn with(&self, f: impl FnOnce(&ProgressBar)) {
        if let Ok(slot) = self.0.lock() {
            if let Some(bar) = slot.as_ref() {
                f(bar);
            }
        }
    }

    fn finish(&self) {
        self.with(ProgressBar::finish_and_clear);
    }
}

impl ExportProgress for Bar {
    fn started(&self, _counts: &SourceCounts, documents_to_export: u64) {
        self.with(|b| {
            b.set_length(documents_to_export);
            b.set_message("documents");
        });
    }
    fn documents_done(&self, done: u64) {
        self.with(|b| b.set_position(done));
    }
}

impl ImportProgress for Bar {
    fn documents_started(&self, total: u64) {
        self.with(|b| {
            b.set_length(total);
            b.set_position(0);
        });
    }
    fn document_done(&self, key: &str) {
        self.with(|b| {
            b.inc(1);
            b.set_message(key.to_owned());
        });
    }
}

fn env_nonempty(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn admin_token(file: Option<&std::path::Path>) -> Result<AdminToken> {
    let token = match file {
        Some(file) => {
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?
        }
        None => env_nonempty("ADMIN_TOKEN")
            .context("no admin token: set ADMIN_TOKEN or pass --admin-token-file")?,
    };
    let token = token.trim();
    anyhow::ensure!(!token.is_empty(), "the admin token is empty");
    Ok(AdminToken::new(token))
}

/// The service a `--target` names, with the admin token.
fn service_target(args: &TargetArgs) -> Result<ServiceTarget> {
    let url = resolve_target(&args.target, &wrangler_environments()?, env_nonempty)?;
    let token = admin_token(args.admin_token_file.as_deref())?;
    Ok(ServiceTarget::new(&url, token)?)
}

async fn import(args: ImportArgs) -> Result<i32> {
    let clock = SystemClock::new();
    let common = &args.common;
    let target = service_target(&args.service)?;
    let mut log = open_log(common, &args.from, "import", &clock)?;
    let bar = Bar::new(std::io::stderr().is_terminal() && !common.json && !common.quiet);
    let options = ImportOptions {
        from: args.from.clone(),
        dry_run: common.dry_run,
        limit: args.limit,
        concurrency: args.concurrency.max(1),
        wait: args.wait.map(std::time::Duration::from_secs),
    };
    let result = run_import(&options, &target, &clock, &mut log, &bar).await;
    bar.finish();
    match result {
        Ok(report) => {
            if common.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                let c = &report.companies;
                let d = &report.documents;
                println!(
                    "{}companies: {} in the export, {} written, {} unchanged, {} unusable",
                    if report.dry_run { "(dry run) " } else { "" },
                    c.source,
                    c.written,
                    c.unchanged,
                    c.unusable.len()
                );
                println!(
                    "documents: {} in the export, {} uploaded, {} unchanged, {} unusable, {} failed, {} with notes",
                    d.source, d.uploaded, d.unchanged, d.unusable.len(), d.failed.len(), d.notes.len()
                );
                for u in d.unusable.iter().chain(&c.unusable) {
                    println!("  unusable {:?}: {}", u.path, u.reason);
                }
                for f in &d.failed {
                    eprintln!("  FAILED {}: {}", f.path, f.reason);
                }
                if let Some(r) = &report.ready {
                    println!(
                        "ingestion: {} ready, {} failed, {} pending after {:.1} s",
                        r.ready,
                        r.failed.len(),
                        r.pending.len(),
                        r.waited_ms as f64 / 1000.0
                    );
                }
                println!("took {:.1} s", report.duration_ms as f64 / 1000.0);
            }
            Ok(report.exit_code)
        }
        Err(err) => {
            let _ = log.record(
                clock.now_ms(),
                "error",
                json!({ "stage": err.stage(), "message": err.to_string() }),
            );
            if common.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&json!({
                        "command": "import",
                        "error": { "stage": err.stage(), "message": err.to_string() },
                        "exit_code": 1,
                    }))?
                );
            } else {
                eprintln!("migrate import: {} failed: {err}", err.stage());
            }
            Ok(1)
        }
    }
}

async fn verify(args: VerifyArgs) -> Result<i32> {
    let clock = SystemClock::new();
    let target = service_target(&args.service)?;
    let database = args
        .database_url
        .clone()
        .map(|url| Database::new(url).with_ca_cert(args.ca_cert.clone()));
    if let Some(database) = &database {
        // A mistake in the URL or --ca-cert, or a transaction pooler, stops the run
        // before its checks, not after.
        database.check()?;
    }
    let options = VerifyOptions {
        from: args.from.clone(),
        out: args.out.clone().unwrap_or_else(|| args.from.clone()),
        parity: database.map(|database| ParityOptions {
            database,
            embed_function: args.embed_function.clone(),
            k: args.k.max(1),
            threshold: args.threshold,
            questions: args.questions.clone(),
            max_questions: args.max_questions,
        }),
    };
    match run_verify(&options, &target, &clock).await {
        Ok(report) => {
            if args.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", render_markdown(&report));
            }
            Ok(report.exit_code)
        }
        Err(err) => {
            let code = if err.stage() == "config" { 2 } else { 1 };
            if args.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&json!({
                        "command": "verify",
                        "error": { "stage": err.stage(), "message": err.to_string() },
                        "exit_code": code,
                    }))?
                );
            } else {
                eprintln!("migrate verify: {} failed: {err}", err.stage());
            }
            Ok(code)
        }
    }
}

/// Prints a report (JSON or one line) or the error, and returns the exit
/// code: 2 for a configuration error (stage `config`), 1 for other failures.
fn finish<T: serde::Serialize, E: std::fmt::Display>(
    command: &str,
    json_out: bool,
    result: std::result::Result<T, E>,
    stage: impl Fn(&E) -> &'static str,
    line: impl Fn(&T) -> String,
) -> Result<i32> {
    match result {
        Ok(report) => {
            if json_out {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!("{}", line(&report));
            }
            Ok(0)
        }
        Err(err) => {
            let code = if stage(&err) == "config" { 2 } else { 1 };
            if json_out {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&json!({
                        "command": command,
                        "error": { "stage": stage(&err), "message": err.to_string() },
                        "exit_code": code,
                    }))?
                );
            } else {
                eprintln!("migrate {command}: {} failed: {err}", stage(&err));
            }
            Ok(code)
        }
    }
}

async fn rollback_export(args: RollbackExportArgs) -> Result<i32> {
    let clock = SystemClock::new();
    let target = service_target(&args.service)?;
    let mut log = open_log(&args.common, &args.out, "rollback-export", &clock)?;
    let result = run_rollback_export(
        &target,
        &args.out,
        args.original.as_deref(),
        &clock,
        &mut log,
    )
    .await;
    finish(
        "rollback-export",
        args.common.json,
        result,
        |e| e.stage(),
        |r| {
            format!(
                "exported {} companies and {} documents from {} in {:.1} s",
                r.companies,
                r.documents,
                r.target,
                r.duration_ms as f64 / 1000.0
            )
        },
    )
}

async fn restore(args: RestoreArgs) -> Result<i32> {
    let clock = SystemClock::new();
    let database = Database::new(args.database_url.clone()).with_ca_cert(args.ca_cert.clone());
    let result = run_restore(&args.from, &database, args.common.dry_run, &clock).await;
    finish(
        "restore",
        args.common.json,
        result,
        |e| e.stage(),
        |r| {
            format!(
            "{}restored into {}: {} companies written, documents {} inserted, {} updated, {} unchanged; {} need re-embedding",
            if r.dry_run { "(dry run, rolled back) " } else { "" },
            r.database, r.companies_written, r.documents_inserted, r.documents_updated,
            r.documents_unchanged, r.reembed.len()
        )
        },
    )
}

fn corpus(args: &CorpusArgs) -> Result<i32> {
    let options = CorpusOptions {
        from: args.from.clone(),
        out: args.out.clone(),
        force: args.force,
        dry_run: args.dry_run,
    };
    let result = run_corpus(&options);
    // Files left alone because they differ, or not written, fail the run.
    let incomplete = result.as_ref().is_ok_and(|r| r.exit_code != 0);
    let code = finish(
        "corpus",
        args.json,
        result,
        |e| e.stage(),
        |r| {
            let mut text = format!(
                "{}{}: {} written, {} unchanged, {} overwritten, {} conflicts, {} unusable, {} failed",
                if r.dry_run { "(dry run) " } else { "" },
                r.out, r.written, r.unchanged, r.overwritten, r.conflicts.len(),
                r.unusable.len(), r.failed.len()
            );
            for key in &r.conflicts {
                text.push_str(&format!("\n  differs (kept; --force replaces it): {key}"));
            }
            for key in &r.hidden {
                text.push_str(&format!(
                    "\n  dot-file, pushed only with r2-sync --hidden: {key}"
                ));
            }
            for u in r.unusable.iter().chain(&r.failed) {
                text.push_str(&format!("\n  {:?}: {}", u.path, u.reason));
            }
            text
        },
    )?;
    Ok(if code == 0 && incomplete { 1 } else { code })
}

async fn backup(args: BackupArgs) -> Result<i32> {
    let clock = SystemClock::new();
    let target = service_target(&args.service)?;
    let result = run_backup(&target, &args.out, &clock).await;
    finish(
        "backup",
        args.json,
        result,
        |e| e.stage(),
        |r| {
            format!(
                "backed up {} companies, {} documents ({} objects, {} bytes) from {} in {:.1} s",
                r.companies,
                r.documents,
                r.objects,
                r.object_bytes,
                r.service,
                r.duration_ms as f64 / 1000.0
            )
        },
    )
}

async fn restore_backup(args: RestoreBackupArgs) -> Result<i32> {
    let clock = SystemClock::new();
    let target = service_target(&args.service)?;
    let wait = args.wait.map(std::time::Duration::from_secs);
    let result = run_restore_backup(&args.from, &target, args.dry_run, wait, &clock).await;
    // Documents that did not come back ready fail the run.
    let incomplete = result
        .as_ref()
        .is_ok_and(|r| !r.failed.is_empty() || !r.pending.is_empty());
    let code = finish(
        "restore-backup",
        args.json,
        result,
        |e| e.stage(),
        |r| {
            format!(
                "{}restored into {}: companies {} written, {} unchanged; documents {} uploaded, {} unchanged; {} legacy ids; ready {}, failed {}, pending {}",
                if r.dry_run { "(dry run) " } else { "" },
                r.service, r.companies_written, r.companies_unchanged, r.documents_uploaded,
                r.documents_unchanged, r.legacy_ids_mapped, r.ready, r.failed.len(), r.pending.len()
            )
        },
    )?;
    Ok(if code == 0 && incomplete { 1 } else { code })
}

fn open_log(
    common: &Common,
    dir: &std::path::Path,
    command: &str,
    clock: &dyn Clock,
) -> Result<RunLog> {
    if common.dry_run && common.log.is_none() {
        return Ok(RunLog::disabled(command));
    }
    let path = common.log.clone().unwrap_or_else(|| dir.join(RUN_LOG_FILE));
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    RunLog::open(&path, command, &format!("{command}-{}", clock.now_ms()))
        .with_context(|| format!("opening the run log {}", path.display()))
}

async fn export(args: ExportArgs) -> Result<i32> {
    let clock = SystemClock::new();
    let common = &args.common;
    let mut log = open_log(common, &args.out, "export", &clock)?;
    let bar = Bar::new(std::io::stderr().is_terminal() && !common.json && !common.quiet);
    let options = ExportOptions {
        database: Database::new(args.database_url.clone()).with_ca_cert(args.ca_cert.clone()),
        out: args.out.clone(),
        limit: args.limit,
        page_size: args.page_size,
        dry_run: common.dry_run,
    };
    let result = run_export(&options, &clock, &mut log, &bar).await;
    bar.finish();
    match result {
        Ok(report) => {
            if common.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                let n = |m: &std::collections::BTreeMap<String, u64>, k: &str| {
                    m.get(k).copied().unwrap_or(0)
                };
                println!(
                    "{} {}: companies {}/{}, documents {}/{}, chunks {}/{} in {:.1} s",
                    if report.dry_run {
                        "would export from"
                    } else {
                        "exported from"
                    },
                    report.source,
                    n(&report.exported, "companies"),
                    n(&report.source_counts, "companies"),
                    n(&report.exported, "documents"),
                    n(&report.source_counts, "documents"),
                    n(&report.exported, "chunks"),
                    n(&report.source_counts, "chunks"),
                    report.duration_ms as f64 / 1000.0
                );
            }
            Ok(0)
        }
        Err(err) => {
            let _ = log.record(
                clock.now_ms(),
                "error",
                json!({ "stage": err.stage(), "message": err.to_string() }),
            );
            let code = if err.stage() == "config" { 2 } else { 1 };
            if common.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&json!({
                        "command": "export",
                        "error": { "stage": err.stage(), "message": err.to_string() },
                        "exit_code": code,
                    }))?
                );
            } else {
                eprintln!("migrate export: {} failed: {err}", err.stage());
            }
            Ok(code)
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Export(args) => export(args).await,
        Command::Import(args) => import(args).await,
        Command::Corpus(args) => corpus(&args),
        Command::Verify(args) => verify(args).await,
        Command::RollbackExport(args) => rollback_export(args).await,
        Command::Restore(args) => restore(args).await,
        Command::Backup(args) => backup(args).await,
        Command::RestoreBackup(args) => restore_backup(args).await,
    };
    match result {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(err) => {
            eprintln!("migrate: {err:#}");
            ExitCode::from(2)
        }
    }
}
