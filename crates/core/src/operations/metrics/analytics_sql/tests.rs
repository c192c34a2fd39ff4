//! The reader against canned SQL API answers: what it sends (address, token,
//! statements) and how it folds the rows, weights included.

use super::*;
use crate::providers::HttpResponse;
use std::cell::RefCell;

/// Answers each statement with the rows of the first rule whose text it contains.
struct Canned {
    rules: Vec<(&'static str, u16, String)>,
    sent: RefCell<Vec<HttpRequest>>,
}

impl Canned {
    fn new(rules: Vec<(&'static str, u16, String)>) -> Self {
        Self {
            rules,
            sent: RefCell::new(Vec::new()),
        }
    }
}

impl HttpTransport for Canned {
    async fn send(&self, req: HttpRequest) -> Result<HttpResponse, TransportError> {
        let sql = String::from_utf8_lossy(&req.body).into_owned();
        self.sent.borrow_mut().push(req);
        let (status, body) = self
            .rules
            .iter()
            .find(|(needle, _, _)| sql.contains(needle))
            .map_or(
                (200, r#"{"meta":[],"data":[],"rows":0}"#.to_owned()),
                |(_, s, b)| (*s, b.clone()),
            );
        Ok(HttpResponse {
            status,
            headers: Vec::new(),
            body: body.into_bytes(),
        })
    }
}

fn data(rows: serde_json::Value) -> String {
    serde_json::json!({ "meta": [], "data": rows, "rows": 0 }).to_string()
}

fn reader(canned: Canned) -> AnalyticsSqlReader<Canned> {
    AnalyticsSqlReader::new(
        canned,
        AnalyticsSqlEndpoint::new(
            "https://api.example",
            "0123456789abcdef0123456789abcdef",
            "metrics_ds",
            "tok-1",
        ),
    )
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    futures_util::FutureExt::now_or_never(f).expect("the canned transport never waits")
}

#[test]
fn a_report_weights_counts_by_the_sample_interval_and_keeps_sql_percentiles() {
    let canned = Canned::new(vec![
        (
            "AS name, double2 AS status, sum(_sample_interval) AS n FROM metrics_ds WHERE index1 = 'request'",
            200,
            // Counts come quoted (64-bit integers) or bare: both are read.
            data(serde_json::json!([
                { "name": "POST /api/search", "status": 200, "n": "30" },
                { "name": "POST /api/search", "status": 503, "n": 10 },
            ])),
        ),
        (
            "AS p95, quantileExactWeighted(0.99)(double1, _sample_interval) AS p99 FROM metrics_ds WHERE index1 = 'request' AND timestamp >= toDateTime(32400) AND timestamp <= toDateTime(36000) GROUP BY name",
            200,
            data(serde_json::json!([{ "name": "POST /api/search", "p50": 12.0, "p95": 40.0, "p99": 90.0 }])),
        ),
        (
            "SELECT quantileExactWeighted(0.5)",
            200,
            data(serde_json::json!([{ "p50": 12.0, "p95": 40.0, "p99": 90.0 }])),
        ),
        (
            "index1 = 'run'",
            200,
            data(serde_json::json!([
                { "outcome": "ready", "detail": "", "n": "4", "items": 40.0, "retries": 2.0 },
                { "outcome": "failed", "detail": "embed: permanent", "n": "1", "items": 0, "retries": 0 },
            ])),
        ),
    ]);
    let reader = reader(canned);
    let now = 10 * 3_600_000;
    let (report, rows) = block_on(reader.report(MetricsWindow::Hour, now)).expect("read");
    assert_eq!(report.requests.total, 40);
    assert_eq!(report.requests.errors, 10);
    assert!((report.requests.error_rate - 0.25).abs() < 1e-12);
    assert_eq!(report.requests.p95_ms, Some(40.0));
    let route = &report.requests.routes[0];
    assert_eq!(
        (route.count, route.errors, route.p99_ms),
        (40, 10, Some(90.0))
    );
    assert_eq!(route.by_status.get("503"), Some(&10));
    assert_eq!(report.ingestion.runs, 5);
    assert_eq!(report.ingestion.documents_ready, 4);
    assert_eq!(report.ingestion.chunks, 40);
    assert_eq!(
        report.ingestion.failures_by_reason.get("embed: permanent"),
        Some(&1)
    );
    assert_eq!(report.points, 45);
    assert_eq!(rows, 6);
    let sent = reader.transport.sent.borrow();
    assert_eq!(sent.len(), 10, "one statement per figure family");
    for request in sent.iter() {
        assert_eq!(
            request.url,
            "https://api.example/accounts/0123456789abcdef0123456789abcdef/analytics_engine/sql"
        );
        assert!(request
            .headers
            .contains(&("authorization".into(), "Bearer tok-1".into())));
        let sql = String::from_utf8_lossy(&request.body);
        assert!(
            sql.contains(&format!("timestamp >= toDateTime({})", now / 1_000 - 3_600)),
            "{sql}"
        );
        assert!(sql.ends_with("FORMAT JSON"), "{sql}");
    }
}

#[test]
fn a_window_without_points_reports_no_percentiles() {
    let reader = reader(Canned::new(vec![(
        "SELECT quantileExactWeighted(0.5)",
        200,
        // ClickHouse answers a quantile over no rows with nan or 0.
        data(serde_json::json!([{ "p50": 0, "p95": 0, "p99": 0 }])),
    )]));
    let (report, _) = block_on(reader.report(MetricsWindow::Day, 86_400_000)).expect("read");
    assert_eq!(report.requests.total, 0);
    assert_eq!(report.requests.p95_ms, None);
    assert_eq!(report.reconciliation.p95_page_ms, None);
}

#[test]
fn versions_and_alerts_count_only_their_routes() {
    let reader = reader(Canned::new(vec![
        (
            "GROUP BY name FORMAT JSON",
            200,
            data(serde_json::json!([
                { "name": "POST /api/search", "n": "3" },
                { "name": "GET /admin/metrics", "n": "9" },
                { "name": "GET (unrouted)", "n": "2" },
            ])),
        ),
        (
            "GROUP BY version",
            200,
            data(serde_json::json!([
                { "version": "v-old", "n": "1", "errors": "0", "p50": 5.0, "p95": 5.0 },
                { "version": "v-new", "n": "2", "errors": "1", "p50": 7.0, "p95": 9.0 },
            ])),
        ),
        (
            "AS errors, quantileExactWeighted(0.95)",
            200,
            data(serde_json::json!([{ "n": "5", "errors": "1", "p95": 30.0 }])),
        ),
    ]));
    let window = ComparisonWindow::parse(Some("15m")).expect("window");
    let (report, _) = block_on(reader.versions(window, 3_600_000)).expect("versions");
    assert_eq!(report.versions[0].version_id, "v-new");
    assert!((report.versions[0].error_rate - 0.5).abs() < 1e-12);
    let requests = block_on(reader.requests(0, 3_600_000)).expect("requests");
    assert_eq!(
        (requests.total, requests.errors, requests.p95_ms),
        (5, 1, Some(30.0))
    );
    let sent = reader.transport.sent.borrow();
    let version_sql = String::from_utf8_lossy(&sent[1].body).into_owned();
    assert!(
        version_sql.contains("blob2 IN ('POST /api/search')"),
        "{version_sql}"
    );
    let alert_sql = String::from_utf8_lossy(&sent[3].body).into_owned();
    assert!(
        alert_sql.contains("blob2 IN ('POST /api/search', 'GET (unrouted)')"),
        "alerts weigh every route but the operator's: {alert_sql}"
    );
}

#[test]
fn refusals_and_unreadable_answers_are_named() {
    let refused = reader(Canned::new(vec![("SELECT", 401, "{}".into())]));
    assert_eq!(
        block_on(refused.latest_provider_calls()),
        Err(MetricsReadError::Unauthorized { status: 401 })
    );
    let broken = reader(Canned::new(vec![(
        "SELECT",
        422,
        "unknown column blob99".into(),
    )]));
    let err = block_on(broken.latest_provider_calls()).unwrap_err();
    assert_eq!(err.http_status(), 502);
    assert!(err.to_string().contains("unknown column blob99"), "{err}");
    let garbled = reader(Canned::new(vec![("SELECT", 200, "<html>".into())]));
    assert!(matches!(
        block_on(garbled.latest_provider_calls()),
        Err(MetricsReadError::Malformed(_))
    ));
}

#[test]
fn burn_windows_and_days_read_their_columns() {
    let reader = reader(Canned::new(vec![
        (
            "GROUP BY name FORMAT JSON",
            200,
            data(serde_json::json!([{ "name": "POST /api/search", "n": "3" }])),
        ),
        (
            "AS requests_0",
            200,
            data(serde_json::json!([{
                "requests_0": "10", "errors_0": "2", "requests_1": "4", "errors_1": "1",
                "requests_2": "30", "errors_2": "3", "requests_3": "8", "errors_3": "0"
            }])),
        ),
        (
            "GROUP BY day",
            200,
            data(serde_json::json!([
                { "day": "2026-12-07", "n": "5", "errors": "1" },
                { "day": "2026-12-06", "n": "2", "errors": "0" },
            ])),
        ),
    ]));
    let [first, second] = block_on(reader.burn_windows(7 * 3_600_000)).expect("burn");
    assert_eq!((first.long.requests, first.short.errors), (10, 1));
    assert_eq!((second.long.errors, second.short.requests), (3, 8));
    let days = block_on(reader.public_days(0, 3_600_000)).expect("days");
    assert_eq!(days[0].0, "2026-12-06");
    assert_eq!(days[1].1.requests, 5);
}

#[test]
fn the_endpoint_names_the_first_setting_or_secret_missing() {
    let full = AnalyticsSqlSettings {
        account_id: Some("0123456789abcdef0123456789abcdef".into()),
        dataset: Some("portfolio_metrics".into()),
        base_url: "https://sql.example".into(),
    };
    let missing = |settings: &AnalyticsSqlSettings, token| match AnalyticsSqlEndpoint::from_settings(
        settings, token,
    ) {
        Err(MetricsReadError::NotConfigured { missing }) => missing,
        other => panic!("expected NotConfigured, got {other:?}"),
    };
    let no_account = AnalyticsSqlSettings {
        account_id: None,
        ..full.clone()
    };
    assert_eq!(missing(&no_account, None), "ANALYTICS_ENGINE_ACCOUNT_ID");
    let no_dataset = AnalyticsSqlSettings {
        dataset: None,
        ..full.clone()
    };
    assert_eq!(missing(&no_dataset, Some("t")), "METRICS_DATASET");
    assert_eq!(missing(&full, None), ANALYTICS_ENGINE_API_TOKEN);
    assert_eq!(missing(&full, Some("  \n")), ANALYTICS_ENGINE_API_TOKEN);
    let endpoint = AnalyticsSqlEndpoint::from_settings(&full, Some(" token\n")).expect("endpoint");
    assert_eq!(
        endpoint,
        AnalyticsSqlEndpoint::new(
            "https://sql.example",
            "0123456789abcdef0123456789abcdef",
            "portfolio_metrics",
            "token"
        )
    );
}
