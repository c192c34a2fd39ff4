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
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::*;

const TOKEN: &str = "e2e-admin-token-not-a-secret-00001";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `wrangler dev` in its own process group, killed with the group on drop.
struct LocalWorker {
    child: Child,
    port: u16,
}

impl Drop for LocalWorker {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .status();
        let _ = self.child.wait();
    }
}

fn http(method: &str, port: u16, path: &str) -> (u16, String) {
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(30))
        .build();
    let response = agent
        .request(method, &format!("http://127.0.0.1:{port}{path}"))
        .set("Authorization", &format!("Bearer {TOKEN}"))
        .call();
    match response {
        Ok(r) => (r.status(), r.into_string().unwrap_or_default()),
        Err(ureq::Error::Status(code, r)) => (code, r.into_string().unwrap_or_default()),
        Err(e) => (0, e.to_string()),
    }
}

/// PATH with the npm packages' binaries first: wrangler needs their Node 22.
fn npm_path(root: &Path) -> String {
    format!(
        "{}:{}",
        root.join("node_modules/.bin").display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

fn start_worker(state: &Path) -> LocalWorker {
    let root = repo_root();
    let wrangler = root.join("node_modules/.bin/wrangler");
    assert!(
        wrangler.exists() && root.join("build/index.js").exists(),
        "the end-to-end test needs the built Worker and the npm packages: run `bash scripts/setup.sh && bash scripts/build-worker.sh` first"
    );
    let config = state.join("wrangler.json");
    let status = Command::new(root.join("node_modules/.bin/node"))
        .arg(root.join("tests/harness/prebuilt-config.mjs"))
        .arg(&config)
        .status()
        .unwrap();
    assert!(
        status.success(),
        "writing the prebuilt wrangler config failed"
    );
    let persist = state.join("state");
    let migrate = Command::new(&wrangler)
        .args(["d1", "migrations", "apply", "DB", "--local", "--persist-to"])
        .arg(&persist)
        .arg("-c")
        .arg(&config)
        .env("CI", "true")
        .env("WRANGLER_SEND_METRICS", "false")
        .env("PATH", npm_path(&root))
        .current_dir(&root)
        .output()
        .unwrap();
    assert!(
        migrate.status.success(),
        "migrations failed: {}",
        String::from_utf8_lossy(&migrate.stderr)
    );
    let port = free_port();
    let log = fs::File::create(state.join("wrangler-dev.log")).unwrap();
    let mut cmd = Command::new("setsid");
    cmd.arg(&wrangler)
        .args([
            "dev",
            "--port",
            &port.to_string(),
            "--ip",
            "127.0.0.1",
            "--persist-to",
        ])
        .arg(&persist)
        .arg("-c")
        .arg(&config)
        .args(["--var", &format!("ADMIN_TOKEN:{TOKEN}")])
        .env("CI", "true")
        .env("WRANGLER_SEND_METRICS", "false")
        .env("PATH", npm_path(&root))
        .current_dir(&root)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    let worker = LocalWorker {
        child: cmd.spawn().unwrap(),
        port,
    };
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if http("GET", port, "/api/health").0 == 200 {
            return worker;
        }
        assert!(
            Instant::now() < deadline,
            "wrangler dev did not answer: {}",
            fs::read_to_string(state.join("wrangler-dev.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

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
        .arg(format!("http://127.0.0.1:{}", worker.port))
        .args(extra)
        .arg(dir);
    let run = run(cmd);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    run.json()
}

fn statuses(worker: &LocalWorker, query: &str) -> Vec<(String, String)> {
    let (code, body) = http("GET", worker.port, &format!("/admin/documents?{query}"));
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
