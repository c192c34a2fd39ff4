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
mod tests {
    use super::*;

    fn key(k: &str) -> DocumentKey {
        DocumentKey::parse(k).unwrap()
    }

    #[test]
    fn routes_are_parsed_from_method_and_path() {
        let cases = [
            ("GET", "/admin/documents", Ok(DocumentRoute::List)),
            ("GET", "/admin/documents/", Ok(DocumentRoute::List)),
            (
                "PUT",
                "/admin/documents/companies/acme/a.md",
                Ok(DocumentRoute::Put(key("companies/acme/a.md"))),
            ),
            (
                "DELETE",
                "/admin/documents/a.md",
                Ok(DocumentRoute::Delete(key("a.md"))),
            ),
            (
                "GET",
                "/admin/documents/a%20b.md",
                Ok(DocumentRoute::Get(key("a b.md"))),
            ),
            (
                "POST",
                "/admin/documents/x/a.md/process",
                Ok(DocumentRoute::Process(key("x/a.md"))),
            ),
            // Only POST strips `/process`: a GET of such a key is a key.
            (
                "GET",
                "/admin/documents/x/process",
                Ok(DocumentRoute::Get(key("x/process"))),
            ),
            (
                "GET",
                "/admin/documents/x/a.md/runs",
                Ok(DocumentRoute::Runs(key("x/a.md"))),
            ),
            // A key ending in `/runs` is read with its slash encoded.
            (
                "GET",
                "/admin/documents/x%2Fruns",
                Ok(DocumentRoute::Get(key("x/runs"))),
            ),
            (
                "PUT",
                "/admin/documents/x/runs",
                Ok(DocumentRoute::Put(key("x/runs"))),
            ),
        ];
        for (method, path, expected) in cases {
            assert_eq!(document_route(method, path), expected, "{method} {path}");
        }
    }

    #[test]
    fn bad_paths_are_refused() {
        assert!(matches!(
            document_route("POST", "/admin/documents"),
            Err(AdminRequestError::NoRoute { .. })
        ));
        assert!(matches!(
            document_route("PATCH", "/admin/documents/a.md"),
            Err(AdminRequestError::NoRoute { .. })
        ));
        assert!(matches!(
            document_route("GET", "/admin/documentsx"),
            Err(AdminRequestError::NoRoute { .. })
        ));
        assert_eq!(
            document_route("GET", "/admin/documents/%zz.md"),
            Err(AdminRequestError::BadEncoding)
        );
        assert_eq!(
            document_route("GET", "/admin/documents/%ff.md"),
            Err(AdminRequestError::BadEncoding)
        );
        assert!(matches!(
            document_route("PUT", "/admin/documents/a/../b.md"),
            Err(AdminRequestError::BadKey(_))
        ));
        assert!(matches!(
            document_route("PUT", "/admin/documents/a%2F..%2Fb.md"),
            Err(AdminRequestError::BadKey(_))
        ));
    }

    #[test]
    fn only_the_exact_bearer_token_is_authorized() {
        let token = "s3cret-s3cret-s3cret-s3cret-s3cret";
        let bearer = format!("Bearer {token}");
        assert!(is_authorized(Some(&bearer), Some(token)));
        assert!(!is_authorized(
            Some(&bearer[..bearer.len() - 1]),
            Some(token)
        ));
        assert!(!is_authorized(Some(token), Some(token)));
        assert!(!is_authorized(None, Some(token)));
        assert!(!is_authorized(Some("Bearer "), Some("")));
        assert!(!is_authorized(Some("Bearer x"), None));
        // Near misses found by the auth matrix (tests/security.spec.ts).
        for near_miss in [
            format!("Bearer  {token}"),
            format!("Bearer {token} "),
            format!("Bearer\t{token}"),
            format!("bearer {token}"),
            format!("BEARER {token}"),
            format!("Bearer {token} {token}"),
        ] {
            assert!(
                !is_authorized(Some(&near_miss), Some(token)),
                "{near_miss:?}"
            );
        }
    }

    #[test]
    fn a_short_configured_token_authorises_nobody() {
        let short = "a".repeat(MIN_ADMIN_TOKEN_CHARS - 1);
        assert!(!admin_token_usable(Some(&short)));
        assert!(!is_authorized(
            Some(&format!("Bearer {short}")),
            Some(&short)
        ));
        let long = "a".repeat(MIN_ADMIN_TOKEN_CHARS);
        assert!(admin_token_usable(Some(&long)));
        assert!(is_authorized(Some(&format!("Bearer {long}")), Some(&long)));
    }

    #[test]
    fn page_sizes_outside_the_range_are_refused() {
        assert_eq!(page_size(None), Ok(DEFAULT_PAGE));
        assert_eq!(page_size(Some("1")), Ok(1));
        assert_eq!(page_size(Some("5")), Ok(5));
        assert_eq!(page_size(Some("1000")), Ok(MAX_PAGE));
        for bad in ["0", "1001", "999999", "abc", "", "-1", "2.5", " 5"] {
            let err = page_size(Some(bad)).unwrap_err();
            assert_eq!(err.given, bad);
            assert!(err.to_string().contains("1 to 1000"), "{err}");
        }
    }

    #[test]
    fn reconcile_routes_are_recognised() {
        assert_eq!(
            reconcile_route("POST", "/admin/reconcile"),
            Some(Ok(ReconcileRoute::Start))
        );
        assert_eq!(
            reconcile_route("GET", "/admin/reconcile/runs/"),
            Some(Ok(ReconcileRoute::Runs))
        );
        assert!(matches!(
            reconcile_route("GET", "/admin/reconcile"),
            Some(Err(AdminRequestError::NoRoute { .. }))
        ));
        assert!(matches!(
            reconcile_route("DELETE", "/admin/reconcile/runs"),
            Some(Err(AdminRequestError::NoRoute { .. }))
        ));
        assert_eq!(reconcile_route("GET", "/admin/documents"), None);
        assert_eq!(reconcile_route("GET", "/admin/reconcilex"), None);
        assert_eq!(runs_limit(None), Ok(DEFAULT_RUNS));
        assert_eq!(runs_limit(Some("1")), Ok(1));
        assert_eq!(runs_limit(Some(&MAX_RUNS.to_string())), Ok(MAX_RUNS));
        assert!(runs_limit(Some("0")).is_err());
        assert!(runs_limit(Some("1000")).is_err());
    }

    #[test]
    fn company_routes_are_recognised() {
        assert_eq!(
            migration_route("GET", "/admin/companies"),
            Some(Ok(MigrationRoute::List))
        );
        assert_eq!(
            migration_route("POST", "/admin/companies/"),
            Some(Ok(MigrationRoute::Import))
        );
        assert_eq!(
            migration_route("POST", "/admin/legacy-ids/documents"),
            Some(Ok(MigrationRoute::MapDocuments))
        );
        assert!(matches!(
            migration_route("DELETE", "/admin/companies"),
            Some(Err(AdminRequestError::NoRoute { .. }))
        ));
        assert_eq!(migration_route("GET", "/admin/companiesx"), None);
        assert_eq!(migration_route("GET", "/admin/documents"), None);
        assert_eq!(
            migration_route("GET", "/admin/objects/companies/a%20b.md"),
            Some(Ok(MigrationRoute::Object(key("companies/a b.md"))))
        );
        assert!(matches!(
            migration_route("GET", "/admin/objects/a/../b.md"),
            Some(Err(AdminRequestError::BadKey(_)))
        ));
        assert!(matches!(
            migration_route("PUT", "/admin/objects/a.md"),
            Some(Err(AdminRequestError::NoRoute { .. }))
        ));
    }

    #[test]
    fn operations_routes_are_recognised() {
        assert_eq!(
            operations_route("GET", "/admin/metrics"),
            Some(Ok(OperationsRoute::Metrics))
        );
        assert_eq!(
            operations_route("GET", "/admin/metrics/versions"),
            Some(Ok(OperationsRoute::MetricsByVersion))
        );
        assert!(matches!(
            operations_route("DELETE", "/admin/metrics/versions"),
            Some(Err(AdminRequestError::NoRoute { .. }))
        ));
        assert_eq!(operations_route("GET", "/admin/metrics/versions/x"), None);
        assert_eq!(
            operations_route("GET", "/admin/alerts/"),
            Some(Ok(OperationsRoute::Alerts))
        );
        assert_eq!(
            operations_route("GET", "/admin/dead-letters"),
            Some(Ok(OperationsRoute::DeadLetters))
        );
        assert_eq!(
            operations_route("POST", "/admin/dead-letters/42/replay"),
            Some(Ok(OperationsRoute::Replay(42)))
        );
        for bad in ["0", "-1", "x", "007", "1.5", ""] {
            assert_eq!(
                operations_route("POST", &format!("/admin/dead-letters/{bad}/replay")),
                Some(Err(AdminRequestError::BadId(bad.to_owned()))),
                "{bad}"
            );
        }
        assert!(matches!(
            operations_route("GET", "/admin/dead-letters/42/replay"),
            Some(Err(AdminRequestError::NoRoute { .. }))
        ));
        assert!(matches!(
            operations_route("POST", "/admin/metrics"),
            Some(Err(AdminRequestError::NoRoute { .. }))
        ));
        assert_eq!(operations_route("GET", "/admin/dead-letters/42"), None);
        assert_eq!(operations_route("GET", "/admin/metricsx"), None);
    }

    #[test]
    fn percent_decoding_handles_multibyte() {
        assert_eq!(percent_decode("caf%C3%A9.md").as_deref(), Some("café.md"));
        assert_eq!(percent_decode("%"), None);
    }

    #[test]
    fn the_processor_overrides_the_run_fields_only() {
        let mut row = serde_json::json!({ "key": "a.md", "status": "ready", "chunk_count": 3, "attempts": 0 });
        let processor = serde_json::json!({ "key": "a.md", "status": "processing", "step": "embed",
            "progress": { "done": 1, "total": 2 }, "attempts": 1, "chunk_count": 99 });
        merge_processor_status(&mut row, &processor);
        assert_eq!(
            row,
            serde_json::json!({ "key": "a.md", "status": "processing", "step": "embed",
                "progress": { "done": 1, "total": 2 }, "attempts": 1, "chunk_count": 3 })
        );
    }
}
