//! The SQL the Analytics Engine reader sends: a few shapes of one grouped
//! `SELECT` over the dataset, built from typed parts so that every value in
//! the text is a number, a known column or a quoted label.
//!
//! Dialect facts, each from Cloudflare's pages:
//! - `[api]` <https://developers.cloudflare.com/analytics/analytics-engine/sql-api/>: columns `timestamp`
//!   (DateTime), `_sample_interval`, `index1`, `blob1..20`, `double1..20`;
//!   counts are `SUM(_sample_interval)`, sums `SUM(_sample_interval * x)`.
//! - `[agg]` <https://developers.cloudflare.com/analytics/analytics-engine/sql-reference/aggregate-functions/>: `sum`, `max`, `argMax`,
//!   `quantileExactWeighted(q)(column, _sample_interval)`.
//! - `[stmt]` <https://developers.cloudflare.com/analytics/analytics-engine/sql-reference/statements/>: `SELECT … FROM <table> WHERE …
//!   GROUP BY … FORMAT JSON`; expressions such as `if(cond, a, b)`.
//! - `[time]` <https://developers.cloudflare.com/analytics/analytics-engine/sql-reference/date-time-functions/>: `toDateTime(<unix
//!   seconds>)`, `toUnixTimestamp`, `formatDateTime(t, '%Y-%m-%d')`.
//! - `[ops]` <https://developers.cloudflare.com/analytics/analytics-engine/sql-reference/operators/>: comparisons, `AND`, `IN (…)`.
//!
//! The tests' stand-in (tests/standins/analytics-engine.js) parses exactly
//! these shapes and refuses any other, so a change here fails the tests
//! until the stand-in learns it.

use crate::operations::metrics::MetricKind;
use std::fmt::Write as _;

/// A column of the dataset (`[api]`), in the layout of
/// `crates/worker/src/store/analytics_engine.rs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Column {
    /// `blob2`: the point's name (route, step, provider).
    Name,
    /// `blob3`: the outcome.
    Outcome,
    /// `blob4`: the detail.
    Detail,
    /// `blob5`: the Worker version.
    Version,
    /// `double1`: duration (ms).
    Duration,
    /// `double2`: HTTP status.
    Status,
    /// `double3`: items.
    Items,
    /// `double4`: tokens.
    Tokens,
    /// `double5`: retries.
    Retries,
    /// `double6`: cost (USD).
    Cost,
    /// `double7`: enqueued.
    Enqueued,
}

impl Column {
    fn sql(self) -> &'static str {
        match self {
            Self::Name => "blob2",
            Self::Outcome => "blob3",
            Self::Detail => "blob4",
            Self::Version => "blob5",
            Self::Duration => "double1",
            Self::Status => "double2",
            Self::Items => "double3",
            Self::Tokens => "double4",
            Self::Retries => "double5",
            Self::Cost => "double6",
            Self::Enqueued => "double7",
        }
    }

    /// The name the answer's rows use for it.
    #[must_use]
    pub fn alias(self) -> &'static str {
        match self {
            Self::Name => "name",
            Self::Outcome => "outcome",
            Self::Detail => "detail",
            Self::Version => "version",
            Self::Duration => "duration_ms",
            Self::Status => "status",
            Self::Items => "items",
            Self::Tokens => "tokens",
            Self::Retries => "retries",
            Self::Cost => "cost_usd",
            Self::Enqueued => "enqueued",
        }
    }
}

/// One aggregate of a group, every one weighted by `_sample_interval`
/// (Analytics Engine samples; `[api]`, "Sampling").
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Measure {
    /// `n`: points represented.
    Count,
    /// `errors`: points with status ≥ 500.
    Errors,
    /// The column's weighted sum, under the column's alias.
    Sum(Column),
    /// The duration at quantile `q` (0–1) by weight, as `alias`.
    Quantile(f64, &'static str),
    /// `status` of the group's latest point.
    LatestStatus,
    /// `at`: the group's latest point (unix seconds).
    LatestAt,
    /// `requests_<i>` / `errors_<i>`: the count and errors since `since_s`.
    CountSince(usize, u64),
}

/// One condition of the `WHERE` clause (joined with `AND`).
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    /// `timestamp >= toDateTime(s)`.
    Since(u64),
    /// `timestamp <= toDateTime(s)`.
    Until(u64),
    /// `blob2 IN (…)`.
    NameIn(Vec<String>),
}

/// A key a group is formed by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    /// A column.
    Column(Column),
    /// `day`: the point's UTC day, `YYYY-MM-DD`.
    Day,
}

/// One `SELECT` over the points of one kind.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    /// `index1` (the kind: Analytics Engine samples per index, `[api]`).
    pub kind: MetricKind,
    /// `GROUP BY` keys (none: one row for the whole selection).
    pub keys: Vec<Key>,
    /// What each group answers.
    pub measures: Vec<Measure>,
    /// Conditions besides the kind.
    pub filters: Vec<Filter>,
}

/// `text` as a single-quoted SQL string literal (`\` and `'` escaped, as
/// ClickHouse string literals take them; the service's labels are ASCII
/// route templates, provider names and version ids).
fn quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('\'');
    for c in text.chars() {
        if matches!(c, '\\' | '\'') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('\'');
    out
}

/// A quantile level as written (`0.5`, `0.95`, `0.99`).
fn level(q: f64) -> String {
    let text = format!("{q}");
    if text.contains('.') {
        text
    } else {
        format!("{text}.0")
    }
}

impl Query {
    /// A query of `kind` between `since_s` and `until_s` (unix seconds, inclusive).
    #[must_use]
    pub fn window(kind: MetricKind, since_s: u64, until_s: u64) -> Self {
        Self {
            kind,
            keys: Vec::new(),
            measures: Vec::new(),
            filters: vec![Filter::Since(since_s), Filter::Until(until_s)],
        }
    }

    /// Grouped by `keys`.
    #[must_use]
    pub fn by(mut self, keys: &[Key]) -> Self {
        self.keys.extend_from_slice(keys);
        self
    }

    /// Answering `measures`.
    #[must_use]
    pub fn measuring(mut self, measures: &[Measure]) -> Self {
        self.measures.extend_from_slice(measures);
        self
    }

    /// With one more condition.
    #[must_use]
    pub fn filtered(mut self, filter: Filter) -> Self {
        self.filters.push(filter);
        self
    }

    /// The statement over `dataset` (a name [`crate::config`] checked to be
    /// an identifier).
    #[must_use]
    pub fn sql(&self, dataset: &str) -> String {
        let mut select: Vec<String> = self
            .keys
            .iter()
            .map(|key| match key {
                Key::Column(c) => format!("{} AS {}", c.sql(), c.alias()),
                Key::Day => "formatDateTime(timestamp, '%Y-%m-%d') AS day".to_owned(),
            })
            .collect();
        for measure in &self.measures {
            select.push(match measure {
                Measure::Count => "sum(_sample_interval) AS n".to_owned(),
                Measure::Errors => {
                    "sum(if(double2 >= 500, _sample_interval, 0)) AS errors".to_owned()
                }
                Measure::Sum(c) => format!("sum(_sample_interval * {}) AS {}", c.sql(), c.alias()),
                Measure::Quantile(q, alias) => format!(
                    "quantileExactWeighted({})(double1, _sample_interval) AS {alias}",
                    level(*q)
                ),
                Measure::LatestStatus => "argMax(double2, timestamp) AS status".to_owned(),
                Measure::LatestAt => "toUnixTimestamp(max(timestamp)) AS at".to_owned(),
                Measure::CountSince(i, since) => format!(
                    "sum(if(timestamp >= toDateTime({since}), _sample_interval, 0)) AS requests_{i}, \
                     sum(if(timestamp >= toDateTime({since}) AND double2 >= 500, _sample_interval, 0)) AS errors_{i}"
                ),
            });
        }
        let mut sql = format!(
            "SELECT {} FROM {dataset} WHERE index1 = {}",
            select.join(", "),
            quoted(self.kind.as_str())
        );
        for filter in &self.filters {
            match filter {
                Filter::Since(s) => {
                    let _ = write!(sql, " AND timestamp >= toDateTime({s})");
                }
                Filter::Until(s) => {
                    let _ = write!(sql, " AND timestamp <= toDateTime({s})");
                }
                Filter::NameIn(names) => {
                    let list: Vec<String> = names.iter().map(|n| quoted(n)).collect();
                    let _ = write!(sql, " AND blob2 IN ({})", list.join(", "));
                }
            }
        }
        if !self.keys.is_empty() {
            let keys: Vec<&str> = self
                .keys
                .iter()
                .map(|k| match k {
                    Key::Column(c) => c.alias(),
                    Key::Day => "day",
                })
                .collect();
            let _ = write!(sql, " GROUP BY {}", keys.join(", "));
        }
        sql.push_str(" FORMAT JSON");
        sql
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_grouped_query_reads_as_the_dialect_writes_it() {
        let sql = Query::window(MetricKind::Request, 100, 200)
            .by(&[Key::Column(Column::Name), Key::Column(Column::Status)])
            .measuring(&[Measure::Count, Measure::Quantile(0.95, "p95")])
            .filtered(Filter::NameIn(vec![
                "GET /api/health".into(),
                "it's".into(),
            ]))
            .sql("portfolio_metrics");
        assert_eq!(
            sql,
            "SELECT blob2 AS name, double2 AS status, sum(_sample_interval) AS n, \
             quantileExactWeighted(0.95)(double1, _sample_interval) AS p95 FROM portfolio_metrics \
             WHERE index1 = 'request' AND timestamp >= toDateTime(100) AND timestamp <= toDateTime(200) \
             AND blob2 IN ('GET /api/health', 'it\\'s') GROUP BY name, status FORMAT JSON"
        );
    }

    #[test]
    fn an_ungrouped_query_has_no_group_by_and_levels_keep_a_point() {
        let sql = Query::window(MetricKind::Reconcile, 1, 2)
            .measuring(&[Measure::Quantile(1.0, "max")])
            .sql("d");
        assert!(sql.contains("quantileExactWeighted(1.0)"), "{sql}");
        assert!(!sql.contains("GROUP BY"), "{sql}");
    }
}
