use super::*;

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
fn run_limits_outside_the_range_are_refused() {
    assert_eq!(runs_limit(None), Ok(DEFAULT_RUNS));
    assert_eq!(runs_limit(Some("1")), Ok(1));
    assert_eq!(runs_limit(Some(&MAX_RUNS.to_string())), Ok(MAX_RUNS));
    assert!(runs_limit(Some("0")).is_err());
    assert!(runs_limit(Some("1000")).is_err());
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

#[test]
fn a_sha_claim_must_match_the_body() {
    let actual = "ab12";
    assert_eq!(check_sha_claim(None, actual), Ok(()));
    assert_eq!(check_sha_claim(Some(" AB12 "), actual), Ok(()));
    let err = check_sha_claim(Some("ff"), actual).unwrap_err();
    assert_eq!(err.to_string(), "body hashes to ab12, the request said ff");
}

#[test]
fn a_status_filter_names_a_known_status() {
    let known = ["queued", "ready"];
    assert_eq!(status_filter(None, &known), Ok(None));
    assert_eq!(status_filter(Some("ready"), &known), Ok(Some("ready")));
    assert_eq!(
        status_filter(Some("nope"), &known).unwrap_err().to_string(),
        "status must be one of queued, ready"
    );
}

#[test]
fn a_document_status_needs_a_row_or_a_processor_run() {
    let processor = serde_json::json!({ "status": "processing", "step": "embed" });
    assert_eq!(
        document_status(None, processor.clone()),
        Some(processor.clone())
    );
    assert_eq!(document_status(None, serde_json::json!({})), None);
    let row = serde_json::json!({ "key": "a.md", "status": "ready" });
    assert_eq!(
        document_status(Some(row), processor),
        Some(serde_json::json!({ "key": "a.md", "status": "processing", "step": "embed" }))
    );
}

#[test]
fn a_client_token_is_sent_as_bearer_and_never_printed() {
    let secret = "s3cret-token-value-long-enough-for-the-api";
    let token = AdminToken::new(secret);
    assert_eq!(token.authorization(), format!("Bearer {secret}"));
    assert!(is_authorized(Some(&token.authorization()), Some(secret)));
    assert_eq!(format!("{token:?}"), "AdminToken(<redacted>)");
    assert!(!format!("{:?}", Some(token)).contains("s3cret"));
}
