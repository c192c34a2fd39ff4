//! What `GET /admin/metrics/versions` answers: the public requests of one
//! window split by the Worker version that served them, each version's
//! request count, 5xx error rate and latency percentiles, so a gradual
//! deployment can compare the new version with the old one over the same
//! window.
//!
//! Decides which points count and how they are summed; never decides whether
//! a difference is a regression (the deploy script does, from these figures).

use super::point::{DataPoint, MetricKind};
use super::report::percentile;
use super::route::is_public_route;
use serde::Serialize;
use std::collections::BTreeMap;
use thiserror::Error;

const SECOND_MS: u64 = 1_000;
const MINUTE_MS: u64 = 60 * SECOND_MS;
const HOUR_MS: u64 = 60 * MINUTE_MS;
const DAY_MS: u64 = 24 * HOUR_MS;

/// The window when none is given: the last hour, as `GET /admin/metrics`.
pub const DEFAULT_COMPARISON_WINDOW_MS: u64 = HOUR_MS;
/// The longest window: `GET /admin/metrics`' longest (points are kept 8 days
/// by default, `METRICS_RETENTION_DAYS`).
pub const MAX_COMPARISON_WINDOW_MS: u64 = 7 * DAY_MS;

/// A `window` parameter that is not a duration the comparison accepts.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error(
    "`window` must be a whole number followed by s, m, h or d (15m, 1h), from 1s to 7d, got {given:?}"
)]
pub struct ComparisonWindowError {
    /// What the client sent (at most 64 characters of it).
    pub given: String,
}

impl ComparisonWindowError {
    /// Stable error code for the `{ "error": { "code" } }` body (the same as
    /// `GET /admin/metrics`' bad window).
    pub const CODE: &'static str = super::report::WindowError::CODE;
}

/// How far back a comparison looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ComparisonWindow {
    duration_ms: u64,
}

impl ComparisonWindow {
    /// The window `param` names (`90s`, `15m`, `1h`, `2d`): a whole number
    /// of seconds, minutes, hours or days, from 1 s to 7 days; the last hour
    /// when absent.
    ///
    /// # Errors
    /// Anything else: no unit, another unit, a sign, a fraction, spaces, 0,
    /// or more than 7 days.
    pub fn parse(param: Option<&str>) -> Result<Self, ComparisonWindowError> {
        let Some(text) = param else {
            return Ok(Self {
                duration_ms: DEFAULT_COMPARISON_WINDOW_MS,
            });
        };
        let refuse = || ComparisonWindowError {
            given: text.chars().take(64).collect(),
        };
        let digits = text
            .get(..text.len().saturating_sub(1))
            .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(refuse)?;
        let unit_ms = match text.as_bytes().last() {
            Some(b's') => SECOND_MS,
            Some(b'm') => MINUTE_MS,
            Some(b'h') => HOUR_MS,
            Some(b'd') => DAY_MS,
            _ => return Err(refuse()),
        };
        let duration_ms = digits
            .parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(unit_ms))
            .filter(|ms| (1..=MAX_COMPARISON_WINDOW_MS).contains(ms))
            .ok_or_else(refuse)?;
        Ok(Self { duration_ms })
    }

    /// Its length in ms.
    #[must_use]
    pub fn duration_ms(self) -> u64 {
        self.duration_ms
    }
}

#[derive(Debug, Default)]
struct VersionTotals {
    durations: Vec<f64>,
    errors: u64,
}

/// Request points of one window being split by version into a
/// [`VersionReport`]. Points are added one at a time, so the Worker can
/// stream a window's rows through in pages.
#[derive(Debug)]
pub struct VersionComparison {
    window_ms: u64,
    since_ms: u64,
    until_ms: u64,
    versions: BTreeMap<String, VersionTotals>,
}

impl VersionComparison {
    /// An empty comparison of the `window` ending at `now_ms`.
    #[must_use]
    pub fn new(window: ComparisonWindow, now_ms: u64) -> Self {
        Self {
            window_ms: window.duration_ms(),
            since_ms: now_ms.saturating_sub(window.duration_ms()),
            until_ms: now_ms,
            versions: BTreeMap::new(),
        }
    }

    /// Where the window starts (ms since the epoch).
    #[must_use]
    pub fn since_ms(&self) -> u64 {
        self.since_ms
    }

    /// Where it ends: when the comparison was made.
    #[must_use]
    pub fn until_ms(&self) -> u64 {
        self.until_ms
    }

    /// Folds in one point: counted when it is a request to a public route
    /// ([`is_public_route`]) within the window, ignored otherwise. A 5xx is
    /// an error; a 4xx is the client's, not the version's.
    pub fn add(&mut self, point: &DataPoint) {
        if point.kind != MetricKind::Request
            || point.at_ms < self.since_ms
            || point.at_ms > self.until_ms
            || !is_public_route(&point.name)
        {
            return;
        }
        let totals = self.versions.entry(point.version.clone()).or_default();
        totals.durations.push(point.duration_ms);
        if point.status >= 500 {
            totals.errors += 1;
        }
    }

    /// The report: one entry per version that served a counted request, the
    /// busiest first (ties by id).
    #[must_use]
    pub fn report(self) -> VersionReport {
        let mut versions: Vec<VersionStats> = self
            .versions
            .into_iter()
            .map(|(version_id, mut totals)| {
                totals.durations.sort_by(f64::total_cmp);
                let requests = totals.durations.len() as u64;
                VersionStats {
                    version_id,
                    requests,
                    errors: totals.errors,
                    // Every listed version has at least one request.
                    error_rate: totals.errors as f64 / requests.max(1) as f64,
                    p50_ms: percentile(&totals.durations, 50.0).unwrap_or(0.0),
                    p95_ms: percentile(&totals.durations, 95.0).unwrap_or(0.0),
                }
            })
            .collect();
        versions.sort_by(|a, b| {
            b.requests
                .cmp(&a.requests)
                .then_with(|| a.version_id.cmp(&b.version_id))
        });
        VersionReport {
            window_ms: self.window_ms,
            since_ms: self.since_ms,
            until_ms: self.until_ms,
            versions,
        }
    }
}

/// `GET /admin/metrics/versions`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VersionReport {
    /// The window's length (ms).
    pub window_ms: u64,
    /// Window start (ms since the epoch).
    pub since_ms: u64,
    /// Window end: when the report was made.
    pub until_ms: u64,
    /// Per version, the busiest first.
    pub versions: Vec<VersionStats>,
}

/// One version's public requests in the window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VersionStats {
    /// The Worker version id; `""` for points recorded without one (before
    /// the `version` column existed, or where the binding is absent).
    pub version_id: String,
    /// Public requests it answered.
    pub requests: u64,
    /// Those answered with a 5xx.
    pub errors: u64,
    /// `errors / requests` (0–1).
    pub error_rate: f64,
    /// Median latency (ms, nearest rank).
    pub p50_ms: f64,
    /// 95th percentile latency (ms, nearest rank).
    pub p95_ms: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(at_ms: u64, route: &str, status: u16, ms: u64, version: &str) -> DataPoint {
        DataPoint::request(at_ms, route, status, ms).with_version(version)
    }

    #[test]
    fn windows_parse_whole_durations_up_to_a_week() {
        let ms =
            |text: &str| ComparisonWindow::parse(Some(text)).map(ComparisonWindow::duration_ms);
        assert_eq!(
            ComparisonWindow::parse(None).map(ComparisonWindow::duration_ms),
            Ok(HOUR_MS)
        );
        assert_eq!(ms("90s"), Ok(90_000));
        assert_eq!(ms("15m"), Ok(15 * MINUTE_MS));
        assert_eq!(ms("1h"), Ok(HOUR_MS));
        assert_eq!(ms("24h"), Ok(DAY_MS));
        assert_eq!(ms("7d"), Ok(MAX_COMPARISON_WINDOW_MS));
        assert_eq!(ms("168h"), Ok(MAX_COMPARISON_WINDOW_MS));
        assert_eq!(ms("1s"), Ok(1_000));
        for bad in [
            "",
            "m",
            "15",
            "0m",
            "-5m",
            "+5m",
            "1.5h",
            "1 h",
            " 1h",
            "1h ",
            "8d",
            "169h",
            "15M",
            "1w",
            "1hm",
            "99999999999999999999d",
            "١h",
            "1é",
        ] {
            let error = ComparisonWindow::parse(Some(bad)).unwrap_err();
            assert_eq!(error.given, bad, "{bad}");
        }
        assert_eq!(ComparisonWindowError::CODE, "bad_window");
    }

    #[test]
    fn requests_split_by_version_with_error_rates_and_percentiles() {
        let now = 10 * HOUR_MS;
        let window = ComparisonWindow::parse(Some("15m")).unwrap();
        let mut comparison = VersionComparison::new(window, now);
        assert_eq!(
            (comparison.since_ms(), comparison.until_ms()),
            (now - 15 * MINUTE_MS, now)
        );
        // The old version: 20 searches of 10..=200 ms, one a 503.
        for i in 1..=20 {
            let status = if i == 7 { 503 } else { 200 };
            comparison.add(&request(
                now - 1_000,
                "POST /api/search",
                status,
                i * 10,
                "old",
            ));
        }
        // The new version: 4 requests, two 5xx, one 4xx (not an error).
        comparison.add(&request(now - 500, "POST /api/chat", 500, 40, "new"));
        comparison.add(&request(now - 500, "POST /api/chat", 502, 80, "new"));
        comparison.add(&request(now - 500, "POST /api/search", 400, 5, "new"));
        comparison.add(&request(now, "GET /api/health", 200, 20, "new"));
        let report = comparison.report();
        assert_eq!(report.window_ms, 15 * MINUTE_MS);
        assert_eq!(report.since_ms, now - 15 * MINUTE_MS);
        assert_eq!(report.versions.len(), 2);
        let old = &report.versions[0];
        assert_eq!(
            (old.version_id.as_str(), old.requests, old.errors),
            ("old", 20, 1)
        );
        assert!((old.error_rate - 0.05).abs() < 1e-12);
        assert_eq!((old.p50_ms, old.p95_ms), (100.0, 190.0));
        let new = &report.versions[1];
        assert_eq!(
            (new.version_id.as_str(), new.requests, new.errors),
            ("new", 4, 2)
        );
        assert!((new.error_rate - 0.5).abs() < 1e-12);
        assert_eq!((new.p50_ms, new.p95_ms), (20.0, 80.0));
    }

    #[test]
    fn only_public_requests_in_the_window_count() {
        let now = 10 * HOUR_MS;
        let mut comparison =
            VersionComparison::new(ComparisonWindow::parse(Some("1h")).unwrap(), now);
        comparison.add(&request(now - 10, "GET /admin/metrics", 500, 9_000, "v"));
        comparison.add(&request(now - 10, "GET (unrouted)", 404, 1, "v"));
        comparison.add(&request(
            now - 2 * HOUR_MS,
            "POST /api/chat",
            500,
            9_000,
            "v",
        ));
        comparison.add(&request(now + 1, "POST /api/chat", 500, 9_000, "v"));
        comparison.add(
            &DataPoint::step(
                now - 10,
                crate::ingest::pipeline::PipelineStep::Embed,
                super::super::StepOutcome::Permanent,
                "a.md",
                9_000,
            )
            .with_version("v"),
        );
        assert_eq!(comparison.report().versions, Vec::new());

        let mut comparison =
            VersionComparison::new(ComparisonWindow::parse(Some("1h")).unwrap(), now);
        comparison.add(&request(now - 10, "GET /", 200, 3, "v"));
        comparison.add(&request(now - 10, "POST /api/chat (legacy)", 200, 300, "v"));
        comparison.add(&request(now - 10, "POST /api/chat", 200, 30, ""));
        let report = comparison.report();
        assert_eq!(
            report
                .versions
                .iter()
                .map(|v| (v.version_id.as_str(), v.requests))
                .collect::<Vec<_>>(),
            [("v", 2), ("", 1)],
            "points without a version are their own entry"
        );
    }

    #[test]
    fn the_report_serialises_in_the_documented_shape() {
        let mut comparison =
            VersionComparison::new(ComparisonWindow::parse(Some("1m")).unwrap(), 60_000);
        comparison.add(&request(30_000, "GET /api/health", 200, 4, "abc"));
        assert_eq!(
            serde_json::to_value(comparison.report()).unwrap(),
            serde_json::json!({
                "window_ms": 60_000, "since_ms": 0, "until_ms": 60_000,
                "versions": [{ "version_id": "abc", "requests": 1, "errors": 0,
                               "error_rate": 0.0, "p50_ms": 4.0, "p95_ms": 4.0 }]
            })
        );
    }
}
