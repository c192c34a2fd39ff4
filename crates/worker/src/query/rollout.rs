//! The cut-over on `POST /api/chat`: the plan now (the D1 setting behind
//! `PUT /admin/rollout`, read at most every `SETTING_TTL_MS` per isolate,
//! capped by `ROLLOUT_PERCENT`), and the proxy to `LEGACY_CHAT_URL` for the
//! clients the plan leaves on the old stack: the request body and headers as
//! the client sent them, the answer streamed back as the old API sends it
//! once its first byte has come — or, when the old endpoint failed before
//! that, this service's own answer (a failover, counted per day). A
//! shadowed request also runs this service's retrieval after the response
//! (`ctx.waitUntil`) and records the comparison.
//!
//! Which client goes where, which failures fail over, when the cached
//! setting is re-read and what a comparison means, is
//! `portfolio_core::operations::rollout`'s; this file does the fetches and the writes.

use super::chat;
use super::search::retrieve;
use crate::body::read_limited;
use crate::config::ServiceConfig;
use crate::error::ApiError;
use crate::root::Root;
use crate::store::{ConsoleLog, WorkerClock};
use futures_util::future::{select, Either};
use futures_util::stream::LocalBoxStream;
use futures_util::StreamExt;
use portfolio_core::api::ui_stream::{is_ui_chat, plan_ui_chat};
use portfolio_core::api::MAX_CHAT_BODY_BYTES;
use portfolio_core::operations::rollout::{
    after_first_chunk, after_head, after_no_response, client_key, legacy_outcome,
    route as route_for, utc_day, FailoverReason, FirstChunk, LegacyEnding, NoResponse, RolloutPlan,
    RolloutSetting, Route, ServedBy, SettingCache, ShadowRecord, Step, CLIENT_ID_HEADER,
    SERVED_BY_HEADER,
};
use portfolio_core::query::{cite, plan_chat};
use portfolio_core::shared::storage::{Clock, EventLog, Level};
use serde_json::json;
use std::cell::{Cell, RefCell};
use std::pin::{pin, Pin};
use std::rc::Rc;
use worker::{
    AbortController, Context, Delay, Fetch, Headers, Method, Request, RequestInit, Response,
};

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
    /// The setting as last read: shared by the isolate's requests.
    static SETTING: RefCell<SettingCache> = RefCell::default();
}

/// Forgets the cached setting (after this isolate changed it).
pub fn forget_setting() {
    SETTING.with(|s| s.borrow_mut().forget());
}

/// The setting, from the isolate's cache when it is fresh (core's
/// `SettingCache` decides; this only reads D1 when told to).
async fn setting(root: &Root) -> Option<RolloutSetting> {
    let now = WorkerClock.now_ms();
    if let Some(setting) = SETTING.with(|s| s.borrow().fresh(now)) {
        return setting;
    }
    let read = match root.rollout() {
        Ok(store) => store.setting().await.map_err(|e| e.to_string()),
        Err(e) => Err(e.code().to_owned()),
    };
    if let Err(error) = &read {
        ConsoleLog.log(
            Level::Warn,
            json!({ "event": "rollout_setting_unreadable", "error": error }),
        );
    }
    SETTING.with(|s| s.borrow_mut().after_read(now, read))
}

/// What applies to chat requests now.
pub async fn plan(root: &Root, config: &ServiceConfig) -> RolloutPlan {
    if config.rollout.legacy_url.is_none() {
        return RolloutPlan::new(&config.rollout, None);
    }
    RolloutPlan::new(&config.rollout, setting(root).await)
}

/// `POST /api/chat`: answered here, or proxied to the old endpoint for the
/// clients the plan leaves there (core's `route` decides which).
pub async fn serve(
    req: Request,
    root: &Root,
    ctx: &Context,
    config: &ServiceConfig,
    request_id: &str,
) -> Result<Response, ApiError> {
    let plan = plan(root, config).await;
    let client = client_key(
        req.headers().get(CLIENT_ID_HEADER)?.as_deref(),
        req.headers().get("CF-Connecting-IP")?.as_deref(),
    );
    match (route_for(&plan, &client), plan.legacy_url.as_deref()) {
        (Route::Legacy { shadow }, Some(legacy_url)) => {
            proxy(req, root, ctx, config, legacy_url, shadow, request_id).await
        }
        _ => chat::handle(req, root, config, request_id).await,
    }
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

/// The old endpoint's answer body from its first chunk on.
type LegacyBody = LocalBoxStream<'static, worker::Result<Vec<u8>>>;

/// The old endpoint's answer as far as it had come when it was judged able
/// to answer: its status and headers, and its body from the first chunk on
/// (`None`: it has none).
struct LegacyAnswer {
    head: Response,
    body: Option<LegacyBody>,
}

/// Why the old endpoint's attempt was dropped, and the detail for the log.
struct Failover {
    reason: FailoverReason,
    detail: String,
}

/// Sends the request to the old endpoint and answers what it answers, once
/// its first byte has come within `LEGACY_FIRST_BYTE_TIMEOUT_MS`; when it
/// failed before that (core's `next_step` decides), answers here instead
/// with `x-served-by: failover` and counts the failover. With `shadow`, this
/// service's retrieval runs for the same question after a passed-through
/// answer has reached the client, and the comparison is recorded.
#[allow(clippy::too_many_arguments)]
async fn proxy(
    mut req: Request,
    root: &Root,
    ctx: &Context,
    config: &ServiceConfig,
    legacy_url: &str,
    shadow: bool,
    request_id: &str,
) -> Result<Response, ApiError> {
    let started = WorkerClock.now_ms();
    let accept_sse = chat::accepts_sse(&req)?;
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
    let request = Request::new_with_init(legacy_url, &init)?;
    match first_byte(request, config.rollout.first_byte_timeout_ms).await {
        Ok(legacy) => {
            let (response, watch) = pass_through(legacy, shadow)?;
            if let Some(watch) = watch {
                ctx.wait_until(compare(root.clone(), config.clone(), body, started, watch));
            }
            Ok(response)
        }
        Err(Failover { reason, detail }) => {
            ConsoleLog.log(
                Level::Warn,
                json!({ "event": "legacy_chat_failover", "request_id": request_id,
                        "reason": reason.label(), "error": detail }),
            );
            ctx.wait_until(count_failover(root.clone(), reason, started));
            // Answered here as any chat is; an error of ours is still this
            // request's answer, so it carries the header too.
            let response =
                match chat::answer(&body, accept_sse, started, root, config, request_id).await {
                    Ok(response) => response,
                    Err(e) => e.into_response(request_id)?,
                };
            let headers = response.headers().clone();
            headers.set(SERVED_BY_HEADER, ServedBy::Failover.header_value())?;
            Ok(response.with_headers(headers))
        }
    }
}

/// Runs `work` until `deadline`: `None` when the deadline came first.
async fn before<T>(
    deadline: &mut Pin<&mut Delay>,
    work: impl std::future::Future<Output = T>,
) -> Option<T> {
    match select(pin!(work), deadline.as_mut()).await {
        Either::Left((result, _)) => Some(result),
        Either::Right(((), _)) => None,
    }
}

/// Sends `request` and waits for the old endpoint's headers and its body's
/// first chunk, both within `timeout_ms` of sending; nothing reaches the
/// client before that, so until then a failure can still be answered here.
async fn first_byte(request: Request, timeout_ms: u64) -> Result<LegacyAnswer, Failover> {
    let controller = AbortController::default();
    let signal = controller.signal();
    let mut deadline = pin!(Delay::from(std::time::Duration::from_millis(timeout_ms)));
    let give_up = |reason: FailoverReason, detail: String| {
        // Drops the old endpoint's connection: its answer is no longer wanted.
        controller.abort();
        Failover { reason, detail }
    };
    let sent = before(
        &mut deadline,
        Fetch::Request(request).send_with_signal(&signal),
    )
    .await;
    let mut legacy = match sent {
        None => {
            return Err(give_up(
                after_no_response(NoResponse::NoHeaders),
                format!("no response headers within {timeout_ms} ms"),
            ))
        }
        Some(Err(e)) => {
            return Err(give_up(
                after_no_response(NoResponse::Unreachable),
                e.to_string(),
            ))
        }
        Some(Ok(response)) => response,
    };
    let status = legacy.status_code();
    let step = after_head(status);
    if let Step::FailOver(reason) = step {
        return Err(give_up(reason, format!("status {status}")));
    }
    let Ok(mut stream) = legacy.stream() else {
        // No body (e.g. 204): the answer is complete.
        return Ok(LegacyAnswer {
            head: legacy,
            body: None,
        });
    };
    if step != Step::AwaitFirstChunk {
        return Ok(LegacyAnswer {
            head: legacy,
            body: Some(Box::pin(stream)),
        });
    }
    let (seen, first, detail) = match before(&mut deadline, stream.next()).await {
        None => (
            FirstChunk::TimedOut,
            None,
            format!("status {status}, no body within {timeout_ms} ms"),
        ),
        Some(Some(Err(e))) => (FirstChunk::Failed, None, format!("reading body: {e}")),
        Some(Some(Ok(chunk))) => (FirstChunk::Arrived, Some(chunk), String::new()),
        // The body ended at once: an empty answer.
        Some(None) => (FirstChunk::Arrived, None, String::new()),
    };
    if let Step::FailOver(reason) = after_first_chunk(seen) {
        return Err(give_up(reason, detail));
    }
    let rest: LegacyBody = Box::pin(stream);
    let body: LegacyBody = match first {
        Some(chunk) => Box::pin(futures_util::stream::once(async { Ok(chunk) }).chain(rest)),
        None => rest,
    };
    Ok(LegacyAnswer {
        head: legacy,
        body: Some(body),
    })
}

/// The old API's answer as this service's response; with `inspect`, a
/// watch that sees its bytes as the client reads them.
fn pass_through(
    legacy: LegacyAnswer,
    inspect: bool,
) -> Result<(Response, Option<LegacyWatch>), ApiError> {
    let LegacyAnswer { head, body } = legacy;
    let status = head.status_code();
    let headers = Headers::new();
    for (name, value) in head.headers().entries() {
        if forwarded_response_header(&name) {
            headers.append(&name, &value)?;
        }
    }
    headers.set(SERVED_BY_HEADER, ServedBy::Legacy.header_value())?;
    let Some(stream) = body else {
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

/// Counts one failover for today's report (after the response: never
/// delays it; a failed write is logged, the answer stands).
async fn count_failover(root: Root, reason: FailoverReason, at_ms: u64) {
    let written = match root.rollout() {
        Ok(store) => store
            .count_failover(&utc_day(at_ms), &reason.label())
            .await
            .map_err(|e| e.to_string()),
        Err(e) => Err(e.code().to_owned()),
    };
    if let Err(error) = written {
        ConsoleLog.log(
            Level::Error,
            json!({ "event": "failover_count_failed", "error": error }),
        );
    }
}

/// This service's retrieval for the proxied question, once the old API's
/// answer has reached the client; recorded in `shadow_comparisons`.
async fn compare(
    root: Root,
    config: ServiceConfig,
    body: Vec<u8>,
    started: u64,
    watch: LegacyWatch,
) {
    // The old API's answer first: this service's retrieval starts once the
    // client has it, so it never competes with that answer. (A failed-over
    // request is never compared: the old API gave no answer to compare.)
    let completed = watch.ended.await.is_ok();
    let legacy_ms = WorkerClock.now_ms().saturating_sub(started);
    let legacy = legacy_outcome(LegacyEnding {
        status: watch.status,
        completed,
        broken: watch.broken.get(),
        seen: &watch.seen.borrow(),
    });
    let ours_started = WorkerClock.now_ms();
    // The old front end may post the AI SDK's body; it asks the same question.
    let planned = if is_ui_chat(&body) {
        plan_ui_chat(&body)
    } else {
        plan_chat(&body, false)
    };
    let ours: Result<Vec<String>, String> = match planned {
        Ok(plan) => match retrieve(&root, &config, &plan.search).await {
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
    let record = ShadowRecord::compare(started, legacy, legacy_ms, ours, ours_ms);
    let written = match root.rollout() {
        Ok(store) => store.record(&record).await.map_err(|e| e.to_string()),
        Err(e) => Err(e.code().to_owned()),
    };
    if let Err(error) = written {
        ConsoleLog.log(
            Level::Error,
            json!({ "event": "shadow_record_failed", "error": error }),
        );
    }
    // The retrieval's provider calls were recorded after the request's own flush.
    root.metrics().flush().await;
}
