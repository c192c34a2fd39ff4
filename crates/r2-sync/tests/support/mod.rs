//! Shared fixtures of the integration tests: a real S3-protocol server
//! (moto's server, one process per test binary), a fault-injecting proxy in
//! front of it, a recording ingest-API server, and helpers to run the CLI and
//! inspect the bucket independently of the code under test. Free ports and
//! running a binary come from the `test-support` crate.
#![allow(dead_code)]
// Test fixtures may read the clock; the workspace ban is about wasm.
#![allow(clippy::disallowed_methods)]
// Test fixtures panic on setup failure by design.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod fault_proxy;
pub mod ingest_server;

// Each test binary uses its own part of these.
#[allow(unused_imports)]
pub use test_support::{free_port, run, Run};

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as ObjectPath;
use object_store::{Attribute, ClientOptions, GetOptions, ObjectStore, ObjectStoreExt, PutPayload};

pub const ACCESS_KEY: &str = "test-access-key";
pub const SECRET_KEY: &str = "test-secret-key";

/// The moto server of this test binary.
pub struct S3Server {
    pub port: u16,
    // Keeps the watchdog's stdin open; when this process exits (even on a
    // panic or abort) the pipe closes and the watchdog kills the server.
    _watchdog: Mutex<ChildStdin>,
}

fn moto_binary() -> PathBuf {
    if let Ok(path) = std::env::var("R2_SYNC_MOTO_SERVER") {
        return PathBuf::from(path);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv-test/bin/moto_server")
}

fn wait_for_port(port: u16, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

pub fn s3_server() -> &'static S3Server {
    static SERVER: OnceLock<S3Server> = OnceLock::new();
    SERVER.get_or_init(|| {
        let binary = moto_binary();
        assert!(
            binary.exists(),
            "the S3 test server is missing: {} does not exist.\n\
             Install it with `bash scripts/setup.sh` (creates .venv-test with a pinned moto[server]), \
             or point R2_SYNC_MOTO_SERVER at a moto_server binary.",
            binary.display()
        );
        let port = free_port();
        // The watchdog is never waited for: it must outlive every test and
        // exits by itself when this process's end closes its stdin.
        #[allow(clippy::zombie_processes)]
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(r#""$0" -H 127.0.0.1 -p "$1" >/dev/null 2>&1 & pid=$!; read _ignored; kill $pid"#)
            .arg(&binary)
            .arg(port.to_string())
            .stdin(Stdio::piped())
            .spawn()
            .expect("spawn moto_server");
        let stdin = child.stdin.take().expect("watchdog stdin");
        assert!(
            wait_for_port(port, Duration::from_secs(30)),
            "moto_server did not start listening on 127.0.0.1:{port}"
        );
        S3Server {
            port,
            _watchdog: Mutex::new(stdin),
        }
    })
}

impl S3Server {
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

/// A fresh bucket with a unique name.
pub fn new_bucket(tag: &str) -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let name = format!(
        "t-{}-{}-{}",
        tag.to_ascii_lowercase().replace('_', "-"),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    );
    let server = s3_server();
    let mut stream = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    write!(
        stream,
        "PUT /{name} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        server.port
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 200") || answer.starts_with("HTTP/1.0 200"),
        "create bucket: {answer}"
    );
    name
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A client for checking the bucket, independent of r2-sync's own target.
pub fn inspector(bucket: &str) -> AmazonS3 {
    AmazonS3Builder::new()
        .with_endpoint(s3_server().endpoint())
        .with_bucket_name(bucket)
        .with_region("us-east-1")
        .with_access_key_id(ACCESS_KEY)
        .with_secret_access_key(SECRET_KEY)
        .with_client_options(ClientOptions::new().with_allow_http(true))
        .build()
        .unwrap()
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredObject {
    pub body: Vec<u8>,
    pub sha256_meta: Option<String>,
    pub etag: Option<String>,
}

/// Every object in the bucket: key → body and `x-amz-meta-sha256`.
pub fn bucket_contents(bucket: &str) -> BTreeMap<String, StoredObject> {
    let store = inspector(bucket);
    runtime().block_on(async {
        let metas: Vec<_> = store.list(None).try_collect().await.unwrap();
        let mut out = BTreeMap::new();
        for meta in metas {
            let got = store
                .get_opts(&meta.location, GetOptions::default())
                .await
                .unwrap();
            let sha256_meta = got
                .attributes
                .get(&Attribute::Metadata("sha256".into()))
                .map(|v| v.to_string());
            let etag = got.meta.e_tag.clone();
            let body = got.bytes().await.unwrap().to_vec();
            out.insert(
                meta.location.to_string(),
                StoredObject {
                    body,
                    sha256_meta,
                    etag,
                },
            );
        }
        out
    })
}

/// Puts an object directly (no r2-sync), without metadata.
pub fn put_raw(bucket: &str, key: &str, body: &[u8]) {
    let store = inspector(bucket);
    runtime().block_on(async {
        store
            .put(
                &ObjectPath::parse(key).unwrap(),
                PutPayload::from(body.to_vec()),
            )
            .await
            .unwrap();
    });
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// Writes `files` (relative path → contents) under `root`, with mtimes in the
/// past so the hash cache may trust them.
pub fn write_tree(root: &Path, files: &[(&str, &str)]) {
    for (rel, body) in files {
        write_file(root, rel, body.as_bytes());
    }
}

pub fn write_file(root: &Path, rel: &str, body: &[u8]) {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, body).unwrap();
    age(&path);
}

/// Moves a file's mtime a minute into the past (and away from the last one,
/// so a rewrite of the same size always changes the mtime).
pub fn age(path: &Path) {
    static TICK: AtomicUsize = AtomicUsize::new(0);
    let tick = TICK.fetch_add(1, Ordering::SeqCst) as u64;
    let when = std::time::SystemTime::now() - Duration::from_secs(60) + Duration::from_millis(tick);
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(when)
        .unwrap();
}

pub fn bin() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_r2-sync"));
    for var in [
        "R2_ACCESS_KEY_ID",
        "R2_SECRET_ACCESS_KEY",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "R2_ENDPOINT",
        "R2_BUCKET",
        "R2_PREFIX",
        "R2_PROFILE",
        "R2_SYNC_TARGET",
        "R2_SYNC_API_URL",
        "ADMIN_TOKEN",
    ] {
        cmd.env_remove(var);
    }
    cmd.stdin(Stdio::null());
    cmd
}

/// `r2-sync <args> <dir>` against `endpoint`/`bucket` with test credentials.
pub fn s3_cmd(endpoint: &str, bucket: &str, dir: &Path, args: &[&str]) -> Command {
    let mut cmd = bin();
    cmd.env("R2_ACCESS_KEY_ID", ACCESS_KEY)
        .env("R2_SECRET_ACCESS_KEY", SECRET_KEY)
        .env("R2_ENDPOINT", endpoint)
        .env("R2_BUCKET", bucket)
        .args(args)
        .arg(dir);
    cmd
}

/// Runs `r2-sync push --yes --json` against the test server.
pub fn push_json(bucket: &str, dir: &Path, extra: &[&str]) -> (Run, serde_json::Value) {
    let mut args = vec!["push", "--yes", "--json"];
    args.extend_from_slice(extra);
    let run = run(s3_cmd(&s3_server().endpoint(), bucket, dir, &args));
    let json = run.json();
    (run, json)
}

pub fn spawn(mut cmd: Command) -> Child {
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Keys of the plan's changes of one kind.
pub fn planned(report: &serde_json::Value, kind: &str) -> Vec<String> {
    report["plan"]["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["kind"] == kind)
        .map(|c| c["key"].as_str().unwrap().to_owned())
        .collect()
}

/// Polls `ready` until it holds or `within` passes (then fails the test).
pub fn wait_until(what: &str, within: Duration, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !ready() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}
