//! The ingestion drivers on in-memory stores: the consumer, the processor's
//! drive loop and steps, and the races of issue 11 as scenarios
//! (interleavings, lost answers, crashes between phases), plus a property
//! test that random interleavings end with D1 and the index matching R2.

use super::consumer::{consume_dead_letter, consume_ingest, Delivery, ProcessorGateway, Verdict};
use super::fakes::*;
use super::gate::{Admission, GateSettings, GateState, ProviderGate, MAX_HOLD_MS};
use super::ports::{Gating, Processor};
use super::steps::MAX_CHUNKS_PER_DOCUMENT;
use crate::document::keys::sha256_hex;
use crate::ingest::message::IngestCommand;
use crate::ingest::pipeline::{PipelineConfig, PipelineStep, Stage};
use crate::ingest::settings::IngestSettings;
use crate::operations::metrics::{MetricKind, MetricsBuffer};
use crate::providers::offline_embedder::HashingEmbedder;
use crate::providers::{Embedder, ProviderError, TransportError};
use crate::shared::storage::{Clock, StoreError};
use pollster::block_on;
use proptest::prelude::*;
use serde_json::{json, Value};

const T0: u64 = 1_700_000_000_000;
const DIMS: usize = 16;

struct World<'f> {
    clock: ManualClock,
    bucket: FakeBucket<'f>,
    db: FakeDatabase<'f>,
    index: FakeIndex<'f>,
    storages: ProcessorStorages<'f>,
    queue: FakeQueue,
    dlq: FakeQueue,
    log: Lines,
    metrics: MetricsBuffer,
    embedder: RemoteEmbedder,
    settings: IngestSettings,
    /// The provider gate's state, when the world has one (`gate_settings`).
    gate: std::cell::RefCell<GateState>,
    gate_settings: Option<GateSettings>,
    /// The next lease requests fail after this many ms each (a gate lost mid-hold, or
    /// unreachable at 0 ms), one entry per request.
    gate_faults: std::cell::RefCell<std::collections::VecDeque<u64>>,
    /// `wait_ms` of every lease request, in order.
    gate_waits: std::cell::RefCell<Vec<u64>>,
    /// How long the gate holds each lease request before answering.
    gate_holds_ms: std::cell::Cell<u64>,
}

/// The hashing embedder as if it were reached over the network: it can be told to time out
/// (an overloaded provider) for its next calls, and counts the calls it answered.
struct RemoteEmbedder {
    inner: HashingEmbedder,
    timeouts_left: std::cell::Cell<u32>,
    answered: std::cell::Cell<u32>,
}

impl Embedder for RemoteEmbedder {
    fn model(&self) -> &str {
        self.inner.model()
    }

    fn dimensions(&self) -> usize {
        self.inner.dimensions()
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, ProviderError> {
        if self.timeouts_left.get() > 0 {
            self.timeouts_left.set(self.timeouts_left.get() - 1);
            return Err(ProviderError::Transport {
                provider: "openai",
                source: TransportError::Timeout("no answer within 30000 ms".into()),
            });
        }
        self.answered.set(self.answered.get() + 1);
        self.inner.embed(texts).await
    }
}

impl ProviderGate for World<'_> {
    async fn acquire(&self, holder: &str, wait_ms: u64) -> Result<Admission, StoreError> {
        self.gate_waits.borrow_mut().push(wait_ms);
        if let Some(after_ms) = self.gate_faults.borrow_mut().pop_front() {
            self.clock.advance(after_ms);
            return Err(StoreError::transient("provider gate", "connection closed"));
        }
        self.clock.advance(self.gate_holds_ms.get());
        let settings = self.gate_settings.unwrap_or_default();
        Ok(self
            .gate
            .borrow_mut()
            .acquire(holder, self.clock.now_ms(), &settings))
    }

    async fn release(&self, holder: &str) -> Result<(), StoreError> {
        self.gate.borrow_mut().release(holder, self.clock.now_ms());
        Ok(())
    }
}

type WorldProcessor<'a, 'f> = Processor<FakeIngestPorts<'a, 'f, RemoteEmbedder, World<'f>>>;

impl<'f> World<'f> {
    fn new(faults: &'f Faults) -> Self {
        Self {
            clock: ManualClock::at(T0),
            bucket: FakeBucket::with_faults(faults),
            db: FakeDatabase::with_faults(faults),
            index: FakeIndex::with_faults(faults),
            storages: ProcessorStorages {
                faults: Some(faults),
                ..ProcessorStorages::default()
            },
            queue: FakeQueue::default(),
            dlq: FakeQueue::default(),
            log: Lines::default(),
            metrics: MetricsBuffer::default(),
            embedder: RemoteEmbedder {
                inner: HashingEmbedder::new(DIMS).expect("dimensions"),
                timeouts_left: std::cell::Cell::new(0),
                answered: std::cell::Cell::new(0),
            },
            settings: IngestSettings::default().with_embed_batch(4),
            gate: std::cell::RefCell::default(),
            gate_settings: None,
            gate_faults: std::cell::RefCell::default(),
            gate_waits: std::cell::RefCell::default(),
            gate_holds_ms: std::cell::Cell::new(0),
        }
    }

    fn processor<'a>(&'a self, storage: &'a FakeProcessorStorage<'f>) -> WorldProcessor<'a, 'f> {
        Processor {
            ports: FakeIngestPorts {
                storage,
                documents: &self.db,
                objects: &self.bucket,
                index: &self.index,
                embedder: &self.embedder,
                clock: &self.clock,
                log: &self.log,
                metrics: &self.metrics,
                gate: self,
            },
            pipeline: PipelineConfig::new(),
            settings: self.settings,
            gating: self.gate_settings.map(|_| Gating {
                embed: true,
                tag: false,
            }),
        }
    }

    /// An upload through the admin API: the object, then its message.
    fn put(&self, key: &str, content: &str) {
        self.bucket
            .put(key, content.as_bytes(), self.clock.now_ms());
        self.queue
            .push(json!({ "type": "process", "key": key, "reason": "admin:put" }));
        self.clock.advance(1);
    }

    fn delete(&self, key: &str) {
        self.bucket.delete(key);
        self.queue
            .push(json!({ "type": "delete", "key": key, "reason": "admin:delete" }));
        self.clock.advance(1);
    }

    fn force(&self, key: &str) {
        self.queue.push(
            json!({ "type": "process", "key": key, "force": true, "reason": "admin:process" }),
        );
    }

    /// Delivers the first queued message; a retried one goes to the back.
    async fn deliver_one(&self) -> Option<Verdict> {
        let (body, attempts) = self.queue.messages.borrow_mut().pop_front()?;
        let id = format!("m{attempts}");
        let verdict = consume_ingest(
            Delivery {
                id: &id,
                attempts: attempts + 1,
                body: Ok(&body),
            },
            "portfolio-ingest",
            &Gateway { world: self },
            &NoReconciler,
            &self.dlq,
            &self.log,
        )
        .await;
        if let Verdict::Retry { .. } = verdict {
            self.queue
                .messages
                .borrow_mut()
                .push_back((body, attempts + 1));
        }
        Some(verdict)
    }

    async fn deliver_all(&self) {
        let mut budget = 1_000;
        while budget > 0 && self.deliver_one().await.is_some() {
            budget -= 1;
        }
    }

    /// Fires every alarm due now; an alarm whose handler failed is retried
    /// a second later, as the platform does.
    async fn fire_due_alarms(&self) {
        let storages: Vec<_> = self.storages.by_key.borrow().values().cloned().collect();
        for storage in storages {
            let Some(at) = storage.alarm.get() else {
                continue;
            };
            if at > self.clock.now_ms() {
                continue;
            }
            storage.alarm.set(None);
            if self.processor(&storage).alarm().await.is_err() {
                storage.alarm.set(Some(self.clock.now_ms() + 1_000));
            }
        }
    }

    fn next_alarm(&self) -> Option<u64> {
        self.storages
            .by_key
            .borrow()
            .values()
            .filter_map(|s| s.alarm.get())
            .min()
    }

    /// Delivers every message and fires every alarm until nothing is left.
    async fn settle(&self) {
        for _ in 0..10_000 {
            self.deliver_all().await;
            match self.next_alarm() {
                Some(at) => {
                    if at > self.clock.now_ms() {
                        self.clock.now.set(at);
                    }
                    self.fire_due_alarms().await;
                }
                None if self.queue.messages.borrow().is_empty() => return,
                None => {}
            }
        }
        panic!("the world did not settle");
    }

    /// D1 and the index hold exactly what R2 holds for `key`: its content's
    /// live generation with all chunks and vectors, and nothing else.
    fn assert_matches_r2(&self, key: &str) {
        let object = self.bucket.objects.borrow().get(key).cloned();
        let row = self.db.row(key);
        match object {
            Some((head, bytes)) => {
                let row = row.unwrap_or_else(|| panic!("{key}: no row while R2 holds it"));
                assert_eq!(row.status, "ready", "{key}: {row:?}");
                let version = row.active_version.expect("a live generation");
                assert_eq!(row.sha256.as_deref(), Some(sha256_hex(&bytes).as_str()));
                assert_eq!(row.etag.as_deref(), Some(head.etag.as_str()), "{key}");
                let expected = std::collections::BTreeMap::from([(version, row.chunk_count)]);
                assert_eq!(self.db.versions(row.id), expected, "{key}: chunk rows");
                assert_eq!(self.index.versions(row.id), expected, "{key}: vectors");
                assert!(row.chunk_count > 0);
            }
            None => {
                if let Some(row) = row {
                    assert_eq!(row.status, "deleted", "{key}: {row:?}");
                    assert!(
                        self.db.versions(row.id).is_empty(),
                        "{key}: chunk rows left"
                    );
                    assert!(
                        self.index.versions(row.id).is_empty(),
                        "{key}: vectors left"
                    );
                }
            }
        }
    }

    fn staged_generations(&self, key: &str) -> usize {
        self.storages.of(key).staged.borrow().len()
    }

    fn runs(&self, key: &str) -> Vec<crate::ingest::pipeline::RunRecord> {
        self.db
            .runs
            .borrow()
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, r)| r.clone())
            .collect()
    }
}

struct Gateway<'w, 'f> {
    world: &'w World<'f>,
}

impl ProcessorGateway for Gateway<'_, '_> {
    async fn hand_off(&self, command: &IngestCommand) -> Result<(), StoreError> {
        let storage = self.world.storages.of(command.key());
        self.world
            .processor(&storage)
            .command(command)
            .await
            .map(|_| ())
            .map_err(|e| StoreError::transient("hand-off", e))
    }
}

fn doc(title: &str, sections: usize) -> String {
    let mut text = format!("---\ncompany: acme\n---\n# {title}\n\n");
    for i in 0..sections {
        text.push_str(&format!(
            "## Section {i}\n\n{title} paragraph {i} about widgets.\n\n"
        ));
    }
    text
}

// ---- the happy path and the driver's own rules ------------------------------

#[test]
fn a_put_document_becomes_ready_with_its_chunks_and_vectors() {
    let faults = Faults::default();
    let world = World::new(&faults);
    block_on(async {
        world.put("companies/acme/a.md", &doc("Alpha", 9));
        world.settle().await;
    });
    world.assert_matches_r2("companies/acme/a.md");
    assert_eq!(world.staged_generations("companies/acme/a.md"), 0);
    let runs = world.runs("companies/acme/a.md");
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].outcome.run_status(), "ready");
    // Nine sections in batches of four: several alarms, one bounded step each.
    assert!(world.log.events("step") >= 6);
}

#[test]
fn every_step_attempt_and_every_run_is_a_data_point() {
    let faults = Faults::default();
    let world = World::new(&faults);
    block_on(async {
        world.put("a.md", &doc("Alpha", 9));
        // The first download fails once: a retry, then the run goes on.
        faults.inject("R2 get", Fault::Fail);
        world.settle().await;
    });
    world.assert_matches_r2("a.md");
    let points = world.metrics.take();
    let runs: Vec<_> = points
        .iter()
        .filter(|p| p.kind == MetricKind::Run)
        .collect();
    assert_eq!(runs.len(), 1);
    let chunks = world.db.row("a.md").expect("row").chunk_count;
    assert_eq!(
        (runs[0].name.as_str(), runs[0].outcome.as_str()),
        ("a.md", "ready")
    );
    assert_eq!((runs[0].items, runs[0].retries), (f64::from(chunks), 1.0));
    let steps: Vec<(&str, &str)> = points
        .iter()
        .filter(|p| p.kind == MetricKind::Step)
        .map(|p| (p.name.as_str(), p.outcome.as_str()))
        .collect();
    assert_eq!(steps[0], ("download", "retryable"));
    assert_eq!(steps[1], ("download", "ok"));
    // Nine sections in batches of four: three embed attempts, each a point.
    assert_eq!(steps.iter().filter(|s| s.0 == "embed").count(), 3);
    assert_eq!(steps.last(), Some(&("commit", "ok")));
    assert!(points
        .iter()
        .filter(|p| p.kind == MetricKind::Step)
        .all(|p| p.detail == "a.md"));
}

#[test]
fn an_update_replaces_the_generation_and_drops_the_old_one() {
    let faults = Faults::default();
    let world = World::new(&faults);
    block_on(async {
        world.put("a.md", &doc("Alpha", 3));
        world.settle().await;
        world.put("a.md", &doc("Beta", 5));
        world.settle().await;
    });
    world.assert_matches_r2("a.md");
    assert_eq!(world.db.row("a.md").and_then(|r| r.active_version), Some(2));
}

/// Fires `key`'s alarm (advancing the clock to it) as the platform would when
/// the step may kill the invocation: a crash (an injected panic) ends the
/// invocation there, with only what it saved before; a failed one is retried
/// a second later. Returns whether it crashed, `None` when no alarm was set.
fn fire_alarm_through_crashes(world: &World<'_>, key: &str) -> Option<bool> {
    let storage = world.storages.of(key);
    let at = storage.alarm.get()?;
    world.clock.now.set(world.clock.now_ms().max(at));
    storage.alarm.set(None);
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        block_on(world.processor(&storage).alarm())
    }));
    match outcome {
        Err(_) => Some(true),
        Ok(result) => {
            if result.is_err() {
                storage.alarm.set(Some(world.clock.now_ms() + 1_000));
            }
            Some(false)
        }
    }
}

#[test]
fn a_step_that_crashes_its_invocation_every_time_ends_failed_after_three_attempts() {
    // Issue 26: a poison document killed the chunk step's invocation (a stack
    // overflow in workerd) and sat `processing` forever. Here the chunk step
    // dies every time, after the chunking, before it can report.
    let faults = Faults::default();
    let world = World::new(&faults);
    let key = "companies/acme/poison.md";
    for _ in 0..3 {
        faults.inject("staging chunks", Fault::Crash);
    }
    world.put(key, &doc("Poison", 2));
    block_on(world.deliver_all());
    let storage = world.storages.of(key);
    let (mut alarms, mut crashes) = (0, 0);
    while let Some(crashed) = fire_alarm_through_crashes(&world, key) {
        alarms += 1;
        assert!(alarms <= 10, "still going after {alarms} alarms");
        if !crashed {
            continue;
        }
        crashes += 1;
        // What survives the crash: the attempt, counted before the step ran,
        // the status row, and the watchdog alarm that brings the object back.
        let state = storage.state.borrow().clone().expect("state saved");
        let run = state.run.as_ref().expect("a run");
        assert_eq!(state.stage, Stage::Chunking);
        assert_eq!(run.attempts, crashes);
        assert!(run.in_flight.is_some());
        assert!(storage.alarm.get().is_some(), "processing without an alarm");
        let row = world.db.row(key).expect("row");
        assert_eq!(row.status, "processing");
    }
    // Download; attempt 1 crashes; two alarms each find the last attempt
    // lost and issue the next, which crashes; the last finds attempt 3 lost.
    assert_eq!((crashes, alarms), (3, 5));
    let row = world.db.row(key).expect("row");
    assert_eq!(row.status, "failed");
    assert_eq!(
        row.last_error.as_deref(),
        Some(
            "step chunk did not finish in 3 attempts (the Worker crashed or ran out of \
             stack/memory during it)"
        )
    );
    assert_eq!(storage.alarm.get(), None);
    assert_eq!(world.staged_generations(key), 0);
    let runs = world.runs(key);
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].outcome.run_status(), "failed");
    let status = block_on(world.processor(&storage).status()).expect("status");
    let view = status.status.expect("a status");
    assert_eq!((view.attempts, view.step), (3, Some(PipelineStep::Chunk)));

    // Once the cause is gone (a fixed Worker), the same version goes through.
    world.force(key);
    block_on(world.settle());
    world.assert_matches_r2(key);
}

#[test]
fn a_crash_on_one_attempt_only_costs_that_attempt() {
    let faults = Faults::default();
    let world = World::new(&faults);
    let key = "companies/acme/flaky.md";
    faults.inject("staging chunks", Fault::Crash);
    world.put(key, &doc("Flaky", 3));
    block_on(world.deliver_all());
    let mut crashes = 0;
    while let Some(crashed) = fire_alarm_through_crashes(&world, key) {
        crashes += u32::from(crashed);
        block_on(world.deliver_all());
    }
    assert_eq!(crashes, 1);
    world.assert_matches_r2(key);
    let runs = world.runs(key);
    assert_eq!(runs[0].retries, 1);
    assert!(runs[0]
        .error
        .as_ref()
        .is_none_or(|e| e.message.contains("attempt 1 of 3")));
}

/// Delivers messages and fires alarms (advancing the clock to each) `rounds` times.
async fn run_rounds(world: &World<'_>, rounds: usize) {
    for _ in 0..rounds {
        world.deliver_all().await;
        if let Some(at) = world.next_alarm() {
            if at > world.clock.now_ms() {
                world.clock.now.set(at);
            }
            world.fire_due_alarms().await;
        }
    }
}

fn pending_answers(world: &World<'_>) -> usize {
    world
        .log
        .lines
        .borrow()
        .iter()
        .filter(|(_, v)| v["result"]["type"] == "vectors_pending")
        .count()
}

#[test]
fn a_commit_waits_until_its_vectors_are_visible_without_spending_attempts() {
    let faults = Faults::default();
    let world = World::new(&faults);
    block_on(async {
        world.put("a.md", &doc("Alpha", 3));
        world.settle().await;
        world.index.lagging.set(true);
        world.put("a.md", &doc("Beta", 5));
        run_rounds(&world, 40).await;
        // Generation 2's vectors have not landed: it is not live, generation 1 serves.
        assert!(pending_answers(&world) >= 5, "{}", pending_answers(&world));
        let row = world.db.row("a.md").expect("row");
        assert_eq!(row.active_version, Some(1));
        assert_eq!(
            world
                .db
                .versions(row.id)
                .keys()
                .copied()
                .collect::<Vec<_>>(),
            [1]
        );
        // The checks thin out: 40 rounds span minutes, not 40 base waits of 500 ms.
        assert!(
            world.clock.now_ms() - T0 > 60_000,
            "{}",
            world.clock.now_ms() - T0
        );
        world.index.land();
        world.settle().await;
    });
    world.assert_matches_r2("a.md");
    let runs = world.runs("a.md");
    assert_eq!(runs.last().map(|r| r.outcome.run_status()), Some("ready"));
    let commit = runs[1]
        .steps
        .iter()
        .find(|s| s.step == crate::ingest::pipeline::PipelineStep::Commit)
        .expect("a commit step");
    assert_eq!(commit.attempts, 1, "waiting is not an attempt");
}

#[test]
fn a_commit_whose_vectors_never_show_gives_up_and_keeps_the_old_generation() {
    let faults = Faults::default();
    let world = World::new(&faults);
    block_on(async {
        world.put("a.md", &doc("Alpha", 3));
        world.settle().await;
        world.index.lagging.set(true);
        world.put("a.md", &doc("Beta", 5));
        world.settle().await;
    });
    let row = world.db.row("a.md").expect("row");
    assert_eq!(row.status, "failed");
    assert_eq!(row.active_version, Some(1));
    assert!(
        row.last_error
            .as_deref()
            .is_some_and(|e| e.contains("not visible in the vector index")),
        "{row:?}"
    );
    let runs = world.runs("a.md");
    let last = runs.last().expect("a run");
    assert_eq!(last.outcome.run_status(), "failed");
    let waited = last.finished_at_ms - last.started_at_ms.expect("started");
    assert!(waited >= crate::index::VECTOR_SETTLE_MS, "{waited}");
    // Generation 1 still serves, with all its vectors; nothing of generation 2 is live.
    assert_eq!(
        world
            .db
            .versions(row.id)
            .keys()
            .copied()
            .collect::<Vec<_>>(),
        [1]
    );
    assert_eq!(
        world
            .index
            .versions(row.id)
            .keys()
            .copied()
            .collect::<Vec<_>>(),
        [1]
    );
}

#[test]
fn a_command_for_another_key_is_refused() {
    let faults = Faults::default();
    let world = World::new(&faults);
    let storage = FakeProcessorStorage::default();
    *storage.key.borrow_mut() = Some("a.md".into());
    let command = IngestCommand::Process {
        key: "b.md".into(),
        object: None,
        force: false,
        reason: "admin".into(),
    };
    let outcome = block_on(world.processor(&storage).command(&command));
    assert!(matches!(
        outcome,
        Err(super::CommandError::WrongProcessor { .. })
    ));
    assert!(storage.state.borrow().is_none());
}

// ---- issue 11, case 1: delete then re-create within a batch -----------------

#[test]
fn delete_then_recreate_in_one_batch_ends_with_the_new_version() {
    for deliver_delete_first in [true, false] {
        let faults = Faults::default();
        let world = World::new(&faults);
        block_on(async {
            world.put("a.md", &doc("Old", 2));
            world.settle().await;
            world.delete("a.md");
            world.put("a.md", &doc("New", 3));
            if !deliver_delete_first {
                let mut messages = world.queue.messages.borrow_mut();
                let delete = messages.pop_front().expect("delete message");
                messages.push_back(delete);
            }
            world.settle().await;
        });
        world.assert_matches_r2("a.md");
    }
}

#[test]
fn delete_then_recreate_with_identical_bytes_keeps_the_document() {
    let faults = Faults::default();
    let world = World::new(&faults);
    block_on(async {
        world.put("a.md", &doc("Same", 2));
        world.settle().await;
        world.delete("a.md");
        world.put("a.md", &doc("Same", 2));
        world.settle().await;
    });
    world.assert_matches_r2("a.md");
}

#[test]
fn a_reconciliation_delete_after_a_reupload_does_not_delete() {
    let faults = Faults::default();
    let world = World::new(&faults);
    block_on(async {
        world.put("a.md", &doc("Old", 2));
        world.settle().await;
        // Reconciliation listed the bucket while the object was briefly gone…
        world.bucket.delete("a.md");
        world
            .queue
            .push(json!({ "type": "delete", "key": "a.md", "reason": "reconcile:gone" }));
        // …and the object was uploaded again before its message was handled.
        world.put("a.md", &doc("Back", 3));
        world.settle().await;
    });
    world.assert_matches_r2("a.md");
}

#[test]
fn a_delete_still_deletes_when_the_object_is_gone() {
    let faults = Faults::default();
    let world = World::new(&faults);
    block_on(async {
        world.put("a.md", &doc("Old", 2));
        world.settle().await;
        world.delete("a.md");
        world.settle().await;
    });
    world.assert_matches_r2("a.md");
    assert_eq!(
        world.db.row("a.md").map(|r| r.status),
        Some("deleted".into())
    );
}

// ---- case 2: a forced run after a reconciliation-triggered one --------------

#[test]
fn force_after_a_reconciliation_run_runs_again() {
    let faults = Faults::default();
    let world = World::new(&faults);
    block_on(async {
        world.put("a.md", &doc("Alpha", 2));
        world.settle().await;
        // A reconciliation message dated "now", well after the upload.
        world.clock.advance(60_000);
        world
            .queue
            .push(json!({ "type": "process", "key": "a.md", "reason": "reconcile:stuck" }));
        world.settle().await;
        world.force("a.md");
        world.settle().await;
    });
    let runs = world.runs("a.md");
    let last = runs.last().expect("runs");
    assert!(last.force, "the forced run was recorded: {runs:?}");
    assert_eq!(last.outcome.run_status(), "ready");
    assert_eq!(world.db.row("a.md").and_then(|r| r.active_version), Some(2));
    world.assert_matches_r2("a.md");
}

// ---- case 3: the commit is idempotent and forward-only ----------------------

#[test]
fn a_lost_answer_of_the_flip_does_not_rewrite_the_live_rows() {
    let faults = Faults::default();
    let world = World::new(&faults);
    block_on(async {
        world.put("a.md", &doc("Alpha", 2));
        world.settle().await;
        faults.inject("D1 activate generation", Fault::LoseAnswer);
        world.put("a.md", &doc("Beta", 6));
        world.settle().await;
    });
    world.assert_matches_r2("a.md");
    assert_eq!(world.db.live_rewrites.get(), 0);
    assert_eq!(world.db.row("a.md").and_then(|r| r.active_version), Some(2));
    assert_eq!(world.staged_generations("a.md"), 0);
}

#[test]
fn a_crash_after_the_flip_before_the_state_is_saved_still_drops_the_old_generation() {
    let faults = Faults::default();
    let world = World::new(&faults);
    block_on(async {
        world.put("a.md", &doc("Alpha", 2));
        world.settle().await;
        // The flip lands; the save of the "committed" state right after it does not.
        faults.inject_after("D1 activate generation", "save state", Fault::Fail);
        world.put("a.md", &doc("Beta", 6));
        world.settle().await;
    });
    world.assert_matches_r2("a.md");
    assert_eq!(world.db.live_rewrites.get(), 0);
    assert_eq!(
        world.staged_generations("a.md"),
        0,
        "staging released once recorded"
    );
    let runs = world.runs("a.md");
    assert_eq!(runs.last().map(|r| r.outcome.run_status()), Some("ready"));
}

#[test]
fn staging_survives_until_the_commit_is_recorded() {
    let faults = Faults::default();
    let world = World::new(&faults);
    block_on(async {
        faults.inject_after("D1 activate generation", "save state", Fault::Fail);
        world.put("a.md", &doc("Alpha", 3));
        world.deliver_all().await;
        // Run alarms until the commit happened and its record was lost.
        for _ in 0..50 {
            if world
                .db
                .row("a.md")
                .and_then(|r| r.active_version)
                .is_some()
            {
                break;
            }
            if let Some(at) = world.next_alarm() {
                world.clock.now.set(world.clock.now_ms().max(at));
            }
            world.fire_due_alarms().await;
        }
        assert_eq!(world.db.row("a.md").and_then(|r| r.active_version), Some(1));
        assert_eq!(
            world.staged_generations("a.md"),
            1,
            "kept for a retried commit"
        );
        world.settle().await;
    });
    world.assert_matches_r2("a.md");
    assert_eq!(world.staged_generations("a.md"), 0);
}

// ---- case 5: dead letters do not overwrite a newer outcome ------------------

#[test]
fn a_dead_letter_marks_only_a_document_still_waiting_for_it() {
    let faults = Faults::default();
    let world = World::new(&faults);
    block_on(async {
        world.put("ready.md", &doc("Ready", 1));
        world.settle().await;
        block_on(world.db_row_queued("waiting.md"));
        for key in ["ready.md", "waiting.md"] {
            let body = json!({ "type": "process", "key": key, "reason": "admin:put" });
            let verdict = consume_dead_letter(
                Delivery {
                    id: "dl-1",
                    attempts: 1,
                    body: Ok(&body),
                },
                "portfolio-ingest-dlq",
                &world.db,
                &NoReconciler,
                &world.clock,
                &world.log,
            )
            .await;
            assert_eq!(verdict, Verdict::Ack);
        }
    });
    assert_eq!(
        world.db.row("ready.md").map(|r| r.status),
        Some("ready".into())
    );
    assert_eq!(
        world.db.row("waiting.md").map(|r| r.status),
        Some("failed".into())
    );
    assert_eq!(world.db.dead_letters.borrow().len(), 2);
}

impl World<'_> {
    async fn db_row_queued(&self, key: &str) {
        use super::store::DocumentStore;
        self.db
            .ensure_document(key, self.clock.now_ms())
            .await
            .expect("row");
    }
}

#[test]
fn a_dead_letter_that_cannot_be_recorded_is_retried() {
    let faults = Faults::default();
    let world = World::new(&faults);
    faults.inject("D1 dead letter", Fault::Fail);
    let body = json!({ "type": "process", "key": "a.md", "reason": "admin:put" });
    let verdict = block_on(consume_dead_letter(
        Delivery {
            id: "dl-1",
            attempts: 2,
            body: Ok(&body),
        },
        "portfolio-ingest-dlq",
        &world.db,
        &NoReconciler,
        &world.clock,
        &world.log,
    ));
    assert!(matches!(verdict, Verdict::Retry { delay_seconds } if delay_seconds > 0));
}

// ---- case 6: size before reading, and a chunk cap ---------------------------

#[test]
fn an_oversized_object_fails_permanently_without_being_read() {
    let faults = Faults::default();
    let world = World::new(&faults);
    let big = "x".repeat(crate::admin::MAX_DOCUMENT_BYTES + 1);
    block_on(async {
        world.put("big.md", &big);
        world.settle().await;
    });
    assert_eq!(world.bucket.bytes_read.get(), 0);
    let row = world.db.row("big.md").expect("row");
    assert_eq!(row.status, "failed");
    assert!(row.last_error.unwrap_or_default().contains("the limit is"));
    assert_eq!(world.runs("big.md").len(), 1, "failed at once, no retries");
}

#[test]
fn a_document_over_the_chunk_cap_fails_permanently_with_a_clear_error() {
    let faults = Faults::default();
    let world = World::new(&faults);
    let mut text = String::new();
    for i in 0..=MAX_CHUNKS_PER_DOCUMENT {
        text.push_str(&format!("# H{i}\n\nw{i}\n\n"));
    }
    assert!(text.len() < crate::admin::MAX_DOCUMENT_BYTES);
    block_on(async {
        world.put("many.md", &text);
        world.settle().await;
    });
    let row = world.db.row("many.md").expect("row");
    assert_eq!(row.status, "failed");
    let error = row.last_error.unwrap_or_default();
    assert!(error.contains("chunks; the limit is 20000"), "{error}");
    assert!(world.db.versions(row.id).is_empty());
    assert_eq!(world.staged_generations("many.md"), 0);
}

// ---- case 7: keys from events, and the etag of the bytes read ----------------

#[test]
fn an_event_for_a_key_not_in_normal_form_is_dead_lettered_without_a_row() {
    let faults = Faults::default();
    let world = World::new(&faults);
    for key in ["a//b.md", "./x.md"] {
        world.bucket.put(key, b"# T\n\ntext", T0);
        world.queue.push(json!({
            "account": "acc", "bucket": "docs", "action": "PutObject", "eventTime": "2024-01-01T00:00:00Z",
            "object": { "key": key, "size": 9, "eTag": "e1" }
        }));
    }
    block_on(world.deliver_all());
    assert!(world.db.documents.borrow().is_empty());
    let letters = world.dlq.messages.borrow();
    assert_eq!(letters.len(), 2);
    let error = letters[0].0["dead_letter"]["error"]
        .as_str()
        .unwrap_or_default();
    assert!(error.contains("not in normal form"), "{error}");
}

#[test]
fn the_chunk_step_records_the_etag_of_the_bytes_it_read() {
    let faults = Faults::default();
    let world = World::new(&faults);
    let head = world.bucket.put("a.md", doc("Alpha", 2).as_bytes(), T0);
    world.queue.push(json!({
        "action": "PutObject", "eventTime": "2024-01-01T00:00:00Z",
        "object": { "key": "a.md", "size": 1, "eTag": "an-older-etag" }
    }));
    block_on(world.settle());
    assert_eq!(world.db.row("a.md").and_then(|r| r.etag), Some(head.etag));
}

// ---- the consumer's choices --------------------------------------------------

#[test]
fn the_consumer_acks_hands_off_retries_and_dead_letters() {
    let gateway = RecordingGateway::default();
    let dlq = FakeQueue::default();
    let log = Lines::default();
    let consume = |body: Value, attempts: u32| {
        block_on(consume_ingest(
            Delivery {
                id: "m",
                attempts,
                body: Ok(&body),
            },
            "q",
            &gateway,
            &NoReconciler,
            &dlq,
            &log,
        ))
    };
    let ok = json!({ "type": "process", "key": "a.md", "reason": "admin" });
    assert_eq!(consume(ok.clone(), 1), Verdict::Ack);
    assert_eq!(gateway.handed.borrow().len(), 1);
    gateway.fail.set(true);
    let Verdict::Retry {
        delay_seconds: first,
    } = consume(ok.clone(), 1)
    else {
        panic!("a failed hand-off is retried");
    };
    let Verdict::Retry {
        delay_seconds: later,
    } = consume(ok, 4)
    else {
        panic!("still retried");
    };
    assert!(later > first, "the delay grows with the attempts");
    assert_eq!(consume(json!({ "nonsense": true }), 1), Verdict::Ack);
    assert_eq!(
        dlq.messages.borrow().len(),
        1,
        "malformed: dead-lettered, then acked"
    );
    let unreadable = block_on(consume_ingest(
        Delivery {
            id: "m",
            attempts: 1,
            body: Err("not JSON"),
        },
        "q",
        &gateway,
        &NoReconciler,
        &dlq,
        &log,
    ));
    assert_eq!(unreadable, Verdict::Ack);
    assert_eq!(dlq.messages.borrow().len(), 2);
}

// ---- property: random interleavings end matching R2 -----------------------

#[derive(Debug, Clone)]
enum Op {
    Put(usize, usize),
    Delete(usize),
    Force(usize),
    Duplicate,
    Reorder,
    DeliverOne,
    Alarms(u64),
    Fault(usize, bool),
}

const KEYS: [&str; 2] = ["companies/acme/a.md", "b.md"];
const FAULT_POINTS: [&str; 7] = [
    "R2 head",
    "R2 get",
    "D1 chunk rows",
    "D1 activate generation",
    "upsert",
    "staging chunks",
    "save state",
];

fn arb_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..KEYS.len(), 0..3usize).prop_map(|(k, c)| Op::Put(k, c)),
        2 => (0..KEYS.len()).prop_map(Op::Delete),
        1 => (0..KEYS.len()).prop_map(Op::Force),
        1 => Just(Op::Duplicate),
        2 => Just(Op::Reorder),
        3 => Just(Op::DeliverOne),
        2 => (0..20_000u64).prop_map(Op::Alarms),
        1 => (0..FAULT_POINTS.len(), any::<bool>()).prop_map(|(p, lose)| Op::Fault(p, lose)),
    ]
}

fn content(variant: usize) -> String {
    // Variants 0 and 2 are the same bytes: a re-upload of identical content.
    match variant {
        1 => doc("Beta", 5),
        _ => doc("Alpha", 3),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    #[test]
    fn random_interleavings_end_with_d1_and_the_index_matching_r2(
        ops in prop::collection::vec(arb_op(), 1..40)
    ) {
        let faults = Faults::default();
        let world = World::new(&faults);
        let mut injected = 0;
        block_on(async {
            for op in &ops {
                match op {
                    Op::Put(k, c) => world.put(KEYS[*k], &content(*c)),
                    Op::Delete(k) => world.delete(KEYS[*k]),
                    Op::Force(k) => world.force(KEYS[*k]),
                    Op::Duplicate => {
                        let copy = world.queue.messages.borrow().front().cloned();
                        if let Some((body, _)) = copy {
                            world.queue.push(body);
                        }
                    }
                    Op::Reorder => {
                        let mut messages = world.queue.messages.borrow_mut();
                        if let Some(first) = messages.pop_front() {
                            messages.push_back(first);
                        }
                    }
                    Op::DeliverOne => {
                        world.deliver_one().await;
                    }
                    Op::Alarms(ms) => {
                        world.clock.advance(*ms);
                        world.fire_due_alarms().await;
                    }
                    Op::Fault(point, lose) => {
                        // At most two faults: fewer than a step's three attempts.
                        let point = FAULT_POINTS[*point];
                        // A lost answer of a state save would lose the
                        // fire-and-forget drops after it (reconciliation's job).
                        if injected < 2 {
                            injected += 1;
                            let fault = if *lose && point != "save state" { Fault::LoseAnswer } else { Fault::Fail };
                            faults.inject(point, fault);
                        }
                    }
                }
            }
            world.settle().await;
        });
        for key in KEYS {
            world.assert_matches_r2(key);
        }
        prop_assert_eq!(world.db.live_rewrites.get(), 0);
    }
}

/// Found by the property test: a delete deferred behind a running commit,
/// then a re-upload of the same bytes, whose request looked like the running
/// run's and was dropped — the delete then won against R2.
#[test]
fn a_reupload_during_a_commit_with_a_deferred_delete_is_not_dropped() {
    let faults = Faults::default();
    let world = World::new(&faults);
    let a = KEYS[0];
    block_on(async {
        world.put(a, &content(0));
        world.put(a, &content(0));
        world.put(KEYS[1], &content(0));
        world.deliver_one().await;
        for _ in 0..4 {
            world.fire_due_alarms().await;
        }
        world.delete(a);
        world.deliver_one().await;
        let copy = world.queue.messages.borrow().front().cloned();
        if let Some((body, _)) = copy {
            world.queue.push(body);
        }
        world.put(a, &content(0));
        world.settle().await;
    });
    world.assert_matches_r2(a);
}

#[test]
fn a_provider_timing_out_past_the_attempt_budget_still_ends_ready() {
    let faults = Faults::default();
    let world = World::new(&faults);
    // Twelve timeouts in a row: four times the three attempts a step gets.
    world.embedder.timeouts_left.set(12);
    block_on(async {
        world.put("slow.md", &doc("Slow", 3));
        world.settle().await;
    });
    world.assert_matches_r2("slow.md");
    let runs = world.runs("slow.md");
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].outcome.run_status(), "ready");
    assert_eq!(runs[0].retries, 12);
    // The waits grew from 5 s to the 5-minute cap: 5+10+20+40+80+160 s, then 6 × 300 s.
    let waited = runs[0].finished_at_ms - runs[0].queued_at_ms;
    assert!(waited >= 2_115_000, "waited {waited} ms");
    assert!(world.embedder.answered.get() >= 1);
}

#[test]
fn a_batch_waits_for_the_gate_without_spending_attempts() {
    let faults = Faults::default();
    let mut world = World::new(&faults);
    world.gate_settings = Some(GateSettings {
        limit: 1,
        lease_ms: 60_000,
    });
    // Another document's processor took the only slot and died holding it.
    let occupied = block_on(world.acquire("other.md#1:embed:0", 0)).unwrap();
    assert!(matches!(occupied, Admission::Granted { .. }));
    block_on(async {
        world.put("gated.md", &doc("Gated", 9));
        world.settle().await;
    });
    world.assert_matches_r2("gated.md");
    let runs = world.runs("gated.md");
    assert_eq!(runs[0].outcome.run_status(), "ready");
    // The first batch waited for the lease to expire, asking again and again, yet the run's
    // attempts are one per step or batch: download, chunk, 3 embed batches, 1 tag batch, commit.
    assert!(runs[0].finished_at_ms >= T0 + 60_000);
    assert_eq!((runs[0].attempts, runs[0].retries), (7, 0));
    let stats = world.gate.borrow().stats(world.clock.now_ms());
    assert_eq!((stats.granted, stats.expired, stats.in_flight), (4, 1, 0));
    assert_eq!(world.embedder.answered.get(), 3);
}

#[test]
fn a_batch_asks_the_gate_to_hold_its_request_for_a_lease() {
    let faults = Faults::default();
    let mut world = World::new(&faults);
    world.gate_settings = Some(GateSettings::default());
    block_on(async {
        world.put("held.md", &doc("Held", 9));
        world.settle().await;
    });
    world.assert_matches_r2("held.md");
    // Three embedding batches, each asking once, each willing to wait at the gate.
    assert_eq!(*world.gate_waits.borrow(), [MAX_HOLD_MS; 3]);
}

#[test]
fn a_gate_lost_while_holding_the_request_defers_the_batch_instead_of_calling_unguarded() {
    let faults = Faults::default();
    let mut world = World::new(&faults);
    world.gate_settings = Some(GateSettings {
        limit: 1,
        lease_ms: 60_000,
    });
    // The gate held the first request for 20 s, then was redeployed (the request failed);
    // the second request found it back.
    world.gate_faults.borrow_mut().push_back(20_000);
    block_on(async {
        world.put("lost.md", &doc("Lost", 9));
        world.settle().await;
    });
    world.assert_matches_r2("lost.md");
    let runs = world.runs("lost.md");
    // Deferred, not failed and not run without a lease: no attempt spent, every batch leased.
    assert_eq!((runs[0].attempts, runs[0].retries), (7, 0));
    assert_eq!(world.gate_waits.borrow().len(), 4);
    let stats = world.gate.borrow().stats(world.clock.now_ms());
    assert_eq!((stats.granted, stats.in_flight), (3, 0));
    assert_eq!(world.embedder.answered.get(), 3);
    assert_eq!(world.log.events("provider_gate_lost"), 1);
}

#[test]
fn an_unreachable_gate_lets_the_batch_through() {
    let faults = Faults::default();
    let mut world = World::new(&faults);
    world.gate_settings = Some(GateSettings::default());
    // The first request fails at once: no gate answered (a missing binding, say).
    world.gate_faults.borrow_mut().push_back(0);
    block_on(async {
        world.put("open.md", &doc("Open", 9));
        world.settle().await;
    });
    world.assert_matches_r2("open.md");
    assert_eq!(world.gate_waits.borrow().len(), 3);
    // The first batch ran without a lease; the other two took one.
    assert_eq!(world.gate.borrow().stats(world.clock.now_ms()).granted, 2);
    assert_eq!(world.log.events("provider_gate_unreachable"), 1);
}

#[test]
fn time_held_at_the_gate_is_not_counted_as_the_steps_own_time() {
    let faults = Faults::default();
    let mut world = World::new(&faults);
    world.gate_settings = Some(GateSettings::default());
    world.gate_holds_ms.set(5_000);
    block_on(async {
        world.put("waited.md", &doc("Waited", 3));
        world.settle().await;
    });
    world.assert_matches_r2("waited.md");
    let lines = world.log.lines.borrow();
    let embeds: Vec<&Value> = lines
        .iter()
        .map(|(_, v)| v)
        .filter(|v| v["event"] == "step" && v["step"] == "embed")
        .collect();
    assert_eq!(embeds.len(), 1);
    assert_eq!(embeds[0]["gate_wait_ms"], 5_000);
    assert!(
        embeds[0]["ms"].as_u64().is_some_and(|ms| ms < 5_000),
        "{}",
        embeds[0]
    );
}
