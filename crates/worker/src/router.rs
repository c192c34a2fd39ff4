//! Wires paths to handlers; no logic of its own.

use crate::error::{json_response, ApiError};
use crate::{admin, health};
use worker::{Env, Method, Request, Response};

/// Routes one request; every failure becomes a JSON error response.
pub async fn handle(req: Request, env: Env) -> worker::Result<Response> {
    let path = req.path();
    let result = match (req.method(), path.as_str()) {
        (Method::Get, "/api/health") => health::report(&env).await,
        (_, "/api/health") => Err(ApiError::MethodNotAllowed(format!(
            "{} is not allowed on /api/health; use GET",
            req.method()
        ))),
        (_, p) if p == "/admin" || p.starts_with("/admin/") => admin::handle(req, &env).await,
        (_, "/") => json_response(
            &serde_json::json!({
                "service": "portfolio-docs",
                "endpoints": ["GET /api/health", "/admin/documents (bearer token)", "/admin/reconcile (bearer token)"],
            }),
            200,
        )
        .map_err(ApiError::from),
        _ => Err(ApiError::NotFound(format!(
            "no route for {} {path}",
            req.method()
        ))),
    };
    result.or_else(ApiError::into_response)
}
