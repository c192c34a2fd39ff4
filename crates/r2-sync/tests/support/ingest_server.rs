//! A small real HTTP server implementing the ingest-API contract the Worker
//! will implement, strictly: bearer token (401 otherwise), `x-content-sha256`
//! must match the body (400 otherwise), per-segment percent-encoded keys,
//! cursor pagination. It records every request and can fail the first N
//! PUTs with 503.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tiny_http::{Header, Method, Response, Server};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    pub method: String,
    pub url: String,
    pub authorized: bool,
}

#[derive(Debug, Default)]
pub struct State {
    /// key → (sha256, body)
    pub documents: BTreeMap<String, (String, Vec<u8>)>,
    pub requests: Vec<Recorded>,
}

pub struct IngestServer {
    pub port: u16,
    pub token: String,
    pub state: Arc<Mutex<State>>,
    /// PUTs still to answer with 503.
    pub fail_puts: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
}

/// Page size the server uses whatever `limit` asks, to force pagination.
pub const SERVER_PAGE: usize = 3;

fn decode(segment: &str) -> Option<String> {
    percent_encoding::percent_decode_str(segment)
        .decode_utf8()
        .ok()
        .map(|s| s.into_owned())
}

fn json(status: u16, body: serde_json::Value) -> Response<std::io::Cursor<Vec<u8>>> {
    Response::from_data(body.to_string().into_bytes())
        .with_status_code(status)
        .with_header(Header::from_bytes("content-type", "application/json").unwrap())
}

impl IngestServer {
    pub fn start(token: &str) -> Self {
        let server = Server::http("127.0.0.1:0").unwrap();
        let port = server.server_addr().to_ip().unwrap().port();
        let state = Arc::new(Mutex::new(State::default()));
        let fail_puts = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (st, fp, sp, tok) = (
            state.clone(),
            fail_puts.clone(),
            stop.clone(),
            token.to_owned(),
        );
        let handle = std::thread::spawn(move || {
            while !sp.load(Ordering::SeqCst) {
                let Ok(Some(mut request)) = server.recv_timeout(Duration::from_millis(50)) else {
                    continue;
                };
                let auth = request
                    .headers()
                    .iter()
                    .find(|h| h.field.equiv("authorization"))
                    .map(|h| h.value.as_str().to_owned());
                let authorized = auth.as_deref() == Some(&format!("Bearer {tok}"));
                let url = request.url().to_owned();
                let method = request.method().clone();
                st.lock().unwrap().requests.push(Recorded {
                    method: method.to_string(),
                    url: url.clone(),
                    authorized,
                });
                let response = if !authorized {
                    json(
                        401,
                        serde_json::json!({"error": {"code": "unauthorized", "message": "bad token"}}),
                    )
                } else {
                    Self::route(&st, &fp, &method, &url, &mut request)
                };
                let _ = request.respond(response);
            }
        });
        Self {
            port,
            token: token.to_owned(),
            state,
            fail_puts,
            stop,
            handle: Some(handle),
        }
    }

    fn route(
        state: &Mutex<State>,
        fail_puts: &AtomicUsize,
        method: &Method,
        url: &str,
        request: &mut tiny_http::Request,
    ) -> Response<std::io::Cursor<Vec<u8>>> {
        let (path, query) = url.split_once('?').unwrap_or((url, ""));
        if *method == Method::Get && path == "/admin/documents" {
            let params: BTreeMap<String, String> = query
                .split('&')
                .filter_map(|kv| kv.split_once('='))
                .filter_map(|(k, v)| Some((k.to_owned(), decode(v)?)))
                .collect();
            let prefix = params.get("prefix").cloned().unwrap_or_default();
            let start: usize = params
                .get("cursor")
                .and_then(|c| c.parse().ok())
                .unwrap_or(0);
            let limit: usize = params
                .get("limit")
                .and_then(|l| l.parse().ok())
                .unwrap_or(100)
                .min(SERVER_PAGE);
            let state = state.lock().unwrap();
            let matching: Vec<_> = state
                .documents
                .iter()
                .filter(|(k, _)| k.starts_with(&prefix))
                .collect();
            let page: Vec<_> = matching
                .iter()
                .skip(start)
                .take(limit)
                .map(|(k, (sha, body))| serde_json::json!({"key": k, "sha256": sha, "size": body.len(), "status": "ready"}))
                .collect();
            let next = (start + limit < matching.len()).then(|| (start + limit).to_string());
            return json(200, serde_json::json!({"documents": page, "cursor": next}));
        }
        let Some(encoded) = path.strip_prefix("/admin/documents/") else {
            return json(
                404,
                serde_json::json!({"error": {"code": "not_found", "message": path}}),
            );
        };
        let Some(key) = encoded
            .split('/')
            .map(decode)
            .collect::<Option<Vec<_>>>()
            .map(|s| s.join("/"))
        else {
            return json(
                400,
                serde_json::json!({"error": {"code": "bad_key", "message": encoded}}),
            );
        };
        match *method {
            Method::Put => {
                let mut body = Vec::new();
                let _ = request.as_reader().read_to_end(&mut body);
                if fail_puts.load(Ordering::SeqCst) > 0 {
                    fail_puts.fetch_sub(1, Ordering::SeqCst);
                    return json(
                        503,
                        serde_json::json!({"error": {"code": "unavailable", "message": "injected"}}),
                    );
                }
                let declared = request
                    .headers()
                    .iter()
                    .find(|h| h.field.equiv("x-content-sha256"))
                    .map(|h| h.value.as_str().to_owned());
                let actual = super::sha256_hex(&body);
                if declared.as_deref() != Some(actual.as_str()) {
                    return json(
                        400,
                        serde_json::json!({"error": {"code": "sha256_mismatch", "message": actual}}),
                    );
                }
                state
                    .lock()
                    .unwrap()
                    .documents
                    .insert(key.clone(), (actual.clone(), body));
                json(
                    200,
                    serde_json::json!({"key": key, "sha256": actual, "status": "queued"}),
                )
            }
            Method::Delete => match state.lock().unwrap().documents.remove(&key) {
                Some(_) => json(200, serde_json::json!({"key": key, "status": "deleted"})),
                None => json(
                    404,
                    serde_json::json!({"error": {"code": "not_found", "message": key}}),
                ),
            },
            _ => json(
                405,
                serde_json::json!({"error": {"code": "method_not_allowed", "message": ""}}),
            ),
        }
    }

    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn documents(&self) -> BTreeMap<String, (String, Vec<u8>)> {
        self.state.lock().unwrap().documents.clone()
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.state.lock().unwrap().requests.clone()
    }
}

impl Drop for IngestServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}
