//! The chat page served at `/`: plain HTML, CSS and JavaScript compiled into
//! the Worker (no build step, nothing loaded from elsewhere). It only calls
//! the public API (`/api/companies`, `/api/chat`), like any other client.
//!
//! `CHAT_PAGE=off` turns it off (a deployment that only serves the API).

use worker::{Headers, Response};

const HTML: &str = include_str!("chat.html");
const CSS: &str = include_str!("chat.css");
const JS: &str = include_str!("chat.js");

/// Everything the page needs comes from this origin; nothing else may run.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The page or one of its assets, for `GET` on `path`; `None` for other paths.
pub fn asset(path: &str) -> Option<worker::Result<Response>> {
    let (body, content_type) = match path {
        "/" => (HTML, "text/html; charset=utf-8"),
        "/assets/chat.css" => (CSS, "text/css; charset=utf-8"),
        "/assets/chat.js" => (JS, "text/javascript; charset=utf-8"),
        _ => return None,
    };
    Some(respond(body, content_type))
}

fn respond(body: &str, content_type: &str) -> worker::Result<Response> {
    let headers = Headers::new();
    headers.set("Content-Type", content_type)?;
    headers.set("Content-Security-Policy", CONTENT_SECURITY_POLICY)?;
    headers.set("X-Content-Type-Options", "nosniff")?;
    headers.set("Cache-Control", "no-cache")?;
    Ok(Response::ok(body)?.with_headers(headers))
}
