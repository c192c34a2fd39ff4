//! Scale: the whole migration of a generated 10,000-document source (the
//! generator `export_scale` uses) into the built Worker under `wrangler
//! dev` — export, import (until the CLI exits), ingestion (until every
//! document is ready, polled through the admin listing), then `verify`
//! (counts, checksums, readiness, chunks, vectors, and parity over 10
//! questions). Prints each stage's time, documents/s and the import's peak
//! memory. Ignored by default (it takes tens of minutes); run with
//! `cargo test -p migrate --test import_scale -- --ignored --nocapture`.
//!
//! Needs the built Worker (`bash scripts/build-worker.sh`) and the npm
//! packages (`bash scripts/setup.sh`); fails with that advice otherwise.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use support::postgres::cluster;
use support::*;
use test_support::worker::{start_worker, LocalWorker, TOKEN};

const DOCUMENTS: u32 = 10_000;
/// Longest wait for the ingestion of every document, from the import's start.
const READY_WITHIN: Duration = Duration::from_secs(90 * 60);
const POLL_EVERY: Duration = Duration::from_secs(15);
/// Parity questions asked (each names one document's number).
const QUESTIONS: u32 = 10;

/// Documents per status, from the admin listing; `None` when a page failed.
fn statuses(worker: &LocalWorker) -> Result<BTreeMap<String, u64>, String> {
    let mut out = BTreeMap::new();
    let mut cursor = String::new();
    loop {
        let (code, body) = worker.get(&format!(
            "/admin/documents?limit=1000&cursor={}",
            percent_encoding::utf8_percent_encode(&cursor, percent_encoding::NON_ALPHANUMERIC)
        ));
        if code != 200 {
            return Err(format!("listing answered {code}: {body}"));
        }
        let page: serde_json::Value = serde_json::from_str(&body).map_err(|e| e.to_string())?;
        for d in page["documents"].as_array().unwrap() {
            *out.entry(d["status"].as_str().unwrap_or("?").to_owned())
                .or_default() += 1;
        }
        match page["cursor"].as_str() {
            Some(next) => cursor = next.to_owned(),
            None => return Ok(out),
        }
    }
}

#[test]
#[ignore = "scale measurement (tens of minutes); run explicitly"]
fn import_of_10000_documents() {
    let pg = cluster();
    let db = pg.generated_database("scale", DOCUMENTS);
    let work = tempfile::tempdir().unwrap();
    let export_dir = work.path().join("export");

    let cmd = export_to(measured_bin(), &pg.url("migrator", &db), &export_dir);
    let started = Instant::now();
    let exported = run(cmd);
    let export_time = started.elapsed();
    assert_eq!(exported.code, 0, "{}\n{}", exported.stdout, exported.stderr);
    let exported_json: serde_json::Value = serde_json::from_str(exported.stdout.trim()).unwrap();
    assert_eq!(exported_json["exported"]["documents"], DOCUMENTS);
    eprintln!(
        "[scale] export: {export_time:.1?} ({} chunks); {}",
        exported_json["exported"]["chunks"],
        peak_rss(&exported.stderr)
    );

    let worker = start_worker(&work.path().join("worker"));

    // Import without --wait: the CLI exits once every document is uploaded.
    let mut cmd = measured_bin();
    cmd.env("ADMIN_TOKEN", TOKEN)
        .args(["import", "--json", "--target", &worker.url(), "--from"])
        .arg(&export_dir);
    let import_started = Instant::now();
    let imported = run(cmd);
    let upload_time = import_started.elapsed();
    let import_rss = peak_rss(&imported.stderr);
    assert_eq!(
        imported.code,
        0,
        "{}\n{}",
        imported.stdout,
        imported
            .stderr
            .lines()
            .rev()
            .take(40)
            .collect::<Vec<_>>()
            .join("\n")
    );
    let report = imported.json();
    assert_eq!(report["documents"]["uploaded"], DOCUMENTS, "{report}");
    assert_eq!(report["companies"]["written"], 100, "{report}");
    eprintln!(
        "[scale] import upload: {upload_time:.1?} ({:.1} documents/s uploaded); import {import_rss}",
        f64::from(DOCUMENTS) / upload_time.as_secs_f64()
    );

    // Ingestion: poll the listing until every document is ready or failed.
    let deadline = import_started + READY_WITHIN;
    let mut last_error = String::new();
    let ready_time = loop {
        let polled = Instant::now();
        match statuses(&worker) {
            Ok(counts) => {
                let ready = counts.get("ready").copied().unwrap_or(0);
                let failed = counts.get("failed").copied().unwrap_or(0);
                eprintln!(
                    "[scale] +{:.0?}: {counts:?} (listing took {:.1?})",
                    import_started.elapsed(),
                    polled.elapsed()
                );
                if ready + failed >= u64::from(DOCUMENTS) {
                    assert_eq!(failed, 0, "{counts:?}");
                    break import_started.elapsed();
                }
            }
            Err(e) => {
                eprintln!("[scale] +{:.0?}: {e}", import_started.elapsed());
                last_error = e;
            }
        }
        assert!(
            Instant::now() < deadline,
            "not every document was ready within {READY_WITHIN:?}; last listing error: {last_error}\n{}",
            std::fs::read_to_string(work.path().join("worker/wrangler-dev.log"))
                .unwrap_or_default()
                .lines()
                .rev()
                .take(40)
                .collect::<Vec<_>>()
                .join("\n")
        );
        std::thread::sleep(POLL_EVERY.saturating_sub(polled.elapsed()));
    };
    eprintln!(
        "[scale] all {DOCUMENTS} ready {ready_time:.1?} after the import started ({:.0?} after upload); {:.2} documents/s end to end",
        ready_time.saturating_sub(upload_time),
        f64::from(DOCUMENTS) / ready_time.as_secs_f64()
    );

    // Verify: every check, parity over questions naming one document each.
    let questions = work.path().join("questions.jsonl");
    let lines: String = (0..QUESTIONS)
        .map(|n| {
            format!(
                "{{\"question\": \"topic {}\"}}\n",
                1 + n * (DOCUMENTS / QUESTIONS) + n
            )
        })
        .collect();
    std::fs::write(&questions, lines).unwrap();
    let mut cmd = bin();
    cmd.env("ADMIN_TOKEN", TOKEN)
        .args(["verify", "--json", "--target", &worker.url(), "--from"])
        .arg(&export_dir)
        .args(["--database-url", &pg.url("migrator", &db)])
        .args(["--embed-function", "fixture_embed", "--questions"])
        .arg(&questions)
        .args(["--max-questions", &QUESTIONS.to_string()]);
    let started = Instant::now();
    let verified = run(cmd);
    let verify_time = started.elapsed();
    let report = verified.json();
    for c in report["checks"].as_array().unwrap() {
        eprintln!(
            "[verify] {} {} expected {} actual {} {:?}",
            c["name"], c["status"], c["expected"], c["actual"], c["examples"]
        );
    }
    let parity = &report["parity"];
    for r in parity["results"].as_array().into_iter().flatten() {
        if r["overlap"] != 1.0 {
            eprintln!(
                "[parity] {}: overlap {}; source {} service {}",
                r["question"], r["overlap"], r["source_documents"], r["service_documents"]
            );
        }
    }
    eprintln!(
        "[scale] verify: {verify_time:.1?}, passed = {}; overlap@{} = {} over {} questions; source p50 {} ms p95 {} ms, service p50 {} ms p95 {} ms",
        report["passed"],
        parity["k"],
        parity["mean_overlap"],
        parity["questions"],
        parity["source_latency"]["p50_ms"],
        parity["source_latency"]["p95_ms"],
        parity["service_latency"]["p50_ms"],
        parity["service_latency"]["p95_ms"]
    );
    eprintln!(
        "[scale] summary: export {export_time:.1?}; import upload {upload_time:.1?}; all ready after {ready_time:.1?} ({:.2} documents/s); verify {verify_time:.1?} ({}); import {import_rss}",
        f64::from(DOCUMENTS) / ready_time.as_secs_f64(),
        if report["passed"] == true { "passed" } else { "FAILED" }
    );
    assert_eq!(verified.code, 0, "{}", verified.stdout);
    assert_eq!(report["passed"], true);
}
