//! The admin API's request decisions: who may call it, how large a page is,
//! and what a document upload must satisfy before anything is stored (which
//! route a path names is `crate::api::routes`'s).
//!
//! Never performs the operation; the Worker does, after these checks pass.

pub mod companies;

use std::fmt;

/// Bearer token of the admin API, as its clients (the migration and sync
/// CLIs) hold it. `Debug` never prints it.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminToken(String);

impl AdminToken {
    /// Wraps a token read from a file or the environment.
    pub fn new(token: impl Into<String>) -> Self {
        Self(token.into())
    }

    /// The `Authorization` header's value: `Bearer <token>`.
    #[must_use]
    pub fn authorization(&self) -> String {
        format!("Bearer {}", self.0)
    }
}

impl fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AdminToken(<redacted>)")
    }
}

/// Largest document the admin API accepts (10 MiB). A Worker request body may
/// be up to 100 MB, but markdown beyond this is a mistake, not a document.
pub const MAX_DOCUMENT_BYTES: usize = 10 * 1024 * 1024;

/// Default and largest page of `GET /admin/documents`.
pub const DEFAULT_PAGE: u32 = 100;
/// Largest page of `GET /admin/documents`.
pub const MAX_PAGE: u32 = 1_000;

/// Default number of runs `GET /admin/reconcile/runs` returns.
pub const DEFAULT_RUNS: u32 = 20;
/// Largest number of runs `GET /admin/reconcile/runs` returns.
pub const MAX_RUNS: u32 = 100;

/// Number of runs from the `limit` query parameter: `DEFAULT_RUNS` when
/// absent, refused outside [1, MAX_RUNS].
pub fn runs_limit(limit: Option<&str>) -> Result<u32, PageSizeError> {
    limit_param(limit, DEFAULT_RUNS, MAX_RUNS)
}

/// Compares two secrets in time that depends only on their lengths.
#[must_use]
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Shortest admin token accepted: a shorter one (a typo, a placeholder)
/// authorises nobody, so the admin API cannot run behind a guessable token.
pub const MIN_ADMIN_TOKEN_CHARS: usize = 32;

/// Whether the configured admin token is usable (set and long enough).
#[must_use]
pub fn admin_token_usable(configured: Option<&str>) -> bool {
    configured.is_some_and(|t| t.chars().count() >= MIN_ADMIN_TOKEN_CHARS)
}

/// Whether an `Authorization` header is exactly `Bearer <configured token>`:
/// one space, the scheme as written, nothing around the token (the runtime
/// already strips the header's outer whitespace). An unset or too short
/// configured token authorises nobody.
#[must_use]
pub fn is_authorized(authorization: Option<&str>, configured: Option<&str>) -> bool {
    let Some(expected) = configured.filter(|t| admin_token_usable(Some(t))) else {
        return false;
    };
    let Some(given) = authorization.and_then(|h| h.strip_prefix("Bearer ")) else {
        return false;
    };
    constant_time_eq(given.as_bytes(), expected.as_bytes())
}

/// A `limit` query parameter that is not a whole number in [1, MAX_PAGE].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`limit` must be a whole number from 1 to {max}, got {given:?}")]
pub struct PageSizeError {
    /// What the client sent.
    pub given: String,
    /// The largest page served.
    pub max: u32,
}

impl PageSizeError {
    /// Stable error code for the `{ "error": { "code" } }` body.
    pub const CODE: &'static str = "bad_limit";
}

/// Page size from the `limit` query parameter: `DEFAULT_PAGE` when absent;
/// anything but a whole number in [1, MAX_PAGE] is refused, not clamped, so a
/// client never receives a shorter page than it asked for without knowing.
pub fn page_size(limit: Option<&str>) -> Result<u32, PageSizeError> {
    limit_param(limit, DEFAULT_PAGE, MAX_PAGE)
}

/// A `limit` query parameter: `default` when absent, refused outside [1, `max`].
pub fn limit_param(limit: Option<&str>, default: u32, max: u32) -> Result<u32, PageSizeError> {
    let Some(given) = limit else {
        return Ok(default);
    };
    given
        .parse::<u32>()
        .ok()
        .filter(|l| (1..=max).contains(l))
        .ok_or_else(|| PageSizeError {
            given: given.chars().take(64).collect(),
            max,
        })
}

/// Fields of a document's status that its processor knows better than D1:
/// the run in progress (D1 says what is served).
const PROCESSOR_STATUS_FIELDS: [&str; 9] = [
    "status",
    "step",
    "progress",
    "attempts",
    "last_error",
    "generation",
    "queued_at_ms",
    "started_at_ms",
    "finished_at_ms",
];

/// Overlays the processor's view of the run onto a document row (both JSON
/// objects) for `GET /admin/documents/{key}`.
pub fn merge_processor_status(row: &mut serde_json::Value, processor: &serde_json::Value) {
    if let (Some(map), Some(live)) = (row.as_object_mut(), processor.as_object()) {
        for field in PROCESSOR_STATUS_FIELDS {
            if let Some(value) = live.get(field) {
                map.insert(field.to_owned(), value.clone());
            }
        }
    }
}

/// A `x-content-sha256` claim the body does not hash to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("body hashes to {actual}, the request said {claimed}")]
pub struct ShaMismatch {
    /// The body's SHA-256 (hex).
    pub actual: String,
    /// What the request claimed, as sent.
    pub claimed: String,
}

impl ShaMismatch {
    /// Stable error code for the `{ "error": { "code" } }` body.
    pub const CODE: &'static str = "sha256_mismatch";
}

/// Whether an upload's claimed hash (the `x-content-sha256` header, if sent)
/// is its body's `actual` one: case and surrounding blanks do not matter.
pub fn check_sha_claim(claimed: Option<&str>, actual: &str) -> Result<(), ShaMismatch> {
    match claimed {
        Some(claimed) if !claimed.trim().eq_ignore_ascii_case(actual) => Err(ShaMismatch {
            actual: actual.to_owned(),
            claimed: claimed.to_owned(),
        }),
        _ => Ok(()),
    }
}

/// A `status` filter that names no status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("status must be one of {0}")]
pub struct BadStatus(String);

impl BadStatus {
    /// Stable error code for the `{ "error": { "code" } }` body.
    pub const CODE: &'static str = "bad_status";
}

/// The `status` filter of `GET /admin/documents`: absent, or one of `known`
/// (the public statuses, which ingestion owns).
pub fn status_filter<'a>(
    given: Option<&'a str>,
    known: &[&str],
) -> Result<Option<&'a str>, BadStatus> {
    match given {
        Some(status) if !known.contains(&status) => Err(BadStatus(known.join(", "))),
        other => Ok(other),
    }
}

/// `GET /admin/documents/{key}`: the D1 row overlaid with its processor's
/// view of the run; the processor's view alone while no row exists yet (a
/// first run); `None` when neither knows the document.
#[must_use]
pub fn document_status(
    row: Option<serde_json::Value>,
    processor: serde_json::Value,
) -> Option<serde_json::Value> {
    match row {
        Some(mut row) => {
            merge_processor_status(&mut row, &processor);
            Some(row)
        }
        None => processor.get("status").is_some().then_some(processor),
    }
}

#[cfg(test)]
mod tests;
