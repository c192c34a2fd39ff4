//! Alerts: which conditions hold ([`observe`] over an [`AlertSnapshot`] of
//! metrics and D1 state), what that changes ([`plan`]: an alert fires once
//! when its condition is first observed and resolves once when it clears),
//! and which notices are owed ([`pending_notice`]) — a pure state machine —
//! plus the driver ([`evaluate`]) that applies it over an [`AlertStore`] and
//! an [`AlertNotifier`] (a Slack-compatible webhook in the Worker).
//!
//! Every change is a compare-and-set on the stored alert, so two overlapping
//! evaluations (two cron runs, a cron and a dead letter) fire and notify once.
//! A notice whose delivery failed stays owed and is retried by the next
//! evaluation; it is never lost. Never reads a clock or sends anything itself.

mod conditions;
mod driver;
mod machine;
#[cfg(test)]
mod tests;

pub use conditions::{
    observe, AlertSettings, AlertSnapshot, FailedDocument, ProviderCall, ReconcileFacts,
    RequestWindow, StuckDocuments, MAX_FAILED_DOCUMENTS,
};
pub use driver::{evaluate, AlertNotifier, AlertStore, EvaluationReport};
pub use machine::{
    notice_text, pending_notice, plan, transition, AlertChange, AlertKind, AlertRecord,
    AlertStatus, Notice, Observation, Observations, Transition, DELIVERY_LEASE_MS,
};
