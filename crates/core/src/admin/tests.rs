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
    let mut row =
        serde_json::json!({ "key": "a.md", "status": "ready", "chunk_count": 3, "attempts": 0 });
    let processor = serde_json::json!({ "key": "a.md", "status": "processing", "step": "embed",
        "progress": { "done": 1, "total": 2 }, "attempts": 1, "chunk_count": 99 });
    merge_processor_status(&mut row, &processor);
    assert_eq!(
        row,
        serde_json::json!({ "key": "a.md", "status": "processing", "step": "embed",
            "progress": { "done": 1, "total": 2 }, "attempts": 1, "chunk_count": 3 })
    );
}
