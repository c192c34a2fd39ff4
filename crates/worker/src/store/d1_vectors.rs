//! `D1VectorIndex`: the `VectorIndex` trait over the D1 table `vector_index` (f32 BLOBs), with
//! exact cosine top-k computed in the Worker.
//!
//! Owns the SQL for that table and the reads of each query path: the rows of the isolate
//! cache's candidates (`super::vector_cache`), or every row page by page while another request
//! of the isolate loads that cache. Must never rank, filter, validate or choose a path by
//! itself: `portfolio_core::index` (`d1_exact`) does, so both implementations agree. Every statement stays within D1's 100 bound parameters and 100 KB.

use std::cell::RefCell;

use futures_util::future::try_join_all;
use js_sys::Uint8Array;
use portfolio_core::index::cache::{
    max_cached_vectors, QuantizedVector, TOMBSTONE_RETENTION_CHANGES,
};
use portfolio_core::index::d1_exact::{plan_query, ExactRanking, QueryPath};
use portfolio_core::index::{
    decode_f32_le_hex, encode_f32_le, plan_d1_statements, validate_id, validate_query,
    validate_record, IndexInfo, MutationReceipt, VectorIndex, VectorIndexError, VectorMatch,
    VectorQuery, VectorRecord, D1_MAX_BOUND_PARAMS,
};
use wasm_bindgen::JsValue;
use worker::D1Database;

use super::d1_rows::{bind, d1_error, decode_row, Row, BACKEND, SCAN_PAGE_ROWS};
use super::vector_cache::{self, PrefetchedState};

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
    /// The state row read for the next query by someone else (a search's first-pass batch).
    prefetched: RefCell<Option<PrefetchedState>>,
}

impl D1VectorIndex {
    /// An index over `db`'s `vector_index` table for vectors of `dimensions`, refusing queries
    /// past what the isolate cache holds.
    pub fn new(db: D1Database, dimensions: usize) -> Self {
        Self {
            db,
            dimensions,
            max_vectors: max_cached_vectors(dimensions),
            prefetched: RefCell::new(None),
        }
    }

    /// The next query takes the index's state row from `state` instead of reading it
    /// (`vector_cache::prefetch_state`).
    #[must_use]
    pub fn with_prefetched_state(self, state: PrefetchedState) -> Self {
        *self.prefetched.borrow_mut() = Some(state);
        self
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

/// Offers one stored row to the ranking.
fn offer(ranking: &mut ExactRanking<'_>, row: Row) -> Result<(), VectorIndexError> {
    ranking.offer(row.id, row.dimensions, row.metadata, &row.embedding_hex)
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
        let mut ranking = ExactRanking::new(query);
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
                offer(&mut ranking, row)?;
            }
            if page_len < SCAN_PAGE_ROWS {
                break;
            }
        }
        Ok(ranking.into_matches())
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
        let prefetched = self.prefetched.borrow_mut().take();
        let candidates = vector_cache::candidates(
            &self.db,
            self.dimensions,
            self.max_vectors,
            query,
            prefetched,
        )
        .await?;
        let mut rerank = match plan_query(candidates, query, self.max_vectors, SCAN_PAGE_ROWS)? {
            QueryPath::Scan => return self.scan(query).await,
            QueryPath::Approximate(matches) => return Ok(matches),
            QueryPath::Rerank(rerank) => rerank,
        };
        // The exact rerank reads the candidates' rows, highest bound first, until the k-th
        // exact score beats every bound left. Rows written since the cache was read are taken
        // as they are now, filter and dimensions included.
        let mut ranking = ExactRanking::new(query);
        while let Some(ids) = rerank.next_batch(ranking.top()) {
            for row in self.select_by_ids(&ids).await? {
                offer(&mut ranking, row)?;
            }
        }
        Ok(ranking.into_matches())
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
