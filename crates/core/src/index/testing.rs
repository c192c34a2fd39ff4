//! What the index's tests build again and again: metadata and an upsert of
//! the vector cache's change feed.

use super::cache::{IndexChange, QuantizedVector};
use super::VectorMetadata;

/// Version-1 metadata of a document (and its company).
pub fn meta(document_id: i64, company_id: Option<i64>) -> VectorMetadata {
    VectorMetadata {
        document_id,
        company_id,
        version: 1,
    }
}

/// An upsert of `id` at `seq` (document 1, company 1).
pub fn upsert(id: &str, seq: u64, values: &[f32]) -> IndexChange {
    IndexChange::Upsert {
        id: id.into(),
        seq,
        metadata: meta(1, Some(1)),
        vector: QuantizedVector::new(values),
    }
}
