//! Route labels for request data points: a method and a path template
//! (`GET /admin/documents/{key}`), never the raw path, so the number of
//! distinct labels stays small whatever clients send; and which labels are
//! the public service's (what a version comparison counts). Both derived
//! from the route table (`crate::api::routes`, matched by `crate::api::resolve`); never a path list of its own.

use crate::api::resolve::{is_public_template, template};

/// Methods kept as they are in labels; anything else is `OTHER`.
const METHODS: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

/// The label of a request: `METHOD template`. Paths the service does not
/// serve are `METHOD (unrouted)`, so probing clients add one label, not one
/// per path.
#[must_use]
pub fn route_label(method: &str, path: &str) -> String {
    let method = METHODS
        .into_iter()
        .find(|m| *m == method)
        .unwrap_or("OTHER");
    format!("{method} {}", template(method, path).unwrap_or(UNROUTED))
}

/// Label of the paths the service does not serve.
const UNROUTED: &str = "(unrouted)";

/// Whether `label` (a [`route_label`], or the proxied chat's label) is a
/// route of the public service: served, and not under `/admin` (an
/// operator's call is not what users see). Unrouted probes are left out:
/// scanners would otherwise weigh on whichever version they happened to hit.
#[must_use]
pub fn is_public_route(label: &str) -> bool {
    // The proxied chat's label carries a suffix: `POST /api/chat (legacy)`.
    let Some(template) = label.split(' ').nth(1) else {
        return false;
    };
    is_public_template(template)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_become_templates() {
        let cases = [
            ("GET", "/api/health", "GET /api/health"),
            ("POST", "/api/search", "POST /api/search"),
            ("GET", "/", "GET /"),
            ("GET", "/admin/documents/", "GET /admin/documents"),
            (
                "GET",
                "/admin/documents/companies/acme/a.md",
                "GET /admin/documents/{key}",
            ),
            (
                "PUT",
                "/admin/documents/companies/acme/a.md",
                "PUT /admin/documents/{key}",
            ),
            (
                "POST",
                "/admin/documents/a.md/process",
                "POST /admin/documents/{key}/process",
            ),
            (
                "GET",
                "/admin/documents/a.md/runs",
                "GET /admin/documents/{key}/runs",
            ),
            (
                "POST",
                "/admin/dead-letters/17/replay",
                "POST /admin/dead-letters/{id}/replay",
            ),
            ("GET", "/admin/objects/a/b.md", "GET /admin/objects/{key}"),
            ("GET", "/admin/metrics", "GET /admin/metrics"),
            (
                "GET",
                "/admin/metrics/versions",
                "GET /admin/metrics/versions",
            ),
            ("GET", "/wp-login.php", "GET (unrouted)"),
            ("GET", "/admin/nope", "GET (unrouted)"),
            ("QUERY", "/api/search", "OTHER /api/search"),
        ];
        for (method, path, label) in cases {
            assert_eq!(route_label(method, path), label, "{method} {path}");
        }
    }

    #[test]
    fn public_routes_are_served_non_admin_ones() {
        for public in [
            "GET /api/health",
            "POST /api/chat",
            "POST /api/chat (legacy)",
            "OPTIONS /api/search",
            "GET /api",
            "GET /",
            "GET /assets/chat.js",
        ] {
            assert!(is_public_route(public), "{public}");
        }
        for other in [
            "GET /admin",
            "GET /admin/metrics",
            "POST /admin/documents/{key}/process",
            "GET (unrouted)",
            "OTHER (unrouted)",
            "",
            "GET",
        ] {
            assert!(!is_public_route(other), "{other}");
        }
        assert!(is_public_route(&route_label("POST", "/api/search")));
        assert!(!is_public_route(&route_label("GET", "/administrator")));
    }
}
