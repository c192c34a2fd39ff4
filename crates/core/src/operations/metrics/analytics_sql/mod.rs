//! The metrics reader over Workers Analytics Engine's SQL API: the points the
//! `METRICS` binding wrote, read back with SQL over HTTP (`POST` of the
//! statement to `<base>/accounts/<account_id>/analytics_engine/sql` with
//! `Authorization: Bearer <token>`; Cloudflare, "Workers Analytics Engine —
//! SQL API", <https://developers.cloudflare.com/analytics/analytics-engine/sql-api/>).
//!
//! Aggregates in SQL rather than reading the window's rows: the dialect has
//! grouped sums and a weighted exact quantile (`quantileExactWeighted`,
//! "designed to be used with sample interval"), and the rows themselves are
//! not a faithful copy of what was written — Analytics Engine samples at
//! write time and again at read time for long windows, and "there is no
//! guarantee you can retrieve any one individual record"
//! (<https://developers.cloudflare.com/analytics/analytics-engine/sampling/>). So every count is `sum(_sample_interval)`, every total a sum
//! weighted by it and every percentile weighted by it; answers stay a few
//! rows per route, step or provider however busy the service is.
//!
//! Never writes a point, never decides what a figure means beyond folding
//! the rows into the same report types as the local table's reader.

mod query;
#[cfg(test)]
mod tests;

pub use query::{Column, Filter, Key, Measure, Query};

use super::reader::{MetricsReadError, MetricsReader, Read};
use super::report::{
    IngestionReport, MetricsReport, ProviderReport, ReconcileReport, RequestReport, RouteReport,
    StepReport,
};
use super::route::is_public_route;
use super::versions::{ComparisonWindow, VersionReport, VersionStats};
use super::{AnalyticsSqlSettings, MetricKind, MetricsWindow};
use crate::operations::alerts::{ProviderCall, RequestWindow};
use crate::operations::availability::{BurnWindows, RequestCount, FAST_BURN};
use crate::providers::{HttpMethod, HttpRequest, HttpTransport, TransportError};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// The secret holding the SQL API's token ("Account | Account Analytics |
/// Read", per the SQL API page's "Authentication": <https://developers.cloudflare.com/analytics/analytics-engine/sql-api/>).
pub const ANALYTICS_ENGINE_API_TOKEN: &str = "ANALYTICS_ENGINE_API_TOKEN";

const MINUTE_MS: u64 = 60_000;
/// Longest error text kept from an answer.
const MAX_ERROR_CHARS: usize = 300;

/// One row of a `FORMAT JSON` answer: `{ "meta": […], "data": [row…],
/// "rows": n }` (<https://developers.cloudflare.com/analytics/analytics-engine/sql-reference/statements/>, "FORMAT clause").
type Row = Map<String, Value>;

/// A number of a row: JSON numbers, and numbers in strings (64-bit integers
/// such as `sum(_sample_interval)` may come quoted in JSON output).
fn number(row: &Row, key: &str) -> f64 {
    match row.get(key) {
        Some(Value::Number(n)) => n.as_f64().unwrap_or(0.0),
        Some(Value::String(s)) => s.trim().parse().unwrap_or(0.0),
        _ => 0.0,
    }
}

/// A number that may be absent or not finite (a quantile of no rows).
fn optional(row: &Row, key: &str) -> Option<f64> {
    match row.get(key) {
        Some(Value::Number(n)) => n.as_f64(),
        Some(Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    }
    .filter(|v: &f64| v.is_finite())
}

fn text(row: &Row, key: &str) -> String {
    match row.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    }
}

fn count(row: &Row, key: &str) -> u64 {
    number(row, key).round().max(0.0) as u64
}

fn rate(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

fn seconds_floor(ms: u64) -> u64 {
    ms / 1_000
}

fn seconds_ceil(ms: u64) -> u64 {
    ms.div_ceil(1_000)
}

/// Where and as whom the reader asks.
#[derive(Clone, PartialEq, Eq)]
pub struct AnalyticsSqlEndpoint {
    /// `<base>/accounts/<account_id>/analytics_engine/sql`.
    pub url: String,
    /// The API token (a secret: never logged, never in an error).
    pub token: String,
    /// The table: the dataset the `METRICS` binding writes.
    pub dataset: String,
}

impl std::fmt::Debug for AnalyticsSqlEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AnalyticsSqlEndpoint({}, {})", self.url, self.dataset)
    }
}

impl AnalyticsSqlEndpoint {
    /// The endpoint of `account_id` under `base_url` (the SQL API page's address).
    #[must_use]
    pub fn new(base_url: &str, account_id: &str, dataset: &str, token: &str) -> Self {
        Self {
            url: format!("{base_url}/accounts/{account_id}/analytics_engine/sql"),
            token: token.to_owned(),
            dataset: dataset.to_owned(),
        }
    }

    /// The endpoint `settings` and the secret's value `token` name, or the first of
    /// `ANALYTICS_ENGINE_ACCOUNT_ID`, `METRICS_DATASET` and the token that is missing (a token
    /// of blanks is missing; it is trimmed).
    ///
    /// # Errors
    /// [`MetricsReadError::NotConfigured`] naming what to set.
    pub fn from_settings(
        settings: &AnalyticsSqlSettings,
        token: Option<&str>,
    ) -> Result<Self, MetricsReadError> {
        let missing = |missing| MetricsReadError::NotConfigured { missing };
        let account = settings
            .account_id
            .as_deref()
            .ok_or(missing("ANALYTICS_ENGINE_ACCOUNT_ID"))?;
        let dataset = settings
            .dataset
            .as_deref()
            .ok_or(missing("METRICS_DATASET"))?;
        let token = token
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(missing(ANALYTICS_ENGINE_API_TOKEN))?;
        Ok(Self::new(&settings.base_url, account, dataset, token))
    }
}

/// The reader over the SQL API, through `transport`.
#[derive(Debug)]
pub struct AnalyticsSqlReader<T> {
    transport: T,
    endpoint: AnalyticsSqlEndpoint,
}

impl<T: HttpTransport> AnalyticsSqlReader<T> {
    /// Over `transport` (it owns the time limit of one statement).
    pub fn new(transport: T, endpoint: AnalyticsSqlEndpoint) -> Self {
        Self {
            transport,
            endpoint,
        }
    }

    /// Runs one statement; its rows.
    async fn rows(&self, query: &Query) -> Result<Vec<Row>, MetricsReadError> {
        let request = HttpRequest {
            method: HttpMethod::Post,
            url: self.endpoint.url.clone(),
            headers: vec![
                (
                    "authorization".into(),
                    format!("Bearer {}", self.endpoint.token),
                ),
                ("content-type".into(), "text/plain".into()),
            ],
            body: query.sql(&self.endpoint.dataset).into_bytes(),
        };
        let response = self
            .transport
            .send(request)
            .await
            .map_err(|e: TransportError| MetricsReadError::Unreachable(e.to_string()))?;
        let body = String::from_utf8_lossy(&response.body);
        match response.status {
            200..=299 => {}
            401 | 403 => {
                return Err(MetricsReadError::Unauthorized {
                    status: response.status,
                })
            }
            status => {
                return Err(MetricsReadError::Rejected {
                    status,
                    message: body.chars().take(MAX_ERROR_CHARS).collect(),
                })
            }
        }
        let parsed: Value = serde_json::from_str(&body)
            .map_err(|e| MetricsReadError::Malformed(format!("not JSON: {e}")))?;
        match parsed.get("data") {
            Some(Value::Array(rows)) => rows
                .iter()
                .map(|row| match row {
                    Value::Object(map) => Ok(map.clone()),
                    _ => Err(MetricsReadError::Malformed("a row is not an object".into())),
                })
                .collect(),
            _ => Err(MetricsReadError::Malformed(
                "no `data` array (FORMAT JSON)".into(),
            )),
        }
    }

    /// Runs every statement at once (independent HTTP calls); their rows in order.
    async fn all(&self, queries: &[Query]) -> Result<Vec<Vec<Row>>, MetricsReadError> {
        futures_util::future::try_join_all(queries.iter().map(|q| self.rows(q))).await
    }

    /// The request route labels seen between `since_ms` and `now_ms` that `keep` accepts.
    async fn request_names(
        &self,
        since_ms: u64,
        now_ms: u64,
        keep: impl Fn(&str) -> bool,
    ) -> Result<Vec<String>, MetricsReadError> {
        let rows = self
            .rows(
                &requests_between(since_ms, now_ms)
                    .by(&[Key::Column(Column::Name)])
                    .measuring(&[Measure::Count]),
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| text(r, "name"))
            .filter(|n| keep(n))
            .collect())
    }

    /// The rows of `query` over the request routes between `since_ms` and
    /// `now_ms` that `keep` accepts; no rows (and no second statement) when
    /// the window holds none of them.
    async fn over_routes(
        &self,
        since_ms: u64,
        now_ms: u64,
        keep: impl Fn(&str) -> bool,
        query: impl FnOnce(Query) -> Query,
    ) -> Result<Vec<Row>, MetricsReadError> {
        let names = self.request_names(since_ms, now_ms, keep).await?;
        if names.is_empty() {
            return Ok(Vec::new());
        }
        self.rows(&query(requests_between(since_ms, now_ms)).filtered(Filter::NameIn(names)))
            .await
    }
}

/// A statement over the request points from `since_ms` to `now_ms`.
fn requests_between(since_ms: u64, now_ms: u64) -> Query {
    Query::window(
        MetricKind::Request,
        seconds_floor(since_ms),
        seconds_ceil(now_ms),
    )
}

/// The requests alerts weigh: every route but the operator's.
fn alerting_route(name: &str) -> bool {
    !name.contains(" /admin")
}

/// The requests availability counts: not the operator's, not unrouted
/// probes (the local table's reader filters the same way).
fn availability_route(name: &str) -> bool {
    !name.contains(" /admin") && !name.contains("(unrouted)")
}

/// Folds the answers of [`report_queries`] into the report.
fn fold_report(
    window: MetricsWindow,
    from_ms: u64,
    to_ms: u64,
    answers: &[Vec<Row>],
) -> MetricsReport {
    let empty = Vec::new();
    let answer = |i: usize| answers.get(i).unwrap_or(&empty);
    let span_ms = to_ms.saturating_sub(from_ms).max(1);
    let mut points = 0u64;

    // Requests.
    let mut routes: BTreeMap<String, RouteReport> = BTreeMap::new();
    for row in answer(0) {
        let n = count(row, "n");
        points += n;
        let status = number(row, "status") as u16;
        let route = routes
            .entry(text(row, "name"))
            .or_insert_with_key(|name| RouteReport {
                route: name.clone(),
                count: 0,
                errors: 0,
                error_rate: 0.0,
                p50_ms: None,
                p95_ms: None,
                p99_ms: None,
                by_status: BTreeMap::new(),
            });
        route.count += n;
        if status >= 500 {
            route.errors += n;
        }
        *route.by_status.entry(status.to_string()).or_default() += n;
    }
    for row in answer(1) {
        if let Some(route) = routes.get_mut(&text(row, "name")) {
            route.p50_ms = optional(row, "p50");
            route.p95_ms = optional(row, "p95");
            route.p99_ms = optional(row, "p99");
        }
    }
    let total: u64 = routes.values().map(|r| r.count).sum();
    let errors: u64 = routes.values().map(|r| r.errors).sum();
    let overall = answer(2).first();
    let routes: Vec<RouteReport> = routes
        .into_values()
        .map(|mut r| {
            r.error_rate = rate(r.errors, r.count);
            r
        })
        .collect();

    // Steps.
    let mut steps: BTreeMap<String, StepReport> = BTreeMap::new();
    for row in answer(3) {
        let n = count(row, "n");
        points += n;
        let step = steps
            .entry(text(row, "name"))
            .or_insert_with_key(|name| StepReport {
                step: name.clone(),
                attempts: 0,
                errors: 0,
                p50_ms: None,
                p95_ms: None,
            });
        step.attempts += n;
        if matches!(text(row, "outcome").as_str(), "retryable" | "permanent") {
            step.errors += n;
        }
    }
    for row in answer(4) {
        if let Some(step) = steps.get_mut(&text(row, "name")) {
            step.p50_ms = optional(row, "p50");
            step.p95_ms = optional(row, "p95");
        }
    }

    // Runs.
    let mut by_outcome: BTreeMap<String, u64> = BTreeMap::new();
    let mut failures: BTreeMap<String, u64> = BTreeMap::new();
    let (mut chunks, mut retries) = (0.0, 0.0);
    for row in answer(5) {
        let n = count(row, "n");
        points += n;
        *by_outcome.entry(text(row, "outcome")).or_default() += n;
        chunks += number(row, "items");
        retries += number(row, "retries");
        let detail = text(row, "detail");
        if !detail.is_empty() {
            *failures.entry(detail).or_default() += n;
        }
    }
    let ready = by_outcome.get("ready").copied().unwrap_or(0);

    // Reconciliation.
    let mut reconciliation = ReconcileReport {
        pages: 0,
        runs_finished: 0,
        objects_seen: 0,
        enqueued: 0,
        p95_page_ms: answer(7).first().and_then(|r| optional(r, "p95")),
    };
    let (mut objects, mut enqueued) = (0.0, 0.0);
    for row in answer(6) {
        let n = count(row, "n");
        points += n;
        reconciliation.pages += n;
        if text(row, "outcome") == "last" {
            reconciliation.runs_finished += n;
        }
        objects += number(row, "items");
        enqueued += number(row, "enqueued");
    }
    reconciliation.objects_seen = objects.round() as u64;
    reconciliation.enqueued = enqueued.round() as u64;
    if reconciliation.pages == 0 {
        reconciliation.p95_page_ms = None;
    }

    // Providers.
    let mut providers: BTreeMap<(String, String), (ProviderReport, f64)> = BTreeMap::new();
    for row in answer(8) {
        let n = count(row, "n");
        points += n;
        let key = (text(row, "name"), text(row, "detail"));
        let (provider, tokens) = providers.entry(key.clone()).or_insert_with(|| {
            (
                ProviderReport {
                    provider: key.0.clone(),
                    operation: key.1.clone(),
                    calls: 0,
                    errors: 0,
                    refusals: BTreeMap::new(),
                    tokens: 0,
                    estimated_cost_usd: 0.0,
                    p50_ms: None,
                    p95_ms: None,
                },
                0.0,
            )
        });
        provider.calls += n;
        if text(row, "outcome") != "ok" {
            provider.errors += n;
        }
        let status = number(row, "status") as u16;
        if status != 0 {
            *provider.refusals.entry(status.to_string()).or_default() += n;
        }
        *tokens += number(row, "tokens");
        provider.estimated_cost_usd += number(row, "cost_usd");
    }
    for row in answer(9) {
        if let Some((provider, _)) = providers.get_mut(&(text(row, "name"), text(row, "detail"))) {
            provider.p50_ms = optional(row, "p50");
            provider.p95_ms = optional(row, "p95");
        }
    }

    MetricsReport {
        window: window.as_str().to_owned(),
        from_ms,
        to_ms,
        points,
        requests: RequestReport {
            total,
            errors,
            error_rate: rate(errors, total),
            p50_ms: overall
                .and_then(|r| optional(r, "p50"))
                .filter(|_| total > 0),
            p95_ms: overall
                .and_then(|r| optional(r, "p95"))
                .filter(|_| total > 0),
            p99_ms: overall
                .and_then(|r| optional(r, "p99"))
                .filter(|_| total > 0),
            routes,
        },
        ingestion: IngestionReport {
            runs: by_outcome.values().sum(),
            by_outcome,
            documents_ready: ready,
            documents_per_minute: ready as f64 * MINUTE_MS as f64 / span_ms as f64,
            chunks: chunks.round() as u64,
            chunks_per_second: chunks * 1_000.0 / span_ms as f64,
            retries: retries.round() as u64,
            failures_by_reason: failures,
            steps: steps.into_values().collect(),
        },
        reconciliation,
        providers: providers
            .into_values()
            .map(|(p, tokens)| ProviderReport {
                tokens: tokens.round() as u64,
                ..p
            })
            .collect(),
        documents: None,
        queue: None,
    }
}

/// The ten statements of one report, in the order [`fold_report`] reads them.
fn report_queries(since_s: u64, until_s: u64) -> Vec<Query> {
    use Column::{Cost, Detail, Enqueued, Items, Name, Outcome, Retries, Status, Tokens};
    let q = |kind| Query::window(kind, since_s, until_s);
    let p50 = Measure::Quantile(0.5, "p50");
    let p95 = Measure::Quantile(0.95, "p95");
    let p99 = Measure::Quantile(0.99, "p99");
    vec![
        q(MetricKind::Request)
            .by(&[Key::Column(Name), Key::Column(Status)])
            .measuring(&[Measure::Count]),
        q(MetricKind::Request)
            .by(&[Key::Column(Name)])
            .measuring(&[p50, p95, p99]),
        q(MetricKind::Request).measuring(&[p50, p95, p99]),
        q(MetricKind::Step)
            .by(&[Key::Column(Name), Key::Column(Outcome)])
            .measuring(&[Measure::Count]),
        q(MetricKind::Step)
            .by(&[Key::Column(Name)])
            .measuring(&[p50, p95]),
        q(MetricKind::Run)
            .by(&[Key::Column(Outcome), Key::Column(Detail)])
            .measuring(&[Measure::Count, Measure::Sum(Items), Measure::Sum(Retries)]),
        q(MetricKind::Reconcile)
            .by(&[Key::Column(Outcome)])
            .measuring(&[Measure::Count, Measure::Sum(Items), Measure::Sum(Enqueued)]),
        q(MetricKind::Reconcile).measuring(&[p95]),
        q(MetricKind::Provider)
            .by(&[
                Key::Column(Name),
                Key::Column(Detail),
                Key::Column(Outcome),
                Key::Column(Status),
            ])
            .measuring(&[Measure::Count, Measure::Sum(Tokens), Measure::Sum(Cost)]),
        q(MetricKind::Provider)
            .by(&[Key::Column(Name), Key::Column(Detail)])
            .measuring(&[p50, p95]),
    ]
}

impl<T: HttpTransport> MetricsReader for AnalyticsSqlReader<T> {
    async fn report(
        &self,
        window: MetricsWindow,
        now_ms: u64,
    ) -> Result<Read<MetricsReport>, MetricsReadError> {
        let from_ms = now_ms.saturating_sub(window.duration_ms());
        let answers = self
            .all(&report_queries(
                seconds_floor(from_ms),
                seconds_ceil(now_ms),
            ))
            .await?;
        let rows = answers.iter().map(|a| a.len() as u64).sum();
        Ok((fold_report(window, from_ms, now_ms, &answers), rows))
    }

    async fn versions(
        &self,
        window: ComparisonWindow,
        now_ms: u64,
    ) -> Result<Read<VersionReport>, MetricsReadError> {
        let since_ms = now_ms.saturating_sub(window.duration_ms());
        let rows = self
            .over_routes(since_ms, now_ms, is_public_route, |q| {
                q.by(&[Key::Column(Column::Version)]).measuring(&[
                    Measure::Count,
                    Measure::Errors,
                    Measure::Quantile(0.5, "p50"),
                    Measure::Quantile(0.95, "p95"),
                ])
            })
            .await?;
        let mut versions: Vec<VersionStats> = rows
            .iter()
            .map(|r| {
                let requests = count(r, "n");
                let errors = count(r, "errors");
                VersionStats {
                    version_id: text(r, "version"),
                    requests,
                    errors,
                    error_rate: rate(errors, requests),
                    p50_ms: optional(r, "p50").unwrap_or(0.0),
                    p95_ms: optional(r, "p95").unwrap_or(0.0),
                }
            })
            .filter(|v| v.requests > 0)
            .collect();
        versions.sort_by(|a, b| {
            b.requests
                .cmp(&a.requests)
                .then_with(|| a.version_id.cmp(&b.version_id))
        });
        let read = rows.len() as u64;
        Ok((
            VersionReport {
                window_ms: window.duration_ms(),
                since_ms,
                until_ms: now_ms,
                versions,
            },
            read,
        ))
    }

    async fn requests(
        &self,
        since_ms: u64,
        now_ms: u64,
    ) -> Result<RequestWindow, MetricsReadError> {
        let rows = self
            .over_routes(since_ms, now_ms, alerting_route, |q| {
                q.measuring(&[
                    Measure::Count,
                    Measure::Errors,
                    Measure::Quantile(0.95, "p95"),
                ])
            })
            .await?;
        let row = rows.first();
        let total = row.map_or(0, |r| count(r, "n"));
        Ok(RequestWindow {
            total,
            errors: row.map_or(0, |r| count(r, "errors")),
            p95_ms: row.and_then(|r| optional(r, "p95")).filter(|_| total > 0),
        })
    }

    async fn latest_provider_calls(&self) -> Result<Vec<ProviderCall>, MetricsReadError> {
        let query = Query {
            kind: MetricKind::Provider,
            keys: vec![Key::Column(Column::Name)],
            measures: vec![Measure::LatestStatus, Measure::LatestAt],
            filters: Vec::new(),
        };
        Ok(self
            .rows(&query)
            .await?
            .iter()
            .map(|r| ProviderCall {
                provider: text(r, "name"),
                status: number(r, "status") as u16,
                at_ms: count(r, "at") * 1_000,
            })
            .collect())
    }

    async fn burn_windows(&self, now_ms: u64) -> Result<[BurnWindows; 2], MetricsReadError> {
        let [first, second] = FAST_BURN;
        let oldest = now_ms.saturating_sub(first.long_ms.max(second.long_ms));
        let since = |ms: u64| seconds_floor(now_ms.saturating_sub(ms));
        let rows = self
            .over_routes(oldest, now_ms, availability_route, |q| {
                q.measuring(&[
                    Measure::CountSince(0, since(first.long_ms)),
                    Measure::CountSince(1, since(first.short_ms)),
                    Measure::CountSince(2, since(second.long_ms)),
                    Measure::CountSince(3, since(second.short_ms)),
                ])
            })
            .await?;
        let Some(row) = rows.first() else {
            return Ok(Default::default());
        };
        let window = |i: usize| RequestCount {
            requests: count(row, &format!("requests_{i}")),
            errors: count(row, &format!("errors_{i}")),
        };
        Ok([
            BurnWindows {
                long: window(0),
                short: window(1),
            },
            BurnWindows {
                long: window(2),
                short: window(3),
            },
        ])
    }

    async fn public_days(
        &self,
        since_ms: u64,
        now_ms: u64,
    ) -> Result<Vec<(String, RequestCount)>, MetricsReadError> {
        let rows = self
            .over_routes(since_ms, now_ms, availability_route, |q| {
                q.by(&[Key::Day])
                    .measuring(&[Measure::Count, Measure::Errors])
            })
            .await?;
        let mut days: Vec<(String, RequestCount)> = rows
            .iter()
            .map(|r| {
                (
                    text(r, "day"),
                    RequestCount {
                        requests: count(r, "n"),
                        errors: count(r, "errors"),
                    },
                )
            })
            .collect();
        days.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(days)
    }
}
