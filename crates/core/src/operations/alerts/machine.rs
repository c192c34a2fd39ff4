//! The alert state machine: a condition observed or cleared becomes fire,
//! resolve or nothing; a stored alert owes its fire notice, then (once
//! resolved) its resolve notice, each until delivered.

use serde::Serialize;
use std::collections::BTreeSet;

/// How long a claimed notice is reserved for the evaluation sending it; past
/// this (the sender died) another evaluation may send it again.
pub const DELIVERY_LEASE_MS: u64 = 60_000;

/// What an alert is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// More than `ALERT_ERROR_RATE_PERCENT` of requests answered 5xx in the window.
    ErrorRate,
    /// The requests' p95 latency in the window is above `ALERT_P95_MS`.
    LatencyP95,
    /// A document's last run failed (one alert per document).
    DocumentFailed,
    /// Documents queued or processing for longer than `ALERT_STUCK_MINUTES`.
    StuckDocuments,
    /// More than `ALERT_DEAD_LETTERS` dead letters arrived in the window.
    DeadLetters,
    /// The latest reconciliation enqueued more than `ALERT_RECONCILE_ENQUEUED` documents.
    ReconcileEnqueued,
    /// A provider's latest call was refused with 401/403 (a revoked key; one per provider).
    ProviderAuth,
    /// The availability objective's error budget is burning fast (both
    /// windows of a fast-burn rule, `crate::operations::availability`).
    AvailabilityBurn,
}

impl AlertKind {
    /// Every kind.
    pub const ALL: [AlertKind; 8] = [
        Self::ErrorRate,
        Self::LatencyP95,
        Self::DocumentFailed,
        Self::StuckDocuments,
        Self::DeadLetters,
        Self::ReconcileEnqueued,
        Self::ProviderAuth,
        Self::AvailabilityBurn,
    ];

    /// Stable name (stored, and the start of every alert key).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ErrorRate => "error_rate",
            Self::LatencyP95 => "latency_p95",
            Self::DocumentFailed => "document_failed",
            Self::StuckDocuments => "stuck_documents",
            Self::DeadLetters => "dead_letters",
            Self::ReconcileEnqueued => "reconcile_enqueued",
            Self::ProviderAuth => "provider_auth",
            Self::AvailabilityBurn => "availability_burn",
        }
    }

    /// The kind named `name`.
    #[must_use]
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

/// Whether an alert's condition still holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertStatus {
    /// The condition holds.
    Firing,
    /// It cleared.
    Resolved,
}

/// One episode of an alert (from firing to resolved), as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AlertRecord {
    /// Row id.
    pub id: u64,
    /// What it is about: the kind, and for per-instance kinds the instance
    /// (`document_failed:companies/acme/a.md`, `provider_auth:openai`).
    pub key: String,
    /// Its kind.
    pub kind: AlertKind,
    /// Firing or resolved.
    pub status: AlertStatus,
    /// What was observed when it fired.
    pub message: String,
    /// When it fired.
    pub fired_at_ms: u64,
    /// When it resolved.
    pub resolved_at_ms: Option<u64>,
    /// When its fire notice was delivered.
    pub fire_sent_at_ms: Option<u64>,
    /// When its resolve notice was delivered.
    pub resolve_sent_at_ms: Option<u64>,
    /// Failed deliveries of the notice owed now.
    pub attempts: u32,
    /// Why the last delivery failed.
    pub last_error: Option<String>,
    /// A delivery in progress holds the notice until then.
    pub claimed_until_ms: u64,
    /// Bumped by every change: the compare-and-set token.
    pub version: u64,
}

/// A condition that holds now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    /// The alert key (see [`AlertRecord::key`]).
    pub key: String,
    /// Its kind.
    pub kind: AlertKind,
    /// What was seen, for people.
    pub message: String,
}

/// One evaluation's view: the conditions that hold, and the kinds that were
/// evaluated in full. An alert of a kind that could not be evaluated (its
/// query failed, its list was cut short) is left as it is, never resolved.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observations {
    /// Conditions that hold.
    pub active: Vec<Observation>,
    /// Kinds whose every instance was looked at: a firing alert of such a
    /// kind that is not in `active` has cleared.
    pub complete: BTreeSet<AlertKind>,
}

/// What one condition does to its alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// Observed, and no alert is firing for it: a new one fires.
    Fire,
    /// Cleared while its alert fires: the alert resolves.
    Resolve,
    /// Still firing, still clear, or not evaluated.
    Nothing,
}

/// The transition of one alert key: `firing` is its firing alert, if any;
/// `observed` whether the condition holds (`None`: not evaluated).
#[must_use]
pub fn transition(firing: Option<&AlertRecord>, observed: Option<bool>) -> Transition {
    match (firing, observed) {
        (None, Some(true)) => Transition::Fire,
        (Some(_), Some(false)) => Transition::Resolve,
        _ => Transition::Nothing,
    }
}

/// A change to the stored alerts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AlertChange {
    /// Store a new firing alert, unless one is already firing for `key`.
    Open {
        /// Alert key.
        key: String,
        /// Its kind.
        kind: AlertKind,
        /// What was seen.
        message: String,
    },
    /// Resolve alert `id`, if it is still at `version`.
    Resolve {
        /// Row id.
        id: u64,
        /// Version it was read at.
        version: u64,
    },
}

/// The changes that make the stored alerts agree with `observed`. `open`
/// holds the alerts as read (firing ones, and resolved ones still owing a notice).
#[must_use]
pub fn plan(open: &[AlertRecord], observed: &Observations) -> Vec<AlertChange> {
    let firing = |key: &str| {
        open.iter()
            .find(|a| a.key == key && a.status == AlertStatus::Firing)
    };
    let mut changes = Vec::new();
    let mut seen = BTreeSet::new();
    for observation in &observed.active {
        if !seen.insert(observation.key.as_str()) {
            continue;
        }
        if transition(firing(&observation.key), Some(true)) == Transition::Fire {
            changes.push(AlertChange::Open {
                key: observation.key.clone(),
                kind: observation.kind,
                message: observation.message.clone(),
            });
        }
    }
    for alert in open.iter().filter(|a| a.status == AlertStatus::Firing) {
        let evaluated = observed.complete.contains(&alert.kind);
        let holds = seen.contains(alert.key.as_str());
        let observation = evaluated.then_some(holds);
        if transition(Some(alert), observation) == Transition::Resolve {
            changes.push(AlertChange::Resolve {
                id: alert.id,
                version: alert.version,
            });
        }
    }
    changes
}

/// A notice an alert owes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Notice {
    /// It fired.
    Fire,
    /// It resolved.
    Resolve,
}

/// The notice `alert` owes, in order (the fire notice first, even when it
/// resolved before that was delivered), if any.
#[must_use]
pub fn pending_notice(alert: &AlertRecord) -> Option<Notice> {
    if alert.fire_sent_at_ms.is_none() {
        Some(Notice::Fire)
    } else if alert.status == AlertStatus::Resolved && alert.resolve_sent_at_ms.is_none() {
        Some(Notice::Resolve)
    } else {
        None
    }
}

/// The text of a notice (Slack's `text`), naming the environment.
#[must_use]
pub fn notice_text(alert: &AlertRecord, notice: Notice, environment: &str) -> String {
    match notice {
        Notice::Fire => format!("[FIRING] [{environment}] {}: {}", alert.key, alert.message),
        Notice::Resolve => format!(
            "[RESOLVED] [{environment}] {} (fired: {})",
            alert.key, alert.message
        ),
    }
}
