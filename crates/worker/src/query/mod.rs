//! The public query API: hybrid retrieval (`/api/search`), grounded chat with
//! sources (`/api/chat`, JSON or Server-Sent Events) and the public catalog
//! (`/api/companies`, `/api/documents`). Reads only active generations.

pub mod catalog;
pub mod chat;
pub mod cors;
pub mod search;

use crate::error::ApiError;
use portfolio_core::query::QueryError;

impl From<QueryError> for ApiError {
    fn from(e: QueryError) -> Self {
        ApiError::BadRequest(e.code(), e.to_string())
    }
}
