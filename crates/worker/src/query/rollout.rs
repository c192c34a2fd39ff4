//! The cut-over on `POST /api/chat`: the plan now (the D1 setting behind
//! `PUT /admin/rollout`, read at most every `SETTING_TTL_MS` per isolate,
//! capped by `ROLLOUT_PERCENT`), and the proxy to `LEGACY_CHAT_URL` for the
//! clients the plan leaves on the old stack: the request body and headers as
//! the client sent them, the answer streamed back as the old API sends it.
//! A shadowed request also runs this service's retrieval after the response
//! (`ctx.waitUntil`) and records the comparison.
//!
//! Which client goes where, and what a comparison means, is
//! `portfolio_core::rollout`'s.

use super::search::retrieve;
use crate::bindings;
use crate::body::read_limited;
use crate::config::ServiceConfig;
use crate::error::ApiError;
use crate::store::d1_rollout::D1Rollout;
use crate::store::metrics::Metrics;
use crate::store::{ConsoleLog, WorkerClock};
use futures_util::StreamExt;
use portfolio_core::api::MAX_CHAT_BODY_BYTES;
use portfolio_core::query::{cite, plan_chat};
use portfolio_core::rollout::{
    legacy_sources, overlap, RolloutPlan, RolloutSetting, ShadowRecord, SERVED_BY_HEADER,
    SETTING_TTL_MS,
};
use portfolio_core::storage::{Clock, EventLog, Level};
use serde_json::json;
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use worker::{Context, Env, Fetch, Headers, Method, Request, RequestInit, Response};

/// Most bytes of the old API's answer kept to find its sources (the answer
/// itself streams through whole).
const MAX_INSPECTED_BYTES: usize = 256 * 1024;

/// Request headers not forwarded: hop-by-hop ones, the host (the old
/// endpoint's own), the length (the body is re-sent whole) and the platform's.
fn forwarded_request_header(name: &str) -> bool {
    !matches!(
        name,
        "host"
            | "connection"
            | "keep-alive"
            | "transfer-encoding"
            | "te"
            | "trailer"
            | "upgrade"
            | "proxy-authorization"
            | "proxy-connection"
            | "content-length"
    ) && !name.starts_with("cf-")
}

/// Response headers not passed back: hop-by-hop ones, the length and
/// encoding (the runtime sets them for the stream it sends), and CORS (the
/// service's own apply to every `/api/` answer).
fn forwarded_response_header(name: &str) -> bool {
    !matches!(
        name,
        "connection"
            | "keep-alive"
            | "transfer-encoding"
            | "trailer"
            | "upgrade"
            | "content-length"
            | "content-encoding"
            | "vary"
    ) && !name.starts_with("access-control-")
}

thread_local! {
    /// The setting as last read, and when (ms): shared by the isolate's requests.
    static SETTING: RefCell<Option<(u64, Option<RolloutSetting>)>> = const { RefCell::new(None) };
}

/// Forgets the cached setting (after this isolate changed it).
pub fn forget_setting() {
    SETTING.with(|s| *s.borrow_mut() = None);
}

/// The setting, from the isolate's cache when it is fresh. A failed read
/// keeps the last value known (else none: the ceiling applies).
async fn setting(env: &Env) -> Option<RolloutSetting> {
    let now = WorkerClock.now_ms();
    let cached = SETTING.with(|s| *s.borrow());
    if let Some((read_at, setting)) = cached {
        if now.saturating_sub(read_at) < SETTING_TTL_MS {
            return setting;
        }
    }
    let read = match env.d1(bindings::DB) {
        Ok(db) => D1Rollout::new(db)
            .setting()
            .await
            .map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    match read {
        Ok(setting) => {
            SETTING.with(|s| *s.borrow_mut() = Some((now, setting)));
            setting
        }
        Err(error) => {
            ConsoleLog.log(
                Level::Warn,
                json!({ "event": "rollout_setting_unreadable", "error": error }),
            );
            cached.and_then(|(_, setting)| setting)
        }
    }
}

/// What applies to chat requests now.
pub async fn plan(env: &Env, config: &ServiceConfig) -> RolloutPlan {
    if config.rollout.legacy_url.is_none() {
        return RolloutPlan::new(&config.rollout, None);
    }
    RolloutPlan::new(&config.rollout, setting(env).await)
}

/// What the old API's answer turned out to be, once it has ended.
struct LegacyWatch {
    status: u16,
    /// The first [`MAX_INSPECTED_BYTES`] of the answer.
    seen: Rc<RefCell<Vec<u8>>>,
    /// The answer's stream failed part-way.
    broken: Rc<Cell<bool>>,
    /// Resolves when the client has read the whole answer (cancelled when the
    /// stream was dropped before its end, e.g. the client hung up).
    ended: futures_channel::oneshot::Receiver<()>,
}

/// Sends the request to the old endpoint and answers what it answers.
/// With `shadow`, this service's retrieval runs for the same question after
/// the response has started, and the comparison is recorded.
pub async fn proxy(
    mut req: Request,
    env: &Env,
    ctx: &Context,
    config: &ServiceConfig,
    legacy_url: &str,
    shadow: bool,
    metrics: &Metrics,
) -> Result<Response, ApiError> {
    let started = WorkerClock.now_ms();
    let body = read_limited(&mut req, MAX_CHAT_BODY_BYTES).await?;
    let headers = Headers::new();
    for (name, value) in req.headers().entries() {
        if forwarded_request_header(&name) {
            headers.append(&name, &value)?;
        }
    }
    if let Some(ip) = req.headers().get("CF-Connecting-IP")? {
        headers.set("X-Forwarded-For", &ip)?;
    }
    let mut init = RequestInit::new();
    init.with_method(Method::Post)
        .with_headers(headers)
        .with_body(Some(js_sys::Uint8Array::from(body.as_slice()).into()));
    let sent = match Request::new_with_init(legacy_url, &init) {
        Ok(request) => Fetch::Request(request).send().await,
        Err(e) => Err(e),
    };
    let (answer, watch) = match sent {
        Ok(legacy) => {
            let (response, watch) = pass_through(legacy, shadow)?;
            (Ok(response), watch)
        }
        Err(e) => {
            ConsoleLog.log(
                Level::Error,
                json!({ "event": "legacy_chat_unreachable", "error": e.to_string() }),
            );
            (
                Err(ApiError::Upstream(format!(
                    "the old chat API did not answer: {e}"
                ))),
                None,
            )
        }
    };
    if shadow {
        ctx.wait_until(compare(
            env.clone(),
            config.clone(),
            metrics.clone(),
            body,
            started,
            watch,
        ));
    }
    answer
}

/// The old API's answer as this service's response; with `inspect`, a
/// watch that sees its bytes as the client reads them.
fn pass_through(
    mut legacy: Response,
    inspect: bool,
) -> Result<(Response, Option<LegacyWatch>), ApiError> {
    let status = legacy.status_code();
    let headers = Headers::new();
    for (name, value) in legacy.headers().entries() {
        if forwarded_response_header(&name) {
            headers.append(&name, &value)?;
        }
    }
    headers.set(SERVED_BY_HEADER, "legacy")?;
    let Ok(stream) = legacy.stream() else {
        // No body (e.g. 204): nothing to inspect.
        let watch = inspect.then(|| {
            let (done, ended) = futures_channel::oneshot::channel();
            let _ = done.send(());
            LegacyWatch {
                status,
                seen: Rc::default(),
                broken: Rc::default(),
                ended,
            }
        });
        return Ok((
            Response::empty()?.with_status(status).with_headers(headers),
            watch,
        ));
    };
    if !inspect {
        let response = Response::from_stream(stream)?;
        return Ok((response.with_status(status).with_headers(headers), None));
    }
    let seen: Rc<RefCell<Vec<u8>>> = Rc::default();
    let broken: Rc<Cell<bool>> = Rc::default();
    let (done, ended) = futures_channel::oneshot::channel();
    let (seen_by_stream, broken_by_stream) = (Rc::clone(&seen), Rc::clone(&broken));
    let observed = stream
        .map(move |chunk| {
            match &chunk {
                Ok(bytes) => {
                    let mut seen = seen_by_stream.borrow_mut();
                    let room = MAX_INSPECTED_BYTES.saturating_sub(seen.len());
                    seen.extend_from_slice(&bytes[..bytes.len().min(room)]);
                }
                Err(_) => broken_by_stream.set(true),
            }
            Some(chunk)
        })
        .chain(futures_util::stream::once(async move {
            let _ = done.send(());
            None
        }))
        .filter_map(futures_util::future::ready);
    let response = Response::from_stream(observed)?;
    Ok((
        response.with_status(status).with_headers(headers),
        Some(LegacyWatch {
            status,
            seen,
            broken,
            ended,
        }),
    ))
}

/// This service's retrieval for the proxied question, once the old API's
/// answer has reached the client; recorded in `shadow_comparisons`.
async fn compare(
    env: Env,
    config: ServiceConfig,
    metrics: Metrics,
    body: Vec<u8>,
    started: u64,
    watch: Option<LegacyWatch>,
) {
    // The old API's answer first: this service's retrieval starts once the
    // client has it, so it never competes with that answer.
    let (legacy, legacy_ms) = match watch {
        None => (Err("unreachable".to_owned()), 0),
        Some(watch) => {
            let completed = watch.ended.await.is_ok();
            let legacy_ms = WorkerClock.now_ms().saturating_sub(started);
            let outcome = if watch.status >= 400 {
                Err(format!("status {}", watch.status))
            } else if !completed || watch.broken.get() {
                Err("incomplete".to_owned())
            } else {
                Ok(legacy_sources(&watch.seen.borrow()))
            };
            (outcome, legacy_ms)
        }
    };
    let ours_started = WorkerClock.now_ms();
    let ours: Result<Vec<String>, String> = match plan_chat(&body, false) {
        Ok(plan) => match retrieve(&env, &config, &plan.search, &metrics).await {
            Ok(retrieval) => Ok(cite(&retrieval.results)
                .0
                .into_iter()
                .map(|source| source.key)
                .collect()),
            Err(e) => Err(e.code().to_owned()),
        },
        Err(e) => Err(e.code().to_owned()),
    };
    let ours_ms = WorkerClock.now_ms().saturating_sub(ours_started);
    let record = ShadowRecord {
        at_ms: started,
        overlap: match (&legacy, &ours) {
            (Ok(legacy), Ok(ours)) => Some(overlap(legacy, ours)),
            _ => None,
        },
        legacy_ms,
        ours_ms,
        legacy_error: legacy.err(),
        ours_error: ours.err(),
    };
    let written = match env.d1(bindings::DB) {
        Ok(db) => D1Rollout::new(db)
            .record(&record)
            .await
            .map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    if let Err(error) = written {
        ConsoleLog.log(
            Level::Error,
            json!({ "event": "shadow_record_failed", "error": error }),
        );
    }
    // The retrieval's provider calls were recorded after the request's own flush.
    metrics.flush().await;
}
