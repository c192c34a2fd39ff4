//! Retrieval fusion: merges ranked lists from the vector, keyword (FTS5 BM25)
//! and tag searches into one list by weighted reciprocal rank fusion.
//! It only ranks what it is given; it never queries, embeds or fetches texts.
//!
//! Score of an item: `Σ_s weight_s / (k + rank_s)` over the sources `s` that
//! returned it, with 1-based ranks. Reciprocal rank fusion needs no score
//! calibration between sources (cosine similarities and BM25 values live on
//! different scales), which is why ranks, not raw scores, drive the fusion;
//! the raw scores are still kept on every fused item so the API can show them.
//!
//! The id type is generic (`Id: Ord + Clone`): the query service fuses D1
//! chunk ids (`i64`), tests and tools may fuse strings. `Ord` (rather than
//! `Hash`) gives a deterministic last tie-breaker and iteration order.
//!
//! ```
//! use portfolio_core::query::fusion::{fuse_rankings, FusionConfig, RetrievalSource, SourceRanking};
//!
//! let config = FusionConfig::new().with_weight(RetrievalSource::Tag, 0.5).unwrap();
//! let vector = SourceRanking::new(RetrievalSource::Vector, [(7_i64, 0.91), (3, 0.80)]);
//! let keyword = SourceRanking::new(RetrievalSource::Keyword, [(3_i64, 12.5), (9, 4.0)]);
//! let fused = fuse_rankings(&config, &[vector, keyword]);
//! assert_eq!(fused[0].id, 3); // second in one list and first in the other
//! assert_eq!(fused.len(), 3);
//! ```

use std::cmp::Ordering;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Default RRF constant `k`, from Cormack, Clarke & Büttcher, "Reciprocal Rank
/// Fusion outperforms Condorcet and individual Rank Learning Methods" (SIGIR 2009).
pub const DEFAULT_RRF_K: f64 = 60.0;

/// Default weight of every source: plain (unweighted) RRF.
pub const DEFAULT_SOURCE_WEIGHT: f64 = 1.0;

/// Where a ranked list came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RetrievalSource {
    /// Nearest neighbours of the question's embedding in the vector index.
    Vector,
    /// Full-text matches from the FTS5 index, ranked by BM25.
    Keyword,
    /// Chunks whose tags match tags extracted from the question.
    Tag,
}

impl RetrievalSource {
    /// Every source, in the fixed order used for summation and display.
    pub const ALL: [RetrievalSource; 3] = [Self::Vector, Self::Keyword, Self::Tag];

    /// Stable lowercase name (`vector`, `keyword`, `tag`), as used in the API.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Vector => "vector",
            Self::Keyword => "keyword",
            Self::Tag => "tag",
        }
    }

    fn index(self) -> usize {
        match self {
            Self::Vector => 0,
            Self::Keyword => 1,
            Self::Tag => 2,
        }
    }
}

/// Invalid fusion configuration (a newtype, so messages can change freely).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error(transparent)]
pub struct FusionConfigError(#[from] ConfigErrorKind);

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
enum ConfigErrorKind {
    #[error("RRF k must be a finite number greater than 0, got {0}")]
    InvalidK(f64),
    #[error("weight of source `{name}` must be a finite number >= 0, got {weight}")]
    InvalidWeight { name: &'static str, weight: f64 },
    #[error("{0}")]
    Spec(String),
}

/// Fusion knobs: the RRF constant `k` and one weight per source.
///
/// `k` damps the advantage of the very top ranks: with `k = 60` rank 1 scores
/// 1/61 and rank 10 scores 1/70, so agreement between sources matters more
/// than being first in one of them. A weight scales a source's whole
/// contribution; weight `0` switches the source off (its list is ignored
/// entirely, as if it had not been passed).
#[derive(Debug, Clone, PartialEq)]
pub struct FusionConfig {
    k: f64,
    weights: [f64; 3],
}

impl Default for FusionConfig {
    fn default() -> Self {
        Self::new()
    }
}

impl FusionConfig {
    /// `k = 60`, every source weighted 1.
    #[must_use]
    pub fn new() -> Self {
        Self {
            k: DEFAULT_RRF_K,
            weights: [DEFAULT_SOURCE_WEIGHT; 3],
        }
    }

    /// Sets the RRF constant; it must be finite and > 0.
    pub fn with_k(mut self, k: f64) -> Result<Self, FusionConfigError> {
        if !(k.is_finite() && k > 0.0) {
            return Err(ConfigErrorKind::InvalidK(k).into());
        }
        self.k = k;
        Ok(self)
    }

    /// Sets one source's weight; it must be finite and >= 0 (0 disables the source).
    pub fn with_weight(
        mut self,
        source: RetrievalSource,
        weight: f64,
    ) -> Result<Self, FusionConfigError> {
        if !(weight.is_finite() && weight >= 0.0) {
            return Err(ConfigErrorKind::InvalidWeight {
                name: source.as_str(),
                weight,
            }
            .into());
        }
        self.weights[source.index()] = weight;
        Ok(self)
    }

    /// The RRF constant `k`.
    #[must_use]
    pub fn k(&self) -> f64 {
        self.k
    }

    /// The weight of `source`.
    #[must_use]
    pub fn weight(&self, source: RetrievalSource) -> f64 {
        self.weights[source.index()]
    }

    /// Whether `source` takes part (weight > 0): a source that does not is not even asked.
    #[must_use]
    pub fn uses(&self, source: RetrievalSource) -> bool {
        self.weight(source) > 0.0
    }

    /// Only `source`, weighted 1: its own ranking, unchanged by fusion.
    #[must_use]
    pub fn only(source: RetrievalSource) -> Self {
        let mut config = Self::new();
        config.weights = [0.0; 3];
        config.weights[source.index()] = 1.0;
        config
    }

    /// Applies a spec such as `vector=1,keyword=0.5,tag=0.25,k=60` over `self`:
    /// any subset of the four keys, in any order, comma-separated; a key left
    /// out keeps its value. At least one source must keep a weight above 0.
    ///
    /// # Errors
    /// An unknown or repeated key, a value that is not a number, a weight
    /// below 0, `k` not above 0, or every weight 0.
    pub fn with_spec(mut self, spec: &str) -> Result<Self, FusionConfigError> {
        let mut seen = Vec::new();
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, value) = part
                .split_once('=')
                .ok_or_else(|| ConfigErrorKind::Spec(format!("`{part}` is not key=value")))?;
            let key = key.trim();
            if seen.contains(&key) {
                return Err(ConfigErrorKind::Spec(format!("`{key}` is given twice")).into());
            }
            seen.push(key);
            let value: f64 = value.trim().parse().map_err(|_| {
                ConfigErrorKind::Spec(format!("`{key}` needs a number, got `{}`", value.trim()))
            })?;
            self = match key {
                "k" => self.with_k(value)?,
                name => {
                    let source = RetrievalSource::ALL
                        .into_iter()
                        .find(|s| s.as_str() == name)
                        .ok_or_else(|| {
                            ConfigErrorKind::Spec(format!(
                                "unknown key `{name}`; expected vector, keyword, tag or k"
                            ))
                        })?;
                    self.with_weight(source, value)?
                }
            };
        }
        self.checked()
    }

    /// `self` when at least one source has a weight above 0.
    ///
    /// # Errors
    /// Every weight is 0: nothing would be searched.
    pub fn checked(self) -> Result<Self, FusionConfigError> {
        if RetrievalSource::ALL.iter().any(|s| self.uses(*s)) {
            Ok(self)
        } else {
            Err(ConfigErrorKind::Spec("at least one weight must be above 0".into()).into())
        }
    }

    /// The spec [`FusionConfig::with_spec`] reads back to `self`.
    #[must_use]
    pub fn spec(&self) -> String {
        let weights: Vec<String> = RetrievalSource::ALL
            .iter()
            .map(|s| format!("{}={}", s.as_str(), self.weight(*s)))
            .collect();
        format!("{},k={}", weights.join(","), self.k)
    }
}

/// One item of a source's list, with the source's own (raw) score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RankedHit<Id> {
    /// Item id (a chunk id in the query service).
    pub id: Id,
    /// The source's raw score, kept for display; it does not affect fusion.
    pub score: f64,
}

/// A ranked list from one source, best first: position 0 has rank 1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceRanking<Id> {
    /// Which search produced the list.
    pub source: RetrievalSource,
    /// Hits best first; a repeated id keeps its first (best) position.
    pub hits: Vec<RankedHit<Id>>,
}

impl<Id> SourceRanking<Id> {
    /// Builds a list from `(id, raw score)` pairs given best first.
    pub fn new(source: RetrievalSource, hits: impl IntoIterator<Item = (Id, f64)>) -> Self {
        Self {
            source,
            hits: hits
                .into_iter()
                .map(|(id, score)| RankedHit { id, score })
                .collect(),
        }
    }
}

/// Where and how a source ranked a fused item.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SourceMatch {
    /// 1-based rank in the source's list (its position, duplicates not compacted).
    pub rank: usize,
    /// The source's raw score at that rank.
    pub raw_score: f64,
}

/// One item of the fused list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FusedHit<Id> {
    /// Item id.
    pub id: Id,
    /// Fused score `Σ weight_s / (k + rank_s)`; higher is better.
    pub score: f64,
    /// Per-source rank and raw score, for the sources (with weight > 0) that returned the item.
    pub matches: BTreeMap<RetrievalSource, SourceMatch>,
}

impl<Id> FusedHit<Id> {
    /// The best (lowest) rank this item had in any source.
    #[must_use]
    pub fn best_rank(&self) -> usize {
        self.matches
            .values()
            .map(|m| m.rank)
            .min()
            .unwrap_or(usize::MAX)
    }

    /// How `source` ranked this item, if it returned it.
    #[must_use]
    pub fn source(&self, source: RetrievalSource) -> Option<&SourceMatch> {
        self.matches.get(&source)
    }
}

/// Fuses ranked lists into one list, best first.
///
/// - Lists of sources with weight 0 are ignored entirely.
/// - A repeated id inside one list keeps its best rank; several lists for the
///   same source are merged the same way (best rank, then higher raw score).
/// - Order: fused score descending, then best rank, then id ascending, so the
///   output depends neither on the order of the lists nor on hash seeds.
pub fn fuse_rankings<Id: Ord + Clone>(
    config: &FusionConfig,
    rankings: &[SourceRanking<Id>],
) -> Vec<FusedHit<Id>> {
    let mut by_id: BTreeMap<Id, BTreeMap<RetrievalSource, SourceMatch>> = BTreeMap::new();
    for ranking in rankings {
        if config.weight(ranking.source) == 0.0 {
            continue;
        }
        for (position, hit) in ranking.hits.iter().enumerate() {
            let candidate = SourceMatch {
                rank: position + 1,
                raw_score: hit.score,
            };
            let matches = by_id.entry(hit.id.clone()).or_default();
            match matches.get_mut(&ranking.source) {
                None => {
                    matches.insert(ranking.source, candidate);
                }
                Some(existing) => {
                    let better = candidate.rank < existing.rank
                        || (candidate.rank == existing.rank
                            && candidate.raw_score.total_cmp(&existing.raw_score)
                                == Ordering::Greater);
                    if better {
                        *existing = candidate;
                    }
                }
            }
        }
    }

    let mut fused: Vec<FusedHit<Id>> = by_id
        .into_iter()
        .map(|(id, matches)| {
            // BTreeMap iteration gives a fixed summation order, so the float
            // sum is bit-identical whatever order the lists came in.
            let score = matches
                .iter()
                .map(|(source, m)| config.weight(*source) / (config.k() + m.rank as f64))
                .sum();
            FusedHit { id, score, matches }
        })
        .collect();
    fused.sort_by(compare_fused);
    fused
}

/// [`fuse_rankings`], truncated to the best `n` items.
pub fn fuse_top_n<Id: Ord + Clone>(
    config: &FusionConfig,
    rankings: &[SourceRanking<Id>],
    n: usize,
) -> Vec<FusedHit<Id>> {
    let mut fused = fuse_rankings(config, rankings);
    fused.truncate(n);
    fused
}

fn compare_fused<Id: Ord>(a: &FusedHit<Id>, b: &FusedHit<Id>) -> Ordering {
    b.score
        .total_cmp(&a.score)
        .then_with(|| a.best_rank().cmp(&b.best_rank()))
        .then_with(|| a.id.cmp(&b.id))
}

/// Min-max normalises scores to `[0, 1]` (higher stays better).
///
/// Non-finite scores map to 0 and are left out of the min/max. When all
/// finite scores are equal they all map to 1 (equally the best there is).
#[must_use]
pub fn min_max_normalise(scores: &[f64]) -> Vec<f64> {
    let finite = scores.iter().copied().filter(|s| s.is_finite());
    let (min, max) = finite.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), s| {
        (lo.min(s), hi.max(s))
    });
    let range = max - min;
    scores
        .iter()
        .map(|&s| {
            if !s.is_finite() {
                0.0
            } else if range > 0.0 && range.is_finite() {
                ((s - min) / range).clamp(0.0, 1.0)
            } else if range.is_finite() {
                1.0
            } else {
                // The range overflowed (scores near ±f64::MAX): fall back to
                // halving both ends before subtracting.
                ((s / 2.0 - min / 2.0) / (max / 2.0 - min / 2.0)).clamp(0.0, 1.0)
            }
        })
        .collect()
}

/// Converts an SQLite FTS5 `bm25()` value to a higher-is-better relevance >= 0.
///
/// FTS5 returns BM25 multiplied by -1, so better matches are *more negative*
/// (<https://sqlite.org/fts5.html#the_bm25_function>); negating restores the
/// usual convention. Positive or non-finite inputs (not produced by FTS5) map to 0.
#[must_use]
pub fn bm25_relevance(fts5_bm25: f64) -> f64 {
    if fts5_bm25.is_finite() && fts5_bm25 < 0.0 {
        -fts5_bm25
    } else {
        0.0
    }
}

/// Converts FTS5 `bm25()` values to relevances and min-max normalises them to `[0, 1]`.
#[must_use]
pub fn normalise_bm25(fts5_bm25: &[f64]) -> Vec<f64> {
    let relevances: Vec<f64> = fts5_bm25.iter().map(|&s| bm25_relevance(s)).collect();
    min_max_normalise(&relevances)
}

#[cfg(test)]
mod tests {
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
}
