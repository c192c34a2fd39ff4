//! `GET /api/health`: which bindings the Worker can see, which providers are configured.

use crate::bindings;
use crate::config::ServiceConfig;
use crate::error::{json_response, ApiError};
use portfolio_core::api::{BindingStatus, HealthReport, ProviderStatus};
use wasm_bindgen::JsValue;
use worker::{Env, Response};

/// Builds the health report. Presence is checked on the raw environment object
/// because `Env::get_binding` checks JS constructor names, which differ
/// between real bindings and local stand-ins.
pub async fn report(env: &Env) -> Result<Response, ApiError> {
    let config = ServiceConfig::from_env(env);
    let raw: &JsValue = env.as_ref();
    let statuses = bindings::ALL
        .iter()
        .filter(|(name, _, required)| *required || binding_present(raw, name))
        .map(|(name, kind, _)| BindingStatus {
            name: (*name).to_owned(),
            kind: (*kind).to_owned(),
            present: binding_present(raw, name),
        })
        .collect();
    let report = HealthReport::new(
        config.environment,
        env!("CARGO_PKG_VERSION"),
        statuses,
        ProviderStatus {
            embedding: config.embedding_provider,
            chat: config.chat_provider,
            vector_index: config.vector_index,
            dimensions: config.dimensions,
        },
    );
    Ok(json_response(&report, 200)?)
}

fn binding_present(env: &JsValue, name: &str) -> bool {
    js_sys::Reflect::get(env, &JsValue::from_str(name))
        .map(|v| !v.is_undefined() && !v.is_null())
        .unwrap_or(false)
}
