//! The watchdog's one D1 read: `queued`/`processing` documents whose row has
//! not changed for a while. Reads only; the processors decide what to do.

use portfolio_core::shared::storage::StoreError;
use serde::Deserialize;
use wasm_bindgen::JsValue;
use worker::D1Database;

#[derive(Deserialize)]
struct KeyRow {
    key: String,
}

/// Keys of `queued`/`processing` rows with `updated_at < before_ms`, at most
/// `limit`, in random order (so healthy long runs do not hide the others
/// run after run; `documents_status_updated` serves the filter).
pub async fn stalled_documents(
    db: &D1Database,
    before_ms: u64,
    limit: u32,
) -> Result<Vec<String>, StoreError> {
    let failed = |e: worker::Error| StoreError::transient("D1 stalled documents", e);
    let rows = db
        .prepare(
            "SELECT key FROM documents WHERE status IN ('queued', 'processing') \
             AND updated_at < ?1 ORDER BY random() LIMIT ?2",
        )
        .bind(&[
            JsValue::from_f64(before_ms as f64),
            JsValue::from_f64(f64::from(limit)),
        ])
        .map_err(failed)?
        .all()
        .await
        .map_err(failed)?
        .results::<KeyRow>()
        .map_err(failed)?;
    Ok(rows.into_iter().map(|r| r.key).collect())
}
