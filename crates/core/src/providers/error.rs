//! `ProviderError`: every way an embedding or chat call can fail, and whether retrying helps.
//!
//! Owns the status-code classification; must never decide how long to wait (that is `retry`).

use super::retry_after::RetryAfter;
use super::transport::{HttpResponse, TransportError};

/// Characters of a response body kept in an error, enough to read the provider's message.
pub const BODY_EXCERPT_CHARS: usize = 300;

/// A failed provider call, with what a person needs to act on it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProviderError {
    /// The provider answered with a non-2xx status.
    #[error("{provider} returned HTTP {status}: {body_excerpt}")]
    Status {
        /// Provider name.
        provider: &'static str,
        /// HTTP status code.
        status: u16,
        /// Start of the response body.
        body_excerpt: String,
        /// The `Retry-After` header, when sent.
        retry_after: Option<RetryAfter>,
    },
    /// No response arrived (timeout, connection failure).
    #[error("{provider} request failed: {source}")]
    Transport {
        /// Provider name.
        provider: &'static str,
        /// What the transport reported.
        #[source]
        source: TransportError,
    },
    /// The response was not the JSON (or SSE) shape the provider documents.
    #[error("{provider} sent a malformed response ({reason}): {body_excerpt}")]
    MalformedResponse {
        /// Provider name.
        provider: &'static str,
        /// What was wrong.
        reason: String,
        /// Start of the response body.
        body_excerpt: String,
    },
    /// The provider returned a different number of embeddings than inputs sent.
    #[error("{provider} returned {got} embeddings for {expected} inputs")]
    CountMismatch {
        /// Provider name.
        provider: &'static str,
        /// Inputs sent.
        expected: usize,
        /// Embeddings received.
        got: usize,
    },
    /// An embedding had the wrong number of dimensions for the index.
    #[error(
        "{provider} returned a {got}-dimensional embedding for input {index}, expected {expected}"
    )]
    DimensionMismatch {
        /// Provider name.
        provider: &'static str,
        /// Input position in the request.
        index: usize,
        /// Dimensions the index expects.
        expected: usize,
        /// Dimensions received.
        got: usize,
    },
    /// One input cannot be sent within the provider's limits (split the chunk instead).
    #[error("{provider}: input {index} is about {tokens} tokens, over the limit of {limit}")]
    InputTooLarge {
        /// Provider name.
        provider: &'static str,
        /// Input position.
        index: usize,
        /// Estimated tokens.
        tokens: usize,
        /// The limit it exceeds.
        limit: usize,
    },
    /// The request itself is invalid (empty input, no messages).
    #[error("invalid request to {provider}: {reason}")]
    InvalidRequest {
        /// Provider name.
        provider: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A stream broke after answer text was already delivered; retrying here would repeat it.
    #[error("{provider} stream interrupted after {delivered_chars} characters: {reason}")]
    StreamInterrupted {
        /// Provider name.
        provider: &'static str,
        /// Characters already passed on.
        delivered_chars: usize,
        /// What went wrong.
        reason: String,
    },
    /// The provider cannot do what was asked.
    #[error("{provider} cannot {what}")]
    Unsupported {
        /// Provider name.
        provider: &'static str,
        /// The operation.
        what: &'static str,
    },
}

impl ProviderError {
    /// Whether the same call may succeed later: 408, 429, 5xx and transport failures.
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Status { status, .. } => is_retryable_status(*status),
            Self::Transport { source, .. } => source.is_retryable(),
            Self::MalformedResponse { .. }
            | Self::CountMismatch { .. }
            | Self::DimensionMismatch { .. }
            | Self::InputTooLarge { .. }
            | Self::InvalidRequest { .. }
            | Self::StreamInterrupted { .. }
            | Self::Unsupported { .. } => false,
        }
    }

    /// Whether a later attempt, seconds apart (an ingestion step's retry), may succeed: every
    /// [`is_retryable`](Self::is_retryable) error, plus a garbled answer (`MalformedResponse`,
    /// `CountMismatch`). A gateway or a cut connection produces those now and then, but an
    /// immediate repeat inside the same call mostly reproduces them, so only the slower retry
    /// gets them. Configuration faults (dimensions, limits, bad requests) stay permanent.
    #[must_use]
    pub fn may_succeed_later(&self) -> bool {
        self.is_retryable()
            || matches!(
                self,
                Self::MalformedResponse { .. } | Self::CountMismatch { .. }
            )
    }

    /// Whether the provider is overloaded or out of reach rather than refusing this request:
    /// 429, 503, 504 (and 408), a timeout or a failed connection. Such a failure says nothing
    /// about the input, so ingestion waits for the provider instead of counting it against
    /// the document.
    #[must_use]
    pub fn is_overload(&self) -> bool {
        match self {
            Self::Status { status, .. } => matches!(status, 408 | 429 | 503 | 504),
            Self::Transport { source, .. } => source.is_retryable(),
            _ => false,
        }
    }

    /// The provider's `Retry-After`, when it sent one.
    #[must_use]
    pub fn retry_after(&self) -> Option<RetryAfter> {
        match self {
            Self::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The HTTP status, for errors that have one.
    #[must_use]
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// A `Status` error from a non-2xx response (reads `Retry-After`).
    #[must_use]
    pub fn from_status(provider: &'static str, response: &HttpResponse) -> Self {
        Self::Status {
            provider,
            status: response.status,
            body_excerpt: body_excerpt(&response.body),
            retry_after: response.header("retry-after").and_then(RetryAfter::parse),
        }
    }

    /// A `MalformedResponse` error with an excerpt of the offending body.
    #[must_use]
    pub fn malformed(provider: &'static str, reason: impl Into<String>, body: &[u8]) -> Self {
        Self::MalformedResponse {
            provider,
            reason: reason.into(),
            body_excerpt: body_excerpt(body),
        }
    }
}

/// Whether an HTTP status is worth retrying: 408, 429 and 5xx.
#[must_use]
pub fn is_retryable_status(status: u16) -> bool {
    status == 408 || status == 429 || (500..600).contains(&status)
}

/// The first [`BODY_EXCERPT_CHARS`] characters of a body, lossily decoded.
#[must_use]
pub fn body_excerpt(body: &[u8]) -> String {
    String::from_utf8_lossy(body)
        .chars()
        .take(BODY_EXCERPT_CHARS)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(status: u16, headers: &[(&str, &str)], body: &str) -> HttpResponse {
        HttpResponse {
            status,
            headers: headers
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                .collect(),
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn status_classification_table() {
        let cases = [
            (400, false),
            (401, false),
            (403, false),
            (404, false),
            (408, true),
            (422, false),
            (429, true),
            (500, true),
            (502, true),
            (503, true),
            (599, true),
        ];
        for (status, retryable) in cases {
            let err = ProviderError::from_status("openai", &response(status, &[], "x"));
            assert_eq!(err.is_retryable(), retryable, "status {status}");
        }
    }

    #[test]
    fn status_error_keeps_excerpt_and_retry_after() {
        let body = "e".repeat(1000);
        let err =
            ProviderError::from_status("openai", &response(429, &[("Retry-After", "7")], &body));
        assert_eq!(err.retry_after(), Some(RetryAfter::Seconds(7)));
        assert_eq!(err.status(), Some(429));
        let ProviderError::Status { body_excerpt, .. } = &err else {
            panic!("wrong variant")
        };
        assert_eq!(body_excerpt.len(), BODY_EXCERPT_CHARS);
        assert!(err.to_string().contains("HTTP 429"));
    }

    #[test]
    fn malformed_and_mismatch_errors_are_not_retried_in_the_call_but_later() {
        let malformed = ProviderError::malformed("p", "bad json", b"{");
        let count = ProviderError::CountMismatch {
            provider: "p",
            expected: 2,
            got: 1,
        };
        for garbled in [&malformed, &count] {
            assert!(!garbled.is_retryable());
            assert!(garbled.may_succeed_later());
        }
        let dims = ProviderError::DimensionMismatch {
            provider: "p",
            index: 0,
            expected: 3,
            got: 2,
        };
        assert!(!dims.is_retryable());
        assert!(!dims.may_succeed_later());
        let bad_key = ProviderError::from_status("p", &response(401, &[], "no"));
        assert!(!bad_key.may_succeed_later());
        let overloaded = ProviderError::from_status("p", &response(503, &[], "busy"));
        assert!(overloaded.may_succeed_later());
        let transport = ProviderError::Transport {
            provider: "p",
            source: TransportError::Timeout("slow".into()),
        };
        assert!(transport.is_retryable());
    }
}
