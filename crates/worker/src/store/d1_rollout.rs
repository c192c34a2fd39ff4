//! The cut-over's state in D1 (migrations 0009, 0011): the one
//! `rollout_setting` row behind `PUT /admin/rollout`; `shadow_comparisons`,
//! one row per shadowed request, and `rollout_failovers`, a count per UTC day
//! and reason, both read back for `GET /admin/rollout/report` and pruned by
//! the daily cron.
//!
//! Never decides where a request goes or what a comparison means: the core
//! (`portfolio_core::operations::rollout`) does.

use portfolio_core::operations::rollout::{utc_day, FailoverCount, RolloutSetting, ShadowRecord};
use portfolio_core::shared::storage::StoreError;
use serde::Deserialize;
use wasm_bindgen::JsValue;
use worker::D1Database;

/// Most comparisons one report reads (newest first): sampling keeps the
/// table small, and a report over more would be slow to read.
pub const MAX_REPORT_ROWS: u32 = 20_000;

fn d1(operation: &'static str) -> impl Fn(worker::Error) -> StoreError {
    move |e| StoreError::transient(operation, e)
}

fn num(n: f64) -> JsValue {
    JsValue::from_f64(n)
}

fn text(value: Option<&str>) -> JsValue {
    value.map_or(JsValue::NULL, JsValue::from_str)
}

/// The `DB` database, for the rollout.
pub struct D1Rollout {
    db: D1Database,
}

#[derive(Deserialize)]
struct SettingRow {
    percent: f64,
    shadow_percent: f64,
}

#[derive(Deserialize)]
struct FailoverRow {
    day: String,
    reason: String,
    count: f64,
}

#[derive(Deserialize)]
struct ComparisonRow {
    at: f64,
    overlap: Option<f64>,
    legacy_ms: f64,
    ours_ms: f64,
    legacy_error: Option<String>,
    ours_error: Option<String>,
}

impl D1Rollout {
    pub fn new(db: D1Database) -> Self {
        Self { db }
    }

    /// The stored setting, if one was ever put.
    pub async fn setting(&self) -> Result<Option<RolloutSetting>, StoreError> {
        let row: Option<SettingRow> = self
            .db
            .prepare("SELECT percent, shadow_percent FROM rollout_setting WHERE id = 1")
            .first(None)
            .await
            .map_err(d1("D1 rollout setting"))?;
        Ok(row.map(|r| RolloutSetting {
            percent: r.percent.clamp(0.0, 100.0) as u8,
            shadow_percent: r.shadow_percent.clamp(0.0, 100.0) as u8,
        }))
    }

    /// Replaces the setting.
    pub async fn put_setting(
        &self,
        setting: RolloutSetting,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        self.db
            .prepare(
                "INSERT INTO rollout_setting (id, percent, shadow_percent, updated_at) VALUES (1, ?1, ?2, ?3) \
                 ON CONFLICT (id) DO UPDATE SET percent = excluded.percent, \
                 shadow_percent = excluded.shadow_percent, updated_at = excluded.updated_at",
            )
            .bind(&[
                num(f64::from(setting.percent)),
                num(f64::from(setting.shadow_percent)),
                num(now_ms as f64),
            ])
            .map_err(d1("D1 rollout setting"))?
            .run()
            .await
            .map_err(d1("D1 rollout setting"))?;
        Ok(())
    }

    /// Records one shadowed request.
    pub async fn record(&self, record: &ShadowRecord) -> Result<(), StoreError> {
        self.db
            .prepare(
                "INSERT INTO shadow_comparisons (at, overlap, legacy_ms, ours_ms, legacy_error, ours_error) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )
            .bind(&[
                num(record.at_ms as f64),
                record.overlap.map_or(JsValue::NULL, num),
                num(record.legacy_ms as f64),
                num(record.ours_ms as f64),
                text(record.legacy_error.as_deref()),
                text(record.ours_error.as_deref()),
            ])
            .map_err(d1("D1 shadow comparison"))?
            .run()
            .await
            .map_err(d1("D1 shadow comparison"))?;
        Ok(())
    }

    /// Comparisons since `since_ms`, newest first, at most [`MAX_REPORT_ROWS`].
    pub async fn comparisons(&self, since_ms: u64) -> Result<Vec<ShadowRecord>, StoreError> {
        let rows: Vec<ComparisonRow> = self
            .db
            .prepare(
                "SELECT at, overlap, legacy_ms, ours_ms, legacy_error, ours_error FROM shadow_comparisons \
                 WHERE at >= ?1 ORDER BY at DESC LIMIT ?2",
            )
            .bind(&[num(since_ms as f64), num(f64::from(MAX_REPORT_ROWS))])
            .map_err(d1("D1 shadow report"))?
            .all()
            .await
            .map_err(d1("D1 shadow report"))?
            .results()
            .map_err(d1("D1 shadow report"))?;
        Ok(rows
            .into_iter()
            .map(|r| ShadowRecord {
                at_ms: r.at as u64,
                overlap: r.overlap,
                legacy_ms: r.legacy_ms as u64,
                ours_ms: r.ours_ms as u64,
                legacy_error: r.legacy_error,
                ours_error: r.ours_error,
            })
            .collect())
    }

    /// Counts one failover on `day` (`YYYY-MM-DD`) for `reason`: one row per
    /// day and reason, however many chats fail over.
    pub async fn count_failover(&self, day: &str, reason: &str) -> Result<(), StoreError> {
        self.db
            .prepare(
                "INSERT INTO rollout_failovers (day, reason, count) VALUES (?1, ?2, 1) \
                 ON CONFLICT (day, reason) DO UPDATE SET count = count + 1",
            )
            .bind(&[JsValue::from_str(day), JsValue::from_str(reason)])
            .map_err(d1("D1 failover count"))?
            .run()
            .await
            .map_err(d1("D1 failover count"))?;
        Ok(())
    }

    /// Failover counts of the UTC days from `since_ms`'s on (whole days).
    pub async fn failovers(&self, since_ms: u64) -> Result<Vec<FailoverCount>, StoreError> {
        let rows: Vec<FailoverRow> = self
            .db
            .prepare("SELECT day, reason, count FROM rollout_failovers WHERE day >= ?1")
            .bind(&[JsValue::from_str(&utc_day(since_ms))])
            .map_err(d1("D1 failover report"))?
            .all()
            .await
            .map_err(d1("D1 failover report"))?
            .results()
            .map_err(d1("D1 failover report"))?;
        Ok(rows
            .into_iter()
            .map(|r| FailoverCount {
                day: r.day,
                reason: r.reason,
                count: r.count as u64,
            })
            .collect())
    }

    /// Deletes comparisons older than `before_ms`, and the failover counts of
    /// the days before its day.
    pub async fn prune(&self, before_ms: u64) -> Result<(), StoreError> {
        self.db
            .prepare("DELETE FROM shadow_comparisons WHERE at < ?1")
            .bind(&[num(before_ms as f64)])
            .map_err(d1("D1 shadow prune"))?
            .run()
            .await
            .map_err(d1("D1 shadow prune"))?;
        self.db
            .prepare("DELETE FROM rollout_failovers WHERE day < ?1")
            .bind(&[JsValue::from_str(&utc_day(before_ms))])
            .map_err(d1("D1 failover prune"))?
            .run()
            .await
            .map_err(d1("D1 failover prune"))?;
        Ok(())
    }
}
