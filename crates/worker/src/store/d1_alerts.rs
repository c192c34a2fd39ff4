//! Alerts in D1 (`alerts`, migration 0008) behind
//! `portfolio_core::operations::alerts::AlertStore`, every write a compare-and-set on
//! `version`; and the snapshot the conditions are judged on: the request and
//! provider facts from the metrics reader (D1 or Analytics Engine), the rest
//! from `documents`, `dead_letters` and `reconcile_runs`.
//!
//! Never decides whether something is alarming: the core does.

use super::ConsoleLog;
use portfolio_core::operations::alerts::{
    AlertKind, AlertRecord, AlertSettings, AlertSnapshot, AlertStatus, AlertStore, FailedDocument,
    Notice, ReconcileFacts, StuckDocuments, MAX_FAILED_DOCUMENTS,
};
use portfolio_core::operations::metrics::MetricsReader;
use portfolio_core::shared::storage::{EventLog, Level, StoreError};
use serde::Deserialize;
use serde_json::json;
use wasm_bindgen::JsValue;
use worker::D1Database;

/// How long resolved alerts stay listed (and stored).
pub const RECENT_MS: u64 = 7 * 24 * 60 * 60 * 1_000;
/// Most resolved alerts `GET /admin/alerts` lists.
const MAX_RECENT: u32 = 100;

fn d1(operation: &'static str) -> impl Fn(worker::Error) -> StoreError {
    move |e| StoreError::transient(operation, e)
}

fn num(n: f64) -> JsValue {
    JsValue::from_f64(n)
}

fn ms(n: u64) -> JsValue {
    num(n as f64)
}

/// The `DB` database, for alerts.
pub struct D1Alerts {
    db: D1Database,
}

impl std::fmt::Debug for D1Alerts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("D1Alerts")
    }
}

#[derive(Deserialize)]
struct AlertRow {
    id: f64,
    key: String,
    kind: String,
    status: String,
    message: String,
    fired_at: f64,
    resolved_at: Option<f64>,
    fire_sent_at: Option<f64>,
    resolve_sent_at: Option<f64>,
    attempts: f64,
    last_error: Option<String>,
    claimed_until: f64,
    version: f64,
}

impl AlertRow {
    fn into_record(self) -> Option<AlertRecord> {
        Some(AlertRecord {
            id: self.id as u64,
            key: self.key,
            kind: AlertKind::parse(&self.kind)?,
            status: match self.status.as_str() {
                "firing" => AlertStatus::Firing,
                _ => AlertStatus::Resolved,
            },
            message: self.message,
            fired_at_ms: self.fired_at as u64,
            resolved_at_ms: self.resolved_at.map(|v| v as u64),
            fire_sent_at_ms: self.fire_sent_at.map(|v| v as u64),
            resolve_sent_at_ms: self.resolve_sent_at.map(|v| v as u64),
            attempts: self.attempts as u32,
            last_error: self.last_error,
            claimed_until_ms: self.claimed_until as u64,
            version: self.version as u64,
        })
    }
}

const COLUMNS: &str =
    "id, key, kind, status, message, fired_at, resolved_at, fire_sent_at, resolve_sent_at, \
    attempts, last_error, claimed_until, version";

#[derive(Deserialize)]
struct IdRow {
    #[allow(dead_code)]
    id: f64,
}

#[derive(Deserialize)]
struct FailedRow {
    key: String,
    last_error: Option<String>,
}

#[derive(Deserialize)]
struct StuckRow {
    n: f64,
    key: Option<String>,
    since: Option<f64>,
}

#[derive(Deserialize)]
struct CountRow {
    n: f64,
}

#[derive(Deserialize)]
struct RunRow {
    id: f64,
    enqueued: Option<f64>,
}

impl D1Alerts {
    /// Over the `DB` database.
    pub fn new(db: D1Database) -> Self {
        Self { db }
    }

    /// Runs a conditional write ending in `RETURNING id`: whether a row changed.
    async fn changed(
        &self,
        sql: &str,
        binds: &[JsValue],
        operation: &'static str,
    ) -> Result<bool, StoreError> {
        let row: Option<IdRow> = self
            .db
            .prepare(sql)
            .bind(binds)
            .map_err(d1(operation))?
            .first(None)
            .await
            .map_err(d1(operation))?;
        Ok(row.is_some())
    }

    async fn records(&self, sql: &str, binds: &[JsValue]) -> Result<Vec<AlertRecord>, StoreError> {
        let rows: Vec<AlertRow> = self
            .db
            .prepare(sql)
            .bind(binds)
            .map_err(d1("D1 alerts"))?
            .all()
            .await
            .map_err(d1("D1 alerts"))?
            .results()
            .map_err(d1("D1 alerts"))?;
        Ok(rows.into_iter().filter_map(AlertRow::into_record).collect())
    }

    /// Firing alerts (oldest first) and alerts resolved since `since_ms`
    /// (newest first, at most 100), for `GET /admin/alerts`.
    pub async fn listing(
        &self,
        since_ms: u64,
    ) -> Result<(Vec<AlertRecord>, Vec<AlertRecord>), StoreError> {
        let active = self
            .records(
                &format!("SELECT {COLUMNS} FROM alerts WHERE status = 'firing' ORDER BY fired_at"),
                &[],
            )
            .await?;
        let recent = self
            .records(
                &format!(
                    "SELECT {COLUMNS} FROM alerts WHERE status = 'resolved' AND resolved_at >= ?1 \
                     ORDER BY resolved_at DESC LIMIT ?2"
                ),
                &[ms(since_ms), num(f64::from(MAX_RECENT))],
            )
            .await?;
        Ok((active, recent))
    }

    /// Deletes resolved alerts whose notices went out before `before_ms`.
    pub async fn prune(&self, before_ms: u64) -> Result<(), StoreError> {
        self.db
            .prepare(
                "DELETE FROM alerts WHERE status = 'resolved' AND resolve_sent_at IS NOT NULL AND resolved_at < ?1",
            )
            .bind(&[ms(before_ms)])
            .map_err(d1("D1 alert prune"))?
            .run()
            .await
            .map_err(d1("D1 alert prune"))?;
        Ok(())
    }

    /// The facts the conditions are judged on at `now_ms`, the points' from
    /// `points`. A part whose query fails is `None` (logged): its conditions
    /// are not evaluated.
    pub async fn snapshot(
        &self,
        now_ms: u64,
        settings: &AlertSettings,
        points: &impl MetricsReader,
    ) -> AlertSnapshot {
        let since = now_ms.saturating_sub(settings.window_ms);
        AlertSnapshot {
            now_ms,
            requests: logged("requests", points.requests(since, now_ms).await),
            failed_documents: logged("failed_documents", self.failed_documents().await),
            stuck: logged(
                "stuck_documents",
                self.stuck(now_ms.saturating_sub(settings.stuck_after_ms))
                    .await,
            ),
            dead_letters_in_window: logged("dead_letters", self.dead_letters_since(since).await),
            latest_reconcile: logged("reconcile", self.latest_reconcile().await),
            providers: logged("providers", points.latest_provider_calls().await),
            burn: logged("availability_burn", points.burn_windows(now_ms).await),
        }
    }

    async fn failed_documents(&self) -> Result<Vec<FailedDocument>, StoreError> {
        let rows: Vec<FailedRow> = self
            .db
            .prepare(
                "SELECT key, last_error FROM documents WHERE status = 'failed' ORDER BY updated_at DESC LIMIT ?1",
            )
            .bind(&[num((MAX_FAILED_DOCUMENTS + 1) as f64)])
            .map_err(d1("D1 failed documents"))?
            .all()
            .await
            .map_err(d1("D1 failed documents"))?
            .results()
            .map_err(d1("D1 failed documents"))?;
        Ok(rows
            .into_iter()
            .map(|r| FailedDocument {
                key: r.key,
                error: r.last_error,
            })
            .collect())
    }

    async fn stuck(&self, before_ms: u64) -> Result<StuckDocuments, StoreError> {
        let row: Option<StuckRow> = self
            .db
            .prepare(
                "SELECT COUNT(*) AS n, \
                 (SELECT key FROM documents WHERE status IN ('queued', 'processing') AND updated_at < ?1 ORDER BY updated_at LIMIT 1) AS key, \
                 MIN(updated_at) AS since \
                 FROM documents WHERE status IN ('queued', 'processing') AND updated_at < ?1",
            )
            .bind(&[ms(before_ms)])
            .map_err(d1("D1 stuck documents"))?
            .first(None)
            .await
            .map_err(d1("D1 stuck documents"))?;
        Ok(
            row.map_or_else(StuckDocuments::default, |r| StuckDocuments {
                count: r.n as u64,
                oldest: r.key.zip(r.since.map(|s| s as u64)),
            }),
        )
    }

    async fn dead_letters_since(&self, since_ms: u64) -> Result<u64, StoreError> {
        let row: Option<CountRow> = self
            .db
            .prepare("SELECT COUNT(*) AS n FROM dead_letters WHERE received_at >= ?1")
            .bind(&[ms(since_ms)])
            .map_err(d1("D1 dead letters"))?
            .first(None)
            .await
            .map_err(d1("D1 dead letters"))?;
        Ok(row.map_or(0, |r| r.n as u64))
    }

    async fn latest_reconcile(&self) -> Result<Option<ReconcileFacts>, StoreError> {
        let row: Option<RunRow> = self
            .db
            .prepare(
                "SELECT id, (SELECT SUM(value) FROM json_each(CASE WHEN json_valid(enqueued) THEN enqueued ELSE '{}' END)) AS enqueued \
                 FROM reconcile_runs ORDER BY id DESC LIMIT 1",
            )
            .first(None)
            .await
            .map_err(d1("D1 latest reconciliation"))?;
        Ok(row.map(|r| ReconcileFacts {
            run_id: r.id as u64,
            enqueued: r.enqueued.unwrap_or(0.0) as u64,
        }))
    }
}

fn logged<T, E: std::fmt::Display>(part: &str, result: Result<T, E>) -> Option<T> {
    match result {
        Ok(value) => Some(value),
        Err(e) => {
            ConsoleLog.log(
                Level::Warn,
                json!({ "event": "alert_snapshot_failed", "part": part, "error": e.to_string() }),
            );
            None
        }
    }
}

impl AlertStore for D1Alerts {
    async fn open_alerts(&self) -> Result<Vec<AlertRecord>, StoreError> {
        self.records(
            &format!("SELECT {COLUMNS} FROM alerts WHERE resolve_sent_at IS NULL ORDER BY id"),
            &[],
        )
        .await
    }

    async fn open(
        &self,
        key: &str,
        kind: AlertKind,
        message: &str,
        now_ms: u64,
    ) -> Result<bool, StoreError> {
        // The unique index on firing keys makes a concurrent second insert a no-op.
        self.changed(
            "INSERT OR IGNORE INTO alerts (key, kind, status, message, fired_at) \
             VALUES (?1, ?2, 'firing', ?3, ?4) RETURNING id",
            &[key.into(), kind.as_str().into(), message.into(), ms(now_ms)],
            "D1 alert open",
        )
        .await
    }

    async fn resolve(&self, id: u64, version: u64, now_ms: u64) -> Result<bool, StoreError> {
        self.changed(
            "UPDATE alerts SET status = 'resolved', resolved_at = ?3, version = version + 1 \
             WHERE id = ?1 AND version = ?2 AND status = 'firing' RETURNING id",
            &[ms(id), ms(version), ms(now_ms)],
            "D1 alert resolve",
        )
        .await
    }

    async fn claim(&self, id: u64, version: u64, until_ms: u64) -> Result<bool, StoreError> {
        self.changed(
            "UPDATE alerts SET claimed_until = ?3, version = version + 1 \
             WHERE id = ?1 AND version = ?2 RETURNING id",
            &[ms(id), ms(version), ms(until_ms)],
            "D1 alert claim",
        )
        .await
    }

    async fn delivered(
        &self,
        id: u64,
        version: u64,
        notice: Notice,
        now_ms: u64,
    ) -> Result<bool, StoreError> {
        let column = match notice {
            Notice::Fire => "fire_sent_at",
            Notice::Resolve => "resolve_sent_at",
        };
        self.changed(
            &format!(
                "UPDATE alerts SET {column} = ?3, claimed_until = 0, attempts = 0, last_error = NULL, \
                 version = version + 1 WHERE id = ?1 AND version = ?2 RETURNING id"
            ),
            &[ms(id), ms(version), ms(now_ms)],
            "D1 alert delivered",
        )
        .await
    }

    async fn delivery_failed(
        &self,
        id: u64,
        version: u64,
        error: &str,
    ) -> Result<bool, StoreError> {
        self.changed(
            "UPDATE alerts SET claimed_until = 0, attempts = attempts + 1, last_error = ?3, \
             version = version + 1 WHERE id = ?1 AND version = ?2 RETURNING id",
            &[ms(id), ms(version), error.into()],
            "D1 alert delivery failed",
        )
        .await
    }
}
