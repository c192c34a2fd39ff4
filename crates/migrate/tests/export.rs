//! `migrate export` against a real PostgreSQL holding the messy Supabase
//! fixture, connected as a role that may not read the embeddings.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

mod support;

use std::collections::BTreeMap;
use std::path::Path;

use sha2::{Digest, Sha256};
use support::postgres::cluster;
use support::*;

fn export(url: &str, out: &Path, extra: &[&str]) -> Run {
    let mut cmd = bin();
    cmd.args(["export", "--json", "--database-url", url, "--out"])
        .arg(out)
        .args(extra);
    run(cmd)
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[test]
fn export_writes_every_row_verbatim_with_a_manifest() {
    let pg = cluster();
    let db = pg.fixture_database("export_all");
    let url = pg.url("migrator", &db);
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("export");

    let started = std::time::Instant::now();
    let run = export(&url, &dir, &["--page-size", "7"]);
    let elapsed = started.elapsed();
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    eprintln!("export of the fixture took {elapsed:?}");
    let report = run.json();

    let count = |table: &str| -> u64 {
        pg.psql(&db, &format!("SELECT count(*) FROM {table}"))
            .parse()
            .unwrap()
    };
    for table in ["companies", "documents", "chunks"] {
        assert_eq!(report["exported"][table], count(table), "{table}: {report}");
        assert_eq!(report["source_counts"][table], count(table), "{table}");
    }
    assert!(count("documents") >= 300 && count("chunks") >= 600);

    // The manifest describes the files byte for byte.
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap();
    for name in ["companies.jsonl", "documents.jsonl", "chunks.jsonl"] {
        let bytes = std::fs::read(dir.join(name)).unwrap();
        let entry = &manifest["files"][name];
        assert_eq!(entry["sha256"], sha256_hex(&bytes), "{name}");
        assert_eq!(entry["bytes"], bytes.len() as u64, "{name}");
        assert_eq!(
            entry["rows"],
            bytes.iter().filter(|&&b| b == b'\n').count() as u64
        );
    }
    assert!(!dir.join("documents.jsonl.partial").exists());
    let chunks_text = std::fs::read_to_string(dir.join("chunks.jsonl")).unwrap();
    assert!(!chunks_text.contains("embedding"), "embeddings leaked");

    // The mess arrives verbatim.
    let companies: BTreeMap<String, serde_json::Value> = jsonl(&dir.join("companies.jsonl"))
        .into_iter()
        .map(|c| (c["slug"].as_str().unwrap().to_owned(), c))
        .collect();
    assert_eq!(companies["acme"]["name"], "Acme Corporation");
    assert_eq!(companies["Acme"]["name"], "ACME (duplicate, upper case)");
    assert!(companies["東京-labs"]["name"].is_null());
    assert!(companies["東京-labs"]["created_at"].is_null());
    assert_eq!(
        companies["zürich-ag"]["metadata"]["nested"]["a"][2]["b"],
        serde_json::Value::Null
    );
    // 2020-12-31 23:30 at UTC-11 is 2021-01-01 10:30 UTC.
    assert_eq!(
        companies["zürich-ag"]["created_at"]["ms"],
        1_609_497_000_000i64
    );
    assert!(companies["zürich-ag"]["created_at"]["rfc3339"]
        .as_str()
        .unwrap()
        .starts_with("2021-01-01T10:30:00"));

    let documents: BTreeMap<String, serde_json::Value> = jsonl(&dir.join("documents.jsonl"))
        .into_iter()
        .map(|d| (d["path"].as_str().unwrap().to_owned(), d))
        .collect();
    assert_eq!(documents.len() as u64, count("documents"));
    for doc in documents.values() {
        let content = doc["content"].as_str().unwrap_or("");
        assert_eq!(doc["content_sha256"], sha256_hex(content.as_bytes()));
    }
    assert_eq!(documents["companies/acme/empty.md"]["content"], "");
    assert!(documents["companies/acme/null content.md"]["content"].is_null());
    assert!(documents["companies/acme/null content.md"]["title"].is_null());
    assert!(documents["readme.md"]["company_id"].is_null());
    assert_eq!(
        documents["companies/Acme/overview.md"]["company_slug"],
        "Acme"
    );
    assert_eq!(
        documents["companies/acme/Annual Report 2023.md"]["tags"],
        serde_json::json!(["Finance", " finance", "REPORTS"])
    );
    let latin = documents["companies/acme/latin1 notes.md"]["content"]
        .as_str()
        .unwrap();
    assert!(latin.contains("Caf\\xe9") && latin.contains("é decoded"));
    assert!(documents.contains_key("companies/zürich-ag/über uns.md"));
    assert!(documents.contains_key("companies/acme/../escape.md"));
    // NULL elements of a text[] are dropped, the rest kept verbatim.
    let with_null = documents
        .values()
        .find(|d| d["path"] == "companies/company-05/doc-4.md")
        .unwrap();
    assert_eq!(with_null["tags"], serde_json::json!(["  ", "Heat Pumps"]));

    // Paging does not change the result: one big page gives the same bytes.
    let again = out.path().join("again");
    let run = export(&url, &again, &["--page-size", "1000"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    for name in ["companies.jsonl", "documents.jsonl", "chunks.jsonl"] {
        assert_eq!(
            std::fs::read(dir.join(name)).unwrap(),
            std::fs::read(again.join(name)).unwrap(),
            "{name}"
        );
    }

    // The run log has a start, a line per page and an end.
    let log = jsonl(&dir.join("migrate-log.jsonl"));
    assert_eq!(log.first().unwrap()["event"], "start");
    assert_eq!(log.last().unwrap()["event"], "end");
    assert!(log.iter().filter(|l| l["event"] == "page").count() > 40);
    assert!(!std::fs::read_to_string(dir.join("migrate-log.jsonl"))
        .unwrap()
        .contains("migrator@"));
}

#[test]
fn the_export_role_cannot_read_embeddings() {
    // What makes the test above prove that the export never reads them.
    let pg = cluster();
    let db = pg.fixture_database("no_embeddings");
    let denied = pg.psql(
        &db,
        "SET ROLE migrator; \
         SELECT has_column_privilege('chunks', 'embedding', 'SELECT')::text",
    );
    assert_eq!(denied, "false");
    // …while the source's search still works for it (verify's parity side).
    let hits = pg.psql(
        &db,
        "SET ROLE migrator; SELECT path FROM hybrid_search('heat pump efficiency', \
         fixture_embed('heat pump efficiency'), 5, 'company-02')",
    );
    let paths: Vec<&str> = hits.lines().collect();
    assert_eq!(paths.len(), 5, "{hits}");
    assert!(
        paths.iter().all(|p| p.starts_with("companies/company-02/")),
        "{hits}"
    );
}

#[test]
fn limit_dry_run_and_refusals() {
    let pg = cluster();
    let db = pg.fixture_database("export_limit");
    let url = pg.url("migrator", &db);
    let out = tempfile::tempdir().unwrap();

    let limited = out.path().join("limited");
    let run = export(&url, &limited, &["--limit", "10", "--page-size", "4"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let report = run.json();
    assert_eq!(report["exported"]["documents"], 10);
    let ids: std::collections::BTreeSet<String> = jsonl(&limited.join("documents.jsonl"))
        .iter()
        .map(|d| d["id"].as_str().unwrap().to_owned())
        .collect();
    let chunks = jsonl(&limited.join("chunks.jsonl"));
    assert!(!chunks.is_empty());
    assert!(chunks
        .iter()
        .all(|c| ids.contains(c["document_id"].as_str().unwrap())));
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(limited.join("manifest.json")).unwrap())
            .unwrap();
    assert_eq!(manifest["limit"], 10);

    // An existing export is never overwritten.
    let run = export(&url, &limited, &[]);
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert_eq!(run.json()["error"]["stage"], "write");
    assert_eq!(jsonl(&limited.join("documents.jsonl")).len(), 10);

    // A dry run counts and writes nothing.
    let dry = out.path().join("dry");
    let run = export(&url, &dry, &["--dry-run"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.json()["source_counts"]["documents"].as_u64().unwrap() > 300);
    assert!(!dry.exists());

    // A bad URL is a usage error; an unreachable server a failure.
    let run = export("postgres://x:y@127.0.0.1:notaport/db", &dry, &[]);
    assert_eq!(run.code, 2, "{}", run.stdout);
    let closed = format!("postgres://migrator@127.0.0.1:{}/db", free_port());
    let run = export(&closed, &dry, &[]);
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert_eq!(run.json()["error"]["stage"], "connect");
}
