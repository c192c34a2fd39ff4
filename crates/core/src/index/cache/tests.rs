use super::*;
use crate::index::testing::{meta, upsert};
use crate::index::{cosine_similarity, exact_top_k, FieldMatch, TopK, VectorQuery, VectorRecord};
use proptest::prelude::*;

const D: usize = 24;

fn state(epoch: &str, generation: u64, vector_count: u64, pruned_through: u64) -> IndexState {
    IndexState {
        epoch: epoch.into(),
        generation,
        vector_count,
        pruned_through,
    }
}

/// What the cache holds, comparable: id → (seq, metadata, codes).
fn contents(cache: &VectorCache) -> Vec<(String, u64, VectorMetadata, Vec<i8>)> {
    let d = cache.dimensions;
    let mut all: Vec<_> = cache
        .slots
        .iter()
        .enumerate()
        .map(|(i, s)| {
            (
                s.id.clone(),
                s.seq,
                s.metadata.clone(),
                cache.codes[i * d..(i + 1) * d].to_vec(),
            )
        })
        .collect();
    all.sort_by(|a, b| a.0.cmp(&b.0));
    all
}

/// The cache's answer as the D1 index computes it: pre-selection, then the exact rerank over
/// the candidates' f32 vectors, read by [`ExactRerank`] in batches of `batch`.
fn cached_top_k_in_batches(
    cache: &VectorCache,
    records: &[VectorRecord],
    query: &VectorQuery,
    batch: usize,
) -> (Vec<VectorMatch>, usize) {
    let candidates = cache.preselect(&query.vector, query.filter.as_ref(), query.top_k);
    assert!(candidates.windows(2).all(|w| w[0].upper >= w[1].upper));
    let query_norm = crate::index::norm(&query.vector);
    let mut top = TopK::new(query.top_k);
    let mut read: Vec<&VectorRecord> = Vec::new();
    let mut rerank = ExactRerank::new(candidates, batch);
    while let Some(ids) = rerank.next_batch(&top) {
        for id in ids {
            let record = records.iter().find(|r| r.id == id).unwrap();
            if query
                .filter
                .as_ref()
                .is_none_or(|f| f.matches(&record.metadata))
            {
                let score =
                    crate::index::cosine_with_norm(&query.vector, query_norm, &record.values);
                top.push(record.id.clone(), score, ());
            }
            read.push(record);
        }
    }
    (exact_top_k(query, read.iter().copied()), rerank.read())
}

/// The cache's answer with every candidate read.
fn cached_top_k(
    cache: &VectorCache,
    records: &[VectorRecord],
    query: &VectorQuery,
) -> Vec<VectorMatch> {
    cached_top_k_in_batches(cache, records, query, usize::MAX).0
}

use crate::index::VectorMatch;

fn load(records: &[VectorRecord]) -> VectorCache {
    let mut cache = VectorCache::new(D, CACHE_MAX_BYTES);
    for (seq, r) in records.iter().enumerate() {
        cache.apply(IndexChange::Upsert {
            id: r.id.clone(),
            seq: seq as u64 + 1,
            metadata: r.metadata.clone(),
            vector: QuantizedVector::new(&r.values),
        });
    }
    cache
}

#[test]
fn quantization_error_is_within_its_bound() {
    let values: Vec<f32> = (0..D).map(|i| ((i * 7919) % 23) as f32 - 11.5).collect();
    let q = QuantizedVector::new(&values);
    assert!(q.is_scorable());
    let length = values.iter().map(|v| v * v).sum::<f32>().sqrt();
    let off: f32 = values
        .iter()
        .zip(&q.codes)
        .map(|(v, c)| (v / length - f32::from(*c) * q.scale).powi(2))
        .sum::<f32>()
        .sqrt();
    assert!((off - q.residual).abs() < 1e-6);
    assert!(q.codes.iter().any(|c| c.unsigned_abs() == 127));
    assert!(q.residual <= (D as f32).sqrt() * q.scale / 2.0 + 1e-6);
}

#[test]
fn the_stored_blob_round_trips_through_hex() {
    let values: Vec<f32> = (0..D).map(|i| (i as f32 * 0.37).sin()).collect();
    for q in [
        QuantizedVector::new(&values),
        QuantizedVector::new(&[0.0; D]),
    ] {
        let hex: String = q.to_bytes().iter().map(|b| format!("{b:02X}")).collect();
        let back = QuantizedVector::from_hex(&hex, D).unwrap();
        assert_eq!(back.codes, q.codes);
        assert_eq!(back.scale.to_bits(), q.scale.to_bits());
        assert_eq!(back.residual.to_bits(), q.residual.to_bits());
        assert_eq!(
            QuantizedVector::from_hex(&hex.to_lowercase(), D)
                .unwrap()
                .codes,
            q.codes
        );
    }
    assert!(QuantizedVector::from_hex("00", D).is_none());
    assert!(QuantizedVector::from_hex(&"G".repeat((D + 8) * 2), D).is_none());
}

#[test]
fn a_vector_without_direction_is_always_a_candidate() {
    let q = QuantizedVector::new(&[0.0; D]);
    assert!(!q.is_scorable());
    let mut cache = VectorCache::new(D, CACHE_MAX_BYTES);
    cache.apply(IndexChange::Upsert {
        id: "zero".into(),
        seq: 1,
        metadata: meta(1, None),
        vector: q,
    });
    let mut far = vec![0.0; D];
    far[0] = 1.0;
    cache.apply(upsert("a", 2, &far));
    cache.apply(upsert("b", 3, &far));
    let mut query = vec![0.0; D];
    query[0] = 1.0;
    let got: Vec<String> = cache
        .preselect(&query, None, 1)
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert!(got.contains(&"zero".to_owned()), "{got:?}");
}

#[test]
fn apply_by_seq_table() {
    let v1 = [1.0; D];
    let mut v2 = [1.0; D];
    v2[0] = -3.0;
    let mut cache = VectorCache::new(D, CACHE_MAX_BYTES);
    cache.apply(upsert("a", 5, &v1));
    // An older write of the same id is ignored.
    cache.apply(upsert("a", 3, &v2));
    assert_eq!(cache.seq_of("a"), Some(5));
    // A newer one replaces it.
    cache.apply(upsert("a", 7, &v2));
    assert_eq!(cache.seq_of("a"), Some(7));
    assert_eq!(cache.len(), 1);
    // An older deletion does not remove a newer write.
    cache.apply(IndexChange::Delete {
        id: "a".into(),
        seq: 6,
    });
    assert_eq!(cache.seq_of("a"), Some(7));
    // A newer one does, and an older write read later cannot bring it back.
    cache.apply(IndexChange::Delete {
        id: "a".into(),
        seq: 9,
    });
    assert_eq!(cache.seq_of("a"), None);
    cache.apply(upsert("a", 8, &v1));
    assert_eq!(cache.seq_of("a"), None);
    // A write after the deletion does.
    cache.apply(upsert("a", 10, &v1));
    assert_eq!(cache.seq_of("a"), Some(10));
    // A row of other dimensions counts as a deletion.
    cache.apply(upsert("a", 11, &[1.0; 3]));
    assert_eq!(cache.seq_of("a"), None);
    assert!(cache.is_empty());
    assert_eq!(cache.bytes(), 0);
}

#[test]
fn removing_a_slot_keeps_the_others_intact() {
    let mut cache = VectorCache::new(D, CACHE_MAX_BYTES);
    let vs: Vec<Vec<f32>> = (0..5)
        .map(|i| {
            (0..D)
                .map(|j| ((i * 31 + j * 7) % 11) as f32 - 5.0)
                .collect()
        })
        .collect();
    for (i, v) in vs.iter().enumerate() {
        cache.apply(upsert(&format!("v{i}"), i as u64 + 1, v));
    }
    cache.apply(IndexChange::Delete {
        id: "v1".into(),
        seq: 10,
    });
    cache.apply(IndexChange::Delete {
        id: "v4".into(),
        seq: 11,
    });
    let got = contents(&cache);
    let ids: Vec<_> = got.iter().map(|c| c.0.as_str()).collect();
    assert_eq!(ids, ["v0", "v2", "v3"]);
    for (id, _, _, codes) in got {
        let i: usize = id[1..].parse().unwrap();
        assert_eq!(codes, QuantizedVector::new(&vs[i]).codes);
    }
}

#[test]
fn sync_plan_table() {
    let mut cache = VectorCache::new(D, CACHE_MAX_BYTES);
    let s = state("e1", 10, 5, 0);
    // Never loaded: everything.
    assert_eq!(
        cache.plan_sync(&s),
        SyncPlan::Changes {
            after: 0,
            reset: true
        }
    );
    cache.finish_sync(&s);
    assert_eq!(cache.plan_sync(&s), SyncPlan::UpToDate);
    // Writes since: the changes after our generation.
    assert_eq!(
        cache.plan_sync(&state("e1", 14, 5, 0)),
        SyncPlan::Changes {
            after: 10,
            reset: false
        }
    );
    // Deletions we have not seen were pruned: start over.
    assert_eq!(
        cache.plan_sync(&state("e1", 14, 5, 12)),
        SyncPlan::Changes {
            after: 0,
            reset: true
        }
    );
    // Pruned only what we saw: fine.
    assert_eq!(
        cache.plan_sync(&state("e1", 14, 5, 10)),
        SyncPlan::Changes {
            after: 10,
            reset: false
        }
    );
    // Another database, or one whose generation went backwards (restored): start over.
    assert_eq!(
        cache.plan_sync(&state("e2", 10, 5, 0)),
        SyncPlan::Changes {
            after: 0,
            reset: true
        }
    );
    assert_eq!(
        cache.plan_sync(&state("e1", 9, 5, 0)),
        SyncPlan::Changes {
            after: 0,
            reset: true
        }
    );
    // Too many vectors for the budget.
    let per = (D + ENTRY_OVERHEAD_BYTES) as u64;
    let small = VectorCache::new(D, (per * 100) as usize);
    assert_eq!(small.plan_sync(&state("e1", 1, 101, 0)), SyncPlan::TooLarge);
    assert_ne!(small.plan_sync(&state("e1", 1, 100, 0)), SyncPlan::TooLarge);
    // A vector budget (D1_INDEX_MAX_VECTORS) below what memory allows.
    let capped = VectorCache::new(D, CACHE_MAX_BYTES).with_max_vectors(2);
    assert_eq!(capped.max_vectors(), 2);
    assert_ne!(capped.plan_sync(&state("e1", 1, 2, 0)), SyncPlan::TooLarge);
    assert_eq!(capped.plan_sync(&state("e1", 1, 3, 0)), SyncPlan::TooLarge);
    // Back within the budget (a document deleted), an emptied cache loads everything again.
    let mut capped = capped;
    capped.reset();
    assert_eq!(
        capped.plan_sync(&state("e1", 2, 2, 0)),
        SyncPlan::Changes {
            after: 0,
            reset: true
        }
    );
    assert_eq!(max_cached_vectors(1536), 24_160);
}

#[test]
fn a_cache_over_its_budget_empties_itself_until_the_index_shrinks() {
    let mut cache = VectorCache::new(D, 3 * (D + ENTRY_OVERHEAD_BYTES + 8));
    for i in 0..5 {
        cache.apply(upsert(&format!("v{i}"), i + 1, &[1.0; D]));
    }
    assert!(!cache.check_budget(5));
    assert!(cache.is_empty());
    assert_eq!(cache.plan_sync(&state("e", 5, 5, 0)), SyncPlan::TooLarge);
    assert_eq!(cache.plan_sync(&state("e", 6, 6, 0)), SyncPlan::TooLarge);
    assert_eq!(
        cache.plan_sync(&state("e", 7, 2, 0)),
        SyncPlan::Changes {
            after: 0,
            reset: true
        }
    );
}

#[test]
fn finish_sync_forgets_deletions_it_has_passed() {
    let mut cache = VectorCache::new(D, CACHE_MAX_BYTES);
    cache.apply(IndexChange::Delete {
        id: "a".into(),
        seq: 4,
    });
    cache.apply(IndexChange::Delete {
        id: "b".into(),
        seq: 9,
    });
    cache.finish_sync(&state("e", 6, 0, 0));
    assert_eq!(cache.deleted.len(), 1);
    assert!(cache.deleted.contains_key("b"));
}

#[test]
fn preselection_with_near_duplicates_and_ties_stays_exact() {
    // Many identical and almost identical vectors: the bound keeps every one that could tie.
    let mut records = Vec::new();
    for i in 0..60 {
        let mut v = vec![1.0_f32; D];
        v[i % D] += (i / D) as f32 * 1e-4;
        records.push(VectorRecord {
            id: format!("r{i:02}"),
            values: v,
            metadata: meta(i as i64, Some((i % 3) as i64)),
        });
    }
    let cache = load(&records);
    for k in [1, 5, 17] {
        let query = VectorQuery {
            vector: vec![1.0; D],
            top_k: k,
            filter: None,
            return_metadata: true,
            approximate: false,
        };
        assert_eq!(
            cached_top_k(&cache, &records, &query),
            exact_top_k(&query, &records)
        );
    }
}

fn random_vector(seed: &mut u64, sparse: bool) -> Vec<f32> {
    let mut next = || {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        (*seed % 20_001) as f32 / 10_000.0 - 1.0
    };
    (0..D)
        .map(|j| if sparse && j % 5 != 0 { 0.0 } else { next() })
        .collect()
}

proptest! {
    #[test]
    fn preselection_then_exact_rerank_equals_the_exact_scan(
        seed in 1u64..u64::MAX,
        n in 0usize..150,
        k in 1usize..30,
        dupes in 0usize..20,
        sparse_query in any::<bool>(),
        company in prop::option::of(0i64..3),
    ) {
        let mut s = seed;
        let mut records: Vec<VectorRecord> = (0..n)
            .map(|i| VectorRecord {
                id: format!("v{i:03}"),
                values: random_vector(&mut s, false),
                metadata: meta(i as i64, Some((i % 3) as i64)),
            })
            .collect();
        // Exact duplicates under other ids: equal scores, decided by id.
        for i in 0..dupes.min(n) {
            let mut copy = records[i].clone();
            copy.id = format!("w{i:03}");
            records.push(copy);
        }
        let mut vector = random_vector(&mut s, sparse_query);
        if vector.iter().all(|v| *v == 0.0) {
            vector[0] = 1.0;
        }
        let query = VectorQuery {
            vector,
            top_k: k,
            filter: company.map(MetadataFilter::company),
            return_metadata: true,
            approximate: false,
        };
        let cache = load(&records);
        prop_assert_eq!(cached_top_k(&cache, &records, &query), exact_top_k(&query, &records));
        // The estimates' top k: as many as the exact one, the i-th estimate within the
        // quantization error of the i-th exact score.
        let exact = exact_top_k(&query, &records);
        let approx = best_estimates(cache.preselect(&query.vector, query.filter.as_ref(), k), k);
        prop_assert_eq!(approx.len(), exact.len());
        for (a, e) in approx.iter().zip(&exact) {
            prop_assert!((a.estimate - e.score).abs() < 0.02, "{} vs {}", a.estimate, e.score);
        }
        // Reading the candidates in small batches and stopping early gives the same answer.
        for batch in [1, 3, k] {
            let (got, _) = cached_top_k_in_batches(&cache, &records, &query, batch);
            prop_assert_eq!(got, exact_top_k(&query, &records), "batch {}", batch);
        }
        // And the bound is honest for every vector.
        let unit_q: Vec<f32> = {
            let l = query.vector.iter().map(|v| v * v).sum::<f32>().sqrt();
            query.vector.iter().map(|v| v / l).collect()
        };
        let l1: f32 = unit_q.iter().map(|v| v.abs()).sum();
        for r in &records {
            let qv = QuantizedVector::new(&r.values);
            let approx = qv.scale * dot_i8(&unit_q, &qv.codes);
            let err = qv.residual.min(l1 * qv.scale / 2.0);
            let exact = cosine_similarity(&query.vector, &r.values);
            prop_assert!((exact - approx).abs() <= err + SCORE_ROUNDING_MARGIN, "{} {} {}", exact, approx, err);
        }
    }

    #[test]
    fn applying_one_sync_is_order_independent(
        ops in prop::collection::vec((0usize..6, any::<bool>(), 0u8..4), 0..40),
        shuffle_seed in any::<u64>(),
    ) {
        // Unique seqs, as the change log guarantees.
        let changes: Vec<IndexChange> = ops
            .iter()
            .enumerate()
            .map(|(seq, (id, delete, v))| {
                let id = format!("v{id}");
                let seq = seq as u64 + 1;
                if *delete {
                    IndexChange::Delete { id, seq }
                } else {
                    let mut values = vec![1.0; D];
                    values[usize::from(*v)] = 5.0;
                    upsert(&id, seq, &values)
                }
            })
            .collect();
        let mut in_order = VectorCache::new(D, CACHE_MAX_BYTES);
        for c in changes.clone() {
            in_order.apply(c);
        }
        let mut shuffled = changes.clone();
        let mut s = shuffle_seed | 1;
        for i in (1..shuffled.len()).rev() {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            shuffled.swap(i, (s % (i as u64 + 1)) as usize);
        }
        let mut any_order = VectorCache::new(D, CACHE_MAX_BYTES);
        for c in shuffled {
            any_order.apply(c);
        }
        prop_assert_eq!(contents(&in_order), contents(&any_order));
        prop_assert_eq!(in_order.bytes(), any_order.bytes());
        // And it is the latest change per id.
        let mut latest: HashMap<String, &IndexChange> = HashMap::new();
        for c in &changes {
            let id = match c {
                IndexChange::Upsert { id, .. } | IndexChange::Delete { id, .. } => id.clone(),
            };
            latest.insert(id, c);
        }
        let mut live: Vec<(String, u64)> = latest
            .into_iter()
            .filter_map(|(id, c)| match c {
                IndexChange::Upsert { seq, .. } => Some((id, *seq)),
                IndexChange::Delete { .. } => None,
            })
            .collect();
        live.sort();
        let got: Vec<(String, u64)> = contents(&in_order).into_iter().map(|c| (c.0, c.1)).collect();
        prop_assert_eq!(got, live);
    }
}

#[test]
fn company_filter_with_in_is_applied_before_scoring() {
    let records: Vec<VectorRecord> = (0..10)
        .map(|i| VectorRecord {
            id: format!("v{i}"),
            values: (0..D).map(|j| ((i * 13 + j) % 7) as f32 - 3.0).collect(),
            metadata: meta(i as i64, Some(i as i64 % 4)),
        })
        .collect();
    let cache = load(&records);
    let filter = MetadataFilter {
        company_id: Some(FieldMatch::In(vec![1, 2])),
        ..MetadataFilter::default()
    };
    let ids: Vec<String> = cache
        .preselect(&records[0].values, Some(&filter), 50)
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert!(ids.iter().all(|id| {
        let i: i64 = id[1..].parse().unwrap();
        [1, 2].contains(&(i % 4))
    }));
    assert_eq!(ids.len(), 5);
}

#[test]
fn the_exact_rerank_stops_once_the_kth_score_beats_every_bound_left() {
    let mut s = 7;
    let records: Vec<VectorRecord> = (0..400)
        .map(|i| VectorRecord {
            id: format!("v{i:03}"),
            values: random_vector(&mut s, false),
            metadata: meta(i as i64, None),
        })
        .collect();
    // A query close to one stored vector: its neighbours stand out, the rest are far below.
    let mut vector = records[0].values.clone();
    vector[0] += 0.01;
    let query = VectorQuery {
        vector,
        top_k: 3,
        filter: None,
        return_metadata: true,
        approximate: false,
    };
    let cache = load(&records);
    let candidates = cache.preselect(&query.vector, None, 3);
    let (got, read) = cached_top_k_in_batches(&cache, &records, &query, 2);
    assert_eq!(got, exact_top_k(&query, &records));
    assert!(read <= candidates.len());
    assert_eq!(got[0].id, "v000");
    let mut top: TopK<()> = TopK::new(2);
    assert!(!rerank_can_stop(&top, 0.1), "not full yet");
    top.push("a".into(), 0.5, ());
    top.push("b".into(), 0.3, ());
    assert!(rerank_can_stop(&top, 0.29));
    assert!(!rerank_can_stop(&top, 0.3), "a tie may still enter by id");
    // Batches of 2 × k rows, 16 to a reader's page.
    assert_eq!(rerank_batch(3, 1000), 16);
    assert_eq!(rerank_batch(32, 1000), 64);
    assert_eq!(rerank_batch(600, 1000), 1000);
}

#[test]
fn approximate_matches_leave_out_vectors_estimated_at_or_below_zero() {
    let candidate = |id: &str, estimate: f32| Candidate {
        id: id.into(),
        upper: estimate + 0.01,
        estimate,
    };
    let got = approximate_matches(
        vec![
            candidate("c", 0.0),
            candidate("a", 0.4),
            candidate("b", -0.1),
            candidate("d", 0.4),
            candidate("e", 0.0),
        ],
        4,
    );
    let ids: Vec<&str> = got.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(
        ids,
        ["a", "d"],
        "best first, ties by id, nothing at or below 0"
    );
    assert!(got.iter().all(|m| m.metadata.is_none() && m.score == 0.4));
}
