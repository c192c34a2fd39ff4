//! `POST /api/chat`: retrieval, then an answer grounded in the retrieved
//! passages with numbered citations and the sources. As JSON, or as
//! Server-Sent Events: `sources` first, then `delta`s, then `done` (or
//! `error`, never a hung stream). An AI SDK body (`{ messages }`) goes to
//! `ui_chat`; retrieval and the prompt are `ground`'s, every chat front door's.

use super::ground::{ground, Grounded};
use crate::body::read_limited;
use crate::config::ServiceConfig;
use crate::error::{json_response, ApiError};
use crate::root::Root;
use crate::store::WorkerClock;
use futures_util::StreamExt;
use portfolio_core::api::ui_stream::is_ui_chat;
use portfolio_core::api::MAX_CHAT_BODY_BYTES;
use portfolio_core::providers::ChatModel;
use portfolio_core::query::{plan_chat, RetrievalTimings};
use portfolio_core::shared::storage::Clock;
use serde::Serialize;
use serde_json::{json, Value};
use worker::{console_error, Headers, Request, Response};

fn sse(event: &str, data: &Value) -> Vec<u8> {
    format!("event: {event}\ndata: {data}\n\n").into_bytes()
}

fn now() -> u64 {
    WorkerClock.now_ms()
}

#[derive(Serialize)]
struct Timings {
    retrieval: RetrievalTimings,
    generation_ms: u64,
    total_ms: u64,
}

/// Whether the client asked for Server-Sent Events.
pub fn accepts_sse(req: &Request) -> Result<bool, ApiError> {
    Ok(req
        .headers()
        .get("Accept")?
        .is_some_and(|a| a.contains("text/event-stream")))
}

/// `POST /api/chat`.
pub async fn handle(
    mut req: Request,
    root: &Root,
    config: &ServiceConfig,
    request_id: &str,
) -> Result<Response, ApiError> {
    let started = now();
    let accept_sse = accepts_sse(&req)?;
    let body = read_limited(&mut req, MAX_CHAT_BODY_BYTES).await?;
    answer(&body, accept_sse, started, root, config, request_id).await
}

/// The answer to a chat request's `body` (already read and within its
/// limit); `started`: when the request arrived, for the reported timings.
pub async fn answer(
    body: &[u8],
    accept_sse: bool,
    started: u64,
    root: &Root,
    config: &ServiceConfig,
    request_id: &str,
) -> Result<Response, ApiError> {
    // The AI SDK's `useChat` posts `{ messages, … }` here and reads its own
    // stream; `{ question }` keeps this service's shapes.
    if is_ui_chat(body) {
        return super::ui_chat::answer(body, root, config, request_id).await;
    }
    let plan = plan_chat(body, accept_sse)?;
    let Grounded {
        chat,
        request,
        sources,
        retrieval_timings,
    } = ground(&plan, root, config).await?;

    if !plan.stream {
        let generation_started = now();
        let completion = chat
            .complete(&request)
            .await
            .map_err(|e| ApiError::Upstream(e.to_string()))?;
        let timings = Timings {
            retrieval: retrieval_timings,
            generation_ms: now().saturating_sub(generation_started),
            total_ms: now().saturating_sub(started),
        };
        return Ok(json_response(
            &json!({
                "answer": completion.text,
                "sources": sources,
                "model": completion.model,
                "prompt_version": request.prompt_version,
                "timings": timings,
            }),
            200,
        )?);
    }

    let (tx, rx) = futures_channel::mpsc::unbounded::<Vec<u8>>();
    let _ = tx.unbounded_send(sse("sources", &json!({ "sources": sources })));
    let request_id = request_id.to_owned();
    let metrics = root.metrics().clone();
    wasm_bindgen_futures::spawn_local(async move {
        let generation_started = now();
        let delta_tx = tx.clone();
        let mut on_delta = move |text: &str| {
            let _ = delta_tx.unbounded_send(sse("delta", &json!({ "text": text })));
        };
        let event = match chat.stream(&request, &mut on_delta).await {
            Ok(completion) => sse(
                "done",
                &json!({
                    "model": completion.model,
                    "prompt_version": request.prompt_version,
                    "timings": Timings {
                        retrieval: retrieval_timings,
                        generation_ms: now().saturating_sub(generation_started),
                        total_ms: now().saturating_sub(started),
                    },
                }),
            ),
            Err(e) => {
                // The provider's detail goes to the log; the client gets the id to quote.
                console_error!(
                    "{}",
                    json!({ "level": "error", "event": "chat_stream_failed", "request_id": request_id, "error": e.to_string() })
                );
                sse(
                    "error",
                    &json!({ "code": "provider_error",
                             "message": format!("the answer could not be completed; quote request id {request_id}") }),
                )
            }
        };
        let _ = tx.unbounded_send(event);
        // The provider call's point was recorded after the request's own flush
        // (the response went out with the first event): write it while the
        // stream still holds the invocation open, after the last event.
        metrics.flush().await;
        // Dropping the last sender ends the response stream.
    });
    let headers = Headers::new();
    headers.set("Content-Type", "text/event-stream; charset=utf-8")?;
    headers.set("Cache-Control", "no-cache")?;
    Ok(Response::from_stream(rx.map(Ok::<Vec<u8>, worker::Error>))?.with_headers(headers))
}
