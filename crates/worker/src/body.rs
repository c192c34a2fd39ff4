//! Reading request bodies within a limit: refused from `Content-Length`
//! before a byte is read, and counted while reading when the header is
//! missing or lies, so an oversized body never sits in the isolate's memory.

use crate::error::ApiError;
use futures_util::StreamExt;
use portfolio_core::api::declared_too_large;
use worker::Request;

fn too_large(limit: usize) -> ApiError {
    ApiError::PayloadTooLarge(format!(
        "the request body is over the limit of {limit} bytes"
    ))
}

/// The body, at most `limit` bytes (`413 payload_too_large` beyond).
pub async fn read_limited(req: &mut Request, limit: usize) -> Result<Vec<u8>, ApiError> {
    let declared = req.headers().get("Content-Length").ok().flatten();
    if declared_too_large(declared.as_deref(), limit) {
        return Err(too_large(limit));
    }
    let Ok(mut stream) = req.stream() else {
        // No body at all.
        return Ok(Vec::new());
    };
    let mut body = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        if body.len() + chunk.len() > limit {
            return Err(too_large(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The body as UTF-8 text, at most `limit` bytes.
pub async fn read_text_limited(req: &mut Request, limit: usize) -> Result<String, ApiError> {
    let bytes = read_limited(req, limit).await?;
    String::from_utf8(bytes)
        .map_err(|e| ApiError::BadRequest("invalid_request", format!("the body is not UTF-8: {e}")))
}
