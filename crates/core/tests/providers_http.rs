//! Providers against a real local HTTP server: each test scripts the server's replies
//! (success, 429, 5xx, malformed bodies, split SSE streams, slow answers) and asserts on what
//! the server received and on the typed results.

// Test scaffolding: a broken socket or poisoned lock should fail the test loudly.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use portfolio_core::providers::batch::BatchLimits;
use portfolio_core::providers::prompts::ANSWER_SYSTEM_PROMPT;
use portfolio_core::providers::transport::ResponseSink;
use portfolio_core::providers::{
    ChatModel, ChatRequest, Embedder, HttpRequest, HttpResponse, HttpTransport, OpenAiChat,
    OpenAiConfig, OpenAiEmbedder, Passage, ProviderError, Retrier, RetryPolicy, Sleeper,
    TransportError,
};
use serde_json::{json, Value};
use std::cell::RefCell;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

// ---------------------------------------------------------------- the server

/// A request as the server saw it.
#[derive(Debug, Clone)]
struct Received {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Received {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("request body is JSON")
    }
}

/// What the server sends back.
enum Reply {
    /// A complete response with `Content-Length`.
    Full {
        status: u16,
        headers: Vec<(&'static str, String)>,
        body: Vec<u8>,
    },
    /// A `200 text/event-stream` body written in these pieces, flushed with a pause between.
    Stream { pieces: Vec<Vec<u8>>, pause_ms: u64 },
    /// Wait, then reply.
    After { delay_ms: u64, reply: Box<Reply> },
}

fn json_reply(status: u16, body: &Value) -> Reply {
    Reply::Full {
        status,
        headers: vec![],
        body: body.to_string().into_bytes(),
    }
}

type Script = dyn Fn(usize, &Received) -> Reply + Send + Sync;

struct TestServer {
    base_url: String,
    received: Arc<Mutex<Vec<Received>>>,
}

impl TestServer {
    /// Starts a server on 127.0.0.1:0 answering request number `n` (0-based) with `script(n, req)`.
    fn start(script: impl Fn(usize, &Received) -> Reply + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let base_url = format!("http://{}", listener.local_addr().expect("addr"));
        let received = Arc::new(Mutex::new(Vec::new()));
        let script: Arc<Script> = Arc::new(script);
        let log = Arc::clone(&received);
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let log = Arc::clone(&log);
                let script = Arc::clone(&script);
                // One thread per connection, so a slow reply doesn't hold up the next attempt.
                thread::spawn(move || serve(stream, &log, &*script));
            }
        });
        Self { base_url, received }
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().expect("lock").clone()
    }
}

fn serve(stream: TcpStream, log: &Mutex<Vec<Received>>, script: &Script) {
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_owned();
    let path = parts.next().unwrap_or_default().to_owned();
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).is_err() || line.trim_end().is_empty() {
            break;
        }
        if let Some((name, value)) = line.trim_end().split_once(':') {
            headers.push((name.trim().to_owned(), value.trim().to_owned()));
        }
    }
    let length = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let request = Received {
        method,
        path,
        headers,
        body,
    };
    let index = {
        let mut log = log.lock().expect("lock");
        log.push(request.clone());
        log.len() - 1
    };
    let reply = script(index, &request);
    // The client may have given up (timeout tests); write errors are expected then.
    let _ = write_reply(stream, reply);
}

fn write_reply(mut stream: TcpStream, reply: Reply) -> std::io::Result<()> {
    match reply {
        Reply::After { delay_ms, reply } => {
            thread::sleep(Duration::from_millis(delay_ms));
            write_reply(stream, *reply)
        }
        Reply::Full {
            status,
            headers,
            body,
        } => {
            let mut head = format!(
                "HTTP/1.1 {status} Status\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
                body.len()
            );
            for (name, value) in headers {
                head.push_str(&format!("{name}: {value}\r\n"));
            }
            head.push_str("\r\n");
            stream.write_all(head.as_bytes())?;
            stream.write_all(&body)?;
            stream.flush()
        }
        Reply::Stream { pieces, pause_ms } => {
            stream.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n",
            )?;
            stream.flush()?;
            for piece in pieces {
                stream.write_all(&piece)?;
                stream.flush()?;
                thread::sleep(Duration::from_millis(pause_ms));
            }
            Ok(())
        }
    }
}

// ------------------------------------------------------- the native transport

/// `HttpTransport` over a real blocking client; streams in tiny reads so chunks split anywhere.
struct UreqTransport {
    agent: ureq::Agent,
}

impl UreqTransport {
    fn new(read_timeout_ms: u64) -> Self {
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(2))
            .timeout_read(Duration::from_millis(read_timeout_ms))
            .build();
        Self { agent }
    }

    fn open(&self, req: &HttpRequest) -> Result<ureq::Response, TransportError> {
        let mut call = self.agent.request(req.method.as_str(), &req.url);
        for (name, value) in &req.headers {
            call = call.set(name, value);
        }
        match call.send_bytes(&req.body) {
            Ok(response) | Err(ureq::Error::Status(_, response)) => Ok(response),
            Err(ureq::Error::Transport(t)) => Err(map_transport(&t)),
        }
    }
}

fn is_timeout(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(err);
    while let Some(e) = current {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if matches!(
                io.kind(),
                std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
            ) {
                return true;
            }
        }
        current = e.source();
    }
    false
}

fn map_transport(t: &ureq::Transport) -> TransportError {
    if is_timeout(t) {
        TransportError::Timeout(t.to_string())
    } else {
        TransportError::Connection(t.to_string())
    }
}

fn map_io(e: &std::io::Error) -> TransportError {
    if is_timeout(e) {
        TransportError::Timeout(e.to_string())
    } else {
        TransportError::Connection(e.to_string())
    }
}

fn head(response: &ureq::Response) -> (u16, Vec<(String, String)>) {
    let headers = response
        .headers_names()
        .into_iter()
        .filter_map(|n| response.header(&n).map(|v| (n.clone(), v.to_owned())))
        .collect();
    (response.status(), headers)
}

impl HttpTransport for UreqTransport {
    async fn send(&self, req: HttpRequest) -> Result<HttpResponse, TransportError> {
        let response = self.open(&req)?;
        let (status, headers) = head(&response);
        let mut body = Vec::new();
        response
            .into_reader()
            .read_to_end(&mut body)
            .map_err(|e| map_io(&e))?;
        Ok(HttpResponse {
            status,
            headers,
            body,
        })
    }

    async fn send_streaming(
        &self,
        req: HttpRequest,
        sink: &mut dyn ResponseSink,
    ) -> Result<(), TransportError> {
        let response = self.open(&req)?;
        let (status, headers) = head(&response);
        sink.on_head(status, &headers);
        let mut reader = response.into_reader();
        let mut buf = [0u8; 7];
        loop {
            let n = reader.read(&mut buf).map_err(|e| map_io(&e))?;
            if n == 0 || sink.on_chunk(&buf[..n]).is_break() {
                return Ok(());
            }
        }
    }
}

/// Records requested waits instead of sleeping, so tests are fast and can assert on them.
#[derive(Debug, Default)]
struct RecordingSleeper(RefCell<Vec<u64>>);

impl Sleeper for RecordingSleeper {
    async fn sleep(&self, ms: u64) {
        self.0.borrow_mut().push(ms);
    }
}

const NOW_UNIX_MS: u64 = 1_700_000_000_000;

fn fixed_clock() -> u64 {
    NOW_UNIX_MS
}

fn retrier(sleeper: &RecordingSleeper) -> Retrier<&RecordingSleeper> {
    let policy = RetryPolicy::default()
        .with_max_attempts(3)
        .with_base_delay_ms(100)
        .with_max_retry_after_ms(10_000);
    Retrier::new(policy, sleeper, 11).with_clock(fixed_clock)
}

fn embedder<'a>(
    server: &TestServer,
    transport: &'a UreqTransport,
    sleeper: &'a RecordingSleeper,
    dims: usize,
) -> OpenAiEmbedder<&'a UreqTransport, &'a RecordingSleeper> {
    let config =
        OpenAiConfig::new(&server.base_url, "text-embedding-3-small").with_api_key("sk-test");
    OpenAiEmbedder::new(config, transport, retrier(sleeper), dims)
}

fn chat<'a>(
    server: &TestServer,
    transport: &'a UreqTransport,
    sleeper: &'a RecordingSleeper,
) -> OpenAiChat<&'a UreqTransport, &'a RecordingSleeper> {
    let config = OpenAiConfig::new(format!("{}/v1/", server.base_url), "gpt-4o-mini")
        .with_api_key("sk-test");
    OpenAiChat::new(config, transport, retrier(sleeper))
}

/// Embeddings whose first component is the input's length, returned in reverse order.
fn echo_embeddings(req: &Received, dims: usize) -> Reply {
    let inputs = req.json()["input"].as_array().cloned().unwrap_or_default();
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .rev()
        .map(|(i, text)| {
            let mut v = vec![0.0; dims];
            v[0] = text.as_str().map_or(0, str::len) as f64;
            json!({ "object": "embedding", "index": i, "embedding": v })
        })
        .collect();
    json_reply(
        200,
        &json!({ "object": "list", "data": data, "model": "m" }),
    )
}

fn texts(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

fn chat_ok(text: &str) -> Reply {
    json_reply(
        200,
        &json!({ "choices": [{ "index": 0, "message": { "role": "assistant", "content": text } }] }),
    )
}

fn delta(text: &str) -> String {
    format!(
        "data: {}\r\n\r\n",
        json!({ "choices": [{ "index": 0, "delta": { "content": text } }] })
    )
}

// ---------------------------------------------------------------- the tests

#[test]
fn embeddings_send_model_inputs_auth_and_come_back_in_input_order() {
    let server = TestServer::start(|_, req| echo_embeddings(req, 4));
    let (transport, sleeper) = (UreqTransport::new(2_000), RecordingSleeper::default());
    let embedder = embedder(&server, &transport, &sleeper, 4).with_dimensions_parameter();

    let vectors = pollster::block_on(embedder.embed(&texts(&["a", "bbb", "cc"]))).unwrap();

    let firsts: Vec<f32> = vectors.iter().map(|v| v[0]).collect();
    assert_eq!(firsts, [1.0, 3.0, 2.0], "reordered by index");
    let received = server.received();
    assert_eq!(received.len(), 1);
    let req = &received[0];
    assert_eq!(
        (req.method.as_str(), req.path.as_str()),
        ("POST", "/v1/embeddings")
    );
    assert_eq!(req.header("authorization"), Some("Bearer sk-test"));
    assert_eq!(req.header("content-type"), Some("application/json"));
    assert_eq!(
        req.json(),
        json!({ "model": "text-embedding-3-small", "input": ["a", "bbb", "cc"], "dimensions": 4 })
    );
    assert!(sleeper.0.borrow().is_empty());
}

#[test]
fn embeddings_are_split_into_requests_within_the_limits() {
    let server = TestServer::start(|_, req| echo_embeddings(req, 3));
    let (transport, sleeper) = (UreqTransport::new(2_000), RecordingSleeper::default());
    let limits = BatchLimits {
        max_inputs: 2,
        max_tokens_per_request: 1_000,
        max_tokens_per_input: None,
    };
    let embedder = embedder(&server, &transport, &sleeper, 3).with_limits(limits);
    let inputs: Vec<String> = (1..=5).map(|n| "x".repeat(n)).collect();

    let vectors = pollster::block_on(embedder.embed(&inputs)).unwrap();

    assert_eq!(
        vectors.iter().map(|v| v[0]).collect::<Vec<_>>(),
        [1.0, 2.0, 3.0, 4.0, 5.0]
    );
    let sizes: Vec<usize> = server
        .received()
        .iter()
        .map(|r| r.json()["input"].as_array().map_or(0, Vec::len))
        .collect();
    assert_eq!(sizes, [2, 2, 1]);
    assert!(server
        .received()
        .iter()
        .all(|r| r.json().get("dimensions").is_none()));
}

#[test]
fn rate_limit_honours_retry_after_seconds_then_succeeds() {
    let server = TestServer::start(|n, req| {
        if n == 0 {
            Reply::Full {
                status: 429,
                headers: vec![("Retry-After", "2".to_owned())],
                body: br#"{"error":{"message":"Rate limit reached"}}"#.to_vec(),
            }
        } else {
            echo_embeddings(req, 2)
        }
    });
    let (transport, sleeper) = (UreqTransport::new(2_000), RecordingSleeper::default());

    let vectors =
        pollster::block_on(embedder(&server, &transport, &sleeper, 2).embed(&texts(&["hello"])))
            .unwrap();

    assert_eq!(vectors, vec![vec![5.0, 0.0]]);
    assert_eq!(server.received().len(), 2);
    assert_eq!(*sleeper.0.borrow(), vec![2_000]);
}

#[test]
fn rate_limit_with_an_http_date_waits_until_that_date_capped() {
    let in_five_seconds =
        httpdate::fmt_http_date(std::time::UNIX_EPOCH + Duration::from_millis(NOW_UNIX_MS + 5_000));
    let in_an_hour = httpdate::fmt_http_date(
        std::time::UNIX_EPOCH + Duration::from_millis(NOW_UNIX_MS + 3_600_000),
    );
    let server = TestServer::start(move |n, req| match n {
        0 => Reply::Full {
            status: 429,
            headers: vec![("Retry-After", in_five_seconds.clone())],
            body: b"{}".to_vec(),
        },
        1 => Reply::Full {
            status: 503,
            headers: vec![("Retry-After", in_an_hour.clone())],
            body: b"{}".to_vec(),
        },
        _ => echo_embeddings(req, 2),
    });
    let (transport, sleeper) = (UreqTransport::new(2_000), RecordingSleeper::default());

    pollster::block_on(embedder(&server, &transport, &sleeper, 2).embed(&texts(&["hi"]))).unwrap();

    assert_eq!(
        *sleeper.0.borrow(),
        vec![5_000, 10_000],
        "second wait capped at max_retry_after"
    );
    assert_eq!(server.received().len(), 3);
}

#[test]
fn server_error_is_retried_with_jittered_backoff() {
    let server = TestServer::start(|n, req| {
        if n == 0 {
            json_reply(500, &json!({"error": "boom"}))
        } else {
            echo_embeddings(req, 2)
        }
    });
    let (transport, sleeper) = (UreqTransport::new(2_000), RecordingSleeper::default());

    let vectors =
        pollster::block_on(embedder(&server, &transport, &sleeper, 2).embed(&texts(&["abc"])))
            .unwrap();

    assert_eq!(vectors[0][0], 3.0);
    assert_eq!(server.received().len(), 2);
    let waits = sleeper.0.borrow();
    assert_eq!(waits.len(), 1);
    assert!(
        waits[0] < 100,
        "full jitter under the 100 ms base: {waits:?}"
    );
}

#[test]
fn persistent_server_errors_give_up_after_max_attempts() {
    let server = TestServer::start(|_, _| json_reply(502, &json!({"error": "bad gateway"})));
    let (transport, sleeper) = (UreqTransport::new(2_000), RecordingSleeper::default());

    let err = pollster::block_on(embedder(&server, &transport, &sleeper, 2).embed(&texts(&["x"])))
        .unwrap_err();

    assert_eq!(err.status(), Some(502));
    assert!(err.is_retryable(), "the queue may still retry later");
    assert_eq!(server.received().len(), 3);
    assert_eq!(sleeper.0.borrow().len(), 2);
}

#[test]
fn unauthorised_is_permanent_and_not_retried() {
    let server = TestServer::start(|_, _| {
        json_reply(
            401,
            &json!({"error": {"message": "Incorrect API key provided"}}),
        )
    });
    let (transport, sleeper) = (UreqTransport::new(2_000), RecordingSleeper::default());

    let err = pollster::block_on(embedder(&server, &transport, &sleeper, 2).embed(&texts(&["x"])))
        .unwrap_err();

    match &err {
        ProviderError::Status {
            status,
            body_excerpt,
            provider,
            ..
        } => {
            assert_eq!(*status, 401);
            assert!(body_excerpt.contains("Incorrect API key"));
            assert_eq!(*provider, "openai-compatible");
        }
        other => panic!("unexpected error {other:?}"),
    }
    assert!(!err.is_retryable());
    assert_eq!(server.received().len(), 1);
    assert!(sleeper.0.borrow().is_empty());
}

#[test]
fn malformed_json_is_a_permanent_typed_error() {
    let server = TestServer::start(|_, _| Reply::Full {
        status: 200,
        headers: vec![],
        body: b"<html>oops</html>".to_vec(),
    });
    let (transport, sleeper) = (UreqTransport::new(2_000), RecordingSleeper::default());

    let err = pollster::block_on(embedder(&server, &transport, &sleeper, 2).embed(&texts(&["x"])))
        .unwrap_err();

    assert!(
        matches!(&err, ProviderError::MalformedResponse { body_excerpt, .. } if body_excerpt.contains("oops"))
    );
    assert!(!err.is_retryable());
    assert_eq!(server.received().len(), 1);
}

#[test]
fn wrong_embedding_count_and_dimension_are_typed_errors() {
    let server = TestServer::start(|n, _| {
        if n == 0 {
            json_reply(
                200,
                &json!({ "data": [{ "index": 0, "embedding": [1.0, 2.0] }] }),
            )
        } else {
            json_reply(
                200,
                &json!({ "data": [{ "index": 0, "embedding": [1.0, 2.0, 3.0] }] }),
            )
        }
    });
    let (transport, sleeper) = (UreqTransport::new(2_000), RecordingSleeper::default());
    let embedder = embedder(&server, &transport, &sleeper, 2);

    let count = pollster::block_on(embedder.embed(&texts(&["a", "b"]))).unwrap_err();
    assert_eq!(
        count,
        ProviderError::CountMismatch {
            provider: "openai-compatible",
            expected: 2,
            got: 1
        }
    );
    let dims = pollster::block_on(embedder.embed(&texts(&["a"]))).unwrap_err();
    assert!(matches!(
        dims,
        ProviderError::DimensionMismatch {
            index: 0,
            expected: 2,
            got: 3,
            ..
        }
    ));
    assert_eq!(server.received().len(), 2, "neither is retried");
}

#[test]
fn oversized_input_fails_before_any_request() {
    let server = TestServer::start(|_, req| echo_embeddings(req, 2));
    let (transport, sleeper) = (UreqTransport::new(2_000), RecordingSleeper::default());
    let huge = "word ".repeat(10_000);

    let err =
        pollster::block_on(embedder(&server, &transport, &sleeper, 2).embed(&[huge])).unwrap_err();

    assert!(matches!(
        err,
        ProviderError::InputTooLarge {
            index: 0,
            limit: 8_192,
            ..
        }
    ));
    assert!(server.received().is_empty());
}

#[test]
fn chat_completion_sends_the_answer_prompt_and_parses_the_reply() {
    let server = TestServer::start(|_, _| chat_ok("Acme rewrote billing in Rust [1]."));
    let (transport, sleeper) = (UreqTransport::new(2_000), RecordingSleeper::default());
    let passages = vec![Passage {
        number: 1,
        title: "Acme".into(),
        heading_path: vec!["Engineering".into()],
        text: "Billing was rewritten in Rust.".into(),
    }];
    let req = ChatRequest::for_answer("What did Acme rewrite?", passages, &[]);

    let done = pollster::block_on(chat(&server, &transport, &sleeper).complete(&req)).unwrap();

    assert_eq!(done.text, "Acme rewrote billing in Rust [1].");
    assert_eq!(done.model, "gpt-4o-mini");
    let received = server.received();
    assert_eq!(
        received[0].path, "/v1/chat/completions",
        "a base URL ending in /v1/ is not doubled"
    );
    let body = received[0].json();
    assert_eq!(body["model"], "gpt-4o-mini");
    assert_eq!(
        body["messages"][0],
        json!({ "role": "system", "content": ANSWER_SYSTEM_PROMPT })
    );
    assert!(body["messages"][1]["content"]
        .as_str()
        .unwrap()
        .contains("[1] Acme\nSection: Engineering"));
    assert_eq!(body["max_tokens"], 800);
    assert!((body["temperature"].as_f64().unwrap() - 0.2).abs() < 1e-6);
    assert!(body.get("stream").is_none());
}

#[test]
fn chat_stream_split_in_odd_places_yields_every_delta() {
    let mut wire = String::new();
    wire.push_str(": keep-alive\r\n\r\n");
    wire.push_str(&format!(
        "data: {}\r\n\r\n",
        json!({ "choices": [{ "delta": { "role": "assistant" } }] })
    ));
    for piece in ["Crème ", "brûlée", " 🦀 ", "[1]."] {
        wire.push_str(&delta(piece));
    }
    wire.push_str("data: [DONE]\r\n\r\n");
    let bytes = wire.into_bytes();
    // Cut inside "è" (2 bytes), inside the crab (4 bytes) and between \r and \n.
    let e_grave = bytes.windows(2).position(|w| w == "è".as_bytes()).unwrap() + 1;
    let crab = bytes.windows(4).position(|w| w == "🦀".as_bytes()).unwrap() + 2;
    let crlf = bytes.windows(2).rposition(|w| w == b"\r\n").unwrap() + 1;
    let cuts = [3, e_grave, crab, crlf];
    let mut pieces = Vec::new();
    let mut start = 0;
    for cut in cuts.into_iter().chain([bytes.len()]) {
        pieces.push(bytes[start..cut].to_vec());
        start = cut;
    }
    let server = TestServer::start(move |_, _| Reply::Stream {
        pieces: pieces.clone(),
        pause_ms: 20,
    });
    let (transport, sleeper) = (UreqTransport::new(2_000), RecordingSleeper::default());
    let mut deltas = Vec::new();

    let done = pollster::block_on(chat(&server, &transport, &sleeper).stream(
        &ChatRequest::new(vec![portfolio_core::providers::ChatMessage::user(
            "dessert?",
        )]),
        &mut |d| deltas.push(d.to_owned()),
    ))
    .unwrap();

    assert_eq!(deltas, ["Crème ", "brûlée", " 🦀 ", "[1]."]);
    assert_eq!(done.text, "Crème brûlée 🦀 [1].");
    let req = &server.received()[0];
    assert_eq!(req.json()["stream"], true);
    assert_eq!(req.header("accept"), Some("text/event-stream"));
}

#[test]
fn chat_stream_retries_an_error_status_before_any_text() {
    let server = TestServer::start(|n, _| {
        if n == 0 {
            json_reply(503, &json!({"error": "overloaded"}))
        } else {
            Reply::Stream {
                pieces: vec![(delta("ok") + "data: [DONE]\n\n").into_bytes()],
                pause_ms: 0,
            }
        }
    });
    let (transport, sleeper) = (UreqTransport::new(2_000), RecordingSleeper::default());
    let mut streamed = String::new();

    let done = pollster::block_on(chat(&server, &transport, &sleeper).stream(
        &ChatRequest::new(vec![portfolio_core::providers::ChatMessage::user("q")]),
        &mut |d| streamed.push_str(d),
    ))
    .unwrap();

    assert_eq!((done.text.as_str(), streamed.as_str()), ("ok", "ok"));
    assert_eq!(server.received().len(), 2);
    assert_eq!(sleeper.0.borrow().len(), 1);
}

#[test]
fn chat_stream_cut_off_after_text_is_not_retried() {
    let server = TestServer::start(|_, _| Reply::Stream {
        pieces: vec![delta("partial ").into_bytes()],
        pause_ms: 0,
    });
    let (transport, sleeper) = (UreqTransport::new(2_000), RecordingSleeper::default());
    let mut streamed = String::new();

    let err = pollster::block_on(chat(&server, &transport, &sleeper).stream(
        &ChatRequest::new(vec![portfolio_core::providers::ChatMessage::user("q")]),
        &mut |d| streamed.push_str(d),
    ))
    .unwrap_err();

    assert!(
        matches!(
            err,
            ProviderError::StreamInterrupted {
                delivered_chars: 8,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(!err.is_retryable());
    assert_eq!(
        streamed, "partial ",
        "text is delivered once, not repeated by a retry"
    );
    assert_eq!(server.received().len(), 1);
}

#[test]
fn slow_response_times_out_and_is_retried_as_a_transport_error() {
    let server = TestServer::start(|_, _| Reply::After {
        delay_ms: 1_500,
        reply: Box::new(chat_ok("late")),
    });
    let (transport, sleeper) = (UreqTransport::new(200), RecordingSleeper::default());
    // Native test only: measures that the client gave up instead of waiting for the server.
    #[allow(clippy::disallowed_methods)]
    let started = std::time::Instant::now();

    let err = pollster::block_on(
        chat(&server, &transport, &sleeper).complete(&ChatRequest::new(vec![
            portfolio_core::providers::ChatMessage::user("q"),
        ])),
    )
    .unwrap_err();

    assert!(
        matches!(
            err,
            ProviderError::Transport {
                source: TransportError::Timeout(_),
                ..
            }
        ),
        "unexpected {err:?}"
    );
    assert!(err.is_retryable());
    assert_eq!(sleeper.0.borrow().len(), 2, "3 attempts, 2 waits");
    assert_eq!(server.received().len(), 3);
    assert!(
        started.elapsed() < Duration::from_millis(1_400),
        "timeouts cut the wait short"
    );
}
