//! The watchdog on the ingestion fakes: which processors a wake re-arms, the
//! interleavings with alarms (armed, dropped, running, twice in a row, ready),
//! and the cron run's bound and error handling.

use super::*;
use crate::ingest::fakes::{
    FakeBucket, FakeDatabase, FakeIndex, FakeIngestPorts, FakeProcessorStorage, Lines, ManualClock,
    NoGate,
};
use crate::ingest::message::IngestCommand;
use crate::ingest::pipeline::{InFlight, PipelineConfig, Request, Run, RunReason, Stage};
use crate::ingest::ports::Processor;
use crate::ingest::settings::IngestSettings;
use crate::operations::metrics::MetricsBuffer;
use crate::providers::offline_embedder::HashingEmbedder;
use pollster::block_on;
use std::cell::RefCell;

const T0: u64 = 1_700_000_000_000;
const KEY: &str = "companies/acme/watchdog.md";

// ---- the decision -------------------------------------------------------

fn running(stage: Stage, not_before_ms: u64, in_flight: Option<u64>) -> ProcessorState {
    let mut run = Run::new(
        1,
        Request::Delete {
            event_time_ms: T0,
            reason: RunReason::Admin,
        },
        T0,
    );
    run.not_before_ms = not_before_ms;
    run.in_flight = in_flight.map(|deadline_ms| InFlight {
        issued_at_ms: T0,
        deadline_ms,
    });
    ProcessorState {
        stage,
        last_generation: 1,
        run: Some(run),
        ..ProcessorState::new()
    }
}

#[test]
fn a_wake_rearms_only_a_running_document_without_a_timely_alarm() {
    let now = T0 + 60_000;
    let waiting = running(Stage::Embedding { done: 1, total: 4 }, T0 + 90_000, None);
    let in_flight = running(Stage::Tagging { done: 0, total: 1 }, T0, Some(T0 + 1_000));
    let cases: Vec<(&str, ProcessorState, Option<u64>, bool, WakeOutcome)> = vec![
        ("never requested", ProcessorState::new(), None, false, WakeOutcome::NotRunning),
        (
            "ready",
            ProcessorState {
                stage: Stage::Ready,
                ..ProcessorState::new()
            },
            None,
            false,
            WakeOutcome::NotRunning,
        ),
        (
            "backoff armed at its end",
            waiting.clone(),
            Some(T0 + 90_000),
            false,
            WakeOutcome::Armed { at_ms: T0 + 90_000 },
        ),
        (
            "armed a little late (clock skew of the adapter)",
            waiting.clone(),
            Some(T0 + 90_500),
            false,
            WakeOutcome::Armed { at_ms: T0 + 90_500 },
        ),
        (
            "armed earlier than due (a spare alarm is harmless)",
            waiting.clone(),
            Some(now),
            false,
            WakeOutcome::Armed { at_ms: now },
        ),
        (
            "alarm dropped during a backoff",
            waiting.clone(),
            None,
            false,
            WakeOutcome::Rearmed {
                at_ms: T0 + 90_000,
                previous_ms: None,
            },
        ),
        (
            "alarm further away than the state asks",
            waiting.clone(),
            Some(T0 + 3_600_000),
            false,
            WakeOutcome::Rearmed {
                at_ms: T0 + 90_000,
                previous_ms: Some(T0 + 3_600_000),
            },
        ),
        (
            "in-flight step whose watchdog alarm was dropped: armed at its deadline (past: fires now)",
            in_flight.clone(),
            None,
            false,
            WakeOutcome::Rearmed {
                at_ms: T0 + 1_000,
                previous_ms: None,
            },
        ),
        (
            "alarm handler running (the platform reports no alarm meanwhile)",
            in_flight,
            None,
            true,
            WakeOutcome::AlarmRunning,
        ),
        (
            "running stage without a run: armed now, the state machine fails it",
            ProcessorState {
                stage: Stage::Committing,
                ..ProcessorState::new()
            },
            None,
            false,
            WakeOutcome::Rearmed {
                at_ms: now,
                previous_ms: None,
            },
        ),
    ];
    for (name, state, alarm, alarm_running, expected) in cases {
        assert_eq!(
            decide_wake(&state, alarm, alarm_running, now),
            expected,
            "{name}"
        );
    }
}

// ---- the processor's wake, interleaved with its alarms --------------------

struct Harness {
    clock: ManualClock,
    bucket: FakeBucket<'static>,
    db: FakeDatabase<'static>,
    index: FakeIndex<'static>,
    storage: FakeProcessorStorage<'static>,
    embedder: HashingEmbedder,
    log: Lines,
    metrics: MetricsBuffer,
}

type HarnessProcessor<'a> = Processor<FakeIngestPorts<'a, 'static, HashingEmbedder, NoGate>>;

impl Harness {
    fn new() -> Self {
        Self {
            clock: ManualClock::at(T0),
            bucket: FakeBucket::default(),
            db: FakeDatabase::default(),
            index: FakeIndex::default(),
            storage: FakeProcessorStorage::default(),
            embedder: HashingEmbedder::new(16).expect("dimensions"),
            log: Lines::default(),
            metrics: MetricsBuffer::default(),
        }
    }

    fn processor(&self) -> HarnessProcessor<'_> {
        Processor {
            ports: FakeIngestPorts {
                storage: &self.storage,
                documents: &self.db,
                objects: &self.bucket,
                index: &self.index,
                embedder: &self.embedder,
                clock: &self.clock,
                log: &self.log,
                metrics: &self.metrics,
                gate: &NoGate,
            },
            pipeline: PipelineConfig::new(),
            settings: IngestSettings::default().with_embed_batch(2),
            gating: None,
        }
    }

    /// Uploads a document of several sections and hands its processor the command.
    fn put(&self) {
        let text: String = (0..6)
            .map(|s| format!("## Section {s}\n\nWidgets of kind {s} ship from depot {s}.\n\n"))
            .collect();
        self.bucket
            .put(KEY, format!("# Watchdog\n\n{text}").as_bytes(), T0);
        let command = IngestCommand::Process {
            key: KEY.into(),
            object: None,
            force: false,
            reason: "admin:put".into(),
        };
        block_on(self.processor().command(&command)).expect("accepted");
    }

    fn wake(&self, alarm_running: bool) -> WakeOutcome {
        block_on(self.processor().wake(KEY, alarm_running)).expect("wake")
    }

    /// Fires the alarm as the platform does (the clock moves to it); `false` without one.
    fn fire_alarm(&self) -> bool {
        let Some(at) = self.storage.alarm.get() else {
            return false;
        };
        if at > self.clock.now_ms() {
            self.clock.now.set(at);
        }
        self.storage.alarm.set(None);
        block_on(self.processor().alarm()).expect("alarm");
        true
    }

    fn stage(&self) -> Stage {
        self.storage
            .state
            .borrow()
            .clone()
            .unwrap_or_default()
            .stage
    }

    fn run_to_the_end(&self) {
        for _ in 0..100 {
            if !self.fire_alarm() {
                return;
            }
        }
        panic!("still running after 100 alarms");
    }
}

#[test]
fn a_wake_while_the_alarm_is_armed_changes_nothing() {
    let h = Harness::new();
    h.put();
    let armed = h.storage.alarm.get().expect("the command arms an alarm");
    let state = h.storage.state.borrow().clone();
    assert_eq!(h.wake(false), WakeOutcome::Armed { at_ms: armed });
    assert_eq!(h.storage.alarm.get(), Some(armed));
    assert_eq!(
        *h.storage.state.borrow(),
        state,
        "a wake never changes the run"
    );
    assert_eq!(h.log.events("processor_alarm_rearmed"), 0);
}

#[test]
fn a_dropped_alarm_is_rearmed_and_the_document_ends_ready() {
    let h = Harness::new();
    h.put();
    // Into the embedding batches, then the platform drops the alarm (its retries ran out).
    while !matches!(h.stage(), Stage::Embedding { done: 1, .. }) {
        assert!(h.fire_alarm(), "stopped at {:?}", h.stage());
    }
    h.clock.advance(20 * 60_000);
    h.storage.alarm.set(None);
    assert!(!h.fire_alarm(), "nothing would ever run again");

    let outcome = h.wake(false);
    let WakeOutcome::Rearmed {
        at_ms,
        previous_ms: None,
    } = outcome
    else {
        panic!("expected a re-arm, got {outcome:?}");
    };
    assert!(at_ms <= h.clock.now_ms(), "due long ago: fires at once");
    assert_eq!(h.storage.alarm.get(), Some(at_ms));
    assert_eq!(h.log.events("processor_alarm_rearmed"), 1);

    h.run_to_the_end();
    assert_eq!(h.stage(), Stage::Ready);
    let row = h.db.row(KEY).expect("row");
    assert_eq!(row.status, "ready");
    let version = row.active_version.expect("live");
    assert_eq!(h.db.versions(row.id), [(version, row.chunk_count)].into());
    assert_eq!(h.index.vectors.borrow().len(), row.chunk_count as usize);
}

#[test]
fn two_wakes_in_a_row_rearm_once() {
    let h = Harness::new();
    h.put();
    h.storage.alarm.set(None);
    let first = h.wake(false);
    assert!(matches!(first, WakeOutcome::Rearmed { .. }), "{first:?}");
    let armed = h.storage.alarm.get();
    let second = h.wake(false);
    assert_eq!(
        second,
        WakeOutcome::Armed {
            at_ms: armed.expect("armed")
        }
    );
    assert_eq!(h.storage.alarm.get(), armed);
    assert_eq!(h.log.events("processor_alarm_rearmed"), 1);
    h.run_to_the_end();
    assert_eq!(h.stage(), Stage::Ready);
}

#[test]
fn a_wake_during_a_running_alarm_leaves_the_alarm_to_its_handler() {
    let h = Harness::new();
    h.put();
    // The platform clears the alarm as its handler starts; the handler sets the next one.
    h.storage.alarm.set(None);
    assert_eq!(h.wake(true), WakeOutcome::AlarmRunning);
    assert_eq!(h.storage.alarm.get(), None);
}

#[test]
fn a_wake_of_a_ready_or_unknown_document_is_a_no_op() {
    let h = Harness::new();
    assert_eq!(h.wake(false), WakeOutcome::NotRunning, "never requested");
    h.put();
    h.run_to_the_end();
    assert_eq!(h.stage(), Stage::Ready);
    let state = h.storage.state.borrow().clone();
    assert_eq!(h.wake(false), WakeOutcome::NotRunning);
    assert_eq!(h.storage.alarm.get(), None);
    assert_eq!(*h.storage.state.borrow(), state);
}

#[test]
fn a_wake_for_another_key_is_refused() {
    let h = Harness::new();
    h.put();
    let refused = block_on(h.processor().wake("companies/acme/other.md", false));
    assert!(
        matches!(refused, Err(CommandError::WrongProcessor { .. })),
        "{refused:?}"
    );
}

// ---- the cron run ---------------------------------------------------------

#[derive(Default)]
struct FakePorts {
    stalled: Vec<String>,
    asked: RefCell<Vec<(u64, u32)>>,
    woken: RefCell<Vec<String>>,
    listing_fails: bool,
    failing_key: Option<&'static str>,
}

impl WatchdogPorts for FakePorts {
    async fn stalled_documents(
        &self,
        before_ms: u64,
        limit: u32,
    ) -> Result<Vec<String>, StoreError> {
        self.asked.borrow_mut().push((before_ms, limit));
        if self.listing_fails {
            return Err(StoreError::transient("D1 stalled documents", "down"));
        }
        Ok(self.stalled.iter().take(limit as usize).cloned().collect())
    }

    async fn wake(&self, key: &str) -> Result<WakeOutcome, StoreError> {
        self.woken.borrow_mut().push(key.to_owned());
        if self.failing_key == Some(key) {
            return Err(StoreError::transient("processor wake", "unreachable"));
        }
        Ok(if key.ends_with("dropped.md") {
            WakeOutcome::Rearmed {
                at_ms: T0,
                previous_ms: None,
            }
        } else {
            WakeOutcome::Armed { at_ms: T0 }
        })
    }
}

#[test]
fn a_run_wakes_at_most_its_bound_of_stalled_documents() {
    let ports = FakePorts {
        stalled: (0..40)
            .map(|i| {
                if i % 10 == 0 {
                    format!("d{i}-dropped.md")
                } else {
                    format!("d{i}.md")
                }
            })
            .collect(),
        failing_key: Some("d3.md"),
        ..FakePorts::default()
    };
    let settings = WatchdogSettings::default();
    let log = Lines::default();
    let now = T0 + 3_600_000;
    let summary = block_on(run_watchdog(&ports, &log, &settings, now));
    assert_eq!(
        *ports.asked.borrow(),
        [(now - 15 * 60_000, MAX_WAKES_PER_RUN)],
        "rows unchanged for 15 minutes, at most the bound"
    );
    assert_eq!(ports.woken.borrow().len(), MAX_WAKES_PER_RUN as usize);
    assert_eq!(
        summary,
        WatchdogSummary {
            stalled: 25,
            rearmed: 3,
            armed: 21,
            not_running: 0,
            alarm_running: 0,
            failed: 1,
        }
    );
    assert_eq!(log.events("watchdog_rearmed"), 3);
    assert_eq!(log.events("watchdog_wake_failed"), 1);
}

#[test]
fn a_failed_listing_wakes_nobody_and_says_so() {
    let ports = FakePorts {
        listing_fails: true,
        stalled: vec!["a.md".into()],
        ..FakePorts::default()
    };
    let log = Lines::default();
    let summary = block_on(run_watchdog(&ports, &log, &WatchdogSettings::default(), T0));
    assert_eq!(summary, WatchdogSummary::default());
    assert!(ports.woken.borrow().is_empty());
    assert_eq!(log.events("watchdog_failed"), 1);
}
