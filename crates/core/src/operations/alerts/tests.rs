//! The alert state machine and its driver on an in-memory store whose every
//! call yields once, so two evaluations run concurrently interleave at each
//! store call (two cron runs overlapping, a cron and a dead letter).

use super::*;
use crate::shared::storage::StoreError;
use futures_util::future::join;
use pollster::block_on;
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// Pending once, then ready: lets the other joined future run.
struct YieldNow(bool);

impl Future for YieldNow {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            Poll::Ready(())
        } else {
            self.0 = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }
}

fn yield_now() -> YieldNow {
    YieldNow(false)
}

#[derive(Default)]
struct MemoryStore {
    alerts: RefCell<Vec<AlertRecord>>,
}

impl MemoryStore {
    fn all(&self) -> Vec<AlertRecord> {
        self.alerts.borrow().clone()
    }

    /// Applies `change` to alert `id` if it is at `version`.
    fn cas(&self, id: u64, version: u64, change: impl FnOnce(&mut AlertRecord)) -> bool {
        let mut alerts = self.alerts.borrow_mut();
        match alerts
            .iter_mut()
            .find(|a| a.id == id && a.version == version)
        {
            Some(alert) => {
                change(alert);
                alert.version += 1;
                true
            }
            None => false,
        }
    }
}

impl AlertStore for MemoryStore {
    async fn open_alerts(&self) -> Result<Vec<AlertRecord>, StoreError> {
        yield_now().await;
        Ok(self
            .alerts
            .borrow()
            .iter()
            .filter(|a| a.status == AlertStatus::Firing || pending_notice(a).is_some())
            .cloned()
            .collect())
    }

    async fn open(
        &self,
        key: &str,
        kind: AlertKind,
        message: &str,
        now_ms: u64,
    ) -> Result<bool, StoreError> {
        yield_now().await;
        let mut alerts = self.alerts.borrow_mut();
        // The unique index on firing keys.
        if alerts
            .iter()
            .any(|a| a.key == key && a.status == AlertStatus::Firing)
        {
            return Ok(false);
        }
        let id = alerts.len() as u64 + 1;
        alerts.push(AlertRecord {
            id,
            key: key.to_owned(),
            kind,
            status: AlertStatus::Firing,
            message: message.to_owned(),
            fired_at_ms: now_ms,
            resolved_at_ms: None,
            fire_sent_at_ms: None,
            resolve_sent_at_ms: None,
            attempts: 0,
            last_error: None,
            claimed_until_ms: 0,
            version: 1,
        });
        Ok(true)
    }

    async fn resolve(&self, id: u64, version: u64, now_ms: u64) -> Result<bool, StoreError> {
        yield_now().await;
        Ok(self.cas(id, version, |a| {
            a.status = AlertStatus::Resolved;
            a.resolved_at_ms = Some(now_ms);
        }))
    }

    async fn claim(&self, id: u64, version: u64, until_ms: u64) -> Result<bool, StoreError> {
        yield_now().await;
        Ok(self.cas(id, version, |a| a.claimed_until_ms = until_ms))
    }

    async fn delivered(
        &self,
        id: u64,
        version: u64,
        notice: Notice,
        now_ms: u64,
    ) -> Result<bool, StoreError> {
        yield_now().await;
        Ok(self.cas(id, version, |a| {
            match notice {
                Notice::Fire => a.fire_sent_at_ms = Some(now_ms),
                Notice::Resolve => a.resolve_sent_at_ms = Some(now_ms),
            }
            a.claimed_until_ms = 0;
            a.attempts = 0;
            a.last_error = None;
        }))
    }

    async fn delivery_failed(
        &self,
        id: u64,
        version: u64,
        error: &str,
    ) -> Result<bool, StoreError> {
        yield_now().await;
        Ok(self.cas(id, version, |a| {
            a.claimed_until_ms = 0;
            a.attempts += 1;
            a.last_error = Some(error.to_owned());
        }))
    }
}

/// A webhook that records what it was sent and can be told to fail.
#[derive(Default)]
struct Webhook {
    sent: RefCell<Vec<String>>,
    attempts: Cell<u32>,
    failures_left: Cell<u32>,
}

impl AlertNotifier for Webhook {
    async fn send(&self, text: &str) -> Result<(), String> {
        yield_now().await;
        self.attempts.set(self.attempts.get() + 1);
        if self.failures_left.get() > 0 {
            self.failures_left.set(self.failures_left.get() - 1);
            return Err("HTTP 503 from the webhook".into());
        }
        self.sent.borrow_mut().push(text.to_owned());
        Ok(())
    }
}

impl Webhook {
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.sent.borrow_mut())
    }
}

const NOW: u64 = 1_800_000_000_000;

fn errors(total: u64, errors: u64) -> AlertSnapshot {
    AlertSnapshot {
        now_ms: NOW,
        requests: Some(RequestWindow {
            total,
            errors,
            p95_ms: Some(100.0),
        }),
        ..AlertSnapshot::default()
    }
}

fn observed(snapshot: &AlertSnapshot) -> Observations {
    observe(snapshot, &AlertSettings::default())
}

fn run(
    store: &MemoryStore,
    webhook: &Webhook,
    observations: &Observations,
    now: u64,
) -> EvaluationReport {
    block_on(evaluate(store, webhook, observations, now, "test")).expect("evaluation")
}

#[test]
fn transitions_fire_on_the_first_observation_and_resolve_on_clearing() {
    let firing = AlertRecord {
        id: 1,
        key: "error_rate".into(),
        kind: AlertKind::ErrorRate,
        status: AlertStatus::Firing,
        message: String::new(),
        fired_at_ms: 0,
        resolved_at_ms: None,
        fire_sent_at_ms: None,
        resolve_sent_at_ms: None,
        attempts: 0,
        last_error: None,
        claimed_until_ms: 0,
        version: 1,
    };
    assert_eq!(transition(None, Some(true)), Transition::Fire);
    assert_eq!(transition(None, Some(false)), Transition::Nothing);
    assert_eq!(transition(None, None), Transition::Nothing);
    assert_eq!(transition(Some(&firing), Some(true)), Transition::Nothing);
    assert_eq!(transition(Some(&firing), Some(false)), Transition::Resolve);
    assert_eq!(
        transition(Some(&firing), None),
        Transition::Nothing,
        "not evaluated: left alone"
    );
}

#[test]
fn an_alert_fires_once_while_its_condition_holds_and_resolves_once() {
    let store = MemoryStore::default();
    let webhook = Webhook::default();
    let bad = observed(&errors(40, 10));
    let good = observed(&errors(40, 0));

    let first = run(&store, &webhook, &bad, NOW);
    assert_eq!(first.fired, ["error_rate"]);
    let sent = webhook.take();
    assert_eq!(sent.len(), 1);
    assert!(
        sent[0].starts_with("[FIRING] [test] error_rate: 10 of 40 requests (25.0 %)"),
        "{}",
        sent[0]
    );

    // Still bad: nothing new.
    let again = run(&store, &webhook, &bad, NOW + 300_000);
    assert_eq!(again, EvaluationReport::default());
    assert!(webhook.take().is_empty());

    let cleared = run(&store, &webhook, &good, NOW + 600_000);
    assert_eq!(cleared.resolved, [1]);
    let sent = webhook.take();
    assert_eq!(sent.len(), 1);
    assert!(
        sent[0].starts_with("[RESOLVED] [test] error_rate"),
        "{}",
        sent[0]
    );
    assert_eq!(
        run(&store, &webhook, &good, NOW + 900_000),
        EvaluationReport::default()
    );
    assert!(webhook.take().is_empty());

    // It can fire again: a new episode, its own row.
    run(&store, &webhook, &bad, NOW + 1_200_000);
    assert_eq!(webhook.take().len(), 1);
    let rows = store.all();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].status, AlertStatus::Resolved);
    assert_eq!(rows[1].status, AlertStatus::Firing);
}

#[test]
fn two_overlapping_evaluations_fire_and_notify_once() {
    let store = MemoryStore::default();
    let webhook = Webhook::default();
    let bad = observed(&errors(40, 10));
    let (a, b) = block_on(join(
        evaluate(&store, &webhook, &bad, NOW, "test"),
        evaluate(&store, &webhook, &bad, NOW + 1, "test"),
    ));
    let (a, b) = (a.expect("a"), b.expect("b"));
    assert_eq!(a.fired.len() + b.fired.len(), 1, "{a:?} {b:?}");
    assert_eq!(a.sent.len() + b.sent.len(), 1);
    assert!(a.lost_races + b.lost_races >= 1);
    assert_eq!(webhook.take().len(), 1);
    assert_eq!(store.all().len(), 1);

    // And resolve once.
    let good = observed(&errors(40, 0));
    let (a, b) = block_on(join(
        evaluate(&store, &webhook, &good, NOW + 10, "test"),
        evaluate(&store, &webhook, &good, NOW + 11, "test"),
    ));
    let (a, b) = (a.expect("a"), b.expect("b"));
    assert_eq!(a.resolved.len() + b.resolved.len(), 1);
    let sent = webhook.take();
    assert_eq!(sent.len(), 1);
    assert!(sent[0].starts_with("[RESOLVED]"));
}

#[test]
fn a_notice_whose_webhook_failed_is_sent_by_the_next_evaluation() {
    let store = MemoryStore::default();
    let webhook = Webhook::default();
    let bad = observed(&errors(40, 10));
    webhook.failures_left.set(1);

    let first = run(&store, &webhook, &bad, NOW);
    assert_eq!(first.fired, ["error_rate"]);
    assert_eq!(first.failed.len(), 1);
    assert!(first.sent.is_empty());
    assert_eq!(
        webhook.attempts.get(),
        1,
        "not retried within the same evaluation"
    );
    let alert = &store.all()[0];
    assert_eq!((alert.attempts, alert.fire_sent_at_ms), (1, None));
    assert_eq!(
        alert.last_error.as_deref(),
        Some("HTTP 503 from the webhook")
    );
    assert_eq!(alert.claimed_until_ms, 0, "the claim is released");

    let second = run(&store, &webhook, &bad, NOW + 300_000);
    assert!(second.fired.is_empty(), "no second alert");
    assert_eq!(second.sent, [("error_rate".to_owned(), Notice::Fire)]);
    assert_eq!(webhook.take().len(), 1);
    let alert = &store.all()[0];
    assert_eq!((alert.attempts, alert.last_error.as_deref()), (0, None));

    // The resolve notice fails twice, then goes through: never lost.
    let good = observed(&errors(40, 0));
    webhook.failures_left.set(2);
    assert_eq!(run(&store, &webhook, &good, NOW + 600_000).failed.len(), 1);
    assert_eq!(run(&store, &webhook, &good, NOW + 900_000).failed.len(), 1);
    let last = run(&store, &webhook, &good, NOW + 1_200_000);
    assert_eq!(last.sent, [("error_rate".to_owned(), Notice::Resolve)]);
    assert_eq!(webhook.take().len(), 1);
    assert_eq!(
        run(&store, &webhook, &good, NOW + 1_500_000),
        EvaluationReport::default()
    );
}

#[test]
fn a_claimed_notice_waits_for_its_lease_and_a_late_fire_notice_goes_before_the_resolve() {
    let store = MemoryStore::default();
    let webhook = Webhook::default();
    let bad = observed(&errors(40, 10));
    webhook.failures_left.set(1);
    run(&store, &webhook, &bad, NOW);
    // Another evaluation holds the notice (a sender that is still working).
    assert!(block_on(store.claim(1, store.all()[0].version, NOW + DELIVERY_LEASE_MS)).unwrap());
    let held = run(&store, &webhook, &bad, NOW + 1_000);
    assert!(held.sent.is_empty() && held.failed.is_empty());

    // It cleared meanwhile; after the lease, both notices go out, in order.
    let good = observed(&errors(40, 0));
    let late = run(&store, &webhook, &good, NOW + DELIVERY_LEASE_MS + 1);
    assert_eq!(
        late.sent,
        [
            ("error_rate".to_owned(), Notice::Fire),
            ("error_rate".to_owned(), Notice::Resolve)
        ]
    );
    let sent = webhook.take();
    assert!(sent[0].starts_with("[FIRING]") && sent[1].starts_with("[RESOLVED]"));
}

#[test]
fn a_kind_that_was_not_evaluated_is_never_resolved() {
    let store = MemoryStore::default();
    let webhook = Webhook::default();
    run(&store, &webhook, &observed(&errors(40, 10)), NOW);
    webhook.take();
    // The request query failed: no request facts at all.
    let unknown = observed(&AlertSnapshot {
        now_ms: NOW,
        ..AlertSnapshot::default()
    });
    assert!(!unknown.complete.contains(&AlertKind::ErrorRate));
    assert_eq!(
        run(&store, &webhook, &unknown, NOW + 1),
        EvaluationReport::default()
    );
    assert_eq!(store.all()[0].status, AlertStatus::Firing);
}

#[test]
fn each_condition_fires_at_its_threshold() {
    let settings = AlertSettings::default();
    let keys = |snapshot: &AlertSnapshot| -> Vec<String> {
        observe(snapshot, &settings)
            .active
            .into_iter()
            .map(|o| o.key)
            .collect()
    };
    // 5 % is the threshold: more fires, exactly 5 % does not; too few requests say nothing.
    assert_eq!(keys(&errors(100, 6)), ["error_rate"]);
    assert!(keys(&errors(100, 5)).is_empty());
    assert!(keys(&errors(19, 19)).is_empty());
    let slow = |p95: f64| AlertSnapshot {
        requests: Some(RequestWindow {
            total: 20,
            errors: 0,
            p95_ms: Some(p95),
        }),
        ..AlertSnapshot::default()
    };
    assert_eq!(keys(&slow(5_001.0)), ["latency_p95"]);
    assert!(keys(&slow(5_000.0)).is_empty());

    let snapshot = AlertSnapshot {
        now_ms: NOW,
        requests: None,
        failed_documents: Some(vec![FailedDocument {
            key: "a.md".into(),
            error: Some("not UTF-8".into()),
        }]),
        stuck: Some(StuckDocuments {
            count: 2,
            oldest: Some(("b.md".into(), NOW - 45 * 60_000)),
        }),
        dead_letters_in_window: Some(1),
        latest_reconcile: Some(Some(ReconcileFacts {
            run_id: 7,
            enqueued: 51,
        })),
        providers: Some(vec![
            ProviderCall {
                provider: "openai".into(),
                status: 401,
                at_ms: NOW,
            },
            ProviderCall {
                provider: "offline".into(),
                status: 0,
                at_ms: NOW,
            },
        ]),
        burn: None,
    };
    let observed = observe(&snapshot, &settings);
    let messages: Vec<(&str, &str)> = observed
        .active
        .iter()
        .map(|o| (o.key.as_str(), o.message.as_str()))
        .collect();
    assert_eq!(
        messages,
        [
            ("document_failed:a.md", "a.md failed permanently: not UTF-8"),
            (
                "stuck_documents",
                "2 documents queued or processing for more than 30 min; oldest b.md, for 45 min"
            ),
            (
                "dead_letters",
                "1 dead letters in the last 5 min (threshold 0); GET /admin/dead-letters"
            ),
            (
                "reconcile_enqueued",
                "reconciliation run 7 enqueued 51 documents (threshold 50)"
            ),
            (
                "provider_auth:openai",
                "openai refused its latest call with HTTP 401: is its API key revoked?"
            ),
        ]
    );
    assert!(!observed.complete.contains(&AlertKind::ErrorRate));
    assert!(observed.complete.contains(&AlertKind::DocumentFailed));

    // A list of failed documents past the cap: alerted, never resolved from it.
    let many = AlertSnapshot {
        failed_documents: Some(
            (0..=MAX_FAILED_DOCUMENTS)
                .map(|i| FailedDocument {
                    key: format!("{i}.md"),
                    error: None,
                })
                .collect(),
        ),
        ..AlertSnapshot::default()
    };
    let observed = observe(&many, &settings);
    assert_eq!(observed.active.len(), MAX_FAILED_DOCUMENTS);
    assert!(!observed.complete.contains(&AlertKind::DocumentFailed));
}

#[test]
fn per_instance_alerts_resolve_one_by_one() {
    let store = MemoryStore::default();
    let webhook = Webhook::default();
    let failed = |keys: &[&str]| {
        observe(
            &AlertSnapshot {
                failed_documents: Some(
                    keys.iter()
                        .map(|k| FailedDocument {
                            key: (*k).into(),
                            error: None,
                        })
                        .collect(),
                ),
                ..AlertSnapshot::default()
            },
            &AlertSettings::default(),
        )
    };
    let first = run(&store, &webhook, &failed(&["a.md", "b.md"]), NOW);
    assert_eq!(
        first.fired,
        ["document_failed:a.md", "document_failed:b.md"]
    );
    let second = run(&store, &webhook, &failed(&["b.md"]), NOW + 1);
    assert_eq!(second.resolved, [1]);
    let sent = webhook.take();
    assert_eq!(sent.len(), 3);
    assert!(sent[2].starts_with("[RESOLVED] [test] document_failed:a.md"));
}

#[test]
fn a_fast_burn_of_the_availability_budget_fires_and_clears_with_its_short_window() {
    use crate::operations::availability::{BurnWindows, RequestCount};
    let count = |requests, errors| RequestCount { requests, errors };
    let burning = |short_errors| AlertSnapshot {
        now_ms: NOW,
        burn: Some([
            BurnWindows {
                long: count(2_000, 40),
                short: count(200, short_errors),
            },
            BurnWindows {
                long: count(3_000, 40),
                short: count(400, short_errors),
            },
        ]),
        ..AlertSnapshot::default()
    };
    let fired = observed(&burning(4));
    let keys: Vec<&str> = fired.active.iter().map(|o| o.key.as_str()).collect();
    assert_eq!(keys, ["availability_burn"]);
    assert_eq!(
        fired.active[0].message,
        "the 99.9 % availability budget is burning 20.0x too fast over the last 60 min \
         (20.0x over the last 5 min, 2000 requests); at this pace a 30-day budget lasts 1.5 days"
    );
    assert!(fired.complete.contains(&AlertKind::AvailabilityBurn));
    // The errors stopped: the short windows are clean, so the alert resolves
    // although the last hour still holds them.
    let recovered = observed(&burning(0));
    assert!(recovered.active.is_empty());
    assert!(recovered.complete.contains(&AlertKind::AvailabilityBurn));
    // Not read: neither fired nor resolved.
    let unknown = observed(&AlertSnapshot::default());
    assert!(!unknown.complete.contains(&AlertKind::AvailabilityBurn));
}
