//! The isolate's copy of the D1-exact index (`portfolio_core::index::cache`): reads the state
//! row of migration 0003, brings the copy up to date from `vector_index_changes`, and hands out
//! the pre-selected candidates for an exact rerank.
//!
//! Owns the SQL of the change log, the one cache per isolate and its sync lock. Must never rank
//! or decide by itself (what to load, when to drop the copy and which candidates a query gets
//! are `portfolio_core::index::d1_exact`'s), and never hold the cache borrowed across an `await`.
//!
//! A search reads the state row in its first-pass batch (`super::d1_search`), not in a D1 call
//! of its own: [`prefetch_state`] is the channel between the two adapters. The batch sends the
//! row; the vector source waits for it, and reads the row itself if the batch never sends it.

use std::cell::RefCell;
use std::rc::Rc;

use futures_channel::oneshot;
use futures_util::lock::Mutex;
use js_sys::Array;
use portfolio_core::index::cache::{
    IndexChange, IndexState, QuantizedVector, VectorCache, CACHE_MAX_BYTES,
};
use portfolio_core::index::d1_exact::{Candidates, Synced};
use portfolio_core::index::{decode_f32_le_hex, VectorIndexError, VectorQuery};
use serde::Deserialize;
use wasm_bindgen::{JsCast, JsValue};
use worker::D1Database;

use super::d1_rows::{bind, d1_error, decode_head, malformed, COL_EMBEDDING, SCAN_PAGE_ROWS};

/// Positions in a `CHANGES_SQL` row after the live row's columns.
const COL_SEQ: u32 = COL_EMBEDDING + 1;
const COL_DELETED: u32 = COL_EMBEDDING + 2;
const COL_QUANTIZED: u32 = COL_EMBEDDING + 3;

thread_local! {
    /// One cache per isolate (wasm is single-threaded: this is module state), shared by every
    /// request the isolate serves.
    static CACHE: RefCell<Option<VectorCache>> = const { RefCell::new(None) };
    /// Held while the cache is synced, so concurrent requests do not each read the whole
    /// index; a request that finds it held scans D1 instead of waiting.
    static SYNC: Rc<Mutex<()>> = Rc::new(Mutex::new(()));
}

/// Change-log rows: the id, the live row's columns (NULL for a deletion; same order as
/// `d1_vectors::COLUMNS`), then `seq`, `deleted` and the quantized vector. The f32 embedding is
/// read only where the quantized one is missing (rows written by hand): it is four times larger.
/// (`hex(NULL)` is `''`, not NULL: hence the `CASE`s.)
/// Keyset-paged on `seq`, which is unique.
const CHANGES_SQL: &str = "SELECT c.id, v.document_id, v.company_id, v.version, \
     v.dimensions, CASE WHEN v.quantized IS NULL THEN hex(v.embedding) END, c.seq, c.deleted, \
     CASE WHEN v.quantized IS NOT NULL THEN hex(v.quantized) END FROM vector_index_changes c \
     LEFT JOIN vector_index v ON v.id = c.id WHERE c.seq > ?1 ORDER BY c.seq LIMIT ?2";

/// The index's state row (migration 0003).
pub(super) const STATE_SQL: &str =
    "SELECT epoch, generation, vector_count, pruned_through FROM vector_index_state WHERE id = 1";

/// A row of [`STATE_SQL`].
#[derive(Deserialize)]
pub(super) struct StateRow {
    epoch: String,
    generation: f64,
    vector_count: f64,
    pruned_through: f64,
}

/// The state a row of [`STATE_SQL`] stands for; no row is an error.
pub(super) fn state_from_row(row: Option<StateRow>) -> Result<IndexState, VectorIndexError> {
    let row = row.ok_or_else(|| {
        malformed(
            "query",
            "vector_index_state has no row (migration 0003 not applied?)".into(),
        )
    })?;
    let count = |v: f64| {
        if v.is_finite() && v > 0.0 {
            v as u64
        } else {
            0
        }
    };
    Ok(IndexState {
        epoch: row.epoch,
        generation: count(row.generation),
        vector_count: count(row.vector_count),
        pruned_through: count(row.pruned_through),
    })
}

/// Reads `vector_index_state`.
async fn read_state(db: &D1Database) -> Result<IndexState, VectorIndexError> {
    let row: Option<StateRow> = db
        .prepare(STATE_SQL)
        .first(None)
        .await
        .map_err(|e| d1_error("query", e))?;
    state_from_row(row)
}

/// The sending half of [`prefetch_state`]: whoever reads the state row for the vector source
/// sends what it read. Dropped unsent, it lets the vector source read the row itself.
#[derive(Debug)]
pub struct StateSender(oneshot::Sender<Result<IndexState, VectorIndexError>>);

impl StateSender {
    /// Hands the state read (or why it could not be read) to the vector source.
    pub fn send(self, state: Result<IndexState, VectorIndexError>) {
        // The vector source may have stopped waiting (its search ended): nothing to do.
        let _ = self.0.send(state);
    }
}

/// The receiving half of [`prefetch_state`], given to the index.
#[derive(Debug)]
pub struct PrefetchedState(oneshot::Receiver<Result<IndexState, VectorIndexError>>);

/// A channel for the state row from a search's first-pass batch to its vector source, so the
/// search makes one D1 round trip fewer. The sender must be sent or dropped by a future the
/// search runs anyway (the first pass always runs: it reads the served-rows marker), or the
/// vector source waits for nothing.
#[must_use]
pub fn prefetch_state() -> (StateSender, PrefetchedState) {
    let (tx, rx) = oneshot::channel();
    (StateSender(tx), PrefetchedState(rx))
}

/// The state the batch sent, else (never sent, or its read failed) the row read now.
async fn current_state(
    db: &D1Database,
    prefetched: Option<PrefetchedState>,
) -> Result<IndexState, VectorIndexError> {
    if let Some(PrefetchedState(rx)) = prefetched {
        if let Ok(Ok(state)) = rx.await {
            return Ok(state);
        }
    }
    read_state(db).await
}

/// Runs `f` on the isolate's cache, made anew for other dimensions or another vector budget.
fn with_cache<R>(dimensions: usize, max_vectors: u64, f: impl FnOnce(&mut VectorCache) -> R) -> R {
    CACHE.with(|cell| {
        let mut slot = cell.borrow_mut();
        match slot.as_mut() {
            Some(cache)
                if cache.dimensions() == dimensions && cache.max_vectors() == max_vectors =>
            {
                f(cache)
            }
            _ => f(slot.insert(
                VectorCache::new(dimensions, CACHE_MAX_BYTES).with_max_vectors(max_vectors),
            )),
        }
    })
}

/// The index's vector count (`/api/health` compares it with the budget).
///
/// # Errors
/// A D1 failure or a missing state row.
pub async fn vector_count(db: &D1Database) -> Result<u64, VectorIndexError> {
    Ok(read_state(db).await?.vector_count)
}

/// Decodes one change-log row into the change it stands for.
fn decode_change(raw: &JsValue, dimensions: usize) -> Result<(u64, IndexChange), VectorIndexError> {
    const OP: &str = "query";
    let row: &Array = raw
        .dyn_ref()
        .ok_or_else(|| malformed(OP, "a change row that is not an array".into()))?;
    let id = row
        .get(0)
        .as_string()
        .ok_or_else(|| malformed(OP, "a change row without an id".into()))?;
    let seq = row
        .get(COL_SEQ)
        .as_f64()
        .filter(|s| s.is_finite() && *s >= 0.0)
        .ok_or_else(|| malformed(OP, format!("{id}: change seq")))? as u64;
    let deleted = row.get(COL_DELETED).as_f64() != Some(0.0) || row.get(1).is_null();
    if deleted {
        return Ok((seq, IndexChange::Delete { id, seq }));
    }
    let (row, id, metadata, stored_dimensions) = decode_head(OP, raw)?;
    if stored_dimensions != dimensions {
        return Ok((seq, IndexChange::Delete { id, seq }));
    }
    let vector = if let Some(hex) = row.get(COL_QUANTIZED).as_string() {
        QuantizedVector::from_hex(&hex, dimensions).ok_or_else(|| {
            VectorIndexError::CorruptStoredVector {
                id: id.clone(),
                bytes: hex.len() / 2,
                expected_bytes: dimensions + 8,
            }
        })?
    } else {
        let hex = row
            .get(COL_EMBEDDING)
            .as_string()
            .ok_or_else(|| malformed(OP, format!("{id}: no embedding")))?;
        QuantizedVector::new(&decode_f32_le_hex(&id, &hex, dimensions)?)
    };
    Ok((
        seq,
        IndexChange::Upsert {
            id,
            seq,
            metadata,
            vector,
        },
    ))
}

/// Brings the cache up to date with the index (`portfolio_core::index::d1_exact` decides what
/// to load and when the copy is dropped; this reads the rows).
async fn sync(
    db: &D1Database,
    dimensions: usize,
    max_vectors: u64,
    prefetched: Option<PrefetchedState>,
) -> Result<Synced, VectorIndexError> {
    let state = current_state(db, prefetched).await?;
    if let Err(done) = with_cache(dimensions, max_vectors, |c| c.check_sync(&state)) {
        return Ok(done);
    }
    let lock = SYNC.with(Rc::clone);
    // Another request of this isolate is syncing. Waiting for it would mean being woken from
    // that request's I/O context, which workerd refuses (the waiter is cancelled as "hung":
    // found by scripts/test/load-test.mjs): answer this request from the exact D1 scan instead.
    let Some(_guard) = lock.try_lock() else {
        return Ok(Synced::Busy);
    };
    // Another request may have synced while this one waited: read the state again, now that
    // nobody else is syncing, and plan from it.
    let state = read_state(db).await?;
    let mut cursor = match with_cache(dimensions, max_vectors, |c| c.begin_sync(&state)) {
        Ok(after) => after,
        Err(done) => return Ok(done),
    };
    loop {
        let page = bind(
            db.prepare(CHANGES_SQL),
            "query",
            &[
                JsValue::from_f64(cursor as f64),
                JsValue::from_f64(SCAN_PAGE_ROWS as f64),
            ],
        )?
        .raw_js_value()
        .await
        .map_err(|e| d1_error("query", e))?;
        let mut changes = Vec::with_capacity(page.len());
        for raw in &page {
            let (seq, change) = decode_change(raw, dimensions)?;
            cursor = cursor.max(seq);
            changes.push(change);
        }
        if !with_cache(dimensions, max_vectors, |c| c.apply_page(changes, &state)) {
            return Ok(Synced::OverBudget(state.vector_count));
        }
        if page.len() < SCAN_PAGE_ROWS {
            break;
        }
    }
    with_cache(dimensions, max_vectors, |c| c.finish_sync(&state));
    Ok(Synced::Ready)
}

/// The ids that may be among the query's top k, from an up-to-date cache of at most
/// `max_vectors` vectors, checked against the `prefetched` state when there is one.
///
/// # Errors
/// A D1 failure or a corrupt stored row while syncing.
pub async fn candidates(
    db: &D1Database,
    dimensions: usize,
    max_vectors: u64,
    query: &VectorQuery,
    prefetched: Option<PrefetchedState>,
) -> Result<Candidates, VectorIndexError> {
    let synced = sync(db, dimensions, max_vectors, prefetched).await?;
    Ok(with_cache(dimensions, max_vectors, |c| {
        Candidates::after_sync(synced, c, query)
    }))
}
