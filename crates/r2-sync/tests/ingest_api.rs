//! The ingest-API target against a real HTTP server that enforces the
//! contract (bearer token, x-content-sha256, per-segment key encoding,
//! cursor pagination) and records every request.

mod support;

use std::fs;
use std::path::Path;
use std::sync::atomic::Ordering;

use support::ingest_server::{IngestServer, SERVER_PAGE};
use support::*;

const TOKEN: &str = "s3cret-admin-token";

fn ingest(server: &IngestServer, dir: &Path, token: Option<&str>, args: &[&str]) -> Run {
    let mut cmd = bin();
    cmd.env("R2_SYNC_TARGET", "ingest-api")
        .env("R2_SYNC_API_URL", server.base_url());
    if let Some(token) = token {
        cmd.env("ADMIN_TOKEN", token);
    }
    cmd.args(args).arg(dir);
    run(cmd)
}

#[test]
fn push_cycle_through_the_ingest_api() {
    let server = IngestServer::start(TOKEN);
    let dir = tempfile::tempdir().unwrap();
    let files: Vec<(String, String)> = (0..7)
        .map(|i| (format!("co/doc {i}.md"), format!("# Doc {i}\n")))
        .collect();
    for (rel, body) in &files {
        write_file(dir.path(), rel, body.as_bytes());
    }
    write_file(dir.path(), "ünïcode/q?#.md", b"# odd name\n");

    let first = ingest(
        &server,
        dir.path(),
        Some(TOKEN),
        &["push", "--yes", "--json", "--prefix", "docs"],
    );
    assert_eq!(first.code, 0, "{}{}", first.stdout, first.stderr);
    assert_eq!(first.json()["target"]["kind"], "ingest-api");
    let docs = server.documents();
    assert_eq!(docs.len(), 8);
    for (rel, body) in &files {
        let (sha, stored) = &docs[&format!("docs/{rel}")];
        assert_eq!(stored, body.as_bytes());
        assert_eq!(sha, &sha256_hex(body.as_bytes()));
    }
    assert!(
        docs.contains_key("docs/ünïcode/q?#.md"),
        "{:?}",
        docs.keys()
    );
    let requests = server.requests();
    assert!(requests.iter().all(|r| r.authorized));
    assert!(requests
        .iter()
        .any(|r| r.method == "PUT" && r.url == "/admin/documents/docs/co/doc%200.md"));
    assert!(requests
        .iter()
        .any(|r| r.url == "/admin/documents/docs/%C3%BCn%C3%AFcode/q%3F%23.md"));

    // No-op: the listing (paginated: more documents than the server's page)
    // carries the hashes, so nothing is sent.
    let before = server.requests().len();
    let second = ingest(
        &server,
        dir.path(),
        Some(TOKEN),
        &["push", "--yes", "--json", "--prefix", "docs"],
    );
    assert_eq!(second.code, 0);
    let report = second.json();
    assert_eq!(report["totals"]["unchanged"], 8);
    assert_eq!(report["remote"]["from_listing"], 8);
    let new_requests = &server.requests()[before..];
    assert!(new_requests.iter().all(|r| r.method == "GET"));
    assert_eq!(new_requests.len(), 8usize.div_ceil(SERVER_PAGE));
    assert!(new_requests[1].url.contains("cursor=3"), "{new_requests:?}");

    // Change one, delete one.
    write_file(dir.path(), "co/doc 1.md", b"# Doc one, revised\n");
    fs::remove_file(dir.path().join("co/doc 2.md")).unwrap();
    let third = ingest(
        &server,
        dir.path(),
        Some(TOKEN),
        &["push", "--yes", "--json", "--prefix", "docs", "--delete"],
    );
    assert_eq!(third.code, 0, "{}", third.stdout);
    let report = third.json();
    assert_eq!(planned(&report, "update"), ["docs/co/doc 1.md"]);
    assert_eq!(planned(&report, "delete"), ["docs/co/doc 2.md"]);
    let docs = server.documents();
    assert_eq!(docs["docs/co/doc 1.md"].1, b"# Doc one, revised\n");
    assert!(!docs.contains_key("docs/co/doc 2.md"));
    assert_eq!(docs.len(), 7);
}

#[test]
fn wrong_or_missing_token_fails_clearly() {
    let server = IngestServer::start(TOKEN);
    let dir = tempfile::tempdir().unwrap();
    write_tree(dir.path(), &[("a.md", "a")]);
    let wrong = ingest(
        &server,
        dir.path(),
        Some("nope"),
        &["push", "--yes", "--json"],
    );
    assert_eq!(wrong.code, 1);
    let report = wrong.json();
    assert_eq!(report["errors"][0]["stage"], "list");
    assert!(report["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("401"));
    assert!(
        !wrong.stdout.contains("nope"),
        "the token must never be printed"
    );
    // 401 is not retried.
    assert_eq!(server.requests().len(), 1);

    let missing = ingest(&server, dir.path(), None, &["push", "--yes"]);
    assert_eq!(missing.code, 2);
    assert!(missing.stderr.contains("ADMIN_TOKEN"), "{}", missing.stderr);

    // A token file works instead of the environment.
    let token_file = tempfile::NamedTempFile::new().unwrap();
    fs::write(token_file.path(), format!("{TOKEN}\n")).unwrap();
    let mut args = vec!["push", "--yes", "--admin-token-file"];
    args.push(token_file.path().to_str().unwrap());
    let with_file = ingest(&server, dir.path(), None, &args);
    assert_eq!(with_file.code, 0, "{}", with_file.stderr);
    assert_eq!(server.documents().len(), 1);
}

#[test]
fn unavailable_server_is_retried() {
    let server = IngestServer::start(TOKEN);
    server.fail_puts.store(3, Ordering::SeqCst);
    let dir = tempfile::tempdir().unwrap();
    write_tree(dir.path(), &[("a.md", "a"), ("b.md", "b")]);
    let result = ingest(
        &server,
        dir.path(),
        Some(TOKEN),
        &["push", "--yes", "--json", "--concurrency", "1"],
    );
    assert_eq!(result.code, 0, "{}", result.stdout);
    assert_eq!(server.fail_puts.load(Ordering::SeqCst), 0);
    assert_eq!(server.documents().len(), 2);
    let puts = server
        .requests()
        .iter()
        .filter(|r| r.method == "PUT")
        .count();
    assert_eq!(puts, 5);
}
