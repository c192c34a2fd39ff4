//! After the migration: the messy Supabase fixture, exported from a real
//! PostgreSQL and imported into the real Worker under `wrangler dev`, then
//! written as a corpus folder (`migrate corpus`) and pushed to the same
//! Worker's ingest API by r2-sync's library, exactly as the sync workflow
//! pushes `corpus/` (no prefix, `--delete`, `*.md`). One key space: the sync
//! finds every document unchanged (nothing uploaded, updated or deleted) and
//! the service holds no second copy. Then `rollback-export` + `restore` into
//! a fresh database: documents the source had without a company come back
//! without one, and no company appears that the source lacked.
//!
//! One test, one Worker: starting `wrangler dev` and importing the fixture is
//! most of the cost. Needs the built Worker (`bash scripts/build-worker.sh`)
//! and the npm packages (`bash scripts/setup.sh`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

use r2_sync::execute::ExecuteOptions;
use r2_sync::plan::{DeleteGuard, SyncPlan};
use r2_sync::run::{run_sync, Confirmation, SyncRequest, SyncUi};
use r2_sync::target::ingest_api::{AdminToken, IngestApiConfig, IngestApiTarget};
use r2_sync::walk::{WalkOptions, DEFAULT_IGNORE_FILE};
use r2_sync::ProgressSink;
use support::postgres::cluster;
use support::*;
use test_support::worker::{start_worker, LocalWorker, TOKEN};

/// `push --yes`: applies without asking.
struct Yes;

impl ProgressSink for Yes {}

impl SyncUi for Yes {
    fn confirm(&self, _plan: &SyncPlan) -> Confirmation {
        Confirmation::Proceed
    }
}

/// What `r2-sync push corpus --json --delete --include '*.md' --yes
/// --target ingest-api` does (the workflow's flags; the target is the local
/// Worker's admin API instead of R2's S3 API).
fn push_corpus(worker: &LocalWorker, corpus: &Path, cache: &Path) -> serde_json::Value {
    let target = IngestApiTarget::new(IngestApiConfig::new(
        worker.url(),
        AdminToken::new(TOKEN),
        String::new(),
    ))
    .unwrap();
    let request = SyncRequest {
        command: "push".into(),
        root: corpus.to_owned(),
        prefix: String::new(),
        walk: WalkOptions {
            include: vec!["*.md".into()],
            exclude: Vec::new(),
            ignore_file: Some(DEFAULT_IGNORE_FILE.into()),
            include_hidden: false,
            never_upload: vec![cache.to_owned()],
        },
        cache_path: cache.to_owned(),
        checksum: false,
        delete: true,
        guard: DeleteGuard {
            max_percent: 50,
            force: false,
        },
        dry_run: false,
        exit_code_on_changes: false,
        hash_workers: 2,
        head_concurrency: 8,
        execute: ExecuteOptions {
            concurrency: 4,
            cancel: Arc::new(AtomicBool::new(false)),
        },
        trust_before_ns: 0,
        started: Instant::now(),
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let report = runtime.block_on(run_sync(&target, &request, &Yes));
    serde_json::to_value(&report).unwrap()
}

/// `path → company slug ("" for none)` of a database's documents.
fn document_companies(pg: &support::postgres::Cluster, db: &str) -> BTreeMap<String, String> {
    pg.psql(
        db,
        "SELECT d.path || '|' || coalesce(c.slug, '') FROM documents d \
         LEFT JOIN companies c ON c.id = d.company_id ORDER BY d.path",
    )
    .lines()
    .map(|row| {
        let (path, slug) = row.rsplit_once('|').unwrap();
        (path.to_owned(), slug.to_owned())
    })
    .collect()
}

fn slugs(pg: &support::postgres::Cluster, db: &str) -> BTreeSet<String> {
    pg.psql(db, "SELECT slug FROM companies ORDER BY slug")
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn a_migrated_corpus_syncs_unchanged_and_company_less_documents_stay_company_less() {
    let pg = cluster();
    let db = pg.fixture_database("sync_after");
    let work = tempfile::tempdir().unwrap();
    let export_dir = work.path().join("export");
    let cmd = export_to(bin(), &pg.url("migrator", &db), &export_dir);
    let exported = run(cmd);
    assert_eq!(exported.code, 0, "{}", exported.stderr);

    let worker = start_worker(&work.path().join("worker"));
    let mut cmd = bin();
    cmd.env("ADMIN_TOKEN", TOKEN)
        .args([
            "import",
            "--json",
            "--wait",
            "600",
            "--target",
            &worker.url(),
        ])
        .arg("--from")
        .arg(&export_dir);
    let imported = run(cmd);
    assert_eq!(imported.code, 0, "{}\n{}", imported.stdout, imported.stderr);
    let imported = imported.json();
    let usable = imported["documents"]["source"].as_u64().unwrap()
        - imported["documents"]["unusable"].as_array().unwrap().len() as u64;
    assert_eq!(imported["ready"]["ready"], usable, "{}", imported["ready"]);

    // The corpus folder, written from the export.
    let corpus = work.path().join("corpus");
    let mut cmd = bin();
    cmd.args(["corpus", "--json", "--from"])
        .arg(&export_dir)
        .arg("--out")
        .arg(&corpus);
    let written = run(cmd);
    assert_eq!(written.code, 0, "{}\n{}", written.stdout, written.stderr);
    assert_eq!(written.json()["written"], usable, "{}", written.stdout);

    // One key space: the sync of that folder changes nothing.
    let before = worker.documents();
    assert_eq!(before.len() as u64, usable);
    let report = push_corpus(&worker, &corpus, &work.path().join("sync-cache.json"));
    let totals = &report["totals"];
    assert_eq!(report["exit_code"], 0, "{report}");
    assert_eq!(report["local"]["files"], usable, "{report}");
    assert_eq!(totals["upload"], 0, "{report}");
    assert_eq!(totals["update"], 0, "{report}");
    assert_eq!(totals["delete"], 0, "{report}");
    assert_eq!(totals["unchanged"], usable, "{report}");
    assert_eq!(report["results"], serde_json::json!([]), "{report}");
    let after = worker.documents();
    assert_eq!(
        after.keys().collect::<Vec<_>>(),
        before.keys().collect::<Vec<_>>(),
        "no second copy of any document"
    );
    assert!(after
        .values()
        .zip(before.values())
        .all(|(a, b)| a["sha256"] == b["sha256"] && a["status"] == "ready"));

    // Company-less in the source, company-less in the service.
    let source_companies = document_companies(pg, &db);
    let company_less: Vec<&String> = source_companies
        .iter()
        .filter(|(path, slug)| slug.is_empty() && after.contains_key(*path))
        .map(|(path, _)| path)
        .collect();
    assert!(company_less.iter().any(|p| p.starts_with("notes/")));
    assert!(company_less.iter().any(|p| *p == "readme.md"));
    for path in &company_less {
        assert_eq!(after[*path]["company"], serde_json::Value::Null, "{path}");
    }
    let service_slugs: BTreeSet<String> = worker.get_json("/admin/companies?limit=1000")
        ["companies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["slug"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        service_slugs.is_subset(&slugs(pg, &db)),
        "companies the source lacks: {:?}",
        service_slugs
            .difference(&slugs(pg, &db))
            .collect::<Vec<_>>()
    );

    // And back: restored Postgres has every document under the source's
    // company (NULL where the source had none) and no company it lacked.
    let back = work.path().join("rollback");
    let mut cmd = bin();
    cmd.env("ADMIN_TOKEN", TOKEN)
        .args(["rollback-export", "--json", "--target", &worker.url()])
        .arg("--out")
        .arg(&back);
    let exported_back = run(cmd);
    assert_eq!(exported_back.code, 0, "{}", exported_back.stderr);
    let restored_db = pg.create_database("sync_after_restored");
    pg.psql(
        &restored_db,
        &include_str!("fixtures/supabase_schema.sql").replace("CREATE ROLE migrator LOGIN;", ""),
    );
    let mut cmd = bin();
    cmd.args([
        "restore",
        "--json",
        "--database-url",
        &pg.url("postgres", &restored_db),
        "--from",
    ])
    .arg(&back);
    let restored = run(cmd);
    assert_eq!(restored.code, 0, "{}\n{}", restored.stdout, restored.stderr);
    assert_eq!(restored.json()["documents_inserted"], usable);

    let source_slugs = slugs(pg, &db);
    let restored_slugs = slugs(pg, &restored_db);
    assert!(
        restored_slugs.is_subset(&source_slugs),
        "restored companies the source never had: {:?}",
        restored_slugs.difference(&source_slugs).collect::<Vec<_>>()
    );
    assert!(!restored_slugs.contains("notes"));
    let restored_companies = document_companies(pg, &restored_db);
    assert_eq!(restored_companies.len() as u64, usable);
    for (path, slug) in &restored_companies {
        assert_eq!(Some(slug), source_companies.get(path), "{path}");
    }
    let null_company = pg.psql(
        &restored_db,
        "SELECT count(*) FROM documents WHERE company_id IS NULL",
    );
    assert_eq!(null_company, company_less.len().to_string());
}
