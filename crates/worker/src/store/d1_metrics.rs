//! The local metrics store: data points in the `metric_points` table
//! (migration 0007; `version` from 0010), written in batched multi-row
//! inserts, read back a page at a time into
//! `portfolio_core::operations::metrics::MetricsSummary` or `VersionComparison`, and
//! pruned by the daily cron; plus the document and dead-letter counts the
//! metrics route reports next to the points.
//!
//! Never decides what a point means or how it is aggregated: the core does.

use portfolio_core::operations::metrics::{
    DataPoint, DocumentCounts, InFlightDocument, MetricKind, MetricsSummary, QueueCounts,
    VersionComparison,
};
use portfolio_core::shared::storage::StoreError;
use serde::Deserialize;
use wasm_bindgen::JsValue;
use worker::{D1Database, D1PreparedStatement};

/// Columns of one point insert.
const COLUMNS: usize = 13;
/// Bound parameters per D1 statement. Source: Cloudflare D1 limits, "Maximum
/// number of bound parameters per query: 100".
const D1_MAX_BOUND_PARAMS: usize = 100;
/// Rows per insert statement (13 columns each, within the 100 parameters).
const ROWS_PER_INSERT: usize = D1_MAX_BOUND_PARAMS / COLUMNS;
/// Insert statements per D1 batch: one batch stays small and quick.
const STATEMENTS_PER_BATCH: usize = 50;
/// Rows per read page: keeps one answer small while a window is streamed through.
const READ_PAGE_ROWS: u32 = 5_000;
/// Rows per delete statement: keeps each statement far inside D1's 30 s limit.
const DELETE_PAGE_ROWS: u32 = 10_000;
/// Most delete statements per prune (at most this × `DELETE_PAGE_ROWS` rows
/// a day; the next day's cron continues).
const MAX_DELETE_PAGES: u32 = 50;

fn d1(operation: &'static str) -> impl Fn(worker::Error) -> StoreError {
    move |e| StoreError::transient(operation, e)
}

fn num(n: f64) -> JsValue {
    JsValue::from_f64(n)
}

/// The `DB` database, for metrics.
pub struct D1Metrics {
    db: D1Database,
}

impl std::fmt::Debug for D1Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("D1Metrics")
    }
}

#[derive(Deserialize)]
struct PointRow {
    id: f64,
    at: f64,
    kind: String,
    name: String,
    outcome: String,
    detail: String,
    duration_ms: f64,
    status: f64,
    items: f64,
    tokens: f64,
    retries: f64,
    cost_usd: f64,
    enqueued: f64,
    version: String,
}

impl PointRow {
    fn into_point(self) -> Option<DataPoint> {
        Some(DataPoint {
            at_ms: self.at as u64,
            kind: MetricKind::parse(&self.kind)?,
            name: self.name,
            outcome: self.outcome,
            detail: self.detail,
            duration_ms: self.duration_ms,
            status: self.status as u16,
            items: self.items,
            tokens: self.tokens,
            retries: self.retries,
            cost_usd: self.cost_usd,
            enqueued: self.enqueued,
            version: self.version,
        })
    }
}

#[derive(Deserialize)]
struct CursorRow {
    id: Option<f64>,
}

#[derive(Deserialize)]
struct StatusCount {
    status: String,
    n: f64,
}

#[derive(Deserialize)]
struct OldestRow {
    key: String,
    status: String,
    updated_at: f64,
}

#[derive(Deserialize)]
struct LetterCounts {
    total: f64,
    in_window: Option<f64>,
    not_replayed: Option<f64>,
}

impl D1Metrics {
    /// Over the `DB` database.
    pub fn new(db: D1Database) -> Self {
        Self { db }
    }

    /// The database (for readers that share it).
    pub fn db(&self) -> &D1Database {
        &self.db
    }

    fn insert(&self, rows: &[DataPoint]) -> worker::Result<D1PreparedStatement> {
        let placeholders: Vec<String> = (0..rows.len())
            .map(|r| {
                let params: Vec<String> = (1..=COLUMNS)
                    .map(|c| format!("?{}", r * COLUMNS + c))
                    .collect();
                format!("({})", params.join(", "))
            })
            .collect();
        let sql = format!(
            "INSERT INTO metric_points (at, kind, name, outcome, detail, duration_ms, status, items, \
             tokens, retries, cost_usd, enqueued, version) VALUES {}",
            placeholders.join(", ")
        );
        let mut values = Vec::with_capacity(rows.len() * COLUMNS);
        for p in rows {
            values.extend([
                num(p.at_ms as f64),
                p.kind.as_str().into(),
                p.name.as_str().into(),
                p.outcome.as_str().into(),
                p.detail.as_str().into(),
                num(p.duration_ms),
                num(f64::from(p.status)),
                num(p.items),
                num(p.tokens),
                num(p.retries),
                num(p.cost_usd),
                num(p.enqueued),
                p.version.as_str().into(),
            ]);
        }
        self.db.prepare(sql).bind(&values)
    }

    /// Writes `points`, in D1 batches of at most `STATEMENTS_PER_BATCH` inserts.
    pub async fn write(&self, points: &[DataPoint]) -> Result<(), StoreError> {
        for batch in points.chunks(ROWS_PER_INSERT * STATEMENTS_PER_BATCH) {
            let statements = batch
                .chunks(ROWS_PER_INSERT)
                .map(|rows| self.insert(rows))
                .collect::<worker::Result<Vec<_>>>()
                .map_err(d1("D1 metric points"))?;
            self.db
                .batch(statements)
                .await
                .map_err(d1("D1 metric points"))?;
        }
        Ok(())
    }

    /// Folds the points of `summary`'s window into it, a page at a time, at
    /// most `max_rows` of them (the table's own cap); returns how many were read.
    pub async fn read_into(
        &self,
        summary: &mut MetricsSummary,
        until_ms: u64,
        max_rows: u32,
    ) -> Result<u64, StoreError> {
        self.read_points(None, summary.from_ms(), until_ms, max_rows, |point| {
            summary.add(point);
        })
        .await
    }

    /// Folds the request points of `comparison`'s window into it, as
    /// [`Self::read_into`] does; returns how many rows were read.
    pub async fn read_requests_into(
        &self,
        comparison: &mut VersionComparison,
        max_rows: u32,
    ) -> Result<u64, StoreError> {
        let (since, until) = (comparison.since_ms(), comparison.until_ms());
        self.read_points(Some(MetricKind::Request), since, until, max_rows, |point| {
            comparison.add(point);
        })
        .await
    }

    /// Hands the points at `since_ms ..= until_ms` (of `kind`, or of every
    /// kind) to `fold` in insertion order, a page at a time, at most about
    /// `max_rows` of them; returns how many rows were read.
    async fn read_points(
        &self,
        kind: Option<MetricKind>,
        since_ms: u64,
        until_ms: u64,
        max_rows: u32,
        mut fold: impl FnMut(&DataPoint),
    ) -> Result<u64, StoreError> {
        let since = since_ms as f64;
        let kind: JsValue = kind.map_or(JsValue::NULL, |k| k.as_str().into());
        // Rows are inserted in time order within a few seconds, so the first
        // row of the window starts an id range (keyset pages, no OFFSET).
        let first: Option<CursorRow> = self
            .db
            .prepare(
                "SELECT MIN(id) AS id FROM metric_points WHERE at >= ?1 AND (?2 IS NULL OR kind = ?2)",
            )
            .bind(&[num(since), kind.clone()])
            .map_err(d1("D1 metric window"))?
            .first(None)
            .await
            .map_err(d1("D1 metric window"))?;
        let Some(mut cursor) = first.and_then(|r| r.id).map(|id| id - 1.0) else {
            return Ok(0);
        };
        let mut read = 0u64;
        loop {
            let rows: Vec<PointRow> = self
                .db
                .prepare(
                    "SELECT id, at, kind, name, outcome, detail, duration_ms, status, items, tokens, retries, \
                     cost_usd, enqueued, version FROM metric_points WHERE id > ?1 AND at >= ?2 AND at <= ?3 \
                     AND (?5 IS NULL OR kind = ?5) ORDER BY id LIMIT ?4",
                )
                .bind(&[
                    num(cursor),
                    num(since),
                    num(until_ms as f64),
                    num(f64::from(READ_PAGE_ROWS)),
                    kind.clone(),
                ])
                .map_err(d1("D1 metric points"))?
                .all()
                .await
                .map_err(d1("D1 metric points"))?
                .results()
                .map_err(d1("D1 metric points"))?;
            let full = rows.len() as u32 == READ_PAGE_ROWS;
            for row in rows {
                cursor = row.id;
                read += 1;
                if let Some(point) = row.into_point() {
                    fold(&point);
                }
            }
            if !full || read >= u64::from(max_rows) {
                return Ok(read);
            }
        }
    }

    /// Deletes points older than `cutoff_ms`, then the oldest beyond
    /// `max_rows`; returns how many rows went.
    pub async fn prune(&self, cutoff_ms: u64, max_rows: u32) -> Result<u64, StoreError> {
        let mut deleted = 0u64;
        for _ in 0..MAX_DELETE_PAGES {
            let gone = self
                .delete_page(
                    "DELETE FROM metric_points WHERE id IN \
                     (SELECT id FROM metric_points WHERE at < ?1 ORDER BY at LIMIT ?2)",
                    cutoff_ms as f64,
                )
                .await?;
            deleted += gone;
            if gone < u64::from(DELETE_PAGE_ROWS) {
                break;
            }
        }
        for _ in 0..MAX_DELETE_PAGES {
            let gone = self
                .delete_page(
                    "DELETE FROM metric_points WHERE id IN (SELECT id FROM metric_points WHERE id <= \
                     (SELECT id FROM metric_points ORDER BY id DESC LIMIT 1 OFFSET ?1) ORDER BY id LIMIT ?2)",
                    f64::from(max_rows),
                )
                .await?;
            deleted += gone;
            if gone < u64::from(DELETE_PAGE_ROWS) {
                break;
            }
        }
        Ok(deleted)
    }

    async fn delete_page(&self, sql: &str, bound: f64) -> Result<u64, StoreError> {
        let result = self
            .db
            .prepare(sql)
            .bind(&[num(bound), num(f64::from(DELETE_PAGE_ROWS))])
            .map_err(d1("D1 metric prune"))?
            .run()
            .await
            .map_err(d1("D1 metric prune"))?;
        let changes = result
            .meta()
            .map_err(d1("D1 metric prune"))?
            .and_then(|m| m.changes)
            .unwrap_or(0);
        Ok(changes as u64)
    }

    /// Documents by status and the one in flight longest.
    pub async fn document_counts(&self, now_ms: u64) -> Result<DocumentCounts, StoreError> {
        let counts: Vec<StatusCount> = self
            .db
            .prepare("SELECT status, COUNT(*) AS n FROM documents GROUP BY status")
            .all()
            .await
            .map_err(d1("D1 document counts"))?
            .results()
            .map_err(d1("D1 document counts"))?;
        let oldest: Option<OldestRow> = self
            .db
            .prepare(
                "SELECT key, status, updated_at FROM documents WHERE status IN ('queued', 'processing') \
                 ORDER BY updated_at LIMIT 1",
            )
            .first(None)
            .await
            .map_err(d1("D1 oldest in flight"))?;
        Ok(DocumentCounts {
            by_status: counts.into_iter().map(|c| (c.status, c.n as u64)).collect(),
            oldest_in_flight: oldest.map(|o| InFlightDocument {
                age_ms: now_ms.saturating_sub(o.updated_at as u64),
                key: o.key,
                status: o.status,
                since_ms: o.updated_at as u64,
            }),
        })
    }

    /// Documents waiting and dead letters (those received since `since_ms`).
    pub async fn queue_counts(
        &self,
        documents: &DocumentCounts,
        since_ms: u64,
    ) -> Result<QueueCounts, StoreError> {
        let letters: Option<LetterCounts> = self
            .db
            .prepare(
                "SELECT COUNT(*) AS total, SUM(received_at >= ?1) AS in_window, SUM(replays = 0) AS not_replayed \
                 FROM dead_letters",
            )
            .bind(&[num(since_ms as f64)])
            .map_err(d1("D1 dead letter counts"))?
            .first(None)
            .await
            .map_err(d1("D1 dead letter counts"))?;
        let status = |s: &str| documents.by_status.get(s).copied().unwrap_or(0);
        let letters = letters.unwrap_or(LetterCounts {
            total: 0.0,
            in_window: None,
            not_replayed: None,
        });
        Ok(QueueCounts {
            queued: status("queued"),
            processing: status("processing"),
            dead_letters: letters.total as u64,
            dead_letters_in_window: letters.in_window.unwrap_or(0.0) as u64,
            dead_letters_not_replayed: letters.not_replayed.unwrap_or(0.0) as u64,
        })
    }
}
