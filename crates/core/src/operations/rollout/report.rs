//! What `GET /admin/rollout/report` says per UTC day: the shadow comparisons
//! (the documents the old API's answer cited against the ones our retrieval
//! finds, both latencies, both errors) and the failovers (chats answered here
//! because the old endpoint failed, by reason). Pure: the Worker stores the
//! rows and counts and reads them back.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Days `GET /admin/rollout/report` covers by default, and at most.
pub const REPORT_DAYS: (u32, u32) = (7, 30);

/// The `days` parameter of the report: 1–30, default 7.
///
/// # Errors
/// The message to answer with (400 `bad_days`).
pub fn report_days(value: Option<&str>) -> Result<u32, String> {
    let Some(value) = value else {
        return Ok(REPORT_DAYS.0);
    };
    value
        .parse::<u32>()
        .ok()
        .filter(|d| (1..=REPORT_DAYS.1).contains(d))
        .ok_or_else(|| format!("`days` must be a whole number from 1 to {}", REPORT_DAYS.1))
}

/// Document ids an answer of the old API cites: the `sources` array of its
/// JSON body, or of the first SSE `data:` event that has one. An entry is a
/// string or an object with `key`, `path`, `document` or `id`.
#[must_use]
pub fn legacy_sources(body: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(body);
    let from_value = |value: &serde_json::Value| -> Option<Vec<String>> {
        let sources = value.get("sources")?.as_array()?;
        Some(
            sources
                .iter()
                .filter_map(|s| match s {
                    serde_json::Value::String(id) => Some(id.clone()),
                    serde_json::Value::Object(o) => ["key", "path", "document", "id"]
                        .iter()
                        .find_map(|f| o.get(*f).and_then(|v| v.as_str()).map(str::to_owned)),
                    _ => None,
                })
                .collect(),
        )
    };
    if let Ok(value) = serde_json::from_str::<serde_json::Value>(&text) {
        return from_value(&value).unwrap_or_default();
    }
    text.lines()
        .filter_map(|line| line.strip_prefix("data:"))
        .filter_map(|data| serde_json::from_str::<serde_json::Value>(data.trim()).ok())
        .find_map(|value| from_value(&value))
        .unwrap_or_default()
}

/// Share of the documents either side cited that both cited: |L ∩ O| /
/// max(|L|, |O|) over distinct ids (1 when neither cited anything).
#[must_use]
pub fn overlap(legacy: &[String], ours: &[String]) -> f64 {
    let l: std::collections::BTreeSet<&String> = legacy.iter().collect();
    let o: std::collections::BTreeSet<&String> = ours.iter().collect();
    let larger = l.len().max(o.len());
    if larger == 0 {
        return 1.0;
    }
    #[allow(clippy::cast_precision_loss)]
    let share = l.intersection(&o).count() as f64 / larger as f64;
    share
}

/// One shadowed request, as recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShadowRecord {
    /// When the request arrived (ms since the epoch).
    pub at_ms: u64,
    /// Overlap of cited documents (absent when either side failed).
    pub overlap: Option<f64>,
    /// Until the old API's answer had ended.
    pub legacy_ms: u64,
    /// Our retrieval and answer, in the background.
    pub ours_ms: u64,
    pub legacy_error: Option<String>,
    pub ours_error: Option<String>,
}

/// How the old API's answer ended, as the proxy saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LegacyEnding<'a> {
    /// Its status.
    pub status: u16,
    /// The client read it to its end.
    pub completed: bool,
    /// Its stream failed part-way.
    pub broken: bool,
    /// Its first bytes (where its sources are).
    pub seen: &'a [u8],
}

/// What the old API's answer counts as in a comparison: the documents it
/// cited, or why it has none (an error status, an answer cut short).
pub fn legacy_outcome(ending: LegacyEnding<'_>) -> Result<Vec<String>, String> {
    if ending.status >= 400 {
        Err(format!("status {}", ending.status))
    } else if !ending.completed || ending.broken {
        Err("incomplete".to_owned())
    } else {
        Ok(legacy_sources(ending.seen))
    }
}

impl ShadowRecord {
    /// One shadowed request's comparison: the overlap of the documents
    /// both sides cited, when both answered; each side's time and error.
    #[must_use]
    pub fn compare(
        at_ms: u64,
        legacy: Result<Vec<String>, String>,
        legacy_ms: u64,
        ours: Result<Vec<String>, String>,
        ours_ms: u64,
    ) -> Self {
        Self {
            at_ms,
            overlap: match (&legacy, &ours) {
                (Ok(legacy), Ok(ours)) => Some(overlap(legacy, ours)),
                _ => None,
            },
            legacy_ms,
            ours_ms,
            legacy_error: legacy.err(),
            ours_error: ours.err(),
        }
    }
}

/// Chats failed over on one UTC day for one reason, as counted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailoverCount {
    /// `YYYY-MM-DD` (UTC), [`utc_day`] of when the request arrived.
    pub day: String,
    /// [`super::FailoverReason::label`].
    pub reason: String,
    pub count: u64,
}

/// One day of `GET /admin/rollout/report`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReportDay {
    /// `YYYY-MM-DD` (UTC).
    pub day: String,
    pub shadowed: u64,
    /// Mean overlap over the requests both sides answered.
    pub mean_overlap: Option<f64>,
    pub legacy_p50_ms: Option<u64>,
    pub legacy_p95_ms: Option<u64>,
    pub ours_p50_ms: Option<u64>,
    pub ours_p95_ms: Option<u64>,
    pub legacy_errors: u64,
    pub ours_errors: u64,
    /// Chats answered here because the old endpoint failed before its first
    /// byte (all of them, shadowed or not).
    pub failovers: u64,
    /// The same by reason (`unreachable`, `timeout`, `status 503`, `broken`).
    pub failover_reasons: BTreeMap<String, u64>,
}

/// The UTC calendar day of epoch milliseconds.
#[must_use]
pub fn utc_day(ms: u64) -> String {
    crate::shared::calendar::utc_day(i64::try_from(ms).unwrap_or(i64::MAX))
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted.get(rank - 1).copied()
}

/// Summarises the shadow records and the failover counts per UTC day,
/// newest day first; a day with either appears.
#[must_use]
pub fn daily_report(records: &[ShadowRecord], failovers: &[FailoverCount]) -> Vec<ReportDay> {
    let mut days: BTreeMap<String, (Vec<&ShadowRecord>, BTreeMap<String, u64>)> = BTreeMap::new();
    for r in records {
        days.entry(utc_day(r.at_ms)).or_default().0.push(r);
    }
    for f in failovers {
        *days
            .entry(f.day.clone())
            .or_default()
            .1
            .entry(f.reason.clone())
            .or_default() += f.count;
    }
    days.into_iter()
        .rev()
        .map(|(day, (rows, failover_reasons))| {
            let overlaps: Vec<f64> = rows.iter().filter_map(|r| r.overlap).collect();
            let mut legacy: Vec<u64> = rows
                .iter()
                .filter(|r| r.legacy_error.is_none())
                .map(|r| r.legacy_ms)
                .collect();
            let mut ours: Vec<u64> = rows
                .iter()
                .filter(|r| r.ours_error.is_none())
                .map(|r| r.ours_ms)
                .collect();
            legacy.sort_unstable();
            ours.sort_unstable();
            #[allow(clippy::cast_precision_loss)]
            let mean_overlap = (!overlaps.is_empty())
                .then(|| overlaps.iter().sum::<f64>() / overlaps.len() as f64);
            ReportDay {
                day,
                shadowed: rows.len() as u64,
                mean_overlap,
                legacy_p50_ms: percentile(&legacy, 50.0),
                legacy_p95_ms: percentile(&legacy, 95.0),
                ours_p50_ms: percentile(&ours, 50.0),
                ours_p95_ms: percentile(&ours, 95.0),
                legacy_errors: rows.iter().filter(|r| r.legacy_error.is_some()).count() as u64,
                ours_errors: rows.iter().filter(|r| r.ours_error.is_some()).count() as u64,
                failovers: failover_reasons.values().sum(),
                failover_reasons,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_days_default_to_a_week_and_stop_at_thirty() {
        assert_eq!(report_days(None), Ok(7));
        assert_eq!(report_days(Some("1")), Ok(1));
        assert_eq!(report_days(Some("30")), Ok(30));
        for bad in ["0", "31", "-1", "7d", ""] {
            assert!(report_days(Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn legacy_sources_are_read_from_json_and_sse() {
        let json = br#"{"answer":"A [1]","sources":[{"path":"a.md"},"b.md",{"id":"c"},7]}"#;
        assert_eq!(legacy_sources(json), ["a.md", "b.md", "c"]);
        let sse = b"event: token\ndata: {\"text\":\"A\"}\n\nevent: sources\ndata: {\"sources\":[{\"key\":\"x.md\"}]}\n\ndata: [DONE]\n\n";
        assert_eq!(legacy_sources(sse), ["x.md"]);
        assert!(legacy_sources(b"<html>").is_empty());
        let l = vec!["a".to_owned(), "b".to_owned()];
        let o = vec!["b".to_owned(), "c".to_owned(), "d".to_owned()];
        assert!((overlap(&l, &o) - 1.0 / 3.0).abs() < 1e-12);
        assert!((overlap(&[], &[]) - 1.0).abs() < 1e-12);
    }

    #[test]
    fn reports_summarise_each_day() {
        let day = 1_796_256_000_000; // 2026-12-03T00:00:00Z
        let record = |at_ms, overlap, legacy_ms, ours_ms, ours_error: Option<&str>| ShadowRecord {
            at_ms,
            overlap,
            legacy_ms,
            ours_ms,
            legacy_error: None,
            ours_error: ours_error.map(str::to_owned),
        };
        let rows = vec![
            record(day + 10, Some(1.0), 100, 40, None),
            record(day + 20, Some(0.5), 300, 60, None),
            record(day + 30, None, 200, 900, Some("timeout")),
            record(day - 1, Some(0.0), 50, 50, None),
        ];
        let report = daily_report(&rows, &[]);
        assert_eq!(report.len(), 2);
        assert_eq!(report[0].day, "2026-12-03");
        assert_eq!(report[1].day, "2026-12-02");
        assert_eq!(report[0].shadowed, 3);
        assert_eq!(report[0].mean_overlap, Some(0.75));
        assert_eq!(report[0].legacy_p50_ms, Some(200));
        assert_eq!(report[0].ours_p95_ms, Some(60));
        assert_eq!(report[0].ours_errors, 1);
        assert_eq!(report[0].failovers, 0);
    }

    #[test]
    fn failovers_are_counted_per_day_and_reason_shadowed_or_not() {
        let day = 1_796_256_000_000; // 2026-12-03T00:00:00Z
        let count = |day: &str, reason: &str, count| FailoverCount {
            day: day.to_owned(),
            reason: reason.to_owned(),
            count,
        };
        let rows = [ShadowRecord {
            at_ms: day + 5,
            overlap: Some(1.0),
            legacy_ms: 100,
            ours_ms: 50,
            legacy_error: None,
            ours_error: None,
        }];
        let report = daily_report(
            &rows,
            &[
                count("2026-12-03", "timeout", 2),
                count("2026-12-03", "status 503", 5),
                count("2026-12-01", "unreachable", 7),
            ],
        );
        let days: Vec<(&str, u64, u64)> = report
            .iter()
            .map(|d| (d.day.as_str(), d.shadowed, d.failovers))
            .collect();
        assert_eq!(
            days,
            [("2026-12-03", 1, 7), ("2026-12-01", 0, 7)],
            "a day with failovers only is reported too, newest first"
        );
        assert_eq!(report[0].failover_reasons["status 503"], 5);
        assert_eq!(report[0].failover_reasons["timeout"], 2);
        assert_eq!(report[1].mean_overlap, None);
        assert_eq!(utc_day(day), "2026-12-03");
    }

    #[test]
    fn a_comparison_counts_only_complete_successful_answers() {
        let body = br#"{"answer":"x","sources":[{"key":"a.md"}]}"#;
        let ending = |status, completed, broken| LegacyEnding {
            status,
            completed,
            broken,
            seen: body,
        };
        assert_eq!(
            legacy_outcome(ending(502, true, false)),
            Err("status 502".into())
        );
        assert_eq!(
            legacy_outcome(ending(200, false, false)),
            Err("incomplete".into())
        );
        assert_eq!(
            legacy_outcome(ending(200, true, true)),
            Err("incomplete".into())
        );
        let legacy = legacy_outcome(ending(200, true, false));
        assert_eq!(legacy, Ok(legacy_sources(body)));
        let both = ShadowRecord::compare(5, legacy.clone(), 10, legacy.clone(), 20);
        assert_eq!(both.overlap, Some(1.0));
        assert_eq!((both.legacy_ms, both.ours_ms, both.at_ms), (10, 20, 5));
        let failed = ShadowRecord::compare(5, legacy, 10, Err("bad_query".into()), 20);
        assert_eq!(failed.overlap, None);
        assert_eq!(failed.ours_error.as_deref(), Some("bad_query"));
        assert_eq!(failed.legacy_error, None);
    }
}
