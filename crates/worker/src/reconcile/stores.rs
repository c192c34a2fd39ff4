//! Counts what the stores hold for a page's ready documents: chunk rows of
//! the active generation in D1, and vectors of that generation in the index.
//!
//! Read-only. One grouped query per slice of documents, never one per document.

use crate::config::{IndexKind, ServiceConfig};
use crate::store::vector_index_from_env;
use portfolio_core::keys::vector_id;
use portfolio_core::reconcile::StoreProbe;
use portfolio_core::vector_index::VectorIndex;
use serde::Deserialize;
use std::collections::HashMap;
use worker::{D1Database, Env};

/// Documents per counting query: their JSON list stays a few KB, far below
/// D1's 100 KB statement limit (Source: Cloudflare D1 limits).
const PROBES_PER_QUERY: usize = 200;

#[derive(Deserialize)]
struct CountRow {
    document_id: f64,
    n: f64,
}

/// `SELECT document_id, n` over `json_each(?1)` of the probes, with `count_sql`
/// counting rows for `p.document_id` / `p.version`.
async fn grouped_count(
    db: &D1Database,
    probes: &[StoreProbe],
    count_sql: &str,
) -> worker::Result<HashMap<i64, u32>> {
    let mut counts = HashMap::with_capacity(probes.len());
    for slice in probes.chunks(PROBES_PER_QUERY) {
        let list =
            serde_json::to_string(slice).map_err(|e| worker::Error::RustError(e.to_string()))?;
        let rows: Vec<CountRow> = db
            .prepare(format!(
                "SELECT p.document_id AS document_id, ({count_sql}) AS n FROM \
                 (SELECT json_extract(value, '$.document_id') AS document_id, \
                         json_extract(value, '$.version') AS version FROM json_each(?1)) p"
            ))
            .bind(&[list.into()])?
            .all()
            .await?
            .results()?;
        counts.extend(rows.into_iter().map(|r| (r.document_id as i64, r.n as u32)));
    }
    Ok(counts)
}

/// Chunk rows of each probed document's active generation.
pub async fn count_chunks(
    db: &D1Database,
    probes: &[StoreProbe],
) -> worker::Result<HashMap<i64, u32>> {
    grouped_count(
        db,
        probes,
        "SELECT COUNT(*) FROM chunks c WHERE c.document_id = p.document_id AND c.version = p.version",
    )
    .await
}

/// Most ids looked up in Vectorize per page: keeps one page's `getByIds`
/// calls (1,000 ids each) to a handful of subrequests.
const MAX_VECTORIZE_IDS_PER_PAGE: usize = 5_000;

/// Vectors of each probed document's active generation in the vector index.
///
/// The D1-exact index is counted with one grouped query. Vectorize has no
/// count by metadata: its vectors are looked up by their deterministic ids
/// `<document_id>:<version>:<i>` for `i` in `0..chunk_count`; documents
/// beyond `MAX_VECTORIZE_IDS_PER_PAGE` ids are left out of this page's check
/// (absent from the map, so they are not reported as mismatched).
pub async fn count_vectors(
    env: &Env,
    config: &ServiceConfig,
    db: &D1Database,
    probes: &[StoreProbe],
) -> worker::Result<HashMap<i64, u32>> {
    if config.vector_index == IndexKind::D1 {
        return grouped_count(
            db,
            probes,
            "SELECT COUNT(*) FROM vector_index v WHERE v.document_id = p.document_id AND v.version = p.version",
        )
        .await;
    }
    let index =
        vector_index_from_env(env, config).map_err(|e| worker::Error::RustError(e.to_string()))?;
    let mut counts = HashMap::with_capacity(probes.len());
    let mut budget = MAX_VECTORIZE_IDS_PER_PAGE;
    for probe in probes {
        let wanted = probe.chunk_count as usize;
        if wanted > budget {
            continue;
        }
        budget -= wanted;
        let ids: Vec<String> = (0..probe.chunk_count)
            .map(|i| vector_id(probe.document_id, probe.version as i64, i))
            .collect();
        let found = index
            .get_by_ids(&ids)
            .await
            .map_err(|e| worker::Error::RustError(e.to_string()))?;
        counts.insert(probe.document_id, found.len() as u32);
    }
    Ok(counts)
}
