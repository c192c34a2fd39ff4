//! The operator (admin) API: every route here needs `Authorization: Bearer
//! <ADMIN_TOKEN>` (compared in constant time). Owns the token check and the
//! dispatch (documents, index, reconciliation); must never answer an admin
//! route, known or not, before the token passed. Request checks come from
//! `portfolio_core::admin`.

mod alerts;
mod companies;
mod documents;
pub mod index;
mod objects;
mod operations;
mod reconcile;
mod rollout;

use crate::config::{ConfigError, ServiceConfig};
use crate::error::ApiError;
use crate::store::metrics::Metrics;
use portfolio_core::admin::{
    document_route, is_authorized, migration_route, operations_route, reconcile_route,
    AdminRequestError, MigrationRoute,
};
use wasm_bindgen::JsValue;
use worker::{Env, Method, Request, Response};

/// Name of the secret (or var, locally) holding the admin token.
pub const ADMIN_TOKEN: &str = "ADMIN_TOKEN";

/// `Ok` when the request carries the configured admin token. Read from the
/// raw environment: a secret and a var are both plain strings there.
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

/// Handles any `/admin/...` request: token first, then the configuration
/// (its problems in full: the caller is the operator), then the route.
pub async fn handle(
    req: Request,
    env: Env,
    config: &Result<ServiceConfig, ConfigError>,
    metrics: &Metrics,
) -> Result<Response, ApiError> {
    authorize(&req, &env)?;
    let config = config
        .as_ref()
        .map_err(|e| ApiError::Misconfigured(e.to_string()))?;
    let path = req.path();
    match (req.method(), path.as_str()) {
        (Method::Get, "/admin/index") => return index::describe(req, env, config).await,
        (Method::Get, "/admin/index/check") => return index::check(req, env, config).await,
        (Method::Post, "/admin/index/query") => return index::query(req, env, config).await,
        (Method::Post, "/admin/index/upsert") => return index::upsert(req, env, config).await,
        (Method::Post, "/admin/index/get") => return index::get(req, env, config).await,
        (Method::Post, "/admin/index/delete") => return index::delete(req, env, config).await,
        (Method::Get, "/admin/rollout") => return rollout::get(&env, config).await,
        (Method::Put, "/admin/rollout") => return rollout::put(req, &env, config).await,
        (Method::Get, "/admin/rollout/report") => return rollout::report(req, &env).await,
        (_, "/admin/rollout" | "/admin/rollout/report") => {
            return Err(ApiError::MethodNotAllowed(format!(
                "{} is not allowed on {path}",
                req.method()
            )))
        }
        _ => {}
    }
    if let Some(route) = reconcile_route(req.method().as_ref(), &path) {
        return match route {
            Ok(route) => reconcile::handle(route, req, &env, config, metrics).await,
            Err(e) => Err(ApiError::NotFound(e.to_string())),
        };
    }
    if let Some(route) = operations_route(req.method().as_ref(), &path) {
        return match route {
            Ok(route) => operations::handle(route, req, &env, config).await,
            Err(e @ AdminRequestError::BadId(_)) => {
                Err(ApiError::BadRequest("bad_id", e.to_string()))
            }
            Err(e) => Err(ApiError::NotFound(e.to_string())),
        };
    }
    if let Some(route) = migration_route(req.method().as_ref(), &path) {
        return match route {
            Ok(MigrationRoute::Object(key)) => objects::get(key, &env).await,
            Ok(route) => companies::handle(route, req, &env).await,
            Err(e @ AdminRequestError::NoRoute { .. }) => Err(ApiError::NotFound(e.to_string())),
            Err(e) => Err(ApiError::BadRequest("bad_key", e.to_string())),
        };
    }
    match document_route(req.method().as_ref(), &path) {
        Ok(route) => documents::handle(route, req, &env).await,
        Err(AdminRequestError::NoRoute { method, path }) => {
            Err(ApiError::NotFound(format!("no route for {method} {path}")))
        }
        Err(e) => Err(ApiError::BadRequest("bad_key", e.to_string())),
    }
}
