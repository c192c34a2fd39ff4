//! CORS for the public API, configured per environment with
//! `CORS_ALLOWED_ORIGINS` (comma-separated origins, or `*`; empty: none).

use crate::root::Root;
use worker::{Headers, Request, Response};

/// The request's `Origin` header, read before a handler consumes the request.
pub fn origin(req: &Request) -> Option<String> {
    req.headers().get("Origin").ok().flatten()
}

fn allowed_origin(origin: Option<&str>, root: &Root) -> Option<String> {
    let origin = origin?.to_owned();
    let configured = root.var("CORS_ALLOWED_ORIGINS")?;
    let allowed = configured
        .split(',')
        .map(str::trim)
        .any(|o| o == "*" || o.eq_ignore_ascii_case(&origin));
    allowed.then_some(origin)
}

/// Whether a request's `Origin` is one `CORS_ALLOWED_ORIGINS` allows (a
/// request without one, from a server, is not a browser's: allowed).
pub fn allows(origin: Option<&str>, root: &Root) -> bool {
    origin.is_none() || allowed_origin(origin, root).is_some()
}

fn cors_headers(headers: &Headers, origin: &str) -> worker::Result<()> {
    headers.set("Access-Control-Allow-Origin", origin)?;
    headers.set("Vary", "Origin")?;
    headers.set("Access-Control-Allow-Methods", "GET, POST, OPTIONS")?;
    // Authorization and x-api-key carry a PUBLIC_API_KEYS key from a browser.
    headers.set(
        "Access-Control-Allow-Headers",
        "Content-Type, Accept, Authorization, x-api-key",
    )?;
    headers.set("Access-Control-Max-Age", "86400")?;
    Ok(())
}

/// Answers a preflight request.
pub fn preflight(origin: Option<&str>, root: &Root) -> worker::Result<Response> {
    let response = Response::empty()?.with_status(204);
    if let Some(origin) = allowed_origin(origin, root) {
        cors_headers(response.headers(), &origin)?;
    }
    Ok(response)
}

/// Adds the CORS headers to a response when the request's origin is allowed,
/// and `Vary: Origin` always: the answer depends on the origin either way, so
/// a cache must not serve a refused origin's answer to an allowed one (or back).
pub fn apply(origin: Option<&str>, root: &Root, response: Response) -> worker::Result<Response> {
    let headers = response.headers().clone();
    match allowed_origin(origin, root) {
        Some(origin) => cors_headers(&headers, &origin)?,
        None => headers.set("Vary", "Origin")?,
    }
    Ok(response.with_headers(headers))
}
