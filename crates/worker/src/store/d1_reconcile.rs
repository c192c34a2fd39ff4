//! Reconciliation's D1 side behind `portfolio_core::reconcile::ReconcileStore`:
//! the document rows of a key range, grouped counts, row claims, the
//! `reconcile_runs` rows and the sweep of leftover generations.
//!
//! Translates calls only: which rows to claim, what is a leftover and when a
//! run is stale are decided in the core. Every write is conditional, so a
//! redelivered page or a processor racing the sweep never loses a live row.

use portfolio_core::reconcile::{
    ClaimedPage, CreatedRun, DocumentRead, DocumentRow, DocumentStatus, LeftoverGeneration,
    PlannedCommand, ReconcileStore, RunRecord, RunStatus, StoreProbe, SweepTarget,
};
use portfolio_core::shared::storage::StoreError;
use serde::Deserialize;
use std::collections::HashMap;
use wasm_bindgen::JsValue;
use worker::{D1Database, D1PreparedStatement, D1Result, Env};

/// Documents per JSON list bound to one query: the list stays a few KB, far
/// below D1's 100 KB statement limit (Source: Cloudflare D1 limits).
const ITEMS_PER_QUERY: usize = 200;

/// Statements per D1 batch when claiming rows or sweeping.
const STATEMENTS_PER_BATCH: usize = 100;

/// The `DB` database, seen by reconciliation.
pub struct D1ReconcileStore {
    db: D1Database,
}

impl std::fmt::Debug for D1ReconcileStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("D1ReconcileStore")
    }
}

fn num(n: impl Into<f64>) -> JsValue {
    JsValue::from_f64(n.into())
}

fn ms(n: u64) -> JsValue {
    JsValue::from_f64(n as f64)
}

fn opt_str(text: Option<&str>) -> JsValue {
    text.map_or(JsValue::NULL, JsValue::from_str)
}

fn count(n: f64) -> u32 {
    n.max(0.0) as u32
}

fn failed(operation: &'static str) -> impl Fn(worker::Error) -> StoreError {
    move |e| StoreError::transient(operation, e)
}

fn changes(result: &D1Result) -> u32 {
    result
        .meta()
        .ok()
        .flatten()
        .and_then(|m| m.changes)
        .map_or(0, |n| u32::try_from(n).unwrap_or(u32::MAX))
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

#[derive(Deserialize)]
struct CountRow {
    document_id: f64,
    n: f64,
}

#[derive(Deserialize)]
struct GenerationRow {
    document_id: f64,
    version: f64,
    n: f64,
    max_index: f64,
}

#[derive(Deserialize)]
struct IdRow {
    id: f64,
}

/// One run as stored.
#[derive(Deserialize)]
struct RunColumns {
    id: f64,
    trigger: String,
    status: String,
    started_at: f64,
    finished_at: Option<f64>,
    objects_seen: f64,
    documents_seen: f64,
    stores_checked: f64,
    swept: f64,
    pages: f64,
    cursor: Option<String>,
    page_size: f64,
    enqueued: String,
    errors: String,
    updated_at: Option<f64>,
}

impl RunColumns {
    fn into_record(self) -> RunRecord {
        let whole = |n: f64| n.max(0.0) as u64;
        RunRecord {
            id: whole(self.id),
            trigger: self.trigger,
            // The column's CHECK allows only the three; anything else cannot progress.
            status: RunStatus::parse(&self.status).unwrap_or(RunStatus::Failed),
            started_at_ms: whole(self.started_at),
            finished_at_ms: self.finished_at.map(whole),
            objects_seen: whole(self.objects_seen),
            documents_seen: whole(self.documents_seen),
            stores_checked: whole(self.stores_checked),
            swept: whole(self.swept),
            pages: count(self.pages),
            cursor: self.cursor,
            page_size: count(self.page_size),
            enqueued: self.enqueued,
            errors: self.errors,
            updated_at_ms: self.updated_at.map(whole),
        }
    }
}

const RUN_COLUMNS: &str =
    "id, trigger, status, started_at, finished_at, objects_seen, documents_seen, \
    stores_checked, swept, pages, cursor, page_size, enqueued, errors, updated_at";

impl D1ReconcileStore {
    /// The database bound as `DB`.
    ///
    /// # Errors
    /// When the binding is missing.
    pub fn from_env(env: &Env) -> Result<Self, StoreError> {
        let db = env
            .d1(crate::bindings::DB)
            .map_err(|e| StoreError::permanent("D1 binding", e))?;
        Ok(Self { db })
    }

    /// `SELECT document_id, n` over `json_each(?1)` of the probes, with
    /// `count_sql` counting rows for `p.document_id` / `p.version`.
    async fn grouped_count(
        &self,
        probes: &[StoreProbe],
        count_sql: &str,
    ) -> Result<HashMap<i64, u32>, StoreError> {
        let mut counts = HashMap::with_capacity(probes.len());
        for slice in probes.chunks(ITEMS_PER_QUERY) {
            let list = serde_json::to_string(slice)
                .map_err(|e| StoreError::permanent("D1 store counts", e))?;
            let rows: Vec<CountRow> = self
                .db
                .prepare(format!(
                    "SELECT p.document_id AS document_id, ({count_sql}) AS n FROM \
                     (SELECT json_extract(value, '$.document_id') AS document_id, \
                             json_extract(value, '$.version') AS version FROM json_each(?1)) p"
                ))
                .bind(&[list.into()])
                .map_err(failed("D1 store counts"))?
                .all()
                .await
                .map_err(failed("D1 store counts"))?
                .results()
                .map_err(failed("D1 store counts"))?;
            counts.extend(rows.into_iter().map(|r| (r.document_id as i64, count(r.n))));
        }
        Ok(counts)
    }

    async fn running(&self) -> Result<Option<u64>, StoreError> {
        let row: Option<f64> = self
            .db
            .prepare("SELECT id FROM reconcile_runs WHERE status = 'running' LIMIT 1")
            .first(Some("id"))
            .await
            .map_err(failed("D1 running run"))?;
        Ok(row.map(|id| id as u64))
    }

    fn claim_statement(
        &self,
        planned: &PlannedCommand,
        now_ms: u64,
    ) -> worker::Result<D1PreparedStatement> {
        let key = planned.command.key();
        match planned.expected_updated_at_ms {
            None => self
                .db
                .prepare(
                    "INSERT INTO documents (key, status, created_at, updated_at) VALUES (?1, 'queued', ?2, ?2) \
                     ON CONFLICT(key) DO NOTHING",
                )
                .bind(&[key.into(), ms(now_ms)]),
            Some(expected) => self
                .db
                .prepare(
                    "UPDATE documents SET status = 'queued', step = NULL, updated_at = ?3 \
                     WHERE key = ?1 AND updated_at = ?2",
                )
                .bind(&[key.into(), ms(expected), ms(now_ms)]),
        }
    }
}

impl ReconcileStore for D1ReconcileStore {
    async fn document_rows(
        &self,
        after: &str,
        through: Option<&str>,
        limit: u32,
    ) -> Result<Vec<DocumentRead>, StoreError> {
        let rows: Vec<RowColumns> = self
            .db
            .prepare(
                "SELECT id, key, status, sha256, etag, updated_at, chunk_count, active_version, latest_version \
                 FROM documents WHERE key > ?1 AND (?2 IS NULL OR key <= ?2) ORDER BY key LIMIT ?3",
            )
            .bind(&[after.into(), opt_str(through), num(limit)])
            .map_err(failed("D1 document rows"))?
            .all()
            .await
            .map_err(failed("D1 document rows"))?
            .results()
            .map_err(failed("D1 document rows"))?;
        Ok(rows
            .into_iter()
            .map(|row| match DocumentStatus::parse(&row.status) {
                Some(status) => DocumentRead::Row(DocumentRow {
                    id: row.id as i64,
                    key: row.key,
                    status,
                    sha256: row.sha256,
                    etag: row.etag,
                    updated_at_ms: row.updated_at.max(0.0) as u64,
                    chunk_count: count(row.chunk_count),
                    active_version: row.active_version.map(|v| v.max(0.0) as u64),
                    latest_version: row.latest_version.max(0.0) as u64,
                }),
                None => DocumentRead::UnknownStatus {
                    key: row.key,
                    status: row.status,
                },
            })
            .collect())
    }

    async fn failed_run_counts(
        &self,
        after: &str,
        through: Option<&str>,
    ) -> Result<HashMap<String, u32>, StoreError> {
        let rows: Vec<FailedRuns> = self
            .db
            .prepare(
                "SELECT d.key AS key, COUNT(p.id) AS failed FROM documents d \
                 JOIN processing_runs p ON p.document_key = d.key AND p.status = 'failed' \
                 WHERE d.status = 'failed' AND d.key > ?1 AND (?2 IS NULL OR d.key <= ?2) \
                   AND p.started_at > COALESCE((SELECT MAX(s.started_at) FROM processing_runs s \
                       WHERE s.document_key = d.key AND s.status IN ('ready', 'unchanged')), -1) \
                 GROUP BY d.key",
            )
            .bind(&[after.into(), opt_str(through)])
            .map_err(failed("D1 failed runs"))?
            .all()
            .await
            .map_err(failed("D1 failed runs"))?
            .results()
            .map_err(failed("D1 failed runs"))?;
        Ok(rows.into_iter().map(|r| (r.key, count(r.failed))).collect())
    }

    async fn chunk_counts(&self, probes: &[StoreProbe]) -> Result<HashMap<i64, u32>, StoreError> {
        self.grouped_count(
            probes,
            "SELECT COUNT(*) FROM chunks c WHERE c.document_id = p.document_id AND c.version = p.version",
        )
        .await
    }

    async fn vector_counts(&self, probes: &[StoreProbe]) -> Result<HashMap<i64, u32>, StoreError> {
        self.grouped_count(
            probes,
            "SELECT COUNT(*) FROM vector_index v WHERE v.document_id = p.document_id AND v.version = p.version",
        )
        .await
    }

    async fn claim_rows(
        &self,
        commands: &[PlannedCommand],
        now_ms: u64,
    ) -> Result<Vec<bool>, StoreError> {
        let mut claimed = Vec::with_capacity(commands.len());
        for group in commands.chunks(STATEMENTS_PER_BATCH) {
            let statements = group
                .iter()
                .map(|p| self.claim_statement(p, now_ms))
                .collect::<worker::Result<Vec<_>>>()
                .map_err(failed("D1 claim rows"))?;
            let results = self
                .db
                .batch(statements)
                .await
                .map_err(failed("D1 claim rows"))?;
            claimed.extend(results.iter().map(|r| changes(r) > 0));
        }
        Ok(claimed)
    }

    async fn leftover_generations(
        &self,
        targets: &[SweepTarget],
        written_before_ms: u64,
    ) -> Result<Vec<LeftoverGeneration>, StoreError> {
        let mut leftovers = Vec::new();
        for slice in targets.chunks(ITEMS_PER_QUERY) {
            let list = serde_json::to_string(slice)
                .map_err(|e| StoreError::permanent("D1 leftover generations", e))?;
            let rows: Vec<GenerationRow> = self
                .db
                .prepare(
                    "SELECT c.document_id AS document_id, c.version AS version, COUNT(*) AS n, \
                            MAX(c.chunk_index) AS max_index \
                     FROM (SELECT json_extract(value, '$.document_id') AS document_id, \
                                  json_extract(value, '$.below_version') AS below FROM json_each(?1)) t \
                     JOIN chunks c ON c.document_id = t.document_id AND c.version < t.below \
                     WHERE c.created_at < ?2 \
                     GROUP BY c.document_id, c.version ORDER BY c.document_id, c.version",
                )
                .bind(&[list.into(), ms(written_before_ms)])
                .map_err(failed("D1 leftover generations"))?
                .all()
                .await
                .map_err(failed("D1 leftover generations"))?
                .results()
                .map_err(failed("D1 leftover generations"))?;
            leftovers.extend(rows.into_iter().map(|r| LeftoverGeneration {
                document_id: r.document_id as i64,
                version: r.version.max(0.0) as u64,
                chunk_rows: count(r.n),
                span: count(r.max_index).saturating_add(1),
            }));
        }
        Ok(leftovers)
    }

    async fn delete_leftover_chunks(
        &self,
        generations: &[LeftoverGeneration],
        written_before_ms: u64,
    ) -> Result<u32, StoreError> {
        let mut deleted = 0;
        for group in generations.chunks(STATEMENTS_PER_BATCH) {
            // Re-checked at delete time: the generation is still older than the
            // live one, or its document still a tombstone (a re-created document
            // starts a newer generation than the tombstone's latest).
            let statements = group
                .iter()
                .map(|g| {
                    self.db
                        .prepare(
                            "DELETE FROM chunks WHERE document_id = ?1 AND version = ?2 AND created_at < ?3 \
                             AND EXISTS (SELECT 1 FROM documents d WHERE d.id = ?1 AND \
                               (d.active_version > ?2 OR (d.status = 'deleted' AND d.latest_version >= ?2)))",
                        )
                        .bind(&[
                            num(g.document_id as f64),
                            ms(g.version),
                            ms(written_before_ms),
                        ])
                })
                .collect::<worker::Result<Vec<_>>>()
                .map_err(failed("D1 sweep chunks"))?;
            let results = self
                .db
                .batch(statements)
                .await
                .map_err(failed("D1 sweep chunks"))?;
            deleted += results.iter().map(changes).sum::<u32>();
        }
        Ok(deleted)
    }

    async fn abandon_stale_runs(&self, now_ms: u64, stale_after_ms: u64) -> Result<(), StoreError> {
        self.db
            .prepare(
                "UPDATE reconcile_runs SET status = 'failed', finished_at = ?1, updated_at = ?1, \
                 errors = json_insert(errors, '$[#]', 'abandoned: no progress for ' || ?2 || ' ms') \
                 WHERE status = 'running' AND COALESCE(updated_at, started_at) < ?1 - ?2",
            )
            .bind(&[ms(now_ms), ms(stale_after_ms)])
            .map_err(failed("D1 abandon stale runs"))?
            .run()
            .await
            .map_err(failed("D1 abandon stale runs"))?;
        Ok(())
    }

    async fn create_run(
        &self,
        trigger: &str,
        page_size: u32,
        now_ms: u64,
    ) -> Result<CreatedRun, StoreError> {
        if let Some(id) = self.running().await? {
            return Ok(CreatedRun::AlreadyRunning(id));
        }
        let inserted = self
            .db
            .prepare(
                "INSERT INTO reconcile_runs (trigger, status, started_at, page_size, updated_at) \
                 VALUES (?1, 'running', ?2, ?3, ?2) RETURNING id",
            )
            .bind(&[trigger.into(), ms(now_ms), num(page_size)])
            .map_err(failed("D1 create run"))?
            .first::<IdRow>(None)
            .await;
        match inserted {
            Ok(Some(row)) => Ok(CreatedRun::Started(row.id as u64)),
            Ok(None) => Err(StoreError::transient(
                "D1 create run",
                "reconcile run id missing",
            )),
            // The partial unique index settles a race between two triggers.
            Err(e) => match self.running().await? {
                Some(id) => Ok(CreatedRun::AlreadyRunning(id)),
                None => Err(StoreError::transient("D1 create run", e)),
            },
        }
    }

    async fn load_run(&self, run_id: u64) -> Result<Option<RunRecord>, StoreError> {
        let row: Option<RunColumns> = self
            .db
            .prepare(format!(
                "SELECT {RUN_COLUMNS} FROM reconcile_runs WHERE id = ?1"
            ))
            .bind(&[ms(run_id)])
            .map_err(failed("D1 load run"))?
            .first(None)
            .await
            .map_err(failed("D1 load run"))?;
        Ok(row.map(RunColumns::into_record))
    }

    async fn claim_page(&self, run_id: u64, page: &ClaimedPage) -> Result<bool, StoreError> {
        let result = self
            .db
            .prepare(
                "UPDATE reconcile_runs SET pages = ?2, cursor = ?3, objects_seen = objects_seen + ?4, \
                 documents_seen = documents_seen + ?5, stores_checked = stores_checked + ?6, enqueued = ?7, \
                 errors = ?8, updated_at = ?9, swept = swept + ?11, \
                 status = CASE WHEN ?10 = 1 THEN 'done' ELSE status END, \
                 finished_at = CASE WHEN ?10 = 1 THEN ?9 ELSE finished_at END \
                 WHERE id = ?1 AND pages = ?2 - 1 AND status = 'running'",
            )
            .bind(&[
                ms(run_id),
                num(page.page),
                page.cursor.as_str().into(),
                num(page.objects_seen),
                num(page.documents_seen),
                num(page.stores_checked),
                page.enqueued.as_str().into(),
                page.errors.as_str().into(),
                ms(page.now_ms),
                num(u8::from(page.last)),
                num(page.swept),
            ])
            .map_err(failed("D1 claim page"))?
            .run()
            .await
            .map_err(failed("D1 claim page"))?;
        Ok(changes(&result) > 0)
    }

    async fn append_run_error(
        &self,
        run_id: u64,
        message: &str,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        self.db
            .prepare(
                "UPDATE reconcile_runs SET errors = json_insert(errors, '$[#]', ?2), updated_at = ?3 \
                 WHERE id = ?1 AND json_array_length(errors) < 50",
            )
            .bind(&[ms(run_id), message.into(), ms(now_ms)])
            .map_err(failed("D1 run error"))?
            .run()
            .await
            .map_err(failed("D1 run error"))?;
        Ok(())
    }

    async fn fail_run(&self, run_id: u64, message: &str, now_ms: u64) -> Result<(), StoreError> {
        self.db
            .prepare(
                "UPDATE reconcile_runs SET status = 'failed', finished_at = ?3, updated_at = ?3, \
                 errors = json_insert(errors, '$[#]', ?2) WHERE id = ?1 AND status = 'running'",
            )
            .bind(&[ms(run_id), message.into(), ms(now_ms)])
            .map_err(failed("D1 fail run"))?
            .run()
            .await
            .map_err(failed("D1 fail run"))?;
        Ok(())
    }

    async fn latest_runs(&self, limit: u32) -> Result<Vec<RunRecord>, StoreError> {
        let rows: Vec<RunColumns> = self
            .db
            .prepare(format!(
                "SELECT {RUN_COLUMNS} FROM reconcile_runs ORDER BY started_at DESC, id DESC LIMIT ?1"
            ))
            .bind(&[num(limit)])
            .map_err(failed("D1 latest runs"))?
            .all()
            .await
            .map_err(failed("D1 latest runs"))?
            .results()
            .map_err(failed("D1 latest runs"))?;
        Ok(rows.into_iter().map(RunColumns::into_record).collect())
    }
}
