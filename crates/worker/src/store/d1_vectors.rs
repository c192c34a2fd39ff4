//! `D1VectorIndex`: the `VectorIndex` trait over the D1 table `vector_index` (f32 BLOBs), with
//! exact cosine top-k computed in the Worker.
//!
//! Owns the SQL for that table, the exact rerank of the isolate cache's candidates
//! (`super::vector_cache`) and the page-by-page scan used while another request of the isolate
//! loads that cache; past the cache budget (`D1_INDEX_MAX_VECTORS`) it refuses to query.
//! Must never rank, filter or validate by itself: `portfolio_core::index` does, so both
//! implementations agree. Every statement stays within D1's 100 bound parameters and 100 KB.

use futures_util::future::try_join_all;
use js_sys::Uint8Array;
use portfolio_core::index::cache::{
    approximate_matches, max_cached_vectors, rerank_batch, ExactRerank, QuantizedVector,
    TOMBSTONE_RETENTION_CHANGES,
};
use portfolio_core::index::{
    cosine_with_norm, decode_f32_le_hex, encode_f32_le, norm, plan_d1_statements, validate_id,
    validate_query, validate_record, IndexInfo, MutationReceipt, TopK, VectorIndex,
    VectorIndexError, VectorMatch, VectorMetadata, VectorQuery, VectorRecord, D1_MAX_BOUND_PARAMS,
};
use wasm_bindgen::JsValue;
use worker::D1Database;

use super::d1_rows::{bind, d1_error, decode_row, Row, BACKEND, SCAN_PAGE_ROWS};
use super::vector_cache::{self, Candidates};

/// Columns bound per upserted row.
const UPSERT_PARAMS_PER_ROW: usize = 7;

// `vector_index.tags` (migration 0001) is no longer written or read: vector metadata carries no
// tags (see `portfolio_core::index`). The column keeps its default, `'[]'`.
const UPSERT_HEAD: &str =
    "INSERT INTO vector_index (id, document_id, company_id, version, dimensions, embedding, quantized) VALUES ";
const UPSERT_ROW: &str = "(?, ?, ?, ?, ?, ?, ?)";
const UPSERT_TAIL: &str = " ON CONFLICT(id) DO UPDATE SET document_id = excluded.document_id, \
     company_id = excluded.company_id, version = excluded.version, \
     dimensions = excluded.dimensions, embedding = excluded.embedding, quantized = excluded.quantized";
/// Columns read back (positions in `d1_rows`). The embedding comes as `hex(embedding)`: D1
/// hands a BLOB to the Worker as an array of numbers (one JS value per byte), a hex string as
/// one string — several times faster to transfer and decode (see docs/vector-index.md's ceiling
/// table).
pub(super) const COLUMNS: &str = "id, document_id, company_id, version, dimensions, hex(embedding)";
/// Deletes the tombstones of the change log older than the retention, and records how far,
/// so a cache further behind reloads (migration 0003). Bound: `?1` = the retention.
const PRUNE_TOMBSTONES: [&str; 2] = [
    "DELETE FROM vector_index_changes WHERE deleted = 1 \
     AND seq <= (SELECT generation - ?1 FROM vector_index_state WHERE id = 1)",
    "UPDATE vector_index_state SET pruned_through = generation - ?1 \
     WHERE id = 1 AND generation - ?1 > pruned_through",
];

/// The D1-exact implementation of [`VectorIndex`].
#[derive(Debug)]
pub struct D1VectorIndex {
    db: D1Database,
    dimensions: usize,
    max_vectors: u64,
}

impl D1VectorIndex {
    /// An index over `db`'s `vector_index` table for vectors of `dimensions`, refusing queries
    /// past what the isolate cache holds.
    pub fn new(db: D1Database, dimensions: usize) -> Self {
        Self {
            db,
            dimensions,
            max_vectors: max_cached_vectors(dimensions),
        }
    }

    /// Refuses queries once the index holds more than `max_vectors` (`D1_INDEX_MAX_VECTORS`;
    /// never more than the cache holds).
    #[must_use]
    pub fn with_max_vectors(mut self, max_vectors: u64) -> Self {
        self.max_vectors = max_vectors.min(max_cached_vectors(self.dimensions));
        self
    }
}

fn placeholders(n: usize) -> String {
    vec!["?"; n].join(", ")
}

fn upsert_sql(rows: usize) -> String {
    format!(
        "{UPSERT_HEAD}{}{UPSERT_TAIL}",
        vec![UPSERT_ROW; rows].join(", ")
    )
}

/// Bytes a row binds (the BLOBs dominate: f32 and quantized; the id is counted as sent).
fn row_bytes(record: &VectorRecord) -> usize {
    record.values.len() * 5 + 8 + record.id.len() + 4 * 8
}

/// Scores one stored row for `query` and offers it to `top`, unless its dimensions differ or the
/// filter rejects it: the exact ranking shared by the scan and the cache's rerank.
fn offer(
    top: &mut TopK<VectorMetadata>,
    query: &VectorQuery,
    query_norm: f32,
    row: Row,
) -> Result<(), VectorIndexError> {
    if row.dimensions != query.vector.len()
        || query
            .filter
            .as_ref()
            .is_some_and(|f| !f.matches(&row.metadata))
    {
        return Ok(());
    }
    let values = decode_f32_le_hex(&row.id, &row.embedding_hex, row.dimensions)?;
    let score = cosine_with_norm(&query.vector, query_norm, &values);
    if top.would_keep(score, &row.id) {
        top.push(row.id, score, row.metadata);
    }
    Ok(())
}

fn into_matches(query: &VectorQuery, top: TopK<VectorMetadata>) -> Vec<VectorMatch> {
    top.into_sorted()
        .into_iter()
        .map(|(id, score, metadata)| VectorMatch {
            id,
            score,
            metadata: query.return_metadata.then_some(metadata),
        })
        .collect()
}

impl D1VectorIndex {
    /// The stored rows among `ids`: one statement per 100 ids, a scan page's worth (10
    /// statements) in flight at a time.
    async fn select_by_ids(&self, ids: &[String]) -> Result<Vec<Row>, VectorIndexError> {
        let mut rows = Vec::with_capacity(ids.len());
        for group in ids.chunks(SCAN_PAGE_ROWS) {
            let mut pages = Vec::new();
            for chunk in group.chunks(D1_MAX_BOUND_PARAMS) {
                let sql = format!(
                    "SELECT {COLUMNS} FROM vector_index WHERE id IN ({})",
                    placeholders(chunk.len())
                );
                let values: Vec<JsValue> = chunk.iter().map(|id| JsValue::from_str(id)).collect();
                let stmt = bind(self.db.prepare(sql), "get_by_ids", &values)?;
                pages.push(async move {
                    stmt.raw_js_value()
                        .await
                        .map_err(|e| d1_error("get_by_ids", e))
                });
            }
            for page in try_join_all(pages).await? {
                for raw in &page {
                    rows.push(decode_row("get_by_ids", raw)?);
                }
            }
        }
        Ok(rows)
    }

    /// Exact top k over every row: reads the whole table page by page. Used while another
    /// request of this isolate loads the cache (the index is then within the cache budget).
    async fn scan(&self, query: &VectorQuery) -> Result<Vec<VectorMatch>, VectorIndexError> {
        let query_norm = norm(&query.vector);
        let mut top = TopK::new(query.top_k);
        let mut after = String::new();
        // Keyset pagination on the primary key: every page is one indexed range read, and the
        // Worker holds one page plus the k best at a time.
        loop {
            let stmt = bind(
                self.db.prepare(format!(
                    "SELECT {COLUMNS} FROM vector_index WHERE dimensions = ?1 AND id > ?2 ORDER BY id LIMIT ?3"
                )),
                "query",
                &[
                    JsValue::from_f64(self.dimensions as f64),
                    JsValue::from_str(&after),
                    JsValue::from_f64(SCAN_PAGE_ROWS as f64),
                ],
            )?;
            let page = stmt
                .raw_js_value()
                .await
                .map_err(|e| d1_error("query", e))?;
            let page_len = page.len();
            for raw in &page {
                let row = decode_row("query", raw)?;
                after.clone_from(&row.id);
                offer(&mut top, query, query_norm, row)?;
            }
            if page_len < SCAN_PAGE_ROWS {
                break;
            }
        }
        Ok(into_matches(query, top))
    }
}

impl VectorIndex for D1VectorIndex {
    fn implementation(&self) -> &'static str {
        BACKEND
    }

    async fn upsert(&self, records: &[VectorRecord]) -> Result<MutationReceipt, VectorIndexError> {
        for record in records {
            validate_record(record, self.dimensions)?;
        }
        let sizes: Vec<usize> = records.iter().map(row_bytes).collect();
        let plan = plan_d1_statements(&sizes, UPSERT_PARAMS_PER_ROW, |n| upsert_sql(n).len())?;
        let mut statements = Vec::with_capacity(plan.len());
        for range in plan {
            let mut values = Vec::with_capacity(range.len() * UPSERT_PARAMS_PER_ROW);
            for record in &records[range.clone()] {
                let m = &record.metadata;
                values.push(JsValue::from_str(&record.id));
                values.push(JsValue::from_f64(m.document_id as f64));
                values.push(
                    m.company_id
                        .map_or(JsValue::NULL, |c| JsValue::from_f64(c as f64)),
                );
                values.push(JsValue::from_f64(m.version as f64));
                values.push(JsValue::from_f64(record.values.len() as f64));
                values.push(Uint8Array::from(encode_f32_le(&record.values).as_slice()).into());
                let quantized = QuantizedVector::new(&record.values).to_bytes();
                values.push(Uint8Array::from(quantized.as_slice()).into());
            }
            statements.push(bind(
                self.db.prepare(upsert_sql(range.len())),
                "upsert",
                &values,
            )?);
        }
        if !statements.is_empty() {
            // One batch: D1 runs it as a transaction, so an upsert is all or nothing.
            self.db
                .batch(statements)
                .await
                .map_err(|e| d1_error("upsert", e))?;
        }
        Ok(MutationReceipt {
            count: records.len(),
            mutation_ids: Vec::new(),
        })
    }

    async fn query(&self, query: &VectorQuery) -> Result<Vec<VectorMatch>, VectorIndexError> {
        validate_query(query, self.dimensions)?;
        let candidates =
            match vector_cache::candidates(&self.db, self.dimensions, self.max_vectors, query)
                .await?
            {
                Candidates::Bounded(candidates) => candidates,
                // Another request of this isolate is loading the cache: the index is within
                // budget, so the scan is bounded.
                Candidates::Busy => return self.scan(query).await,
                Candidates::OverBudget { vectors } => {
                    return Err(VectorIndexError::OverBudget {
                        vectors,
                        budget: self.max_vectors,
                    })
                }
            };
        // A search's vector source accepts the cache's estimates: no row is read.
        if query.approximate && !query.return_metadata {
            return Ok(approximate_matches(candidates, query.top_k));
        }
        // The exact rerank: the candidates' stored f32 vectors, scored and kept by the same
        // code as the scan, so scores and order are the scan's (the candidates are a superset
        // of its top k). They are read highest bound first, a batch at a time, until the k-th
        // exact score beats every bound left. Rows written since the cache was read are taken
        // as they are now, filter and dimensions included.
        let query_norm = norm(&query.vector);
        let mut top = TopK::new(query.top_k);
        let mut rerank = ExactRerank::new(candidates, rerank_batch(query.top_k, SCAN_PAGE_ROWS));
        while let Some(ids) = rerank.next_batch(&top) {
            for row in self.select_by_ids(&ids).await? {
                offer(&mut top, query, query_norm, row)?;
            }
        }
        Ok(into_matches(query, top))
    }

    async fn get_by_ids(&self, ids: &[String]) -> Result<Vec<VectorRecord>, VectorIndexError> {
        for id in ids {
            validate_id(id)?;
        }
        self.select_by_ids(ids)
            .await?
            .into_iter()
            .map(|row| {
                Ok(VectorRecord {
                    values: decode_f32_le_hex(&row.id, &row.embedding_hex, row.dimensions)?,
                    id: row.id,
                    metadata: row.metadata,
                })
            })
            .collect()
    }

    async fn delete_by_ids(&self, ids: &[String]) -> Result<MutationReceipt, VectorIndexError> {
        let mut statements = Vec::new();
        for id in ids {
            validate_id(id)?;
        }
        for chunk in ids.chunks(D1_MAX_BOUND_PARAMS) {
            let sql = format!(
                "DELETE FROM vector_index WHERE id IN ({})",
                placeholders(chunk.len())
            );
            let values: Vec<JsValue> = chunk.iter().map(|id| JsValue::from_str(id)).collect();
            statements.push(bind(self.db.prepare(sql), "delete_by_ids", &values)?);
        }
        if !statements.is_empty() {
            // Same batch: the change log never holds more than the retention of tombstones.
            let retention = [JsValue::from_f64(TOMBSTONE_RETENTION_CHANGES as f64)];
            for sql in PRUNE_TOMBSTONES {
                statements.push(bind(self.db.prepare(sql), "delete_by_ids", &retention)?);
            }
            self.db
                .batch(statements)
                .await
                .map_err(|e| d1_error("delete_by_ids", e))?;
        }
        Ok(MutationReceipt {
            count: ids.len(),
            mutation_ids: Vec::new(),
        })
    }

    async fn describe(&self) -> Result<IndexInfo, VectorIndexError> {
        let count: Option<f64> = self
            .db
            .prepare("SELECT COUNT(*) AS n FROM vector_index WHERE dimensions = ?1")
            .bind(&[JsValue::from_f64(self.dimensions as f64)])
            .map_err(|e| d1_error("describe", e))?
            .first(Some("n"))
            .await
            .map_err(|e| d1_error("describe", e))?;
        Ok(IndexInfo {
            implementation: BACKEND.into(),
            dimensions: self.dimensions,
            vector_count: count.unwrap_or(0.0) as u64,
            processed_up_to_mutation: None,
        })
    }
}
