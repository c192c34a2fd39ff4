//! The public query API: hybrid retrieval (`/api/search`), grounded chat with
//! sources (`/api/chat`, JSON or Server-Sent Events, or the AI SDK's stream),
//! the public catalog (`/api/companies`, `/api/documents`), and the same
//! pipeline in the shapes other clients speak: OpenAI's chat completions
//! (`/v1/…`) and an MCP server (`/mcp`). Reads only active generations.

pub mod catalog;
pub mod chat;
pub mod cors;
pub mod mcp;
pub mod openai;
pub mod rollout;
pub mod search;
pub mod ui_chat;

use crate::error::ApiError;
use portfolio_core::query::{QueryError, RetrievalError};

impl From<QueryError> for ApiError {
    fn from(e: QueryError) -> Self {
        ApiError::BadRequest(e.code(), e.to_string())
    }
}

/// 500 `internal`: every source failed, or D1 could not be read.
impl From<RetrievalError> for ApiError {
    fn from(e: RetrievalError) -> Self {
        ApiError::Platform(worker::Error::RustError(e.to_string()))
    }
}
