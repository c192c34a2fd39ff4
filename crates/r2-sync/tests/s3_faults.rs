//! Failure paths against the real S3 server behind a fault-injecting proxy:
//! 5xx and dropped connections are retried; persistent failures are
//! reported without leaving anything half-written; a run killed mid-way is
//! finished by simply running it again.

mod support;

use std::time::Duration;

use support::fault_proxy::{FaultAction, FaultProxy, FaultRule};
use support::*;

fn rule(
    method: &'static str,
    target: &str,
    skip: usize,
    times: usize,
    action: FaultAction,
) -> FaultRule {
    FaultRule {
        method,
        target_contains: target.to_owned(),
        skip,
        times,
        action,
    }
}

fn docs(n: usize) -> Vec<(String, String)> {
    (0..n)
        .map(|i| (format!("doc-{i:02}.md"), format!("# Document {i}\n")))
        .collect()
}

fn write_docs(dir: &std::path::Path, docs: &[(String, String)]) {
    for (rel, body) in docs {
        write_file(dir, rel, body.as_bytes());
    }
}

fn via_proxy(proxy: &FaultProxy, bucket: &str, dir: &std::path::Path, extra: &[&str]) -> Run {
    let mut args = vec!["push", "--yes", "--json", "--no-connection-reuse"];
    args.extend_from_slice(extra);
    run(s3_cmd(&proxy.endpoint(), bucket, dir, &args))
}

#[test]
fn server_errors_and_dropped_connections_are_retried() {
    let bucket = new_bucket("retry");
    let dir = tempfile::tempdir().unwrap();
    let docs = docs(6);
    write_docs(dir.path(), &docs);
    let proxy = FaultProxy::start(
        s3_server().port,
        vec![
            rule("GET", "list-type=2", 0, 1, FaultAction::Status(500)),
            rule(
                "PUT",
                &format!("/{bucket}/"),
                0,
                2,
                FaultAction::Status(503),
            ),
            rule("PUT", &format!("/{bucket}/"), 0, 1, FaultAction::Drop),
        ],
    );
    let result = via_proxy(&proxy, &bucket, dir.path(), &[]);
    assert_eq!(result.code, 0, "{}\n{}", result.stdout, result.stderr);
    assert_eq!(proxy.injected.load(std::sync::atomic::Ordering::SeqCst), 4);
    let report = result.json();
    assert_eq!(report["totals"]["succeeded"], 6);
    let contents = bucket_contents(&bucket);
    assert_eq!(contents.len(), 6);
    for (rel, body) in &docs {
        assert_eq!(contents[rel].body, body.as_bytes());
    }
    // The failed attempts were really re-sent.
    let puts = proxy
        .requests()
        .iter()
        .filter(|r| r.starts_with("PUT "))
        .count();
    assert_eq!(puts, 6 + 3);
}

#[test]
fn persistent_failures_are_reported_and_leave_nothing_half_written() {
    let bucket = new_bucket("persist");
    let dir = tempfile::tempdir().unwrap();
    write_docs(dir.path(), &docs(3));
    let big: Vec<u8> = (0..11 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    write_file(dir.path(), "big.md", &big);
    let proxy = FaultProxy::start(
        s3_server().port,
        vec![
            // Every attempt at one small document fails.
            rule("PUT", "doc-01.md", 0, 100, FaultAction::Status(500)),
            // The second part of the multipart upload always fails.
            rule("PUT", "partNumber=2", 0, 100, FaultAction::Status(503)),
        ],
    );
    let part = (5 * 1024 * 1024).to_string();
    let result = via_proxy(
        &proxy,
        &bucket,
        dir.path(),
        &[
            "--retries",
            "2",
            "--multipart-threshold",
            &part,
            "--part-size",
            &part,
        ],
    );
    assert_eq!(result.code, 1, "{}", result.stdout);
    let report = result.json();
    assert_eq!(report["outcome"], "failed");
    assert_eq!(report["totals"]["failed"], 2);
    assert_eq!(report["totals"]["succeeded"], 2);
    let failed: Vec<_> = report["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["status"] == "failed")
        .map(|r| r["key"].as_str().unwrap())
        .collect();
    assert_eq!(failed.len(), 2);
    assert!(failed.contains(&"doc-01.md") && failed.contains(&"big.md"));
    // 1 try + 2 retries for the small file.
    let small_puts = proxy
        .requests()
        .iter()
        .filter(|r| r.starts_with("PUT ") && r.contains("doc-01.md"))
        .count();
    assert_eq!(small_puts, 3);
    // The failed multipart upload was aborted, and nothing partial is visible.
    assert!(proxy
        .requests()
        .iter()
        .any(|r| r.starts_with("DELETE ") && r.contains("uploadId=")));
    let contents = bucket_contents(&bucket);
    assert_eq!(
        contents.keys().collect::<Vec<_>>(),
        ["doc-00.md", "doc-02.md"]
    );

    // The same run without faults completes.
    let (rerun, report) = push_json(
        &bucket,
        dir.path(),
        &["--multipart-threshold", &part, "--part-size", &part],
    );
    assert_eq!(rerun.code, 0);
    assert_eq!(report["totals"]["unchanged"], 2);
    assert_eq!(bucket_contents(&bucket)["big.md"].body, big);
}

#[test]
fn killed_run_is_finished_by_running_again() {
    let bucket = new_bucket("resume");
    let dir = tempfile::tempdir().unwrap();
    let docs = docs(10);
    write_docs(dir.path(), &docs);
    let big: Vec<u8> = (0..11 * 1024 * 1024u32).map(|i| (i % 253) as u8).collect();
    write_file(dir.path(), "aa-big.md", &big);
    // Two operations in flight: one is the big file, whose second part hangs;
    // the other slot uploads doc-00..03 and hangs on doc-04. Then the process
    // is killed (SIGKILL: no cleanup, no cache written).
    let proxy = FaultProxy::start(
        s3_server().port,
        vec![
            rule("PUT", "doc-", 4, 100, FaultAction::Hang),
            rule("PUT", "partNumber=2", 0, 1, FaultAction::Hang),
        ],
    );
    let part = (5 * 1024 * 1024).to_string();
    let mp = [
        "--multipart-threshold",
        part.as_str(),
        "--part-size",
        part.as_str(),
    ];
    let mut args = vec![
        "push",
        "--yes",
        "--json",
        "--no-connection-reuse",
        "--concurrency",
        "2",
    ];
    args.extend_from_slice(&mp);
    let mut child = spawn(s3_cmd(&proxy.endpoint(), &bucket, dir.path(), &args));
    wait_until("both hangs", Duration::from_secs(60), || {
        proxy.hanging.load(std::sync::atomic::Ordering::SeqCst) >= 2
    });
    child.kill().unwrap();
    child.wait().unwrap();

    let partial = bucket_contents(&bucket);
    assert_eq!(partial.len(), 4, "{:?}", partial.keys().collect::<Vec<_>>());
    assert!(
        !partial.contains_key("aa-big.md"),
        "an unfinished multipart upload must not be visible"
    );
    assert!(!dir.path().join(".r2-sync-cache.json").exists());

    // Re-run (no proxy): finishes the rest; what landed before is recognised
    // by its metadata, not re-sent.
    let (rerun, report) = push_json(&bucket, dir.path(), &mp);
    assert_eq!(rerun.code, 0, "{}", rerun.stdout);
    assert_eq!(report["totals"]["unchanged"], 4);
    assert_eq!(report["totals"]["upload"], 7);
    let contents = bucket_contents(&bucket);
    assert_eq!(contents.len(), 11);
    assert_eq!(contents["aa-big.md"].body, big);
    for (rel, body) in &docs {
        assert_eq!(contents[rel].body, body.as_bytes());
    }
}
