//! The OpenAI-compatible front door: `POST /v1/chat/completions` (JSON or
//! streamed chunks) and `GET /v1/models`, every error in OpenAI's envelope.
//! Shapes are core's (`api::openai`); retrieval and the prompt are
//! `ground::ground`'s. Never answers in this service's own error shape.

use super::ground::{ground, Grounded};
use crate::body::read_limited;
use crate::config::ServiceConfig;
use crate::error::{json_response, with_retry_after, ApiError};
use crate::root::Root;
use crate::store::WorkerClock;
use futures_util::StreamExt;
use portfolio_core::api::openai::{
    chunk_event, completion, error_event, model_list, plan_completion, ChunkDelta, OpenAiErrorBody,
    DONE_EVENT,
};
use portfolio_core::api::MAX_CHAT_BODY_BYTES;
use portfolio_core::providers::ChatModel;
use portfolio_core::shared::storage::Clock;
use serde_json::json;
use worker::{console_error, Headers, Request, Response};

fn now_secs() -> u64 {
    WorkerClock.now_ms() / 1000
}

/// An error of this service in OpenAI's envelope (the `openai` client raises
/// it as `APIError` with `status`, `code` and `param`).
pub fn error_response(error: ApiError, request_id: &str) -> worker::Result<Response> {
    let (status, code, message) = error.into_public(request_id);
    with_retry_after(json_response(
        &OpenAiErrorBody::new(status, code, message, None),
        status,
    )?)
}

/// `GET /v1/models`.
pub fn models() -> worker::Result<Response> {
    // No creation date is meaningful for a service; 0 is what OpenAI-compatible
    // servers commonly send.
    json_response(&model_list(0), 200)
}

/// `POST /v1/chat/completions`.
pub async fn completions(
    mut req: Request,
    root: &Root,
    config: &ServiceConfig,
    request_id: &str,
) -> Result<Response, ApiError> {
    let body = read_limited(&mut req, MAX_CHAT_BODY_BYTES).await?;
    let plan = match plan_completion(&body) {
        Ok(plan) => plan,
        Err(e) => {
            let status = e.status();
            return Ok(json_response(
                &OpenAiErrorBody::new(status, e.code(), e.to_string(), e.param()),
                status,
            )?);
        }
    };
    let Grounded {
        chat,
        request,
        sources,
        ..
    } = ground(&plan.chat, root, config).await?;
    let id = format!("chatcmpl-{request_id}");
    let created = now_secs();
    if !plan.chat.stream {
        let answer = chat
            .complete(&request)
            .await
            .map_err(|e| ApiError::Upstream(e.to_string()))?;
        return Ok(json_response(
            &completion(&id, created, &plan.model, &answer.text, &sources),
            200,
        )?);
    }
    let (tx, rx) = futures_channel::mpsc::unbounded::<Vec<u8>>();
    let model = plan.model;
    let _ = tx.unbounded_send(chunk_event(&id, created, &model, ChunkDelta::Role).into_bytes());
    let request_id = request_id.to_owned();
    let metrics = root.metrics().clone();
    wasm_bindgen_futures::spawn_local(async move {
        let delta_tx = tx.clone();
        let (delta_id, delta_model) = (id.clone(), model.clone());
        let mut on_delta = move |text: &str| {
            let event = chunk_event(&delta_id, created, &delta_model, ChunkDelta::Text(text));
            let _ = delta_tx.unbounded_send(event.into_bytes());
        };
        let last = match chat.stream(&request, &mut on_delta).await {
            Ok(_) => chunk_event(&id, created, &model, ChunkDelta::Finish(&sources)),
            Err(e) => {
                console_error!(
                    "{}",
                    json!({ "level": "error", "event": "chat_stream_failed", "request_id": request_id, "error": e.to_string() })
                );
                error_event(&OpenAiErrorBody::new(
                    502,
                    "provider_error",
                    format!("the answer could not be completed; quote request id {request_id}"),
                    None,
                ))
            }
        };
        let _ = tx.unbounded_send(last.into_bytes());
        let _ = tx.unbounded_send(DONE_EVENT.as_bytes().to_vec());
        // Written while the stream still holds the invocation open (see chat.rs).
        metrics.flush().await;
    });
    let headers = Headers::new();
    headers.set("Content-Type", "text/event-stream; charset=utf-8")?;
    headers.set("Cache-Control", "no-cache")?;
    Ok(Response::from_stream(rx.map(Ok::<Vec<u8>, worker::Error>))?.with_headers(headers))
}
