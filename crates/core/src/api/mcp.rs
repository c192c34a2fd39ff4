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
use crate::query::{plan_search, ChatBody, ChatPlan, QueryError, SearchPlan, Source, MAX_TOP_K};
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
    // JSON has one number type: `-3.0` is the integer -3, as JSON Schema counts it.
    let whole = id.as_i64().is_some_and(|n| n.unsigned_abs() <= MAX_SAFE_ID)
        || id
            .as_f64()
            .is_some_and(|f| f.fract() == 0.0 && f.abs() <= MAX_SAFE_ID as f64);
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
                .map_err(|e| match e {
                    // The search checks the range; the tool calls the field `limit`.
                    QueryError::TopK(got) => format!(
                        "`limit` must be a whole number between 1 and {MAX_TOP_K} (got {got})"
                    ),
                    other => other.to_string(),
                })
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
mod tests;
