//! Wires paths to handlers; no logic of its own.

use crate::config::var;
use crate::error::{json_response, ApiError};
use crate::query::{catalog, chat, cors, search};
use crate::{admin, bindings, health, page};
use worker::{Env, Method, Request, Response};

/// Routes one request; every failure becomes a JSON error response.
pub async fn handle(req: Request, env: Env) -> worker::Result<Response> {
    let path = req.path();
    let origin = cors::origin(&req);
    if path.starts_with("/api/") && req.method() == Method::Options {
        return cors::preflight(origin.as_deref(), &env);
    }
    let result = match (req.method(), path.as_str()) {
        (Method::Get, "/api/health") => health::report(&env).await,
        (Method::Post, "/api/search") => search::handle(req, &env).await,
        (Method::Post, "/api/chat") => match rate_limit(&req, &env).await {
            Ok(()) => chat::handle(req, &env).await,
            Err(e) => Err(e),
        },
        (Method::Get, "/api/companies") => catalog::companies(&env).await,
        (Method::Get, "/api/documents") => catalog::documents(&req, &env).await,
        (
            method,
            "/api/health" | "/api/search" | "/api/chat" | "/api/companies" | "/api/documents",
        ) => Err(ApiError::MethodNotAllowed(format!(
            "{method} is not allowed on {path}"
        ))),
        (_, p) if p == "/admin" || p.starts_with("/admin/") => {
            admin::handle(req, env.clone()).await
        }
        (Method::Get, "/api") => json_response(
            &serde_json::json!({
                "service": "portfolio-docs",
                "endpoints": [
                    "GET / (chat page, unless CHAT_PAGE=off)",
                    "GET /api/health",
                    "POST /api/search",
                    "POST /api/chat",
                    "GET /api/companies",
                    "GET /api/documents",
                    "/admin/documents/... (bearer token)",
                    "/admin/index/... (bearer token)",
                    "/admin/reconcile (bearer token)",
                ],
            }),
            200,
        )
        .map_err(ApiError::from),
        (Method::Get, p) if chat_page_enabled(&env) => match page::asset(p) {
            Some(response) => response.map_err(ApiError::from),
            None => Err(ApiError::NotFound(format!("no route for GET {path}"))),
        },
        (method, _) => Err(ApiError::NotFound(format!("no route for {method} {path}"))),
    };
    let response = result.or_else(ApiError::into_response)?;
    if path.starts_with("/api/") {
        return cors::apply(origin.as_deref(), &env, response);
    }
    Ok(response)
}

/// Per-client limit on chat (the `CHAT_RATE_LIMITER` binding; absent: no limit).
async fn rate_limit(req: &Request, env: &Env) -> Result<(), ApiError> {
    let Ok(limiter) = env.rate_limiter(bindings::CHAT_RATE_LIMITER) else {
        return Ok(());
    };
    let client = req
        .headers()
        .get("CF-Connecting-IP")
        .ok()
        .flatten()
        .unwrap_or_else(|| "anonymous".to_owned());
    let outcome = limiter.limit(client).await?;
    if outcome.success {
        Ok(())
    } else {
        Err(ApiError::TooManyRequests(
            "too many chat requests from this client; try again in a minute".into(),
        ))
    }
}

/// The chat page is served unless `CHAT_PAGE=off`.
fn chat_page_enabled(env: &Env) -> bool {
    var(env, "CHAT_PAGE").is_none_or(|v| v.trim() != "off")
}
