//! The driver on in-memory fakes of the bucket, D1, the queue, the index and
//! the clock: runs over several pages, redeliveries, lost sends, the sweep.

use super::page::rfc3339_ms;
use super::*;
use crate::document::keys::vector_id;
use crate::index::{
    IndexInfo, MutationReceipt, VectorIndex, VectorIndexError, VectorMatch, VectorMetadata,
    VectorQuery, VectorRecord,
};
use crate::ingest::message::{parse_queue_message, QueueMessage, ReconcileContinuation};
use crate::operations::metrics::MetricsBuffer;
use crate::shared::storage::{Clock, IngestQueue, ObjectPage, ObjectRead, ObjectStore, StoreError};
use serde_json::Value;
use std::cell::{Cell, RefCell};
use std::collections::{BTreeSet, HashMap};

const NOW: u64 = 1_800_000_000_000;
const DAY: u64 = 24 * HOUR_MS;

// ---------------------------------------------------------------------------------------------
// Fakes.
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Default)]
struct FakeBucket {
    objects: RefCell<BTreeMap<String, ObjectHead>>,
}

type ObjectHead = crate::shared::storage::ObjectHead;

impl ObjectStore for FakeBucket {
    async fn head(&self, key: &str) -> Result<Option<ObjectHead>, StoreError> {
        Ok(self.objects.borrow().get(key).cloned())
    }

    async fn get(&self, key: &str, _max_bytes: u64) -> Result<ObjectRead, StoreError> {
        Ok(match self.objects.borrow().get(key) {
            Some(head) => ObjectRead::Found {
                head: head.clone(),
                bytes: Vec::new(),
            },
            None => ObjectRead::Missing,
        })
    }

    async fn list(&self, start_after: &str, limit: u32) -> Result<ObjectPage, StoreError> {
        let objects = self.objects.borrow();
        let mut after = objects
            .values()
            .filter(|o| start_after.is_empty() || o.key.as_str() > start_after);
        let page: Vec<ObjectHead> = after.by_ref().take(limit as usize).cloned().collect();
        Ok(ObjectPage {
            objects: page,
            truncated: after.next().is_some(),
        })
    }
}

#[derive(Debug, Default)]
struct FakeQueue {
    sent: RefCell<Vec<Value>>,
    fail_commands: Cell<bool>,
    fail_continuations: Cell<bool>,
}

fn is_continuation(message: &Value) -> bool {
    message.get("type").and_then(Value::as_str) == Some("reconcile")
}

impl IngestQueue for FakeQueue {
    async fn send_batch(&self, messages: &[Value]) -> Result<(), StoreError> {
        assert!(messages.len() <= QUEUE_SEND_BATCH_MAX);
        let continuation = messages.iter().any(is_continuation);
        if (continuation && self.fail_continuations.get())
            || (!continuation && self.fail_commands.get())
        {
            return Err(StoreError::transient("queue send", "queue unavailable"));
        }
        self.sent.borrow_mut().extend(messages.iter().cloned());
        Ok(())
    }
}

impl FakeQueue {
    fn take(&self) -> Vec<Value> {
        std::mem::take(&mut *self.sent.borrow_mut())
    }
}

#[derive(Debug, Default)]
struct FakeIndex {
    ids: RefCell<BTreeSet<String>>,
    lookups: Cell<usize>,
    fail_deletes: Cell<bool>,
}

impl VectorIndex for FakeIndex {
    fn implementation(&self) -> &'static str {
        "fake"
    }

    async fn upsert(&self, records: &[VectorRecord]) -> Result<MutationReceipt, VectorIndexError> {
        let mut ids = self.ids.borrow_mut();
        ids.extend(records.iter().map(|r| r.id.clone()));
        Ok(MutationReceipt {
            count: records.len(),
            mutation_ids: Vec::new(),
        })
    }

    async fn query(&self, _query: &VectorQuery) -> Result<Vec<VectorMatch>, VectorIndexError> {
        Ok(Vec::new())
    }

    async fn get_by_ids(&self, ids: &[String]) -> Result<Vec<VectorRecord>, VectorIndexError> {
        self.lookups.set(self.lookups.get() + 1);
        let stored = self.ids.borrow();
        Ok(ids
            .iter()
            .filter(|id| stored.contains(*id))
            .map(|id| VectorRecord {
                id: id.clone(),
                values: vec![0.0],
                metadata: VectorMetadata {
                    document_id: 0,
                    company_id: None,
                    version: 0,
                },
            })
            .collect())
    }

    async fn delete_by_ids(&self, ids: &[String]) -> Result<MutationReceipt, VectorIndexError> {
        if self.fail_deletes.get() {
            return Err(VectorIndexError::NotConfigured {
                reason: "index unavailable".into(),
            });
        }
        let mut stored = self.ids.borrow_mut();
        for id in ids {
            stored.remove(id);
        }
        Ok(MutationReceipt {
            count: ids.len(),
            mutation_ids: Vec::new(),
        })
    }

    async fn describe(&self) -> Result<IndexInfo, VectorIndexError> {
        Ok(IndexInfo {
            implementation: "fake".into(),
            dimensions: 1,
            vector_count: self.ids.borrow().len() as u64,
            processed_up_to_mutation: None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ChunkRow {
    document_id: i64,
    version: u64,
    index: u32,
    created_at: u64,
}

#[derive(Debug, Default)]
struct FakeStore {
    rows: RefCell<Vec<DocumentRead>>,
    chunks: RefCell<Vec<ChunkRow>>,
    failed_runs: RefCell<HashMap<String, u32>>,
    runs: RefCell<Vec<RunRecord>>,
}

fn in_range(key: &str, after: &str, through: Option<&str>) -> bool {
    key > after && through.is_none_or(|t| key <= t)
}

impl FakeStore {
    fn row(&self, key: &str) -> Option<DocumentRow> {
        self.rows.borrow().iter().find_map(|r| match r {
            DocumentRead::Row(row) if row.key == key => Some(row.clone()),
            _ => None,
        })
    }

    fn run(&self, id: u64) -> RunRecord {
        self.runs
            .borrow()
            .iter()
            .find(|r| r.id == id)
            .cloned()
            .unwrap_or_else(|| panic!("no run {id}"))
    }

    fn versions(&self, document_id: i64) -> BTreeSet<u64> {
        self.chunks
            .borrow()
            .iter()
            .filter(|c| c.document_id == document_id)
            .map(|c| c.version)
            .collect()
    }

    fn sweepable(&self, document_id: i64, version: u64) -> bool {
        self.rows.borrow().iter().any(|r| match r {
            DocumentRead::Row(row) if row.id == document_id => match row.status {
                DocumentStatus::Deleted => version <= row.latest_version,
                _ => row.active_version.is_some_and(|a| version < a),
            },
            _ => false,
        })
    }
}

fn json_push(text: &str, message: &str) -> String {
    let mut errors: Vec<String> = serde_json::from_str(text).unwrap_or_default();
    if errors.len() < MAX_RUN_ERRORS {
        errors.push(message.to_owned());
    }
    serde_json::to_string(&errors).unwrap_or_default()
}

impl ReconcileStore for FakeStore {
    async fn document_rows(
        &self,
        after: &str,
        through: Option<&str>,
        limit: u32,
    ) -> Result<Vec<DocumentRead>, StoreError> {
        let mut rows: Vec<DocumentRead> = self
            .rows
            .borrow()
            .iter()
            .filter(|r| in_range(r.key(), after, through))
            .cloned()
            .collect();
        rows.sort_by(|a, b| a.key().cmp(b.key()));
        rows.truncate(limit as usize);
        Ok(rows)
    }

    async fn failed_run_counts(
        &self,
        after: &str,
        through: Option<&str>,
    ) -> Result<HashMap<String, u32>, StoreError> {
        Ok(self
            .failed_runs
            .borrow()
            .iter()
            .filter(|(k, _)| in_range(k, after, through))
            .map(|(k, n)| (k.clone(), *n))
            .collect())
    }

    async fn chunk_counts(&self, probes: &[StoreProbe]) -> Result<HashMap<i64, u32>, StoreError> {
        let chunks = self.chunks.borrow();
        Ok(probes
            .iter()
            .map(|p| {
                let n = chunks
                    .iter()
                    .filter(|c| c.document_id == p.document_id && c.version == p.version)
                    .count();
                (p.document_id, n as u32)
            })
            .collect())
    }

    async fn vector_counts(&self, _probes: &[StoreProbe]) -> Result<HashMap<i64, u32>, StoreError> {
        Err(StoreError::permanent(
            "vector counts",
            "the fake counts vectors by ids",
        ))
    }

    async fn claim_rows(
        &self,
        commands: &[PlannedCommand],
        now_ms: u64,
    ) -> Result<Vec<bool>, StoreError> {
        let mut rows = self.rows.borrow_mut();
        let mut flags = Vec::new();
        for planned in commands {
            let key = planned.command.key();
            let existing = rows.iter_mut().find(|r| r.key() == key);
            let claimed = match (planned.expected_updated_at_ms, existing) {
                (None, None) => {
                    let id = 1_000 + rows.len() as i64;
                    rows.push(DocumentRead::Row(DocumentRow {
                        id,
                        key: key.to_owned(),
                        status: DocumentStatus::Queued,
                        sha256: None,
                        etag: None,
                        updated_at_ms: now_ms,
                        chunk_count: 0,
                        active_version: None,
                        latest_version: 0,
                    }));
                    true
                }
                (Some(expected), Some(DocumentRead::Row(row))) if row.updated_at_ms == expected => {
                    row.status = DocumentStatus::Queued;
                    row.updated_at_ms = now_ms;
                    true
                }
                _ => false,
            };
            flags.push(claimed);
        }
        Ok(flags)
    }

    async fn leftover_generations(
        &self,
        targets: &[SweepTarget],
        written_before_ms: u64,
    ) -> Result<Vec<LeftoverGeneration>, StoreError> {
        let mut found: BTreeMap<(i64, u64), LeftoverGeneration> = BTreeMap::new();
        for c in self.chunks.borrow().iter() {
            let target = targets
                .iter()
                .any(|t| t.document_id == c.document_id && c.version < t.below_version);
            if !target || c.created_at >= written_before_ms {
                continue;
            }
            let entry = found
                .entry((c.document_id, c.version))
                .or_insert(LeftoverGeneration {
                    document_id: c.document_id,
                    version: c.version,
                    chunk_rows: 0,
                    span: 0,
                });
            entry.chunk_rows += 1;
            entry.span = entry.span.max(c.index + 1);
        }
        Ok(found.into_values().collect())
    }

    async fn delete_leftover_chunks(
        &self,
        generations: &[LeftoverGeneration],
        written_before_ms: u64,
    ) -> Result<u32, StoreError> {
        let doomed: Vec<ChunkRow> = self
            .chunks
            .borrow()
            .iter()
            .filter(|c| {
                c.created_at < written_before_ms
                    && generations
                        .iter()
                        .any(|g| g.document_id == c.document_id && g.version == c.version)
                    && self.sweepable(c.document_id, c.version)
            })
            .copied()
            .collect();
        self.chunks.borrow_mut().retain(|c| !doomed.contains(c));
        Ok(doomed.len() as u32)
    }

    async fn abandon_stale_runs(&self, now_ms: u64, stale_after_ms: u64) -> Result<(), StoreError> {
        for run in self.runs.borrow_mut().iter_mut() {
            let last = run.updated_at_ms.unwrap_or(run.started_at_ms);
            if run.status == RunStatus::Running && last < now_ms.saturating_sub(stale_after_ms) {
                run.status = RunStatus::Failed;
                run.finished_at_ms = Some(now_ms);
                run.errors = json_push(&run.errors, "abandoned: no progress");
            }
        }
        Ok(())
    }

    async fn create_run(
        &self,
        trigger: &str,
        page_size: u32,
        now_ms: u64,
    ) -> Result<CreatedRun, StoreError> {
        let mut runs = self.runs.borrow_mut();
        if let Some(running) = runs.iter().find(|r| r.status == RunStatus::Running) {
            return Ok(CreatedRun::AlreadyRunning(running.id));
        }
        let id = runs.len() as u64 + 1;
        runs.push(RunRecord {
            id,
            trigger: trigger.to_owned(),
            status: RunStatus::Running,
            started_at_ms: now_ms,
            finished_at_ms: None,
            objects_seen: 0,
            documents_seen: 0,
            stores_checked: 0,
            swept: 0,
            pages: 0,
            cursor: None,
            page_size,
            enqueued: "{}".into(),
            errors: "[]".into(),
            updated_at_ms: Some(now_ms),
        });
        Ok(CreatedRun::Started(id))
    }

    async fn load_run(&self, run_id: u64) -> Result<Option<RunRecord>, StoreError> {
        Ok(self.runs.borrow().iter().find(|r| r.id == run_id).cloned())
    }

    async fn claim_page(&self, run_id: u64, page: &ClaimedPage) -> Result<bool, StoreError> {
        let mut runs = self.runs.borrow_mut();
        let Some(run) = runs
            .iter_mut()
            .find(|r| r.id == run_id && r.status == RunStatus::Running && r.pages + 1 == page.page)
        else {
            return Ok(false);
        };
        run.pages = page.page;
        run.cursor = Some(page.cursor.clone());
        run.objects_seen += u64::from(page.objects_seen);
        run.documents_seen += u64::from(page.documents_seen);
        run.stores_checked += u64::from(page.stores_checked);
        run.swept += u64::from(page.swept);
        run.enqueued = page.enqueued.clone();
        run.errors = page.errors.clone();
        run.updated_at_ms = Some(page.now_ms);
        if page.last {
            run.status = RunStatus::Done;
            run.finished_at_ms = Some(page.now_ms);
        }
        Ok(true)
    }

    async fn append_run_error(
        &self,
        run_id: u64,
        message: &str,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        if let Some(run) = self.runs.borrow_mut().iter_mut().find(|r| r.id == run_id) {
            run.errors = json_push(&run.errors, message);
            run.updated_at_ms = Some(now_ms);
        }
        Ok(())
    }

    async fn fail_run(&self, run_id: u64, message: &str, now_ms: u64) -> Result<(), StoreError> {
        if let Some(run) = self
            .runs
            .borrow_mut()
            .iter_mut()
            .find(|r| r.id == run_id && r.status == RunStatus::Running)
        {
            run.status = RunStatus::Failed;
            run.finished_at_ms = Some(now_ms);
            run.errors = json_push(&run.errors, message);
        }
        Ok(())
    }

    async fn latest_runs(&self, limit: u32) -> Result<Vec<RunRecord>, StoreError> {
        let mut runs = self.runs.borrow().clone();
        runs.reverse();
        runs.truncate(limit as usize);
        Ok(runs)
    }
}

#[derive(Debug)]
struct FakeClock(Cell<u64>);

impl Clock for FakeClock {
    fn now_ms(&self) -> u64 {
        self.0.get()
    }
}

/// The run's ports over the fakes above.
#[derive(Debug)]
struct FakePorts {
    store: FakeStore,
    objects: FakeBucket,
    queue: FakeQueue,
    index: FakeIndex,
    clock: FakeClock,
    metrics: MetricsBuffer,
}

impl ReconcilePorts for FakePorts {
    type Store = FakeStore;
    type Objects = FakeBucket;
    type Queue = FakeQueue;
    type Index = FakeIndex;
    type Clock = FakeClock;
    type Metrics = MetricsBuffer;

    fn store(&self) -> &FakeStore {
        &self.store
    }
    fn objects(&self) -> &FakeBucket {
        &self.objects
    }
    fn queue(&self) -> &FakeQueue {
        &self.queue
    }
    fn index(&self) -> &FakeIndex {
        &self.index
    }
    fn clock(&self) -> &FakeClock {
        &self.clock
    }
    fn metrics(&self) -> &MetricsBuffer {
        &self.metrics
    }
}

type World = Reconciler<FakePorts>;

fn world(page_size: u32) -> World {
    Reconciler {
        ports: FakePorts {
            store: FakeStore::default(),
            objects: FakeBucket::default(),
            queue: FakeQueue::default(),
            index: FakeIndex::default(),
            clock: FakeClock(Cell::new(NOW)),
            metrics: MetricsBuffer::default(),
        },
        settings: ReconcileSettings::default().with_page_size(page_size),
        vector_counting: VectorCounting::ByIds,
    }
}

fn put_object(w: &World, key: &str, etag: &str) {
    w.ports.objects.objects.borrow_mut().insert(
        key.to_owned(),
        ObjectHead {
            key: key.to_owned(),
            etag: etag.to_owned(),
            size: 42,
            uploaded_ms: NOW - 3 * DAY,
            sha256: None,
        },
    );
}

fn put_row(w: &World, row: DocumentRow) {
    w.ports.store.rows.borrow_mut().push(DocumentRead::Row(row));
}

/// Chunk rows (written `written_at`) and vectors of one generation.
fn put_generation(w: &World, document_id: i64, version: u64, chunks: u32, written_at: u64) {
    for index in 0..chunks {
        w.ports.store.chunks.borrow_mut().push(ChunkRow {
            document_id,
            version,
            index,
            created_at: written_at,
        });
        w.ports
            .index
            .ids
            .borrow_mut()
            .insert(vector_id(document_id, version as i64, index));
    }
}

/// A ready document committed two days ago, consistent in every store.
fn ready(w: &World, id: i64, key: &str, version: u64) -> DocumentRow {
    put_object(w, key, &format!("etag-{key}"));
    let row = DocumentRow {
        id,
        key: key.to_owned(),
        status: DocumentStatus::Ready,
        sha256: None,
        etag: Some(format!("etag-{key}")),
        updated_at_ms: NOW - 2 * DAY,
        chunk_count: 3,
        active_version: Some(version),
        latest_version: version,
    };
    put_row(w, row.clone());
    put_generation(w, id, version, 3, NOW - 2 * DAY);
    row
}

fn continuations(messages: &[Value]) -> Vec<ReconcileContinuation> {
    messages
        .iter()
        .filter_map(|m| match parse_queue_message(m) {
            Ok(QueueMessage::Reconcile(c)) => Some(c),
            _ => None,
        })
        .collect()
}

fn commands(messages: &[Value]) -> Vec<Value> {
    messages
        .iter()
        .filter(|m| !is_continuation(m))
        .cloned()
        .collect()
}

/// Feeds continuations back until the run stops asking; returns the commands sent.
fn drain(w: &World) -> Vec<Value> {
    let mut sent_commands = Vec::new();
    for _ in 0..100 {
        let messages = w.ports.queue.take();
        sent_commands.extend(commands(&messages));
        let next = continuations(&messages);
        if next.is_empty() {
            return sent_commands;
        }
        for c in next {
            pollster::block_on(w.continue_run(&c, 1)).expect("page");
        }
    }
    panic!("the run never ended");
}

fn start(w: &World) -> Started {
    pollster::block_on(w.start("admin")).expect("start")
}

fn run_id(started: &Started) -> u64 {
    match started {
        Started::Run { run_id, .. } => *run_id,
        Started::AlreadyRunning { run_id } => panic!("run {run_id} already running"),
    }
}

fn continuation(run_id: u64, page: u32, cursor: &str) -> ReconcileContinuation {
    ReconcileContinuation {
        run_id,
        page,
        cursor: cursor.to_owned(),
    }
}

// ---------------------------------------------------------------------------------------------
// Runs and pages.
// ---------------------------------------------------------------------------------------------

#[test]
fn a_run_over_several_pages_ends_done_with_the_right_counts() {
    let w = world(2);
    for (i, key) in ["a.md", "b.md", "c.md", "d.md", "e.md"].iter().enumerate() {
        ready(&w, i as i64 + 1, key, 2);
    }
    put_object(&w, "f-new.md", "etag-new");
    put_row(
        &w,
        DocumentRow {
            id: 9,
            key: "g-gone.md".into(),
            status: DocumentStatus::Ready,
            sha256: None,
            etag: Some("x".into()),
            updated_at_ms: NOW - 2 * DAY,
            chunk_count: 0,
            active_version: Some(1),
            latest_version: 1,
        },
    );

    let id = run_id(&start(&w));
    let sent = drain(&w);

    let run = w.ports.store.run(id);
    assert_eq!(run.status, RunStatus::Done);
    assert!(run.pages >= 3, "pages: {}", run.pages);
    assert_eq!(run.objects_seen, 6);
    assert_eq!(run.documents_seen, 6);
    assert_eq!(run.stores_checked, 5);
    assert_eq!(run.errors, "[]");
    let enqueued: BTreeMap<String, u64> = serde_json::from_str(&run.enqueued).expect("counts");
    assert_eq!(
        enqueued,
        BTreeMap::from([
            ("reconcile:gone".to_owned(), 1),
            ("reconcile:missing".to_owned(), 1)
        ])
    );
    let keys: Vec<&str> = sent
        .iter()
        .filter_map(|m| m.get("key").and_then(Value::as_str))
        .collect();
    assert_eq!(keys, ["f-new.md", "g-gone.md"]);
    assert_eq!(
        w.ports.store.row("f-new.md").map(|r| r.status),
        Some(DocumentStatus::Queued)
    );
    // One data point per page, the last one marked, summing to the run's counts.
    let points = w.ports.metrics.take();
    assert_eq!(points.len() as u32, run.pages);
    assert!(points.iter().all(|p| p.name == format!("run {id}")));
    assert_eq!(
        points
            .iter()
            .map(|p| p.outcome.as_str())
            .filter(|o| *o == "last")
            .count(),
        1
    );
    assert_eq!(points.iter().map(|p| p.items).sum::<f64>(), 6.0);
    assert_eq!(points.iter().map(|p| p.enqueued).sum::<f64>(), 2.0);
}

#[test]
fn a_redelivered_page_counts_once_and_resends_the_continuation_only_when_latest() {
    let w = world(2);
    for (i, key) in ["a.md", "b.md", "c.md", "d.md", "e.md", "f.md"]
        .iter()
        .enumerate()
    {
        ready(&w, i as i64 + 1, key, 2);
    }
    let id = run_id(&start(&w));
    let page2 = continuations(&w.ports.queue.take());
    assert_eq!(page2.len(), 1);

    // Page 2 is recorded, but sending page 3's continuation fails.
    w.ports.queue.fail_continuations.set(true);
    let failed = pollster::block_on(w.continue_run(&page2[0], 1));
    assert!(failed.is_err());
    let after_page2 = w.ports.store.run(id);
    assert_eq!(after_page2.pages, 2);
    assert_eq!(after_page2.objects_seen, 4);
    assert!(
        after_page2.errors.contains("page 2"),
        "{}",
        after_page2.errors
    );
    assert!(w.ports.queue.take().is_empty());

    // The redelivery is skipped, counts nothing, and resends page 3.
    w.ports.queue.fail_continuations.set(false);
    let pages_measured = w.ports.metrics.take().len();
    let again = pollster::block_on(w.continue_run(&page2[0], 2)).expect("redelivery");
    assert_eq!(again, Advance::Skipped("page already done"));
    assert!(
        w.ports.metrics.take().is_empty(),
        "a skipped page is no data point"
    );
    assert_eq!(pages_measured, 2);
    assert_eq!(w.ports.store.run(id).objects_seen, 4);
    let page3 = continuations(&w.ports.queue.take());
    assert_eq!(page3.len(), 1);
    assert_eq!(page3[0].page, 3);

    // A redelivery of an older page resends nothing.
    let old = pollster::block_on(w.continue_run(&continuation(id, 1, ""), 2)).expect("old");
    assert_eq!(old, Advance::Skipped("page already done"));
    assert!(w.ports.queue.take().is_empty());

    // A duplicate first delivery of the latest page resends nothing either.
    let duplicate = pollster::block_on(w.continue_run(&page2[0], 1)).expect("duplicate");
    assert_eq!(duplicate, Advance::Skipped("page already done"));
    assert!(w.ports.queue.take().is_empty());

    pollster::block_on(w.continue_run(&page3[0], 1)).expect("page 3");
    let run = w.ports.store.run(id);
    assert_eq!(run.status, RunStatus::Done);
    assert_eq!(run.objects_seen, 6);
}

#[test]
fn an_out_of_order_page_is_skipped() {
    let w = world(1);
    ready(&w, 1, "a.md", 2);
    ready(&w, 2, "b.md", 2);
    ready(&w, 3, "c.md", 2);
    let id = run_id(&start(&w));
    w.ports.queue.take();
    let before = w.ports.store.run(id);
    let skipped =
        pollster::block_on(w.continue_run(&continuation(id, 3, "b.md"), 1)).expect("skip");
    assert_eq!(skipped, Advance::Skipped("page out of order"));
    assert_eq!(w.ports.store.run(id), before);
    assert!(w.ports.queue.take().is_empty());
    let unknown = pollster::block_on(w.continue_run(&continuation(99, 1, ""), 1)).expect("skip");
    assert_eq!(unknown, Advance::Skipped("unknown run"));
}

#[test]
fn a_failed_queue_send_leaves_the_rows_claimed_and_reports_the_error() {
    let w = world(10);
    ready(&w, 1, "a.md", 2);
    put_object(&w, "b-new.md", "etag-b");
    w.ports.queue.fail_commands.set(true);
    let id = run_id(&start(&w));
    let run = w.ports.store.run(id);
    assert_eq!(run.status, RunStatus::Done);
    assert!(
        run.errors.contains("enqueueing 1 command(s) failed"),
        "{}",
        run.errors
    );
    assert_eq!(run.enqueued, "{}");
    // Claimed: the stuck rule picks it up on a later run; nothing is enqueued twice meanwhile.
    assert_eq!(
        w.ports.store.row("b-new.md").map(|r| r.status),
        Some(DocumentStatus::Queued)
    );
    assert!(w.ports.queue.take().is_empty());
}

#[test]
fn a_run_is_refused_while_another_is_running_and_stale_runs_are_abandoned() {
    let w = world(1);
    ready(&w, 1, "a.md", 2);
    ready(&w, 2, "b.md", 2);
    let first = run_id(&start(&w));
    assert_eq!(
        start(&w),
        Started::AlreadyRunning { run_id: first },
        "one run at a time"
    );

    // The first run's continuation is lost; an hour later it is abandoned.
    w.ports.queue.take();
    w.ports.clock.0.set(NOW + RUN_STALE_AFTER_MS + 1);
    let second = run_id(&start(&w));
    assert_ne!(second, first);
    let abandoned = w.ports.store.run(first);
    assert_eq!(abandoned.status, RunStatus::Failed);
    assert!(abandoned.errors.contains("abandoned"));
    assert_eq!(w.ports.store.run(second).status, RunStatus::Running);
}

#[test]
fn a_dead_lettered_continuation_fails_its_run() {
    let w = world(1);
    ready(&w, 1, "a.md", 2);
    ready(&w, 2, "b.md", 2);
    let id = run_id(&start(&w));
    let next = continuations(&w.ports.queue.take());
    pollster::block_on(w.dead_lettered(&next[0], "out of retries")).expect("recorded");
    let run = w.ports.store.run(id);
    assert_eq!(run.status, RunStatus::Failed);
    assert!(run.errors.contains("page 2 dead-lettered: out of retries"));
    let late = pollster::block_on(w.continue_run(&next[0], 4)).expect("skip");
    assert_eq!(late, Advance::Skipped("run is not running"));
}

// ---------------------------------------------------------------------------------------------
// Vectors settling (issue 11, item 8).
// ---------------------------------------------------------------------------------------------

#[test]
fn vectors_of_a_fresh_commit_are_not_checked_until_they_settle() {
    let w = world(10);
    let row = ready(&w, 1, "a.md", 2);
    // Committed a minute ago; Vectorize shows none of its vectors yet.
    w.ports.store.rows.borrow_mut().clear();
    put_row(
        &w,
        DocumentRow {
            updated_at_ms: NOW - 60_000,
            ..row.clone()
        },
    );
    w.ports.index.ids.borrow_mut().clear();
    let id = run_id(&start(&w));
    let run = w.ports.store.run(id);
    assert_eq!(run.enqueued, "{}", "no mismatch while settling");
    assert_eq!(run.stores_checked, 1, "chunk rows are still compared");
    assert_eq!(
        w.ports.index.lookups.get(),
        0,
        "no lookup for a settling document"
    );

    // The same document committed long enough ago is a mismatch.
    w.ports.clock.0.set(NOW - 60_000 + VECTOR_SETTLE_MS);
    let id = run_id(&start(&w));
    let run = w.ports.store.run(id);
    assert_eq!(run.enqueued, r#"{"reconcile:vectors-mismatch":1}"#);
}

#[test]
fn a_synchronous_index_is_checked_right_after_a_commit() {
    let mut w = world(10);
    w.settings = w.settings.with_vector_settle_ms(0);
    let row = ready(&w, 1, "a.md", 2);
    w.ports.store.rows.borrow_mut().clear();
    put_row(
        &w,
        DocumentRow {
            updated_at_ms: NOW - 60_000,
            ..row
        },
    );
    w.ports.index.ids.borrow_mut().clear();
    let id = run_id(&start(&w));
    assert_eq!(
        w.ports.store.run(id).enqueued,
        r#"{"reconcile:vectors-mismatch":1}"#
    );
}

#[test]
fn chunk_rows_of_a_fresh_commit_are_still_compared() {
    let w = world(10);
    let row = ready(&w, 1, "a.md", 2);
    w.ports.store.rows.borrow_mut().clear();
    put_row(
        &w,
        DocumentRow {
            updated_at_ms: NOW - 60_000,
            chunk_count: 5,
            ..row
        },
    );
    let id = run_id(&start(&w));
    assert_eq!(
        w.ports.store.run(id).enqueued,
        r#"{"reconcile:chunks-mismatch":1}"#
    );
}

// ---------------------------------------------------------------------------------------------
// Sweeping leftover generations (issue 11, item 4).
// ---------------------------------------------------------------------------------------------

#[test]
fn old_generations_are_swept_and_live_or_staged_ones_kept() {
    let w = world(10);
    ready(&w, 1, "a.md", 3);
    let old = NOW - DAY;
    put_generation(&w, 1, 1, 4, old); // failed to drop long ago
    put_generation(&w, 1, 4, 2, old); // staged by a processor: newer than the active one
    put_generation(&w, 1, 2, 3, NOW - 60_000); // dropped a minute ago: within the grace
                                               // A deleted document whose rows and vectors were left behind.
    put_row(
        &w,
        DocumentRow {
            id: 2,
            key: "b-deleted.md".into(),
            status: DocumentStatus::Deleted,
            sha256: None,
            etag: None,
            updated_at_ms: old,
            chunk_count: 0,
            active_version: None,
            latest_version: 5,
        },
    );
    put_generation(&w, 2, 5, 2, old);
    // Never committed: whatever exists may be its first generation in the making.
    put_row(
        &w,
        DocumentRow {
            id: 3,
            key: "c-new.md".into(),
            status: DocumentStatus::Processing,
            sha256: None,
            etag: None,
            updated_at_ms: NOW - 60_000,
            chunk_count: 0,
            active_version: None,
            latest_version: 1,
        },
    );
    put_object(&w, "c-new.md", "etag-c");
    put_generation(&w, 3, 1, 2, old);

    let id = run_id(&start(&w));
    let run = w.ports.store.run(id);
    assert_eq!(run.status, RunStatus::Done);
    assert_eq!(run.swept, 2, "{run:?}");
    assert_eq!(run.enqueued, "{}");
    assert_eq!(w.ports.store.versions(1), BTreeSet::from([2, 3, 4]));
    assert!(w.ports.store.versions(2).is_empty());
    assert_eq!(w.ports.store.versions(3), BTreeSet::from([1]));
    let ids = w.ports.index.ids.borrow();
    assert!(!ids.contains(&vector_id(1, 1, 0)) && !ids.contains(&vector_id(1, 1, 3)));
    assert!(!ids.contains(&vector_id(2, 5, 1)));
    for kept in [(1, 3, 2), (1, 4, 1), (1, 2, 2), (3, 1, 1)] {
        assert!(ids.contains(&vector_id(kept.0, kept.1, kept.2)), "{kept:?}");
    }
}

#[test]
fn a_generation_whose_vectors_cannot_be_deleted_keeps_its_rows() {
    let w = world(10);
    ready(&w, 1, "a.md", 3);
    put_generation(&w, 1, 1, 2, NOW - DAY);
    w.ports.index.fail_deletes.set(true);
    let id = run_id(&start(&w));
    let run = w.ports.store.run(id);
    assert_eq!(run.status, RunStatus::Done);
    assert_eq!(run.swept, 0);
    assert!(run
        .errors
        .contains("sweep: vectors of document 1 version 1"));
    assert_eq!(w.ports.store.versions(1), BTreeSet::from([1, 3]));

    // Found again by the next run once the index answers.
    w.ports.index.fail_deletes.set(false);
    let id = run_id(&start(&w));
    assert_eq!(w.ports.store.run(id).swept, 1);
    assert_eq!(w.ports.store.versions(1), BTreeSet::from([3]));
}

#[test]
fn sweep_targets_follow_the_row() {
    let base = DocumentRow {
        id: 1,
        key: "a.md".into(),
        status: DocumentStatus::Ready,
        sha256: None,
        etag: None,
        updated_at_ms: NOW,
        chunk_count: 1,
        active_version: Some(4),
        latest_version: 6,
    };
    let deleted = DocumentRow {
        id: 2,
        key: "b.md".into(),
        status: DocumentStatus::Deleted,
        active_version: None,
        ..base.clone()
    };
    let uncommitted = DocumentRow {
        id: 3,
        key: "c.md".into(),
        status: DocumentStatus::Processing,
        active_version: None,
        ..base.clone()
    };
    let beyond = DocumentRow {
        id: 4,
        key: "z.md".into(),
        ..base.clone()
    };
    let targets = sweep_targets(
        &[base, deleted, uncommitted, beyond],
        &PageEnd::Through("m.md".into()),
    );
    assert_eq!(
        targets,
        [
            SweepTarget {
                document_id: 1,
                below_version: 4
            },
            SweepTarget {
                document_id: 2,
                below_version: 7
            },
        ]
    );
}

#[test]
fn observed_at_is_rfc3339_like_javascript() {
    assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
    assert_eq!(rfc3339_ms(NOW), "2027-01-15T08:00:00.000Z");
    assert_eq!(rfc3339_ms(951_782_400_123), "2000-02-29T00:00:00.123Z");
    assert_eq!(rfc3339_ms(1_704_067_199_999), "2023-12-31T23:59:59.999Z");
}
