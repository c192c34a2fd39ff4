use super::*;
use crate::ingest::message::IngestCommand;
use std::collections::{BTreeSet, HashMap};

const NOW: u64 = 1_800_000_000_000;
const DAY: u64 = 24 * HOUR_MS;
const OBSERVED: &str = "2027-01-15T08:00:00.000Z";

fn object(key: &str, etag: &str, sha256: Option<&str>) -> ListedObject {
    ListedObject {
        key: key.into(),
        etag: etag.into(),
        size: 42,
        uploaded_ms: NOW - 2 * DAY,
        sha256: sha256.map(str::to_owned),
    }
}

fn row(key: &str, status: DocumentStatus, etag: &str, sha256: Option<&str>) -> DocumentRow {
    DocumentRow {
        id: 7,
        key: key.into(),
        status,
        sha256: sha256.map(str::to_owned),
        etag: Some(etag.into()),
        updated_at_ms: NOW - DAY / 2,
        chunk_count: 3,
        active_version: Some(2),
        latest_version: 2,
    }
}

fn aged(mut row: DocumentRow, age_ms: u64) -> DocumentRow {
    row.updated_at_ms = NOW - age_ms;
    row
}

struct Case {
    name: &'static str,
    object: Option<ListedObject>,
    row: Option<DocumentRow>,
    stores: Option<StoreCounts>,
    failed_runs: u32,
    expected: Option<Reason>,
}

fn run_case(case: &Case, settings: &ReconcileSettings) -> PagePlan {
    let objects: Vec<ListedObject> = case.object.iter().cloned().collect();
    let documents: Vec<DocumentRow> = case.row.iter().cloned().collect();
    let stores: HashMap<i64, StoreCounts> = case.stores.iter().map(|c| (7, *c)).collect();
    let failed_runs: HashMap<String, u32> = case
        .row
        .iter()
        .map(|r| (r.key.clone(), case.failed_runs))
        .collect();
    let end = PageEnd::Last;
    let facts = PageFacts {
        objects: &objects,
        documents: &documents,
        end: &end,
        stores: &stores,
        failed_runs: &failed_runs,
        now_ms: NOW,
        observed_at: OBSERVED,
    };
    plan_page(&facts, settings)
}

fn consistent_stores() -> Option<StoreCounts> {
    Some(StoreCounts {
        chunks: 3,
        vectors: 3,
    })
}

fn cases() -> Vec<Case> {
    use DocumentStatus as S;
    let k = "companies/acme/a.md";
    vec![
        Case {
            name: "object without a row is missing",
            object: Some(object(k, "e1", None)),
            row: None,
            stores: None,
            failed_runs: 0,
            expected: Some(Reason::Missing),
        },
        Case {
            name: "object re-created over a tombstone is missing",
            object: Some(object(k, "e1", None)),
            row: Some(row(k, S::Deleted, "e0", None)),
            stores: None,
            failed_runs: 0,
            expected: Some(Reason::Missing),
        },
        Case {
            name: "tombstone without object is consistent",
            object: None,
            row: Some(row(k, S::Deleted, "e0", None)),
            stores: None,
            failed_runs: 0,
            expected: None,
        },
        Case {
            name: "ready row without object is gone",
            object: None,
            row: Some(row(k, S::Ready, "e1", None)),
            stores: None,
            failed_runs: 0,
            expected: Some(Reason::Gone),
        },
        Case {
            name: "failed row without object is gone",
            object: None,
            row: Some(row(k, S::Failed, "e1", None)),
            stores: None,
            failed_runs: 5,
            expected: Some(Reason::Gone),
        },
        Case {
            name: "recent queued row without object is in flight",
            object: None,
            row: Some(row(k, S::Queued, "e1", None)),
            stores: None,
            failed_runs: 0,
            expected: None,
        },
        Case {
            name: "stuck processing row without object is gone",
            object: None,
            row: Some(aged(row(k, S::Processing, "e1", None), DAY + 1)),
            stores: None,
            failed_runs: 0,
            expected: Some(Reason::Gone),
        },
        Case {
            name: "ready and consistent is left alone",
            object: Some(object(k, "e1", None)),
            row: Some(row(k, S::Ready, "e1", None)),
            stores: consistent_stores(),
            failed_runs: 0,
            expected: None,
        },
        Case {
            name: "etag differs without hashes: changed",
            object: Some(object(k, "e2", None)),
            row: Some(row(k, S::Ready, "e1", Some("aa"))),
            stores: consistent_stores(),
            failed_runs: 0,
            expected: Some(Reason::Changed),
        },
        Case {
            name: "sha256 metadata wins over a different etag (same bytes re-uploaded)",
            object: Some(object(k, "e2", Some("AA"))),
            row: Some(row(k, S::Ready, "e1", Some("aa"))),
            stores: consistent_stores(),
            failed_runs: 0,
            expected: None,
        },
        Case {
            name: "sha256 metadata differs although the etag is the same: changed",
            object: Some(object(k, "e1", Some("bb"))),
            row: Some(row(k, S::Ready, "e1", Some("aa"))),
            stores: consistent_stores(),
            failed_runs: 0,
            expected: Some(Reason::Changed),
        },
        Case {
            name: "sha256 metadata but no hash on the row falls back to the etag",
            object: Some(object(k, "e1", Some("bb"))),
            row: Some(row(k, S::Ready, "e1", None)),
            stores: consistent_stores(),
            failed_runs: 0,
            expected: None,
        },
        Case {
            name: "missing vectors: vectors-mismatch",
            object: Some(object(k, "e1", None)),
            row: Some(row(k, S::Ready, "e1", None)),
            stores: Some(StoreCounts {
                chunks: 3,
                vectors: 1,
            }),
            failed_runs: 0,
            expected: Some(Reason::VectorsMismatch),
        },
        Case {
            name: "missing chunk rows: chunks-mismatch",
            object: Some(object(k, "e1", None)),
            row: Some(row(k, S::Ready, "e1", None)),
            stores: Some(StoreCounts {
                chunks: 0,
                vectors: 3,
            }),
            failed_runs: 0,
            expected: Some(Reason::ChunksMismatch),
        },
        Case {
            name: "ready without an active generation: chunks-mismatch",
            object: Some(object(k, "e1", None)),
            row: Some(DocumentRow {
                active_version: None,
                ..row(k, S::Ready, "e1", None)
            }),
            stores: None,
            failed_runs: 0,
            expected: Some(Reason::ChunksMismatch),
        },
        Case {
            name: "ready but not counted is not judged on its stores",
            object: Some(object(k, "e1", None)),
            row: Some(row(k, S::Ready, "e1", None)),
            stores: None,
            failed_runs: 0,
            expected: None,
        },
        Case {
            name: "recently processing is in flight",
            object: Some(object(k, "e2", None)),
            row: Some(aged(row(k, S::Processing, "e1", None), DAY - 1)),
            stores: None,
            failed_runs: 0,
            expected: None,
        },
        Case {
            name: "processing for more than a day is stuck",
            object: Some(object(k, "e1", None)),
            row: Some(aged(row(k, S::Processing, "e1", None), DAY + 1)),
            stores: None,
            failed_runs: 0,
            expected: Some(Reason::Stuck),
        },
        Case {
            name: "queued for more than a day is stuck",
            object: Some(object(k, "e1", None)),
            row: Some(aged(row(k, S::Queued, "e1", None), 3 * DAY)),
            stores: None,
            failed_runs: 0,
            expected: Some(Reason::Stuck),
        },
        Case {
            name: "failed with retries left is retried",
            object: Some(object(k, "e1", None)),
            row: Some(row(k, S::Failed, "e1", None)),
            stores: None,
            failed_runs: 2,
            expected: Some(Reason::FailedRetry),
        },
        Case {
            name: "failed out of retries is left alone (permanent errors)",
            object: Some(object(k, "e1", None)),
            row: Some(row(k, S::Failed, "e1", None)),
            stores: None,
            failed_runs: 3,
            expected: None,
        },
        Case {
            name: "failed but re-uploaded after the failure is changed",
            object: Some(ListedObject {
                uploaded_ms: NOW - 1_000,
                ..object(k, "e9", None)
            }),
            row: Some(row(k, S::Failed, "e1", None)),
            stores: None,
            failed_runs: 3,
            expected: Some(Reason::Changed),
        },
    ]
}

#[test]
fn every_rule_decides_as_the_table_says() {
    let settings = ReconcileSettings::default();
    for case in cases() {
        let plan = run_case(&case, &settings);
        let reasons: Vec<Reason> = plan.commands.iter().map(|c| c.reason).collect();
        assert_eq!(
            reasons,
            case.expected.into_iter().collect::<Vec<_>>(),
            "{}",
            case.name
        );
    }
}

#[test]
fn commands_are_forced_processes_or_deletes_dated_now() {
    let settings = ReconcileSettings::default();
    for case in cases() {
        let plan = run_case(&case, &settings);
        for planned in &plan.commands {
            assert_eq!(planned.command.reason(), planned.reason.as_str());
            assert_eq!(planned.command.key(), "companies/acme/a.md");
            assert_eq!(
                planned.expected_updated_at_ms,
                case.row.as_ref().map(|r| r.updated_at_ms),
                "{}",
                case.name
            );
            match (&planned.command, &case.object) {
                (
                    IngestCommand::Process {
                        object: Some(v),
                        force,
                        ..
                    },
                    Some(o),
                ) => {
                    assert!(*force, "{}", case.name);
                    assert_eq!(v.etag.as_deref(), Some(o.etag.as_str()));
                    assert_eq!(v.event_time.as_deref(), Some(OBSERVED));
                }
                (IngestCommand::Delete { event_time, .. }, None) => {
                    assert_eq!(event_time.as_deref(), Some(OBSERVED));
                }
                other => panic!("{}: unexpected {other:?}", case.name),
            }
        }
    }
}

/// A second run over what the first one left (every enqueued row marked
/// `queued` just now, or healed) enqueues nothing.
#[test]
fn a_second_run_enqueues_nothing() {
    let settings = ReconcileSettings::default();
    for case in cases() {
        let first = run_case(&case, &settings);
        let Some(planned) = first.commands.first() else {
            continue;
        };
        // What the Worker does when it enqueues: the row becomes `queued` now.
        let claimed = DocumentRow {
            status: DocumentStatus::Queued,
            updated_at_ms: NOW,
            ..case
                .row
                .clone()
                .unwrap_or_else(|| row(planned.command.key(), DocumentStatus::Queued, "", None))
        };
        let in_flight = Case {
            row: Some(claimed),
            ..case
        };
        let second = run_case(&in_flight, &settings);
        assert!(second.commands.is_empty(), "in flight: {}", in_flight.name);
    }
    // And once healed: ready rows matching their objects with matching stores.
    let k = "companies/acme/a.md";
    let healed = Case {
        name: "healed",
        object: Some(object(k, "e2", Some("cc"))),
        row: Some(row(k, DocumentStatus::Ready, "e2", Some("cc"))),
        stores: consistent_stores(),
        failed_runs: 0,
        expected: None,
    };
    assert!(run_case(&healed, &settings).commands.is_empty());
}

#[test]
fn stuck_threshold_is_configurable() {
    let settings = ReconcileSettings {
        stuck_after_ms: 2 * HOUR_MS,
        ..ReconcileSettings::default()
    };
    let k = "a.md";
    let case = Case {
        name: "processing for three hours",
        object: Some(object(k, "e1", None)),
        row: Some(aged(
            row(k, DocumentStatus::Processing, "e1", None),
            3 * HOUR_MS,
        )),
        stores: None,
        failed_runs: 0,
        expected: Some(Reason::Stuck),
    };
    assert_eq!(run_case(&case, &settings).counts()["reconcile:stuck"], 1);
    assert!(run_case(&case, &ReconcileSettings::default())
        .commands
        .is_empty());
}

#[test]
fn settings_have_the_documented_defaults_and_clamp_the_page() {
    // The vars are parsed (strictly) by `crate::config`.
    let d = ReconcileSettings::default();
    assert_eq!(
        (d.page_size, d.stuck_after_ms, d.max_failed_runs),
        (500, DAY, 3)
    );
    assert_eq!(d.with_page_size(5_000).page_size, 1_000);
    assert_eq!(d.with_page_size(0).page_size, 1);
}

fn keys_object(keys: &[&str]) -> Vec<ListedObject> {
    keys.iter().map(|k| object(k, "e", None)).collect()
}

fn keys_rows(keys: &[&str]) -> Vec<DocumentRow> {
    keys.iter()
        .map(|k| row(k, DocumentStatus::Ready, "e", None))
        .collect()
}

#[test]
fn page_end_is_the_nearer_horizon() {
    let objects = keys_object(&["b", "d", "f"]);
    let rows = keys_rows(&["a", "c", "e"]);
    let through = |k: &str| Ok(PageEnd::Through(k.to_owned()));
    assert_eq!(
        page_end("", &objects, false, &rows, false),
        Ok(PageEnd::Last)
    );
    assert_eq!(page_end("", &objects, true, &rows, false), through("f"));
    assert_eq!(page_end("", &objects, false, &rows, true), through("e"));
    assert_eq!(page_end("", &objects, true, &rows, true), through("e"));
    assert_eq!(
        page_end("", &keys_object(&["b"]), true, &rows, true),
        through("b")
    );
    assert_eq!(
        page_end("x", &[], true, &rows, false),
        Err(ReconcileError::EmptyTruncatedListing { cursor: "x".into() })
    );
}

#[test]
fn keys_past_the_page_end_are_left_for_the_next_page() {
    // R2 stopped at "c" (truncated); D1 has rows up to "e" in range only
    // when the Worker did not bound the query — they must not be judged gone.
    let objects = keys_object(&["a", "c"]);
    let rows = keys_rows(&["a", "b", "e"]);
    let end = page_end("", &objects, true, &rows, false).unwrap();
    assert_eq!(end, PageEnd::Through("c".into()));
    let stores: HashMap<i64, StoreCounts> = HashMap::from([(7, consistent_stores().unwrap())]);
    let runs = HashMap::new();
    let facts = PageFacts {
        objects: &objects,
        documents: &rows,
        end: &end,
        stores: &stores,
        failed_runs: &runs,
        now_ms: NOW,
        observed_at: OBSERVED,
    };
    let plan = plan_page(&facts, &ReconcileSettings::default());
    let judged: Vec<(&str, Reason)> = plan
        .commands
        .iter()
        .map(|c| (c.command.key(), c.reason))
        .collect();
    // "b" has no object in the listed range: gone. "c" has no row: missing. "e" waits.
    assert_eq!(judged, vec![("b", Reason::Gone), ("c", Reason::Missing)]);
    assert_eq!(plan.objects_seen, 2);
    assert_eq!(plan.documents_seen, 2);
    assert_eq!(plan.stores_checked, 1);
}

#[test]
fn paging_visits_every_key_exactly_once() {
    // Simulate the Worker's loop over sorted keys with a tiny page size.
    let all_objects: Vec<String> = (0..23).map(|i| format!("k{i:03}")).collect();
    let all_rows: Vec<String> = (0..23)
        .filter(|i| i % 3 != 0)
        .map(|i| format!("k{i:03}"))
        .chain((0..7).map(|i| format!("k{i:03}x")))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let page_size = 4;
    let mut cursor = String::new();
    let mut seen_objects = 0;
    let mut seen_rows = 0;
    let mut pages = 0;
    loop {
        pages += 1;
        assert!(pages < 100, "no progress");
        let listed: Vec<&String> = all_objects
            .iter()
            .filter(|k| **k > cursor)
            .take(page_size + 1)
            .collect();
        let truncated = listed.len() > page_size;
        let objects = keys_object(
            &listed
                .iter()
                .take(page_size)
                .map(|k| k.as_str())
                .collect::<Vec<_>>(),
        );
        let upper = truncated.then(|| objects.last().unwrap().key.clone());
        let in_range: Vec<&String> = all_rows
            .iter()
            .filter(|k| **k > cursor && upper.as_ref().is_none_or(|u| *k <= u))
            .take(page_size + 1)
            .collect();
        let rows_truncated = in_range.len() > page_size;
        let rows = keys_rows(
            &in_range
                .iter()
                .take(page_size)
                .map(|k| k.as_str())
                .collect::<Vec<_>>(),
        );
        let end = page_end(&cursor, &objects, truncated, &rows, rows_truncated).unwrap();
        let stores = HashMap::new();
        let runs = HashMap::new();
        let plan = plan_page(
            &PageFacts {
                objects: &objects,
                documents: &rows,
                end: &end,
                stores: &stores,
                failed_runs: &runs,
                now_ms: NOW,
                observed_at: OBSERVED,
            },
            &ReconcileSettings::default(),
        );
        seen_objects += plan.objects_seen;
        seen_rows += plan.documents_seen;
        match end {
            PageEnd::Last => break,
            PageEnd::Through(k) => cursor = k,
        }
    }
    assert_eq!(seen_objects as usize, all_objects.len());
    assert_eq!(seen_rows as usize, all_rows.len());
    assert!(pages > all_objects.len() / page_size);
}

#[test]
fn store_probes_are_the_ready_unchanged_documents() {
    let objects = vec![object("a", "e", None), object("b", "new", None)];
    let mut rows = keys_rows(&["a", "b", "c"]);
    rows[0].id = 1;
    rows[1].id = 2;
    rows[2].id = 3;
    let probes = store_probes(&objects, &rows, &PageEnd::Last);
    assert_eq!(
        probes,
        vec![StoreProbe {
            document_id: 1,
            version: 2,
            chunk_count: 3
        }]
    );
    let failed = vec![
        row("x", DocumentStatus::Failed, "e", None),
        row("z", DocumentStatus::Failed, "e", None),
    ];
    assert_eq!(
        failed_keys(&failed, &PageEnd::Through("y".into())),
        BTreeSet::from(["x"])
    );
}

#[test]
fn counters_merge_and_errors_append() {
    let page = BTreeMap::from([("reconcile:missing", 2), ("reconcile:gone", 1)]);
    assert_eq!(
        merge_counts("{\"reconcile:missing\":3}", &page).unwrap(),
        "{\"reconcile:gone\":1,\"reconcile:missing\":5}"
    );
    assert_eq!(merge_counts("", &BTreeMap::new()).unwrap(), "{}".to_owned());
    assert!(matches!(
        merge_counts("[1]", &page),
        Err(ReconcileError::BadCounters(_))
    ));
    assert_eq!(
        append_errors("[\"a\"]", &["b".into()]).unwrap(),
        "[\"a\",\"b\"]"
    );
    let many: Vec<String> = (0..80).map(|i| i.to_string()).collect();
    let capped: Vec<String> = serde_json::from_str(&append_errors("[]", &many).unwrap()).unwrap();
    assert_eq!(capped.len(), MAX_RUN_ERRORS);
}

#[test]
fn reasons_are_the_documented_strings() {
    let all: Vec<&str> = Reason::ALL.iter().map(|r| r.as_str()).collect();
    assert_eq!(
        all,
        [
            "reconcile:missing",
            "reconcile:changed",
            "reconcile:gone",
            "reconcile:stuck",
            "reconcile:failed-retry",
            "reconcile:vectors-mismatch",
            "reconcile:chunks-mismatch"
        ]
    );
    for status in ["queued", "processing", "ready", "failed", "deleted"] {
        assert!(DocumentStatus::parse(status).is_some());
    }
    assert_eq!(DocumentStatus::parse("READY"), None);
}
