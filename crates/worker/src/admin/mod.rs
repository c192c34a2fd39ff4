//! The operator (admin) API: every route here needs `Authorization: Bearer <ADMIN_TOKEN>`.
//!
//! Owns the token check; must never answer an admin route, known or not, before it passed.

pub mod index;

use crate::error::ApiError;
use portfolio_core::admin_auth::is_authorized;
use wasm_bindgen::JsValue;
use worker::{Env, Request};

/// Name of the secret (or var, locally) holding the admin token.
const ADMIN_TOKEN: &str = "ADMIN_TOKEN";

/// `Ok` when the request carries the configured admin token (compared in constant time).
/// Read from the raw environment: a secret and a var are both plain strings there.
pub fn authorize(req: &Request, env: &Env) -> Result<(), ApiError> {
    let expected = js_sys::Reflect::get(env.as_ref(), &JsValue::from_str(ADMIN_TOKEN))
        .ok()
        .and_then(|v| v.as_string());
    let presented = req.headers().get("Authorization").ok().flatten();
    if is_authorized(presented.as_deref(), expected.as_deref()) {
        Ok(())
    } else {
        Err(ApiError::Unauthorized)
    }
}

/// Any other `/admin/…` path: 401 without the token, 404 with it.
pub fn unknown_route(req: &Request, env: &Env) -> Result<worker::Response, ApiError> {
    authorize(req, env)?;
    Err(ApiError::NotFound(format!(
        "no route for {} {}",
        req.method(),
        req.path()
    )))
}
