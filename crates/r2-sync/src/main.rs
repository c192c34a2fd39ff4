//! `r2-sync`: argument parsing, configuration from flags/environment/profile,
//! terminal interaction and wiring. Every decision lives in the library.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};

use r2_sync::execute::{ExecuteOptions, OpResult, OpStatus, ProgressSink, DEFAULT_CONCURRENCY};
use r2_sync::hash_cache::DEFAULT_CACHE_FILE;
use r2_sync::key::normalize_prefix;
use r2_sync::plan::{ChangeKind, DeleteGuard, SyncPlan};
use r2_sync::profile::parse_profile;
use r2_sync::report::{self, Mode, SyncReport, EXIT_USAGE};
use r2_sync::retry::RetryPolicy;
use r2_sync::run::{run_sync, Confirmation, SyncRequest, SyncUi};
use r2_sync::target::ingest_api::{AdminToken, IngestApiConfig, IngestApiTarget};
use r2_sync::target::s3::{
    S3Config, S3Credentials, S3Target, DEFAULT_MULTIPART_THRESHOLD, DEFAULT_PART_CONCURRENCY,
    DEFAULT_PART_SIZE,
};
use r2_sync::target::TargetInfo;
use r2_sync::walk::{WalkOptions, DEFAULT_IGNORE_FILE};

/// Push a local folder of markdown documents to R2 (S3 API) or to the
/// service's ingest API, by SHA-256.
///
/// Credentials come only from the environment or a profile file, never from
/// flags: R2_ACCESS_KEY_ID / R2_SECRET_ACCESS_KEY (or AWS_ACCESS_KEY_ID /
/// AWS_SECRET_ACCESS_KEY), ADMIN_TOKEN for the ingest API.
///
/// Exit codes: 0 ok, 1 an operation failed, 2 usage/configuration error,
/// 3 refused (deletion guard, confirmation declined or impossible),
/// 4 changes pending (with --exit-code on a dry run), 130 interrupted.
#[derive(Debug, Parser)]
#[command(name = "r2-sync", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Upload new and changed files (and delete remote-only ones with --delete).
    Push {
        #[command(flatten)]
        sync: SyncArgs,
        /// Apply without asking.
        #[arg(short, long)]
        yes: bool,
        /// Print the plan and change nothing.
        #[arg(long, short = 'n')]
        dry_run: bool,
    },
    /// Summarise what a push would do (changes nothing).
    Status {
        #[command(flatten)]
        sync: SyncArgs,
    },
    /// List every change a push would make (changes nothing).
    Diff {
        #[command(flatten)]
        sync: SyncArgs,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum TargetKind {
    /// An S3-compatible bucket (R2's S3 API).
    S3,
    /// The service's admin ingest API (`/admin/documents/{key}`).
    IngestApi,
}

#[derive(Debug, Args)]
struct SyncArgs {
    /// The folder to sync.
    dir: PathBuf,

    /// Where to sync to.
    #[arg(long, value_enum, env = "R2_SYNC_TARGET", default_value = "s3")]
    target: TargetKind,
    /// S3 endpoint, e.g. https://<account>.r2.cloudflarestorage.com.
    #[arg(long, env = "R2_ENDPOINT")]
    endpoint: Option<String>,
    #[arg(long, env = "R2_BUCKET")]
    bucket: Option<String>,
    #[arg(long, env = "R2_REGION", default_value = "auto")]
    region: String,
    /// Key prefix; nothing outside it is ever listed, changed or deleted.
    #[arg(long, env = "R2_PREFIX", default_value = "")]
    prefix: String,
    /// Read S3 credentials from this profile of the shared credentials file.
    #[arg(long, env = "R2_PROFILE")]
    profile: Option<String>,
    /// Shared credentials file (default ~/.aws/credentials).
    #[arg(long, env = "AWS_SHARED_CREDENTIALS_FILE")]
    credentials_file: Option<PathBuf>,
    /// Base URL of the service for --target ingest-api, e.g. http://localhost:8787.
    #[arg(long, env = "R2_SYNC_API_URL")]
    api_url: Option<String>,
    /// File holding the admin token (otherwise env ADMIN_TOKEN).
    #[arg(long)]
    admin_token_file: Option<PathBuf>,

    /// Only files whose relative path matches one of these globs (repeatable).
    #[arg(long, value_name = "GLOB")]
    include: Vec<String>,
    /// Leave out files matching these globs (repeatable).
    #[arg(long, value_name = "GLOB")]
    exclude: Vec<String>,
    /// Gitignore-style file honoured in every directory.
    #[arg(long, default_value = DEFAULT_IGNORE_FILE)]
    ignore_file: String,
    /// Include dot-files and dot-directories (.git never).
    #[arg(long)]
    hidden: bool,
    /// State cache file (default <dir>/.r2-sync-cache.json).
    #[arg(long)]
    cache: Option<PathBuf>,
    /// Re-hash every file instead of trusting unchanged size + mtime.
    #[arg(long)]
    checksum: bool,

    /// Delete remote objects that no longer exist locally.
    #[arg(long)]
    delete: bool,
    /// Allow deleting more than --max-delete-percent of the remote objects.
    #[arg(long)]
    force: bool,
    /// Largest share of remote objects one run may delete without --force.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(0..=100))]
    max_delete_percent: u32,

    /// Print one machine-readable JSON report on stdout.
    #[arg(long)]
    json: bool,
    /// Exit 4 when a dry run (status, diff, push --dry-run) finds changes.
    #[arg(long)]
    exit_code: bool,
    /// Only errors and the final summary.
    #[arg(short, long)]
    quiet: bool,
    /// Operations in flight at once.
    #[arg(long, default_value_t = DEFAULT_CONCURRENCY)]
    concurrency: usize,
    /// Files larger than this many bytes are sent as multipart uploads.
    #[arg(long, default_value_t = DEFAULT_MULTIPART_THRESHOLD)]
    multipart_threshold: u64,
    /// Multipart part size in bytes (at least 5 MiB).
    #[arg(long, default_value_t = DEFAULT_PART_SIZE)]
    part_size: usize,
    /// Retries of a request on 5xx, 429, timeouts and dropped connections.
    #[arg(long, default_value_t = 5)]
    retries: u32,
    /// Open a new connection per request (for fault-injection tests).
    #[arg(long, hide = true)]
    no_connection_reuse: bool,
}

/// Terminal interaction: progress bars on a terminal, plain lines otherwise.
struct CliUi {
    json: bool,
    quiet: bool,
    yes: bool,
    stderr_tty: bool,
    stdin_tty: bool,
    bar: Mutex<Option<ProgressBar>>,
}

impl std::fmt::Debug for CliUi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CliUi").finish_non_exhaustive()
    }
}

impl CliUi {
    fn bars(&self) -> bool {
        self.stderr_tty && !self.json && !self.quiet
    }
}

impl ProgressSink for CliUi {
    fn execution_started(&self, operations: usize, _bytes: u64) {
        if !self.bars() {
            return;
        }
        let bar = ProgressBar::new(operations as u64);
        if let Ok(style) = ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {per_sec} {wide_msg}",
        ) {
            bar.set_style(style);
        }
        if let Ok(mut slot) = self.bar.lock() {
            *slot = Some(bar);
        }
    }

    fn op_finished(&self, result: &OpResult) {
        let verb = match result.action {
            ChangeKind::Upload => "uploaded",
            ChangeKind::Update => "updated",
            ChangeKind::Delete => "deleted",
        };
        let line = match result.status {
            OpStatus::Ok => format!("{verb} {}", result.key),
            OpStatus::Failed => format!(
                "FAILED {}: {}",
                result.key,
                result.error.as_deref().unwrap_or("")
            ),
            OpStatus::Skipped => format!("skipped {}", result.key),
        };
        if self.bars() {
            if let Ok(slot) = self.bar.lock() {
                if let Some(bar) = slot.as_ref() {
                    bar.inc(1);
                    bar.set_message(result.key.clone());
                    if result.status == OpStatus::Failed {
                        bar.println(line);
                    }
                }
            }
        } else if result.status == OpStatus::Failed {
            eprintln!("{line}");
        } else if !self.json && !self.quiet {
            println!("{line}");
        }
    }

    fn execution_finished(&self) {
        if let Ok(mut slot) = self.bar.lock() {
            if let Some(bar) = slot.take() {
                bar.finish_and_clear();
            }
        }
    }
}

impl SyncUi for CliUi {
    fn notice(&self, message: &str) {
        if self.bars() {
            eprintln!("{message}…");
        }
    }

    fn confirm(&self, plan: &SyncPlan) -> Confirmation {
        if self.yes {
            return Confirmation::Proceed;
        }
        if !self.stdin_tty {
            return Confirmation::CannotAsk;
        }
        if !self.json {
            print!("{}", report::render_plan_lines(&plan.changes));
            println!(
                "{}",
                report::render_plan_summary(
                    &plan.changes,
                    plan.unchanged.len(),
                    plan.remote_only_kept.len()
                )
            );
        }
        eprint!("Apply these changes? [y/N] ");
        let _ = std::io::stderr().flush();
        let mut answer = String::new();
        if std::io::stdin().lock().read_line(&mut answer).is_err() {
            return Confirmation::Declined;
        }
        match answer.trim().to_ascii_lowercase().as_str() {
            "y" | "yes" => Confirmation::Proceed,
            _ => Confirmation::Declined,
        }
    }
}

fn env_nonempty(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn s3_credentials(args: &SyncArgs) -> Result<(S3Credentials, Option<String>)> {
    if let Some(name) = &args.profile {
        let file = match &args.credentials_file {
            Some(file) => file.clone(),
            None => PathBuf::from(
                env_nonempty("HOME").context("HOME is not set; pass --credentials-file")?,
            )
            .join(".aws")
            .join("credentials"),
        };
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("reading {}", file.display()))?;
        let profile = parse_profile(&text, &file.display().to_string(), name)?;
        return Ok((profile.credentials, profile.endpoint_url));
    }
    let pair = |id: &str, secret: &str| Some((env_nonempty(id)?, env_nonempty(secret)?));
    let Some((access_key_id, secret_access_key)) = pair("R2_ACCESS_KEY_ID", "R2_SECRET_ACCESS_KEY")
        .or_else(|| pair("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"))
    else {
        bail!("no S3 credentials: set R2_ACCESS_KEY_ID and R2_SECRET_ACCESS_KEY (or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY), or pass --profile");
    };
    Ok((
        S3Credentials {
            access_key_id,
            secret_access_key,
            session_token: env_nonempty("AWS_SESSION_TOKEN"),
        },
        None,
    ))
}

fn admin_token(args: &SyncArgs) -> Result<AdminToken> {
    let token = match &args.admin_token_file {
        Some(file) => {
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?
        }
        None => env_nonempty("ADMIN_TOKEN")
            .context("no admin token: set ADMIN_TOKEN or pass --admin-token-file")?,
    };
    let token = token.trim();
    if token.is_empty() {
        bail!("the admin token is empty");
    }
    Ok(AdminToken::new(token))
}

fn retry_policy(args: &SyncArgs) -> RetryPolicy {
    RetryPolicy {
        max_retries: args.retries,
        ..RetryPolicy::default()
    }
}

enum AnyTarget {
    S3(S3Target),
    Ingest(IngestApiTarget),
}

fn build_target(args: &SyncArgs, prefix: &str) -> Result<AnyTarget> {
    match args.target {
        TargetKind::S3 => {
            let (credentials, profile_endpoint) = s3_credentials(args)?;
            let endpoint = args
                .endpoint
                .clone()
                .or(profile_endpoint)
                .context("no endpoint: pass --endpoint or set R2_ENDPOINT")?;
            let bucket = args
                .bucket
                .clone()
                .context("no bucket: pass --bucket or set R2_BUCKET")?;
            let mut config = S3Config::new(endpoint, bucket, prefix.to_owned(), credentials);
            config.region = args.region.clone();
            config.multipart_threshold = args.multipart_threshold;
            config.part_size = args.part_size;
            config.part_concurrency = DEFAULT_PART_CONCURRENCY;
            config.retry = retry_policy(args);
            config.reuse_connections = !args.no_connection_reuse;
            Ok(AnyTarget::S3(S3Target::new(config)?))
        }
        TargetKind::IngestApi => {
            let base = args
                .api_url
                .clone()
                .context("no API URL: pass --api-url or set R2_SYNC_API_URL")?;
            let mut config = IngestApiConfig::new(base, admin_token(args)?, prefix.to_owned());
            config.retry = retry_policy(args);
            Ok(AnyTarget::Ingest(IngestApiTarget::new(config)?))
        }
    }
}

// A native CLI may read the clock; the workspace ban is about wasm.
#[allow(clippy::disallowed_methods)]
fn clocks() -> (Instant, u64) {
    // Files modified in the last two seconds are hashed but not stamped (see
    // `HashOptions::trust_before_ns`).
    let trust_before = SystemTime::now()
        .checked_sub(Duration::from_secs(2))
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    (Instant::now(), trust_before)
}

fn print_human(report: &SyncReport, plan_lines: Option<String>, summary: &str) {
    if let Some(lines) = plan_lines {
        print!("{lines}");
    }
    for err in &report.errors {
        let place = err.key.as_deref().or(err.path.as_deref()).unwrap_or("");
        eprintln!(
            "error [{}] {place}{}{}",
            err.stage,
            if place.is_empty() { "" } else { ": " },
            err.message
        );
    }
    let planned = !report
        .errors
        .iter()
        .any(|e| matches!(e.stage.as_str(), "config" | "list" | "plan"));
    if report.mode == Mode::Apply && !report.results.is_empty() {
        let t = &report.totals;
        println!(
            "{summary}\n{} succeeded, {} failed, {} skipped, {} sent in {:.1} s",
            t.succeeded,
            t.failed,
            t.skipped,
            report::human_bytes(t.bytes_uploaded),
            report.duration_ms as f64 / 1000.0
        );
    } else if planned && !(report.mode == Mode::Apply && report.outcome == report::Outcome::Refused)
    {
        println!("{summary}");
    }
}

async fn run(cli: Cli) -> Result<i32> {
    let (command, sync, yes, dry_run) = match cli.command {
        Command::Push { sync, yes, dry_run } => ("push", sync, yes, dry_run),
        Command::Status { sync } => ("status", sync, false, true),
        Command::Diff { sync } => ("diff", sync, false, true),
    };
    let (started, trust_before_ns) = clocks();
    let prefix = normalize_prefix(&sync.prefix)?;
    let target = match build_target(&sync, &prefix) {
        Ok(target) => target,
        Err(err) => {
            if sync.json {
                let mut report = SyncReport::new(
                    command,
                    if dry_run { Mode::DryRun } else { Mode::Apply },
                    TargetInfo {
                        kind: match sync.target {
                            TargetKind::S3 => "s3",
                            TargetKind::IngestApi => "ingest-api",
                        },
                        location: String::new(),
                        prefix,
                    },
                );
                report.error("config", None, None, format!("{err:#}"));
                report.finish(false, false, false);
                report.exit_code = EXIT_USAGE;
                println!("{}", serde_json::to_string_pretty(&report)?);
                return Ok(EXIT_USAGE);
            }
            return Err(err);
        }
    };

    let root = std::path::absolute(&sync.dir)
        .with_context(|| format!("resolving {}", sync.dir.display()))?;
    let cache_path = match &sync.cache {
        Some(path) => std::path::absolute(path)?,
        None => root.join(DEFAULT_CACHE_FILE),
    };
    let cancel = Arc::new(AtomicBool::new(false));
    {
        let cancel = cancel.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!("interrupted: finishing operations in flight (Ctrl-C again to abort)");
                cancel.store(true, Ordering::SeqCst);
                if tokio::signal::ctrl_c().await.is_ok() {
                    std::process::exit(report::EXIT_INTERRUPTED);
                }
            }
        });
    }
    let request = SyncRequest {
        command: command.to_owned(),
        root: root.clone(),
        prefix,
        walk: WalkOptions {
            include: sync.include.clone(),
            exclude: sync.exclude.clone(),
            ignore_file: Some(sync.ignore_file.clone()),
            include_hidden: sync.hidden,
            never_upload: vec![cache_path.clone()],
        },
        cache_path,
        checksum: sync.checksum,
        delete: sync.delete,
        guard: DeleteGuard {
            max_percent: sync.max_delete_percent,
            force: sync.force,
        },
        dry_run,
        exit_code_on_changes: sync.exit_code,
        hash_workers: std::thread::available_parallelism().map_or(2, |n| n.get()),
        head_concurrency: sync.concurrency.max(1) * 2,
        execute: ExecuteOptions {
            concurrency: sync.concurrency.max(1),
            cancel,
        },
        trust_before_ns,
        started,
    };
    let ui = CliUi {
        json: sync.json,
        quiet: sync.quiet,
        yes,
        stderr_tty: std::io::stderr().is_terminal(),
        stdin_tty: std::io::stdin().is_terminal(),
        bar: Mutex::new(None),
    };
    let report = match &target {
        AnyTarget::S3(t) => run_sync(t, &request, &ui).await,
        AnyTarget::Ingest(t) => run_sync(t, &request, &ui).await,
    };

    if sync.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        let p = &report.plan;
        let summary =
            report::render_plan_summary(&p.changes, p.unchanged, p.remote_only_kept.len());
        let lines = (command == "diff" || (command == "push" && dry_run))
            .then(|| report::render_plan_lines(&p.changes));
        print_human(&report, lines, &summary);
    }
    Ok(report.exit_code)
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let dir = match &cli.command {
        Command::Push { sync, .. } | Command::Status { sync } | Command::Diff { sync } => {
            sync.dir.clone()
        }
    };
    if !dir.is_dir() {
        eprintln!("r2-sync: {} is not a directory", dir.display());
        return ExitCode::from(2);
    }
    match run(cli).await {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(err) => {
            eprintln!("r2-sync: {err:#}");
            ExitCode::from(2)
        }
    }
}
