//! The evaluation driver: applies the plan to the stored alerts, then
//! delivers the notices owed, each claimed first (compare-and-set) so that
//! overlapping evaluations send it once. Generic over the store and the
//! notifier; the Worker's are D1 and a webhook.

use super::machine::{
    notice_text, pending_notice, plan, AlertChange, AlertKind, AlertRecord, Notice, Observations,
    DELIVERY_LEASE_MS,
};
use crate::shared::storage::StoreError;
use serde::Serialize;
use std::collections::BTreeSet;

/// Where alerts are kept. Every write is conditional and says whether it
/// happened: `false` means another evaluation got there first.
#[allow(async_fn_in_trait)]
pub trait AlertStore {
    /// Firing alerts and resolved ones still owing a notice.
    async fn open_alerts(&self) -> Result<Vec<AlertRecord>, StoreError>;
    /// Stores a new firing alert for `key`, unless one is firing already.
    async fn open(
        &self,
        key: &str,
        kind: AlertKind,
        message: &str,
        now_ms: u64,
    ) -> Result<bool, StoreError>;
    /// Resolves alert `id` if it is still firing at `version`.
    async fn resolve(&self, id: u64, version: u64, now_ms: u64) -> Result<bool, StoreError>;
    /// Reserves alert `id`'s owed notice until `until_ms` if it is still at
    /// `version`; the alert's version is then `version + 1`.
    async fn claim(&self, id: u64, version: u64, until_ms: u64) -> Result<bool, StoreError>;
    /// Records `notice` delivered (alert at `version`, the claimed one).
    async fn delivered(
        &self,
        id: u64,
        version: u64,
        notice: Notice,
        now_ms: u64,
    ) -> Result<bool, StoreError>;
    /// Records a failed delivery and releases the claim: the next evaluation retries.
    async fn delivery_failed(&self, id: u64, version: u64, error: &str)
        -> Result<bool, StoreError>;
}

/// Sends notices (the Worker: a Slack-compatible webhook).
#[allow(async_fn_in_trait)]
pub trait AlertNotifier {
    /// Delivers `text`; `Err` says why it was not delivered.
    async fn send(&self, text: &str) -> Result<(), String>;
}

/// What one evaluation did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct EvaluationReport {
    /// Keys of the alerts it opened.
    pub fired: Vec<String>,
    /// Ids of the alerts it resolved.
    pub resolved: Vec<u64>,
    /// Notices it delivered (key, notice).
    pub sent: Vec<(String, Notice)>,
    /// Notices whose delivery failed (key, notice, why): owed still.
    pub failed: Vec<(String, Notice, String)>,
    /// Changes and claims another evaluation made first.
    pub lost_races: u32,
}

/// One evaluation: the stored alerts are brought in line with `observed`,
/// then every notice owed (and not claimed by a running delivery) is sent.
///
/// # Errors
/// A store call failed; what was done before it stays done, and the next
/// evaluation carries on from the stored state.
pub async fn evaluate<S: AlertStore, N: AlertNotifier>(
    store: &S,
    notifier: &N,
    observed: &Observations,
    now_ms: u64,
    environment: &str,
) -> Result<EvaluationReport, StoreError> {
    let mut report = EvaluationReport::default();
    let open = store.open_alerts().await?;
    for change in plan(&open, observed) {
        match change {
            AlertChange::Open { key, kind, message } => {
                if store.open(&key, kind, &message, now_ms).await? {
                    report.fired.push(key);
                } else {
                    report.lost_races += 1;
                }
            }
            AlertChange::Resolve { id, version } => {
                if store.resolve(id, version, now_ms).await? {
                    report.resolved.push(id);
                } else {
                    report.lost_races += 1;
                }
            }
        }
    }
    deliver(store, notifier, now_ms, environment, &mut report).await?;
    Ok(report)
}

/// Sends owed notices; an alert owing both (fired, then resolved before the
/// fire notice went out) sends them in order. A notice that failed here is
/// not tried again until the next evaluation.
async fn deliver<S: AlertStore, N: AlertNotifier>(
    store: &S,
    notifier: &N,
    now_ms: u64,
    environment: &str,
    report: &mut EvaluationReport,
) -> Result<(), StoreError> {
    let mut failed_here = BTreeSet::new();
    // Two passes cover a fire notice followed by a resolve notice.
    for _ in 0..2 {
        let mut delivered_any = false;
        for alert in store.open_alerts().await? {
            let Some(notice) = pending_notice(&alert) else {
                continue;
            };
            if alert.claimed_until_ms > now_ms || failed_here.contains(&alert.id) {
                continue;
            }
            if !store
                .claim(alert.id, alert.version, now_ms + DELIVERY_LEASE_MS)
                .await?
            {
                report.lost_races += 1;
                continue;
            }
            let claimed = alert.version + 1;
            match notifier
                .send(&notice_text(&alert, notice, environment))
                .await
            {
                Ok(()) => {
                    store.delivered(alert.id, claimed, notice, now_ms).await?;
                    report.sent.push((alert.key.clone(), notice));
                    delivered_any = true;
                }
                Err(why) => {
                    store.delivery_failed(alert.id, claimed, &why).await?;
                    failed_here.insert(alert.id);
                    report.failed.push((alert.key.clone(), notice, why));
                }
            }
        }
        if !delivered_any {
            break;
        }
    }
    Ok(())
}
