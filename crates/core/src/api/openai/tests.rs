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
    let p =
        plan(json!({ "messages": [{ "role": "user", "content": "hi" }], "stream": true })).unwrap();
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
