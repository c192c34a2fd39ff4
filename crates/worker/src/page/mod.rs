//! The pages compiled into the Worker: plain HTML, CSS and JavaScript (no
//! build step, nothing loaded from elsewhere, a strict CSP).
//!
//! - The chat page at `/` only calls the public API (`/api/companies`,
//!   `/api/chat`, `/api/feedback`), like any other client. `CHAT_PAGE=off`
//!   turns it off (a deployment that only serves the API).
//! - The operator page at `/operator` holds no data: it asks for the admin
//!   token, keeps it in the tab's session storage and calls the admin API
//!   with it as a bearer header, like any other admin client.

use worker::{Headers, Response};

const HTML: &str = include_str!("chat.html");
const CSS: &str = include_str!("chat.css");
const JS: &str = include_str!("chat.js");
const OPERATOR_HTML: &str = include_str!("operator.html");
const OPERATOR_CSS: &str = include_str!("operator.css");
const OPERATOR_JS: &str = include_str!("operator.js");

/// Everything the page needs comes from this origin; nothing else may run.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The page or one of its assets, for `GET` on `path`; `None` for other paths.
pub fn asset(path: &str) -> Option<worker::Result<Response>> {
    let (body, content_type) = match path {
        "/" => (HTML, "text/html; charset=utf-8"),
        "/assets/chat.css" => (CSS, "text/css; charset=utf-8"),
        "/assets/chat.js" => (JS, "text/javascript; charset=utf-8"),
        "/operator" => (OPERATOR_HTML, "text/html; charset=utf-8"),
        "/assets/operator.css" => (OPERATOR_CSS, "text/css; charset=utf-8"),
        "/assets/operator.js" => (OPERATOR_JS, "text/javascript; charset=utf-8"),
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
