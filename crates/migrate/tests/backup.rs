//! Backup and restore rehearsed end to end: the sample documents and a
//! company with its fields and legacy id go into the real Worker under
//! `wrangler dev`; `backup` takes them out; the service is destroyed (its
//! process stopped, its persisted D1, R2, queues and Durable Objects
//! deleted); a fresh one gets `restore-backup`; the same questions return
//! the same documents in the same order, with every object byte for byte.
//! A second restore changes nothing, and a damaged backup is refused before
//! anything is written.
//!
//! Needs the built Worker (`bash scripts/build-worker.sh`) and the npm
//! packages (`bash scripts/setup.sh`); fails with that advice otherwise.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use support::*;
use test_support::worker::{start_worker, LocalWorker, TOKEN};

const QUESTIONS: [&str; 5] = [
    "How does Northwind store its orders?",
    "What does the route planner optimise?",
    "Which simulator does Acme use?",
    "What does Lumen Health build?",
    "Who are the customers?",
];

fn put(worker: &LocalWorker, key: &str, body: &str) {
    let (code, answer) = worker.send(
        "PUT",
        &format!("/admin/documents/{key}"),
        "text/markdown",
        body,
    );
    assert_eq!(code, 202, "{key}: {answer}");
}

fn wait_ready(worker: &LocalWorker, expected: usize) {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let docs = worker.get_json("/admin/documents?limit=1000")["documents"].clone();
        let docs = docs.as_array().unwrap();
        let ready = docs.iter().filter(|d| d["status"] == "ready").count();
        if ready == expected {
            return;
        }
        assert!(Instant::now() < deadline, "not ready in time: {docs:?}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// What `/api/search` returns per question: the top result, then every result
/// as (key, chunk, per-source raw scores) in key order. The per-source scores
/// must come back identical. The fused order is compared only at the top:
/// each source breaks ties between equal raw scores by row id, and row ids
/// follow the order in which documents were ingested, which a restore (like
/// any rebuild) does not reproduce, so equally scored chunks may swap ranks.
fn answers(worker: &LocalWorker) -> Vec<(String, Vec<String>)> {
    QUESTIONS
        .iter()
        .map(|q| {
            let body = serde_json::json!({ "query": q, "top_k": 8 }).to_string();
            let (code, text) = worker.send("POST", "/api/search", "application/json", &body);
            assert_eq!(code, 200, "{q}: {text}");
            let json: serde_json::Value = serde_json::from_str(&text).unwrap();
            let results = json["results"].as_array().unwrap();
            let name = |r: &serde_json::Value| {
                format!("{} #{}", r["key"].as_str().unwrap(), r["chunk_index"])
            };
            let mut all: Vec<String> = results
                .iter()
                .map(|r| format!("{} {}", name(r), r["scores"]))
                .collect();
            all.sort();
            (results.first().map(name).unwrap_or_default(), all)
        })
        .collect()
}

/// Objects by key, as the service serves them.
fn objects(worker: &LocalWorker) -> Vec<(String, String)> {
    let docs = worker.get_json("/admin/documents?limit=1000")["documents"].clone();
    let mut out: Vec<(String, String)> = docs
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            let key = d["key"].as_str().unwrap().to_owned();
            let (code, body) = worker.get(&format!("/admin/objects/{key}"));
            assert_eq!(code, 200, "{key}");
            (key, body)
        })
        .collect();
    out.sort();
    out
}

fn migrate(worker: &LocalWorker, args: &[&str], dir: &Path) -> Run {
    let mut cmd = bin();
    cmd.env("ADMIN_TOKEN", TOKEN)
        .args(args)
        .args(["--json", "--target", &worker.url()])
        .arg(if args[0] == "backup" {
            "--out"
        } else {
            "--from"
        })
        .arg(dir);
    run(cmd)
}

fn samples() -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../samples");
    let mut out = Vec::new();
    for company in std::fs::read_dir(root.join("companies")).unwrap() {
        let company = company.unwrap().path();
        for file in std::fs::read_dir(&company).unwrap() {
            let file = file.unwrap().path();
            let key = file
                .strip_prefix(&root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            out.push((key, std::fs::read_to_string(&file).unwrap()));
        }
    }
    out.sort();
    out
}

#[test]
fn backup_destroy_restore_gives_the_same_answers() {
    let work = tempfile::tempdir().unwrap();
    let docs = samples();
    let before = {
        let worker = start_worker(&work.path().join("first"));
        for (key, body) in &docs {
            put(&worker, key, body);
        }
        let company = serde_json::json!({ "companies": [{
            "slug": "northwind", "name": "Northwind Logistics", "description": "Freight software",
            "website": "https://northwind.example", "metadata": { "tier": 1 },
            "legacy_id": "6d1f0a3e-5b7c-4d2e-9f10-aa0000000001"
        }]});
        let (code, body) = worker.send(
            "POST",
            "/admin/companies",
            "application/json",
            &company.to_string(),
        );
        assert_eq!(code, 200, "{body}");
        let mapping = serde_json::json!({ "documents": [{
            "legacy_id": "6d1f0a3e-5b7c-4d2e-9f10-bb0000000002", "key": "companies/northwind/overview.md"
        }]});
        wait_ready(&worker, docs.len());
        let (code, body) = worker.send(
            "POST",
            "/admin/legacy-ids/documents",
            "application/json",
            &mapping.to_string(),
        );
        assert_eq!(code, 200, "{body}");

        let backup = work.path().join("backup");
        let started = Instant::now();
        let taken = migrate(&worker, &["backup"], &backup);
        assert_eq!(taken.code, 0, "{}", taken.stderr);
        let report = taken.json();
        assert_eq!(report["documents"], docs.len());
        println!(
            "[backup] {} documents, {} objects in {:?}",
            report["documents"],
            report["objects"],
            started.elapsed()
        );
        (
            answers(&worker),
            objects(&worker),
            worker.get_json("/admin/companies?limit=1000"),
        )
        // The worker is dropped here: its process group is killed.
    };
    // Destroy: nothing of the first service's state survives.
    std::fs::remove_dir_all(work.path().join("first")).unwrap();

    let worker = start_worker(&work.path().join("second"));
    let backup = work.path().join("backup");
    let started = Instant::now();
    let restored = migrate(&worker, &["restore-backup", "--wait", "180"], &backup);
    assert_eq!(restored.code, 0, "{}\n{}", restored.stdout, restored.stderr);
    let report = restored.json();
    assert_eq!(report["documents_uploaded"], docs.len());
    assert_eq!(report["ready"], docs.len());
    assert_eq!(report["legacy_ids_mapped"], 1);
    println!(
        "[restore] {} documents uploaded and ready in {:?}",
        report["documents_uploaded"],
        started.elapsed()
    );

    assert_eq!(objects(&worker), before.1, "every object byte for byte");
    assert_eq!(
        answers(&worker),
        before.0,
        "the same best chunk, and the same chunks with the same per-source scores, for each question"
    );
    let strip = |v: &serde_json::Value| -> Vec<serde_json::Value> {
        v["companies"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                // Row ids are the new database's; `updated_at` moves whenever
                // ingestion stores a document of the company.
                let mut c = c.clone();
                c.as_object_mut().unwrap().remove("id");
                c.as_object_mut().unwrap().remove("updated_at");
                c
            })
            .collect()
    };
    assert_eq!(
        strip(&worker.get_json("/admin/companies?limit=1000")),
        strip(&before.2)
    );
    let overview = worker.get_json("/admin/documents/companies/northwind/overview.md");
    assert_eq!(
        overview["legacy_id"],
        "6d1f0a3e-5b7c-4d2e-9f10-bb0000000002"
    );

    // Again: nothing to do.
    let again = migrate(&worker, &["restore-backup"], &backup);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert_eq!(again.json()["documents_uploaded"], 0);
    assert_eq!(again.json()["documents_unchanged"], docs.len());

    // A damaged backup is refused before anything is written.
    let object = std::fs::read_dir(backup.join("objects"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::fs::write(&object, "tampered").unwrap();
    let damaged = migrate(&worker, &["restore-backup"], &backup);
    assert_eq!(damaged.code, 1);
    assert_eq!(damaged.json()["error"]["stage"], "check");
    assert!(damaged.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("hashes to"));
}
