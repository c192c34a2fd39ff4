//! The `version_metadata` binding, read into
//! `portfolio_core::operations::deployment::WorkerVersion` (for `/api/health` and the
//! version label of every data point). Never fails: without the binding, or
//! with a field that is not a string, the version is unknown.

use crate::bindings;
use portfolio_core::operations::deployment::WorkerVersion;
use wasm_bindgen::JsValue;
use worker::Env;

/// The version this invocation runs as. Read field by field from the raw
/// object rather than through `worker::WorkerVersionMetadata`, whose getters
/// assume every field is a string (a missing one would throw in the glue).
pub fn from_env(env: &Env) -> WorkerVersion {
    let metadata =
        js_sys::Reflect::get(env.as_ref(), &JsValue::from_str(bindings::VERSION_METADATA))
            .ok()
            .filter(|v| v.is_object());
    let field = |name: &str| {
        metadata
            .as_ref()
            .and_then(|m| js_sys::Reflect::get(m, &JsValue::from_str(name)).ok())
            .and_then(|v| v.as_string())
    };
    WorkerVersion::from_fields(field("id"), field("tag"), field("timestamp"))
}
