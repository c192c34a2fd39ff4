//! `sslmode`, `sslrootcert` and `--ca-cert` against real PostgreSQL 15 clusters: one with
//! `ssl = on` whose pg_hba refuses connections without TLS (so a connection
//! that works went over TLS), with a server certificate for `127.0.0.1`
//! signed by a CA made at test time; and one without TLS.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

mod support;

use std::path::Path;
use std::sync::OnceLock;

use support::postgres::{cluster, tls_cluster};
use support::*;

/// `export --dry-run`: connects, counts in a snapshot, writes nothing.
fn count(url: &str, extra: &[&str]) -> Run {
    let out = tempfile::tempdir().unwrap();
    let mut cmd = bin();
    cmd.args([
        "export",
        "--json",
        "--dry-run",
        "--database-url",
        url,
        "--out",
    ])
    .arg(out.path().join("export"))
    .args(extra);
    run(cmd)
}

/// The fixture database of the TLS cluster, shared: the tests only read it.
fn tls_db() -> &'static str {
    static DB: OnceLock<String> = OnceLock::new();
    DB.get_or_init(|| tls_cluster().fixture_database("tls"))
}

/// The fixture database of the plain cluster, shared likewise.
fn plain_db() -> &'static str {
    static DB: OnceLock<String> = OnceLock::new();
    DB.get_or_init(|| cluster().fixture_database("plain"))
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn assert_counted(run: &Run, what: &str) {
    assert_eq!(run.code, 0, "{what}: {}\n{}", run.stdout, run.stderr);
    assert!(
        run.json()["source_counts"]["documents"].as_u64().unwrap() > 300,
        "{what}: {}",
        run.stdout
    );
}

/// The error of a failed run: `(exit code, stage, message)`.
fn failure(run: &Run) -> (i32, String, String) {
    let report = run.json();
    (
        run.code,
        report["error"]["stage"].as_str().unwrap().to_owned(),
        report["error"]["message"].as_str().unwrap().to_owned(),
    )
}

#[test]
fn sslmode_require_connects_and_exports_over_tls_without_checking_the_certificate() {
    let pg = tls_cluster();
    let db = tls_db();
    let url = format!("{}?sslmode=require", pg.url("migrator", db));
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("export");
    let mut cmd = bin();
    cmd.args([
        "export",
        "--json",
        "--limit",
        "5",
        "--database-url",
        &url,
        "--out",
    ])
    .arg(&dir);
    let run = run(cmd);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(run.json()["exported"]["documents"], 5);
    assert_eq!(jsonl(&dir.join("documents.jsonl")).len(), 5);
    // The log names the database, never the URL with its parameters.
    let log = std::fs::read_to_string(dir.join("migrate-log.jsonl")).unwrap();
    assert!(
        !log.contains("sslmode") && !log.contains("migrator@"),
        "{log}"
    );
}

#[test]
fn sslmode_verify_full_with_the_test_ca_connects() {
    let pg = tls_cluster();
    let db = tls_db();
    let ca = &pg.tls().ca_cert;
    let url = format!("{}?sslmode=verify-full", pg.url("migrator", db));
    assert_counted(&count(&url, &["--ca-cert", path(ca)]), "--ca-cert");
    // libpq's URL parameter does the same.
    let with_root = format!(
        "{url}&sslrootcert={}",
        percent_encoding::utf8_percent_encode(path(ca), percent_encoding::NON_ALPHANUMERIC)
    );
    assert_counted(&count(&with_root, &[]), "sslrootcert=");
    // So does a key=value connection string.
    let key_value = format!(
        "host=127.0.0.1 port={} user=migrator dbname={db} sslmode=verify-full sslrootcert='{}'",
        pg.port,
        path(ca)
    );
    assert_counted(&count(&key_value, &[]), "key=value");
}

#[test]
fn sslmode_verify_full_without_the_ca_fails_with_a_certificate_error() {
    let pg = tls_cluster();
    let db = tls_db();
    let url = format!("{}?sslmode=verify-full", pg.url("migrator", db));
    let (code, stage, message) = failure(&count(&url, &[]));
    assert_eq!((code, stage.as_str()), (1, "connect"), "{message}");
    assert!(
        message.contains("certificate is not signed by a trusted CA")
            && message.contains("--ca-cert FILE")
            && message.contains("UnknownIssuer"),
        "{message}"
    );
    assert!(!message.contains("migrator@"), "{message}");
    // verify-ca checks the chain just the same.
    let url = format!("{}?sslmode=verify-ca", pg.url("migrator", db));
    let (code, _, message) = failure(&count(&url, &[]));
    assert_eq!(code, 1);
    assert!(message.contains("not signed by a trusted CA"), "{message}");
}

#[test]
fn the_system_trust_store_is_trusted_too() {
    // SSL_CERT_FILE stands in for the system's store (rustls-native-certs
    // reads it instead of the platform's): a CA there needs no --ca-cert.
    let pg = tls_cluster();
    let url = format!("{}?sslmode=verify-full", pg.url("migrator", tls_db()));
    let out = tempfile::tempdir().unwrap();
    let mut cmd = bin();
    cmd.env("SSL_CERT_FILE", &pg.tls().ca_cert)
        .env_remove("SSL_CERT_DIR")
        .args([
            "export",
            "--json",
            "--dry-run",
            "--database-url",
            &url,
            "--out",
        ])
        .arg(out.path().join("export"));
    assert_counted(&run(cmd), "CA in SSL_CERT_FILE");
}

/// [`count`] with the system's trust store replaced by `store` (a PEM file),
/// as rustls-native-certs and OpenSSL both read `SSL_CERT_FILE`.
fn count_with_system_store(url: &str, store: &Path, extra: &[&str]) -> Run {
    let out = tempfile::tempdir().unwrap();
    let mut cmd = bin();
    cmd.env("SSL_CERT_FILE", store)
        .env_remove("SSL_CERT_DIR")
        .args([
            "export",
            "--json",
            "--dry-run",
            "--database-url",
            url,
            "--out",
        ])
        .arg(out.path().join("export"))
        .args(extra);
    run(cmd)
}

#[test]
fn sslrootcert_system_verifies_chain_and_host_name_against_the_system_store_only() {
    let pg = tls_cluster();
    let db = tls_db();
    let tls = pg.tls();
    // No sslmode: sslrootcert=system makes it verify-full, as libpq does.
    let url = format!("{}?sslrootcert=system", pg.url("migrator", db));
    // The test CA in the system's store: the chain checks, the certificate
    // is for 127.0.0.1, the connection goes through.
    assert_counted(
        &count_with_system_store(&url, &tls.ca_cert, &[]),
        "system store holding the CA",
    );
    // A store without it refuses the private CA: the system's roots are
    // all that is trusted (require would have connected unchecked).
    let (code, stage, message) = failure(&count_with_system_store(&url, &tls.other_ca_cert, &[]));
    assert_eq!((code, stage.as_str()), (1, "connect"), "{message}");
    assert!(
        message.contains("sslrootcert=system trusts the system's CAs only")
            && message.contains("UnknownIssuer"),
        "{message}"
    );
    // The host name is checked: the certificate is not for `localhost`.
    let by_name = format!(
        "{}?sslrootcert=system",
        pg.url_via("localhost", "migrator", db)
    );
    let (code, stage, message) = failure(&count_with_system_store(&by_name, &tls.ca_cert, &[]));
    assert_eq!((code, stage.as_str()), (1, "connect"), "{message}");
    assert!(message.contains("not valid for the host name"), "{message}");
    // The same certificate named as the root file instead is trusted, with
    // verify-full, whatever the system's store holds.
    let with_file = format!(
        "{}?sslmode=verify-full&sslrootcert={}",
        pg.url("migrator", db),
        percent_encoding::utf8_percent_encode(
            path(&tls.ca_cert),
            percent_encoding::NON_ALPHANUMERIC
        )
    );
    assert_counted(
        &count_with_system_store(&with_file, &tls.other_ca_cert, &[]),
        "sslrootcert=FILE",
    );
}

#[test]
fn sslrootcert_system_with_an_empty_system_store_says_so() {
    let pg = tls_cluster();
    let url = format!("{}?sslrootcert=system", pg.url("migrator", tls_db()));
    let empty = tempfile::NamedTempFile::new().unwrap();
    let (code, stage, message) = failure(&count_with_system_store(&url, empty.path(), &[]));
    assert_eq!((code, stage.as_str()), (2, "config"), "{message}");
    assert!(
        message.contains("sslrootcert=system: the system's trust store holds no CA certificate"),
        "{message}"
    );
    // --ca-cert adds to the system's store, so it alone is enough.
    let ca = path(&pg.tls().ca_cert);
    assert_counted(
        &count_with_system_store(&url, empty.path(), &["--ca-cert", ca]),
        "empty system store, --ca-cert",
    );
}

#[test]
fn verify_full_checks_the_host_name_and_verify_ca_does_not() {
    let pg = tls_cluster();
    let db = tls_db();
    let ca = path(&pg.tls().ca_cert);
    // The certificate is for 127.0.0.1, not for the name `localhost`.
    let full = format!(
        "{}?sslmode=verify-full",
        pg.url_via("localhost", "migrator", db)
    );
    let (code, stage, message) = failure(&count(&full, &["--ca-cert", ca]));
    assert_eq!((code, stage.as_str()), (1, "connect"), "{message}");
    assert!(
        message.contains("not valid for the host name") && message.contains("verify-ca"),
        "{message}"
    );
    let ca_only = format!(
        "{}?sslmode=verify-ca",
        pg.url_via("localhost", "migrator", db)
    );
    assert_counted(&count(&ca_only, &["--ca-cert", ca]), "verify-ca by name");
}

#[test]
fn sslmode_require_with_a_ca_checks_the_chain_as_libpq_does() {
    let pg = tls_cluster();
    let db = tls_db();
    let url = format!("{}?sslmode=require", pg.url("migrator", db));
    let other = path(&pg.tls().other_ca_cert);
    let (code, _, message) = failure(&count(&url, &["--ca-cert", other]));
    assert_eq!(code, 1);
    assert!(message.contains("not signed by a trusted CA"), "{message}");
    // …and with the right CA it connects, by any host name (verify-ca).
    let by_name = format!(
        "{}?sslmode=require",
        pg.url_via("localhost", "migrator", db)
    );
    assert_counted(
        &count(&by_name, &["--ca-cert", path(&pg.tls().ca_cert)]),
        "require + CA",
    );
}

#[test]
fn sslmode_require_against_a_server_without_tls_fails_clearly() {
    let pg = cluster();
    let db = plain_db();
    for mode in ["require", "verify-full"] {
        let url = format!("{}?sslmode={mode}", pg.url("migrator", db));
        let (code, stage, message) = failure(&count(&url, &[]));
        assert_eq!((code, stage.as_str()), (1, "connect"), "{mode}: {message}");
        assert!(
            message.contains("the server does not accept TLS connections")
                && message.contains(&format!("sslmode={mode} requires TLS")),
            "{mode}: {message}"
        );
    }
}

#[test]
fn sslmode_disable_connects_in_plain_text() {
    let plain = cluster();
    let db = plain_db();
    let url = format!("{}?sslmode=disable", plain.url("migrator", db));
    assert_counted(&count(&url, &[]), "disable, plain server");
    // The TLS-only server refuses it: disable never tries TLS.
    let tls = tls_cluster();
    let db = tls_db();
    let url = format!("{}?sslmode=disable", tls.url("migrator", db));
    let (code, stage, message) = failure(&count(&url, &[]));
    assert_eq!((code, stage.as_str()), (1, "connect"), "{message}");
    assert!(message.contains("no encryption"), "{message}");
}

#[test]
fn sslmode_prefer_is_the_default_and_uses_tls_when_offered() {
    for (pg, db, what) in [
        (tls_cluster(), tls_db(), "TLS server"),
        (cluster(), plain_db(), "plain server"),
    ] {
        let url = pg.url("migrator", db);
        assert_counted(&count(&url, &[]), what);
        assert_counted(&count(&format!("{url}?sslmode=prefer"), &[]), what);
    }
}

#[test]
fn tls_mistakes_in_the_command_line_are_usage_errors() {
    let pg = cluster();
    let base = pg.url("migrator", "postgres");
    let missing = "/nonexistent/ca.crt";
    let not_pem = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(not_pem.path(), "not a certificate\n").unwrap();
    let cases: [(String, Vec<&str>, &str); 8] = [
        (
            format!("{base}?sslmode=allow"),
            vec![],
            "sslmode=allow is not supported",
        ),
        (
            format!("{base}?sslmode=VERIFY-FULL"),
            vec![],
            "verify-ca, verify-full",
        ),
        (
            base.clone(),
            vec!["--ca-cert", missing],
            "sslmode=prefer checks no certificate",
        ),
        (
            format!("{base}?sslmode=verify-full"),
            vec!["--ca-cert", missing],
            "/nonexistent/ca.crt",
        ),
        (
            format!("{base}?sslmode=verify-full"),
            vec!["--ca-cert", path(not_pem.path())],
            "holds no PEM certificate",
        ),
        // libpq's refusal, in libpq's words, before any byte is sent.
        (
            format!("{base}?sslmode=require&sslrootcert=system"),
            vec![],
            r#"weak sslmode "require" may not be used with sslrootcert=system (use "verify-full")"#,
        ),
        (
            format!("{base}?sslrootcert=system&sslmode=allow"),
            vec![],
            r#"weak sslmode "allow" may not be used with sslrootcert=system"#,
        ),
        (
            format!("{base}?sslrootcert=system&sslmode=verify-ca"),
            vec![],
            r#"weak sslmode "verify-ca" may not be used with sslrootcert=system"#,
        ),
    ];
    for (url, extra, expected) in &cases {
        let (code, stage, message) = failure(&count(url, extra));
        assert_eq!(
            (code, stage.as_str()),
            (2, "config"),
            "{url} {extra:?}: {message}"
        );
        assert!(message.contains(expected), "{url} {extra:?}: {message}");
    }
    // restore and verify refuse them the same way, before connecting.
    let bad = format!("{base}?sslmode=allow");
    let empty = tempfile::tempdir().unwrap();
    let mut restore = bin();
    restore
        .args(["restore", "--json", "--database-url", &bad, "--from"])
        .arg(empty.path());
    let mut verify = bin();
    verify
        .env("ADMIN_TOKEN", "not-a-secret")
        .args(["verify", "--json", "--target", "http://127.0.0.1:9"])
        .args(["--database-url", &bad, "--from"])
        .arg(empty.path());
    for cmd in [restore, verify] {
        let done = run(cmd);
        assert_eq!(done.code, 2, "{}\n{}", done.stdout, done.stderr);
        assert!(
            format!("{}{}", done.stdout, done.stderr).contains("sslmode=allow is not supported"),
            "{}\n{}",
            done.stdout,
            done.stderr
        );
    }
}

#[test]
fn restore_connects_with_verify_full() {
    let pg = tls_cluster();
    let source = tls_db();
    let ca = path(&pg.tls().ca_cert);
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("export");
    let url = format!("{}?sslmode=verify-full", pg.url("migrator", source));
    let mut cmd = bin();
    cmd.args(["export", "--json", "--limit", "3", "--ca-cert", ca])
        .args(["--database-url", &url, "--out"])
        .arg(&dir);
    let exported = run(cmd);
    assert_eq!(exported.code, 0, "{}", exported.stderr);

    let target = pg.create_database("tls_restored");
    pg.psql(
        &target,
        &include_str!("fixtures/supabase_schema.sql").replace("CREATE ROLE migrator LOGIN;", ""),
    );
    let url = format!("{}?sslmode=verify-full", pg.url("postgres", &target));
    let restore = |extra: &[&str]| {
        let mut cmd = bin();
        cmd.args(["restore", "--json", "--database-url", &url, "--from"])
            .arg(&dir)
            .args(extra);
        run(cmd)
    };
    let done = restore(&["--ca-cert", ca]);
    assert_eq!(done.code, 0, "{}\n{}", done.stdout, done.stderr);
    assert_eq!(done.json()["documents_inserted"], 3);
    assert_eq!(pg.psql(&target, "SELECT count(*) FROM documents"), "3");
    // Without the CA, the same certificate error as export's.
    let (code, stage, message) = failure(&restore(&[]));
    assert_eq!((code, stage.as_str()), (1, "connect"), "{message}");
    assert!(message.contains("not signed by a trusted CA"), "{message}");
}
