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
mod tests;
