use super::*;
use crate::ingest::pipeline::backoff::{OverloadWait, RetryPolicy, DEFAULT_STEP_WATCHDOG_MS};
use crate::ingest::pipeline::event::{BatchCounts, ObjectVersion, RunReason};
use crate::ingest::pipeline::state::{PublicStatus, SCHEMA_VERSION};
use proptest::prelude::*;

const T0: u64 = 1_700_000_000_000;
const WATCHDOG: u64 = DEFAULT_STEP_WATCHDOG_MS;

fn object(etag: &str, event_time_ms: u64) -> ObjectVersion {
    ObjectVersion {
        etag: etag.to_owned(),
        size: 1_024,
        event_time_ms,
        sha256: None,
    }
}

fn requested(etag: &str, event_time_ms: u64, force: bool) -> Event {
    Event::Requested {
        object_version: object(etag, event_time_ms),
        force,
        reason: RunReason::ObjectEvent,
    }
}

fn delete_requested(event_time_ms: u64) -> Event {
    Event::DeleteRequested {
        event_time_ms,
        reason: RunReason::ObjectEvent,
    }
}

/// What the chunker would report for a piece of content.
#[derive(Debug, Clone)]
struct Content {
    sha256: String,
    chunk_count: u32,
    batches: BatchCounts,
}

fn content(sha: &str, chunk_count: u32, embed: u32, tag: u32) -> Content {
    Content {
        sha256: sha.to_owned(),
        chunk_count,
        batches: BatchCounts { embed, tag },
    }
}

/// The successful result of a step action, as the Durable Object would report it.
fn success(action: &Action, content: &Content) -> Option<Event> {
    Some(match action {
        Action::Download { generation, .. } => Event::Downloaded {
            generation: *generation,
            sha256: content.sha256.clone(),
            bytes_len: 2_048,
        },
        Action::Chunk { generation, .. } => Event::Chunked {
            generation: *generation,
            chunk_count: content.chunk_count,
            batches: content.batches,
        },
        Action::EmbedBatch { generation, index } => Event::EmbeddedBatch {
            generation: *generation,
            index: *index,
        },
        Action::TagBatch { generation, index } => Event::TaggedBatch {
            generation: *generation,
            index: *index,
        },
        Action::CommitGeneration { version } => Event::Committed { version: *version },
        Action::DeleteDocument { generation } => Event::Deleted {
            generation: *generation,
        },
        _ => return None,
    })
}

fn step_action(actions: &[Action]) -> Option<&Action> {
    actions.iter().find(|a| a.step().is_some())
}

fn alarm(actions: &[Action]) -> Option<u64> {
    actions.iter().find_map(|a| match a {
        Action::ScheduleAlarm { at_ms } => Some(*at_ms),
        _ => None,
    })
}

fn records(actions: &[Action]) -> Vec<&RunRecord> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::RecordRun(r) => Some(r),
            _ => None,
        })
        .collect()
}

/// A fake Durable Object: persists state as JSON after every event, as the real one does.
struct Harness {
    state: ProcessorState,
    now: u64,
    config: PipelineConfig,
    alarms: u32,
}

impl Harness {
    fn new() -> Self {
        Self {
            state: ProcessorState::new(),
            now: T0,
            config: PipelineConfig::new(),
            alarms: 0,
        }
    }

    fn feed(&mut self, event: Event) -> Vec<Action> {
        let t = step(&self.state, event, self.now, &self.config);
        assert!(
            t.actions.iter().filter(|a| a.step().is_some()).count() <= 1,
            "one step action per transition: {:?}",
            t.actions
        );
        let json = t.state.to_json().unwrap();
        self.state = ProcessorState::from_json(&json).unwrap();
        assert_eq!(self.state, t.state);
        t.actions
    }

    /// Feeds `event` and asserts nothing happened.
    fn assert_ignored(&mut self, event: Event) {
        let before = self.state.clone();
        let actions = self.feed(event.clone());
        assert!(actions.is_empty(), "{event:?} produced {actions:?}");
        assert_eq!(self.state, before, "{event:?} changed the state");
    }

    fn fire_alarm(&mut self, actions: &[Action]) -> Vec<Action> {
        let at = alarm(actions).expect("an alarm is scheduled");
        self.now = self.now.max(at);
        self.alarms += 1;
        self.feed(Event::AlarmFired)
    }

    /// Plays a healthy Durable Object until no step is due; returns all actions seen.
    fn drive(&mut self, mut actions: Vec<Action>, content: &Content) -> Vec<Action> {
        let mut seen = Vec::new();
        loop {
            seen.extend(actions.iter().cloned());
            if let Some(event) = step_action(&actions).and_then(|a| success(a, content)) {
                self.now += 7;
                actions = self.feed(event);
            } else if self.state.stage.is_running() && alarm(&actions).is_some() {
                actions = self.fire_alarm(&actions);
            } else {
                return seen;
            }
        }
    }

    fn generation(&self) -> u64 {
        self.state.run.as_ref().unwrap().generation
    }
}

fn ready_document(h: &mut Harness, etag: &str, content: &Content) {
    let actions = h.feed(requested(etag, h.now, false));
    h.drive(actions, content);
    assert_eq!(h.state.stage, Stage::Ready);
}

#[test]
fn every_transition_of_a_successful_run() {
    let mut h = Harness::new();
    let content = content("aa", 5, 2, 1);

    let actions = h.feed(requested("e1", T0, false));
    assert_eq!(h.state.stage, Stage::Queued);
    assert_eq!(h.state.last_generation, 1);
    assert!(
        matches!(&actions[..], [Action::ScheduleAlarm { at_ms }, Action::MarkDocumentStatus(v)]
        if *at_ms == T0 && v.status == PublicStatus::Queued)
    );

    h.now += 10;
    let actions = h.feed(Event::AlarmFired);
    assert_eq!(h.state.stage, Stage::Downloading);
    assert!(matches!(&actions[..], [
        Action::ScheduleAlarm { at_ms },
        Action::MarkDocumentStatus(v),
        Action::Download { generation: 1, object },
    ] if *at_ms == T0 + 10 + WATCHDOG && v.status == PublicStatus::Processing
        && v.step == Some(PipelineStep::Download) && object.etag == "e1"));
    let run = h.state.run.as_ref().unwrap();
    assert_eq!((run.attempts, run.started_at_ms), (1, Some(T0 + 10)));

    h.now += 100;
    let actions = h.feed(Event::Downloaded {
        generation: 1,
        sha256: "aa".into(),
        bytes_len: 9,
    });
    assert_eq!(h.state.stage, Stage::Chunking);
    assert_eq!(alarm(&actions), Some(h.now));
    assert!(
        step_action(&actions).is_none(),
        "next step waits for its alarm"
    );
    assert_eq!(h.state.run.as_ref().unwrap().attempts, 0);

    let actions = h.fire_alarm(&actions);
    assert!(
        matches!(step_action(&actions), Some(Action::Chunk { generation: 1, sha256, .. }) if sha256 == "aa")
    );
    let actions = h.feed(Event::Chunked {
        generation: 1,
        chunk_count: 5,
        batches: content.batches,
    });
    assert_eq!(h.state.stage, Stage::Embedding { done: 0, total: 2 });

    let actions = h.fire_alarm(&actions);
    assert_eq!(
        step_action(&actions),
        Some(&Action::EmbedBatch {
            generation: 1,
            index: 0
        })
    );
    let actions = h.feed(Event::EmbeddedBatch {
        generation: 1,
        index: 0,
    });
    assert_eq!(h.state.stage, Stage::Embedding { done: 1, total: 2 });
    let view = h.state.status_view().unwrap();
    assert_eq!(
        view.progress,
        Some(crate::ingest::pipeline::Progress { done: 1, total: 2 })
    );
    let actions = h.fire_alarm(&actions);
    assert_eq!(
        step_action(&actions),
        Some(&Action::EmbedBatch {
            generation: 1,
            index: 1
        })
    );
    let actions = h.feed(Event::EmbeddedBatch {
        generation: 1,
        index: 1,
    });
    assert_eq!(h.state.stage, Stage::Tagging { done: 0, total: 1 });

    let actions = h.fire_alarm(&actions);
    assert_eq!(
        step_action(&actions),
        Some(&Action::TagBatch {
            generation: 1,
            index: 0
        })
    );
    let actions = h.feed(Event::TaggedBatch {
        generation: 1,
        index: 0,
    });
    assert_eq!(h.state.stage, Stage::Committing);

    let actions = h.fire_alarm(&actions);
    assert_eq!(
        step_action(&actions),
        Some(&Action::CommitGeneration { version: 1 })
    );
    h.now += 50;
    let actions = h.feed(Event::Committed { version: 1 });
    assert_eq!(h.state.stage, Stage::Ready);
    let live = h.state.live.as_ref().unwrap();
    assert_eq!(
        (live.version, live.chunk_count, live.sha256.as_str()),
        (1, 5, "aa")
    );
    assert!(
        !actions
            .iter()
            .any(|a| matches!(a, Action::DeletePreviousGeneration { .. })),
        "first generation replaces nothing"
    );
    let [record] = records(&actions)[..] else {
        panic!("one run record: {actions:?}")
    };
    assert_eq!(record.outcome, RunOutcome::Committed);
    assert_eq!(record.chunk_count, Some(5));
    assert_eq!(
        record.steps.iter().map(|s| s.step).collect::<Vec<_>>(),
        [
            PipelineStep::Download,
            PipelineStep::Chunk,
            PipelineStep::Embed,
            PipelineStep::Tag,
            PipelineStep::Commit
        ]
    );
    assert_eq!(record.steps[0].duration_ms(), Some(100));
    assert_eq!(record.steps[2].attempts, 2, "one attempt per batch");
    assert_eq!(record.steps[4].duration_ms(), Some(50));
    let view = h.state.status_view().unwrap();
    assert_eq!(view.status, PublicStatus::Ready);
    assert_eq!(view.active_version, Some(1));
    assert_eq!(view.chunk_count, Some(5));
    assert_eq!(view.finished_at_ms, Some(h.now));
    assert!(actions
        .iter()
        .any(|a| matches!(a, Action::MarkDocumentStatus(v) if v.status == PublicStatus::Ready)));

    // Nothing is due any more.
    h.assert_ignored(Event::AlarmFired);
}

#[test]
fn retryable_failures_back_off_exponentially_then_fail_after_three_attempts() {
    let mut h = Harness::new();
    let actions = h.feed(requested("e1", T0, false));
    let mut actions = h.fire_alarm(&actions);
    let mut delays = Vec::new();
    loop {
        assert!(matches!(
            step_action(&actions),
            Some(Action::Download { .. })
        ));
        let failed_at = h.now;
        actions = h.feed(Event::StepFailed {
            generation: 1,
            step: PipelineStep::Download,
            error: StepError::retryable("R2 503"),
        });
        if let Stage::Failed { .. } = h.state.stage {
            break;
        }
        let at = alarm(&actions).unwrap();
        delays.push(at - failed_at);
        // An early alarm only re-arms the backoff.
        let early = step(&h.state, Event::AlarmFired, at - 1, &h.config);
        assert!(step_action(&early.actions).is_none());
        assert_eq!(alarm(&early.actions), Some(at));
        actions = h.fire_alarm(&actions);
    }
    assert_eq!(delays, vec![2_000, 4_000]);
    assert_eq!(
        h.state.stage,
        Stage::Failed {
            step: PipelineStep::Download
        }
    );
    let view = h.state.status_view().unwrap();
    assert_eq!(view.status, PublicStatus::Failed);
    assert_eq!(view.attempts, 3);
    assert_eq!(view.last_error.unwrap().message, "R2 503");
    assert_eq!(records(&actions)[0].attempts, 3);
    assert_eq!(records(&actions)[0].outcome, RunOutcome::Failed);
    h.assert_ignored(Event::AlarmFired);
}

#[test]
fn max_attempts_and_delays_follow_the_config() {
    let mut h = Harness::new();
    h.config = PipelineConfig::new().with_retry(
        RetryPolicy::new()
            .with_max_attempts(5)
            .unwrap()
            .with_base_delay_ms(100)
            .unwrap()
            .with_max_delay_ms(300)
            .unwrap(),
    );
    let actions = h.feed(requested("e1", T0, false));
    h.fire_alarm(&actions);
    let mut delays = Vec::new();
    while h.state.stage.is_running() {
        let failed_at = h.now;
        let actions = h.feed(Event::StepFailed {
            generation: 1,
            step: PipelineStep::Download,
            error: StepError::retryable("busy"),
        });
        if h.state.stage.is_running() {
            delays.push(alarm(&actions).unwrap() - failed_at);
            h.fire_alarm(&actions);
        }
    }
    assert_eq!(delays, vec![100, 200, 300, 300]);
    assert_eq!(h.state.run.as_ref().unwrap().attempts, 5);
}

#[test]
fn permanent_error_fails_at_once_and_discards_the_generation() {
    let mut h = Harness::new();
    let actions = h.feed(requested("e1", T0, false));
    let actions = h.drive_until(actions, &content("aa", 3, 1, 0), PipelineStep::Embed);
    assert!(step_action(&actions).is_some());
    let actions = h.feed(Event::StepFailed {
        generation: 1,
        step: PipelineStep::Embed,
        error: StepError::permanent("provider rejected the API key"),
    });
    assert_eq!(
        h.state.stage,
        Stage::Failed {
            step: PipelineStep::Embed
        }
    );
    assert_eq!(h.state.run.as_ref().unwrap().attempts, 1);
    assert!(actions.contains(&Action::DiscardGeneration { version: 1 }));
    assert!(alarm(&actions).is_none());
}

impl Harness {
    /// Drives until the action for `step` has been issued (and not answered).
    fn drive_until(
        &mut self,
        mut actions: Vec<Action>,
        content: &Content,
        target: PipelineStep,
    ) -> Vec<Action> {
        loop {
            match step_action(&actions) {
                Some(a) if a.step() == Some(target) => return actions,
                Some(a) => {
                    let event = success(a, content).unwrap();
                    actions = self.feed(event);
                }
                None => actions = self.fire_alarm(&actions),
            }
        }
    }
}

#[test]
fn attempts_reset_when_a_batch_succeeds() {
    let mut h = Harness::new();
    let c = content("aa", 4, 2, 0);
    let actions = h.feed(requested("e1", T0, false));
    let mut actions = h.drive_until(actions, &c, PipelineStep::Embed);
    // Two failures on every batch: 2 < 3 attempts, so the run survives.
    for index in 0..2 {
        for _ in 0..2 {
            actions = h.feed(Event::StepFailed {
                generation: 1,
                step: PipelineStep::Embed,
                error: StepError::retryable("429"),
            });
            actions = h.fire_alarm(&actions);
            assert_eq!(
                step_action(&actions),
                Some(&Action::EmbedBatch {
                    generation: 1,
                    index
                })
            );
        }
        assert_eq!(h.state.run.as_ref().unwrap().attempts, 3);
        actions = h.feed(Event::EmbeddedBatch {
            generation: 1,
            index,
        });
        assert_eq!(h.state.run.as_ref().unwrap().attempts, 0);
        if index == 0 {
            actions = h.fire_alarm(&actions);
        }
    }
    let seen = h.drive(actions, &c);
    assert_eq!(h.state.stage, Stage::Ready);
    let record = records(&seen)[0];
    let embed = record
        .steps
        .iter()
        .find(|s| s.step == PipelineStep::Embed)
        .unwrap();
    assert_eq!(embed.attempts, 6);
    assert_eq!(record.error.as_ref().unwrap().message, "429");
}

#[test]
fn newer_request_supersedes_mid_embedding_and_old_results_are_ignored() {
    let mut h = Harness::new();
    let old = content("aa", 10, 5, 0);
    ready_document(&mut h, "e1", &old);
    let actions = h.feed(requested("e2", T0 + 1_000, false));
    h.drive_until(actions, &content("bb", 10, 5, 0), PipelineStep::Embed);
    let actions = h.feed(Event::EmbeddedBatch {
        generation: 2,
        index: 0,
    });
    h.fire_alarm(&actions);
    assert_eq!(h.state.stage, Stage::Embedding { done: 1, total: 5 });

    let actions = h.feed(requested("e3", T0 + 2_000, false));
    assert_eq!(h.state.stage, Stage::Queued);
    assert_eq!(h.generation(), 3);
    assert_eq!(h.state.last_generation, 3);
    assert!(actions.contains(&Action::DiscardGeneration { version: 2 }));
    let superseded = records(&actions);
    assert_eq!(superseded.len(), 1);
    assert_eq!(superseded[0].generation, 2);
    assert_eq!(superseded[0].outcome, RunOutcome::Superseded);
    assert_eq!(
        h.state.live.as_ref().unwrap().version,
        1,
        "old generation still serves"
    );

    // The in-flight batch of generation 2 reports late: ignored.
    h.assert_ignored(Event::EmbeddedBatch {
        generation: 2,
        index: 1,
    });
    h.assert_ignored(Event::StepFailed {
        generation: 2,
        step: PipelineStep::Embed,
        error: StepError::permanent("late"),
    });
    h.assert_ignored(Event::Committed { version: 2 });

    let seen = h.drive(actions, &content("cc", 10, 5, 0));
    assert_eq!(h.state.stage, Stage::Ready);
    assert_eq!(h.state.live.as_ref().unwrap().version, 3);
    assert!(seen.contains(&Action::DeletePreviousGeneration { version: 1 }));
}

#[test]
fn duplicate_deliveries_are_no_ops() {
    let mut h = Harness::new();
    let c = content("aa", 2, 1, 0);
    let actions = h.feed(requested("e1", T0, false));
    // Redelivery of the running version, before and after it started.
    h.assert_ignored(requested("e1", T0, false));
    let actions = h.drive_until(actions, &c, PipelineStep::Chunk);
    h.assert_ignored(requested("e1", T0, false));
    h.drive(actions, &c);
    assert_eq!(h.state.stage, Stage::Ready);
    // Redelivery of the last completed version.
    h.assert_ignored(requested("e1", T0, false));
    // A duplicate step result.
    h.assert_ignored(Event::Committed { version: 1 });
    h.assert_ignored(Event::Downloaded {
        generation: 1,
        sha256: "aa".into(),
        bytes_len: 1,
    });
    // A second delete while deleting.
    let actions = h.feed(delete_requested(T0 + 5));
    assert_eq!(h.state.stage, Stage::Deleting);
    h.assert_ignored(delete_requested(T0 + 6));
    h.drive(actions, &c);
    assert_eq!(h.state.stage, Stage::Deleted);
    h.assert_ignored(delete_requested(T0 + 7));
}

#[test]
fn stale_requests_are_ignored() {
    let mut h = Harness::new();
    let actions = h.feed(requested("e2", T0 + 1_000, false));
    h.assert_ignored(requested("e1", T0, false));
    h.assert_ignored(requested("e1", T0, true));
    h.assert_ignored(delete_requested(T0 + 999));
    h.drive(actions, &content("bb", 1, 1, 0));
    assert_eq!(h.state.live.as_ref().unwrap().object.etag, "e2");
    // Same time, different etag: the later delivery wins.
    let actions = h.feed(requested("e3", T0 + 1_000, false));
    assert_eq!(h.state.stage, Stage::Queued);
    assert!(alarm(&actions).is_some());
}

#[test]
fn unchanged_content_ends_ready_without_re_embedding() {
    let mut h = Harness::new();
    let c = content("aa", 8, 2, 1);
    ready_document(&mut h, "e1", &c);
    h.now += 60_000;
    // Same bytes uploaded again (multipart: a different etag).
    let actions = h.feed(requested("e1-multipart", h.now, false));
    let seen = h.drive(actions, &c);
    assert_eq!(h.state.stage, Stage::Ready);
    assert!(
        !seen.iter().any(|a| matches!(
            a,
            Action::Chunk { .. } | Action::EmbedBatch { .. } | Action::CommitGeneration { .. }
        )),
        "{seen:?}"
    );
    let live = h.state.live.as_ref().unwrap();
    assert_eq!(live.version, 1);
    assert_eq!(live.object.etag, "e1-multipart");
    assert_eq!(records(&seen)[0].outcome, RunOutcome::Unchanged);
    assert_eq!(h.state.status_view().unwrap().status, PublicStatus::Ready);

    // When the uploader recorded the hash, not even the download happens.
    let mut with_sha = object("e1-again", h.now);
    with_sha.sha256 = Some("aa".into());
    let actions = h.feed(Event::Requested {
        object_version: with_sha,
        force: false,
        reason: RunReason::ObjectEvent,
    });
    assert!(step_action(&actions).is_none());
    assert!(alarm(&actions).is_none());
    assert_eq!(records(&actions)[0].outcome, RunOutcome::Unchanged);
    assert_eq!(h.state.stage, Stage::Ready);
    assert_eq!(h.state.live.as_ref().unwrap().version, 1);
}

#[test]
fn force_re_runs_unchanged_content_and_replaces_the_generation() {
    let mut h = Harness::new();
    let c = content("aa", 3, 1, 0);
    ready_document(&mut h, "e1", &c);
    let actions = h.feed(requested("e1", T0, true));
    assert_eq!(h.state.stage, Stage::Queued);
    assert_eq!(h.generation(), 2);
    // A forced run is not a duplicate of itself unless also forced.
    h.assert_ignored(requested("e1", T0, true));
    h.assert_ignored(requested("e1", T0, false));
    let seen = h.drive(actions, &c);
    assert!(seen.iter().any(|a| matches!(a, Action::EmbedBatch { .. })));
    assert_eq!(h.state.live.as_ref().unwrap().version, 2);
    assert!(seen.contains(&Action::DeletePreviousGeneration { version: 1 }));
    assert!(records(&seen)[0].force);
}

#[test]
fn delete_mid_run_supersedes_it_and_a_later_request_starts_fresh() {
    let mut h = Harness::new();
    let c = content("aa", 6, 3, 0);
    ready_document(&mut h, "e1", &c);
    let actions = h.feed(requested("e2", T0 + 10, false));
    h.drive_until(actions, &content("bb", 6, 3, 0), PipelineStep::Embed);

    let actions = h.feed(delete_requested(T0 + 20));
    assert_eq!(h.state.stage, Stage::Deleting);
    assert_eq!(h.generation(), 3);
    assert!(actions.contains(&Action::DiscardGeneration { version: 2 }));
    assert_eq!(records(&actions)[0].outcome, RunOutcome::Superseded);
    h.assert_ignored(Event::EmbeddedBatch {
        generation: 2,
        index: 0,
    });

    let actions = h.fire_alarm(&actions);
    assert_eq!(
        step_action(&actions),
        Some(&Action::DeleteDocument { generation: 3 })
    );
    assert_eq!(
        h.state.status_view().unwrap().step,
        Some(PipelineStep::Delete)
    );
    let actions = h.feed(Event::Deleted { generation: 3 });
    assert_eq!(h.state.stage, Stage::Deleted);
    assert_eq!(h.state.live, None);
    assert_eq!(records(&actions)[0].outcome, RunOutcome::Deleted);
    let view = h.state.status_view().unwrap();
    assert_eq!(
        (view.status, view.active_version),
        (PublicStatus::Deleted, None)
    );

    // An upload older than the delete arrives late: ignored.
    h.assert_ignored(requested("e2", T0 + 10, false));
    // The same content uploaded again after the delete: a fresh run.
    let actions = h.feed(requested("e1", T0 + 30, false));
    assert_eq!(h.state.stage, Stage::Queued);
    assert_eq!(h.generation(), 4);
    let seen = h.drive(actions, &c);
    assert_eq!(h.state.live.as_ref().unwrap().version, 4);
    assert!(seen.iter().any(|a| matches!(a, Action::EmbedBatch { .. })));
}

#[test]
fn requests_during_commit_or_delete_wait_for_it() {
    let mut h = Harness::new();
    let c = content("aa", 2, 1, 0);
    let actions = h.feed(requested("e1", T0, false));
    h.drive_until(actions, &c, PipelineStep::Commit);

    let actions = h.feed(requested("e2", T0 + 1, false));
    assert!(actions.is_empty());
    assert_eq!(h.state.stage, Stage::Committing);
    assert!(h.state.deferred.is_some());
    h.assert_ignored(requested("e2", T0 + 1, false));

    let actions = h.feed(Event::Committed { version: 1 });
    assert_eq!(h.state.live.as_ref().unwrap().version, 1);
    assert_eq!(h.state.stage, Stage::Queued, "deferred request starts");
    assert_eq!(h.generation(), 2);
    assert_eq!(h.state.deferred, None);
    assert_eq!(records(&actions)[0].outcome, RunOutcome::Committed);

    let actions = h.drive_until(actions, &content("bb", 2, 1, 0), PipelineStep::Commit);
    // A delete during the commit waits too, then runs.
    assert!(h.feed(delete_requested(T0 + 2)).is_empty());
    let actions = h.feed(success(step_action(&actions).unwrap(), &c).unwrap());
    assert_eq!(h.state.stage, Stage::Deleting);
    assert!(actions.contains(&Action::DeletePreviousGeneration { version: 1 }));
    h.drive(actions, &c);
    assert_eq!(h.state.stage, Stage::Deleted);
}

#[test]
fn crash_mid_step_counts_the_attempt_and_reissues_the_same_action() {
    let mut h = Harness::new();
    let c = content("aa", 30, 3, 0);
    let actions = h.feed(requested("e1", T0, false));
    let actions = h.drive_until(actions, &c, PipelineStep::Embed);
    let actions = h.feed(success(step_action(&actions).unwrap(), &c).unwrap());
    let issued = h.fire_alarm(&actions);
    let expected = Action::EmbedBatch {
        generation: 1,
        index: 1,
    };
    assert_eq!(step_action(&issued), Some(&expected));
    // The watchdog is armed, and the attempt counted, before the step runs.
    assert_eq!(alarm(&issued), Some(h.now + WATCHDOG));
    assert!(matches!(issued[0], Action::ScheduleAlarm { .. }));
    assert_eq!(h.state.run.as_ref().unwrap().attempts, 1);

    // The invocation died during the batch. The saved state is all that is left.
    let saved = h.state.to_json().unwrap();
    h.state = ProcessorState::from_json(&saved).unwrap();

    // The next alarm (the watchdog, or the platform's retry, whichever comes
    // first) finds the attempt in flight: it failed, and the same action is
    // issued again as attempt 2, with a new watchdog.
    h.now += 1;
    let again = h.feed(Event::AlarmFired);
    assert_eq!(step_action(&again), Some(&expected));
    assert_eq!(alarm(&again), Some(h.now + WATCHDOG));
    let run = h.state.run.as_ref().unwrap();
    assert_eq!((run.attempts, run.retries), (2, 1));
    assert!(run.in_flight.is_some());
    let error = run.last_error.clone().unwrap();
    assert!(error.retryable);
    assert_eq!(
        error.message,
        "step embed did not finish in attempt 1 of 3 (the Worker crashed, ran out of \
         stack/memory or was evicted during it); trying again"
    );
    assert_eq!(
        h.state.status_view().unwrap().status,
        PublicStatus::Processing
    );

    // Attempt 2, lost the same way: attempt 3.
    let again = h.fire_alarm(&again);
    assert_eq!(step_action(&again), Some(&expected));
    assert_eq!(h.state.run.as_ref().unwrap().attempts, 3);
    // Attempt 3, lost too: the alarm after it fails the run instead of looping.
    let last = h.fire_alarm(&again);
    assert!(step_action(&last).is_none());
    assert!(alarm(&last).is_none());
    assert_eq!(
        h.state.stage,
        Stage::Failed {
            step: PipelineStep::Embed
        }
    );
    assert!(last.contains(&Action::DiscardGeneration { version: 1 }));
    let view = h.state.status_view().unwrap();
    assert_eq!(
        (view.status, view.step, view.attempts),
        (PublicStatus::Failed, Some(PipelineStep::Embed), 3)
    );
    assert_eq!(
        view.last_error.unwrap().message,
        "step embed did not finish in 3 attempts (the Worker crashed or ran out of \
         stack/memory during it)"
    );
    let record = records(&last)[0];
    assert_eq!(record.outcome, RunOutcome::Failed);
    // Attempts of the whole run: download, chunk, embed batch 0, then batch 1 three times.
    assert_eq!((record.attempts, record.retries), (6, 2));
    assert!(record
        .error
        .as_ref()
        .is_some_and(|e| e.message.contains("3 attempts")));
    assert!(last
        .iter()
        .any(|a| matches!(a, Action::MarkDocumentStatus(v) if v.status == PublicStatus::Failed)));
}

#[test]
fn a_step_that_crashes_its_invocation_every_time_fails_within_bounded_alarms() {
    // The chunk step of a poison document: every attempt kills the
    // invocation. Whatever the configured attempts, the alarm that finds an
    // attempt lost issues the next one, and the alarm after the last fails
    // the run: `max_attempts` alarms after the first issue.
    for max_attempts in [1, 3, 5] {
        let mut h = Harness::new();
        h.config = PipelineConfig::new()
            .with_retry(RetryPolicy::new().with_max_attempts(max_attempts).unwrap());
        let c = content("aa", 3, 1, 0);
        let actions = h.feed(requested("e1", T0, false));
        let mut actions = h.drive_until(actions, &c, PipelineStep::Chunk);
        h.alarms = 0;
        while h.state.stage.is_running() {
            assert!(
                h.alarms < max_attempts,
                "still running after {} alarms",
                h.alarms
            );
            actions = h.fire_alarm(&actions);
        }
        assert_eq!(h.alarms, max_attempts);
        assert_eq!(
            h.state.stage,
            Stage::Failed {
                step: PipelineStep::Chunk
            }
        );
        let error = h.state.run.as_ref().unwrap().last_error.clone().unwrap();
        assert_eq!(
            error.message,
            format!(
                "step chunk did not finish in {max_attempts} attempts (the Worker crashed or \
                 ran out of stack/memory during it)"
            )
        );
    }
}

#[test]
fn crash_after_result_resumes_from_the_next_step() {
    let mut h = Harness::new();
    let c = content("aa", 4, 2, 0);
    let actions = h.feed(requested("e1", T0, false));
    let actions = h.drive_until(actions, &c, PipelineStep::Embed);
    let after_batch = h.feed(success(step_action(&actions).unwrap(), &c).unwrap());
    // Saved with the next alarm scheduled; the isolate dies before the
    // alarm; on restart the alarm fires and the next batch is issued.
    h.state = ProcessorState::from_json(&h.state.to_json().unwrap()).unwrap();
    let actions = h.fire_alarm(&after_batch);
    assert_eq!(
        step_action(&actions),
        Some(&Action::EmbedBatch {
            generation: 1,
            index: 1
        })
    );
    assert_eq!(h.state.run.as_ref().unwrap().attempts, 1);
}

#[test]
fn thousand_chunk_document_runs_one_batch_per_alarm() {
    let mut h = Harness::new();
    // 1,250 chunks: 13 embedding batches of up to 96, 25 tagging batches of 50.
    let c = content("big", 1_250, 13, 25);
    let actions = h.feed(requested("e1", T0, false));
    let seen = h.drive(actions, &c);
    assert_eq!(h.state.stage, Stage::Ready);
    let embeds: Vec<u32> = seen
        .iter()
        .filter_map(|a| match a {
            Action::EmbedBatch { index, .. } => Some(*index),
            _ => None,
        })
        .collect();
    assert_eq!(embeds, (0..13).collect::<Vec<_>>());
    let tags = seen
        .iter()
        .filter(|a| matches!(a, Action::TagBatch { .. }))
        .count();
    assert_eq!(tags, 25);
    // download + chunk + 13 + 25 + commit = 41 alarms, one step each.
    assert_eq!(h.alarms, 41);
    let run = h.state.run.as_ref().unwrap();
    assert_eq!(run.batches_done, c.batches);
    assert_eq!(h.state.status_view().unwrap().chunk_count, Some(1_250));
}

#[test]
fn failed_run_can_be_retried_with_the_same_version() {
    let mut h = Harness::new();
    let actions = h.feed(requested("e1", T0, false));
    h.fire_alarm(&actions);
    h.feed(Event::StepFailed {
        generation: 1,
        step: PipelineStep::Download,
        error: StepError::permanent("404"),
    });
    assert!(matches!(h.state.stage, Stage::Failed { .. }));
    let actions = h.feed(Event::Requested {
        object_version: object("e1", T0),
        force: false,
        reason: RunReason::Admin,
    });
    assert_eq!(h.state.stage, Stage::Queued);
    assert_eq!(h.generation(), 2);
    h.drive(actions, &content("aa", 1, 1, 0));
    assert_eq!(h.state.stage, Stage::Ready);
    assert_eq!(h.state.run_reason(), Some(RunReason::Admin));
}

#[test]
fn inconsistent_chunk_plan_fails_permanently() {
    let mut h = Harness::new();
    let actions = h.feed(requested("e1", T0, false));
    h.drive_until(actions, &content("aa", 0, 0, 0), PipelineStep::Chunk);
    h.feed(Event::Chunked {
        generation: 1,
        chunk_count: 10,
        batches: BatchCounts { embed: 0, tag: 0 },
    });
    assert_eq!(
        h.state.stage,
        Stage::Failed {
            step: PipelineStep::Chunk
        }
    );
    assert!(
        !h.state
            .run
            .as_ref()
            .unwrap()
            .last_error
            .as_ref()
            .unwrap()
            .retryable
    );
}

#[test]
fn empty_document_commits_an_empty_generation() {
    let mut h = Harness::new();
    let actions = h.feed(requested("e1", T0, false));
    let seen = h.drive(actions, &content("empty", 0, 0, 0));
    assert_eq!(h.state.stage, Stage::Ready);
    assert!(seen.contains(&Action::CommitGeneration { version: 1 }));
    assert_eq!(h.state.live.as_ref().unwrap().chunk_count, 0);
}

#[test]
fn mismatched_results_are_ignored() {
    let mut h = Harness::new();
    let c = content("aa", 6, 3, 0);
    let actions = h.feed(requested("e1", T0, false));
    // A result before the step was issued.
    h.assert_ignored(Event::Downloaded {
        generation: 1,
        sha256: "aa".into(),
        bytes_len: 1,
    });
    h.drive_until(actions, &c, PipelineStep::Embed);
    // Wrong batch index, wrong step, unknown generation.
    h.assert_ignored(Event::EmbeddedBatch {
        generation: 1,
        index: 2,
    });
    h.assert_ignored(Event::TaggedBatch {
        generation: 1,
        index: 0,
    });
    h.assert_ignored(Event::EmbeddedBatch {
        generation: 9,
        index: 0,
    });
    h.assert_ignored(Event::Deleted { generation: 1 });
    assert_eq!(h.state.schema_version, SCHEMA_VERSION);
}

// ---- property test: random event sequences ---------------------------

#[derive(Debug, Clone)]
enum Seed {
    Request { etag: u8, time: u64, force: bool },
    Delete { time: u64 },
    Alarm { advance: u64 },
    Succeed,
    Fail { retryable: bool, overloaded: bool },
    Deferred { wait: u64 },
    StaleResult,
}

fn arb_seed() -> impl Strategy<Value = Seed> {
    prop_oneof![
        2 => (0_u8..4, 0_u64..20, any::<bool>())
            .prop_map(|(etag, time, force)| Seed::Request { etag, time, force }),
        1 => (0_u64..20).prop_map(|time| Seed::Delete { time }),
        4 => (0_u64..200_000).prop_map(|advance| Seed::Alarm { advance }),
        10 => Just(Seed::Succeed),
        2 => (any::<bool>(), any::<bool>())
            .prop_map(|(retryable, overloaded)| Seed::Fail { retryable, overloaded }),
        1 => (0_u64..20_000).prop_map(|wait| Seed::Deferred { wait }),
        1 => Just(Seed::StaleResult),
    ]
}

/// Content per etag: etags 0 and 2 share bytes, etag 3 is empty.
fn content_of(etag: &str) -> Content {
    match etag {
        "e0" | "e2" => content("sha-even", 7, 3, 2),
        "e3" => content("sha-empty", 0, 0, 0),
        _ => content("sha-odd", 4, 2, 0),
    }
}

fn event_for(seed: &Seed, state: &ProcessorState, now: &mut u64) -> Event {
    let run = state.run.as_ref();
    let generation = run.map_or(0, |r| r.generation);
    let current = state.stage.step().filter(|_| state.stage != Stage::Queued);
    match seed {
        Seed::Request { etag, time, force } => {
            requested(&format!("e{etag}"), T0 + time * 1_000, *force)
        }
        Seed::Delete { time } => delete_requested(T0 + time * 1_000),
        Seed::Alarm { advance } => {
            *now += advance;
            Event::AlarmFired
        }
        // A healthy object fires the alarm before there is a result to report.
        Seed::Succeed if state.stage.is_running() && run.is_some_and(|r| r.in_flight.is_none()) => {
            *now = (*now).max(run.map_or(0, |r| r.not_before_ms));
            Event::AlarmFired
        }
        Seed::Succeed | Seed::StaleResult => {
            let etag = run
                .and_then(|r| r.object())
                .map_or("e1", |o| o.etag.as_str());
            let c = content_of(etag);
            let g = if matches!(seed, Seed::StaleResult) {
                generation.saturating_sub(1)
            } else {
                generation
            };
            let (done, _) = match state.stage {
                Stage::Embedding { done, total } | Stage::Tagging { done, total } => (done, total),
                _ => (0, 0),
            };
            match current {
                Some(PipelineStep::Download) => Event::Downloaded {
                    generation: g,
                    sha256: c.sha256,
                    bytes_len: 10,
                },
                Some(PipelineStep::Chunk) => Event::Chunked {
                    generation: g,
                    chunk_count: c.chunk_count,
                    batches: c.batches,
                },
                Some(PipelineStep::Embed) => Event::EmbeddedBatch {
                    generation: g,
                    index: done,
                },
                Some(PipelineStep::Tag) => Event::TaggedBatch {
                    generation: g,
                    index: done,
                },
                Some(PipelineStep::Commit) => Event::Committed { version: g },
                Some(PipelineStep::Delete) => Event::Deleted { generation: g },
                None => Event::AlarmFired,
            }
        }
        Seed::Fail {
            retryable,
            overloaded,
        } => Event::StepFailed {
            generation,
            step: current.unwrap_or(PipelineStep::Download),
            error: StepError {
                message: "boom".into(),
                retryable: *retryable,
                overloaded: *overloaded,
            },
        },
        Seed::Deferred { wait } => Event::StepDeferred {
            generation,
            step: current.unwrap_or(PipelineStep::Embed),
            index: match state.stage {
                Stage::Embedding { done, .. } | Stage::Tagging { done, .. } => Some(done),
                _ => None,
            },
            retry_at_ms: *now + wait,
        },
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn random_event_sequences_keep_the_invariants(seeds in prop::collection::vec(arb_seed(), 1..80)) {
        let config = PipelineConfig::new();
        let max_attempts = config.retry().max_attempts();
        let mut state = ProcessorState::new();
        let mut now = T0;
        for seed in &seeds {
            let event = event_for(seed, &state, &mut now);
            let t = step(&state, event.clone(), now, &config);
            let next = &t.state;

            prop_assert!(next.last_generation >= state.last_generation);
            if let (Some(before), Some(after)) = (&state.live, &next.live) {
                prop_assert!(after.version >= before.version);
            }
            if let Some(live) = &next.live {
                prop_assert!(live.version <= next.last_generation);
            }
            if let Some(run) = &next.run {
                prop_assert!(run.attempts <= max_attempts);
                prop_assert_eq!(run.generation, next.last_generation);
                prop_assert_eq!(run.outcome.is_none(), next.stage.is_running());
                if next.stage == Stage::Ready && run.outcome == Some(RunOutcome::Committed) {
                    prop_assert_eq!(Some(run.batches_done), run.batches);
                    prop_assert_eq!(next.live.as_ref().map(|l| l.version), Some(run.generation));
                }
            }
            if let Stage::Embedding { done, total } | Stage::Tagging { done, total } = next.stage {
                prop_assert!(done < total);
            }
            let step_actions: Vec<&Action> =
                t.actions.iter().filter(|a| a.step().is_some()).collect();
            prop_assert!(step_actions.len() <= 1);
            if let Some(action) = step_actions.first() {
                let position = t.actions.iter().position(|a| a == *action).unwrap();
                prop_assert!(
                    t.actions[..position].iter().any(|a| matches!(a, Action::ScheduleAlarm { .. })),
                    "watchdog alarm before the step action"
                );
                prop_assert_eq!(action.step(), next.stage.step());
            }
            let alarms = t.actions.iter().filter(|a| matches!(a, Action::ScheduleAlarm { .. })).count();
            prop_assert!(alarms <= 1);
            let round_trip = ProcessorState::from_json(&next.to_json().unwrap()).unwrap();
            prop_assert_eq!(&round_trip, next);
            // Feeding a result twice never changes anything the second time.
            if !matches!(event, Event::Requested { .. } | Event::DeleteRequested { .. } | Event::AlarmFired | Event::StepFailed { .. }) {
                let again = step(next, event, now, &config);
                prop_assert_eq!(&again.state, next);
                prop_assert!(again.actions.is_empty());
            }
            state = t.state;
        }
    }
}

fn overloaded(message: &str) -> Event {
    Event::StepFailed {
        generation: 1,
        step: PipelineStep::Embed,
        error: StepError::overloaded(message),
    }
}

#[test]
fn an_overloaded_provider_never_uses_up_attempts_and_waits_for_minutes() {
    let mut h = Harness::new();
    let c = content("aa", 3, 1, 0);
    let actions = h.feed(requested("e1", T0, false));
    let mut actions = h.drive_until(actions, &c, PipelineStep::Embed);
    let mut delays = Vec::new();
    // Ten overloaded attempts in a row: three times the attempt budget.
    for _ in 0..10 {
        let failed_at = h.now;
        actions = h.feed(overloaded(
            "embedding batch 0: openai request failed: timed out",
        ));
        assert!(h.state.stage.is_running());
        delays.push(alarm(&actions).unwrap() - failed_at);
        assert!(h.state.run.as_ref().unwrap().attempts < 3);
        actions = h.fire_alarm(&actions);
        assert!(matches!(
            step_action(&actions),
            Some(Action::EmbedBatch { index: 0, .. })
        ));
    }
    assert_eq!(
        delays,
        vec![5_000, 10_000, 20_000, 40_000, 80_000, 160_000, 300_000, 300_000, 300_000, 300_000]
    );
    // The provider recovers: the batch succeeds and the run commits.
    let actions = h.feed(success(step_action(&actions).unwrap(), &c).unwrap());
    let run = h.state.run.as_ref().unwrap();
    assert_eq!((run.overloads, run.overloaded_since_ms), (0, None));
    let next = h.fire_alarm(&actions);
    let actions = h.drive_until(next, &c, PipelineStep::Commit);
    h.feed(success(step_action(&actions).unwrap(), &c).unwrap());
    assert_eq!(h.state.stage, Stage::Ready);
}

#[test]
fn ordinary_failures_after_overloads_still_count_attempts() {
    let mut h = Harness::new();
    let c = content("aa", 3, 1, 0);
    let actions = h.feed(requested("e1", T0, false));
    h.drive_until(actions, &c, PipelineStep::Embed);
    for event in [
        overloaded("429"),
        Event::StepFailed {
            generation: 1,
            step: PipelineStep::Embed,
            error: StepError::retryable("malformed"),
        },
        overloaded("503"),
        Event::StepFailed {
            generation: 1,
            step: PipelineStep::Embed,
            error: StepError::retryable("malformed"),
        },
    ] {
        let wait = h.feed(event);
        h.fire_alarm(&wait);
    }
    assert_eq!(h.state.run.as_ref().unwrap().attempts, 3);
    h.feed(Event::StepFailed {
        generation: 1,
        step: PipelineStep::Embed,
        error: StepError::retryable("malformed"),
    });
    assert!(matches!(h.state.stage, Stage::Failed { .. }));
}

#[test]
fn a_provider_overloaded_past_the_give_up_time_fails_the_run_retryably() {
    let mut h = Harness::new();
    h.config = PipelineConfig::new()
        .with_overload_wait(OverloadWait {
            base_ms: 1_000,
            max_ms: 60_000,
            give_up_ms: 600_000,
        })
        .unwrap();
    let actions = h.feed(requested("e1", T0, false));
    let mut actions = h.drive_until(actions, &content("aa", 3, 1, 0), PipelineStep::Embed);
    let first_failure = h.now;
    while h.state.stage.is_running() {
        actions = h.feed(overloaded("HTTP 429"));
        if h.state.stage.is_running() {
            actions = h.fire_alarm(&actions);
        }
    }
    assert!(h.now - first_failure >= 600_000);
    assert!(h.now - first_failure < 600_000 + 60_000);
    let error = h.state.run.as_ref().unwrap().last_error.clone().unwrap();
    assert!(error.retryable && error.overloaded);
    assert!(
        error.message.starts_with("provider overloaded for "),
        "{}",
        error.message
    );
    assert!(actions.contains(&Action::DiscardGeneration { version: 1 }));
}

#[test]
fn a_deferred_step_is_issued_again_later_without_counting_an_attempt() {
    let mut h = Harness::new();
    let c = content("aa", 3, 1, 0);
    let actions = h.feed(requested("e1", T0, false));
    h.drive_until(actions, &c, PipelineStep::Embed);
    assert_eq!(h.state.run.as_ref().unwrap().attempts, 1);
    let deferred = Event::StepDeferred {
        generation: 1,
        step: PipelineStep::Embed,
        index: Some(0),
        retry_at_ms: h.now + 250,
    };
    let wait = h.feed(deferred.clone());
    assert_eq!(alarm(&wait), Some(h.now + 250));
    assert!(step_action(&wait).is_none());
    assert_eq!(h.state.run.as_ref().unwrap().attempts, 0);
    // A second report of the same deferral, or one of another generation, changes nothing.
    h.assert_ignored(deferred);
    h.assert_ignored(Event::StepDeferred {
        generation: 7,
        step: PipelineStep::Embed,
        index: Some(0),
        retry_at_ms: h.now,
    });
    // An early alarm waits; the due one issues the same batch again as attempt 1.
    let early = h.feed(Event::AlarmFired);
    assert_eq!(alarm(&early), Some(h.now + 250));
    let again = h.fire_alarm(&wait);
    assert_eq!(
        step_action(&again),
        Some(&Action::EmbedBatch {
            generation: 1,
            index: 0
        })
    );
    assert_eq!(h.state.run.as_ref().unwrap().attempts, 1);
    assert_eq!(
        h.state.run.as_ref().unwrap().steps.last().unwrap().attempts,
        1
    );
}
