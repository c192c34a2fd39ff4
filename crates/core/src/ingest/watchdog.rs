//! The ingestion watchdog: on the `*/5` cron, documents whose D1 row has not
//! moved for a while are handed to their processor with a *wake*, and a
//! processor whose alarm is missing (or later than its state asks) arms it
//! again. It only restores the alarm the state machine asked for; it never
//! runs a step, never moves an alarm earlier, never touches a run's state.
//!
//! Why: a Durable Object alarm whose handler keeps failing is retried "using
//! exponential backoff starting at a 2 second delay from the first failure
//! with up to 6 retries allowed" and then dropped
//! (<https://developers.cloudflare.com/durable-objects/api/alarms/>). A
//! document left `processing` without an alarm would otherwise wait for
//! reconciliation's stuck rule (`RECONCILE_STUCK_AFTER_HOURS`, daily cron:
//! up to two days), which stays as the last resort.

use super::ports::{IngestPorts, Processor};
use super::processor::CommandError;
use super::store::ProcessorStorage;
use crate::ingest::pipeline::ProcessorState;
use crate::shared::storage::{Clock, EventLog, Level, StoreError};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// Default of `INGEST_WATCHDOG_AFTER_MINUTES`.
///
/// The longest a healthy document at one single-batch step goes without its
/// row moving (the row changes with status, step or generation, not per
/// attempt or batch): the overload wait's cap between two attempts
/// (`DEFAULT_OVERLOAD_MAX_MS`, 5 min), plus one attempt held within its gate
/// lease (`DEFAULT_LEASE_MS`, 3 min: the provider client's 4 calls of at most
/// 30 s with backoff), plus the platform's own retries of a failing alarm
/// (2 + 4 + … + 64 s = 126 s), ≈ 10.1 min; rounded up to a multiple of the
/// cron's 5 minutes. A document past it whose alarm is armed is left alone
/// (a wake costs one Durable Object request), and one whose alarm was dropped
/// is found within this plus one cron period (20 min instead of up to 48 h).
pub const DEFAULT_WATCHDOG_AFTER_MINUTES: u32 = 15;

/// Most processors one watchdog run wakes. Each wake is a Durable Object
/// request, a subrequest of the cron invocation, which also evaluates the
/// alerts; 25 leaves room within the Workers Free plan's 50 subrequests per
/// invocation (<https://developers.cloudflare.com/workers/platform/limits/>).
/// Past it, the rest wait for the next run (candidates come in random order,
/// so the same healthy ones do not hide the others run after run).
pub const MAX_WAKES_PER_RUN: u32 = 25;

/// An alarm this much later than the state's due time still counts as armed
/// (the adapter converts an absolute time into an offset from its own clock).
pub const ALARM_SLACK_MS: u64 = 1_000;

/// When the watchdog wakes a document, and how many per run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WatchdogSettings {
    /// A `queued`/`processing` row unchanged for longer than this is woken.
    pub after_ms: u64,
    /// Most wakes per run.
    pub max_wakes: u32,
}

impl Default for WatchdogSettings {
    fn default() -> Self {
        Self {
            after_ms: u64::from(DEFAULT_WATCHDOG_AFTER_MINUTES) * 60_000,
            max_wakes: MAX_WAKES_PER_RUN,
        }
    }
}

/// The body of a wake request to a processor (`POST /wake`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WakeRequest {
    /// The document key the caller believes the processor serves.
    pub key: String,
}

/// What a wake found, and what it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "wake", rename_all = "snake_case")]
pub enum WakeOutcome {
    /// No run in progress (never requested, ready, failed, deleted): nothing to do.
    NotRunning,
    /// An alarm handler runs right now and arms the next alarm itself.
    AlarmRunning,
    /// The alarm is armed no later than the state asks: nothing to do.
    Armed {
        /// When it fires.
        at_ms: u64,
    },
    /// The alarm was missing or later than due: armed again at the due time.
    Rearmed {
        /// The new alarm time.
        at_ms: u64,
        /// The alarm found, if any.
        previous_ms: Option<u64>,
    },
}

impl WakeOutcome {
    /// Name for logs and counts.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotRunning => "not_running",
            Self::AlarmRunning => "alarm_running",
            Self::Armed { .. } => "armed",
            Self::Rearmed { .. } => "rearmed",
        }
    }
}

/// When the state machine wants its next alarm: the watchdog deadline of an
/// issued step, else the time the next attempt may go (backoff, gate wait,
/// or now). `None` when no run is in progress.
#[must_use]
pub fn alarm_due(state: &ProcessorState, now_ms: u64) -> Option<u64> {
    if !state.stage.is_running() {
        return None;
    }
    // A running stage without a run cannot be driven; the alarm lets the
    // state machine say so (it fails the run as inconsistent).
    let Some(run) = state.run.as_ref() else {
        return Some(now_ms);
    };
    Some(match run.in_flight {
        Some(in_flight) => in_flight.deadline_ms,
        None => run.not_before_ms,
    })
}

/// What a wake does with the processor's `state` and its current `alarm_ms`:
/// nothing unless a run is in progress, no alarm handler is running, and the
/// alarm is missing or later than due (then: arm it at the due time).
#[must_use]
pub fn decide_wake(
    state: &ProcessorState,
    alarm_ms: Option<u64>,
    alarm_running: bool,
    now_ms: u64,
) -> WakeOutcome {
    let Some(due) = alarm_due(state, now_ms) else {
        return WakeOutcome::NotRunning;
    };
    if alarm_running {
        // While its handler runs the platform reports no alarm ("getAlarm …
        // returns null unless setAlarm has also been called since the alarm
        // handler started running", alarms API page above): the handler arms
        // the next one.
        return WakeOutcome::AlarmRunning;
    }
    match alarm_ms {
        Some(at) if at <= due.saturating_add(ALARM_SLACK_MS) => WakeOutcome::Armed { at_ms: at },
        previous => WakeOutcome::Rearmed {
            at_ms: due,
            previous_ms: previous,
        },
    }
}

impl<P: IngestPorts> Processor<P> {
    /// A wake from the watchdog: re-arms the alarm when a run is in progress
    /// and its alarm is missing or late ([`decide_wake`]); otherwise changes
    /// nothing. Idempotent. `alarm_running`: whether this object's alarm
    /// handler is running now (the Durable Object knows, the state does not).
    ///
    /// # Errors
    /// `WrongProcessor` when `key` is not the key served; `Store` when the
    /// storage failed (nothing changed).
    pub async fn wake(&self, key: &str, alarm_running: bool) -> Result<WakeOutcome, CommandError> {
        match self.ports.storage().key().await? {
            None => return Ok(WakeOutcome::NotRunning),
            Some(serves) if serves != key => {
                return Err(CommandError::WrongProcessor {
                    serves,
                    asked: key.to_owned(),
                })
            }
            Some(_) => {}
        }
        let state = self.ports.storage().load_state().await?;
        let alarm = self.ports.storage().alarm().await?;
        let outcome = decide_wake(&state, alarm, alarm_running, self.ports.clock().now_ms());
        if let WakeOutcome::Rearmed { at_ms, previous_ms } = outcome {
            self.ports.storage().set_alarm(at_ms).await?;
            self.ports.log().log(
                Level::Warn,
                json!({ "event": "processor_alarm_rearmed", "key": key, "at_ms": at_ms,
                        "previous_ms": previous_ms, "stage": state.stage }),
            );
        }
        Ok(outcome)
    }
}

/// What the watchdog needs: the stalled rows and a way to wake a processor.
#[allow(async_fn_in_trait)]
pub trait WatchdogPorts {
    /// Keys of `queued`/`processing` documents whose row has not changed
    /// since `before_ms`, at most `limit`, in random order.
    async fn stalled_documents(
        &self,
        before_ms: u64,
        limit: u32,
    ) -> Result<Vec<String>, StoreError>;
    /// Sends `key`'s processor a wake.
    async fn wake(&self, key: &str) -> Result<WakeOutcome, StoreError>;
}

/// One watchdog run's counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct WatchdogSummary {
    /// Stalled rows found (at most the per-run bound).
    pub stalled: u32,
    /// Processors whose alarm was armed again.
    pub rearmed: u32,
    /// Processors already armed.
    pub armed: u32,
    /// Processors with no run in progress.
    pub not_running: u32,
    /// Processors whose alarm handler was running.
    pub alarm_running: u32,
    /// Wakes that failed (tried again next run).
    pub failed: u32,
}

/// One watchdog run at `now_ms`: wakes the processors of documents stalled
/// for longer than `settings.after_ms`, at most `settings.max_wakes`. Never
/// fails: a failed listing or wake is logged and the next run tries again.
pub async fn run_watchdog(
    ports: &impl WatchdogPorts,
    log: &impl EventLog,
    settings: &WatchdogSettings,
    now_ms: u64,
) -> WatchdogSummary {
    let mut summary = WatchdogSummary::default();
    let before = now_ms.saturating_sub(settings.after_ms);
    let keys = match ports.stalled_documents(before, settings.max_wakes).await {
        Ok(keys) => keys,
        Err(e) => {
            log.log(
                Level::Error,
                json!({ "event": "watchdog_failed", "error": e.to_string() }),
            );
            return summary;
        }
    };
    let bound = settings.max_wakes as usize;
    summary.stalled = u32::try_from(keys.len().min(bound)).unwrap_or(u32::MAX);
    for key in keys.iter().take(bound) {
        match ports.wake(key).await {
            Ok(outcome) => {
                let count = match outcome {
                    WakeOutcome::Rearmed { .. } => &mut summary.rearmed,
                    WakeOutcome::Armed { .. } => &mut summary.armed,
                    WakeOutcome::NotRunning => &mut summary.not_running,
                    WakeOutcome::AlarmRunning => &mut summary.alarm_running,
                };
                *count += 1;
                if matches!(outcome, WakeOutcome::Rearmed { .. }) {
                    log.log(
                        Level::Warn,
                        json!({ "event": "watchdog_rearmed", "key": key, "wake": outcome }),
                    );
                }
            }
            Err(e) => {
                summary.failed += 1;
                log.log(
                    Level::Warn,
                    json!({ "event": "watchdog_wake_failed", "key": key, "error": e.to_string() }),
                );
            }
        }
    }
    if summary.stalled > 0 {
        log.log(
            Level::Info,
            json!({ "event": "watchdog_run", "after_ms": settings.after_ms, "summary": summary }),
        );
    }
    summary
}

#[cfg(test)]
mod tests;
