//! End to end: export the messy Supabase fixture from a real PostgreSQL,
//! import it into the real Worker under `wrangler dev`, interrupted by
//! `kill -9` and resumed; every usable document becomes ready under the
//! company Supabase had it under, companies keep their real names and
//! legacy ids, and a further import changes nothing. The source is the
//! TLS-only PostgreSQL (as a Supabase requires TLS); verify checks its
//! certificate (`sslmode=verify-full`, `--ca-cert`) and names the service
//! as the wrangler.jsonc environment `dev` (`MIGRATE_TARGET_URL_DEV`).
//!
//! Needs the built Worker (`bash scripts/build-worker.sh`) and the npm
//! packages (`bash scripts/setup.sh`); fails with that advice otherwise.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use support::postgres::tls_cluster;
use support::*;
use test_support::worker::{start_worker, LocalWorker, TOKEN};

fn import_cmd(worker: &LocalWorker, from: &Path, extra: &[&str]) -> std::process::Command {
    let mut cmd = bin();
    cmd.env("ADMIN_TOKEN", TOKEN)
        .args(["import", "--json", "--target", &worker.url(), "--from"])
        .arg(from)
        .args(extra);
    cmd
}

#[test]
fn fixture_migrates_into_the_local_worker_and_resumes_after_kill_9() {
    let pg = tls_cluster();
    let db = pg.fixture_database("e2e");
    let work = tempfile::tempdir().unwrap();
    let export_dir = work.path().join("export");
    let started = Instant::now();
    let cmd = export_to(bin(), &pg.url("migrator", &db), &export_dir);
    let exported = run(cmd);
    assert_eq!(exported.code, 0, "{}", exported.stderr);
    eprintln!("[timing] export: {:?}", started.elapsed());

    let worker = start_worker(&work.path().join("worker"));

    // First import, killed with SIGKILL once some documents are uploaded.
    let log = export_dir.join("migrate-log.jsonl");
    let mut child = import_cmd(&worker, &export_dir, &["--concurrency", "2"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let uploaded = || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("\"event\":\"uploaded\""))
            .count()
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    while uploaded() < 40 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let before_resume = uploaded();
    assert!(
        before_resume >= 40,
        "the import uploaded too little before the kill"
    );

    let started = Instant::now();
    let resumed = run(import_cmd(
        &worker,
        &export_dir,
        &["--resume", "--wait", "600"],
    ));
    eprintln!(
        "[timing] resumed import + ingestion: {:?}",
        started.elapsed()
    );
    let report = resumed.json();
    eprintln!(
        "{}",
        serde_json::to_string_pretty(&report["documents"]["unusable"]).unwrap()
    );
    eprintln!(
        "{}",
        serde_json::to_string_pretty(&report["ready"]).unwrap()
    );
    assert_eq!(resumed.code, 0, "{}\n{}", resumed.stdout, resumed.stderr);
    let usable = report["documents"]["source"].as_u64().unwrap()
        - report["documents"]["unusable"].as_array().unwrap().len() as u64;
    // Rows uploaded before the kill were not uploaded again.
    assert!(
        report["documents"]["unchanged"].as_u64().unwrap() > 0
            || report["documents"]["uploaded"].as_u64().unwrap() < usable,
        "{report}"
    );
    assert_eq!(report["ready"]["ready"], usable, "{}", report["ready"]);
    // The five paths that cannot be keys, reported with the reason.
    let unusable: Vec<&str> = report["documents"]["unusable"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["path"].as_str().unwrap())
        .collect();
    assert_eq!(unusable.len(), 5, "{unusable:?}");
    assert!(unusable.contains(&"companies/acme/../escape.md"));

    // Companies: real names and fields, case-distinct slugs, legacy ids.
    let companies: BTreeMap<String, serde_json::Value> = worker
        .get_json("/admin/companies?limit=1000")["companies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["slug"].as_str().unwrap().to_owned(), c.clone()))
        .collect();
    assert_eq!(companies["acme"]["name"], "Acme Corporation");
    assert_eq!(companies["acme"]["website"], "https://acme.example");
    assert_eq!(companies["Acme"]["name"], "ACME (duplicate, upper case)");
    assert_eq!(companies["東京-labs"]["name"], "東京-labs");
    assert_eq!(companies["zürich-ag"]["created_at"], 1_609_497_000_000i64);
    assert!(companies["empty"]["legacy_id"].is_string());
    for slug in ["acme", "Acme", "zürich-ag", "company-01", "empty"] {
        assert!(companies[slug]["legacy_id"].is_string(), "{slug}");
    }
    assert_eq!(companies["Acme"]["documents"], 1);

    // Documents: ready, under the source's company.
    let documents = worker.documents();
    let company_of = |key: &str| documents[key]["company"].as_str().map(str::to_owned);
    assert_eq!(
        company_of("misplaced/acme-in-other-folder.md").as_deref(),
        Some("acme")
    );
    assert_eq!(
        company_of("companies/zürich-ag/with front matter.md").as_deref(),
        Some("zürich-ag")
    );
    assert_eq!(
        company_of("companies/Acme/overview.md").as_deref(),
        Some("Acme")
    );
    assert_eq!(
        company_of("companies/zürich-ag/über uns.md").as_deref(),
        Some("zürich-ag")
    );
    assert_eq!(
        documents["companies/acme/Annual Report 2023.md"]["title"],
        "Annual Report 2023"
    );
    assert!(documents.values().all(|d| d["status"] == "ready"));

    // Once more: nothing changes.
    let started = Instant::now();
    let again = run(import_cmd(&worker, &export_dir, &[]));
    eprintln!("[timing] no-op import: {:?}", started.elapsed());
    assert_eq!(again.code, 0, "{}", again.stderr);
    let again = again.json();
    assert_eq!(again["documents"]["uploaded"], 0, "{again}");
    assert_eq!(again["documents"]["unchanged"], usable);
    assert_eq!(again["companies"]["written"], 0, "{again}");
    assert_eq!(again["documents"]["mapped"], 0, "{again}");
    assert_eq!(worker.documents().len() as u64, usable);

    // Verify: every check passes, parity included.
    let source_url = format!("{}?sslmode=verify-full", pg.url("migrator", &db));
    let verify = |extra: &[&str]| {
        let mut cmd = bin();
        cmd.env("ADMIN_TOKEN", TOKEN)
            .env("MIGRATE_TARGET_URL_DEV", worker.url())
            .args(["verify", "--json", "--target", "dev", "--from"])
            .arg(&export_dir)
            .args(["--database-url", &source_url, "--ca-cert"])
            .arg(&pg.tls().ca_cert)
            .args(["--embed-function", "fixture_embed"])
            .args(extra);
        run(cmd)
    };
    // Questions with a known relevant set: each project spans 5 documents.
    let questions = work.path().join("questions.jsonl");
    let mut lines = String::new();
    for adjective in ["amber", "cobalt", "crimson", "ivory", "jade", "onyx"] {
        for noun in ["falcon", "heron", "lynx", "otter", "walrus"] {
            lines.push_str(&format!(
                "{{\"question\": \"{adjective} {noun} project\"}}\n"
            ));
        }
    }
    std::fs::write(&questions, lines).unwrap();
    let questions = questions.display().to_string();
    // The default questions (document headings, scoped to their company) are
    // reported too; on this synthetic corpus a company's documents are near
    // duplicates, so their top 5 is mostly a tie-break and is not asserted.
    let headings = verify(&["--out", &work.path().join("headings").display().to_string()]);
    eprintln!(
        "[parity] heading questions: overlap@5 = {}",
        headings.json()["parity"]["mean_overlap"]
    );
    let started = Instant::now();
    // Threshold 0.5 rather than the default 0.6: the source's RRF (k = 50)
    // lets vector-only hits of the fixture's 64-dimension hashing embedder
    // compete with full-text matches, and D1 ids (the service's tie-break)
    // depend on upload order. Measured here: 0.63.
    let verified = verify(&["--questions", &questions, "--threshold", "0.5"]);
    eprintln!("[timing] verify: {:?}", started.elapsed());
    let report = verified.json();
    for c in report["checks"].as_array().unwrap() {
        eprintln!(
            "[verify] {} {} expected {} actual {} {:?}",
            c["name"], c["status"], c["expected"], c["actual"], c["examples"]
        );
    }
    let parity = &report["parity"];
    eprintln!(
        "[parity] overlap@{} = {} over {} questions; source p50 {} ms p95 {} ms; service p50 {} ms p95 {} ms",
        parity["k"],
        parity["mean_overlap"],
        parity["questions"],
        parity["source_latency"]["p50_ms"],
        parity["source_latency"]["p95_ms"],
        parity["service_latency"]["p50_ms"],
        parity["service_latency"]["p95_ms"]
    );
    assert_eq!(verified.code, 0, "{}", verified.stdout);
    assert_eq!(report["passed"], true);
    assert!(export_dir.join("verify-report.md").exists());
    assert!(parity["questions"].as_u64().unwrap() >= 20);

    // A document changed on the new side is caught by its checksum.
    let agent = ureq::AgentBuilder::new().build();
    let changed = agent
        .put(&format!(
            "{}/admin/documents/companies/acme/Annual%20Report%202023.md",
            worker.url()
        ))
        .set("Authorization", &format!("Bearer {TOKEN}"))
        .send_string("---\ncompany: acme\n---\n# Annual report\n\nRestated.\n")
        .unwrap();
    assert_eq!(changed.status(), 202);
    wait_for_sha_change(&worker, "companies/acme/Annual Report 2023.md", &documents);
    let failed = verify(&["--questions", &questions, "--threshold", "0.5"]);
    assert_eq!(failed.code, 1, "{}", failed.stdout);
    let report = failed.json();
    let checksums = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "document_checksums")
        .unwrap();
    assert_eq!(checksums["status"], "fail");
    assert_eq!(checksums["actual"], 1);

    // Going back: export the service's side and restore it into a fresh
    // database with the Supabase schema; then again (a no-op).
    let back = work.path().join("rollback");
    let mut cmd = bin();
    cmd.env("ADMIN_TOKEN", TOKEN)
        .args([
            "rollback-export",
            "--json",
            "--target",
            &worker.url(),
            "--out",
        ])
        .arg(&back);
    let started = Instant::now();
    let exported_back = run(cmd);
    eprintln!("[timing] rollback-export: {:?}", started.elapsed());
    assert_eq!(
        exported_back.code, 0,
        "{}\n{}",
        exported_back.stdout, exported_back.stderr
    );
    let exported_back = exported_back.json();
    assert_eq!(exported_back["documents"], usable);
    // The 29 source companies and no other: documents the source had
    // without a company were imported with `company: null`, so the
    // ingestion did not infer `notes` from their keys.
    let service_companies = worker.get_json("/admin/companies?limit=1000")["companies"]
        .as_array()
        .unwrap()
        .len() as u64;
    assert_eq!(service_companies, 29);
    assert_eq!(exported_back["companies"], service_companies);

    let restored_db = pg.create_database("restored");
    pg.psql(
        &restored_db,
        &include_str!("fixtures/supabase_schema.sql").replace("CREATE ROLE migrator LOGIN;", ""),
    );
    let restore = || {
        let mut cmd = bin();
        cmd.args([
            "restore",
            "--json",
            "--database-url",
            &pg.url("postgres", &restored_db),
            "--from",
        ])
        .arg(&back);
        let r = run(cmd);
        assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
        r.json()
    };
    let started = Instant::now();
    let first = restore();
    eprintln!("[timing] restore: {:?}", started.elapsed());
    assert_eq!(first["documents_inserted"], usable, "{first}");
    assert_eq!(first["companies_written"], service_companies);
    let second = restore();
    assert_eq!(second["documents_inserted"], 0, "{second}");
    assert_eq!(second["documents_updated"], 0, "{second}");
    assert_eq!(second["companies_written"], 0, "{second}");

    // Compare: what Postgres now holds is what the service serves.
    let now_listed = worker.documents();
    let rows = pg.psql(
        &restored_db,
        "SELECT d.path || '|' || encode(sha256(convert_to(d.content, 'UTF8')), 'hex') || '|' || coalesce(c.slug, '') \
         FROM documents d LEFT JOIN companies c ON c.id = d.company_id ORDER BY d.path",
    );
    let mut compared = 0;
    for row in rows.lines() {
        let mut parts = row.splitn(3, '|');
        let (path, sha, slug) = (
            parts.next().unwrap(),
            parts.next().unwrap(),
            parts.next().unwrap(),
        );
        let served = &now_listed[path];
        assert_eq!(served["sha256"], sha, "{path}");
        assert_eq!(served["company"].as_str().unwrap_or(""), slug, "{path}");
        compared += 1;
    }
    assert_eq!(compared as u64, usable);
    let restated = pg.psql(
        &restored_db,
        "SELECT content FROM documents WHERE path = 'companies/acme/Annual Report 2023.md'",
    );
    assert!(restated.contains("Restated."), "{restated}");
    let names = pg.psql(
        &restored_db,
        "SELECT name FROM companies WHERE slug = 'acme'",
    );
    assert_eq!(names, "Acme Corporation");
    let legacy = pg.psql(
        &restored_db,
        "SELECT id::text FROM companies WHERE slug = 'zürich-ag'",
    );
    let original = pg.psql(
        &db,
        "SELECT id::text FROM companies WHERE slug = 'zürich-ag'",
    );
    assert_eq!(legacy, original, "companies keep their source UUIDs");

    // Back into the source itself, with the original export at hand:
    // documents the service still holds unchanged go back as their original
    // rows, so only the changed one is written.
    let back2 = work.path().join("rollback-original");
    let mut cmd = bin();
    cmd.env("ADMIN_TOKEN", TOKEN)
        .args([
            "rollback-export",
            "--json",
            "--target",
            &worker.url(),
            "--original",
        ])
        .arg(&export_dir)
        .arg("--out")
        .arg(&back2);
    let exported_back = run(cmd);
    assert_eq!(exported_back.code, 0, "{}", exported_back.stderr);
    assert_eq!(
        exported_back.json()["documents_as_originally_exported"],
        usable - 1
    );
    let before: String = pg.psql(
        &db,
        "SELECT md5(string_agg(path || coalesce(content, '<null>'), '|' ORDER BY path)) FROM documents \
         WHERE path <> 'companies/acme/Annual Report 2023.md'",
    );
    let mut cmd = bin();
    cmd.args([
        "restore",
        "--json",
        "--database-url",
        &pg.url("postgres", &db),
        "--from",
    ])
    .arg(&back2);
    let restored = run(cmd);
    assert_eq!(restored.code, 0, "{}\n{}", restored.stdout, restored.stderr);
    let restored = restored.json();
    assert_eq!(restored["documents_updated"], 1, "{restored}");
    assert_eq!(restored["documents_inserted"], 0, "{restored}");
    assert_eq!(restored["documents_unchanged"], usable - 1, "{restored}");
    assert_eq!(
        restored["reembed"],
        serde_json::json!(["companies/acme/Annual Report 2023.md"])
    );
    let after: String = pg.psql(
        &db,
        "SELECT md5(string_agg(path || coalesce(content, '<null>'), '|' ORDER BY path)) FROM documents \
         WHERE path <> 'companies/acme/Annual Report 2023.md'",
    );
    assert_eq!(before, after, "unchanged documents are untouched");
    let restated = pg.psql(
        &db,
        "SELECT content FROM documents WHERE path = 'companies/acme/Annual Report 2023.md'",
    );
    assert!(restated.contains("Restated."), "{restated}");
}

fn wait_for_sha_change(
    worker: &LocalWorker,
    key: &str,
    before: &BTreeMap<String, serde_json::Value>,
) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while worker.documents()[key]["sha256"] == before[key]["sha256"] {
        assert!(
            Instant::now() < deadline,
            "the changed document was not processed"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
