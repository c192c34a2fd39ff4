//! Wires paths to handlers; no logic of its own.

use crate::admin;
use crate::error::{json_response, ApiError};
use crate::health;
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
        (Method::Get, "/admin/index") => admin::index::describe(req, env).await,
        (Method::Post, "/admin/index/query") => admin::index::query(req, env).await,
        (Method::Post, "/admin/index/upsert") => admin::index::upsert(req, env).await,
        (Method::Post, "/admin/index/get") => admin::index::get(req, env).await,
        (Method::Post, "/admin/index/delete") => admin::index::delete(req, env).await,
        (_, p) if p == "/admin" || p.starts_with("/admin/") => admin::unknown_route(&req, &env),
        (_, "/") => json_response(
            &serde_json::json!({
                "service": "portfolio-docs",
                "endpoints": [
                    "GET /api/health",
                    "GET /admin/index",
                    "POST /admin/index/query",
                    "POST /admin/index/upsert",
                    "POST /admin/index/get",
                    "POST /admin/index/delete",
                ],
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
