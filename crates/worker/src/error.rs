//! The one place where failures become HTTP responses.
//!
//! Every handler returns `Result<Response, ApiError>`; the core errors it meets
//! convert here (`From`, one impl each) and the router turns the error into
//! `{ "error": { "code", "message" } }` with the right status.

use portfolio_core::admin::{BadStatus, ShaMismatch};
use portfolio_core::api::paging::BadCursor;
use portfolio_core::api::ErrorBody;
use portfolio_core::index::VectorIndexError;
use portfolio_core::operations::metrics::{ComparisonWindowError, MetricsReadError, WindowError};
use portfolio_core::operations::rollout::RolloutSettingError;
use portfolio_core::query::{QueryError, RetrievalError};
use portfolio_core::shared::storage::StoreError;
use worker::Response;

/// A failure of an API request, with the status it maps to.
#[derive(Debug)]
pub enum ApiError {
    /// 400: the request is malformed (code, message).
    BadRequest(&'static str, String),
    /// 401: missing or wrong admin token.
    Unauthorized,
    /// 401: `PUBLIC_API_KEYS` is set and the request has none of its keys.
    PublicKey(portfolio_core::api::access::AccessDenied),
    /// 404: no such route or resource.
    NotFound(String),
    /// 413: the body is too large.
    PayloadTooLarge(String),
    /// 422: the body is well-formed but cannot be a document.
    Unprocessable(&'static str, String),
    /// 405: the route exists but not with this method.
    MethodNotAllowed(String),
    /// 429: the client sent too many requests.
    TooManyRequests(String),
    /// 502: a provider (embedding or chat) failed.
    Upstream(String),
    /// 409: the request conflicts with work in progress (code, message).
    Conflict(&'static str, String),
    /// 503: the vars are invalid (the message names them; vars are never secrets).
    Misconfigured(String),
    /// 500: a platform call failed (D1, R2, queue, Durable Object).
    Platform(worker::Error),
    /// A vector index call failed: 400 for the caller's input, 503 when retryable, else 502/500.
    VectorIndex(VectorIndexError),
    /// The metrics store could not be read: 503 while its setup is missing
    /// or refused, 502 when it answered wrongly, 500 for D1.
    MetricsStore(MetricsReadError),
}

// Every core error the handlers meet maps here, once: each variant says
// which status its failure is.

/// 500 `internal`: D1, R2 or the queue failed (the detail goes to the log).
impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        Self::Platform(worker::Error::RustError(err.to_string()))
    }
}

/// 400 with the query's own code.
impl From<QueryError> for ApiError {
    fn from(e: QueryError) -> Self {
        Self::BadRequest(e.code(), e.to_string())
    }
}

/// 500 `internal`: every source failed, or D1 could not be read.
impl From<RetrievalError> for ApiError {
    fn from(e: RetrievalError) -> Self {
        Self::Platform(worker::Error::RustError(e.to_string()))
    }
}

/// The metrics reader's own status and code (`metrics_store_*`).
impl From<MetricsReadError> for ApiError {
    fn from(e: MetricsReadError) -> Self {
        match e {
            MetricsReadError::Store(store) => store.into(),
            other => Self::MetricsStore(other),
        }
    }
}

/// 400 `bad_window`.
impl From<WindowError> for ApiError {
    fn from(e: WindowError) -> Self {
        Self::BadRequest(WindowError::CODE, e.to_string())
    }
}

/// 400 `bad_window`.
impl From<ComparisonWindowError> for ApiError {
    fn from(e: ComparisonWindowError) -> Self {
        Self::BadRequest(ComparisonWindowError::CODE, e.to_string())
    }
}

/// 400 `bad_rollout`.
impl From<RolloutSettingError> for ApiError {
    fn from(e: RolloutSettingError) -> Self {
        Self::BadRequest("bad_rollout", e.to_string())
    }
}

/// 400 `sha256_mismatch`.
impl From<ShaMismatch> for ApiError {
    fn from(e: ShaMismatch) -> Self {
        Self::BadRequest(ShaMismatch::CODE, e.to_string())
    }
}

/// 400 `bad_status`.
impl From<BadStatus> for ApiError {
    fn from(e: BadStatus) -> Self {
        Self::BadRequest(BadStatus::CODE, e.to_string())
    }
}

/// 400 `bad_cursor`.
impl From<portfolio_core::api::feedback::FeedbackError> for ApiError {
    fn from(e: portfolio_core::api::feedback::FeedbackError) -> Self {
        Self::BadRequest(
            portfolio_core::api::feedback::FeedbackError::CODE,
            e.to_string(),
        )
    }
}

impl From<BadCursor> for ApiError {
    fn from(e: BadCursor) -> Self {
        Self::BadRequest(BadCursor::CODE, e.to_string())
    }
}

/// 400 `bad_json`: a JSON body that does not parse into its request type.
pub fn bad_json(e: &serde_json::Error) -> ApiError {
    ApiError::BadRequest("bad_json", e.to_string())
}

impl From<VectorIndexError> for ApiError {
    fn from(err: VectorIndexError) -> Self {
        Self::VectorIndex(err)
    }
}

impl From<portfolio_core::admin::PageSizeError> for ApiError {
    fn from(err: portfolio_core::admin::PageSizeError) -> Self {
        Self::BadRequest(portfolio_core::admin::PageSizeError::CODE, err.to_string())
    }
}

impl From<worker::Error> for ApiError {
    fn from(err: worker::Error) -> Self {
        Self::Platform(err)
    }
}

impl ApiError {
    /// The stable code clients see.
    pub fn code(&self) -> &'static str {
        self.status_code_message().1
    }

    fn status_code_message(&self) -> (u16, &'static str, String) {
        match self {
            Self::BadRequest(code, m) => (400, code, m.clone()),
            Self::NotFound(m) => (404, "not_found", m.clone()),
            Self::PayloadTooLarge(m) => (413, "payload_too_large", m.clone()),
            Self::Unprocessable(code, m) => (422, code, m.clone()),
            Self::MethodNotAllowed(m) => (405, "method_not_allowed", m.clone()),
            Self::TooManyRequests(m) => (429, "rate_limited", m.clone()),
            Self::Upstream(m) => (502, "provider_error", m.clone()),
            Self::Conflict(code, m) => (409, code, m.clone()),
            Self::Misconfigured(m) => (503, "configuration_invalid", m.clone()),
            Self::Platform(e) => (500, "internal", format!("platform error: {e}")),
            Self::PublicKey(denied) => (
                401,
                match denied {
                    portfolio_core::api::access::AccessDenied::Missing => "api_key_required",
                    portfolio_core::api::access::AccessDenied::Wrong => "invalid_api_key",
                },
                denied.to_string(),
            ),
            Self::Unauthorized => (
                401,
                "unauthorized",
                "this route needs `Authorization: Bearer <ADMIN_TOKEN>`".into(),
            ),
            Self::MetricsStore(e) => (e.http_status(), e.code(), e.to_string()),
            Self::VectorIndex(e) => {
                let status = if e.is_caller_error() {
                    400
                } else if e.is_retryable() {
                    503
                } else {
                    match e {
                        VectorIndexError::Rejected { .. }
                        | VectorIndexError::MalformedResponse { .. } => 502,
                        _ => 500,
                    }
                };
                (status, e.code(), e.to_string())
            }
        }
    }

    /// The status, code and message a client may see. A server-side
    /// failure's detail (D1's or a provider's message, a URL) goes to the log
    /// with the request id, never to the client, which gets a stable code and
    /// the id to quote. Every error shape (this service's, OpenAI's, MCP's)
    /// renders these.
    pub fn into_public(self, request_id: &str) -> (u16, &'static str, String) {
        let (status, code, message) = self.status_code_message();
        if status < 500 {
            return (status, code, message);
        }
        worker::console_error!(
            "{}",
            serde_json::json!({ "level": "error", "event": "api_error", "request_id": request_id,
                                "status": status, "code": code, "message": message })
        );
        let public = match &self {
            // Written for clients already (names vars, never secrets).
            Self::Misconfigured(m) => m.clone(),
            // Admin routes only; names the var, secret or status to act on,
            // never a secret's value.
            Self::MetricsStore(e) => e.to_string(),
            _ => format!("the request could not be completed; quote request id {request_id}"),
        };
        (status, code, public)
    }

    /// The JSON error response (`{ "error": { "code", "message" } }`).
    pub fn into_response(self, request_id: &str) -> worker::Result<Response> {
        let (status, code, message) = self.into_public(request_id);
        with_retry_after(json_response(&ErrorBody::new(code, message), status)?)
    }
}

/// A 429 says when to try again; any other response is left as it is.
pub fn with_retry_after(response: Response) -> worker::Result<Response> {
    if response.status_code() != 429 {
        return Ok(response);
    }
    let headers = response.headers().clone();
    headers.set(
        "Retry-After",
        &crate::bindings::RATE_LIMIT_PERIOD_SECONDS.to_string(),
    )?;
    Ok(response.with_headers(headers))
}

/// Serialises `body` as a JSON response with `status`.
pub fn json_response<T: serde::Serialize>(body: &T, status: u16) -> worker::Result<Response> {
    Ok(Response::from_json(body)?.with_status(status))
}

/// 400 with the parameter's code (`bad_key`, `bad_id`).
impl From<portfolio_core::api::resolve::RouteError> for ApiError {
    fn from(err: portfolio_core::api::resolve::RouteError) -> Self {
        Self::BadRequest(err.code(), err.to_string())
    }
}
