//! Ingestion's entry points: the queue consumer that hands documents to their
//! processor, and the per-document `DocumentProcessor` Durable Object, and the `IngestGate` object that
//! limits provider calls across documents. Both
//! are shells over `portfolio_core::ingest`.

pub mod consumer;
pub mod gate;
pub mod processor;
pub mod watchdog;

use crate::bindings;
use portfolio_core::shared::storage::StoreError;
use serde::Serialize;
use wasm_bindgen::JsValue;
use worker::{Env, Method, Request, RequestInit, Response};

/// Base URL for fetch-style calls to a Durable Object stub (only the path matters).
pub const PROCESSOR_ORIGIN: &str = "https://document-processor";

/// Posts `body` as JSON to `route` of `key`'s processor and returns its answer, whatever the
/// status (`operation` names the call in errors). Shared by the queue's hand-off and the
/// watchdog's wake.
///
/// # Errors
/// Transient when the binding, the stub or the call fails.
pub(crate) async fn post_to_processor(
    env: &Env,
    key: &str,
    route: &str,
    body: &impl Serialize,
    operation: &'static str,
) -> Result<Response, StoreError> {
    let failed = |e: worker::Error| StoreError::transient(operation, e);
    let namespace = env
        .durable_object(bindings::DOCUMENT_PROCESSOR)
        .map_err(failed)?;
    let stub = namespace
        .id_from_name(key)
        .and_then(|id| id.get_stub())
        .map_err(failed)?;
    let body = serde_json::to_string(body).map_err(|e| StoreError::permanent(operation, e))?;
    let mut init = RequestInit::new();
    init.with_method(Method::Post)
        .with_body(Some(JsValue::from_str(&body)));
    let request =
        Request::new_with_init(&format!("{PROCESSOR_ORIGIN}{route}"), &init).map_err(failed)?;
    stub.fetch_with_request(request).await.map_err(failed)
}
