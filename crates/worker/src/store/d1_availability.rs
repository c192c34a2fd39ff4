//! Availability's counts in D1 (migration 0012): the per-day rollup of public
//! requests into `availability_days` (kept for the objective's 30-day
//! window, longer than the points), and its read-back. The live counts come
//! from the metrics reader (`MetricsReader::public_days`), whichever store
//! holds the points.
//!
//! Never judges availability or decides an alert: the core
//! (`portfolio_core::operations::availability`) does.

use portfolio_core::operations::availability::{window_start, RequestCount};
use portfolio_core::operations::metrics::{MetricsReadError, MetricsReader};
use portfolio_core::shared::storage::StoreError;
use serde::Deserialize;
use wasm_bindgen::JsValue;
use worker::D1Database;

const DAY_MS: u64 = 24 * 60 * 60 * 1_000;

/// The start of yesterday (UTC) before `now_ms`.
pub fn recent_since(now_ms: u64) -> u64 {
    (now_ms / DAY_MS).saturating_sub(1) * DAY_MS
}

fn d1(operation: &'static str) -> impl Fn(worker::Error) -> StoreError {
    move |e| StoreError::transient(operation, e)
}

fn num(n: u64) -> JsValue {
    JsValue::from_f64(n as f64)
}

/// The `DB` database, for availability.
pub struct D1Availability {
    db: D1Database,
}

#[derive(Deserialize)]
struct DayRow {
    day: String,
    requests: f64,
    errors: f64,
}

fn count(requests: Option<f64>, errors: Option<f64>) -> RequestCount {
    RequestCount {
        requests: requests.unwrap_or(0.0) as u64,
        errors: errors.unwrap_or(0.0) as u64,
    }
}

impl D1Availability {
    pub fn new(db: D1Database) -> Self {
        Self { db }
    }

    /// Stores `live` (yesterday's and today's public requests, UTC, from
    /// the metrics reader) into `availability_days`. A day's row is replaced
    /// only by a count at least as large: once its oldest points are pruned
    /// (or sampled away), a smaller recount is ignored.
    pub async fn roll_up(
        &self,
        now_ms: u64,
        live: &[(String, RequestCount)],
    ) -> Result<(), StoreError> {
        if live.is_empty() {
            return Ok(());
        }
        let statements = live
            .iter()
            .map(|(day, c)| {
                self.db
                    .prepare(
                        "INSERT INTO availability_days (day, requests, errors, updated_at) \
                         VALUES (?1, ?2, ?3, ?4) \
                         ON CONFLICT (day) DO UPDATE SET requests = excluded.requests, \
                           errors = excluded.errors, updated_at = excluded.updated_at \
                         WHERE excluded.requests >= availability_days.requests",
                    )
                    .bind(&[
                        JsValue::from_str(day),
                        num(c.requests),
                        num(c.errors),
                        num(now_ms),
                    ])
            })
            .collect::<worker::Result<Vec<_>>>()
            .map_err(d1("D1 availability roll-up"))?;
        self.db
            .batch(statements)
            .await
            .map_err(d1("D1 availability roll-up"))?;
        Ok(())
    }

    /// The objective's window of days ending on the day of `now_ms`: the
    /// rolled-up days before yesterday, yesterday and today counted live by
    /// `reader` (so the report is never a cron run behind).
    pub async fn window(
        &self,
        now_ms: u64,
        reader: &impl MetricsReader,
    ) -> Result<Vec<(String, RequestCount)>, MetricsReadError> {
        let live = reader.public_days(recent_since(now_ms), now_ms).await?;
        let mut days = self.days(&window_start(now_ms)).await?;
        days.retain(|(day, _)| !live.iter().any(|l| l.0 == *day));
        days.extend(live);
        Ok(days)
    }

    /// The rolled-up days from `since_day` (`YYYY-MM-DD`) on, oldest first.
    async fn days(&self, since_day: &str) -> Result<Vec<(String, RequestCount)>, StoreError> {
        let rows: Vec<DayRow> = self
            .db
            .prepare(
                "SELECT day, requests, errors FROM availability_days WHERE day >= ?1 ORDER BY day",
            )
            .bind(&[JsValue::from_str(since_day)])
            .map_err(d1("D1 availability days"))?
            .all()
            .await
            .map_err(d1("D1 availability days"))?
            .results()
            .map_err(d1("D1 availability days"))?;
        Ok(rows
            .into_iter()
            .map(|r| (r.day, count(Some(r.requests), Some(r.errors))))
            .collect())
    }

    /// Deletes days before `before_day` (`YYYY-MM-DD`).
    pub async fn prune(&self, before_day: &str) -> Result<(), StoreError> {
        self.db
            .prepare("DELETE FROM availability_days WHERE day < ?1")
            .bind(&[JsValue::from_str(before_day)])
            .map_err(d1("D1 availability prune"))?
            .run()
            .await
            .map_err(d1("D1 availability prune"))?;
        Ok(())
    }
}
