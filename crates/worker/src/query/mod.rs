//! The public query API: hybrid retrieval (`/api/search`), grounded chat with
//! sources (`/api/chat`, JSON or Server-Sent Events) and the public catalog
//! (`/api/companies`, `/api/documents`). Reads only active generations.

pub mod catalog;
pub mod chat;
pub mod cors;
pub mod rollout;
pub mod search;

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
