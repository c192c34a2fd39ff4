//! The OpenAI-compatible front door (`POST /v1/chat/completions`,
//! `GET /v1/models`): its request turned into this service's [`ChatPlan`],
//! and its answer, stream chunks and error envelope as OpenAI's clients parse
//! them. Pure shapes; never retrieves, generates or picks an HTTP route.
//!
//! Wire details follow the official `openai` client (v6): a completion is
//! `chat.completion`, a streamed one `chat.completion.chunk` events ended by
//! `data: [DONE]`, and an SSE event carrying `error` is raised as `APIError`.
//! Two documented extensions: `company`/`tags` in the request (the same
//! filters as `/api/chat`), `sources` in the answer and on the last chunk.

use crate::query::{ChatBody, ChatPlan, HistoryTurnBody, QueryError, Source, MAX_HISTORY_TURNS};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The one model this service lists and answers as: retrieval over the
/// documents, then the configured chat provider.
pub const MODEL_ID: &str = "portfolio-docs";

/// `owned_by` of the listed model.
pub const MODEL_OWNER: &str = "portfolio-docs";

/// A message's content: a string, or content parts of which the `text` ones count.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum MessageContent {
    Text(String),
    Parts(Vec<ContentPart>),
}

#[derive(Debug, Clone, Deserialize)]
struct ContentPart {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: Option<String>,
}

impl MessageContent {
    fn text(&self) -> String {
        match self {
            Self::Text(text) => text.clone(),
            Self::Parts(parts) => parts
                .iter()
                .filter(|p| p.kind == "text")
                .filter_map(|p| p.text.as_deref())
                .collect::<Vec<_>>()
                .join("\n"),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
struct RequestMessage {
    role: String,
    #[serde(default)]
    content: Option<MessageContent>,
}

/// `POST /v1/chat/completions` as far as this service reads it. OpenAI's
/// other parameters (`temperature`, `max_tokens`, `tools`, …) are accepted
/// and ignored: the answer is always grounded in retrieved passages.
#[derive(Debug, Clone, Deserialize)]
struct CompletionRequest {
    #[serde(default)]
    model: Option<String>,
    messages: Vec<RequestMessage>,
    #[serde(default)]
    stream: Option<bool>,
    /// Extension: restrict retrieval to one company (slug).
    #[serde(default)]
    company: Option<String>,
    /// Extension: restrict retrieval to chunks carrying one of these tags.
    #[serde(default)]
    tags: Option<Vec<String>>,
}

/// A validated completion request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompletionPlan {
    /// The chat it asks for, validated as `/api/chat` validates its body.
    pub chat: ChatPlan,
    /// The model id to answer as.
    pub model: String,
}

/// Why a completion request is refused, with the HTTP status, OpenAI
/// `param` and this service's code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CompletionError {
    /// The body or one of its fields is invalid (as for `/api/chat`).
    #[error(transparent)]
    Query(#[from] QueryError),
    /// `model` names a model this service does not serve.
    #[error("the model {0:?} does not exist; GET /v1/models lists {MODEL_ID:?}")]
    UnknownModel(String),
}

impl CompletionError {
    /// HTTP status: 404 for an unknown model (as OpenAI answers), else 400.
    #[must_use]
    pub fn status(&self) -> u16 {
        match self {
            Self::UnknownModel(_) => 404,
            Self::Query(_) => 400,
        }
    }

    /// This service's stable code (`model_not_found` as OpenAI's).
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            Self::UnknownModel(_) => "model_not_found",
            Self::Query(e) => e.code(),
        }
    }

    /// The request field at fault, when one is.
    #[must_use]
    pub fn param(&self) -> Option<&'static str> {
        match self {
            Self::UnknownModel(_) => Some("model"),
            Self::Query(QueryError::Tags(_)) => Some("tags"),
            Self::Query(QueryError::Company) => Some("company"),
            Self::Query(
                QueryError::Messages(_)
                | QueryError::History(_)
                | QueryError::Empty { .. }
                | QueryError::TooLong { .. },
            ) => Some("messages"),
            Self::Query(_) => None,
        }
    }
}

/// Turns a message list into the question (the last message, which must be
/// the user's) and the history (the earlier user and assistant messages,
/// the latest [`MAX_HISTORY_TURNS`] of them: a chat client resends the whole
/// conversation every time). `system`/`developer` messages are dropped: the
/// service's own prompt frames the answer. Shared with the AI SDK front door.
pub fn question_and_history(
    turns: Vec<(String, String)>,
) -> Result<(String, Vec<HistoryTurnBody>), QueryError> {
    let mut turns: Vec<(String, String)> = turns
        .into_iter()
        .filter(|(role, _)| role != "system" && role != "developer")
        .collect();
    let Some((role, question)) = turns.pop() else {
        return Err(QueryError::Messages(
            "holds no user message; the last message is the question".into(),
        ));
    };
    if role != "user" {
        return Err(QueryError::Messages(format!(
            "ends with a {role:?} message; the last message must be the user's question"
        )));
    }
    let skip = turns.len().saturating_sub(MAX_HISTORY_TURNS);
    let history = turns
        .into_iter()
        .skip(skip)
        .map(|(role, content)| HistoryTurnBody { role, content })
        .collect();
    Ok((question, history))
}

/// Parses and validates a `POST /v1/chat/completions` body.
pub fn plan_completion(body: &[u8]) -> Result<CompletionPlan, CompletionError> {
    let request: CompletionRequest =
        serde_json::from_slice(body).map_err(|e| QueryError::BadJson(e.to_string()))?;
    let model = match request.model {
        None => MODEL_ID.to_owned(),
        Some(m) if m == MODEL_ID => m,
        Some(m) => return Err(CompletionError::UnknownModel(m)),
    };
    let turns = request
        .messages
        .into_iter()
        .map(|m| (m.role, m.content.map(|c| c.text()).unwrap_or_default()))
        .collect();
    let (question, history) = question_and_history(turns)?;
    let chat = ChatBody {
        question,
        company: request.company,
        tags: request.tags,
        history: Some(history),
        stream: Some(request.stream.unwrap_or(false)),
    }
    .into_plan(false)?;
    Ok(CompletionPlan { chat, model })
}

/// OpenAI's error envelope: `{ "error": { message, type, param, code } }`,
/// `code` being this service's code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OpenAiErrorBody {
    /// The error itself.
    pub error: OpenAiError,
}

/// One error as OpenAI's clients read it (`APIError.code`, `.param`, `.type`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OpenAiError {
    /// What went wrong, for a person.
    pub message: String,
    /// OpenAI's error class, from the status.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The request field at fault.
    pub param: Option<String>,
    /// This service's stable code (`bad_json`, `rate_limited`, …).
    pub code: String,
}

impl OpenAiErrorBody {
    /// The envelope for an error of `status`.
    #[must_use]
    pub fn new(status: u16, code: &str, message: String, param: Option<&str>) -> Self {
        let kind = match status {
            401 | 403 => "authentication_error",
            429 => "rate_limit_error",
            s if s >= 500 => "server_error",
            _ => "invalid_request_error",
        };
        Self {
            error: OpenAiError {
                message,
                kind,
                param: param.map(str::to_owned),
                code: code.to_owned(),
            },
        }
    }
}

/// `GET /v1/models`.
#[must_use]
pub fn model_list(created_secs: u64) -> Value {
    serde_json::json!({
        "object": "list",
        "data": [{ "id": MODEL_ID, "object": "model", "created": created_secs, "owned_by": MODEL_OWNER }],
    })
}

/// The assistant's message of a non-streamed completion.
#[derive(Debug, Clone, Serialize)]
struct AssistantMessage<'a> {
    role: &'static str,
    content: &'a str,
    refusal: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
struct Choice<'a> {
    index: u32,
    message: AssistantMessage<'a>,
    finish_reason: &'static str,
    logprobs: Option<Value>,
}

/// A non-streamed completion (`object: "chat.completion"`); `sources`: the
/// extension naming the passages the `[n]` citations refer to.
#[derive(Debug, Clone, Serialize)]
pub struct Completion<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: [Choice<'a>; 1],
    sources: &'a [Source],
}

/// The body of a non-streamed answer.
#[must_use]
pub fn completion<'a>(
    id: &'a str,
    created_secs: u64,
    model: &'a str,
    answer: &'a str,
    sources: &'a [Source],
) -> Completion<'a> {
    Completion {
        id,
        object: "chat.completion",
        created: created_secs,
        model,
        choices: [Choice {
            index: 0,
            message: AssistantMessage {
                role: "assistant",
                content: answer,
                refusal: None,
            },
            finish_reason: "stop",
            logprobs: None,
        }],
        sources,
    }
}

/// What one streamed chunk adds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ChunkDelta<'a> {
    /// The first chunk: the assistant's role, no text yet.
    Role,
    /// A piece of the answer.
    Text(&'a str),
    /// The last chunk: `finish_reason: "stop"` and the sources.
    Finish(&'a [Source]),
}

/// One `data:` event of a streamed completion, `[DONE]` excepted.
#[must_use]
pub fn chunk_event(id: &str, created_secs: u64, model: &str, delta: ChunkDelta<'_>) -> String {
    let (delta_json, finish, sources) = match delta {
        ChunkDelta::Role => (
            serde_json::json!({ "role": "assistant", "content": "" }),
            None,
            None,
        ),
        ChunkDelta::Text(text) => (serde_json::json!({ "content": text }), None, None),
        ChunkDelta::Finish(sources) => (serde_json::json!({}), Some("stop"), Some(sources)),
    };
    let mut chunk = serde_json::json!({
        "id": id,
        "object": "chat.completion.chunk",
        "created": created_secs,
        "model": model,
        "choices": [{ "index": 0, "delta": delta_json, "finish_reason": finish, "logprobs": null }],
    });
    if let Some(sources) = sources {
        chunk["sources"] = serde_json::to_value(sources).unwrap_or(Value::Null);
    }
    sse_data(&chunk)
}

/// The event that fails a stream already under way: the `openai` client
/// raises an event carrying `error` as an `APIError`.
#[must_use]
pub fn error_event(error: &OpenAiErrorBody) -> String {
    format!(
        "data: {}\n\n",
        serde_json::to_string(error).unwrap_or_else(|_| "{}".to_owned())
    )
}

/// The event that ends every stream.
pub const DONE_EVENT: &str = "data: [DONE]\n\n";

fn sse_data(value: &Value) -> String {
    format!("data: {value}\n\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn source(n: usize) -> Source {
        Source {
            number: n,
            key: format!("acme/doc-{n}.md"),
            title: format!("Doc {n}"),
            company: Some("acme".into()),
            heading_path: "Intro".into(),
            text: "passage".into(),
            score: 0.5,
        }
    }

    fn plan(body: Value) -> Result<CompletionPlan, CompletionError> {
        plan_completion(body.to_string().as_bytes())
    }

    #[test]
    fn the_last_user_message_is_the_question_and_earlier_ones_the_history() {
        let p = plan(json!({
            "model": MODEL_ID,
            "messages": [
                { "role": "system", "content": "Be brief." },
                { "role": "user", "content": "What is ZX-4000?" },
                { "role": "assistant", "content": "A widget [1]." },
                { "role": "user", "content": [{ "type": "text", "text": "Who makes it?" }, { "type": "image_url", "image_url": { "url": "x" } }] },
            ],
            "temperature": 0.2,
            "company": "acme",
            "tags": ["Hardware"],
        }))
        .unwrap();
        assert_eq!(p.chat.search.query, "Who makes it?");
        assert_eq!(p.chat.search.company.as_deref(), Some("acme"));
        assert_eq!(p.chat.search.tags, vec!["hardware".to_owned()]);
        assert_eq!(
            p.chat.history,
            vec![
                HistoryTurnBody {
                    role: "user".into(),
                    content: "What is ZX-4000?".into()
                },
                HistoryTurnBody {
                    role: "assistant".into(),
                    content: "A widget [1].".into()
                },
            ]
        );
        assert!(!p.chat.stream);
        assert_eq!(p.model, MODEL_ID);
    }

    #[test]
    fn streaming_and_a_missing_model_are_accepted() {
        let p = plan(json!({ "messages": [{ "role": "user", "content": "hi" }], "stream": true }))
            .unwrap();
        assert!(p.chat.stream);
        assert_eq!(p.model, MODEL_ID);
    }

    #[test]
    fn only_the_latest_history_turns_are_kept() {
        let mut messages: Vec<Value> = (0..30)
            .map(|i| json!({ "role": if i % 2 == 0 { "user" } else { "assistant" }, "content": format!("turn {i}") }))
            .collect();
        messages.push(json!({ "role": "user", "content": "last" }));
        let p = plan(json!({ "model": MODEL_ID, "messages": messages })).unwrap();
        assert_eq!(p.chat.history.len(), MAX_HISTORY_TURNS);
        assert_eq!(p.chat.history[0].content, "turn 10");
        assert_eq!(p.chat.history.last().unwrap().content, "turn 29");
    }

    #[test]
    fn bad_requests_name_the_code_param_and_status() {
        let cases = [
            (
                json!({ "model": "gpt-4o", "messages": [{ "role": "user", "content": "hi" }] }),
                404,
                "model_not_found",
                Some("model"),
            ),
            (
                json!({ "model": MODEL_ID, "messages": [] }),
                400,
                "bad_messages",
                Some("messages"),
            ),
            (
                json!({ "model": MODEL_ID, "messages": [{ "role": "assistant", "content": "hi" }] }),
                400,
                "bad_messages",
                Some("messages"),
            ),
            (
                json!({ "model": MODEL_ID, "messages": [{ "role": "user", "content": "  " }] }),
                400,
                "empty_query",
                Some("messages"),
            ),
            (
                json!({ "model": MODEL_ID, "messages": [{ "role": "user", "content": "x".repeat(2001) }] }),
                400,
                "query_too_long",
                Some("messages"),
            ),
            (
                json!({ "model": MODEL_ID, "messages": [{ "role": "tool", "content": "x" }, { "role": "user", "content": "x" }] }),
                400,
                "bad_history",
                Some("messages"),
            ),
            (
                json!({ "model": MODEL_ID, "messages": [{ "role": "user", "content": "x" }], "tags": vec!["t"; 11] }),
                400,
                "bad_tags",
                Some("tags"),
            ),
            (
                json!({ "model": MODEL_ID, "messages": [{ "role": "user", "content": "x" }], "company": "c".repeat(129) }),
                400,
                "bad_company",
                Some("company"),
            ),
            (json!({ "model": MODEL_ID }), 400, "bad_json", None),
        ];
        for (body, status, code, param) in cases {
            let e = plan(body.clone()).unwrap_err();
            assert_eq!(
                (e.status(), e.code(), e.param()),
                (status, code, param),
                "{body}"
            );
        }
        let e = plan_completion(b"{not json").unwrap_err();
        assert_eq!(e.code(), "bad_json");
    }

    #[test]
    fn errors_have_openai_s_envelope() {
        let body = OpenAiErrorBody::new(
            404,
            "model_not_found",
            "no such model".into(),
            Some("model"),
        );
        assert_eq!(
            serde_json::to_value(&body).unwrap(),
            json!({ "error": { "message": "no such model", "type": "invalid_request_error", "param": "model", "code": "model_not_found" } })
        );
        assert_eq!(
            OpenAiErrorBody::new(429, "rate_limited", String::new(), None)
                .error
                .kind,
            "rate_limit_error"
        );
        assert_eq!(
            OpenAiErrorBody::new(502, "provider_error", String::new(), None)
                .error
                .kind,
            "server_error"
        );
        assert_eq!(
            error_event(&body),
            format!("data: {}\n\n", serde_json::to_string(&body).unwrap())
        );
    }

    #[test]
    fn a_completion_carries_the_answer_and_the_sources() {
        let sources = [source(1), source(2)];
        let value = serde_json::to_value(completion(
            "chatcmpl-1",
            7,
            MODEL_ID,
            "It is a widget [1].",
            &sources,
        ))
        .unwrap();
        assert_eq!(value["object"], "chat.completion");
        assert_eq!(value["created"], 7);
        assert_eq!(value["choices"][0]["message"]["role"], "assistant");
        assert_eq!(
            value["choices"][0]["message"]["content"],
            "It is a widget [1]."
        );
        assert_eq!(value["choices"][0]["finish_reason"], "stop");
        assert_eq!(value["sources"][1]["key"], "acme/doc-2.md");
        assert_eq!(value["sources"][1]["number"], 2);
    }

    fn event_json(event: &str) -> Value {
        let data = event
            .strip_prefix("data: ")
            .and_then(|e| e.strip_suffix("\n\n"))
            .unwrap();
        serde_json::from_str(data).unwrap()
    }

    #[test]
    fn stream_chunks_open_with_the_role_and_end_with_the_sources() {
        let first = event_json(&chunk_event("c", 7, MODEL_ID, ChunkDelta::Role));
        assert_eq!(first["object"], "chat.completion.chunk");
        assert_eq!(
            first["choices"][0]["delta"],
            json!({ "role": "assistant", "content": "" })
        );
        assert_eq!(first["choices"][0]["finish_reason"], Value::Null);
        assert!(first.get("sources").is_none());
        let text = event_json(&chunk_event(
            "c",
            7,
            MODEL_ID,
            ChunkDelta::Text("a \"quoted\"\nline"),
        ));
        assert_eq!(text["choices"][0]["delta"]["content"], "a \"quoted\"\nline");
        let sources = [source(1)];
        let last = event_json(&chunk_event("c", 7, MODEL_ID, ChunkDelta::Finish(&sources)));
        assert_eq!(last["choices"][0]["finish_reason"], "stop");
        assert_eq!(last["sources"][0]["title"], "Doc 1");
        assert_eq!(DONE_EVENT, "data: [DONE]\n\n");
    }

    #[test]
    fn the_model_list_names_the_one_model() {
        let list = model_list(9);
        assert_eq!(list["object"], "list");
        assert_eq!(list["data"][0]["id"], MODEL_ID);
        assert_eq!(list["data"][0]["object"], "model");
    }
}
