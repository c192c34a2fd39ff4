//! `Retry-After`: what a provider said about when to ask again, parsed once.
//! The error keeps it ([`super::error::ProviderError::Status`]) and the retry
//! policy honours it ([`super::retry::RetryPolicy`]); it lives apart from both
//! so neither has to import the other to name it.

use std::time::UNIX_EPOCH;

/// A parsed `Retry-After` header (RFC 9110 §10.2.3): delay seconds or an HTTP date.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryAfter {
    /// Wait this many seconds.
    Seconds(u64),
    /// Wait until this moment, in seconds since the Unix epoch.
    At {
        /// Seconds since the Unix epoch.
        unix_secs: u64,
    },
}

impl RetryAfter {
    /// Parses a header value: `120` or `Wed, 21 Oct 2015 07:28:00 GMT`; `None` when neither.
    #[must_use]
    pub fn parse(value: &str) -> Option<Self> {
        let value = value.trim();
        if let Ok(seconds) = value.parse::<u64>() {
            return Some(Self::Seconds(seconds));
        }
        let at = httpdate::parse_http_date(value).ok()?;
        let unix_secs = at.duration_since(UNIX_EPOCH).ok()?.as_secs();
        Some(Self::At { unix_secs })
    }

    /// Milliseconds to wait from `now_unix_ms`; a date in the past means no wait.
    #[must_use]
    pub fn delay_ms(self, now_unix_ms: u64) -> u64 {
        match self {
            Self::Seconds(s) => s.saturating_mul(1000),
            Self::At { unix_secs } => unix_secs.saturating_mul(1000).saturating_sub(now_unix_ms),
        }
    }
}
