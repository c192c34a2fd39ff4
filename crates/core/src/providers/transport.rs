//! The HTTP seam: request/response values and the transport and sleep traits the platform
//! implements (`worker::Fetch` and a JS timer in the Worker, a real client in native tests).
//!
//! Owns no policy (retries, status handling live in `retry` and `error`); must never do I/O itself.

use serde::Serialize;
use std::ops::ControlFlow;

/// HTTP method of a provider request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpMethod {
    /// `GET`.
    Get,
    /// `POST`.
    Post,
}

impl HttpMethod {
    /// The method as it appears on the wire.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Post => "POST",
        }
    }
}

/// A request a provider wants sent.
#[derive(Clone, PartialEq, Eq)]
pub struct HttpRequest {
    /// Method.
    pub method: HttpMethod,
    /// Absolute URL.
    pub url: String,
    /// Header names and values, in order.
    pub headers: Vec<(String, String)>,
    /// Body bytes (empty for none).
    pub body: Vec<u8>,
}

impl std::fmt::Debug for HttpRequest {
    // Redacts Authorization so requests can be logged without leaking keys.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let headers: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(n, v)| {
                let shown = if n.eq_ignore_ascii_case("authorization") {
                    "<redacted>"
                } else {
                    v
                };
                (n.as_str(), shown)
            })
            .collect();
        f.debug_struct("HttpRequest")
            .field("method", &self.method)
            .field("url", &self.url)
            .field("headers", &headers)
            .field("body_len", &self.body.len())
            .finish()
    }
}

impl HttpRequest {
    /// A `POST` with a JSON body and `Content-Type: application/json`.
    ///
    /// # Errors
    /// When `body` cannot be serialised to JSON.
    pub fn post_json(
        url: impl Into<String>,
        body: &impl Serialize,
    ) -> Result<Self, serde_json::Error> {
        Ok(Self {
            method: HttpMethod::Post,
            url: url.into(),
            headers: vec![("Content-Type".to_owned(), "application/json".to_owned())],
            body: serde_json::to_vec(body)?,
        })
    }

    /// Adds a header.
    #[must_use]
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// First value of a header, compared case-insensitively.
    #[must_use]
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }
}

/// A response as received, body fully read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Header names and values, in order.
    pub headers: Vec<(String, String)>,
    /// Body bytes.
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// First value of a header, compared case-insensitively.
    #[must_use]
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    /// Whether the status is 2xx.
    #[must_use]
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

fn find_header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Time limit of one provider request: for a whole answer, or for a streamed answer's head and
/// for each gap between its chunks. A healthy embedding batch of 64 chunks or a tag completion
/// takes a few seconds; beyond 30 s the provider is stuck and a retry is the better bet, while
/// the ingestion step (alarm) and the chat request keep their own larger budgets.
pub const DEFAULT_PROVIDER_TIMEOUT_MS: u64 = 30_000;

/// Why a request got no HTTP response; every kind is worth retrying except `InvalidRequest`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    /// No response (or no complete body) within the transport's time limit.
    #[error("timed out: {0}")]
    Timeout(String),
    /// Could not connect, or the connection broke.
    #[error("connection failed: {0}")]
    Connection(String),
    /// The request could not even be built or sent (bad URL, bad header); retrying won't help.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
}

impl TransportError {
    /// Whether the same request may succeed later.
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        !matches!(self, Self::InvalidRequest(_))
    }
}

/// Receives a streamed response: the head once, then body chunks split anywhere.
pub trait ResponseSink {
    /// Called once with status and headers before any chunk.
    fn on_head(&mut self, status: u16, headers: &[(String, String)]);
    /// Called with each body chunk; `Break` asks the transport to stop reading.
    fn on_chunk(&mut self, chunk: &[u8]) -> ControlFlow<()>;
}

/// Sends HTTP requests; implemented by the platform. Futures need not be `Send` (wasm).
#[allow(async_fn_in_trait)]
pub trait HttpTransport {
    /// Sends `req` and reads the whole response.
    async fn send(&self, req: HttpRequest) -> Result<HttpResponse, TransportError>;

    /// Sends `req` and feeds the body to `sink` as it arrives; by default reads it whole first.
    async fn send_streaming(
        &self,
        req: HttpRequest,
        sink: &mut dyn ResponseSink,
    ) -> Result<(), TransportError> {
        let response = self.send(req).await?;
        sink.on_head(response.status, &response.headers);
        let _ = sink.on_chunk(&response.body);
        Ok(())
    }
}

impl<T: HttpTransport + ?Sized> HttpTransport for &T {
    async fn send(&self, req: HttpRequest) -> Result<HttpResponse, TransportError> {
        (**self).send(req).await
    }

    async fn send_streaming(
        &self,
        req: HttpRequest,
        sink: &mut dyn ResponseSink,
    ) -> Result<(), TransportError> {
        (**self).send_streaming(req, sink).await
    }
}

/// Waits between retries; the Worker uses a JS timer, tests record the delays.
#[allow(async_fn_in_trait)]
pub trait Sleeper {
    /// Resolves after `ms` milliseconds.
    async fn sleep(&self, ms: u64);
}

impl<T: Sleeper + ?Sized> Sleeper for &T {
    async fn sleep(&self, ms: u64) {
        (**self).sleep(ms).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_case_insensitive_and_debug_redacts_keys() {
        let req = HttpRequest::post_json("http://x/v1", &serde_json::json!({"a": 1}))
            .unwrap()
            .with_header("Authorization", "Bearer sk-secret");
        assert_eq!(req.header("content-type"), Some("application/json"));
        assert_eq!(req.body, br#"{"a":1}"#);
        let shown = format!("{req:?}");
        assert!(!shown.contains("sk-secret") && shown.contains("<redacted>"));
    }

    #[test]
    fn only_invalid_requests_are_permanent() {
        assert!(TransportError::Timeout("t".into()).is_retryable());
        assert!(TransportError::Connection("c".into()).is_retryable());
        assert!(!TransportError::InvalidRequest("u".into()).is_retryable());
    }
}
