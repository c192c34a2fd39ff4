//! The AI SDK's chat on `POST /api/chat`: a `useChat` body (`{ messages }`)
//! answered as the AI SDK's UI message stream — source parts, the answer's
//! text deltas, finish (or an error chunk). Shapes are core's
//! (`api::ui_stream`); retrieval and the prompt are `ground::ground`'s. Never
//! answers in `/api/chat`'s own `{ question }` shapes.

use super::ground::{ground, Grounded};
use crate::config::ServiceConfig;
use crate::error::ApiError;
use crate::root::Root;
use futures_util::StreamExt;
use portfolio_core::api::ui_stream::{
    closing_chunks, opening_chunks, plan_ui_chat, text_chunk, DONE_EVENT, HEADERS,
};
use portfolio_core::providers::ChatModel;
use serde_json::json;
use worker::{console_error, Headers, Response};

/// The stream for an AI SDK chat body (already read and within its limit).
/// A refused body is a 400 in this service's error shape, before any
/// stream: `DefaultChatTransport` raises it as the chat's error.
pub async fn answer(
    body: &[u8],
    root: &Root,
    config: &ServiceConfig,
    request_id: &str,
) -> Result<Response, ApiError> {
    let plan = plan_ui_chat(body)?;
    let Grounded {
        chat,
        request,
        sources,
        ..
    } = ground(&plan, root, config).await?;
    let (tx, rx) = futures_channel::mpsc::unbounded::<Vec<u8>>();
    for chunk in opening_chunks(&format!("msg-{request_id}"), &sources) {
        let _ = tx.unbounded_send(chunk.event().into_bytes());
    }
    let request_id = request_id.to_owned();
    let metrics = root.metrics().clone();
    wasm_bindgen_futures::spawn_local(async move {
        let delta_tx = tx.clone();
        let mut on_delta = move |text: &str| {
            let _ = delta_tx.unbounded_send(text_chunk(text).event().into_bytes());
        };
        let error = match chat.stream(&request, &mut on_delta).await {
            Ok(_) => None,
            Err(e) => {
                // The provider's detail goes to the log; the client gets the id to quote.
                console_error!(
                    "{}",
                    json!({ "level": "error", "event": "chat_stream_failed", "request_id": request_id, "error": e.to_string() })
                );
                Some(format!(
                    "the answer could not be completed; quote request id {request_id}"
                ))
            }
        };
        for chunk in closing_chunks(error.as_deref()) {
            let _ = tx.unbounded_send(chunk.event().into_bytes());
        }
        let _ = tx.unbounded_send(DONE_EVENT.as_bytes().to_vec());
        // Written while the stream still holds the invocation open (see chat.rs).
        metrics.flush().await;
    });
    let headers = Headers::new();
    for (name, value) in HEADERS {
        headers.set(name, value)?;
    }
    Ok(Response::from_stream(rx.map(Ok::<Vec<u8>, worker::Error>))?.with_headers(headers))
}
