//! A transaction-mode pooler (Supabase's port 6543, or a URL saying
//! `pgbouncer=true`) is refused by every command that connects to Postgres,
//! before any connection is tried: the pooler host is never reached (these
//! tests run without a network), so exit 2 and stage `config` prove it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

mod support;

use support::*;

const POOLERS: [&str; 3] = [
    "postgres://postgres.abcdefghij:secret@aws-0-eu-central-1.pooler.supabase.com:6543/postgres",
    "postgres://postgres.abcdefghij:secret@aws-0-eu-central-1.pooler.supabase.com:6543/postgres?pgbouncer=true&sslmode=require",
    "host=db.abcdefghij.supabase.co port=6543 user=postgres password=secret dbname=postgres",
];

fn assert_refused(done: &Run, url: &str) {
    let output = format!("{}{}", done.stdout, done.stderr);
    assert_eq!(done.code, 2, "{url}: {output}");
    assert!(
        output.contains("transaction-mode pooler does not support the prepared statements")
            && output.contains("session pooler (port 5432 on the pooler host)")
            && !output.contains("secret"),
        "{url}: {output}"
    );
}

#[test]
fn export_refuses_a_transaction_pooler_naming_the_session_pooler() {
    for url in POOLERS {
        let out = tempfile::tempdir().unwrap();
        let mut cmd = bin();
        cmd.args(["export", "--json", "--database-url", url, "--out"])
            .arg(out.path().join("export"));
        let done = run(cmd);
        assert_refused(&done, url);
        assert_eq!(done.json()["error"]["stage"], "config", "{url}");
        // Only the run log, recording the refusal; no data file.
        assert!(!out.path().join("export/documents.jsonl").exists(), "{url}");
    }
}

#[test]
fn restore_and_verify_refuse_a_transaction_pooler_before_reading() {
    let empty = tempfile::tempdir().unwrap();
    for url in POOLERS {
        let mut restore = bin();
        restore
            .args(["restore", "--json", "--database-url", url, "--from"])
            .arg(empty.path());
        let mut verify = bin();
        verify
            .env("ADMIN_TOKEN", "not-a-secret")
            .args(["verify", "--json", "--target", "http://127.0.0.1:9"])
            .args(["--database-url", url, "--from"])
            .arg(empty.path());
        for cmd in [restore, verify] {
            assert_refused(&run(cmd), url);
        }
    }
}
