//! The admin API (bearer token only): document upload, deletion, manual
//! processing, status and listing; starting a reconciliation run and its
//! history. Checks come from `portfolio_core::admin`; nothing happens before
//! the token is verified.

mod documents;
mod reconcile;

use crate::error::ApiError;
use portfolio_core::admin::{document_route, is_authorized, reconcile_route, AdminRequestError};
use worker::{Env, Request, Response};

/// Handles any `/admin/...` request.
pub async fn handle(req: Request, env: &Env) -> Result<Response, ApiError> {
    let token = env.secret("ADMIN_TOKEN").map(|s| s.to_string()).ok();
    let header = req.headers().get("Authorization").ok().flatten();
    if !is_authorized(header.as_deref(), token.as_deref()) {
        return Err(ApiError::Unauthorized);
    }
    let path = req.path();
    if let Some(route) = reconcile_route(req.method().as_ref(), &path) {
        return match route {
            Ok(route) => reconcile::handle(route, req, env).await,
            Err(e) => Err(ApiError::NotFound(e.to_string())),
        };
    }
    match document_route(req.method().as_ref(), &path) {
        Ok(route) => documents::handle(route, req, env).await,
        Err(AdminRequestError::NoRoute { method, path }) => Err(ApiError::NotFound(format!(
            "no admin route for {method} {path}"
        ))),
        Err(e) => Err(ApiError::BadRequest("bad_key", e.to_string())),
    }
}
