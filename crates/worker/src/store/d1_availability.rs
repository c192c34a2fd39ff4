//! Availability's counts in D1 (migration 0012): the per-day rollup of public
//! requests from `metric_points` into `availability_days` (kept for the
//! objective's 30-day window), its read-back, and the request counts of the
//! fast-burn rules' windows for the alerts.
//!
//! Never judges availability or decides an alert: the core
//! (`portfolio_core::operations::availability`) does.

use portfolio_core::operations::availability::{
    window_start, BurnWindows, RequestCount, FAST_BURN,
};
use portfolio_core::shared::storage::StoreError;
use serde::Deserialize;
use wasm_bindgen::JsValue;
use worker::D1Database;

const DAY_MS: u64 = 24 * 60 * 60 * 1_000;

/// The public requests of `metric_points`: not the operator's (`/admin`),
/// not paths the service does not serve (a scanner's 404s say nothing of
/// availability).
const PUBLIC: &str =
    "kind = 'request' AND instr(name, ' /admin') = 0 AND instr(name, '(unrouted)') = 0";

/// Yesterday's and today's public requests per UTC day (`?1`: the start of
/// yesterday, `?2`: now, stored as the row's `updated_at`).
fn live_days() -> String {
    format!(
        "SELECT strftime('%Y-%m-%d', at / 1000, 'unixepoch') AS day, COUNT(*) AS requests, \
         SUM(status >= 500) AS errors, ?2 AS updated_at \
         FROM metric_points WHERE {PUBLIC} AND at >= ?1 GROUP BY day"
    )
}

/// The start of yesterday (UTC) before `now_ms`.
fn recent_since(now_ms: u64) -> u64 {
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

#[derive(Deserialize)]
struct WindowsRow {
    r0: Option<f64>,
    e0: Option<f64>,
    s0: Option<f64>,
    f0: Option<f64>,
    r1: Option<f64>,
    e1: Option<f64>,
    s1: Option<f64>,
    f1: Option<f64>,
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

    /// Counts yesterday's and today's public requests (UTC) into
    /// `availability_days`. A day's row is replaced only by a count at least as
    /// large: once its oldest points are pruned, a smaller recount is ignored.
    pub async fn roll_up(&self, now_ms: u64) -> Result<(), StoreError> {
        self.db
            .prepare(format!(
                "INSERT INTO availability_days (day, requests, errors, updated_at) \
                 {} \
                 ON CONFLICT (day) DO UPDATE SET requests = excluded.requests, \
                   errors = excluded.errors, updated_at = excluded.updated_at \
                 WHERE excluded.requests >= availability_days.requests",
                live_days()
            ))
            .bind(&[num(recent_since(now_ms)), num(now_ms)])
            .map_err(d1("D1 availability roll-up"))?
            .run()
            .await
            .map_err(d1("D1 availability roll-up"))?;
        Ok(())
    }

    /// The objective's window of days ending on the day of `now_ms`: the
    /// rolled-up days before yesterday, yesterday and today counted live from
    /// `metric_points` (so the report is never a cron run behind).
    pub async fn window(&self, now_ms: u64) -> Result<Vec<(String, RequestCount)>, StoreError> {
        let live: Vec<DayRow> = self
            .db
            .prepare(format!(
                "SELECT day, requests, errors FROM ({})",
                live_days()
            ))
            .bind(&[num(recent_since(now_ms)), num(now_ms)])
            .map_err(d1("D1 availability live days"))?
            .all()
            .await
            .map_err(d1("D1 availability live days"))?
            .results()
            .map_err(d1("D1 availability live days"))?;
        let mut days = self.days(&window_start(now_ms)).await?;
        days.retain(|(day, _)| !live.iter().any(|l| l.day == *day));
        days.extend(
            live.into_iter()
                .map(|r| (r.day, count(Some(r.requests), Some(r.errors)))),
        );
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

/// The public requests of each fast-burn rule's long and short windows
/// ending at `now_ms`, in one statement.
pub async fn burn_windows(db: &D1Database, now_ms: u64) -> Result<[BurnWindows; 2], StoreError> {
    let [first, second] = FAST_BURN;
    let since = |ms: u64| num(now_ms.saturating_sub(ms));
    let oldest = first.long_ms.max(second.long_ms);
    let row: Option<WindowsRow> = db
        .prepare(format!(
            "SELECT SUM(at >= ?2) AS r0, SUM(at >= ?2 AND status >= 500) AS e0, \
                    SUM(at >= ?3) AS s0, SUM(at >= ?3 AND status >= 500) AS f0, \
                    SUM(at >= ?4) AS r1, SUM(at >= ?4 AND status >= 500) AS e1, \
                    SUM(at >= ?5) AS s1, SUM(at >= ?5 AND status >= 500) AS f1 \
             FROM metric_points WHERE {PUBLIC} AND at >= ?1"
        ))
        .bind(&[
            since(oldest),
            since(first.long_ms),
            since(first.short_ms),
            since(second.long_ms),
            since(second.short_ms),
        ])
        .map_err(d1("D1 availability windows"))?
        .first(None)
        .await
        .map_err(d1("D1 availability windows"))?;
    Ok(row.map_or_else(Default::default, |r| {
        [
            BurnWindows {
                long: count(r.r0, r.e0),
                short: count(r.s0, r.f0),
            },
            BurnWindows {
                long: count(r.r1, r.e1),
                short: count(r.s1, r.f1),
            },
        ]
    }))
}
