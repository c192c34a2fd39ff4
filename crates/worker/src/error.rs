//! The one place where failures become HTTP responses.
//!
//! Every handler returns `Result<Response, ApiError>`; the router turns the
//! error into `{ "error": { "code", "message" } }` with the right status.

use portfolio_core::api::ErrorBody;
use worker::Response;

/// A failure of an API request, with the status it maps to.
#[derive(Debug)]
pub enum ApiError {
    /// 400: the request is malformed (code, message).
    BadRequest(&'static str, String),
    /// 401: missing or wrong admin token.
    Unauthorized,
    /// 404: no such route or resource.
    NotFound(String),
    /// 413: the body is too large.
    PayloadTooLarge(String),
    /// 422: the body is well-formed but cannot be a document.
    Unprocessable(&'static str, String),
    /// 405: the route exists but not with this method.
    MethodNotAllowed(String),
    /// 409: the request conflicts with work in progress (code, message).
    Conflict(&'static str, String),
    /// 500: a platform call failed (D1, R2, queue, Durable Object).
    Platform(worker::Error),
}

impl From<worker::Error> for ApiError {
    fn from(err: worker::Error) -> Self {
        Self::Platform(err)
    }
}

impl ApiError {
    fn status_code_message(&self) -> (u16, &'static str, String) {
        match self {
            Self::BadRequest(code, m) => (400, code, m.clone()),
            Self::Unauthorized => (
                401,
                "unauthorized",
                "a valid admin bearer token is required".to_owned(),
            ),
            Self::NotFound(m) => (404, "not_found", m.clone()),
            Self::PayloadTooLarge(m) => (413, "payload_too_large", m.clone()),
            Self::Unprocessable(code, m) => (422, code, m.clone()),
            Self::MethodNotAllowed(m) => (405, "method_not_allowed", m.clone()),
            Self::Conflict(code, m) => (409, code, m.clone()),
            Self::Platform(e) => (500, "internal", format!("platform error: {e}")),
        }
    }

    /// The JSON error response; logs platform errors, which a client cannot act on.
    pub fn into_response(self) -> worker::Result<Response> {
        let (status, code, message) = self.status_code_message();
        if status >= 500 {
            worker::console_error!(
                "{}",
                serde_json::json!({ "level": "error", "event": "api_error", "code": code, "message": message })
            );
        }
        json_response(&ErrorBody::new(code, message), status)
    }
}

/// Serialises `body` as a JSON response with `status`.
pub fn json_response<T: serde::Serialize>(body: &T, status: u16) -> worker::Result<Response> {
    Ok(Response::from_json(body)?.with_status(status))
}
