//! What `GET /admin/metrics` answers: data points of one window folded into
//! per-route latency percentiles and error rates, ingestion throughput, step
//! durations, failures and retries, reconciliation pages and provider usage.
//!
//! Points are added one at a time ([`MetricsSummary::add`]), so the Worker
//! can stream a window's rows through in pages instead of holding them all.

use super::point::{DataPoint, MetricKind};
use serde::Serialize;
use std::collections::BTreeMap;
use thiserror::Error;

const MINUTE_MS: u64 = 60 * 1_000;
const HOUR_MS: u64 = 60 * MINUTE_MS;

/// The windows `GET /admin/metrics?window=` accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricsWindow {
    /// The last hour (the default).
    Hour,
    /// The last 24 hours.
    Day,
    /// The last 7 days.
    Week,
}

/// A `window` parameter the service does not know.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("`window` must be one of 1h, 24h, 7d, got {given:?}")]
pub struct WindowError {
    /// What the client sent (at most 64 characters of it).
    pub given: String,
}

impl WindowError {
    /// Stable error code for the `{ "error": { "code" } }` body.
    pub const CODE: &'static str = "bad_window";
}

impl MetricsWindow {
    /// The window `param` names; the last hour when absent.
    ///
    /// # Errors
    /// Anything but `1h`, `24h` or `7d`.
    pub fn parse(param: Option<&str>) -> Result<Self, WindowError> {
        match param {
            None | Some("1h") => Ok(Self::Hour),
            Some("24h") => Ok(Self::Day),
            Some("7d") => Ok(Self::Week),
            Some(other) => Err(WindowError {
                given: other.chars().take(64).collect(),
            }),
        }
    }

    /// How it is written in the query (`1h`, `24h`, `7d`).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hour => "1h",
            Self::Day => "24h",
            Self::Week => "7d",
        }
    }

    /// Its length in ms.
    #[must_use]
    pub fn duration_ms(self) -> u64 {
        match self {
            Self::Hour => HOUR_MS,
            Self::Day => 24 * HOUR_MS,
            Self::Week => 7 * 24 * HOUR_MS,
        }
    }
}

/// The `p`th percentile (0–100) of ascending `sorted` values by nearest
/// rank: the smallest value with at least p % of the values at or below it.
/// `None` for no values.
#[must_use]
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    let rank = nearest_rank(sorted.len(), p)?;
    Some(sorted[rank - 1])
}

/// The 1-based rank of the `p`th percentile (0–100) among `n` ascending
/// values by nearest rank (`None` for no values): what [`percentile`] picks,
/// for a store that can read the one value at that rank (`LIMIT 1 OFFSET rank - 1`).
#[must_use]
pub fn nearest_rank(n: usize, p: f64) -> Option<usize> {
    if n == 0 {
        return None;
    }
    let rank = ((p / 100.0) * n as f64).ceil() as usize;
    Some(rank.clamp(1, n))
}

fn sorted(mut values: Vec<f64>) -> Vec<f64> {
    values.sort_by(f64::total_cmp);
    values
}

fn rate(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

#[derive(Debug, Default)]
struct Durations {
    values: Vec<f64>,
    errors: u64,
    statuses: BTreeMap<u16, u64>,
}

#[derive(Debug, Default)]
struct ProviderTotals {
    calls: u64,
    errors: u64,
    refusals: BTreeMap<u16, u64>,
    tokens: f64,
    cost_usd: f64,
    durations: Vec<f64>,
}

/// Data points of one window being folded into a [`MetricsReport`].
#[derive(Debug)]
pub struct MetricsSummary {
    window: String,
    from_ms: u64,
    to_ms: u64,
    points: u64,
    routes: BTreeMap<String, Durations>,
    steps: BTreeMap<String, Durations>,
    runs: BTreeMap<String, u64>,
    chunks: f64,
    retries: f64,
    failures: BTreeMap<String, u64>,
    pages: u64,
    runs_finished: u64,
    objects_seen: f64,
    enqueued: f64,
    page_durations: Vec<f64>,
    providers: BTreeMap<(String, String), ProviderTotals>,
}

impl MetricsSummary {
    /// An empty summary of the points at `from_ms ..= to_ms`, labelled `window`.
    #[must_use]
    pub fn new(window: impl Into<String>, from_ms: u64, to_ms: u64) -> Self {
        Self {
            window: window.into(),
            from_ms,
            to_ms,
            points: 0,
            routes: BTreeMap::new(),
            steps: BTreeMap::new(),
            runs: BTreeMap::new(),
            chunks: 0.0,
            retries: 0.0,
            failures: BTreeMap::new(),
            pages: 0,
            runs_finished: 0,
            objects_seen: 0.0,
            enqueued: 0.0,
            page_durations: Vec::new(),
            providers: BTreeMap::new(),
        }
    }

    /// The summary of `window` ending at `now_ms`.
    #[must_use]
    pub fn for_window(window: MetricsWindow, now_ms: u64) -> Self {
        Self::new(
            window.as_str(),
            now_ms.saturating_sub(window.duration_ms()),
            now_ms,
        )
    }

    /// Where the window starts (ms since the epoch).
    #[must_use]
    pub fn from_ms(&self) -> u64 {
        self.from_ms
    }

    /// Folds in one point (ignored when outside the window).
    pub fn add(&mut self, point: &DataPoint) {
        if point.at_ms < self.from_ms || point.at_ms > self.to_ms {
            return;
        }
        self.points += 1;
        match point.kind {
            MetricKind::Request => {
                let route = self.routes.entry(point.name.clone()).or_default();
                route.values.push(point.duration_ms);
                *route.statuses.entry(point.status).or_default() += 1;
                if point.status >= 500 {
                    route.errors += 1;
                }
            }
            MetricKind::Step => {
                let step = self.steps.entry(point.name.clone()).or_default();
                step.values.push(point.duration_ms);
                if matches!(point.outcome.as_str(), "retryable" | "permanent") {
                    step.errors += 1;
                }
            }
            MetricKind::Run => {
                *self.runs.entry(point.outcome.clone()).or_default() += 1;
                self.chunks += point.items;
                self.retries += point.retries;
                if !point.detail.is_empty() {
                    *self.failures.entry(point.detail.clone()).or_default() += 1;
                }
            }
            MetricKind::Reconcile => {
                self.pages += 1;
                if point.outcome == "last" {
                    self.runs_finished += 1;
                }
                self.objects_seen += point.items;
                self.enqueued += point.enqueued;
                self.page_durations.push(point.duration_ms);
            }
            MetricKind::Provider => {
                let totals = self
                    .providers
                    .entry((point.name.clone(), point.detail.clone()))
                    .or_default();
                totals.calls += 1;
                if point.outcome != "ok" {
                    totals.errors += 1;
                }
                if point.status != 0 {
                    *totals.refusals.entry(point.status).or_default() += 1;
                }
                totals.tokens += point.tokens;
                totals.cost_usd += point.cost_usd;
                totals.durations.push(point.duration_ms);
            }
        }
    }

    /// The report (without the D1 state counts, which the caller adds).
    #[must_use]
    pub fn report(self) -> MetricsReport {
        let span_ms = self.to_ms.saturating_sub(self.from_ms).max(1);
        let mut all = Vec::new();
        let mut errors = 0;
        let routes = self
            .routes
            .into_iter()
            .map(|(route, durations)| {
                all.extend_from_slice(&durations.values);
                errors += durations.errors;
                let count = durations.values.len() as u64;
                let values = sorted(durations.values);
                RouteReport {
                    route,
                    count,
                    errors: durations.errors,
                    error_rate: rate(durations.errors, count),
                    p50_ms: percentile(&values, 50.0),
                    p95_ms: percentile(&values, 95.0),
                    p99_ms: percentile(&values, 99.0),
                    by_status: durations
                        .statuses
                        .into_iter()
                        .map(|(s, n)| (s.to_string(), n))
                        .collect(),
                }
            })
            .collect();
        let all = sorted(all);
        let total = all.len() as u64;
        let steps = self
            .steps
            .into_iter()
            .map(|(step, durations)| {
                let values = sorted(durations.values);
                StepReport {
                    step,
                    attempts: values.len() as u64,
                    errors: durations.errors,
                    p50_ms: percentile(&values, 50.0),
                    p95_ms: percentile(&values, 95.0),
                }
            })
            .collect();
        let ready = self.runs.get("ready").copied().unwrap_or(0);
        let providers = self
            .providers
            .into_iter()
            .map(|((provider, operation), totals)| {
                let durations = sorted(totals.durations);
                ProviderReport {
                    provider,
                    operation,
                    calls: totals.calls,
                    errors: totals.errors,
                    refusals: totals
                        .refusals
                        .into_iter()
                        .map(|(s, n)| (s.to_string(), n))
                        .collect(),
                    tokens: totals.tokens.round() as u64,
                    estimated_cost_usd: totals.cost_usd,
                    p50_ms: percentile(&durations, 50.0),
                    p95_ms: percentile(&durations, 95.0),
                }
            })
            .collect();
        let page_durations = sorted(self.page_durations);
        MetricsReport {
            window: self.window,
            from_ms: self.from_ms,
            to_ms: self.to_ms,
            points: self.points,
            requests: RequestReport {
                total,
                errors,
                error_rate: rate(errors, total),
                p50_ms: percentile(&all, 50.0),
                p95_ms: percentile(&all, 95.0),
                p99_ms: percentile(&all, 99.0),
                routes,
            },
            ingestion: IngestionReport {
                runs: self.runs.values().sum(),
                by_outcome: self.runs,
                documents_ready: ready,
                documents_per_minute: ready as f64 * MINUTE_MS as f64 / span_ms as f64,
                chunks: self.chunks.round() as u64,
                chunks_per_second: self.chunks * 1_000.0 / span_ms as f64,
                retries: self.retries.round() as u64,
                failures_by_reason: self.failures,
                steps,
            },
            reconciliation: ReconcileReport {
                pages: self.pages,
                runs_finished: self.runs_finished,
                objects_seen: self.objects_seen.round() as u64,
                enqueued: self.enqueued.round() as u64,
                p95_page_ms: percentile(&page_durations, 95.0),
            },
            providers,
            documents: None,
            queue: None,
        }
    }
}

/// `GET /admin/metrics`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetricsReport {
    /// `1h`, `24h` or `7d`.
    pub window: String,
    /// Window start (ms since the epoch).
    pub from_ms: u64,
    /// Window end: when the report was made.
    pub to_ms: u64,
    /// Data points in the window.
    pub points: u64,
    /// HTTP requests.
    pub requests: RequestReport,
    /// Ingestion runs and steps.
    pub ingestion: IngestionReport,
    /// Reconciliation pages.
    pub reconciliation: ReconcileReport,
    /// Provider calls, per provider and operation.
    pub providers: Vec<ProviderReport>,
    /// Documents by status now (from D1, not from points).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub documents: Option<DocumentCounts>,
    /// Work waiting and dead letters (from D1, not from points).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue: Option<QueueCounts>,
}

/// Requests over all routes, and per route.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RequestReport {
    /// Requests answered.
    pub total: u64,
    /// Answered with a 5xx.
    pub errors: u64,
    /// `errors / total` (0 without requests).
    pub error_rate: f64,
    /// Latency percentiles over all routes (ms).
    pub p50_ms: Option<f64>,
    /// 95th percentile.
    pub p95_ms: Option<f64>,
    /// 99th percentile.
    pub p99_ms: Option<f64>,
    /// Per route label, in label order.
    pub routes: Vec<RouteReport>,
}

/// One route's requests.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RouteReport {
    /// `METHOD /template`.
    pub route: String,
    /// Requests.
    pub count: u64,
    /// 5xx answers.
    pub errors: u64,
    /// `errors / count`.
    pub error_rate: f64,
    /// Latency percentiles (ms, nearest rank).
    pub p50_ms: Option<f64>,
    /// 95th percentile.
    pub p95_ms: Option<f64>,
    /// 99th percentile.
    pub p99_ms: Option<f64>,
    /// Requests per HTTP status.
    pub by_status: BTreeMap<String, u64>,
}

/// Ingestion over the window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IngestionReport {
    /// Runs finished.
    pub runs: u64,
    /// Runs per outcome (`ready`, `unchanged`, `failed`, `superseded`, `deleted`).
    pub by_outcome: BTreeMap<String, u64>,
    /// Runs that made a new generation live.
    pub documents_ready: u64,
    /// `documents_ready` per minute of the window.
    pub documents_per_minute: f64,
    /// Chunks written by those runs.
    pub chunks: u64,
    /// `chunks` per second of the window.
    pub chunks_per_second: f64,
    /// Failed step attempts that were tried again.
    pub retries: u64,
    /// Failed runs per reason (`embed: permanent`, `download: out of attempts`).
    pub failures_by_reason: BTreeMap<String, u64>,
    /// Per step: attempts, failed attempts and durations.
    pub steps: Vec<StepReport>,
}

/// One step's attempts.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepReport {
    /// `download`, `chunk`, `embed`, `tag`, `commit`, `delete`.
    pub step: String,
    /// Attempts (one per batch for embed and tag).
    pub attempts: u64,
    /// Attempts that failed.
    pub errors: u64,
    /// Duration percentiles of an attempt (ms).
    pub p50_ms: Option<f64>,
    /// 95th percentile.
    pub p95_ms: Option<f64>,
}

/// Reconciliation over the window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReconcileReport {
    /// Pages processed.
    pub pages: u64,
    /// Runs whose last page was processed.
    pub runs_finished: u64,
    /// Objects judged.
    pub objects_seen: u64,
    /// Documents enqueued for repair.
    pub enqueued: u64,
    /// 95th percentile of a page's duration (ms).
    pub p95_page_ms: Option<f64>,
}

/// One provider operation's calls.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProviderReport {
    /// `offline`, `openai`, `workers-ai`.
    pub provider: String,
    /// `embed`, `chat`, `stream`.
    pub operation: String,
    /// Calls (each may include the client's own retries).
    pub calls: u64,
    /// Calls that ended in an error.
    pub errors: u64,
    /// Calls refused with an HTTP status, per status (`401`: revoked key).
    pub refusals: BTreeMap<String, u64>,
    /// Tokens in and out, estimated from text length.
    pub tokens: u64,
    /// `tokens` × the provider's configured cost per 1K tokens.
    pub estimated_cost_usd: f64,
    /// Call duration percentiles (ms).
    pub p50_ms: Option<f64>,
    /// 95th percentile.
    pub p95_ms: Option<f64>,
}

/// Documents by status, read from D1 when the report is made.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DocumentCounts {
    /// Rows per status (`queued`, `processing`, `ready`, `failed`, `deleted`).
    pub by_status: BTreeMap<String, u64>,
    /// The document queued or processing for longest, if any.
    pub oldest_in_flight: Option<InFlightDocument>,
}

/// A document waiting for or in processing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InFlightDocument {
    /// Its key.
    pub key: String,
    /// `queued` or `processing`.
    pub status: String,
    /// When its row last changed (ms since the epoch).
    pub since_ms: u64,
    /// How long ago that was.
    pub age_ms: u64,
}

/// What waits in the pipeline and what fell out of it. The queue's own
/// backlog is not readable from a Worker; documents `queued` stand for it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct QueueCounts {
    /// Documents accepted and not yet started.
    pub queued: u64,
    /// Documents a processor is working on.
    pub processing: u64,
    /// Dead letters recorded, ever (until deleted).
    pub dead_letters: u64,
    /// Dead letters received within the window.
    pub dead_letters_in_window: u64,
    /// Dead letters never replayed.
    pub dead_letters_not_replayed: u64,
}

#[cfg(test)]
mod tests;
