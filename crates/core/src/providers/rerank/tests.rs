use super::*;
use crate::providers::retry::RetryPolicy;
use crate::providers::transport::{HttpRequest, HttpResponse, TransportError};
use crate::providers::workers_ai::AiBindingError;
use serde_json::json;
use std::cell::RefCell;
use std::ops::ControlFlow;

#[derive(Debug, Default)]
struct NoSleep;
impl Sleeper for NoSleep {
    async fn sleep(&self, _ms: u64) {}
}

fn retrier() -> Retrier<NoSleep> {
    Retrier::new(RetryPolicy::default().with_max_attempts(3), NoSleep, 7)
}

/// Scores each context by how many of the query's words it contains,
/// answered best first as the binding does; fails first with `failures`.
#[derive(Debug, Default)]
struct OverlapBinding {
    inputs: RefCell<Vec<(String, Value)>>,
    failures: RefCell<Vec<AiBindingError>>,
}

fn overlap(query: &str, text: &str) -> f64 {
    let text = text.to_lowercase();
    #[allow(clippy::cast_precision_loss)]
    let n = query
        .to_lowercase()
        .split_whitespace()
        .filter(|w| text.contains(w))
        .count() as f64;
    n
}

impl AiBinding for OverlapBinding {
    async fn run(&self, model: &str, input: Value) -> Result<Value, AiBindingError> {
        self.inputs
            .borrow_mut()
            .push((model.to_owned(), input.clone()));
        let mut failures = self.failures.borrow_mut();
        if !failures.is_empty() {
            return Err(failures.remove(0));
        }
        let query = input["query"].as_str().unwrap_or_default();
        let mut scored: Vec<(usize, f64)> = input["contexts"]
            .as_array()
            .unwrap()
            .iter()
            .enumerate()
            .map(|(i, c)| (i, overlap(query, c["text"].as_str().unwrap())))
            .collect();
        scored.sort_by(|a, b| b.1.total_cmp(&a.1));
        let response: Vec<Value> = scored
            .iter()
            .map(|(id, score)| json!({ "id": id, "score": score }))
            .collect();
        Ok(json!({ "response": response }))
    }

    async fn run_stream(
        &self,
        _model: &str,
        _input: Value,
        _on_chunk: &mut dyn FnMut(&[u8]) -> ControlFlow<()>,
    ) -> Result<(), AiBindingError> {
        unreachable!("the reranker never streams")
    }
}

fn texts(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn workers_ai_scores_come_back_in_input_order() {
    let binding = OverlapBinding::default();
    let reranker = WorkersAiReranker::new(&binding, retrier(), BGE_RERANKER_BASE);
    let passages = texts(&["nothing here", "docker compose up", "compose file"]);
    let scores = pollster::block_on(reranker.rerank("docker compose", &passages)).unwrap();
    assert_eq!(scores, vec![0.0, 2.0, 1.0]);
    let inputs = binding.inputs.borrow();
    let (model, input) = &inputs[0];
    assert_eq!(model, BGE_RERANKER_BASE);
    assert_eq!(
        input,
        &json!({
            "query": "docker compose",
            "contexts": [{"text": "nothing here"}, {"text": "docker compose up"}, {"text": "compose file"}],
            "top_k": 3
        })
    );
}

#[test]
fn workers_ai_capacity_errors_are_retried_and_bad_requests_are_not() {
    let binding = OverlapBinding::default();
    binding.failures.borrow_mut().push(AiBindingError::Thrown {
        name: "InferenceUpstreamError".into(),
        message: "3040: No more data centers to forward the request to".into(),
    });
    let reranker = WorkersAiReranker::new(&binding, retrier(), BGE_RERANKER_BASE);
    let scores = pollster::block_on(reranker.rerank("a", &texts(&["a", "b"]))).unwrap();
    assert_eq!(scores, vec![1.0, 0.0]);
    assert_eq!(binding.inputs.borrow().len(), 2);

    let binding = OverlapBinding::default();
    binding.failures.borrow_mut().push(AiBindingError::Thrown {
        name: "InferenceUpstreamError".into(),
        message: "5007: No such model @cf/x or task".into(),
    });
    let reranker = WorkersAiReranker::new(&binding, retrier(), "@cf/x");
    assert!(pollster::block_on(reranker.rerank("a", &texts(&["a"]))).is_err());
    assert_eq!(binding.inputs.borrow().len(), 1);
}

#[test]
fn no_passages_make_no_call_and_too_many_are_refused() {
    let binding = OverlapBinding::default();
    let reranker = WorkersAiReranker::new(&binding, retrier(), BGE_RERANKER_BASE);
    assert_eq!(
        pollster::block_on(reranker.rerank("q", &[])).unwrap(),
        Vec::<f64>::new()
    );
    let many = vec!["x".to_owned(); MAX_RERANK_PASSAGES + 1];
    assert!(matches!(
        pollster::block_on(reranker.rerank("q", &many)),
        Err(ProviderError::InvalidRequest { .. })
    ));
    assert!(binding.inputs.borrow().is_empty());
}

#[test]
fn malformed_workers_ai_outputs_are_refused() {
    let cases = [
        json!({ "result": [] }),
        json!({ "response": [{ "id": 0, "score": 1.0 }] }),
        json!({ "response": [{ "id": 0, "score": 1.0 }, { "id": 0, "score": 2.0 }] }),
        json!({ "response": [{ "id": 0, "score": 1.0 }, { "id": 2, "score": 2.0 }] }),
        json!({ "response": [{ "id": 0, "score": "high" }, { "id": 1, "score": 2.0 }] }),
    ];
    for case in cases {
        assert!(parse_workers_ai_rerank(case.clone(), 2).is_err(), "{case}");
    }
    assert_eq!(
        parse_workers_ai_rerank(
            json!({ "response": [{ "id": 1, "score": 0.9 }, { "id": 0, "score": 0.1 }] }),
            2
        )
        .unwrap(),
        vec![0.1, 0.9]
    );
}

/// Answers every request with `responses` in order, recording the requests.
#[derive(Debug, Default)]
struct ScriptedTransport {
    requests: RefCell<Vec<HttpRequest>>,
    responses: RefCell<Vec<HttpResponse>>,
}

fn response(status: u16, body: &str) -> HttpResponse {
    HttpResponse {
        status,
        headers: vec![("content-type".into(), "application/json".into())],
        body: body.as_bytes().to_vec(),
    }
}

impl HttpTransport for ScriptedTransport {
    async fn send(&self, req: HttpRequest) -> Result<HttpResponse, TransportError> {
        self.requests.borrow_mut().push(req);
        Ok(self.responses.borrow_mut().remove(0))
    }
}

#[test]
fn http_reranker_posts_the_rerank_shape_and_reorders_by_index() {
    let transport = ScriptedTransport::default();
    transport.responses.borrow_mut().extend([
        response(503, r#"{"error":"busy"}"#),
        response(
            200,
            r#"{"results":[{"index":1,"relevance_score":0.8},{"index":0,"relevance_score":-1.5}]}"#,
        ),
    ]);
    let config = OpenAiConfig::new("http://127.0.0.1:9/v1", "local-rerank").with_api_key("k");
    let reranker = HttpReranker::new(config, &transport, retrier());
    let scores = pollster::block_on(reranker.rerank("q", &texts(&["a", "b"]))).unwrap();
    assert_eq!(scores, vec![-1.5, 0.8]);
    let requests = transport.requests.borrow();
    assert_eq!(requests.len(), 2, "the 503 is retried");
    assert_eq!(requests[1].url, "http://127.0.0.1:9/v1/rerank");
    assert_eq!(requests[1].header("authorization"), Some("Bearer k"));
    let body: Value = serde_json::from_slice(&requests[1].body).unwrap();
    assert_eq!(
        body,
        json!({"model": "local-rerank", "query": "q", "documents": ["a", "b"], "top_n": 2})
    );
}

#[test]
fn http_reranker_errors_name_the_provider() {
    let transport = ScriptedTransport::default();
    transport
        .responses
        .borrow_mut()
        .push(response(400, r#"{"error":"bad"}"#));
    let reranker = HttpReranker::new(OpenAiConfig::new("http://h", "m"), &transport, retrier());
    let err = pollster::block_on(reranker.rerank("q", &texts(&["a"]))).unwrap_err();
    assert!(err.to_string().contains(HTTP_PROVIDER), "{err}");
    for body in [
        r#"{"results":[]}"#,
        r#"{"results":[{"index":3,"relevance_score":1}]}"#,
        r#"{"data":[]}"#,
    ] {
        assert!(parse_http_rerank(body.as_bytes(), 1).is_err(), "{body}");
    }
}
