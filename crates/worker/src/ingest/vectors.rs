//! Writes a generation's vectors to the configured index and removes them.
//!
//! Vectors are written at embedding time under deterministic ids
//! (`<document_id>:<version>:<chunk_index>`): invisible to queries until the
//! generation is activated (queries join on the active version), and
//! overwritten in place when a step is retried.

use crate::config::ServiceConfig;
use crate::store::vector_index_from_env;
use portfolio_core::keys::vector_id;
use portfolio_core::vector_index::{VectorIndex, VectorIndexError, VectorRecord};
use worker::Env;

/// Upserts vectors into the index `VECTOR_INDEX` selects.
pub async fn upsert(env: &Env, records: &[VectorRecord]) -> Result<(), VectorIndexError> {
    let index = vector_index_from_env(env, &ServiceConfig::from_env(env))?;
    index.upsert(records).await.map(|_| ())
}

/// Removes vectors by id (absent ids are fine).
pub async fn delete(env: &Env, ids: &[String]) -> Result<(), VectorIndexError> {
    if ids.is_empty() {
        return Ok(());
    }
    let index = vector_index_from_env(env, &ServiceConfig::from_env(env))?;
    index.delete_by_ids(ids).await.map(|_| ())
}

/// The ids of a generation's first `count` vectors.
pub fn generation_ids(document_id: i64, version: u64, count: u32) -> Vec<String> {
    (0..count)
        .map(|i| vector_id(document_id, version as i64, i))
        .collect()
}
