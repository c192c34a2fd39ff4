//! Wires requests to handlers by the route table's ids
//! (`portfolio_core::api::routes`): no path strings, no logic of its own.

use crate::error::{json_response, ApiError};
use crate::query::{self, catalog, cors, mcp, openai, rollout, search};
use crate::root::Root;
use crate::{admin, health, page};
use portfolio_core::api::resolve::{allowed_methods, is_admin_path, resolve, Resolution};
use portfolio_core::api::routes::{listing, OtherMethods, PublicRoute, RouteId};
use worker::{Context, Method, Request, Response};

/// Routes one request; every failure becomes a JSON error response.
pub async fn handle(req: Request, root: &Root, ctx: &Context) -> worker::Result<Response> {
    let path = req.path();
    let origin = cors::origin(&req);
    if path.starts_with("/api/") && req.method() == Method::Options {
        return cors::preflight(origin.as_deref(), root);
    }
    let request_id = request_id(&req);
    // workers-rs maps a method it does not know (`QUERY`, `FOO`) to GET; such
    // a request must not be served as one (found by schemathesis).
    let raw_method = req.inner().method();
    let mut response = if KNOWN_METHODS.contains(&raw_method.as_str()) {
        route(req, root, ctx, &path, &request_id).await
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
        response = cors::apply(origin.as_deref(), root, response)?;
    }
    let headers = response.headers().clone();
    headers.set(REQUEST_ID_HEADER, &request_id)?;
    // RFC 9110: a 405 names the methods the route does allow.
    if response.status_code() == 405 {
        if let Some(allow) = allowed_methods(&path) {
            headers.set("Allow", &allow)?;
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
    root: &Root,
    ctx: &Context,
    path: &str,
    request_id: &str,
) -> Result<Response, ApiError> {
    // The token is checked before anything else, configuration included.
    if is_admin_path(path) {
        return admin::handle(req, root).await;
    }
    let method = req.method();
    let not_found = || ApiError::NotFound(format!("no route for {method} {path}"));
    let id = match resolve(method.as_ref(), path) {
        Resolution::Found(matched) => Some(matched.route),
        Resolution::WrongMethod {
            answer: OtherMethods::NotAllowed,
            ..
        } => {
            let message = format!("{method} is not allowed on {path}");
            return Err(ApiError::MethodNotAllowed(message));
        }
        _ => None,
    };
    // Health and the operator page answer even when the configuration is
    // invalid: health says why, and the page (it holds no data) shows it.
    match id.map(|r| r.id) {
        Some(RouteId::Public(PublicRoute::Health)) => return health::report(root).await,
        Some(RouteId::Public(
            PublicRoute::OperatorPage | PublicRoute::OperatorCss | PublicRoute::OperatorJs,
        )) => return operator_page(path),
        _ => {}
    }
    let key = match id.filter(|r| r.keyed) {
        Some(_) => query::public_access(&req, root)?,
        None => None,
    };
    let config = root.config().as_ref().map_err(|_| {
        ApiError::Misconfigured(
            "the service's configuration is invalid; GET /api/health names the vars to fix".into(),
        )
    })?;
    let Some(route) = id else {
        return Err(not_found());
    };
    if let Some(limiter) = route.limiter {
        query::within_budget(&req, root, limiter, key.as_deref()).await?;
    }
    let RouteId::Public(id) = route.id else {
        return Err(not_found());
    };
    match id {
        PublicRoute::Health => health::report(root).await,
        PublicRoute::Search => search::handle(req, root, config).await,
        PublicRoute::Chat => rollout::serve(req, root, ctx, config, request_id).await,
        PublicRoute::Companies => catalog::companies(root).await,
        PublicRoute::Documents => catalog::documents(&req, root).await,
        PublicRoute::ChatCompletions => openai::completions(req, root, config, request_id).await,
        PublicRoute::Models => Ok(openai::models()?),
        PublicRoute::Mcp => mcp::handle(req, root, config, request_id).await,
        PublicRoute::ApiListing => Ok(json_response(
            &serde_json::json!({ "service": "portfolio-docs", "endpoints": listing(None) }),
            200,
        )?),
        PublicRoute::Feedback => query::feedback::post(req, root).await,
        PublicRoute::OperatorPage | PublicRoute::OperatorCss | PublicRoute::OperatorJs => {
            operator_page(path)
        }
        PublicRoute::ChatPage | PublicRoute::ChatCss | PublicRoute::ChatJs => {
            match page::asset(path).filter(|_| config.chat_page) {
                Some(response) => Ok(response?),
                None => Err(not_found()),
            }
        }
    }
}

/// The operator page or one of its assets.
fn operator_page(path: &str) -> Result<Response, ApiError> {
    match page::asset(path) {
        Some(response) => Ok(response?),
        None => Err(ApiError::NotFound(format!("no route for GET {path}"))),
    }
}
