use super::*;
use crate::index::cache::CACHE_MAX_BYTES;
use crate::index::testing::{meta, upsert};
use crate::index::{encode_f32_le, MetadataFilter};

const D: usize = 4;

fn state(epoch: &str, generation: u64, vector_count: u64) -> IndexState {
    IndexState {
        epoch: epoch.into(),
        generation,
        vector_count,
        pruned_through: 0,
    }
}

fn hex(values: &[f32]) -> String {
    encode_f32_le(values)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect()
}

fn query(vector: &[f32], top_k: usize) -> VectorQuery {
    VectorQuery {
        vector: vector.to_vec(),
        top_k,
        filter: None,
        return_metadata: false,
        approximate: false,
    }
}

fn loaded(epoch: &str) -> VectorCache {
    let mut cache = VectorCache::new(D, CACHE_MAX_BYTES);
    let s = state(epoch, 2, 2);
    assert_eq!(cache.check_sync(&s), Ok(0));
    assert_eq!(cache.begin_sync(&s), Ok(0));
    assert!(cache.apply_page(
        vec![
            upsert("a", 1, &[1.0, 0.0, 0.0, 0.0]),
            upsert("b", 2, &[0.0, 1.0, 0.0, 0.0])
        ],
        &s
    ));
    cache.finish_sync(&s);
    cache
}

#[test]
fn a_synced_copy_is_ready_and_a_newer_generation_loads_the_changes_after_it() {
    let mut cache = loaded("e1");
    assert_eq!(cache.check_sync(&state("e1", 2, 2)), Err(Synced::Ready));
    assert_eq!(cache.check_sync(&state("e1", 5, 3)), Ok(2));
    assert_eq!(cache.begin_sync(&state("e1", 5, 3)), Ok(2));
    assert_eq!(
        cache.len(),
        2,
        "changes after the copy are applied on top of it"
    );
}

#[test]
fn a_copy_of_another_database_is_emptied_only_under_the_sync_lock() {
    let mut cache = loaded("e1");
    let other = state("e2", 1, 1);
    // Before the lock: another request may be loading into this copy; leave it.
    assert_eq!(cache.check_sync(&other), Ok(0));
    assert_eq!(cache.len(), 2);
    // Holding the lock: start over.
    assert_eq!(cache.begin_sync(&other), Ok(0));
    assert!(cache.is_empty());
}

#[test]
fn a_copy_past_its_budget_is_dropped_and_the_sync_ends_over_budget() {
    // The state row said the index was empty (so it looked as if it fitted); the page did not.
    let mut cache = VectorCache::new(D, 1);
    let s = state("e1", 1, 0);
    assert_eq!(cache.begin_sync(&s), Ok(0));
    assert!(!cache.apply_page(vec![upsert("a", 1, &[1.0, 0.0, 0.0, 0.0])], &s));
    assert!(cache.is_empty());
    let grown = state("e1", 2, 2);
    assert_eq!(cache.check_sync(&grown), Err(Synced::OverBudget(2)));
    assert_eq!(cache.begin_sync(&grown), Err(Synced::OverBudget(2)));
}

#[test]
fn candidates_come_from_the_copy_only_once_it_is_ready() {
    let cache = loaded("e1");
    let q = query(&[1.0, 0.0, 0.0, 0.0], 1);
    assert!(matches!(
        Candidates::after_sync(Synced::Ready, &cache, &q),
        Candidates::Bounded(c) if !c.is_empty() && c[0].id == "a"
    ));
    assert_eq!(
        Candidates::after_sync(Synced::Busy, &cache, &q),
        Candidates::Busy
    );
    assert_eq!(
        Candidates::after_sync(Synced::OverBudget(9), &cache, &q),
        Candidates::OverBudget { vectors: 9 }
    );
}

#[test]
fn each_cache_answer_takes_its_path() {
    let cache = loaded("e1");
    let exact = query(&[1.0, 0.0, 0.0, 0.0], 1);
    let bounded = || Candidates::after_sync(Synced::Ready, &cache, &exact);
    assert!(matches!(
        plan_query(Candidates::Busy, &exact, 10, 1000),
        Ok(QueryPath::Scan)
    ));
    assert!(matches!(
        plan_query(Candidates::OverBudget { vectors: 11 }, &exact, 10, 1000),
        Err(VectorIndexError::OverBudget {
            vectors: 11,
            budget: 10
        })
    ));
    assert!(matches!(
        plan_query(bounded(), &exact, 10, 1000),
        Ok(QueryPath::Rerank(_))
    ));
    let approximate = VectorQuery {
        approximate: true,
        ..exact.clone()
    };
    let Ok(QueryPath::Approximate(matches)) = plan_query(bounded(), &approximate, 10, 1000) else {
        panic!("an approximate query is answered from the estimates");
    };
    assert_eq!(matches[0].id, "a");
    // Metadata is only in the stored rows: such a query is reranked even if approximate.
    let with_metadata = VectorQuery {
        return_metadata: true,
        ..approximate
    };
    assert!(matches!(
        plan_query(bounded(), &with_metadata, 10, 1000),
        Ok(QueryPath::Rerank(_))
    ));
}

#[test]
fn the_exact_ranking_skips_other_dimensions_and_filtered_rows() {
    let mut q = query(&[1.0, 0.0, 0.0, 0.0], 3);
    q.filter = Some(MetadataFilter::company(1));
    q.return_metadata = true;
    let mut ranking = ExactRanking::new(&q);
    let rows = [
        ("far", meta(1, Some(1)), vec![0.0, 1.0, 0.0, 0.0]),
        ("near", meta(2, Some(1)), vec![1.0, 0.1, 0.0, 0.0]),
        ("other-company", meta(3, Some(2)), vec![1.0, 0.0, 0.0, 0.0]),
    ];
    for (id, metadata, values) in rows {
        ranking
            .offer(id.into(), D, metadata, &hex(&values))
            .expect("decodes");
    }
    ranking
        .offer("short".into(), 2, meta(4, Some(1)), &hex(&[1.0, 0.0]))
        .expect("other dimensions are passed over");
    let matches = ranking.into_matches();
    let ids: Vec<&str> = matches.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, ["near", "far"]);
    assert_eq!(matches[0].metadata, Some(meta(2, Some(1))));
}

#[test]
fn a_corrupt_stored_vector_is_an_error_and_metadata_is_only_returned_when_asked() {
    let q = query(&[1.0, 0.0, 0.0, 0.0], 2);
    let mut ranking = ExactRanking::new(&q);
    assert!(matches!(
        ranking.offer("bad".into(), D, meta(1, None), "ABCD"),
        Err(VectorIndexError::CorruptStoredVector { .. })
    ));
    ranking
        .offer("a".into(), D, meta(1, None), &hex(&[1.0, 0.0, 0.0, 0.0]))
        .expect("decodes");
    assert_eq!(ranking.top().kth_score(), None);
    let matches = ranking.into_matches();
    assert_eq!(matches.len(), 1);
    assert_eq!(matches[0].metadata, None);
}
