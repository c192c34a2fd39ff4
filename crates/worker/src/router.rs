//! Wires paths to handlers; no logic of its own.

use crate::bindings::RATE_LIMIT_PERIOD_SECONDS;
use crate::config::{ConfigError, ServiceConfig};
use crate::error::{json_response, ApiError};
use crate::query::{catalog, chat, cors, mcp, openai, rollout, search};
use crate::store::metrics::Metrics;
use crate::{admin, bindings, health, page};
use portfolio_core::api::access::{presented_key, PublicKeys};
use portfolio_core::operations::rollout::{
    client_key, route as route_for, Route, CLIENT_ID_HEADER,
};
use portfolio_core::shared::client::rate_limit_key;
use worker::{Context, Env, Method, Request, Response};

const PUBLIC_ROUTES: [&str; 5] = [
    "/api/health",
    "/api/search",
    "/api/chat",
    "/api/companies",
    "/api/documents",
];

/// Routes one request; every failure becomes a JSON error response.
pub async fn handle(
    req: Request,
    env: Env,
    config: Result<ServiceConfig, ConfigError>,
    ctx: &Context,
    metrics: &Metrics,
) -> worker::Result<Response> {
    let path = req.path();
    let origin = cors::origin(&req);
    if path.starts_with("/api/") && req.method() == Method::Options {
        return cors::preflight(origin.as_deref(), &env);
    }
    let request_id = request_id(&req);
    // workers-rs maps a method it does not know (`QUERY`, `FOO`) to GET; such
    // a request must not be served as one (found by schemathesis).
    let raw_method = req.inner().method();
    let mut response = if KNOWN_METHODS.contains(&raw_method.as_str()) {
        route(req, &env, ctx, &config, &path, &request_id, metrics).await
    } else {
        Err(ApiError::MethodNotAllowed(format!(
            "{raw_method} is not allowed on {path}"
        )))
    }
    // OpenAI's clients read every /v1 error in OpenAI's envelope.
    .or_else(|e| match path.starts_with("/v1/") {
        true => openai::error_response(e, &request_id),
        false => e.into_response(&request_id),
    })?;
    if path.starts_with("/api/") {
        response = cors::apply(origin.as_deref(), &env, response)?;
    }
    let headers = response.headers().clone();
    headers.set(REQUEST_ID_HEADER, &request_id)?;
    // RFC 9110: a 405 names the methods the route does allow.
    if response.status_code() == 405 {
        if let Some(allow) = allowed_methods(&path) {
            headers.set("Allow", allow)?;
        }
    }
    Ok(response.with_headers(headers))
}

/// The methods `worker::Method` represents faithfully.
const KNOWN_METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE",
];

/// Response header carrying the request's id, also in every log line about it.
const REQUEST_ID_HEADER: &str = "x-request-id";

/// Cloudflare's ray id when there is one (it also finds the request in
/// Cloudflare's own logs), else a random id.
fn request_id(req: &Request) -> String {
    req.headers()
        .get("cf-ray")
        .ok()
        .flatten()
        .filter(|ray| {
            !ray.is_empty() && ray.len() <= 64 && ray.bytes().all(|b| b.is_ascii_graphic())
        })
        .unwrap_or_else(|| {
            let high = (js_sys::Math::random() * f64::from(u32::MAX)) as u32;
            let low = (js_sys::Math::random() * f64::from(u32::MAX)) as u32;
            format!("{high:08x}{low:08x}")
        })
}

async fn route(
    req: Request,
    env: &Env,
    ctx: &Context,
    config: &Result<ServiceConfig, ConfigError>,
    path: &str,
    request_id: &str,
    metrics: &Metrics,
) -> Result<Response, ApiError> {
    let method = req.method();
    match (&method, path) {
        // Health answers even when the configuration is invalid: it says why.
        (Method::Get, "/api/health") => return health::report(env, config).await,
        // The token is checked before anything else, configuration included.
        (_, p) if p == "/admin" || p.starts_with("/admin/") => {
            return admin::handle(req, env.clone(), config, metrics).await
        }
        (method, p) if PUBLIC_ROUTES.contains(&p) && !is_public_route(method, p) => {
            return Err(ApiError::MethodNotAllowed(format!(
                "{method} is not allowed on {path}"
            )))
        }
        _ => {}
    }
    let client = public_access(&req, env, path)?;
    let client = client.as_deref();
    let config = config.as_ref().map_err(|_| {
        ApiError::Misconfigured(
            "the service's configuration is invalid; GET /api/health names the vars to fix".into(),
        )
    })?;
    match (method, path) {
        (Method::Post, "/api/search") => {
            rate_limit(&req, env, client, bindings::SEARCH_RATE_LIMITER, "search").await?;
            search::handle(req, env, config, metrics).await
        }
        (Method::Post, "/api/chat") => {
            rate_limit(&req, env, client, bindings::CHAT_RATE_LIMITER, "chat").await?;
            let plan = rollout::plan(env, config).await;
            let client = client_key(
                req.headers().get(CLIENT_ID_HEADER)?.as_deref(),
                req.headers().get("CF-Connecting-IP")?.as_deref(),
            );
            match (route_for(&plan, &client), plan.legacy_url.as_deref()) {
                (Route::Legacy { shadow }, Some(legacy_url)) => {
                    rollout::proxy(
                        req, env, ctx, config, legacy_url, shadow, request_id, metrics,
                    )
                    .await
                }
                _ => chat::handle(req, env, config, request_id, metrics).await,
            }
        }
        // Issue #28's front doors, here until the route table lands.
        (Method::Post, "/v1/chat/completions") => {
            rate_limit(&req, env, client, bindings::CHAT_RATE_LIMITER, "chat").await?;
            openai::completions(req, env, config, request_id, metrics).await
        }
        (Method::Get, "/v1/models") => Ok(openai::models()?),
        (Method::Post, "/mcp") => {
            rate_limit(&req, env, client, bindings::SEARCH_RATE_LIMITER, "MCP").await?;
            mcp::handle(req, env, config, request_id, metrics).await
        }
        (other, "/mcp" | "/v1/models" | "/v1/chat/completions") => Err(ApiError::MethodNotAllowed(
            format!("{other} is not allowed on {path}"),
        )),
        (Method::Get, "/api/companies") => {
            rate_limit(&req, env, client, bindings::SEARCH_RATE_LIMITER, "catalog").await?;
            catalog::companies(env).await
        }
        (Method::Get, "/api/documents") => {
            rate_limit(&req, env, client, bindings::SEARCH_RATE_LIMITER, "catalog").await?;
            catalog::documents(&req, env).await
        }
        (Method::Get, "/api") => Ok(json_response(
            &serde_json::json!({
                "service": "portfolio-docs",
                "endpoints": [
                    "GET / (chat page, unless CHAT_PAGE=off)",
                    "GET /api/health",
                    "POST /api/search",
                    "POST /api/chat",
                    "GET /api/companies",
                    "GET /api/documents",
                    "POST /v1/chat/completions (OpenAI-compatible)",
                    "GET /v1/models",
                    "POST /mcp (Model Context Protocol)",
                    "/admin/documents/... (bearer token)",
                    "/admin/index/... (bearer token)",
                    "/admin/reconcile (bearer token)",
                    "/admin/metrics, /admin/metrics/versions, /admin/alerts, /admin/dead-letters (bearer token)",
                    "/admin/rollout, /admin/rollout/report (bearer token)",
                ],
            }),
            200,
        )?),
        (Method::Get, p) if config.chat_page => match page::asset(p) {
            Some(response) => Ok(response?),
            None => Err(ApiError::NotFound(format!("no route for GET {path}"))),
        },
        (method, _) => Err(ApiError::NotFound(format!("no route for {method} {path}"))),
    }
}

/// The `Allow` header of a public route (OPTIONS: the CORS preflight).
fn allowed_methods(path: &str) -> Option<&'static str> {
    match path {
        "/api/health" | "/api/companies" | "/api/documents" => Some("GET, OPTIONS"),
        "/api/search" | "/api/chat" => Some("POST, OPTIONS"),
        "/v1/chat/completions" | "/mcp" => Some("POST"),
        "/v1/models" => Some("GET"),
        _ => None,
    }
}

fn is_public_route(method: &Method, path: &str) -> bool {
    matches!(
        (method, path),
        (Method::Get, "/api/health")
            | (Method::Post, "/api/search")
            | (Method::Post, "/api/chat")
            | (Method::Get, "/api/companies")
            | (Method::Get, "/api/documents")
    )
}

/// Whether `PUBLIC_API_KEYS` lets the request through, and the name of its
/// key when one is required (its own rate-limit budget). Unset: every
/// public route stays open (`None`). Health stays open for monitors and
/// deploy checks (it shows no documents); an unusable secret closes the
/// routes rather than opening them.
fn public_access(req: &Request, env: &Env, path: &str) -> Result<Option<String>, ApiError> {
    let guarded = (path.starts_with("/api/") && path != "/api/health")
        || path.starts_with("/v1/")
        || path == "/mcp";
    if !guarded {
        return Ok(None);
    }
    let secret = env
        .secret(bindings::PUBLIC_API_KEYS)
        .ok()
        .map(|s| s.to_string());
    let keys =
        PublicKeys::parse(secret.as_deref()).map_err(|e| ApiError::Misconfigured(e.to_string()))?;
    let Some(keys) = keys else {
        return Ok(None);
    };
    let authorization = req.headers().get("Authorization")?;
    let x_api_key = req.headers().get("x-api-key")?;
    keys.check(presented_key(
        authorization.as_deref(),
        x_api_key.as_deref(),
    ))
    .map(Some)
    .map_err(ApiError::PublicKey)
}

/// Per-client budget of a route (the `binding` limiter; absent: no limit),
/// keyed by the client's API key when keys are required, else by IPv4
/// address or IPv6 /64.
async fn rate_limit(
    req: &Request,
    env: &Env,
    key: Option<&str>,
    binding: &str,
    what: &str,
) -> Result<(), ApiError> {
    let Ok(limiter) = env.rate_limiter(binding) else {
        return Ok(());
    };
    let name = match key {
        Some(key) => key.to_owned(),
        None => rate_limit_key(
            req.headers()
                .get("CF-Connecting-IP")
                .ok()
                .flatten()
                .as_deref(),
        ),
    };
    let outcome = limiter.limit(name).await?;
    if outcome.success {
        Ok(())
    } else {
        Err(ApiError::TooManyRequests(format!(
            "too many {what} requests from this client; try again in {RATE_LIMIT_PERIOD_SECONDS} s"
        )))
    }
}
