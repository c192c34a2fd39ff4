//! The AI SDK front door: the body `useChat`'s default transport posts to
//! `/api/chat` (`{ id, messages: [{ id, role, parts }], trigger, … }`) turned
//! into this service's [`ChatPlan`], and the answer as the AI SDK's UI message
//! stream. Pure shapes; never retrieves, generates or writes a response.
//!
//! Wire details follow the `ai` package (v6): `DefaultChatTransport` posts
//! the body above and parses each `data:` event against its
//! `uiMessageChunkSchema`; the server side (`createUIMessageStreamResponse`)
//! sends the headers in [`HEADERS`] and ends with `data: [DONE]`.

use crate::api::openai::question_and_history;
use crate::query::{ChatBody, ChatPlan, QueryError, Source};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// The response headers of a UI message stream (the `ai` package's
/// `UI_MESSAGE_STREAM_HEADERS`).
pub const HEADERS: [(&str, &str); 5] = [
    ("content-type", "text/event-stream"),
    ("cache-control", "no-cache"),
    ("connection", "keep-alive"),
    ("x-vercel-ai-ui-message-stream", "v1"),
    ("x-accel-buffering", "no"),
];

/// The event that ends every stream.
pub const DONE_EVENT: &str = "data: [DONE]\n\n";

/// The id of the answer's one text part.
pub const TEXT_PART_ID: &str = "answer";

/// Media type of a source document (the service stores markdown).
pub const SOURCE_MEDIA_TYPE: &str = "text/markdown";

/// Key of this service's entry in a source part's `providerMetadata`.
pub const PROVIDER_METADATA_KEY: &str = "portfolio";

/// Whether a `/api/chat` body is the AI SDK's (it has `messages`) rather
/// than this service's `{ question }`; either way the body is then
/// validated by its own planner.
#[must_use]
pub fn is_ui_chat(body: &[u8]) -> bool {
    serde_json::from_slice::<std::collections::HashMap<String, serde::de::IgnoredAny>>(body)
        .is_ok_and(|fields| fields.contains_key("messages"))
}

#[derive(Debug, Deserialize)]
struct UiPart {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: Option<String>,
}

#[derive(Debug, Deserialize)]
struct UiMessage {
    role: String,
    #[serde(default)]
    parts: Vec<UiPart>,
}

/// The AI SDK's request. Its other fields (`id`, `trigger`, `messageId`,
/// anything a front end adds through the transport's `body`) are ignored.
#[derive(Debug, Deserialize)]
struct UiChatRequest {
    messages: Vec<UiMessage>,
    /// Extension: restrict retrieval to one company (slug).
    #[serde(default)]
    company: Option<String>,
    /// Extension: restrict retrieval to chunks carrying one of these tags.
    #[serde(default)]
    tags: Option<Vec<String>>,
}

/// Parses and validates an AI SDK chat body: the last message (the user's)
/// is the question, earlier user and assistant messages the history (their
/// text parts; sources and other parts are dropped). Always streamed.
pub fn plan_ui_chat(body: &[u8]) -> Result<ChatPlan, QueryError> {
    let request: UiChatRequest =
        serde_json::from_slice(body).map_err(|e| QueryError::BadJson(e.to_string()))?;
    let turns = request
        .messages
        .into_iter()
        .map(|m| {
            let text = m
                .parts
                .iter()
                .filter(|p| p.kind == "text")
                .filter_map(|p| p.text.as_deref())
                .collect::<Vec<_>>()
                .join("\n");
            (m.role, text)
        })
        .collect();
    let (question, history) = question_and_history(turns)?;
    ChatBody {
        question,
        company: request.company,
        tags: request.tags,
        history: Some(history),
        stream: Some(true),
    }
    .into_plan(true)
}

/// One chunk of the UI message stream (a subset of the `ai` package's
/// `uiMessageChunkSchema`: what a grounded answer needs).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum UiChunk {
    /// Opens the assistant's message.
    Start {
        /// The message id the client stores the answer under.
        #[serde(rename = "messageId")]
        message_id: String,
    },
    /// Opens the one step of the answer.
    StartStep,
    /// One cited passage, as a document source part.
    SourceDocument {
        /// The citation number, as text: `[n]` in the answer.
        #[serde(rename = "sourceId")]
        source_id: String,
        /// Always [`SOURCE_MEDIA_TYPE`].
        #[serde(rename = "mediaType")]
        media_type: String,
        /// The document's title.
        title: String,
        /// The document's key.
        filename: String,
        /// `{ portfolio: { number, key, company, heading_path, text, score } }`.
        #[serde(rename = "providerMetadata")]
        provider_metadata: Value,
    },
    /// Opens the answer's text part.
    TextStart {
        /// The part's id.
        id: String,
    },
    /// A piece of the answer.
    TextDelta {
        /// The part's id.
        id: String,
        /// The text.
        delta: String,
    },
    /// Closes the answer's text part.
    TextEnd {
        /// The part's id.
        id: String,
    },
    /// Closes the step.
    FinishStep,
    /// Closes the message.
    Finish {
        /// `stop`, or `error` after an error chunk.
        #[serde(rename = "finishReason")]
        finish_reason: String,
    },
    /// A failure the client's `onError` receives.
    Error {
        /// What went wrong (never a provider's raw detail).
        #[serde(rename = "errorText")]
        error_text: String,
    },
}

impl UiChunk {
    /// The chunk as one SSE `data:` event.
    #[must_use]
    pub fn event(&self) -> String {
        format!(
            "data: {}\n\n",
            serde_json::to_string(self).unwrap_or_else(|_| "{}".to_owned())
        )
    }
}

/// The chunks that open an answer: the message, the step, one source part
/// per cited passage, then the text part.
#[must_use]
pub fn opening_chunks(message_id: &str, sources: &[Source]) -> Vec<UiChunk> {
    let mut chunks = vec![
        UiChunk::Start {
            message_id: message_id.to_owned(),
        },
        UiChunk::StartStep,
    ];
    chunks.extend(sources.iter().map(|s| UiChunk::SourceDocument {
        source_id: s.number.to_string(),
        media_type: SOURCE_MEDIA_TYPE.to_owned(),
        title: s.title.clone(),
        filename: s.key.clone(),
        provider_metadata: json!({ PROVIDER_METADATA_KEY: s }),
    }));
    chunks.push(UiChunk::TextStart {
        id: TEXT_PART_ID.to_owned(),
    });
    chunks
}

/// A piece of the answer.
#[must_use]
pub fn text_chunk(delta: &str) -> UiChunk {
    UiChunk::TextDelta {
        id: TEXT_PART_ID.to_owned(),
        delta: delta.to_owned(),
    }
}

/// The chunks that close an answer: the text part, the step and the
/// message; after a failure, an error chunk first and `finishReason: error`.
#[must_use]
pub fn closing_chunks(error: Option<&str>) -> Vec<UiChunk> {
    let mut chunks = vec![
        UiChunk::TextEnd {
            id: TEXT_PART_ID.to_owned(),
        },
        UiChunk::FinishStep,
    ];
    if let Some(error_text) = error {
        chunks.push(UiChunk::Error {
            error_text: error_text.to_owned(),
        });
    }
    chunks.push(UiChunk::Finish {
        finish_reason: if error.is_some() { "error" } else { "stop" }.to_owned(),
    });
    chunks
}

/// The whole stream of a request refused before any answer (bad body,
/// rate limit): one error chunk, so `useChat` shows it as its `error`.
#[must_use]
pub fn refusal_events(error_text: &str) -> String {
    let mut events = UiChunk::Error {
        error_text: error_text.to_owned(),
    }
    .event();
    events.push_str(DONE_EVENT);
    events
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::HistoryTurnBody;

    fn body(value: Value) -> Vec<u8> {
        value.to_string().into_bytes()
    }

    fn user(id: &str, text: &str) -> Value {
        json!({ "id": id, "role": "user", "parts": [{ "type": "text", "text": text }] })
    }

    #[test]
    fn the_ai_sdk_body_is_told_from_the_question_body() {
        assert!(is_ui_chat(&body(
            json!({ "id": "c", "messages": [], "trigger": "submit-message" })
        )));
        assert!(!is_ui_chat(&body(json!({ "question": "hi" }))));
        assert!(!is_ui_chat(b"{broken"));
        assert!(!is_ui_chat(b"[1]"));
    }

    #[test]
    fn the_last_user_message_is_the_question_and_text_parts_the_history() {
        let plan = plan_ui_chat(&body(json!({
            "id": "chat-1",
            "trigger": "submit-message",
            "messageId": null,
            "company": "acme",
            "messages": [
                user("m1", "What is ZX-4000?"),
                { "id": "m2", "role": "assistant", "parts": [
                    { "type": "step-start" },
                    { "type": "source-document", "sourceId": "1", "mediaType": "text/markdown", "title": "ZX" },
                    { "type": "text", "text": "A widget [1].", "state": "done" },
                ] },
                user("m3", "Who makes it?"),
            ],
        })))
        .unwrap();
        assert_eq!(plan.search.query, "Who makes it?");
        assert_eq!(plan.search.company.as_deref(), Some("acme"));
        assert!(plan.stream);
        assert_eq!(
            plan.history,
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
    }

    #[test]
    fn refused_bodies_keep_the_chat_codes() {
        let cases = [
            (json!({ "messages": [] }), "bad_messages"),
            (
                json!({ "messages": [{ "id": "a", "role": "assistant", "parts": [{ "type": "text", "text": "x" }] }] }),
                "bad_messages",
            ),
            (json!({ "messages": [user("a", " ")] }), "empty_query"),
            (
                json!({ "messages": [user("a", &"x".repeat(2001))] }),
                "query_too_long",
            ),
            (
                json!({ "messages": [user("a", "x")], "tags": vec!["t"; 11] }),
                "bad_tags",
            ),
            (json!({ "messages": "x" }), "bad_json"),
        ];
        for (value, code) in cases {
            assert_eq!(
                plan_ui_chat(&body(value.clone())).unwrap_err().code(),
                code,
                "{value}"
            );
        }
    }

    fn event_json(event: &str) -> Value {
        let data = event
            .strip_prefix("data: ")
            .and_then(|e| e.strip_suffix("\n\n"))
            .unwrap();
        serde_json::from_str(data).unwrap()
    }

    #[test]
    fn chunks_have_the_ai_sdk_field_names() {
        let source = Source {
            number: 2,
            key: "acme/zx.md".into(),
            title: "ZX-4000".into(),
            company: Some("acme".into()),
            heading_path: "Specs".into(),
            text: "It hums.".into(),
            score: 0.25,
        };
        let opening: Vec<Value> = opening_chunks("msg-1", &[source])
            .iter()
            .map(|c| event_json(&c.event()))
            .collect();
        assert_eq!(opening[0], json!({ "type": "start", "messageId": "msg-1" }));
        assert_eq!(opening[1], json!({ "type": "start-step" }));
        assert_eq!(opening[2]["type"], "source-document");
        assert_eq!(opening[2]["sourceId"], "2");
        assert_eq!(opening[2]["mediaType"], "text/markdown");
        assert_eq!(opening[2]["title"], "ZX-4000");
        assert_eq!(opening[2]["filename"], "acme/zx.md");
        assert_eq!(
            opening[2]["providerMetadata"]["portfolio"]["heading_path"],
            "Specs"
        );
        assert_eq!(
            opening[3],
            json!({ "type": "text-start", "id": TEXT_PART_ID })
        );
        assert_eq!(
            event_json(&text_chunk("a \"b\"\n").event()),
            json!({ "type": "text-delta", "id": TEXT_PART_ID, "delta": "a \"b\"\n" })
        );
        let closing: Vec<Value> = closing_chunks(None)
            .iter()
            .map(|c| event_json(&c.event()))
            .collect();
        assert_eq!(
            closing,
            vec![
                json!({ "type": "text-end", "id": TEXT_PART_ID }),
                json!({ "type": "finish-step" }),
                json!({ "type": "finish", "finishReason": "stop" }),
            ]
        );
        let failed: Vec<Value> = closing_chunks(Some("boom"))
            .iter()
            .map(|c| event_json(&c.event()))
            .collect();
        assert_eq!(failed[2], json!({ "type": "error", "errorText": "boom" }));
        assert_eq!(
            failed[3],
            json!({ "type": "finish", "finishReason": "error" })
        );
    }

    #[test]
    fn a_refusal_is_one_error_chunk_then_done() {
        assert_eq!(
            refusal_events("no"),
            "data: {\"type\":\"error\",\"errorText\":\"no\"}\n\ndata: [DONE]\n\n"
        );
        assert!(HEADERS.contains(&("x-vercel-ai-ui-message-stream", "v1")));
    }
}
