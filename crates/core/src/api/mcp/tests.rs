use super::*;

fn step(value: Value) -> McpStep {
    handle_message(value.to_string().as_bytes(), "1.2.3")
}

fn reply(value: Value) -> Value {
    match step(value) {
        McpStep::Reply(r) => r,
        other => panic!("expected a reply, got {other:?}"),
    }
}

fn refusal(body: &[u8]) -> i64 {
    match handle_message(body, "1") {
        McpStep::Refuse(r) => {
            assert_eq!(r["id"], Value::Null);
            r["error"]["code"].as_i64().unwrap()
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn request(method: &str, params: Value) -> Value {
    json!({ "jsonrpc": "2.0", "id": 7, "method": method, "params": params })
}

fn call_tool(name: &str, arguments: Value) -> McpStep {
    step(request(
        "tools/call",
        json!({ "name": name, "arguments": arguments }),
    ))
}

#[test]
fn initialize_echoes_a_supported_version_else_offers_the_latest() {
    for asked in SUPPORTED_PROTOCOL_VERSIONS {
        let r = reply(request(
            "initialize",
            json!({ "protocolVersion": asked, "capabilities": {}, "clientInfo": { "name": "t", "version": "1" } }),
        ));
        assert_eq!(r["result"]["protocolVersion"], asked);
    }
    let r = reply(request(
        "initialize",
        json!({ "protocolVersion": "1999-01-01" }),
    ));
    assert_eq!(r["id"], 7);
    assert_eq!(r["result"]["protocolVersion"], LATEST_PROTOCOL_VERSION);
    assert_eq!(r["result"]["capabilities"]["tools"]["listChanged"], false);
    assert_eq!(r["result"]["serverInfo"]["version"], "1.2.3");
}

#[test]
fn notifications_are_accepted_without_an_answer() {
    assert_eq!(
        step(json!({ "jsonrpc": "2.0", "method": "notifications/initialized" })),
        McpStep::Accepted
    );
    assert_eq!(
        step(
            json!({ "jsonrpc": "2.0", "method": "notifications/cancelled", "params": { "requestId": 1 } })
        ),
        McpStep::Accepted
    );
}

#[test]
fn malformed_messages_are_refused_with_json_rpc_codes() {
    assert_eq!(refusal(b"{oops"), PARSE_ERROR);
    let cases = [
        (json!([request("ping", json!({}))]), INVALID_REQUEST),
        (json!("ping"), INVALID_REQUEST),
        (
            json!({ "jsonrpc": "1.0", "id": 1, "method": "ping" }),
            INVALID_REQUEST,
        ),
        (json!({ "id": 1, "method": "ping" }), INVALID_REQUEST),
        (
            json!({ "jsonrpc": "2.0", "id": 1.5, "method": "ping" }),
            INVALID_REQUEST,
        ),
        (
            json!({ "jsonrpc": "2.0", "id": null, "method": "ping" }),
            INVALID_REQUEST,
        ),
        (
            json!({ "jsonrpc": "2.0", "id": 3, "result": {} }),
            INVALID_REQUEST,
        ),
        (
            json!({ "jsonrpc": "2.0", "id": 3, "method": 4 }),
            INVALID_REQUEST,
        ),
        (
            json!({ "jsonrpc": "2.0", "id": 3, "method": "ping", "params": [1] }),
            INVALID_PARAMS,
        ),
        (
            json!({ "jsonrpc": "2.0", "id": 3, "method": "ping", "params": null }),
            INVALID_PARAMS,
        ),
        (
            json!({ "jsonrpc": "2.0", "id": MAX_SAFE_ID + 1, "method": "ping" }),
            INVALID_REQUEST,
        ),
        (
            json!({ "jsonrpc": "2.0", "id": -3.1e28, "method": "ping" }),
            INVALID_REQUEST,
        ),
    ];
    for (body, code) in cases {
        assert_eq!(refusal(body.to_string().as_bytes()), code, "{body}");
    }
}

#[test]
fn errors_of_well_formed_requests_are_json_rpc_answers() {
    assert_eq!(
        reply(request("resources/list", json!({})))["error"]["code"],
        METHOD_NOT_FOUND
    );
    assert_eq!(
        reply(request("tools/call", json!({ "name": "rm_rf" })))["error"]["code"],
        INVALID_PARAMS
    );
    assert_eq!(
        reply(request("tools/call", json!({})))["error"]["code"],
        INVALID_PARAMS
    );
    assert_eq!(
        reply(request("ping", json!({}))),
        json!({ "jsonrpc": "2.0", "id": 7, "result": {} })
    );
    assert_eq!(
        reply(json!({ "jsonrpc": "2.0", "id": "a", "method": "ping" }))["id"],
        "a"
    );
    // Ids are echoed as sent, up to ±(2^53 - 1), `-3.0` being the integer -3.
    let most = -(MAX_SAFE_ID as i64);
    assert_eq!(
        reply(json!({ "jsonrpc": "2.0", "id": most, "method": "ping" }))["id"],
        most
    );
    let float_id: Value = serde_json::from_str("-3222716460.0").unwrap();
    assert_eq!(
        reply(json!({ "jsonrpc": "2.0", "id": float_id, "method": "ping" }))["id"],
        float_id
    );
}

#[test]
fn every_tool_has_an_object_input_schema() {
    let tools = tool_definitions();
    let names: Vec<&str> = tools
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            tool::SEARCH_DOCUMENTS,
            tool::ASK_QUESTION,
            tool::LIST_COMPANIES,
            tool::GET_DOCUMENT
        ]
    );
    for t in tools.as_array().unwrap() {
        assert_eq!(t["inputSchema"]["type"], "object", "{}", t["name"]);
        for required in t["inputSchema"]["required"]
            .as_array()
            .into_iter()
            .flatten()
        {
            assert!(t["inputSchema"]["properties"]
                .get(required.as_str().unwrap())
                .is_some());
        }
    }
    assert_eq!(
        reply(request("tools/list", json!({})))["result"]["tools"],
        tools
    );
}

#[test]
fn valid_arguments_become_the_service_s_plans() {
    match call_tool(
        tool::SEARCH_DOCUMENTS,
        json!({ "query": "tidal power", "company": "umbra", "tags": ["Energy"], "limit": 3 }),
    ) {
        McpStep::Call {
            id,
            call: ToolCall::SearchDocuments(plan),
        } => {
            assert_eq!(id, 7);
            assert_eq!(
                (plan.query.as_str(), plan.company.as_deref(), plan.top_k),
                ("tidal power", Some("umbra"), 3)
            );
            assert_eq!(plan.tags, vec!["energy".to_owned()]);
        }
        other => panic!("{other:?}"),
    }
    match call_tool(
        tool::ASK_QUESTION,
        json!({ "question": "Who builds lighthouses?" }),
    ) {
        McpStep::Call {
            call: ToolCall::AskQuestion(plan),
            ..
        } => {
            assert_eq!(plan.search.query, "Who builds lighthouses?");
            assert!(!plan.stream);
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        call_tool(tool::LIST_COMPANIES, Value::Null),
        McpStep::Call {
            call: ToolCall::ListCompanies,
            ..
        }
    ));
    match call_tool(
        tool::GET_DOCUMENT,
        json!({ "key": "./companies/umbra/overview.md" }),
    ) {
        McpStep::Call {
            call: ToolCall::GetDocument(key),
            ..
        } => assert_eq!(key.as_str(), "companies/umbra/overview.md"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_limit_out_of_range_is_named_as_the_tool_names_it() {
    match call_tool(
        tool::SEARCH_DOCUMENTS,
        json!({ "query": "x", "limit": 500 }),
    ) {
        McpStep::Reply(r) => assert_eq!(
            r["result"]["content"][0]["text"],
            "`limit` must be a whole number between 1 and 50 (got 500)"
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn bad_arguments_are_tool_errors_not_protocol_errors() {
    let cases = [
        (tool::SEARCH_DOCUMENTS, json!({})),
        (tool::SEARCH_DOCUMENTS, json!({ "query": "x", "limit": 0 })),
        (
            tool::SEARCH_DOCUMENTS,
            json!({ "query": "x", "limit": "many" }),
        ),
        (tool::SEARCH_DOCUMENTS, json!({ "query": " " })),
        (
            tool::ASK_QUESTION,
            json!({ "question": "x", "tags": vec!["t"; 11] }),
        ),
        (
            tool::ASK_QUESTION,
            json!({ "question": "x", "colour": "red" }),
        ),
        (tool::LIST_COMPANIES, json!({ "page": 2 })),
        (tool::GET_DOCUMENT, json!({ "key": "../etc/passwd" })),
        (tool::GET_DOCUMENT, json!({ "key": 5 })),
    ];
    for (name, arguments) in cases {
        match call_tool(name, arguments.clone()) {
            McpStep::Reply(r) => {
                assert_eq!(r["result"]["isError"], true, "{name} {arguments}");
                assert!(r.get("error").is_none());
                assert!(!r["result"]["content"][0]["text"]
                    .as_str()
                    .unwrap()
                    .is_empty());
            }
            other => panic!("{name} {arguments}: {other:?}"),
        }
    }
}

#[test]
fn the_protocol_header_must_name_a_supported_revision() {
    assert!(check_protocol_header(None).is_ok());
    assert!(check_protocol_header(Some("2025-06-18")).is_ok());
    assert!(check_protocol_header(Some("2030-01-01"))
        .unwrap_err()
        .contains("2025-11-25"));
}

#[test]
fn results_carry_text_and_structured_content() {
    let ok = tool_output(&json!(1), "hi".into(), json!({ "a": 1 }));
    assert_eq!(
        ok["result"]["content"][0],
        json!({ "type": "text", "text": "hi" })
    );
    assert_eq!(ok["result"]["structuredContent"], json!({ "a": 1 }));
    assert_eq!(ok["result"]["isError"], false);
    let source = Source {
        number: 1,
        key: "companies/umbra/overview.md".into(),
        title: "Umbra".into(),
        company: Some("umbra".into()),
        heading_path: String::new(),
        text: String::new(),
        score: 1.0,
    };
    assert_eq!(
        answer_text("Tidal power [1].\n", &[source]),
        "Tidal power [1].\n\nSources:\n[1] Umbra (companies/umbra/overview.md)"
    );
    assert_eq!(answer_text("Nothing found.", &[]), "Nothing found.");
}
