//! The Worker's configuration: its vars parsed once per invocation into
//! `portfolio_core::config::ServiceConfig` (never secrets' values).

pub use portfolio_core::config::{ConfigError, ServiceConfig};
use wasm_bindgen::JsValue;
use worker::Env;

/// Parses the vars. Read from the raw environment object, so a var set to
/// an empty string is seen as set (and refused), not as unset.
///
/// # Errors
/// Every var that is set but blank or invalid.
pub fn load(env: &Env) -> Result<ServiceConfig, ConfigError> {
    let raw: &JsValue = env.as_ref();
    ServiceConfig::from_vars(|name| {
        js_sys::Reflect::get(raw, &JsValue::from_str(name))
            .ok()
            .and_then(|v| v.as_string())
    })
}

/// The vars as a Durable Object instance parsed them on its first call, kept in `cell`: an
/// instance's `env` never changes, and a bulk ingestion calls each object many times.
///
/// # Errors
/// As [`load`], as a `worker::Error` (nothing is kept then).
pub fn load_once<'a>(
    cell: &'a std::cell::OnceCell<ServiceConfig>,
    env: &Env,
) -> worker::Result<&'a ServiceConfig> {
    if let Some(config) = cell.get() {
        return Ok(config);
    }
    let loaded = load(env).map_err(|e| worker::Error::RustError(e.to_string()))?;
    Ok(cell.get_or_init(|| loaded))
}

/// A var's value, `None` when unset or blank (for the vars `ServiceConfig`
/// does not own: provider URLs and models, CORS origins).
pub fn var(env: &Env, name: &str) -> Option<String> {
    env.var(name)
        .map(|v| v.to_string())
        .ok()
        .filter(|v| !v.trim().is_empty())
}
