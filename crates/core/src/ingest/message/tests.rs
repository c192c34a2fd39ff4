use super::*;
use serde_json::json;

#[test]
fn r2_put_notification_becomes_process() {
    let body = json!({
        "account": "acc", "action": "PutObject", "bucket": "docs",
        "object": { "key": "companies/acme/about.md", "size": 1234, "eTag": "abc" },
        "eventTime": "2026-11-25T10:00:00.000Z"
    });
    assert_eq!(
        parse_ingest_message(&body).unwrap(),
        IngestCommand::Process {
            key: "companies/acme/about.md".into(),
            object: Some(ObjectVersion {
                etag: Some("abc".into()),
                size: Some(1234),
                event_time: Some("2026-11-25T10:00:00.000Z".into()),
            }),
            force: false,
            reason: "r2:PutObject".into(),
        }
    );
}

#[test]
fn r2_write_and_delete_actions_are_classified() {
    for (action, is_delete) in [
        ("PutObject", false),
        ("CopyObject", false),
        ("CompleteMultipartUpload", false),
        ("DeleteObject", true),
        ("LifecycleDeletion", true),
    ] {
        let body = json!({ "action": action, "object": { "key": "a.md" } });
        let cmd = parse_ingest_message(&body).unwrap();
        assert_eq!(
            matches!(cmd, IngestCommand::Delete { .. }),
            is_delete,
            "{action}"
        );
        assert_eq!(cmd.reason(), format!("r2:{action}"));
    }
}

#[test]
fn service_messages_parse_with_defaults() {
    let cmd = parse_ingest_message(&json!({ "type": "process", "key": "a.md" })).unwrap();
    assert_eq!(
        cmd,
        IngestCommand::Process {
            key: "a.md".into(),
            object: None,
            force: false,
            reason: "process".into()
        }
    );
    let cmd = parse_ingest_message(
        &json!({ "type": "retry", "key": "a.md", "force": true, "reason": "admin" }),
    )
    .unwrap();
    assert!(
        matches!(cmd, IngestCommand::Process { force: true, ref reason, .. } if reason == "admin")
    );
    let cmd = parse_ingest_message(&json!({ "type": "delete", "key": "a.md" })).unwrap();
    assert_eq!(cmd.key(), "a.md");
    assert!(matches!(cmd, IngestCommand::Delete { .. }));
}

#[test]
fn a_delete_command_keeps_its_event_time_through_the_queue() {
    // Found by the fuzz harness (crates/core/tests/fuzz.rs): the serialised
    // form of a delete lost its `event_time` when parsed back.
    let cmd = IngestCommand::Delete {
        key: "companies/acme/a.md".into(),
        event_time: Some("2026-11-01T00:00:00Z".into()),
        reason: "r2:DeleteObject".into(),
    };
    let body = serde_json::to_value(&cmd).unwrap();
    assert_eq!(parse_ingest_message(&body).unwrap(), cmd);
    let bad = json!({ "type": "delete", "key": "a.md", "event_time": 5 });
    assert!(matches!(
        parse_ingest_message(&bad),
        Err(MessageError::BadField {
            field: "event_time",
            ..
        })
    ));
}

#[test]
fn commands_round_trip_through_json() {
    let cmd = IngestCommand::Process {
        key: "x/y.md".into(),
        object: None,
        force: true,
        reason: "admin".into(),
    };
    let value = serde_json::to_value(&cmd).unwrap();
    assert_eq!(parse_ingest_message(&value).unwrap(), cmd);
}

#[test]
fn commands_with_an_object_version_round_trip_through_json() {
    let cmd = IngestCommand::Process {
        key: "x/y.md".into(),
        object: Some(ObjectVersion {
            etag: Some("abc".into()),
            size: Some(12),
            event_time: Some("2027-01-15T08:00:00.000Z".into()),
        }),
        force: true,
        reason: "reconcile:vectors-mismatch".into(),
    };
    let value = serde_json::to_value(&cmd).unwrap();
    assert_eq!(parse_ingest_message(&value).unwrap(), cmd);
    assert_eq!(
        parse_ingest_message(&json!({ "type": "process", "key": "a.md", "object": 3 })),
        Err(MessageError::BadField {
            field: "object",
            expected: "object { etag?, size?, event_time? }"
        })
    );
}

#[test]
fn malformed_bodies_are_typed_errors() {
    let cases = [
        (
            json!("hello"),
            MessageError::NotAnObject { found: "string" },
        ),
        (json!(null), MessageError::NotAnObject { found: "null" }),
        (json!({ "foo": 1 }), MessageError::UnknownShape),
        (
            json!({ "action": "PutObject" }),
            MessageError::BadField {
                field: "object",
                expected: "object",
            },
        ),
        (
            json!({ "action": "PutObject", "object": { "size": 3 } }),
            MessageError::BadField {
                field: "object.key",
                expected: "string",
            },
        ),
        (
            json!({ "action": "RestoreObject", "object": { "key": "a.md" } }),
            MessageError::UnsupportedAction("RestoreObject".into()),
        ),
        (
            json!({ "type": "explode", "key": "a.md" }),
            MessageError::UnknownType("explode".into()),
        ),
        (
            json!({ "type": "process", "key": "" }),
            MessageError::InvalidKey {
                key: String::new(),
                why: "document key is empty".into(),
            },
        ),
        (
            json!({ "type": "process", "key": "a.md", "force": "yes" }),
            MessageError::BadField {
                field: "force",
                expected: "boolean",
            },
        ),
    ];
    for (body, expected) in cases {
        assert_eq!(parse_ingest_message(&body).unwrap_err(), expected, "{body}");
    }
}

#[test]
fn reconcile_continuations_round_trip_and_are_checked() {
    let continuation = ReconcileContinuation {
        run_id: 12,
        page: 3,
        cursor: "companies/acme/b.md".into(),
    };
    assert_eq!(
        parse_queue_message(&continuation.to_message()).unwrap(),
        QueueMessage::Reconcile(continuation)
    );
    let document = json!({ "type": "delete", "key": "a.md" });
    assert!(matches!(
        parse_queue_message(&document).unwrap(),
        QueueMessage::Document(IngestCommand::Delete { .. })
    ));
    for (body, field) in [
        (json!({ "type": "reconcile", "page": 1 }), "run_id"),
        (
            json!({ "type": "reconcile", "run_id": 0, "page": 1 }),
            "run_id",
        ),
        (
            json!({ "type": "reconcile", "run_id": 1, "page": 0 }),
            "page",
        ),
        (
            json!({ "type": "reconcile", "run_id": 1, "page": 1, "cursor": 5 }),
            "cursor",
        ),
    ] {
        assert!(
            matches!(parse_queue_message(&body), Err(MessageError::BadField { field: f, .. }) if f == field),
            "{body}"
        );
    }
    // A processor is never handed a continuation.
    assert!(parse_ingest_message(&json!({ "type": "reconcile", "run_id": 1, "page": 1 })).is_err());
}

#[test]
fn retry_delay_grows_and_is_capped() {
    assert_eq!(retry_delay_seconds(0), 10);
    assert_eq!(retry_delay_seconds(1), 10);
    assert_eq!(retry_delay_seconds(2), 20);
    assert_eq!(retry_delay_seconds(3), 40);
    assert_eq!(retry_delay_seconds(7), 640);
    assert_eq!(retry_delay_seconds(8), 900);
    assert_eq!(retry_delay_seconds(u32::MAX), 900);
}
