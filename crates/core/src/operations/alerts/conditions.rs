//! Which alert conditions hold, from one snapshot of the service: the
//! requests of the last window (from the metrics), failed, stuck and
//! dead-lettered documents, the latest reconciliation run and each
//! provider's latest call. Thresholds come from `ALERT_*` vars.

use super::machine::{AlertKind, Observation, Observations};
use crate::operations::availability::{fast_burn, BurnWindows, Objective};

const MINUTE_MS: u64 = 60_000;

/// Most failed documents alerted on one by one; with more, the ones past
/// the cap are not alerted and none of them is resolved until the list fits.
pub const MAX_FAILED_DOCUMENTS: usize = 50;

/// The thresholds (`ALERT_*` vars).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlertSettings {
    /// `ALERT_WINDOW_MINUTES`: the window of the request and dead-letter conditions.
    pub window_ms: u64,
    /// `ALERT_ERROR_RATE_PERCENT`: fires above this share of 5xx answers.
    pub error_rate_percent: u32,
    /// `ALERT_MIN_REQUESTS`: fewer requests in the window say nothing about rates or latency.
    pub min_requests: u32,
    /// `ALERT_P95_MS`: fires when the window's p95 latency is above this.
    pub p95_ms: u64,
    /// `ALERT_STUCK_MINUTES`: a document queued or processing for longer is stuck.
    pub stuck_after_ms: u64,
    /// `ALERT_DEAD_LETTERS`: fires when more dead letters than this arrive in the window.
    pub dead_letters: u32,
    /// `ALERT_RECONCILE_ENQUEUED`: fires when the latest reconciliation enqueued more.
    pub reconcile_enqueued: u32,
    /// `SLO_AVAILABILITY_PERCENT`: the objective whose budget must not burn fast.
    pub availability: Objective,
}

impl Default for AlertSettings {
    fn default() -> Self {
        Self {
            window_ms: 5 * MINUTE_MS,
            error_rate_percent: 5,
            min_requests: 20,
            p95_ms: 5_000,
            stuck_after_ms: 30 * MINUTE_MS,
            dead_letters: 0,
            reconcile_enqueued: 50,
            availability: Objective::default(),
        }
    }
}

/// Requests answered in the window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RequestWindow {
    /// Requests.
    pub total: u64,
    /// 5xx answers.
    pub errors: u64,
    /// p95 latency (ms), `None` without requests.
    pub p95_ms: Option<f64>,
}

/// A document whose last run failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedDocument {
    /// Its key.
    pub key: String,
    /// Its last error.
    pub error: Option<String>,
}

/// Documents queued or processing for longer than the stuck threshold.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StuckDocuments {
    /// How many.
    pub count: u64,
    /// The one waiting longest, and since when (ms since the epoch).
    pub oldest: Option<(String, u64)>,
}

/// The latest reconciliation run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReconcileFacts {
    /// Its id.
    pub run_id: u64,
    /// Documents it enqueued (so far, while it runs).
    pub enqueued: u64,
}

/// A provider's latest call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderCall {
    /// `openai`, `workers-ai`, `offline`.
    pub provider: String,
    /// The HTTP status it was refused with (0: not refused).
    pub status: u16,
    /// When it was made.
    pub at_ms: u64,
}

/// What the conditions are judged on. `None` for a part that could not be
/// read: its conditions are not evaluated (nothing fires or resolves).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AlertSnapshot {
    /// When it was taken.
    pub now_ms: u64,
    /// Requests of the last window.
    pub requests: Option<RequestWindow>,
    /// Documents whose last run failed, at most `MAX_FAILED_DOCUMENTS + 1`.
    pub failed_documents: Option<Vec<FailedDocument>>,
    /// Documents in flight for too long.
    pub stuck: Option<StuckDocuments>,
    /// Dead letters received in the last window.
    pub dead_letters_in_window: Option<u64>,
    /// The latest reconciliation run (`Some(None)`: there is none).
    pub latest_reconcile: Option<Option<ReconcileFacts>>,
    /// Each provider's latest call.
    pub providers: Option<Vec<ProviderCall>>,
    /// Public requests over the windows of each fast-burn rule
    /// (`crate::operations::availability::FAST_BURN`, same order).
    pub burn: Option<[BurnWindows; 2]>,
}

fn minutes(ms: u64) -> u64 {
    ms / MINUTE_MS
}

fn clipped(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_owned()
    } else {
        let cut: String = text.chars().take(max).collect();
        format!("{cut}…")
    }
}

/// The conditions that hold in `snapshot`.
#[must_use]
pub fn observe(snapshot: &AlertSnapshot, settings: &AlertSettings) -> Observations {
    let mut observed = Observations::default();
    let window = minutes(settings.window_ms);
    let mut active = |kind: AlertKind, key: String, message: String| {
        observed.active.push(Observation { key, kind, message });
    };
    if let Some(requests) = snapshot.requests {
        let enough = requests.total >= u64::from(settings.min_requests);
        if enough && requests.errors * 100 > u64::from(settings.error_rate_percent) * requests.total
        {
            active(
                AlertKind::ErrorRate,
                AlertKind::ErrorRate.as_str().into(),
                format!(
                    "{} of {} requests ({:.1} %) answered 5xx in the last {window} min (threshold {} %)",
                    requests.errors,
                    requests.total,
                    requests.errors as f64 * 100.0 / requests.total as f64,
                    settings.error_rate_percent
                ),
            );
        }
        match requests.p95_ms {
            Some(p95) if enough && p95 > settings.p95_ms as f64 => active(
                AlertKind::LatencyP95,
                AlertKind::LatencyP95.as_str().into(),
                format!(
                    "p95 latency {p95:.0} ms over {} requests in the last {window} min (threshold {} ms)",
                    requests.total, settings.p95_ms
                ),
            ),
            _ => {}
        }
    }
    if let Some(failed) = &snapshot.failed_documents {
        for document in failed.iter().take(MAX_FAILED_DOCUMENTS) {
            let error = document.error.as_deref().unwrap_or("no error recorded");
            active(
                AlertKind::DocumentFailed,
                format!("{}:{}", AlertKind::DocumentFailed.as_str(), document.key),
                format!(
                    "{} failed permanently: {}",
                    document.key,
                    clipped(error, 300)
                ),
            );
        }
    }
    if let Some(stuck) = &snapshot.stuck {
        if stuck.count > 0 {
            let oldest = stuck.oldest.as_ref().map_or(String::new(), |(key, since)| {
                format!(
                    "; oldest {key}, for {} min",
                    minutes(snapshot.now_ms.saturating_sub(*since))
                )
            });
            active(
                AlertKind::StuckDocuments,
                AlertKind::StuckDocuments.as_str().into(),
                format!(
                    "{} documents queued or processing for more than {} min{oldest}",
                    stuck.count,
                    minutes(settings.stuck_after_ms)
                ),
            );
        }
    }
    if let Some(letters) = snapshot.dead_letters_in_window {
        if letters > u64::from(settings.dead_letters) {
            active(
                AlertKind::DeadLetters,
                AlertKind::DeadLetters.as_str().into(),
                format!(
                    "{letters} dead letters in the last {window} min (threshold {}); GET /admin/dead-letters",
                    settings.dead_letters
                ),
            );
        }
    }
    if let Some(Some(run)) = &snapshot.latest_reconcile {
        if run.enqueued > u64::from(settings.reconcile_enqueued) {
            active(
                AlertKind::ReconcileEnqueued,
                AlertKind::ReconcileEnqueued.as_str().into(),
                format!(
                    "reconciliation run {} enqueued {} documents (threshold {})",
                    run.run_id, run.enqueued, settings.reconcile_enqueued
                ),
            );
        }
    }
    if let Some(providers) = &snapshot.providers {
        for call in providers.iter().filter(|c| matches!(c.status, 401 | 403)) {
            active(
                AlertKind::ProviderAuth,
                format!("{}:{}", AlertKind::ProviderAuth.as_str(), call.provider),
                format!(
                    "{} refused its latest call with HTTP {}: is its API key revoked?",
                    call.provider, call.status
                ),
            );
        }
    }
    if let Some(windows) = &snapshot.burn {
        let objective = settings.availability;
        if let Some(burn) = fast_burn(objective, windows, u64::from(settings.min_requests)) {
            active(
                AlertKind::AvailabilityBurn,
                AlertKind::AvailabilityBurn.as_str().into(),
                format!(
                    "the {} % availability budget is burning {:.1}x too fast over the last {} min \
                     ({:.1}x over the last {} min, {} requests); at this pace a 30-day budget \
                     lasts {:.1} days",
                    objective.percent(),
                    burn.long_rate,
                    minutes(burn.rule.long_ms),
                    burn.short_rate,
                    minutes(burn.rule.short_ms),
                    burn.requests,
                    30.0 / burn.long_rate
                ),
            );
        }
    }
    let evaluated = [
        (AlertKind::ErrorRate, snapshot.requests.is_some()),
        (AlertKind::LatencyP95, snapshot.requests.is_some()),
        (
            AlertKind::DocumentFailed,
            snapshot
                .failed_documents
                .as_ref()
                .is_some_and(|f| f.len() <= MAX_FAILED_DOCUMENTS),
        ),
        (AlertKind::StuckDocuments, snapshot.stuck.is_some()),
        (
            AlertKind::DeadLetters,
            snapshot.dead_letters_in_window.is_some(),
        ),
        (
            AlertKind::ReconcileEnqueued,
            snapshot.latest_reconcile.is_some(),
        ),
        (AlertKind::ProviderAuth, snapshot.providers.is_some()),
        (AlertKind::AvailabilityBurn, snapshot.burn.is_some()),
    ];
    observed.complete = evaluated
        .into_iter()
        .filter(|(_, done)| *done)
        .map(|(kind, _)| kind)
        .collect();
    observed
}
