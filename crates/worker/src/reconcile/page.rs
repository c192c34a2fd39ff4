//! One page of a run: list R2 after the cursor, read the document rows of the
//! same key range, count the stores of the ready ones, let the core decide,
//! claim the rows and enqueue the commands.
//!
//! Bounded by the page size: one R2 list, at most four D1 queries and one D1
//! batch per page, whatever the bucket's size. Never touches the run row.

use super::stores;
use crate::bindings;
use portfolio_core::keys::SHA256_METADATA;
use portfolio_core::reconcile::{
    count_reasons, failed_keys, page_end, plan_page, store_probes, DocumentRow, DocumentStatus,
    ListedObject, PageEnd, PageFacts, PlannedCommand, Reason, ReconcileSettings, StoreCounts,
    QUEUE_SEND_BATCH_MAX,
};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use wasm_bindgen::JsValue;
use worker::{
    BatchMessageBuilder, D1Database, D1PreparedStatement, Env, Include, QueueContentType,
    RawMessageBuilder,
};

/// Rows read per page: twice the objects, so a range with a few more rows
/// than objects (tombstones, documents gone) still ends at R2's horizon
/// instead of cutting the page short; only a range of mostly gone documents
/// ends the page early.
fn rows_limit(page_size: u32) -> u32 {
    page_size.saturating_mul(2)
}

/// Statements per D1 batch when claiming rows.
const CLAIMS_PER_BATCH: usize = 100;

fn num(n: impl Into<f64>) -> JsValue {
    JsValue::from_f64(n.into())
}

/// What a page did.
#[derive(Debug)]
pub struct PageReport {
    pub end: PageEnd,
    pub objects_seen: u32,
    pub documents_seen: u32,
    pub stores_checked: u32,
    /// Commands actually enqueued, per reason.
    pub enqueued: BTreeMap<&'static str, u32>,
    /// Problems that did not stop the page (they go on the run row).
    pub errors: Vec<String>,
}

#[derive(Deserialize)]
struct RowColumns {
    id: f64,
    key: String,
    status: String,
    sha256: Option<String>,
    etag: Option<String>,
    updated_at: f64,
    chunk_count: f64,
    active_version: Option<f64>,
    latest_version: f64,
}

#[derive(Deserialize)]
struct FailedRuns {
    key: String,
    failed: f64,
}

/// Processes the page after `cursor`.
pub async fn process(
    env: &Env,
    cursor: &str,
    settings: &ReconcileSettings,
    now_ms: u64,
) -> worker::Result<PageReport> {
    let db = env.d1(bindings::DB)?;
    let mut errors = Vec::new();

    let (objects, objects_truncated) = list_objects(env, cursor, settings.page_size).await?;
    let upper = if objects_truncated {
        objects.last().map(|o| o.key.clone())
    } else {
        None
    };
    let (documents, documents_truncated) = read_documents(
        &db,
        cursor,
        upper.as_deref(),
        rows_limit(settings.page_size),
        &mut errors,
    )
    .await?;
    let end = page_end(
        cursor,
        &objects,
        objects_truncated,
        &documents,
        documents_truncated,
    )
    .map_err(|e| worker::Error::RustError(e.to_string()))?;

    let probes = store_probes(&objects, &documents, &end);
    let mut store_counts = HashMap::new();
    if !probes.is_empty() {
        let chunks = stores::count_chunks(&db, &probes).await?;
        let vectors = stores::count_vectors(env, &db, &probes).await?;
        for probe in &probes {
            store_counts.insert(
                probe.document_id,
                StoreCounts {
                    chunks: chunks.get(&probe.document_id).copied().unwrap_or(0),
                    // Not counted this page (Vectorize lookup budget): assume consistent.
                    vectors: vectors
                        .get(&probe.document_id)
                        .copied()
                        .unwrap_or(probe.chunk_count),
                },
            );
        }
    }
    let failed_runs = if failed_keys(&documents, &end).is_empty() {
        HashMap::new()
    } else {
        count_failed_runs(&db, cursor, &end).await?
    };

    let observed_at = String::from(js_sys::Date::new(&num(now_ms as f64)).to_iso_string());
    let plan = plan_page(
        &PageFacts {
            objects: &objects,
            documents: &documents,
            end: &end,
            stores: &store_counts,
            failed_runs: &failed_runs,
            now_ms,
            observed_at: &observed_at,
        },
        settings,
    );

    let claimed = claim_rows(&db, &plan.commands, now_ms).await?;
    let sent = send_commands(env, &claimed, &mut errors).await;
    Ok(PageReport {
        end,
        objects_seen: plan.objects_seen,
        documents_seen: plan.documents_seen,
        stores_checked: plan.stores_checked,
        enqueued: count_reasons(sent),
        errors,
    })
}

async fn list_objects(
    env: &Env,
    cursor: &str,
    page_size: u32,
) -> worker::Result<(Vec<ListedObject>, bool)> {
    let bucket = env.bucket(bindings::DOCUMENTS)?;
    let mut list = bucket
        .list()
        .limit(page_size)
        .include(vec![Include::CustomMetadata]);
    if !cursor.is_empty() {
        list = list.start_after(cursor);
    }
    let listing = list.execute().await?;
    let objects = listing
        .objects()
        .into_iter()
        .map(|o| ListedObject {
            key: o.key(),
            etag: o.etag(),
            size: o.size(),
            uploaded_ms: o.uploaded().as_millis(),
            sha256: o
                .custom_metadata()
                .ok()
                .and_then(|m| m.get(SHA256_METADATA).cloned()),
        })
        .collect();
    Ok((objects, listing.truncated()))
}

/// Rows after `cursor` (up to `upper` when R2 has more), at most `limit`;
/// `true` when more rows exist in that range.
async fn read_documents(
    db: &D1Database,
    cursor: &str,
    upper: Option<&str>,
    limit: u32,
    errors: &mut Vec<String>,
) -> worker::Result<(Vec<DocumentRow>, bool)> {
    let rows: Vec<RowColumns> = db
        .prepare(
            "SELECT id, key, status, sha256, etag, updated_at, chunk_count, active_version, latest_version FROM documents \
             WHERE key > ?1 AND (?2 IS NULL OR key <= ?2) ORDER BY key LIMIT ?3",
        )
        .bind(&[
            cursor.into(),
            upper.map_or(JsValue::NULL, JsValue::from_str),
            num(f64::from(limit) + 1.0),
        ])?
        .all()
        .await?
        .results()?;
    let truncated = rows.len() > limit as usize;
    let mut documents = Vec::with_capacity(rows.len());
    for row in rows.into_iter().take(limit as usize) {
        let Some(status) = DocumentStatus::parse(&row.status) else {
            errors.push(format!(
                "document {} has unknown status {:?}",
                row.key, row.status
            ));
            continue;
        };
        documents.push(DocumentRow {
            id: row.id as i64,
            key: row.key,
            status,
            sha256: row.sha256,
            etag: row.etag,
            updated_at_ms: row.updated_at.max(0.0) as u64,
            chunk_count: row.chunk_count.max(0.0) as u32,
            active_version: row.active_version.map(|v| v.max(0.0) as u64),
            latest_version: row.latest_version.max(0.0) as u64,
        });
    }
    Ok((documents, truncated))
}

/// Failed runs since the last successful one, for the page's failed documents.
async fn count_failed_runs(
    db: &D1Database,
    cursor: &str,
    end: &PageEnd,
) -> worker::Result<HashMap<String, u32>> {
    let upper = match end {
        PageEnd::Through(key) => JsValue::from_str(key),
        PageEnd::Last => JsValue::NULL,
    };
    let rows: Vec<FailedRuns> = db
        .prepare(
            "SELECT d.key AS key, COUNT(p.id) AS failed FROM documents d \
             JOIN processing_runs p ON p.document_key = d.key AND p.status = 'failed' \
             WHERE d.status = 'failed' AND d.key > ?1 AND (?2 IS NULL OR d.key <= ?2) \
               AND p.started_at > COALESCE((SELECT MAX(s.started_at) FROM processing_runs s \
                   WHERE s.document_key = d.key AND s.status IN ('ready', 'unchanged')), -1) \
             GROUP BY d.key",
        )
        .bind(&[cursor.into(), upper])?
        .all()
        .await?
        .results()?;
    Ok(rows
        .into_iter()
        .map(|r| (r.key, r.failed.max(0.0) as u32))
        .collect())
}

fn claim_statement(
    db: &D1Database,
    planned: &PlannedCommand,
    now_ms: u64,
) -> worker::Result<D1PreparedStatement> {
    let key = planned.command.key();
    let now = num(now_ms as f64);
    match planned.expected_updated_at_ms {
        None => db
            .prepare(
                "INSERT INTO documents (key, status, created_at, updated_at) VALUES (?1, 'queued', ?2, ?2) \
                 ON CONFLICT(key) DO NOTHING",
            )
            .bind(&[key.into(), now]),
        Some(expected) => db
            .prepare(
                "UPDATE documents SET status = 'queued', step = NULL, updated_at = ?3 \
                 WHERE key = ?1 AND updated_at = ?2",
            )
            .bind(&[key.into(), num(expected as f64), now]),
    }
}

/// Marks each planned document `queued` now, if its row is as the page read
/// it; returns the commands whose row was claimed. A row changed in between
/// is being handled by someone else, and a redelivered page finds its rows
/// claimed already, so nothing is enqueued twice. The mark also makes the
/// document "in flight" for the next run until its processor reports back.
async fn claim_rows<'a>(
    db: &D1Database,
    planned: &'a [PlannedCommand],
    now_ms: u64,
) -> worker::Result<Vec<&'a PlannedCommand>> {
    let mut claimed = Vec::with_capacity(planned.len());
    for group in planned.chunks(CLAIMS_PER_BATCH) {
        let statements = group
            .iter()
            .map(|p| claim_statement(db, p, now_ms))
            .collect::<worker::Result<Vec<_>>>()?;
        let results = db.batch(statements).await?;
        for (planned, result) in group.iter().zip(results) {
            if result.meta()?.and_then(|m| m.changes).unwrap_or(0) > 0 {
                claimed.push(planned);
            }
        }
    }
    Ok(claimed)
}

/// Enqueues the claimed commands in `sendBatch` calls; returns the reasons of
/// those sent. A failed batch is reported, not retried: its rows stay
/// `queued` and the stuck rule re-enqueues them on a later run.
async fn send_commands(
    env: &Env,
    claimed: &[&PlannedCommand],
    errors: &mut Vec<String>,
) -> Vec<Reason> {
    let mut sent = Vec::with_capacity(claimed.len());
    let queue = match env.queue(bindings::INGEST_QUEUE) {
        Ok(queue) => queue,
        Err(e) => {
            errors.push(format!("ingest queue unavailable: {e}"));
            return sent;
        }
    };
    let serializer = serde_wasm_bindgen::Serializer::json_compatible();
    for group in claimed.chunks(QUEUE_SEND_BATCH_MAX) {
        let messages: Result<Vec<_>, _> = group
            .iter()
            .map(|p| {
                p.command.serialize(&serializer).map(|js| {
                    RawMessageBuilder::new(js).build_with_content_type(QueueContentType::Json)
                })
            })
            .collect();
        let outcome = match messages {
            Ok(messages) => queue
                .send_raw_batch(BatchMessageBuilder::new().messages(messages).build())
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match outcome {
            Ok(()) => sent.extend(group.iter().map(|p| p.reason)),
            Err(e) => errors.push(format!(
                "enqueueing {} command(s) failed ({e}); their rows stay queued until the stuck rule picks them up",
                group.len()
            )),
        }
    }
    sent
}
