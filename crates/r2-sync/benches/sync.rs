//! Files per second for a first push and a no-op push of 1,000 and 10,000
//! markdown files against the local S3 server (moto), through the library
//! exactly as the CLI drives it. Prints figures and ratios measured in the
//! same run. `cargo bench -p r2-sync --bench sync` (needs `scripts/setup.sh`).
// A benchmark reads the clock; the workspace ban is about wasm.
#![allow(clippy::disallowed_methods, clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

use r2_sync::execute::ExecuteOptions;
use r2_sync::hash_cache::DEFAULT_CACHE_FILE;
use r2_sync::plan::{DeleteGuard, SyncPlan};
use r2_sync::report::SyncReport;
use r2_sync::run::{run_sync, Confirmation, SyncRequest, SyncUi};
use r2_sync::target::s3::{S3Config, S3Credentials, S3Target};
use r2_sync::walk::WalkOptions;
use r2_sync::ProgressSink;

struct Silent;
impl ProgressSink for Silent {}
impl SyncUi for Silent {
    fn confirm(&self, _plan: &SyncPlan) -> Confirmation {
        Confirmation::Proceed
    }
}

fn make_folder(root: &Path, files: usize) {
    for i in 0..files {
        let body = format!(
            "---\ncompany: company-{c}\n---\n# Document {i}\n\n{}\n",
            "Lorem ipsum dolor sit amet, consectetur adipiscing elit. ".repeat(16),
            c = i / 100
        );
        support::write_file(
            root,
            &format!("companies/company-{:03}/doc-{i:05}.md", i / 100),
            body.as_bytes(),
        );
    }
}

fn push(target: &S3Target, root: &Path, checksum: bool) -> (f64, SyncReport) {
    let request = SyncRequest {
        command: "push".into(),
        root: root.to_path_buf(),
        prefix: "docs/".into(),
        walk: WalkOptions {
            never_upload: vec![root.join(DEFAULT_CACHE_FILE)],
            ..WalkOptions::default()
        },
        cache_path: root.join(DEFAULT_CACHE_FILE),
        checksum,
        delete: true,
        guard: DeleteGuard {
            max_percent: 50,
            force: false,
        },
        dry_run: false,
        exit_code_on_changes: false,
        hash_workers: 2,
        head_concurrency: 32,
        execute: ExecuteOptions {
            concurrency: 16,
            cancel: Arc::new(AtomicBool::new(false)),
        },
        trust_before_ns: u64::MAX,
        started: Instant::now(),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let started = Instant::now();
    let report = runtime.block_on(run_sync(target, &request, &Silent));
    let seconds = started.elapsed().as_secs_f64();
    assert_eq!(report.exit_code, 0, "{:?}", report.errors);
    (seconds, report)
}

fn main() {
    let server = support::s3_server();
    println!(
        "r2-sync benchmark against moto_server on 127.0.0.1:{} (2 cores)",
        server.port
    );
    println!(
        "{:>7} {:>26} {:>9} {:>12} {:>10}",
        "files", "run", "seconds", "files/s", "vs first"
    );
    for files in [1_000usize, 10_000] {
        let bucket = support::new_bucket(&format!("bench{files}"));
        let dir = tempfile::tempdir().unwrap();
        make_folder(dir.path(), files);
        let target = S3Target::new(S3Config::new(
            server.endpoint(),
            bucket,
            "docs/".into(),
            S3Credentials {
                access_key_id: support::ACCESS_KEY.into(),
                secret_access_key: support::SECRET_KEY.into(),
                session_token: None,
            },
        ))
        .unwrap();

        let (first, report) = push(&target, dir.path(), false);
        assert_eq!(report.totals.succeeded, files);
        let (noop, report) = push(&target, dir.path(), false);
        assert_eq!(report.totals.unchanged, files);
        assert_eq!(report.remote.headed, 0);
        let (rehash, report) = push(&target, dir.path(), true);
        assert_eq!(report.totals.unchanged, files);
        std::fs::remove_file(dir.path().join(DEFAULT_CACHE_FILE)).unwrap();
        let (cold, report) = push(&target, dir.path(), false);
        assert_eq!(report.totals.unchanged, files);
        assert_eq!(report.remote.headed, files);

        for (name, seconds) in [
            ("first push", first),
            ("no-op push (cache)", noop),
            ("no-op push --checksum", rehash),
            ("no-op push, cache deleted", cold),
        ] {
            println!(
                "{files:>7} {name:>26} {seconds:>9.2} {:>12.0} {:>9.1}x",
                files as f64 / seconds,
                first / seconds
            );
        }
    }
}
