//! `GET /admin/objects/{key}`: a stored document's bytes exactly as R2 holds
//! them, with their SHA-256, so a rollback export can take the data back.
//! Reads only; never changes R2 or D1.

use crate::error::ApiError;
use crate::root::Root;
use portfolio_core::admin::MAX_DOCUMENT_BYTES;
use portfolio_core::document::keys::{sha256_hex, DocumentKey};
use portfolio_core::shared::storage::{ObjectRead, ObjectStore};
use worker::{Headers, Response};

pub async fn get(key: DocumentKey, root: &Root) -> Result<Response, ApiError> {
    let read = root
        .objects()?
        .get(key.as_str(), MAX_DOCUMENT_BYTES as u64)
        .await?;
    match read {
        ObjectRead::Missing => Err(ApiError::NotFound(format!(
            "no object {} in the bucket",
            key.as_str()
        ))),
        ObjectRead::TooLarge(head) => Err(ApiError::PayloadTooLarge(format!(
            "object {} is {} bytes; the limit is {MAX_DOCUMENT_BYTES}",
            key.as_str(),
            head.size
        ))),
        ObjectRead::Found { head, bytes } => {
            let headers = Headers::new();
            headers.set("content-type", "text/markdown; charset=utf-8")?;
            headers.set("x-content-sha256", &sha256_hex(&bytes))?;
            headers.set("etag", &head.etag)?;
            Ok(Response::from_bytes(bytes)?.with_headers(headers))
        }
    }
}
