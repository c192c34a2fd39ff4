//! Matching a request to the route table ([`super::routes::ROUTES`]): which
//! route a method and path name, their parameters checked (`{key}` a valid
//! document key, `{id}` a positive whole number), the `Allow` header of a
//! path and the template a request is counted under.
//!
//! Never performs the request and never lists routes of its own.

use super::routes::{Access, OtherMethods, Route, ROUTES};
use crate::document::keys::DocumentKey;
use thiserror::Error;

/// A path parameter that is not what its template says.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RouteError {
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

impl RouteError {
    /// Stable error code for the `{ "error": { "code" } }` body (a 400).
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            Self::BadKey(_) | Self::BadEncoding => "bad_key",
            Self::BadId(_) => "bad_id",
        }
    }
}

/// A request matched to its route, parameters checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matched {
    /// The row.
    pub route: &'static Route,
    /// The `{key}` parameter.
    pub key: Option<DocumentKey>,
    /// The `{id}` parameter.
    pub id: Option<u64>,
}

/// What a method and path name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// A route, with its parameters.
    Found(Matched),
    /// A known path, another method: `Allow` lists the declared ones.
    WrongMethod {
        /// What the route answers (405 or 404).
        answer: OtherMethods,
        /// Access of the path's routes.
        access: Access,
    },
    /// A known path whose parameter is invalid (400).
    BadParameter(RouteError),
    /// No route has this path.
    Unrouted,
}

fn capture<'p>(route: &Route, path: &'p str, trim: bool) -> Option<&'p str> {
    let path = if (trim || route.trailing_slash) && path.len() > 1 {
        path.strip_suffix('/').unwrap_or(path)
    } else {
        path
    };
    match route.path.split_once('{') {
        None => (route.path == path).then_some(""),
        Some((prefix, rest)) => {
            let suffix = rest.split_once('}').map_or("", |(_, s)| s);
            path.strip_prefix(prefix)?.strip_suffix(suffix)
        }
    }
}

/// The routes whose template matches `path`, with what each captured; a
/// fixed path wins over a template (`/admin/documents/` is the list).
fn candidates(path: &str, trim: bool) -> Vec<(&'static Route, &str)> {
    let all: Vec<_> = ROUTES
        .iter()
        .filter_map(|r| capture(r, path, trim).map(|c| (r, c)))
        .collect();
    if all.iter().any(|(r, _)| !r.path.contains('{')) {
        all.into_iter()
            .filter(|(r, _)| !r.path.contains('{'))
            .collect()
    } else {
        all
    }
}

/// The route `method` names among `found`: the most specific template of that
/// method (`{key}/runs` before `{key}`), else the most generic of the path.
fn pick<'p>(
    found: &[(&'static Route, &'p str)],
    method: &str,
) -> Option<(bool, &'static Route, &'p str)> {
    if let Some((r, c)) = found
        .iter()
        .filter(|(r, _)| r.method == method)
        .min_by_key(|(_, c)| c.len())
    {
        return Some((true, r, c));
    }
    found
        .iter()
        .max_by_key(|(_, c)| c.len())
        .map(|(r, c)| (false, *r, *c))
}

fn parse_parameter(route: &'static Route, raw: &str) -> Result<Matched, RouteError> {
    let mut matched = Matched {
        route,
        key: None,
        id: None,
    };
    if route.path.contains("{key}") {
        let decoded = percent_decode(raw).ok_or(RouteError::BadEncoding)?;
        let key = DocumentKey::parse(&decoded).map_err(|e| RouteError::BadKey(e.to_string()))?;
        matched.key = Some(key);
    } else if route.path.contains("{id}") {
        let id = raw
            .parse::<u64>()
            .ok()
            .filter(|n| *n > 0 && n.to_string() == raw)
            .ok_or_else(|| RouteError::BadId(raw.chars().take(64).collect()))?;
        matched.id = Some(id);
    }
    Ok(matched)
}

/// Which route `method` (upper case) and `path` (as received, still
/// percent-encoded) name. A parameter is checked before the method, so a bad
/// key is a 400 whatever the method.
#[must_use]
pub fn resolve(method: &str, path: &str) -> Resolution {
    let found = candidates(path, false);
    let Some((same_method, route, raw)) = pick(&found, method) else {
        return Resolution::Unrouted;
    };
    match parse_parameter(route, raw) {
        Err(e) => Resolution::BadParameter(e),
        Ok(matched) if same_method => Resolution::Found(matched),
        Ok(_) => Resolution::WrongMethod {
            answer: route.other_methods,
            access: route.access,
        },
    }
}

/// The `Allow` header of a known path: its declared methods, plus `OPTIONS`
/// under `/api/` (the CORS preflight). `None` for an unknown path.
#[must_use]
pub fn allowed_methods(path: &str) -> Option<String> {
    let found = candidates(path, false);
    if found.is_empty() {
        return None;
    }
    let mut methods: Vec<&str> = Vec::new();
    for (route, _) in &found {
        if !methods.contains(&route.method) {
            methods.push(route.method);
        }
    }
    if path.starts_with("/api/") {
        methods.push("OPTIONS");
    }
    Some(methods.join(", "))
}

/// Whether `path` is under the admin prefix (the token is checked before
/// anything else there, unknown paths included).
#[must_use]
pub fn is_admin_path(path: &str) -> bool {
    path == "/admin" || path.starts_with("/admin/")
}

/// The path template a request is counted under (a trailing `/` ignored);
/// `None` for a path no route has.
#[must_use]
pub fn template(method: &str, path: &str) -> Option<&'static str> {
    let found = candidates(path, true);
    pick(&found, method).map(|(_, route, _)| route.path)
}

/// Whether `template` (a [`Route::path`]) is one of the public routes.
#[must_use]
pub fn is_public_template(template: &str) -> bool {
    ROUTES
        .iter()
        .any(|r| r.path == template && r.access == Access::Public)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::routes::{listing, AdminRoute as A, Limiter, PublicRoute as P, RouteId};

    fn found(method: &str, path: &str) -> (RouteId, Option<String>, Option<u64>) {
        match resolve(method, path) {
            Resolution::Found(m) => (m.route.id, m.key.map(|k| k.as_str().to_owned()), m.id),
            other => panic!("{method} {path}: {other:?}"),
        }
    }

    fn key(id: RouteId, k: &str) -> (RouteId, Option<String>, Option<u64>) {
        (id, Some(k.to_owned()), None)
    }

    #[test]
    fn document_routes_are_parsed_from_method_and_path() {
        let cases = [
            (
                "GET",
                "/admin/documents",
                (RouteId::Admin(A::DocumentList), None, None),
            ),
            (
                "GET",
                "/admin/documents/",
                (RouteId::Admin(A::DocumentList), None, None),
            ),
            (
                "PUT",
                "/admin/documents/companies/acme/a.md",
                key(RouteId::Admin(A::DocumentPut), "companies/acme/a.md"),
            ),
            (
                "DELETE",
                "/admin/documents/a.md",
                key(RouteId::Admin(A::DocumentDelete), "a.md"),
            ),
            (
                "GET",
                "/admin/documents/a%20b.md",
                key(RouteId::Admin(A::DocumentGet), "a b.md"),
            ),
            (
                "POST",
                "/admin/documents/x/a.md/process",
                key(RouteId::Admin(A::DocumentProcess), "x/a.md"),
            ),
            // Only POST strips `/process`: a GET of such a key is a key.
            (
                "GET",
                "/admin/documents/x/process",
                key(RouteId::Admin(A::DocumentGet), "x/process"),
            ),
            (
                "GET",
                "/admin/documents/x/a.md/runs",
                key(RouteId::Admin(A::DocumentRuns), "x/a.md"),
            ),
            // A key ending in `/runs` is read with its slash encoded.
            (
                "GET",
                "/admin/documents/x%2Fruns",
                key(RouteId::Admin(A::DocumentGet), "x/runs"),
            ),
            (
                "PUT",
                "/admin/documents/x/runs",
                key(RouteId::Admin(A::DocumentPut), "x/runs"),
            ),
            (
                "GET",
                "/admin/objects/companies/a%20b.md",
                key(RouteId::Admin(A::Object), "companies/a b.md"),
            ),
            (
                "POST",
                "/admin/dead-letters/42/replay",
                (RouteId::Admin(A::ReplayDeadLetter), None, Some(42)),
            ),
        ];
        for (method, path, expected) in cases {
            assert_eq!(found(method, path), expected, "{method} {path}");
        }
    }

    #[test]
    fn fixed_routes_take_a_trailing_slash_where_declared() {
        for (method, path, id) in [
            (
                "POST",
                "/admin/reconcile",
                RouteId::Admin(A::ReconcileStart),
            ),
            (
                "GET",
                "/admin/reconcile/runs/",
                RouteId::Admin(A::ReconcileRuns),
            ),
            ("GET", "/admin/alerts/", RouteId::Admin(A::Alerts)),
            (
                "POST",
                "/admin/companies/",
                RouteId::Admin(A::CompanyImport),
            ),
            (
                "POST",
                "/admin/legacy-ids/documents",
                RouteId::Admin(A::MapLegacyDocuments),
            ),
            (
                "GET",
                "/admin/metrics/versions",
                RouteId::Admin(A::MetricsByVersion),
            ),
            (
                "POST",
                "/admin/dead-letters/5/replay/",
                RouteId::Admin(A::ReplayDeadLetter),
            ),
            ("GET", "/api/health", RouteId::Public(P::Health)),
            ("GET", "/admin", RouteId::Admin(A::Listing)),
        ] {
            assert_eq!(found(method, path).0, id, "{method} {path}");
        }
        for path in [
            "/api/health/",
            "/admin/index/",
            "/admin/rollout/",
            "/admin/",
        ] {
            assert!(
                !matches!(resolve("GET", path), Resolution::Found(_)),
                "{path}"
            );
        }
    }

    #[test]
    fn bad_parameters_and_methods_are_refused() {
        let not_found = Resolution::WrongMethod {
            answer: OtherMethods::NotFound,
            access: Access::Admin,
        };
        assert_eq!(resolve("POST", "/admin/documents"), not_found);
        assert_eq!(resolve("PATCH", "/admin/documents/a.md"), not_found);
        assert_eq!(resolve("DELETE", "/admin/companies"), not_found);
        assert_eq!(resolve("POST", "/admin/metrics"), not_found);
        assert_eq!(resolve("GET", "/admin/dead-letters/42/replay"), not_found);
        assert_eq!(resolve("GET", "/admin/reconcile"), not_found);
        assert_eq!(resolve("PUT", "/admin/objects/a.md"), not_found);
        assert_eq!(
            resolve("POST", "/admin/rollout"),
            Resolution::WrongMethod {
                answer: OtherMethods::NotAllowed,
                access: Access::Admin
            }
        );
        assert_eq!(
            resolve("DELETE", "/api/health"),
            Resolution::WrongMethod {
                answer: OtherMethods::NotAllowed,
                access: Access::Public
            }
        );
        for path in [
            "/admin/documentsx",
            "/admin/metricsx",
            "/admin/dead-letters/42",
            "/admin/metrics/versions/x",
            "/admin/reconcilex",
            "/admin/companiesx",
            "/admin/nope",
            "/nope",
        ] {
            assert_eq!(resolve("GET", path), Resolution::Unrouted, "{path}");
        }
        assert_eq!(
            resolve("GET", "/admin/documents/%zz.md"),
            Resolution::BadParameter(RouteError::BadEncoding)
        );
        assert_eq!(
            resolve("GET", "/admin/documents/%ff.md"),
            Resolution::BadParameter(RouteError::BadEncoding)
        );
        for path in [
            "/admin/documents/a/../b.md",
            "/admin/documents/a%2F..%2Fb.md",
        ] {
            assert!(
                matches!(
                    resolve("PUT", path),
                    Resolution::BadParameter(RouteError::BadKey(_))
                ),
                "{path}"
            );
        }
        assert!(matches!(
            resolve("GET", "/admin/objects/a/../b.md"),
            Resolution::BadParameter(RouteError::BadKey(_))
        ));
        for bad in ["0", "-1", "x", "007", "1.5", ""] {
            assert_eq!(
                resolve("POST", &format!("/admin/dead-letters/{bad}/replay")),
                Resolution::BadParameter(RouteError::BadId(bad.to_owned())),
                "{bad}"
            );
        }
    }

    #[test]
    fn allow_lists_the_declared_methods() {
        assert_eq!(
            allowed_methods("/api/health").as_deref(),
            Some("GET, OPTIONS")
        );
        assert_eq!(
            allowed_methods("/api/chat").as_deref(),
            Some("POST, OPTIONS")
        );
        assert_eq!(
            allowed_methods("/admin/rollout").as_deref(),
            Some("GET, PUT")
        );
        assert_eq!(
            allowed_methods("/admin/documents/a.md").as_deref(),
            Some("GET, PUT, DELETE")
        );
        assert_eq!(allowed_methods("/api/health/"), None);
        assert_eq!(allowed_methods("/nope"), None);
    }

    #[test]
    fn every_route_is_unique_resolvable_and_listed() {
        for (i, route) in ROUTES.iter().enumerate() {
            assert!(
                ROUTES[..i]
                    .iter()
                    .all(|r| r.id != route.id && (r.method, r.path) != (route.method, route.path)),
                "{route:?} is declared twice"
            );
            let path = route.path.replace("{key}", "a%20b.md").replace("{id}", "7");
            assert_eq!(
                found(route.method, &path).0,
                route.id,
                "{} {}",
                route.method,
                route.path
            );
            assert_eq!(template(route.method, &path), Some(route.path));
            assert_eq!(is_admin_path(route.path), route.access == Access::Admin);
        }
        assert_eq!(listing(None).len(), ROUTES.len());
        assert_eq!(
            listing(Some(Access::Public)).len() + listing(Some(Access::Admin)).len(),
            ROUTES.len()
        );
    }

    #[test]
    fn public_keys_guard_the_data_routes_not_health_pages_or_admin() {
        let keyed: Vec<&str> = ROUTES.iter().filter(|r| r.keyed).map(|r| r.path).collect();
        assert_eq!(
            keyed,
            [
                "/api/search",
                "/api/chat",
                "/api/companies",
                "/api/documents",
                "/v1/chat/completions",
                "/v1/models",
                "/mcp",
                "/api/feedback"
            ]
        );
        assert!(ROUTES
            .iter()
            .filter(|r| r.path.starts_with("/api/") || r.path.starts_with("/v1/"))
            .all(|r| r.keyed || r.path == "/api/health"));
    }

    #[test]
    fn every_data_route_has_its_budget() {
        let limiter = |method: &str, path: &str| {
            ROUTES
                .iter()
                .find(|r| r.method == method && r.path == path)
                .and_then(|r| r.limiter)
        };
        for (method, path) in [
            ("POST", "/api/search"),
            ("GET", "/api/companies"),
            ("GET", "/api/documents"),
            ("POST", "/mcp"),
        ] {
            assert_eq!(limiter(method, path), Some(Limiter::Search), "{path}");
        }
        for (method, path) in [
            ("POST", "/api/chat"),
            ("POST", "/v1/chat/completions"),
            ("POST", "/api/feedback"),
        ] {
            assert_eq!(limiter(method, path), Some(Limiter::Chat), "{path}");
        }
    }

    #[test]
    fn percent_decoding_handles_multibyte() {
        assert_eq!(percent_decode("caf%C3%A9.md").as_deref(), Some("café.md"));
        assert_eq!(percent_decode("%"), None);
    }
}
