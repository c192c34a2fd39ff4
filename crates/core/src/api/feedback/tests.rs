use super::*;
use serde_json::json;

fn parse(body: serde_json::Value) -> Result<Feedback, FeedbackError> {
    parse_feedback(body.to_string().as_bytes())
}

#[test]
fn a_rating_keeps_what_the_reader_saw_and_typed() {
    let feedback = parse(json!({
        "answer_id": "8f2c3a9d1e4b5c6a",
        "helpful": false,
        "question": "  Which database does Northwind use?  ",
        "sources": ["northwind/stack.md", "northwind/stack.md", "acme/ops.md"],
        "comment": "  It missed the orders service. ",
    }))
    .unwrap();
    assert_eq!(feedback.answer_id, "8f2c3a9d1e4b5c6a");
    assert!(!feedback.helpful);
    assert_eq!(feedback.question, "Which database does Northwind use?");
    let keys: Vec<&str> = feedback.sources.iter().map(DocumentKey::as_str).collect();
    assert_eq!(keys, ["northwind/stack.md", "acme/ops.md"]);
    assert_eq!(
        feedback.comment.as_deref(),
        Some("It missed the orders service.")
    );

    let bare =
        parse(json!({ "answer_id": "x", "helpful": true, "question": "q", "comment": "  " }))
            .unwrap();
    assert!(bare.sources.is_empty());
    assert_eq!(bare.comment, None);
    let null =
        parse(json!({ "answer_id": "x", "helpful": true, "question": "q", "comment": null }))
            .unwrap();
    assert_eq!(null.comment, None);
    // `sources` is a list or absent; null is not a list.
    assert!(
        parse(json!({ "answer_id": "x", "helpful": true, "question": "q", "sources": null }))
            .is_err()
    );
}

#[test]
fn anything_beyond_the_rating_is_refused() {
    let cases = [
        (json!({ "helpful": true, "question": "q" }), None),
        (
            json!({ "answer_id": "a", "helpful": "yes", "question": "q" }),
            None,
        ),
        (
            json!({ "answer_id": "a", "helpful": true, "question": "q", "email": "a@b.c" }),
            None,
        ),
        (
            json!({ "answer_id": "", "helpful": true, "question": "q" }),
            Some("answer_id"),
        ),
        (
            json!({ "answer_id": "a b", "helpful": true, "question": "q" }),
            Some("answer_id"),
        ),
        (
            json!({ "answer_id": "a".repeat(65), "helpful": true, "question": "q" }),
            Some("answer_id"),
        ),
        (
            json!({ "answer_id": "a", "helpful": true, "question": " " }),
            Some("question"),
        ),
        (
            json!({ "answer_id": "a", "helpful": true, "question": "\u{1c}\t" }),
            Some("question"),
        ),
        (
            json!({ "answer_id": " a", "helpful": true, "question": "q" }),
            Some("answer_id"),
        ),
        (
            json!({ "answer_id": "a", "helpful": true, "question": format!(" {}", "q".repeat(MAX_QUERY_CHARS)) }),
            Some("question"),
        ),
        (
            json!({ "answer_id": "a", "helpful": true, "question": "q", "comment": format!("{} ", "c".repeat(MAX_COMMENT_CHARS)) }),
            Some("comment"),
        ),
        (
            json!({ "answer_id": "a", "helpful": true, "question": "q".repeat(MAX_QUERY_CHARS + 1) }),
            Some("question"),
        ),
        (
            json!({ "answer_id": "a", "helpful": true, "question": "q", "sources": ["/etc/passwd"] }),
            Some("sources"),
        ),
        (
            json!({ "answer_id": "a", "helpful": true, "question": "q", "sources": vec!["k.md"; MAX_FEEDBACK_SOURCES + 1] }),
            Some("sources"),
        ),
        (
            json!({ "answer_id": "a", "helpful": true, "question": "q", "comment": "c".repeat(MAX_COMMENT_CHARS + 1) }),
            Some("comment"),
        ),
    ];
    for (body, expected) in cases {
        match (parse(body.clone()), expected) {
            (Err(FeedbackError::Shape(_)), None) => {}
            (Err(FeedbackError::Field { field, .. }), Some(name)) => {
                assert_eq!(field, name, "{body}")
            }
            (other, _) => panic!("{body}: {other:?}"),
        }
    }
    // The limits themselves are accepted.
    parse(json!({
        "answer_id": "a".repeat(MAX_ANSWER_ID_CHARS),
        "helpful": true,
        "question": "é".repeat(MAX_QUERY_CHARS),
        "comment": "é".repeat(MAX_COMMENT_CHARS),
        "sources": vec!["k.md"; MAX_FEEDBACK_SOURCES],
    }))
    .unwrap();
}

#[test]
fn the_listing_filter_reads_helpful_and_limit() {
    assert_eq!(
        feedback_filter(None, None).unwrap(),
        FeedbackFilter {
            helpful: None,
            limit: DEFAULT_FEEDBACK_LIMIT
        }
    );
    assert_eq!(
        feedback_filter(Some("false"), Some("5")).unwrap(),
        FeedbackFilter {
            helpful: Some(false),
            limit: 5
        }
    );
    assert!(feedback_filter(Some("no"), None).is_err());
    assert!(feedback_filter(None, Some("0")).is_err());
    assert!(feedback_filter(None, Some(&(MAX_FEEDBACK_LIMIT + 1).to_string())).is_err());
}
