use super::*;
use crate::ingest::pipeline::{PipelineStep, RunOutcome, RunReason, RunRecord, StepError};
use crate::operations::metrics::StepOutcome;

#[test]
fn nearest_rank_percentiles() {
    let values: Vec<f64> = (1..=100).map(f64::from).collect();
    assert_eq!(percentile(&values, 50.0), Some(50.0));
    assert_eq!(percentile(&values, 95.0), Some(95.0));
    assert_eq!(percentile(&values, 99.0), Some(99.0));
    assert_eq!(percentile(&values, 100.0), Some(100.0));
    assert_eq!(percentile(&values, 0.0), Some(1.0));
    assert_eq!(percentile(&[7.0], 99.0), Some(7.0));
    assert_eq!(percentile(&[], 50.0), None);
    // Ten values: p95 is the 10th (ceil(9.5)), p50 the 5th.
    let ten: Vec<f64> = (1..=10).map(|v| f64::from(v) * 10.0).collect();
    assert_eq!(percentile(&ten, 50.0), Some(50.0));
    assert_eq!(percentile(&ten, 95.0), Some(100.0));
}

#[test]
fn windows_parse_and_refuse() {
    assert_eq!(MetricsWindow::parse(None), Ok(MetricsWindow::Hour));
    assert_eq!(MetricsWindow::parse(Some("24h")), Ok(MetricsWindow::Day));
    assert_eq!(MetricsWindow::parse(Some("7d")), Ok(MetricsWindow::Week));
    for bad in ["", "1d", "60m", "7D", "1h ", "-1h"] {
        let error = MetricsWindow::parse(Some(bad)).unwrap_err();
        assert_eq!(error.given, bad);
    }
    assert_eq!(MetricsWindow::Week.duration_ms(), 604_800_000);
}

#[test]
fn requests_fold_into_route_percentiles_and_error_rates() {
    let now = 10 * HOUR_MS;
    let mut summary = MetricsSummary::for_window(MetricsWindow::Hour, now);
    for ms in 1..=20 {
        summary.add(&DataPoint::request(
            now - 1_000,
            "POST /api/search",
            200,
            ms * 10,
        ));
    }
    summary.add(&DataPoint::request(now - 1_000, "POST /api/chat", 503, 40));
    summary.add(&DataPoint::request(now - 1_000, "POST /api/chat", 200, 60));
    summary.add(&DataPoint::request(now - 1_000, "POST /api/chat", 404, 5));
    // Outside the window: ignored.
    summary.add(&DataPoint::request(
        now - 2 * HOUR_MS,
        "POST /api/chat",
        500,
        1,
    ));
    let report = summary.report();
    assert_eq!(report.points, 23);
    assert_eq!((report.requests.total, report.requests.errors), (23, 1));
    assert!((report.requests.error_rate - 1.0 / 23.0).abs() < 1e-12);
    let chat = &report.requests.routes[0];
    assert_eq!(
        (chat.route.as_str(), chat.count, chat.errors),
        ("POST /api/chat", 3, 1)
    );
    assert!((chat.error_rate - 1.0 / 3.0).abs() < 1e-12);
    assert_eq!(chat.p50_ms, Some(40.0));
    assert_eq!(chat.by_status.get("404"), Some(&1));
    let search = &report.requests.routes[1];
    assert_eq!(search.count, 20);
    assert_eq!(search.error_rate, 0.0);
    assert_eq!(
        (search.p50_ms, search.p95_ms, search.p99_ms),
        (Some(100.0), Some(190.0), Some(200.0))
    );
}

fn run(outcome: RunOutcome, chunks: u32, retries: u32, error: Option<StepError>) -> RunRecord {
    RunRecord {
        generation: 1,
        reason: RunReason::ObjectEvent,
        object: None,
        force: false,
        outcome,
        queued_at_ms: 1_000,
        started_at_ms: Some(1_000),
        finished_at_ms: 2_000,
        steps: vec![crate::ingest::pipeline::StepTiming {
            step: PipelineStep::Download,
            started_at_ms: 1_000,
            finished_at_ms: Some(2_000),
            attempts: 1 + retries,
        }],
        sha256: None,
        chunk_count: Some(chunks),
        attempts: 1 + retries,
        retries,
        error,
    }
}

#[test]
fn ingestion_counts_rates_failures_and_step_durations() {
    let mut summary = MetricsSummary::new("1h", 0, HOUR_MS);
    summary.add(&DataPoint::run(
        "a.md",
        &run(RunOutcome::Committed, 30, 1, None),
    ));
    summary.add(&DataPoint::run(
        "b.md",
        &run(RunOutcome::Committed, 30, 0, None),
    ));
    summary.add(&DataPoint::run(
        "c.md",
        &run(RunOutcome::Unchanged, 0, 0, None),
    ));
    summary.add(&DataPoint::run(
        "d.md",
        &run(RunOutcome::Failed, 0, 2, Some(StepError::retryable("503"))),
    ));
    for (outcome, ms) in [
        (StepOutcome::Ok, 10),
        (StepOutcome::Retryable, 30),
        (StepOutcome::Ok, 20),
    ] {
        summary.add(&DataPoint::step(
            5,
            PipelineStep::Embed,
            outcome,
            "a.md",
            ms,
        ));
    }
    let report = summary.report().ingestion;
    assert_eq!(report.runs, 4);
    assert_eq!(report.by_outcome.get("ready"), Some(&2));
    assert_eq!(report.documents_ready, 2);
    assert!((report.documents_per_minute - 2.0 / 60.0).abs() < 1e-12);
    assert_eq!(report.chunks, 60);
    assert!((report.chunks_per_second - 60.0 / 3_600.0).abs() < 1e-12);
    assert_eq!(report.retries, 3);
    assert_eq!(
        report.failures_by_reason.get("download: out of attempts"),
        Some(&1)
    );
    let embed = &report.steps[0];
    assert_eq!((embed.attempts, embed.errors), (3, 1));
    assert_eq!((embed.p50_ms, embed.p95_ms), (Some(20.0), Some(30.0)));
}

#[test]
fn provider_calls_sum_tokens_cost_and_refusals() {
    let mut summary = MetricsSummary::new("1h", 0, HOUR_MS);
    summary.add(&DataPoint::provider_call(
        1, "openai", "embed", true, None, 4, 100, 0.002, 30,
    ));
    summary.add(&DataPoint::provider_call(
        2,
        "openai",
        "embed",
        false,
        Some(401),
        4,
        100,
        0.002,
        10,
    ));
    summary.add(&DataPoint::provider_call(
        3, "offline", "chat", true, None, 1, 50, 0.0, 1,
    ));
    let providers = summary.report().providers;
    assert_eq!(providers.len(), 2);
    let openai = &providers[1];
    assert_eq!(
        (openai.provider.as_str(), openai.operation.as_str()),
        ("openai", "embed")
    );
    assert_eq!((openai.calls, openai.errors, openai.tokens), (2, 1, 200));
    assert!((openai.estimated_cost_usd - 0.004).abs() < 1e-12);
    assert_eq!(openai.refusals.get("401"), Some(&1));
    assert_eq!(providers[0].estimated_cost_usd, 0.0);
}
