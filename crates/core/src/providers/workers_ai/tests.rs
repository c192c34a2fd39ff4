use super::*;
use crate::providers::retry::RetryPolicy;
use serde_json::json;
use std::cell::RefCell;

#[derive(Debug, Default)]
struct NoSleep;
impl Sleeper for NoSleep {
    async fn sleep(&self, _ms: u64) {}
}

fn thrown(message: &str) -> AiBindingError {
    AiBindingError::Thrown {
        name: "InferenceUpstreamError".into(),
        message: message.into(),
    }
}

/// A binding answering from a script, recording every input. Failures are served first
/// (`failures`, in order); a streamed answer is cut into `chunk_bytes`-byte chunks and,
/// with `cut_after`, the stream breaks after that many chunks.
#[derive(Debug, Default)]
struct ScriptedBinding {
    calls: RefCell<Vec<(String, Value)>>,
    failures: RefCell<Vec<AiBindingError>>,
    chunk_bytes: usize,
    cut_after: Option<usize>,
}

impl ScriptedBinding {
    fn next_failure(&self) -> Option<AiBindingError> {
        let mut failures = self.failures.borrow_mut();
        (!failures.is_empty()).then(|| failures.remove(0))
    }
}

impl AiBinding for ScriptedBinding {
    async fn run(&self, model: &str, input: Value) -> Result<Value, AiBindingError> {
        self.calls
            .borrow_mut()
            .push((model.to_owned(), input.clone()));
        if let Some(failure) = self.next_failure() {
            return Err(failure);
        }
        if let Some(texts) = input.get("text").and_then(Value::as_array) {
            let data: Vec<Vec<f32>> = texts
                .iter()
                .map(|t| {
                    let len = t.as_str().map_or(0, str::len);
                    #[allow(clippy::cast_precision_loss)]
                    let first = len as f32;
                    let mut v = vec![0.0; 4];
                    v[0] = first;
                    v
                })
                .collect();
            return Ok(json!({ "shape": [data.len(), 4], "data": data }));
        }
        Ok(json!({ "response": "Answer [1]" }))
    }

    async fn run_stream(
        &self,
        model: &str,
        input: Value,
        on_chunk: &mut dyn FnMut(&[u8]) -> ControlFlow<()>,
    ) -> Result<(), AiBindingError> {
        self.calls
            .borrow_mut()
            .push((model.to_owned(), input.clone()));
        if let Some(failure) = self.next_failure() {
            return Err(failure);
        }
        let mut body = String::new();
        for piece in ["The answer", " is in", " [1]."] {
            body.push_str(&format!("data: {}\n\n", json!({ "response": piece })));
        }
        body.push_str(
            "data: {\"response\":\"\",\"usage\":{\"total_tokens\":9}}\n\ndata: [DONE]\n\n",
        );
        for (i, chunk) in body.as_bytes().chunks(self.chunk_bytes.max(1)).enumerate() {
            if self.cut_after == Some(i) {
                return Err(AiBindingError::Timeout("no chunk within 1000 ms".into()));
            }
            if on_chunk(chunk).is_break() {
                break;
            }
        }
        Ok(())
    }
}

#[test]
fn documented_error_codes_decide_what_is_retried() {
    let cases = [
        (
            "3040: No more data centers to forward the request to",
            429,
            true,
        ),
        (
            "3036: You have used up your daily free allocation",
            429,
            true,
        ),
        ("3007: Request timeout", 408, true),
        ("5007: No such model @cf/x or task", 400, false),
        ("3023: Service unavailable for account", 403, false),
        ("3006: Request is too large", 413, false),
        ("9999: something new", 500, true),
    ];
    for (message, status, retryable) in cases {
        let err = binding_error(thrown(message));
        assert_eq!(err.status(), Some(status), "{message}");
        assert_eq!(err.is_retryable(), retryable, "{message}");
        assert!(err.to_string().contains(&message[..4]), "{err}");
    }
    // No code: a broken connection, retried; a timeout likewise.
    let broken = binding_error(thrown("Network connection lost."));
    assert!(matches!(broken, ProviderError::Transport { .. }) && broken.is_retryable());
    let slow = binding_error(AiBindingError::Timeout("30000 ms".into()));
    assert!(slow.is_retryable());
    assert_eq!(internal_code("12345: x"), None);
    assert_eq!(internal_code("ab12: x"), None);
}

#[test]
fn stream_decoder_yields_responses_until_done() {
    let mut decoder = WorkersAiStreamDecoder::default();
    let body = b"data: {\"response\":\"Hel\"}\n\ndata: {\"response\":\"lo\"}\r\n\r\ndata: {\"response\":\"\"}\n\ndata: [DONE]\n\ndata: {\"response\":\"late\"}\n\n";
    let mut deltas = Vec::new();
    for chunk in body.chunks(5) {
        deltas.extend(decoder.push(chunk).unwrap());
    }
    assert_eq!(deltas, ["Hel", "lo"]);
    assert!(decoder.is_done());
    decoder.finish().unwrap();

    let mut cut = WorkersAiStreamDecoder::default();
    assert_eq!(cut.push(b"data: {\"response\":\"x\"}\n\n").unwrap(), ["x"]);
    assert!(matches!(
        cut.finish(),
        Err(ProviderError::MalformedResponse { .. })
    ));
    let mut garbled = WorkersAiStreamDecoder::default();
    assert!(garbled.push(b"data: <html>\n\n").is_err());
}

#[test]
fn shapes_serialise_as_the_binding_expects() {
    let req = WorkersAiEmbeddingRequest {
        text: vec!["a".into()],
    };
    assert_eq!(serde_json::to_value(&req).unwrap(), json!({"text": ["a"]}));
    let chat = WorkersAiChatRequest::from(
        &ChatRequest::new(vec![ChatMessage::user("hi")]).with_max_tokens(5),
    );
    assert_eq!(
        serde_json::to_value(&chat).unwrap(),
        json!({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 5})
    );
}

#[test]
fn embedding_output_is_validated() {
    let ok = json!({"shape": [2, 2], "data": [[1, 2], [3, 4]]});
    assert_eq!(
        parse_embedding_output(ok.clone(), 2, 2).unwrap(),
        vec![vec![1.0, 2.0], vec![3.0, 4.0]]
    );
    assert!(matches!(
        parse_embedding_output(ok.clone(), 3, 2),
        Err(ProviderError::CountMismatch { .. })
    ));
    assert!(matches!(
        parse_embedding_output(ok, 2, 768),
        Err(ProviderError::DimensionMismatch { .. })
    ));
    let bad_shape = json!({"shape": [2, 3], "data": [[1, 2], [3, 4]]});
    assert!(matches!(
        parse_embedding_output(bad_shape, 2, 2),
        Err(ProviderError::MalformedResponse { .. })
    ));
    assert!(matches!(
        parse_embedding_output(json!({"data": 1}), 1, 1),
        Err(ProviderError::MalformedResponse { .. })
    ));
    assert_eq!(parse_chat_output(json!({"response": "hi"})).unwrap(), "hi");
    assert!(parse_chat_output(json!({"result": "hi"})).is_err());
}

#[test]
fn embedder_batches_by_one_hundred_and_retries_binding_failures() {
    let binding = ScriptedBinding {
        failures: RefCell::new(vec![thrown("3040: Capacity temporarily exceeded")]),
        ..ScriptedBinding::default()
    };
    let embedder = WorkersAiEmbedder::new(
        &binding,
        Retrier::new(RetryPolicy::default(), NoSleep, 3),
        BGE_BASE_EN_V1_5,
        4,
        WORKERS_AI_BGE_LIMITS,
    );
    let texts: Vec<String> = (0..250).map(|i| "x".repeat(i % 7 + 1)).collect();
    let vectors = pollster::block_on(embedder.embed(&texts)).unwrap();
    assert_eq!(vectors.len(), 250);
    #[allow(clippy::cast_precision_loss)]
    let in_order = vectors
        .iter()
        .zip(&texts)
        .all(|(v, t)| v[0] == t.len() as f32);
    assert!(in_order);
    let calls = binding.calls.borrow();
    // 1 failed + 3 batches (100, 100, 50).
    assert_eq!(calls.len(), 4);
    assert_eq!(calls[0].0, BGE_BASE_EN_V1_5);
    let sizes: Vec<usize> = calls
        .iter()
        .map(|(_, v)| v["text"].as_array().map_or(0, Vec::len))
        .collect();
    assert_eq!(sizes, [100, 100, 100, 50]);
}

#[test]
fn chat_passes_messages_and_answers_whole() {
    let binding = ScriptedBinding::default();
    let chat = WorkersAiChat::new(
        &binding,
        Retrier::new(RetryPolicy::no_retries(), NoSleep, 1),
        "@cf/m",
    );
    let req = ChatRequest::new(vec![ChatMessage::user("q")]);
    let done = pollster::block_on(chat.complete(&req)).unwrap();
    assert_eq!(done.text, "Answer [1]");
    let calls = binding.calls.borrow();
    assert_eq!(calls[0].1["messages"][0]["content"], "q");
    assert!(calls[0].1.get("stream").is_none());
    drop(calls);
    let empty = pollster::block_on(chat.complete(&ChatRequest::new(vec![])));
    assert!(matches!(empty, Err(ProviderError::InvalidRequest { .. })));
}

#[test]
fn chat_streams_deltas_and_retries_only_before_the_first() {
    // Chunks split anywhere; a capacity error before any text is retried.
    let binding = ScriptedBinding {
        failures: RefCell::new(vec![thrown("3040: No more data centers")]),
        chunk_bytes: 7,
        ..ScriptedBinding::default()
    };
    let chat = WorkersAiChat::new(
        &binding,
        Retrier::new(RetryPolicy::default(), NoSleep, 1),
        "@cf/m",
    );
    let req = ChatRequest::new(vec![ChatMessage::user("q")]);
    let mut deltas = Vec::new();
    let done = pollster::block_on(chat.stream(&req, &mut |d| deltas.push(d.to_owned()))).unwrap();
    assert_eq!(done.text, "The answer is in [1].");
    assert_eq!(deltas.concat(), done.text);
    assert!(deltas.len() >= 3, "{deltas:?}");
    let calls = binding.calls.borrow();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[1].1["stream"], true);
    drop(calls);

    // Cut after some text: reported, not retried (a retry would repeat the text).
    let cut = ScriptedBinding {
        chunk_bytes: 16,
        cut_after: Some(3),
        ..ScriptedBinding::default()
    };
    let chat = WorkersAiChat::new(
        &cut,
        Retrier::new(RetryPolicy::default(), NoSleep, 1),
        "@cf/m",
    );
    let mut seen = String::new();
    let err = pollster::block_on(chat.stream(&req, &mut |d| seen.push_str(d))).unwrap_err();
    assert!(
        matches!(err, ProviderError::StreamInterrupted { delivered_chars, .. } if delivered_chars == seen.chars().count() && delivered_chars > 0),
        "{err:?}"
    );
    assert_eq!(cut.calls.borrow().len(), 1);

    // A model that does not exist fails at once.
    let missing = ScriptedBinding {
        failures: RefCell::new(vec![thrown("5007: No such model @cf/m or task")]),
        ..ScriptedBinding::default()
    };
    let chat = WorkersAiChat::new(
        &missing,
        Retrier::new(RetryPolicy::default(), NoSleep, 1),
        "@cf/m",
    );
    let err = pollster::block_on(chat.stream(&req, &mut |_| {})).unwrap_err();
    assert_eq!(err.status(), Some(400));
    assert_eq!(missing.calls.borrow().len(), 1);
}
