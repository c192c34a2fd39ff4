//! The MCP server at `/mcp` (Streamable HTTP): reads one JSON-RPC message,
//! lets core decide (`api::mcp`), and runs a tool call on the same pipeline
//! as the HTTP routes (`search::retrieve`, `ground::ground`, the catalog reads,
//! R2). Never decides a protocol answer itself; a tool's failure is a tool
//! result with `isError`, never an HTTP error.

use super::cors;
use super::ground::{ground, Grounded};
use super::search::retrieve;
use crate::body::read_limited;
use crate::config::ServiceConfig;
use crate::error::{json_response, ApiError};
use crate::root::Root;
use portfolio_core::admin::MAX_DOCUMENT_BYTES;
use portfolio_core::api::mcp::{
    answer_text, check_protocol_header, error_reply, handle_message, tool_failure, tool_output,
    McpStep, ToolCall, INVALID_REQUEST, PROTOCOL_VERSION_HEADER,
};
use portfolio_core::api::MAX_CHAT_BODY_BYTES;
use portfolio_core::document::keys::DocumentKey;
use portfolio_core::providers::ChatModel;
use portfolio_core::shared::storage::{ObjectRead, ObjectStore, StoreError};
use serde_json::{json, Value};
use worker::{Request, Response};

/// `POST /mcp`.
pub async fn handle(
    mut req: Request,
    root: &Root,
    config: &ServiceConfig,
    request_id: &str,
) -> Result<Response, ApiError> {
    // The transport requires refusing a browser origin the service does not
    // allow (DNS rebinding); server-side clients send none.
    if !cors::allows(cors::origin(&req).as_deref(), root) {
        return Ok(json_response(
            &error_reply(&Value::Null, INVALID_REQUEST, "this Origin is not allowed"),
            403,
        )?);
    }
    if let Err(message) =
        check_protocol_header(req.headers().get(PROTOCOL_VERSION_HEADER)?.as_deref())
    {
        return Ok(json_response(
            &error_reply(&Value::Null, INVALID_REQUEST, &message),
            400,
        )?);
    }
    let body = read_limited(&mut req, MAX_CHAT_BODY_BYTES).await?;
    match handle_message(&body, env!("CARGO_PKG_VERSION")) {
        McpStep::Reply(message) => Ok(json_response(&message, 200)?),
        McpStep::Refuse(message) => Ok(json_response(&message, 400)?),
        McpStep::Accepted => Ok(Response::empty()?.with_status(202)),
        McpStep::Call { id, call } => {
            let message = match run(call, root, config).await {
                Ok((text, structured)) => tool_output(&id, text, structured),
                Err(ToolError::Said(message)) => tool_failure(&id, &message),
                Err(ToolError::Api(e)) => tool_failure(&id, &e.into_public(request_id).2),
            };
            Ok(json_response(&message, 200)?)
        }
    }
}

/// Why a tool call failed: a sentence for the model, or a service error
/// whose public message (the request id for a server-side one) is shown.
enum ToolError {
    Said(String),
    Api(ApiError),
}

impl From<ApiError> for ToolError {
    fn from(e: ApiError) -> Self {
        Self::Api(e)
    }
}

impl From<StoreError> for ToolError {
    fn from(e: StoreError) -> Self {
        Self::Api(ApiError::Platform(worker::Error::RustError(e.to_string())))
    }
}

impl From<worker::Error> for ToolError {
    fn from(e: worker::Error) -> Self {
        Self::Api(ApiError::Platform(e))
    }
}

fn as_json(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default()
}

/// Runs a validated call: the text the model reads and the structured content.
async fn run(
    call: ToolCall,
    root: &Root,
    config: &ServiceConfig,
) -> Result<(String, Value), ToolError> {
    match call {
        ToolCall::SearchDocuments(plan) => {
            let retrieval = retrieve(root, config, &plan).await?;
            let structured = serde_json::to_value(&retrieval).unwrap_or(Value::Null);
            Ok((as_json(&structured), structured))
        }
        ToolCall::AskQuestion(plan) => {
            let Grounded {
                chat,
                request,
                sources,
                ..
            } = ground(&plan, root, config).await?;
            let answer = chat
                .complete(&request)
                .await
                .map_err(|e| ApiError::Upstream(e.to_string()))?;
            let text = answer_text(&answer.text, &sources);
            Ok((text, json!({ "answer": answer.text, "sources": sources })))
        }
        ToolCall::ListCompanies => {
            let companies = root.search()?.catalog_companies().await?;
            let structured = json!({ "companies": companies });
            Ok((as_json(&structured), structured))
        }
        ToolCall::GetDocument(key) => get_document(&key, root).await,
    }
}

/// A served document's markdown, as R2 holds it (only documents the
/// catalog lists: not a failed, deleted or never-processed key).
async fn get_document(key: &DocumentKey, root: &Root) -> Result<(String, Value), ToolError> {
    let not_found = || {
        ToolError::Said(format!(
            "no served document has the key {:?}; search_documents names the keys",
            key.as_str()
        ))
    };
    let Some(row) = root.search()?.catalog_document(key.as_str()).await? else {
        return Err(not_found());
    };
    let bytes = match root
        .objects()?
        .get(key.as_str(), MAX_DOCUMENT_BYTES as u64)
        .await?
    {
        ObjectRead::Found { bytes, .. } => bytes,
        ObjectRead::Missing => return Err(not_found()),
        ObjectRead::TooLarge(_) => {
            return Err(ToolError::Said(format!(
                "the document {:?} is larger than {MAX_DOCUMENT_BYTES} bytes",
                key.as_str()
            )))
        }
    };
    let markdown = String::from_utf8_lossy(&bytes).into_owned();
    let tags: Vec<String> = serde_json::from_str(&row.tags).unwrap_or_default();
    let structured = json!({
        "key": row.key,
        "title": row.title,
        "company": row.company,
        "tags": tags,
        "markdown": markdown,
    });
    Ok((markdown, structured))
}
