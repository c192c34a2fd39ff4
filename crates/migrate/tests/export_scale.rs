//! Scale: `export` of a generated 10,000-document source, timed, with the
//! exporter's peak memory (it streams pages, so memory must not grow with
//! the corpus). Ignored by default (a minute or so); run with
//! `cargo test -p migrate --test export_scale -- --ignored --nocapture`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

mod support;

use std::time::Instant;

use support::postgres::cluster;
use support::*;

const DOCUMENTS: u32 = 10_000;

#[test]
#[ignore = "scale measurement; run explicitly"]
fn export_of_10000_documents_streams() {
    let pg = cluster();
    let db = pg.generated_database("scale", DOCUMENTS);
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("export");
    let cmd = export_to(measured_bin(), &pg.url("migrator", &db), &dir);
    let started = Instant::now();
    let run = run(cmd);
    let elapsed = started.elapsed();
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let report: serde_json::Value = serde_json::from_str(run.stdout.trim()).unwrap();
    assert_eq!(report["exported"]["documents"], DOCUMENTS);
    let bytes = std::fs::metadata(dir.join("documents.jsonl"))
        .unwrap()
        .len();
    eprintln!(
        "[scale] export of {DOCUMENTS} documents ({} chunks, documents.jsonl {} MB) took {elapsed:?}; {}",
        report["exported"]["chunks"],
        bytes / 1_000_000,
        peak_rss(&run.stderr)
    );
}
