//! The admin API's request decisions: which route a path names (documents,
//! reconciliation, operations: metrics, alerts, dead letters), who may call
//! it, and what a document upload must satisfy before anything is stored.
//!
//! Never performs the operation; the Worker does, after these checks pass.

pub mod companies;

use crate::document::keys::DocumentKey;
use thiserror::Error;

/// Largest document the admin API accepts (10 MiB). A Worker request body may
/// be up to 100 MB, but markdown beyond this is a mistake, not a document.
pub const MAX_DOCUMENT_BYTES: usize = 10 * 1024 * 1024;

/// Default and largest page of `GET /admin/documents`.
pub const DEFAULT_PAGE: u32 = 100;
/// Largest page of `GET /admin/documents`.
pub const MAX_PAGE: u32 = 1_000;

/// A route under `/admin/documents`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DocumentRoute {
    /// `GET /admin/documents`: the paged list.
    List,
    /// `PUT /admin/documents/{key}`: store in R2 and enqueue.
    Put(DocumentKey),
    /// `DELETE /admin/documents/{key}`: remove from R2 and enqueue the delete.
    Delete(DocumentKey),
    /// `GET /admin/documents/{key}`: status.
    Get(DocumentKey),
    /// `POST /admin/documents/{key}/process`: manual (re)processing.
    Process(DocumentKey),
    /// `GET /admin/documents/{key}/runs`: the document's run history. A key
    /// that itself ends in `/runs` is reached with its last slash encoded
    /// (`…%2Fruns`).
    Runs(DocumentKey),
}

/// A route that operates the service rather than its documents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OperationsRoute {
    /// `GET /admin/metrics?window=`: the metrics report.
    Metrics,
    /// `GET /admin/metrics/versions?window=`: public requests per Worker version.
    MetricsByVersion,
    /// `GET /admin/alerts`: active and recent alerts.
    Alerts,
    /// `GET /admin/dead-letters?cursor=&limit=`: dead letters, newest first.
    DeadLetters,
    /// `POST /admin/dead-letters/{id}/replay`: re-enqueue a dead letter's document.
    Replay(u64),
}

/// Maps a method and path to an operations route; `None` if the path is not one.
#[must_use]
pub fn operations_route(
    method: &str,
    path: &str,
) -> Option<Result<OperationsRoute, AdminRequestError>> {
    let trimmed = path.strip_suffix('/').unwrap_or(path);
    let (route, allowed) = match trimmed {
        "/admin/metrics" => (OperationsRoute::Metrics, "GET"),
        "/admin/metrics/versions" => (OperationsRoute::MetricsByVersion, "GET"),
        "/admin/alerts" => (OperationsRoute::Alerts, "GET"),
        "/admin/dead-letters" => (OperationsRoute::DeadLetters, "GET"),
        _ => {
            let id = trimmed
                .strip_prefix("/admin/dead-letters/")?
                .strip_suffix("/replay")?;
            let parsed = id
                .parse::<u64>()
                .ok()
                .filter(|n| *n > 0 && n.to_string() == id)
                .map(OperationsRoute::Replay)
                .ok_or_else(|| AdminRequestError::BadId(id.chars().take(64).collect()));
            return Some(match parsed {
                Ok(route) if method == "POST" => Ok(route),
                Ok(_) => Err(AdminRequestError::NoRoute {
                    method: method.to_owned(),
                    path: path.to_owned(),
                }),
                Err(e) => Err(e),
            });
        }
    };
    Some(if method == allowed {
        Ok(route)
    } else {
        Err(AdminRequestError::NoRoute {
            method: method.to_owned(),
            path: path.to_owned(),
        })
    })
}

/// A route under `/admin/reconcile`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReconcileRoute {
    /// `POST /admin/reconcile`: start a run now.
    Start,
    /// `GET /admin/reconcile/runs`: the latest run summaries.
    Runs,
}

/// A route the Supabase migration uses (`crate::admin::companies`, object reads).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MigrationRoute {
    /// `GET /admin/companies`: companies with their fields and legacy ids.
    List,
    /// `POST /admin/companies`: upsert companies and their legacy ids.
    Import,
    /// `POST /admin/legacy-ids/documents`: map source ids to stored documents.
    MapDocuments,
    /// `GET /admin/objects/{key}`: the stored object's bytes (rollback export).
    Object(DocumentKey),
}

/// Maps a method and path to a migration route; `None` if the path is not one.
#[must_use]
pub fn migration_route(
    method: &str,
    path: &str,
) -> Option<Result<MigrationRoute, AdminRequestError>> {
    if let Some(raw) = path.strip_prefix("/admin/objects/") {
        if method != "GET" {
            return Some(Err(AdminRequestError::NoRoute {
                method: method.to_owned(),
                path: path.to_owned(),
            }));
        }
        return Some(
            percent_decode(raw)
                .ok_or(AdminRequestError::BadEncoding)
                .and_then(|k| {
                    DocumentKey::parse(&k).map_err(|e| AdminRequestError::BadKey(e.to_string()))
                })
                .map(MigrationRoute::Object),
        );
    }
    let route = match (path.strip_suffix('/').unwrap_or(path), method) {
        ("/admin/companies", "GET") => MigrationRoute::List,
        ("/admin/companies", "POST") => MigrationRoute::Import,
        ("/admin/legacy-ids/documents", "POST") => MigrationRoute::MapDocuments,
        ("/admin/companies" | "/admin/legacy-ids/documents", _) => {
            return Some(Err(AdminRequestError::NoRoute {
                method: method.to_owned(),
                path: path.to_owned(),
            }))
        }
        _ => return None,
    };
    Some(Ok(route))
}

/// Default number of runs `GET /admin/reconcile/runs` returns.
pub const DEFAULT_RUNS: u32 = 20;
/// Largest number of runs `GET /admin/reconcile/runs` returns.
pub const MAX_RUNS: u32 = 100;

/// Why an admin request was refused before doing anything.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AdminRequestError {
    /// The path is not an admin document route.
    #[error("no admin route for {method} {path}")]
    NoRoute {
        /// HTTP method.
        method: String,
        /// Request path.
        path: String,
    },
    /// The key in the path is not a valid document key.
    #[error("invalid document key: {0}")]
    BadKey(String),
    /// The path is not valid percent-encoding of UTF-8.
    #[error("the document key is not valid percent-encoded UTF-8")]
    BadEncoding,
    /// A dead letter id that is not a positive whole number.
    #[error("dead letter id must be a positive whole number, got {0:?}")]
    BadId(String),
}

const PREFIX: &str = "/admin/documents";
const RECONCILE: &str = "/admin/reconcile";
const RECONCILE_RUNS: &str = "/admin/reconcile/runs";

/// Maps a method and path to a reconciliation route; `None` if the path is
/// not one of them.
#[must_use]
pub fn reconcile_route(
    method: &str,
    path: &str,
) -> Option<Result<ReconcileRoute, AdminRequestError>> {
    let path_trimmed = path.strip_suffix('/').unwrap_or(path);
    let route = match path_trimmed {
        RECONCILE => ReconcileRoute::Start,
        RECONCILE_RUNS => ReconcileRoute::Runs,
        _ => return None,
    };
    let allowed = match route {
        ReconcileRoute::Start => "POST",
        ReconcileRoute::Runs => "GET",
    };
    Some(if method == allowed {
        Ok(route)
    } else {
        Err(AdminRequestError::NoRoute {
            method: method.to_owned(),
            path: path.to_owned(),
        })
    })
}

/// Number of runs from the `limit` query parameter: `DEFAULT_RUNS` when
/// absent, refused outside [1, MAX_RUNS].
pub fn runs_limit(limit: Option<&str>) -> Result<u32, PageSizeError> {
    limit_param(limit, DEFAULT_RUNS, MAX_RUNS)
}

/// Decodes `%XX` escapes; `None` if an escape is malformed or the result is not UTF-8.
#[must_use]
pub fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Maps a method and path to a document route.
pub fn document_route(method: &str, path: &str) -> Result<DocumentRoute, AdminRequestError> {
    let no_route = || AdminRequestError::NoRoute {
        method: method.to_owned(),
        path: path.to_owned(),
    };
    let rest = path.strip_prefix(PREFIX).ok_or_else(no_route)?;
    if rest.is_empty() || rest == "/" {
        return match method {
            "GET" => Ok(DocumentRoute::List),
            _ => Err(no_route()),
        };
    }
    let raw = rest.strip_prefix('/').ok_or_else(no_route)?;
    // Suffixes are matched on the raw path: `%2Fruns` stays part of a key.
    let (raw, action) = match (
        method,
        raw.strip_suffix("/process"),
        raw.strip_suffix("/runs"),
    ) {
        ("POST", Some(key), _) => (key, "process"),
        ("GET", _, Some(key)) if !key.is_empty() => (key, "runs"),
        _ => (raw, ""),
    };
    let decoded = percent_decode(raw).ok_or(AdminRequestError::BadEncoding)?;
    let key = DocumentKey::parse(&decoded).map_err(|e| AdminRequestError::BadKey(e.to_string()))?;
    match (method, action) {
        ("POST", "process") => Ok(DocumentRoute::Process(key)),
        ("GET", "runs") => Ok(DocumentRoute::Runs(key)),
        ("PUT", "") => Ok(DocumentRoute::Put(key)),
        ("DELETE", "") => Ok(DocumentRoute::Delete(key)),
        ("GET", "") => Ok(DocumentRoute::Get(key)),
        _ => Err(no_route()),
    }
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

fn limit_param(limit: Option<&str>, default: u32, max: u32) -> Result<u32, PageSizeError> {
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

#[cfg(test)]
mod tests;
