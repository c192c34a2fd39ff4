//! The CLI against a real S3-protocol server (moto): first push, no-op,
//! changes, deletes, dry run, JSON report, ignore rules, deletion guard,
//! prefix isolation, multipart. Each test uses its own bucket.

mod support;

use std::fs;

use support::*;

const DOCS: &[(&str, &str)] = &[
    ("companies/acme/about.md", "# Acme\nMakes anvils.\n"),
    ("companies/acme/people.md", "# People\n"),
    ("companies/globex/about.md", "# Globex\n"),
    ("index.md", "# Index\n"),
];

fn expect_bucket_mirrors(bucket: &str, prefix: &str, files: &[(&str, &str)]) {
    let contents = bucket_contents(bucket);
    let want: Vec<String> = files
        .iter()
        .map(|(rel, _)| format!("{prefix}{rel}"))
        .collect();
    let got: Vec<String> = contents
        .keys()
        .filter(|k| k.starts_with(prefix))
        .cloned()
        .collect();
    let mut want_sorted = want.clone();
    want_sorted.sort();
    assert_eq!(got, want_sorted);
    for (rel, body) in files {
        let object = &contents[&format!("{prefix}{rel}")];
        assert_eq!(object.body, body.as_bytes(), "{rel} body");
        assert_eq!(
            object.sha256_meta.as_deref(),
            Some(sha256_hex(body.as_bytes()).as_str()),
            "{rel} x-amz-meta-sha256"
        );
    }
}

#[test]
fn first_push_then_noop_then_change_then_delete() {
    let bucket = new_bucket("cycle");
    let dir = tempfile::tempdir().unwrap();
    write_tree(dir.path(), DOCS);

    // First push: everything uploaded, with the hash as metadata.
    let (run1, report) = push_json(&bucket, dir.path(), &["--prefix", "docs"]);
    assert_eq!(run1.code, 0, "{}", run1.stderr);
    assert_eq!(planned(&report, "upload").len(), 4);
    assert_eq!(report["totals"]["succeeded"], 4);
    expect_bucket_mirrors(&bucket, "docs/", DOCS);
    assert!(dir.path().join(".r2-sync-cache.json").exists());

    // Second push: nothing to do, no file re-read, no HEAD.
    let (run2, report) = push_json(&bucket, dir.path(), &["--prefix", "docs"]);
    assert_eq!(run2.code, 0);
    assert_eq!(report["plan"]["changes"].as_array().unwrap().len(), 0);
    assert_eq!(report["totals"]["unchanged"], 4);
    assert_eq!(report["local"]["hash"]["from_cache"], 4);
    assert_eq!(report["remote"]["from_cache"], 4);
    assert_eq!(report["remote"]["headed"], 0);
    assert!(report["results"].as_array().unwrap().is_empty());

    // A changed file (same size, so only the hash can tell) is updated.
    write_file(dir.path(), "index.md", b"# Jndex\n");
    let (run3, report) = push_json(&bucket, dir.path(), &["--prefix", "docs"]);
    assert_eq!(run3.code, 0);
    assert_eq!(planned(&report, "update"), ["docs/index.md"]);
    assert_eq!(report["totals"]["unchanged"], 3);
    let mut now = DOCS.to_vec();
    now[3] = ("index.md", "# Jndex\n");
    expect_bucket_mirrors(&bucket, "docs/", &now);

    // A deleted file stays remote without --delete...
    fs::remove_file(dir.path().join("companies/globex/about.md")).unwrap();
    let (run4, report) = push_json(&bucket, dir.path(), &["--prefix", "docs"]);
    assert_eq!(run4.code, 0);
    assert_eq!(
        report["plan"]["remote_only_kept"],
        serde_json::json!(["docs/companies/globex/about.md"])
    );
    assert!(bucket_contents(&bucket).contains_key("docs/companies/globex/about.md"));

    // ...and goes with it.
    let (run5, report) = push_json(&bucket, dir.path(), &["--prefix", "docs", "--delete"]);
    assert_eq!(run5.code, 0, "{}", run5.stdout);
    assert_eq!(
        planned(&report, "delete"),
        ["docs/companies/globex/about.md"]
    );
    now.remove(2);
    expect_bucket_mirrors(&bucket, "docs/", &now);
}

#[test]
fn lost_cache_is_rebuilt_by_head_and_metadata_decides() {
    let bucket = new_bucket("nocache");
    let dir = tempfile::tempdir().unwrap();
    write_tree(dir.path(), DOCS);
    assert_eq!(push_json(&bucket, dir.path(), &[]).0.code, 0);
    fs::remove_file(dir.path().join(".r2-sync-cache.json")).unwrap();

    // An object written by someone else, without our metadata, counts as changed.
    put_raw(&bucket, "index.md", b"# Index\n");
    let (run, report) = push_json(&bucket, dir.path(), &[]);
    assert_eq!(run.code, 0);
    assert_eq!(report["remote"]["headed"], 4);
    assert_eq!(report["remote"]["unknown"], 1);
    assert_eq!(planned(&report, "update"), ["index.md"]);
    assert_eq!(report["totals"]["unchanged"], 3);
    expect_bucket_mirrors(&bucket, "", DOCS);

    // --checksum re-hashes everything and still finds nothing to do.
    let (run, report) = push_json(&bucket, dir.path(), &["--checksum"]);
    assert_eq!(run.code, 0);
    assert_eq!(report["local"]["hash"]["hashed"], 4);
    assert_eq!(report["local"]["hash"]["from_cache"], 0);
    assert!(report["plan"]["changes"].as_array().unwrap().is_empty());
}

#[test]
fn dry_run_status_and_diff_change_nothing() {
    let bucket = new_bucket("dryrun");
    let dir = tempfile::tempdir().unwrap();
    write_tree(dir.path(), DOCS);
    put_raw(&bucket, "stale.md", b"old");
    let endpoint = s3_server().endpoint();

    let dry = run(s3_cmd(
        &endpoint,
        &bucket,
        dir.path(),
        &["push", "--dry-run", "--delete", "--force", "--exit-code"],
    ));
    assert_eq!(dry.code, 4, "changes pending: {}", dry.stderr);
    assert!(dry.stdout.contains("+ companies/acme/about.md"));
    assert!(dry.stdout.contains("- stale.md"));
    let dry_plain = run(s3_cmd(
        &endpoint,
        &bucket,
        dir.path(),
        &["push", "--dry-run"],
    ));
    assert_eq!(dry_plain.code, 0, "without --exit-code a dry run succeeds");
    let status = run(s3_cmd(
        &endpoint,
        &bucket,
        dir.path(),
        &["status", "--exit-code"],
    ));
    assert_eq!(status.code, 4);
    assert!(status.stdout.contains("4 to upload"), "{}", status.stdout);
    let diff = run(s3_cmd(&endpoint, &bucket, dir.path(), &["diff", "--json"]));
    assert_eq!(diff.code, 0);
    assert_eq!(diff.json()["mode"], "dry_run");

    let contents = bucket_contents(&bucket);
    assert_eq!(contents.keys().collect::<Vec<_>>(), ["stale.md"]);
    assert!(
        !dir.path().join(".r2-sync-cache.json").exists(),
        "a dry run writes no cache"
    );

    // In sync: --exit-code is 0.
    assert_eq!(push_json(&bucket, dir.path(), &[]).0.code, 0);
    let status = run(s3_cmd(
        &endpoint,
        &bucket,
        dir.path(),
        &["status", "--exit-code"],
    ));
    assert_eq!(status.code, 0, "{}", status.stdout);
}

#[test]
fn refuses_to_prompt_without_a_terminal() {
    let bucket = new_bucket("notty");
    let dir = tempfile::tempdir().unwrap();
    write_tree(dir.path(), DOCS);
    let refused = run(s3_cmd(
        &s3_server().endpoint(),
        &bucket,
        dir.path(),
        &["push"],
    ));
    assert_eq!(refused.code, 3);
    assert!(refused.stderr.contains("--yes"), "{}", refused.stderr);
    assert!(bucket_contents(&bucket).is_empty());
}

#[test]
fn json_report_schema() {
    let bucket = new_bucket("schema");
    let dir = tempfile::tempdir().unwrap();
    write_tree(dir.path(), DOCS);
    let (run, r) = push_json(&bucket, dir.path(), &["--prefix", "p"]);
    assert_eq!(run.code, 0);
    assert_eq!(r["schema"], "r2-sync.report/v1");
    assert_eq!(r["command"], "push");
    assert_eq!(r["mode"], "apply");
    assert_eq!(r["target"]["kind"], "s3");
    assert_eq!(r["target"]["prefix"], "p/");
    assert!(r["target"]["location"].as_str().unwrap().ends_with(&bucket));
    assert_eq!(r["local"]["files"], 4);
    assert!(r["local"]["bytes"].as_u64().unwrap() > 0);
    for field in ["listed", "from_listing", "from_cache", "headed", "unknown"] {
        assert!(r["remote"][field].is_u64(), "remote.{field}");
    }
    let change = &r["plan"]["changes"][0];
    assert_eq!(change["kind"], "upload");
    assert_eq!(change["local_sha256"].as_str().unwrap().len(), 64);
    assert!(change["size"].is_u64());
    let result = &r["results"][0];
    assert_eq!(result["status"], "ok");
    assert_eq!(result["action"], "upload");
    assert!(result["bytes"].as_u64().unwrap() > 0);
    assert_eq!(result["multipart"], false);
    assert!(r["errors"].as_array().unwrap().is_empty());
    for field in [
        "upload",
        "update",
        "delete",
        "unchanged",
        "remote_only_kept",
        "succeeded",
        "failed",
        "skipped",
        "bytes_uploaded",
        "errors",
    ] {
        assert!(r["totals"][field].is_u64(), "totals.{field}");
    }
    assert_eq!(r["totals"]["bytes_uploaded"], r["local"]["bytes"]);
    assert!(r["duration_ms"].is_u64());
    assert_eq!(r["outcome"], "ok");
    assert_eq!(r["exit_code"], 0);

    // Configuration errors are reported in the same schema, exit 2.
    let mut cmd = bin();
    cmd.args(["push", "--json", "--yes"]).arg(dir.path());
    let bad = support::run(cmd);
    assert_eq!(bad.code, 2);
    let bad = bad.json();
    assert_eq!(bad["outcome"], "failed");
    assert_eq!(bad["errors"][0]["stage"], "config");
    assert!(bad["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("R2_ACCESS_KEY_ID"));
}

#[test]
fn ignore_rules_globs_hidden_and_symlinks() {
    let bucket = new_bucket("ignore");
    let dir = tempfile::tempdir().unwrap();
    write_tree(
        dir.path(),
        &[
            ("a.md", "a"),
            ("notes.txt", "t"),
            ("drafts/wip.md", "w"),
            ("sub/b.md", "b"),
            ("sub/secret.md", "s"),
            (".hidden/h.md", "h"),
        ],
    );
    fs::write(dir.path().join(".r2syncignore"), "drafts/\n").unwrap();
    fs::write(dir.path().join("sub/.r2syncignore"), "secret.md\n").unwrap();
    #[cfg(unix)]
    {
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("x.md"), "outside").unwrap();
        std::os::unix::fs::symlink(outside.path().join("x.md"), dir.path().join("link.md"))
            .unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("linked-dir")).unwrap();
    }
    let (run, report) = push_json(
        &bucket,
        dir.path(),
        &["--include", "*.md", "--exclude", "a.md"],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        bucket_contents(&bucket).keys().collect::<Vec<_>>(),
        ["sub/b.md"]
    );
    #[cfg(unix)]
    assert_eq!(report["local"]["skipped_special"], 2);

    // Names that cannot be keys are reported (exit 1), the rest still syncs.
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        fs::write(
            dir.path().join(std::ffi::OsStr::from_bytes(b"bad\xff.md")),
            "x",
        )
        .unwrap();
        let (run, report) = push_json(&bucket, dir.path(), &["--include", "*.md"]);
        assert_eq!(run.code, 1);
        assert_eq!(report["errors"][0]["stage"], "walk");
        assert!(bucket_contents(&bucket).contains_key("a.md"));
    }
}

#[test]
fn deletion_guard_refuses_mass_deletes_without_force() {
    let bucket = new_bucket("guard");
    let dir = tempfile::tempdir().unwrap();
    write_tree(dir.path(), DOCS);
    assert_eq!(push_json(&bucket, dir.path(), &[]).0.code, 0);
    for (rel, _) in &DOCS[..3] {
        fs::remove_file(dir.path().join(rel)).unwrap();
    }
    // 3 of 4 = 75% > 50%: refused, nothing deleted.
    let (run, report) = push_json(&bucket, dir.path(), &["--delete"]);
    assert_eq!(run.code, 3);
    assert_eq!(report["outcome"], "refused");
    assert!(report["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("--force"));
    assert_eq!(bucket_contents(&bucket).len(), 4);
    // A higher limit or --force allows it.
    let (run, _) = push_json(
        &bucket,
        dir.path(),
        &["--delete", "--max-delete-percent", "80"],
    );
    assert_eq!(run.code, 0);
    assert_eq!(
        bucket_contents(&bucket).keys().collect::<Vec<_>>(),
        ["index.md"]
    );
    fs::remove_file(dir.path().join("index.md")).unwrap();
    assert_eq!(push_json(&bucket, dir.path(), &["--delete"]).0.code, 3);
    assert_eq!(
        push_json(&bucket, dir.path(), &["--delete", "--force"])
            .0
            .code,
        0
    );
    assert!(bucket_contents(&bucket).is_empty());
}

#[test]
fn refuses_deletions_when_the_folder_could_not_be_read_in_full() {
    let bucket = new_bucket("incomplete");
    let dir = tempfile::tempdir().unwrap();
    write_tree(dir.path(), DOCS);
    assert_eq!(push_json(&bucket, dir.path(), &[]).0.code, 0);
    // One file goes (a deletion to make) and one file can no longer be a
    // key (a walk error): the plan must not delete while the scan is incomplete.
    fs::remove_file(dir.path().join(DOCS[0].0)).unwrap();
    fs::write(dir.path().join("bad\\name.md"), "# bad").unwrap();
    let (run, report) = push_json(&bucket, dir.path(), &["--delete"]);
    assert_eq!(run.code, 3, "{report}");
    assert_eq!(report["outcome"], "refused");
    let messages: Vec<&str> = report["errors"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["message"].as_str())
        .collect();
    assert!(
        messages
            .iter()
            .any(|m| m.contains("cannot be a document key")),
        "{messages:?}"
    );
    assert!(
        messages
            .iter()
            .any(|m| m.contains("could not be read or hashed")),
        "{messages:?}"
    );
    assert_eq!(
        bucket_contents(&bucket).len(),
        DOCS.len(),
        "nothing deleted"
    );
    // --force takes the responsibility.
    let (run, _) = push_json(&bucket, dir.path(), &["--delete", "--force"]);
    assert_eq!(run.code, 1, "done, with the walk error reported");
    assert_eq!(bucket_contents(&bucket).len(), DOCS.len() - 1);
}

#[test]
fn never_touches_keys_outside_the_prefix() {
    let bucket = new_bucket("prefix");
    for key in ["docs-old/a.md", "other/b.md", "docs.md", "root.md"] {
        put_raw(&bucket, key, b"keep me");
    }
    let dir = tempfile::tempdir().unwrap();
    write_tree(dir.path(), &[("a.md", "new")]);
    let (run, report) = push_json(
        &bucket,
        dir.path(),
        &["--prefix", "docs", "--delete", "--force"],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(report["remote"]["listed"], 0);
    assert!(planned(&report, "delete").is_empty());
    let contents = bucket_contents(&bucket);
    assert_eq!(
        contents.keys().collect::<Vec<_>>(),
        [
            "docs-old/a.md",
            "docs.md",
            "docs/a.md",
            "other/b.md",
            "root.md"
        ]
    );
    assert!(contents.values().filter(|o| o.body == b"keep me").count() == 4);

    // Emptying the folder deletes only under the prefix.
    fs::remove_file(dir.path().join("a.md")).unwrap();
    let (run, _) = push_json(
        &bucket,
        dir.path(),
        &["--prefix", "docs", "--delete", "--force"],
    );
    assert_eq!(run.code, 0);
    assert_eq!(bucket_contents(&bucket).len(), 4);
}

#[test]
fn large_files_go_multipart_and_round_trip() {
    let bucket = new_bucket("multipart");
    let dir = tempfile::tempdir().unwrap();
    // 12 MiB + 7 bytes of non-repeating content: three 5 MiB parts (the last short).
    let big: Vec<u8> = (0..12 * 1024 * 1024 + 7u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    write_file(dir.path(), "big.md", &big);
    write_tree(dir.path(), &[("small.md", "small")]);
    let part = (5 * 1024 * 1024).to_string();
    let args = [
        "--multipart-threshold",
        part.as_str(),
        "--part-size",
        part.as_str(),
    ];
    let (run, report) = push_json(&bucket, dir.path(), &args);
    assert_eq!(run.code, 0, "{}", run.stdout);
    let results = report["results"].as_array().unwrap();
    let big_result = results.iter().find(|r| r["key"] == "big.md").unwrap();
    assert_eq!(big_result["multipart"], true);
    assert_eq!(big_result["bytes"], big.len() as u64);
    let contents = bucket_contents(&bucket);
    assert_eq!(contents["big.md"].body, big);
    assert_eq!(
        contents["big.md"].sha256_meta.as_deref(),
        Some(sha256_hex(&big).as_str())
    );
    // A multipart ETag is not an MD5 of the content ("…-3"): change detection must not rely on it.
    assert!(
        contents["big.md"].etag.as_deref().unwrap().contains("-3"),
        "{:?}",
        contents["big.md"].etag
    );

    let (run, report) = push_json(&bucket, dir.path(), &args);
    assert_eq!(run.code, 0);
    assert_eq!(report["totals"]["unchanged"], 2);
    assert_eq!(report["remote"]["headed"], 0);
}
