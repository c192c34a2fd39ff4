//! The rows of the D1-exact index's `vector_index` table as the Worker reads
//! them: decoding, binding and the index's error mapping, shared by the
//! index (`d1_vectors`) and its isolate cache (`vector_cache`).
//!
//! Knows the row layout only; never runs a query of its own.

use js_sys::Array;
use portfolio_core::index::{VectorIndexError, VectorMetadata};
use wasm_bindgen::{JsCast, JsValue};
use worker::D1PreparedStatement;

pub(super) const BACKEND: &str = "d1";

/// Rows read per scan page: bounds the Worker's memory (≈ 6 KiB per 1536-dim row) while
/// keeping round trips few. Measured in docs/vector-index.md's ceiling table.
pub const SCAN_PAGE_ROWS: usize = 1000;

pub(super) fn d1_error(operation: &'static str, err: worker::Error) -> VectorIndexError {
    // Our SQL is fixed and our inputs validated, so what is left is the platform's (an
    // overloaded or unreachable database): worth retrying.
    VectorIndexError::Unavailable {
        backend: BACKEND,
        operation,
        message: err.to_string(),
    }
}

pub(super) fn bind(
    stmt: D1PreparedStatement,
    operation: &'static str,
    values: &[JsValue],
) -> Result<D1PreparedStatement, VectorIndexError> {
    stmt.bind(values).map_err(|e| d1_error(operation, e))
}

/// One stored row, decoded.
pub(super) struct Row {
    pub(super) id: String,
    pub(super) metadata: VectorMetadata,
    pub(super) dimensions: usize,
    pub(super) embedding_hex: String,
}

pub(super) fn malformed(operation: &'static str, reason: String) -> VectorIndexError {
    VectorIndexError::MalformedResponse {
        backend: BACKEND,
        operation,
        reason,
    }
}

/// Position of `dimensions` in a raw row (`d1_vectors::COLUMNS`, `vector_cache::CHANGES_SQL`).
pub(super) const COL_DIMENSIONS: u32 = 4;
/// Position of `hex(embedding)` in a raw row.
pub(super) const COL_EMBEDDING: u32 = 5;

/// Decodes the first five columns of a raw row `[id, document_id, company_id, version,
/// dimensions, …]`: the id, metadata and dimensions.
pub(super) fn decode_head(
    operation: &'static str,
    row: &JsValue,
) -> Result<(Array, String, VectorMetadata, usize), VectorIndexError> {
    let row: Array = row
        .dyn_ref::<Array>()
        .cloned()
        .ok_or_else(|| malformed(operation, "a row that is not an array".into()))?;
    let id = row
        .get(0)
        .as_string()
        .ok_or_else(|| malformed(operation, "a row without an id".into()))?;
    let int = |i: u32| row.get(i).as_f64().map(|v| v as i64);
    let document_id = int(1).ok_or_else(|| malformed(operation, format!("{id}: document_id")))?;
    let version = int(3)
        .and_then(|v| u64::try_from(v).ok())
        .ok_or_else(|| malformed(operation, format!("{id}: version")))?;
    let dimensions = int(COL_DIMENSIONS)
        .and_then(|d| usize::try_from(d).ok())
        .ok_or_else(|| malformed(operation, format!("{id}: dimensions")))?;
    let metadata = VectorMetadata {
        document_id,
        company_id: int(2),
        version,
    };
    Ok((row, id, metadata, dimensions))
}

/// Decodes a raw row `[id, document_id, company_id, version, dimensions, hex(embedding)]`.
pub(super) fn decode_row(operation: &'static str, row: &JsValue) -> Result<Row, VectorIndexError> {
    let (row, id, metadata, dimensions) = decode_head(operation, row)?;
    let embedding_hex = row
        .get(COL_EMBEDDING)
        .as_string()
        .ok_or_else(|| malformed(operation, format!("{id}: no embedding")))?;
    Ok(Row {
        id,
        metadata,
        dimensions,
        embedding_hex,
    })
}
