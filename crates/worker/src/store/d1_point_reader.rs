//! The local metrics reader: `portfolio_core::operations::metrics::MetricsReader`
//! over the `metric_points` table (`METRICS_SINK=d1` or `both`). Reports are
//! folded by the core from the window's rows read a page at a time
//! (`store::d1_metrics`); the alerts' and availability's counts are single
//! aggregate statements.
//!
//! Never decides what a figure means: the core does.

use super::d1_metrics::D1Metrics;
use portfolio_core::operations::alerts::{ProviderCall, RequestWindow};
use portfolio_core::operations::availability::{BurnWindows, RequestCount, FAST_BURN};
use portfolio_core::operations::metrics::{
    nearest_rank, ComparisonWindow, MetricsReadError, MetricsReader, MetricsReport, MetricsSummary,
    MetricsWindow, Read, VersionComparison, VersionReport,
};
use portfolio_core::shared::storage::StoreError;
use serde::Deserialize;
use wasm_bindgen::JsValue;
use worker::D1Database;

/// The public requests availability counts: not the operator's (`/admin`),
/// not paths the service does not serve (a scanner's 404s say nothing of
/// availability).
const AVAILABILITY: &str =
    "kind = 'request' AND instr(name, ' /admin') = 0 AND instr(name, '(unrouted)') = 0";

/// The requests the alerts weigh: every route but the operator's.
const ALERTING: &str = "kind = 'request' AND at >= ?1 AND instr(name, ' /admin') = 0";

fn d1(operation: &'static str) -> impl Fn(worker::Error) -> MetricsReadError {
    move |e| MetricsReadError::Store(StoreError::transient(operation, e))
}

fn num(n: f64) -> JsValue {
    JsValue::from_f64(n)
}

fn ms(n: u64) -> JsValue {
    num(n as f64)
}

fn count(requests: Option<f64>, errors: Option<f64>) -> RequestCount {
    RequestCount {
        requests: requests.unwrap_or(0.0) as u64,
        errors: errors.unwrap_or(0.0) as u64,
    }
}

#[derive(Deserialize)]
struct Totals {
    total: f64,
    errors: Option<f64>,
}

#[derive(Deserialize)]
struct Duration {
    duration_ms: f64,
}

#[derive(Deserialize)]
struct ProviderRow {
    name: String,
    status: f64,
    at: f64,
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

/// Public requests per UTC day since `?1` (`?2`: now, the row's `updated_at`
/// when rolled up).
pub(crate) fn days_sql() -> String {
    format!(
        "SELECT strftime('%Y-%m-%d', at / 1000, 'unixepoch') AS day, COUNT(*) AS requests, \
         SUM(status >= 500) AS errors, ?2 AS updated_at \
         FROM metric_points WHERE {AVAILABILITY} AND at >= ?1 AND at <= ?2 GROUP BY day"
    )
}

/// The `metric_points` table, read.
pub struct D1PointReader {
    points: D1Metrics,
    /// `METRICS_MAX_ROWS`: the most rows one report folds.
    max_rows: u32,
}

impl D1PointReader {
    pub fn new(db: D1Database, max_rows: u32) -> Self {
        Self {
            points: D1Metrics::new(db),
            max_rows,
        }
    }

    fn db(&self) -> &D1Database {
        self.points.db()
    }
}

impl MetricsReader for D1PointReader {
    async fn report(
        &self,
        window: MetricsWindow,
        now_ms: u64,
    ) -> Result<Read<MetricsReport>, MetricsReadError> {
        let mut summary = MetricsSummary::for_window(window, now_ms);
        let rows = self
            .points
            .read_into(&mut summary, now_ms, self.max_rows)
            .await?;
        Ok((summary.report(), rows))
    }

    async fn versions(
        &self,
        window: ComparisonWindow,
        now_ms: u64,
    ) -> Result<Read<VersionReport>, MetricsReadError> {
        let mut comparison = VersionComparison::new(window, now_ms);
        let rows = self
            .points
            .read_requests_into(&mut comparison, self.max_rows)
            .await?;
        Ok((comparison.report(), rows))
    }

    async fn requests(
        &self,
        since_ms: u64,
        _now_ms: u64,
    ) -> Result<RequestWindow, MetricsReadError> {
        let totals: Option<Totals> = self
            .db()
            .prepare(format!(
                "SELECT COUNT(*) AS total, SUM(status >= 500) AS errors FROM metric_points WHERE {ALERTING}"
            ))
            .bind(&[ms(since_ms)])
            .map_err(d1("D1 alert requests"))?
            .first(None)
            .await
            .map_err(d1("D1 alert requests"))?;
        let (total, errors) =
            totals.map_or((0, 0), |t| (t.total as u64, t.errors.unwrap_or(0.0) as u64));
        // Only the one value at the p95 rank is read, not the window's rows.
        let p95_ms = match nearest_rank(total as usize, 95.0) {
            Some(rank) => self
                .db()
                .prepare(format!(
                    "SELECT duration_ms FROM metric_points WHERE {ALERTING} ORDER BY duration_ms LIMIT 1 OFFSET ?2"
                ))
                .bind(&[ms(since_ms), num((rank - 1) as f64)])
                .map_err(d1("D1 alert latency"))?
                .first::<Duration>(None)
                .await
                .map_err(d1("D1 alert latency"))?
                .map(|d| d.duration_ms),
            None => None,
        };
        Ok(RequestWindow {
            total,
            errors,
            p95_ms,
        })
    }

    /// SQLite takes the bare columns from the row holding the `MAX`.
    async fn latest_provider_calls(&self) -> Result<Vec<ProviderCall>, MetricsReadError> {
        let rows: Vec<ProviderRow> = self
            .db()
            .prepare(
                "SELECT name, status, at, MAX(id) AS latest FROM metric_points WHERE kind = 'provider' GROUP BY name",
            )
            .all()
            .await
            .map_err(d1("D1 provider calls"))?
            .results()
            .map_err(d1("D1 provider calls"))?;
        Ok(rows
            .into_iter()
            .map(|r| ProviderCall {
                provider: r.name,
                status: r.status as u16,
                at_ms: r.at as u64,
            })
            .collect())
    }

    async fn burn_windows(&self, now_ms: u64) -> Result<[BurnWindows; 2], MetricsReadError> {
        let [first, second] = FAST_BURN;
        let since = |ms: u64| num(now_ms.saturating_sub(ms) as f64);
        let oldest = first.long_ms.max(second.long_ms);
        let row: Option<WindowsRow> = self
            .db()
            .prepare(format!(
                "SELECT SUM(at >= ?2) AS r0, SUM(at >= ?2 AND status >= 500) AS e0, \
                        SUM(at >= ?3) AS s0, SUM(at >= ?3 AND status >= 500) AS f0, \
                        SUM(at >= ?4) AS r1, SUM(at >= ?4 AND status >= 500) AS e1, \
                        SUM(at >= ?5) AS s1, SUM(at >= ?5 AND status >= 500) AS f1 \
                 FROM metric_points WHERE {AVAILABILITY} AND at >= ?1"
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

    async fn public_days(
        &self,
        since_ms: u64,
        now_ms: u64,
    ) -> Result<Vec<(String, RequestCount)>, MetricsReadError> {
        let rows: Vec<DayRow> = self
            .db()
            .prepare(format!(
                "SELECT day, requests, errors FROM ({}) ORDER BY day",
                days_sql()
            ))
            .bind(&[ms(since_ms), ms(now_ms)])
            .map_err(d1("D1 availability live days"))?
            .all()
            .await
            .map_err(d1("D1 availability live days"))?
            .results()
            .map_err(d1("D1 availability live days"))?;
        Ok(rows
            .into_iter()
            .map(|r| (r.day, count(Some(r.requests), Some(r.errors))))
            .collect())
    }
}
