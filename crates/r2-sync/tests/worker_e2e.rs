//! End to end: `r2-sync push --target ingest-api` into the real Worker
//! running under `wrangler dev` (local D1, R2, Queues, Durable Objects), and
//! the documents become `ready`; a second push is a no-op; a change and a
//! deletion propagate.
//!
//! Needs the built Worker (`bash scripts/build-worker.sh`) and the npm
//! packages (`bash scripts/setup.sh`); fails with that advice otherwise.

// Fixtures panic on setup failure by design; the clock ban is about wasm.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

mod support;

use std::fs;
use std::path::Path;
use std::time::Duration;

use support::*;
use test_support::worker::{start_worker, LocalWorker, TOKEN};

fn push(worker: &LocalWorker, dir: &Path, extra: &[&str]) -> serde_json::Value {
    let mut cmd = bin();
    cmd.env("ADMIN_TOKEN", TOKEN)
        .args([
            "push",
            "--yes",
            "--json",
            "--target",
            "ingest-api",
            "--api-url",
        ])
        .arg(worker.url())
        .args(extra)
        .arg(dir);
    let run = run(cmd);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    run.json()
}

fn statuses(worker: &LocalWorker, query: &str) -> Vec<(String, String)> {
    let (code, body) = worker.get(&format!("/admin/documents?{query}"));
    assert_eq!(code, 200, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    json["documents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["key"].as_str().unwrap().to_owned(),
                d["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[test]
fn pushed_documents_become_ready_in_the_local_worker() {
    let state = tempfile::tempdir().unwrap();
    let worker = start_worker(state.path());
    let docs = tempfile::tempdir().unwrap();
    write_file(
        docs.path(),
        "acme/overview.md",
        b"# Acme\n\nAcme builds forklifts.\n",
    );
    write_file(
        docs.path(),
        "acme/team.md",
        b"# Team\n\nTwelve engineers.\n",
    );
    write_file(
        docs.path(),
        "globex/pumps.md",
        b"---\ncompany: globex\n---\n# Pumps\n\nHeat pumps.\n",
    );

    let first = push(&worker, docs.path(), &["--prefix", "companies/"]);
    assert_eq!(first["totals"]["upload"], 3, "{first}");
    let ready = |expected: usize| {
        wait_until("documents ready", Duration::from_secs(60), || {
            statuses(&worker, "status=ready&prefix=companies/").len() == expected
        })
    };
    ready(3);

    let second = push(&worker, docs.path(), &["--prefix", "companies/"]);
    assert_eq!(second["totals"]["unchanged"], 3, "{second}");
    assert_eq!(second["totals"]["upload"], 0, "{second}");

    write_file(
        docs.path(),
        "acme/team.md",
        b"# Team\n\nThirteen engineers now.\n",
    );
    fs::remove_file(docs.path().join("globex/pumps.md")).unwrap();
    let third = push(
        &worker,
        docs.path(),
        &["--prefix", "companies/", "--delete"],
    );
    assert_eq!(third["totals"]["update"], 1, "{third}");
    assert_eq!(third["totals"]["delete"], 1, "{third}");
    wait_until("deletion processed", Duration::from_secs(60), || {
        statuses(&worker, "status=deleted&prefix=companies/")
            == vec![("companies/globex/pumps.md".to_owned(), "deleted".to_owned())]
    });
    ready(2);
    let fourth = push(
        &worker,
        docs.path(),
        &["--prefix", "companies/", "--delete"],
    );
    assert_eq!(fourth["totals"]["unchanged"], 2, "{fourth}");
}
