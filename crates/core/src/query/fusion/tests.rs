use super::*;
use proptest::prelude::*;
use std::collections::BTreeSet;

fn list(source: RetrievalSource, ids: &[u32]) -> SourceRanking<u32> {
    SourceRanking::new(source, ids.iter().map(|&id| (id, f64::from(id) / 10.0)))
}

#[test]
fn specs_set_any_subset_and_refuse_bad_values() {
    let config = FusionConfig::new()
        .with_spec(" keyword=0.5, k=20 ,tag=0")
        .unwrap();
    assert_eq!(config.weight(RetrievalSource::Vector), 1.0);
    assert_eq!(config.weight(RetrievalSource::Keyword), 0.5);
    assert!(!config.uses(RetrievalSource::Tag));
    assert_eq!(config.k(), 20.0);
    assert_eq!(FusionConfig::new().with_spec(&config.spec()), Ok(config));
    assert_eq!(FusionConfig::new().with_spec(""), Ok(FusionConfig::new()));
    for (bad, needle) in [
        ("vector", "not key=value"),
        ("vector=x", "needs a number"),
        ("vector=-1", "must be a finite number >= 0"),
        ("k=0", "greater than 0"),
        ("bm25=1", "unknown key `bm25`"),
        ("tag=1,tag=2", "given twice"),
        ("vector=0,keyword=0,tag=0", "at least one weight"),
    ] {
        let err = FusionConfig::new().with_spec(bad).unwrap_err().to_string();
        assert!(err.contains(needle), "{bad}: {err}");
    }
    let only = FusionConfig::only(RetrievalSource::Keyword);
    assert_eq!(
        RetrievalSource::ALL.map(|s| only.uses(s)),
        [false, true, false]
    );
}

#[test]
fn score_is_weighted_reciprocal_rank_sum() {
    let config = FusionConfig::new()
        .with_k(10.0)
        .unwrap()
        .with_weight(RetrievalSource::Keyword, 2.0)
        .unwrap();
    let fused = fuse_rankings(
        &config,
        &[
            list(RetrievalSource::Vector, &[1, 2]),
            list(RetrievalSource::Keyword, &[2, 3]),
        ],
    );
    let score = |id| fused.iter().find(|h| h.id == id).unwrap().score;
    assert!((score(1) - 1.0 / 11.0).abs() < 1e-12);
    assert!((score(2) - (1.0 / 12.0 + 2.0 / 11.0)).abs() < 1e-12);
    assert!((score(3) - 2.0 / 12.0).abs() < 1e-12);
    assert_eq!(
        fused.iter().map(|h| h.id).collect::<Vec<_>>(),
        vec![2, 3, 1]
    );
}

#[test]
fn keeps_per_source_rank_and_raw_score() {
    let fused = fuse_rankings(
        &FusionConfig::new(),
        &[
            SourceRanking::new(RetrievalSource::Vector, [(5_i64, 0.9), (6, 0.7)]),
            SourceRanking::new(RetrievalSource::Keyword, [(6_i64, 7.5)]),
        ],
    );
    let six = fused.iter().find(|h| h.id == 6).unwrap();
    assert_eq!(
        six.source(RetrievalSource::Vector),
        Some(&SourceMatch {
            rank: 2,
            raw_score: 0.7
        })
    );
    assert_eq!(
        six.source(RetrievalSource::Keyword),
        Some(&SourceMatch {
            rank: 1,
            raw_score: 7.5
        })
    );
    assert_eq!(six.source(RetrievalSource::Tag), None);
    assert_eq!(six.best_rank(), 1);
}

#[test]
fn duplicate_id_in_one_list_keeps_best_rank() {
    let fused = fuse_rankings(
        &FusionConfig::new(),
        &[SourceRanking::new(
            RetrievalSource::Vector,
            [(1_u32, 0.9), (2, 0.8), (1, 0.1)],
        )],
    );
    assert_eq!(fused.len(), 2);
    let one = &fused[0];
    assert_eq!(one.id, 1);
    assert_eq!(one.matches[&RetrievalSource::Vector].rank, 1);
    assert_eq!(one.matches[&RetrievalSource::Vector].raw_score, 0.9);
    assert!((one.score - 1.0 / 61.0).abs() < 1e-12);
}

#[test]
fn ties_break_by_best_rank_then_id() {
    // Symmetric lists give bit-identical scores.
    let fused = fuse_rankings(
        &FusionConfig::new(),
        &[
            list(RetrievalSource::Vector, &[9, 4]),
            list(RetrievalSource::Keyword, &[4, 9]),
        ],
    );
    // 4 and 9 have identical scores and best rank 1: id decides.
    assert_eq!(fused[0].score, fused[1].score);
    assert_eq!(fused.iter().map(|h| h.id).collect::<Vec<_>>(), vec![4, 9]);

    // Equal scores from different rank patterns are rare in floats, so
    // the rank tie-breaker is checked on the comparator directly.
    let a = FusedHit {
        id: 2_u32,
        score: 0.5,
        matches: BTreeMap::from([(
            RetrievalSource::Vector,
            SourceMatch {
                rank: 1,
                raw_score: 0.0,
            },
        )]),
    };
    let b = FusedHit {
        id: 1_u32,
        score: 0.5,
        matches: BTreeMap::from([(
            RetrievalSource::Tag,
            SourceMatch {
                rank: 2,
                raw_score: 0.0,
            },
        )]),
    };
    assert_eq!(compare_fused(&a, &b), Ordering::Less);
}

#[test]
fn top_n_truncates_after_sorting() {
    let lists = [
        list(RetrievalSource::Vector, &[1, 2, 3, 4]),
        list(RetrievalSource::Keyword, &[4, 3]),
    ];
    let all = fuse_rankings(&FusionConfig::new(), &lists);
    let top = fuse_top_n(&FusionConfig::new(), &lists, 2);
    assert_eq!(top, all[..2].to_vec());
    assert!(fuse_top_n(&FusionConfig::new(), &lists, 0).is_empty());
    assert_eq!(fuse_top_n(&FusionConfig::new(), &lists, 99), all);
}

#[test]
fn config_rejects_invalid_values() {
    for k in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        assert!(FusionConfig::new().with_k(k).is_err(), "k = {k}");
    }
    for w in [-0.1, f64::NAN, f64::INFINITY] {
        let err = FusionConfig::new()
            .with_weight(RetrievalSource::Tag, w)
            .unwrap_err();
        assert!(err.to_string().contains("tag"), "{err}");
    }
    let config = FusionConfig::new()
        .with_k(1.0)
        .unwrap()
        .with_weight(RetrievalSource::Tag, 0.0)
        .unwrap();
    assert_eq!(config.k(), 1.0);
    assert_eq!(config.weight(RetrievalSource::Tag), 0.0);
    assert_eq!(config.weight(RetrievalSource::Vector), 1.0);
}

#[test]
fn min_max_maps_to_unit_interval() {
    assert_eq!(min_max_normalise(&[2.0, 4.0, 3.0]), vec![0.0, 1.0, 0.5]);
    assert_eq!(min_max_normalise(&[5.0, 5.0]), vec![1.0, 1.0]);
    assert_eq!(
        min_max_normalise(&[1.0, f64::NAN, 3.0]),
        vec![0.0, 0.0, 1.0]
    );
    assert!(min_max_normalise(&[]).is_empty());
    let extreme = min_max_normalise(&[-f64::MAX, 0.0, f64::MAX]);
    assert_eq!(extreme[0], 0.0);
    assert!((extreme[1] - 0.5).abs() < 1e-12);
    assert_eq!(extreme[2], 1.0);
}

#[test]
fn bm25_more_negative_becomes_more_relevant() {
    assert_eq!(bm25_relevance(-7.5), 7.5);
    assert_eq!(bm25_relevance(0.0), 0.0);
    assert_eq!(bm25_relevance(3.0), 0.0);
    assert_eq!(bm25_relevance(f64::NAN), 0.0);
    // FTS5 order: -9 (best), -4, -1 (worst).
    assert_eq!(normalise_bm25(&[-9.0, -4.0, -1.0]), vec![1.0, 0.375, 0.0]);
}

fn arb_source() -> impl Strategy<Value = RetrievalSource> {
    prop_oneof![
        Just(RetrievalSource::Vector),
        Just(RetrievalSource::Keyword),
        Just(RetrievalSource::Tag),
    ]
}

fn arb_rankings() -> impl Strategy<Value = Vec<SourceRanking<u8>>> {
    prop::collection::vec(
        (
            arb_source(),
            prop::collection::vec((0_u8..40, -100.0_f64..100.0), 0..25),
        )
            .prop_map(|(source, hits)| SourceRanking::new(source, hits)),
        0..5,
    )
}

fn arb_config() -> impl Strategy<Value = FusionConfig> {
    (0.5_f64..100.0, 0.0_f64..3.0, 0.0_f64..3.0, 0.0_f64..3.0).prop_map(|(k, v, kw, t)| {
        FusionConfig::new()
            .with_k(k)
            .and_then(|c| c.with_weight(RetrievalSource::Vector, v))
            .and_then(|c| c.with_weight(RetrievalSource::Keyword, kw))
            .and_then(|c| c.with_weight(RetrievalSource::Tag, t))
            .unwrap()
    })
}

proptest! {
    #[test]
    fn output_sorted_by_score_and_tie_breaks(config in arb_config(), lists in arb_rankings()) {
        let fused = fuse_rankings(&config, &lists);
        for pair in fused.windows(2) {
            prop_assert!(pair[0].score >= pair[1].score);
            prop_assert_eq!(compare_fused(&pair[0], &pair[1]), Ordering::Less);
        }
    }

    #[test]
    fn output_is_exactly_the_union_of_enabled_inputs(config in arb_config(), lists in arb_rankings()) {
        let fused = fuse_rankings(&config, &lists);
        let expected: BTreeSet<u8> = lists
            .iter()
            .filter(|l| config.weight(l.source) > 0.0)
            .flat_map(|l| l.hits.iter().map(|h| h.id))
            .collect();
        let got: Vec<u8> = fused.iter().map(|h| h.id).collect();
        let got_set: BTreeSet<u8> = got.iter().copied().collect();
        prop_assert_eq!(got.len(), got_set.len(), "no id twice");
        prop_assert_eq!(got_set, expected);
    }

    #[test]
    fn independent_of_list_order(config in arb_config(), lists in arb_rankings(), seed in any::<u64>()) {
        let mut shuffled = lists.clone();
        // Deterministic Fisher-Yates driven by the generated seed.
        let mut state = seed | 1;
        for i in (1..shuffled.len()).rev() {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let j = (state % (i as u64 + 1)) as usize;
            shuffled.swap(i, j);
        }
        prop_assert_eq!(fuse_rankings(&config, &lists), fuse_rankings(&config, &shuffled));
        prop_assert_eq!(fuse_rankings(&config, &lists), fuse_rankings(&config, &lists));
    }

    #[test]
    fn first_everywhere_is_first_overall(
        config in arb_config(),
        winner in 200_u8..=255,
        tails in prop::collection::vec(prop::collection::vec(0_u8..40, 0..20), 1..4),
    ) {
        let lists: Vec<SourceRanking<u8>> = tails
            .iter()
            .zip(RetrievalSource::ALL)
            .map(|(tail, source)| {
                let ids = std::iter::once(winner).chain(tail.iter().copied());
                SourceRanking::new(source, ids.map(|id| (id, 0.0)))
            })
            .collect();
        let enabled = lists.iter().any(|l| config.weight(l.source) > 0.0);
        let fused = fuse_rankings(&config, &lists);
        if enabled {
            prop_assert_eq!(fused[0].id, winner);
        } else {
            prop_assert!(fused.is_empty());
        }
    }

    #[test]
    fn zero_weight_equals_omitting_the_source(
        config in arb_config(),
        lists in arb_rankings(),
        off in arb_source(),
    ) {
        let zeroed = config.clone().with_weight(off, 0.0).unwrap();
        let without: Vec<SourceRanking<u8>> =
            lists.iter().filter(|l| l.source != off).cloned().collect();
        prop_assert_eq!(fuse_rankings(&zeroed, &lists), fuse_rankings(&config, &without));
    }

    #[test]
    fn min_max_stays_in_unit_interval(scores in prop::collection::vec(any::<f64>(), 0..30)) {
        let normalised = min_max_normalise(&scores);
        prop_assert_eq!(normalised.len(), scores.len());
        for v in normalised {
            prop_assert!((0.0..=1.0).contains(&v));
        }
    }
}

#[test]
fn method_specs_read_back_and_refuse_unknown_methods() {
    let config = FusionConfig::new()
        .with_spec("method=convex,keyword=0.5,tag=0.1")
        .unwrap();
    assert_eq!(config.method(), FusionMethod::Convex(Normalisation::MinMax));
    assert_eq!(
        FusionConfig::new().with_spec(&config.spec()),
        Ok(config.clone())
    );
    let tmm = config.clone().with_spec("method=convex-tmm").unwrap();
    assert_eq!(
        tmm.method(),
        FusionMethod::Convex(Normalisation::TheoreticalMinMax)
    );
    assert_eq!(tmm.weight(RetrievalSource::Keyword), 0.5, "other keys kept");
    assert_eq!(FusionConfig::new().with_spec(&tmm.spec()), Ok(tmm.clone()));
    assert_eq!(
        tmm.with_spec("method=rrf").unwrap().method(),
        FusionMethod::Rrf
    );
    // The RRF spec reads as it always did.
    assert_eq!(FusionConfig::new().spec(), "vector=1,keyword=1,tag=1,k=60");
    for method in FusionMethod::ALL {
        assert_eq!(FusionMethod::parse(method.as_str()), Some(method));
    }
    for (bad, needle) in [
        ("method=borda", "rrf, convex or convex-tmm"),
        ("method=convex,method=rrf", "given twice"),
        ("norm=2", "unknown key `norm`"),
    ] {
        let err = FusionConfig::new().with_spec(bad).unwrap_err().to_string();
        assert!(err.contains(needle), "{bad}: {err}");
    }
}

#[test]
fn convex_min_max_sums_weighted_scores_scaled_within_each_list() {
    let config = FusionConfig::new()
        .with_spec("method=convex,vector=1,keyword=0.5,tag=0")
        .unwrap();
    let vector = SourceRanking::new(RetrievalSource::Vector, [(1_u32, 0.9), (2, 0.5), (3, 0.4)]);
    let keyword = SourceRanking::new(
        RetrievalSource::Keyword,
        [(3_u32, 20.0), (4, 10.0), (2, 0.0)],
    );
    let tag = SourceRanking::new(RetrievalSource::Tag, [(5_u32, 3.0)]);
    let fused = fuse_rankings(&config, &[vector, keyword, tag]);
    let score = |id| fused.iter().find(|h| h.id == id).map(|h| h.score);
    // Vector 0.9 → 1, 0.5 → 0.2, 0.4 → 0; keyword 20 → 1, 10 → 0.5, 0 → 0.
    assert!((score(1).unwrap() - 1.0).abs() < 1e-12);
    assert!((score(2).unwrap() - 0.2).abs() < 1e-12);
    assert!((score(3).unwrap() - 0.5).abs() < 1e-12);
    assert!((score(4).unwrap() - 0.25).abs() < 1e-12);
    assert_eq!(score(5), None, "weight 0 leaves the tag list out");
    assert_eq!(
        fused.iter().map(|h| h.id).collect::<Vec<_>>(),
        vec![1, 3, 4, 2]
    );
    // Unlike RRF, how far apart the hits are counts: a close second in one list
    // beats the first of a list whose scores fall steeply.
    let rrf = FusionConfig::new().with_spec("tag=0,keyword=0.5").unwrap();
    let by_rank = fuse_rankings(
        &rrf,
        &[
            SourceRanking::new(RetrievalSource::Vector, [(1_u32, 0.9), (2, 0.5), (3, 0.4)]),
            SourceRanking::new(
                RetrievalSource::Keyword,
                [(3_u32, 20.0), (4, 10.0), (2, 0.0)],
            ),
        ],
    );
    assert_eq!(by_rank[0].id, 3, "RRF ranks agreement first");
}

#[test]
fn convex_tmm_keeps_the_sources_own_zero() {
    let config = FusionConfig::new()
        .with_spec("method=convex-tmm,vector=1,keyword=1,tag=1")
        .unwrap();
    // Cosine: the bound is −1, so 0.5 of a best 1.0 maps to 0.75, not 0.
    let vector = SourceRanking::new(RetrievalSource::Vector, [(1_u32, 1.0), (2, 0.5)]);
    // Tag counts: 2 of a best 4 is 0.5 (min-max would say 0).
    let tag = SourceRanking::new(RetrievalSource::Tag, [(3_u32, 4.0), (4, 2.0)]);
    let fused = fuse_rankings(&config, &[vector, tag]);
    let score = |id| fused.iter().find(|h| h.id == id).unwrap().score;
    assert!((score(2) - 0.75).abs() < 1e-12);
    assert!((score(4) - 0.5).abs() < 1e-12);
    // One value in a list: every hit of it is that list's best.
    let single = fuse_rankings(
        &config,
        &[SourceRanking::new(
            RetrievalSource::Keyword,
            [(9_u32, 0.0), (8, f64::NAN)],
        )],
    );
    assert_eq!(single[0].id, 9);
    assert_eq!(single[0].score, 1.0);
    assert_eq!(single[1].score, 0.0, "a non-finite score adds nothing");
}

fn arb_convex_config() -> impl Strategy<Value = FusionConfig> {
    (arb_config(), any::<bool>()).prop_map(|(config, tmm)| {
        config.with_method(FusionMethod::Convex(if tmm {
            Normalisation::TheoreticalMinMax
        } else {
            Normalisation::MinMax
        }))
    })
}

proptest! {
    #[test]
    fn convex_is_order_independent_and_bounded_by_the_weights(
        config in arb_convex_config(),
        lists in arb_rankings(),
        seed in any::<u64>(),
    ) {
        let fused = fuse_rankings(&config, &lists);
        let mut shuffled = lists.clone();
        let len = shuffled.len().max(1);
        shuffled.rotate_left((seed as usize) % len);
        prop_assert_eq!(&fuse_rankings(&config, &shuffled), &fused);
        let total: f64 = RetrievalSource::ALL.iter().map(|s| config.weight(*s)).sum();
        for hit in &fused {
            prop_assert!(hit.score >= 0.0 && hit.score <= total + 1e-9);
        }
        for pair in fused.windows(2) {
            prop_assert!(pair[0].score >= pair[1].score);
        }
    }
}
