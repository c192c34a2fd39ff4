//! The Model Context Protocol server's decisions (`/mcp`, Streamable HTTP
//! transport, JSON-RPC 2.0): version negotiation, the tool list and their
//! input schemas, argument validation into this service's plans, and every
//! JSON-RPC answer. Never performs a tool's I/O: a valid `tools/call` comes
//! back as a [`ToolCall`] the Worker runs, then renders with [`tool_output`].
//!
//! Written by hand rather than with `rmcp` (3.11): it type-checks for
//! `wasm32-unknown-unknown` only once `uuid`'s JS randomness is switched on,
//! and then its service loop still runs on `tokio::spawn` and its HTTP
//! transport on tower/axum, neither of which a Worker has; only its model
//! types would be usable. The server needs five methods. The
//! wire follows the `@modelcontextprotocol/sdk` client (1.32) and revision
//! 2025-11-25: one JSON response per POSTed request, 202 for notifications,
//! 400 for what is not one request or notification, no session id, no
//! server-initiated stream (GET answers 405).

use crate::document::keys::DocumentKey;
use crate::query::{plan_search, ChatBody, ChatPlan, SearchPlan, Source};
use serde::Deserialize;
use serde_json::{json, Value};

/// The revision this server prefers (the SDK's `LATEST_PROTOCOL_VERSION`).
pub const LATEST_PROTOCOL_VERSION: &str = "2025-11-25";

/// Every revision this server speaks; a client asking for another gets the
/// latest and decides whether to go on.
pub const SUPPORTED_PROTOCOL_VERSIONS: [&str; 4] = [
    LATEST_PROTOCOL_VERSION,
    "2025-06-18",
    "2025-03-26",
    "2024-11-05",
];

/// The header a client repeats on every request after `initialize`.
pub const PROTOCOL_VERSION_HEADER: &str = "mcp-protocol-version";

/// Largest integer id magnitude: what a JSON client holds exactly (2^53 - 1,
/// JavaScript's `Number.MAX_SAFE_INTEGER`), so the id echoed is the id sent.
pub const MAX_SAFE_ID: u64 = (1 << 53) - 1;

/// JSON-RPC: the body is not JSON.
pub const PARSE_ERROR: i64 = -32700;
/// JSON-RPC: the body is JSON but not a request (or a batch, which revision
/// 2025-06-18 removed).
pub const INVALID_REQUEST: i64 = -32600;
/// JSON-RPC: no such method.
pub const METHOD_NOT_FOUND: i64 = -32601;
/// JSON-RPC: the method's params are wrong (an unknown tool included).
pub const INVALID_PARAMS: i64 = -32602;

/// Name of each tool, as listed and called.
pub mod tool {
    /// Hybrid search over the documents.
    pub const SEARCH_DOCUMENTS: &str = "search_documents";
    /// A grounded answer with its sources.
    pub const ASK_QUESTION: &str = "ask_question";
    /// Companies with documents.
    pub const LIST_COMPANIES: &str = "list_companies";
    /// One document's markdown by key.
    pub const GET_DOCUMENT: &str = "get_document";
}

/// What the Worker does with one POSTed message.
#[derive(Debug, Clone, PartialEq)]
pub enum McpStep {
    /// Answer 200 with this JSON-RPC message.
    Reply(Value),
    /// Answer 400 with this JSON-RPC error: the body is not one JSON-RPC
    /// request or notification this server can take (as the SDK's own
    /// server answers malformed input).
    Refuse(Value),
    /// A notification: 202, no body.
    Accepted,
    /// Run the tool, then answer [`tool_output`] or [`tool_failure`] for `id`.
    Call {
        /// The request's id.
        id: Value,
        /// The validated call.
        call: ToolCall,
    },
}

/// A validated tool call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolCall {
    /// `search_documents`.
    SearchDocuments(SearchPlan),
    /// `ask_question`.
    AskQuestion(ChatPlan),
    /// `list_companies`.
    ListCompanies,
    /// `get_document`.
    GetDocument(DocumentKey),
}

/// Whether a request's `MCP-Protocol-Version` header is one this server
/// speaks (absent: the client predates the header, accepted). `Err` is the
/// message of the 400 the transport requires.
pub fn check_protocol_header(header: Option<&str>) -> Result<(), String> {
    match header.map(str::trim) {
        None => Ok(()),
        Some(v) if SUPPORTED_PROTOCOL_VERSIONS.contains(&v) => Ok(()),
        Some(v) => Err(format!(
            "unsupported MCP-Protocol-Version {v:?}; this server speaks {}",
            SUPPORTED_PROTOCOL_VERSIONS.join(", ")
        )),
    }
}

/// A JSON-RPC error answer (`id` null when the request's id is unknown).
#[must_use]
pub fn error_reply(id: &Value, code: i64, message: &str) -> Value {
    json!({ "jsonrpc": "2.0", "id": id, "error": { "code": code, "message": message } })
}

fn result_reply(id: &Value, result: Value) -> Value {
    json!({ "jsonrpc": "2.0", "id": id, "result": result })
}

/// Decides what one POSTed body asks for; `server_version`: this build's
/// version, named in `serverInfo`.
#[must_use]
pub fn handle_message(body: &[u8], server_version: &str) -> McpStep {
    let refuse =
        |code: i64, message: &str| McpStep::Refuse(error_reply(&Value::Null, code, message));
    let value: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return refuse(PARSE_ERROR, &format!("parse error: {e}")),
    };
    let Some(message) = value.as_object() else {
        return refuse(
            INVALID_REQUEST,
            "expected one JSON-RPC message object (batches were removed in revision 2025-06-18)",
        );
    };
    if message.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return refuse(INVALID_REQUEST, "`jsonrpc` must be \"2.0\"");
    }
    let Some(method) = message.get("method").and_then(Value::as_str) else {
        // This server sends no requests, so it expects no responses either.
        return refuse(
            INVALID_REQUEST,
            "expected a request or a notification: `method` must be a string",
        );
    };
    // Absent params are no params; present ones are an object (MCP never
    // sends positional params, and JSON-RPC allows no `null`).
    let params = match message.get("params") {
        None => Value::Null,
        Some(p) if p.is_object() => p.clone(),
        Some(_) => return refuse(INVALID_PARAMS, "`params` must be an object"),
    };
    let Some(id) = message.get("id").cloned() else {
        // A notification (`notifications/initialized`, `…/cancelled`): nothing to answer.
        return McpStep::Accepted;
    };
    let whole = id.as_i64().is_some_and(|n| n.unsigned_abs() <= MAX_SAFE_ID);
    if !(id.is_string() || whole) {
        return refuse(
            INVALID_REQUEST,
            "`id` must be a string or an integer within ±(2^53 - 1)",
        );
    }
    match method {
        "initialize" => McpStep::Reply(result_reply(
            &id,
            initialize_result(&params, server_version),
        )),
        "ping" => McpStep::Reply(result_reply(&id, json!({}))),
        "tools/list" => McpStep::Reply(result_reply(&id, json!({ "tools": tool_definitions() }))),
        "tools/call" => call(id, &params),
        other => McpStep::Reply(error_reply(
            &id,
            METHOD_NOT_FOUND,
            &format!("method not found: {other}"),
        )),
    }
}

fn initialize_result(params: &Value, server_version: &str) -> Value {
    let asked = params.get("protocolVersion").and_then(Value::as_str);
    let version = asked
        .filter(|v| SUPPORTED_PROTOCOL_VERSIONS.contains(v))
        .unwrap_or(LATEST_PROTOCOL_VERSION);
    json!({
        "protocolVersion": version,
        "capabilities": { "tools": { "listChanged": false } },
        "serverInfo": { "name": "portfolio-docs", "title": "Portfolio documents", "version": server_version },
        "instructions": "Search and ask about the portfolio companies' documents. Answers cite passages as [n]; each source names the document key that get_document reads.",
    })
}

/// The tools and their input schemas (JSON Schema 2020-12, `type: object`).
#[must_use]
pub fn tool_definitions() -> Value {
    let company = json!({ "type": "string", "maxLength": 128, "description": "Only this company's documents (its slug, as list_companies names it)." });
    let tags = json!({ "type": "array", "items": { "type": "string", "maxLength": 40 }, "maxItems": 10, "description": "Only passages carrying at least one of these tags." });
    let read_only = json!({ "readOnlyHint": true, "openWorldHint": false });
    json!([
        {
            "name": tool::SEARCH_DOCUMENTS,
            "title": "Search documents",
            "description": "Hybrid (vector, keyword, tag) search over the documents; returns the best passages with their document key, title, company, heading path and score.",
            "inputSchema": {
                "type": "object",
                "properties": {
                    "query": { "type": "string", "minLength": 1, "maxLength": 2000, "description": "What to look for." },
                    "company": company,
                    "tags": tags,
                    "limit": { "type": "integer", "minimum": 1, "maximum": 50, "default": 8, "description": "How many passages." },
                },
                "required": ["query"],
                "additionalProperties": false,
            },
            "annotations": read_only,
        },
        {
            "name": tool::ASK_QUESTION,
            "title": "Ask a question",
            "description": "Answers a question from the documents, citing passages as [n], with the sources those numbers refer to.",
            "inputSchema": {
                "type": "object",
                "properties": {
                    "question": { "type": "string", "minLength": 1, "maxLength": 2000 },
                    "company": company,
                    "tags": tags,
                },
                "required": ["question"],
                "additionalProperties": false,
            },
            "annotations": read_only,
        },
        {
            "name": tool::LIST_COMPANIES,
            "title": "List companies",
            "description": "The companies that have documents, with their slug, name and document count.",
            "inputSchema": { "type": "object", "properties": {}, "additionalProperties": false },
            "annotations": read_only,
        },
        {
            "name": tool::GET_DOCUMENT,
            "title": "Get a document",
            "description": "One served document's markdown, with its title, company and tags, by key (as search results and sources name it).",
            "inputSchema": {
                "type": "object",
                "properties": { "key": { "type": "string", "minLength": 1, "maxLength": 1024, "description": "The document key, e.g. companies/acme/overview.md." } },
                "required": ["key"],
                "additionalProperties": false,
            },
            "annotations": read_only,
        },
    ])
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SearchArgs {
    query: String,
    #[serde(default)]
    company: Option<String>,
    #[serde(default)]
    tags: Option<Vec<String>>,
    #[serde(default)]
    limit: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AskArgs {
    question: String,
    #[serde(default)]
    company: Option<String>,
    #[serde(default)]
    tags: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NoArgs {}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyArgs {
    key: String,
}

fn args<T: serde::de::DeserializeOwned>(arguments: &Value) -> Result<T, String> {
    let arguments = if arguments.is_null() {
        json!({})
    } else {
        arguments.clone()
    };
    serde_json::from_value(arguments).map_err(|e| format!("invalid arguments: {e}"))
}

fn plan_call(name: &str, arguments: &Value) -> Result<ToolCall, String> {
    match name {
        tool::SEARCH_DOCUMENTS => {
            let a: SearchArgs = args(arguments)?;
            let body =
                json!({ "query": a.query, "company": a.company, "tags": a.tags, "top_k": a.limit });
            plan_search(body.to_string().as_bytes())
                .map(ToolCall::SearchDocuments)
                .map_err(|e| e.to_string())
        }
        tool::ASK_QUESTION => {
            let a: AskArgs = args(arguments)?;
            ChatBody {
                question: a.question,
                company: a.company,
                tags: a.tags,
                history: None,
                stream: Some(false),
            }
            .into_plan(false)
            .map(ToolCall::AskQuestion)
            .map_err(|e| e.to_string())
        }
        tool::LIST_COMPANIES => args::<NoArgs>(arguments).map(|_| ToolCall::ListCompanies),
        tool::GET_DOCUMENT => {
            let a: KeyArgs = args(arguments)?;
            DocumentKey::parse(&a.key)
                .map(ToolCall::GetDocument)
                .map_err(|e| format!("`key` {e}"))
        }
        other => Err(format!("unknown tool: {other}")),
    }
}

fn call(id: Value, params: &Value) -> McpStep {
    let Some(name) = params.get("name").and_then(Value::as_str) else {
        return McpStep::Reply(error_reply(
            &id,
            INVALID_PARAMS,
            "tools/call needs params.name",
        ));
    };
    let known = [
        tool::SEARCH_DOCUMENTS,
        tool::ASK_QUESTION,
        tool::LIST_COMPANIES,
        tool::GET_DOCUMENT,
    ];
    if !known.contains(&name) {
        return McpStep::Reply(error_reply(
            &id,
            INVALID_PARAMS,
            &format!("unknown tool: {name}"),
        ));
    }
    let arguments = params.get("arguments").cloned().unwrap_or(Value::Null);
    // A bad argument is the tool's error, not the protocol's: the model sees
    // it and can correct the call (revision 2025-11-25, tool errors).
    match plan_call(name, &arguments) {
        Ok(call) => McpStep::Call { id, call },
        Err(message) => McpStep::Reply(tool_failure(&id, &message)),
    }
}

/// A tool's successful result: `text` for the model, `structured` as
/// `structuredContent` (its JSON is also the text when no prose fits).
#[must_use]
pub fn tool_output(id: &Value, text: String, structured: Value) -> Value {
    result_reply(
        id,
        json!({ "content": [{ "type": "text", "text": text }], "structuredContent": structured, "isError": false }),
    )
}

/// A tool's failure (bad argument, unknown document, a failed search):
/// `isError: true` with a message the model can act on.
#[must_use]
pub fn tool_failure(id: &Value, message: &str) -> Value {
    result_reply(
        id,
        json!({ "content": [{ "type": "text", "text": message }], "isError": true }),
    )
}

/// `ask_question`'s text: the answer, then the numbered sources.
#[must_use]
pub fn answer_text(answer: &str, sources: &[Source]) -> String {
    let mut text = answer.trim_end().to_owned();
    if !sources.is_empty() {
        text.push_str("\n\nSources:");
        for s in sources {
            text.push_str(&format!("\n[{}] {} ({})", s.number, s.title, s.key));
        }
    }
    text
}

#[cfg(test)]
mod tests {
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
}
