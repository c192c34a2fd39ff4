use super::*;

#[test]
fn endpoint_handles_trailing_slash_and_v1() {
    for base in [
        "http://h:1",
        "http://h:1/",
        "http://h:1/v1",
        "http://h:1/v1/",
    ] {
        assert_eq!(
            OpenAiConfig::new(base, "m").endpoint("embeddings"),
            "http://h:1/v1/embeddings"
        );
    }
    let shown = format!("{:?}", OpenAiConfig::new("u", "m").with_api_key("sk-123"));
    assert!(!shown.contains("sk-123"));
}

#[test]
fn embedding_response_is_reordered_by_index_and_validated() {
    let body =
        br#"{"data":[{"index":1,"embedding":[3,4]},{"index":0,"embedding":[1,2]}],"model":"m"}"#;
    assert_eq!(
        parse_embedding_response(body, 2, 2).unwrap(),
        vec![vec![1.0, 2.0], vec![3.0, 4.0]]
    );
    assert!(matches!(
        parse_embedding_response(body, 3, 2),
        Err(ProviderError::CountMismatch {
            expected: 3,
            got: 2,
            ..
        })
    ));
    assert!(matches!(
        parse_embedding_response(body, 2, 3),
        Err(ProviderError::DimensionMismatch {
            expected: 3,
            got: 2,
            ..
        })
    ));
    let repeated = br#"{"data":[{"index":0,"embedding":[1]},{"index":0,"embedding":[1]}]}"#;
    assert!(matches!(
        parse_embedding_response(repeated, 2, 1),
        Err(ProviderError::MalformedResponse { .. })
    ));
    let out_of_range = br#"{"data":[{"index":5,"embedding":[1]}]}"#;
    assert!(matches!(
        parse_embedding_response(out_of_range, 1, 1),
        Err(ProviderError::MalformedResponse { .. })
    ));
    assert!(matches!(
        parse_embedding_response(b"<html>", 1, 1),
        Err(ProviderError::MalformedResponse { .. })
    ));
}

#[test]
fn chat_response_takes_first_choice_content() {
    let body = br#"{"choices":[{"message":{"role":"assistant","content":"Hi [1]"}},{"message":{"content":"x"}}]}"#;
    assert_eq!(parse_chat_response(body).unwrap(), "Hi [1]");
    assert!(parse_chat_response(br#"{"choices":[]}"#).is_err());
    assert!(parse_chat_response(br#"{"choices":[{"message":{"content":null}}]}"#).is_err());
}

#[test]
fn stream_decoder_yields_deltas_until_done() {
    let mut decoder = ChatStreamDecoder::new();
    let body = "data: {\"choices\":[{\"delta\":{\"role\":\"assistant\"}}]}\n\n\
                data: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\n\n\
                : comment\n\n\
                data: {\"choices\":[{\"delta\":{\"content\":\"lo\"},\"finish_reason\":null}]}\n\n\
                data: [DONE]\n\n\
                data: {\"choices\":[{\"delta\":{\"content\":\"ignored\"}}]}\n\n";
    assert_eq!(decoder.push(body.as_bytes()).unwrap(), ["Hel", "lo"]);
    assert!(decoder.is_done());
    assert!(decoder.finish().is_ok());
}

#[test]
fn stream_decoder_reports_errors_and_early_end() {
    let mut bad = ChatStreamDecoder::new();
    assert!(bad.push(b"data: not json\n\n").is_err());
    let mut err_event = ChatStreamDecoder::new();
    assert!(err_event
        .push(b"data: {\"error\":{\"message\":\"overloaded\"}}\n\n")
        .is_err());
    let mut early = ChatStreamDecoder::new();
    assert_eq!(
        early
            .push(b"data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n")
            .unwrap(),
        ["a"]
    );
    assert!(early.finish().is_err());
}
