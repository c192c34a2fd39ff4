//! The built Worker under `wrangler dev` (local D1 migrated, R2, Queues,
//! Durable Objects) with a fresh state, in its own process group, killed
//! with the group on drop; and admin requests to it carrying [`TOKEN`].
//! Needs `bash scripts/build-worker.sh` and the npm packages; never builds.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::free_port;

/// The Worker's `ADMIN_TOKEN`: a throwaway local stack's, not a secret.
pub const TOKEN: &str = "e2e-admin-token-not-a-secret-00001";

/// How long `wrangler dev` may take to answer its health check.
const START_TIMEOUT: Duration = Duration::from_secs(90);
/// Per request; the local stack can be slow under a loaded test run.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `wrangler dev` serving the built Worker on `127.0.0.1:port`.
#[derive(Debug)]
pub struct LocalWorker {
    child: Child,
    pub port: u16,
}

impl Drop for LocalWorker {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .status();
        let _ = self.child.wait();
    }
}

/// `(status, body)` of an answer; status 0 with the error when none came.
fn answer(response: Result<ureq::Response, ureq::Error>) -> (u16, String) {
    match response {
        Ok(r) => (r.status(), r.into_string().unwrap_or_default()),
        Err(ureq::Error::Status(code, r)) => (code, r.into_string().unwrap_or_default()),
        Err(e) => (0, e.to_string()),
    }
}

impl LocalWorker {
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn agent() -> ureq::Agent {
        ureq::AgentBuilder::new().timeout(REQUEST_TIMEOUT).build()
    }

    /// `(status, body)` of a `GET` (admin token sent).
    pub fn get(&self, path: &str) -> (u16, String) {
        answer(
            Self::agent()
                .get(&format!("{}{path}", self.url()))
                .set("Authorization", &format!("Bearer {TOKEN}"))
                .call(),
        )
    }

    /// `(status, body)` of a request with a body (admin token sent).
    pub fn send(&self, method: &str, path: &str, content_type: &str, body: &str) -> (u16, String) {
        answer(
            Self::agent()
                .request(method, &format!("{}{path}", self.url()))
                .set("Authorization", &format!("Bearer {TOKEN}"))
                .set("Content-Type", content_type)
                .send_string(body),
        )
    }

    /// The JSON body of a `GET` that must answer 200.
    pub fn get_json(&self, path: &str) -> serde_json::Value {
        let (code, body) = self.get(path);
        assert_eq!(code, 200, "{path}: {body}");
        serde_json::from_str(&body).unwrap()
    }

    /// Every document `GET /admin/documents` lists, by key, page by page.
    pub fn documents(&self) -> BTreeMap<String, serde_json::Value> {
        let mut out = BTreeMap::new();
        let mut cursor = String::new();
        loop {
            let page = self.get_json(&format!(
                "/admin/documents?limit=1000&cursor={}",
                percent_encoding::utf8_percent_encode(&cursor, percent_encoding::NON_ALPHANUMERIC)
            ));
            for d in page["documents"].as_array().unwrap() {
                out.insert(d["key"].as_str().unwrap().to_owned(), d.clone());
            }
            match page["cursor"].as_str() {
                Some(next) => cursor = next.to_owned(),
                None => return out,
            }
        }
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

/// Starts the built Worker with its state under `state` (the config, the
/// persisted D1/R2/Queues, `wrangler-dev.log`) and waits until
/// `/api/health` answers 200.
pub fn start_worker(state: &Path) -> LocalWorker {
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
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if worker.get("/api/health").0 == 200 {
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
