//! Retrieval fusion: merges ranked lists from the vector, keyword (FTS5 BM25)
//! and tag searches into one list, by one of two [`FusionMethod`]s.
//! It only ranks what it is given; it never queries, embeds or fetches texts.
//!
//! - **Weighted reciprocal rank fusion** (`method=rrf`): an item scores
//!   `Σ_s weight_s / (k + rank_s)` over the sources `s` that returned it, with
//!   1-based ranks. Ranks need no calibration between sources, but how much a
//!   source counts then depends on `k` and the weights, which Bruch, Gai &
//!   Ingber ("An Analysis of Fusion Functions for Hybrid Retrieval", ACM TOIS
//!   2023) found sensitive to the corpus.
//! - **Convex combination of normalised scores** (`method=convex`): an item
//!   scores `Σ_s weight_s × norm_s(raw score)`, each source's raw scores
//!   mapped onto `[0, 1]` within its own list for this query (`convex`:
//!   its worst hit 0, its best 1; `convex-tmm`: the source's theoretical
//!   minimum 0, its best hit 1, the paper's TMM). A source returning
//!   nothing for an item adds 0. How far apart the hits are within a list
//!   then counts, not only their order.
//!
//! The raw scores are kept on every fused item so the API can show them.
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

/// How fused scores are computed from the sources' lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FusionMethod {
    /// Weighted reciprocal rank fusion: `Σ weight / (k + rank)`.
    #[default]
    Rrf,
    /// Convex combination of per-list normalised raw scores: `Σ weight × norm(score)`.
    Convex(Normalisation),
}

/// How a convex combination maps a source's raw scores onto `[0, 1]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Normalisation {
    /// The list's worst score 0, its best 1.
    MinMax,
    /// The source's theoretical minimum 0 (cosine −1, BM25 and tag counts 0), the list's best 1.
    TheoreticalMinMax,
}

impl FusionMethod {
    /// Every method, as the spec names them.
    pub const ALL: [FusionMethod; 3] = [
        Self::Rrf,
        Self::Convex(Normalisation::MinMax),
        Self::Convex(Normalisation::TheoreticalMinMax),
    ];

    /// The spec's `method` values: `rrf`, `convex` (min-max), `convex-tmm`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rrf => "rrf",
            Self::Convex(Normalisation::MinMax) => "convex",
            Self::Convex(Normalisation::TheoreticalMinMax) => "convex-tmm",
        }
    }

    /// The method named `value`.
    #[must_use]
    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.as_str() == value)
    }
}

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
    method: FusionMethod,
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
            method: FusionMethod::Rrf,
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

    /// How the fused scores are computed.
    #[must_use]
    pub fn method(&self) -> FusionMethod {
        self.method
    }

    /// Sets the method.
    #[must_use]
    pub fn with_method(mut self, method: FusionMethod) -> Self {
        self.method = method;
        self
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

    /// Applies a spec such as `vector=1,keyword=0.5,tag=0.25,k=60` or
    /// `method=convex,vector=0.5,keyword=0.5,tag=0.1` over `self`: any subset
    /// of the keys `vector`, `keyword`, `tag`, `k` and `method` (`rrf`,
    /// `convex`, `convex-tmm`), in any order, comma-separated; a key left out
    /// keeps its value. At least one source must keep a weight above 0.
    ///
    /// # Errors
    /// An unknown or repeated key, a value that is not a number (or not a
    /// method), a weight below 0, `k` not above 0, or every weight 0.
    pub fn with_spec(mut self, spec: &str) -> Result<Self, FusionConfigError> {
        let mut seen = Vec::new();
        let mut method = None;
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, value) = part
                .split_once('=')
                .ok_or_else(|| ConfigErrorKind::Spec(format!("`{part}` is not key=value")))?;
            let key = key.trim();
            if seen.contains(&key) {
                return Err(ConfigErrorKind::Spec(format!("`{key}` is given twice")).into());
            }
            seen.push(key);
            if key == "method" {
                method = Some(FusionMethod::parse(value.trim()).ok_or_else(|| {
                    ConfigErrorKind::Spec(format!(
                        "`method` is rrf, convex or convex-tmm, got `{}`",
                        value.trim()
                    ))
                })?);
                continue;
            }
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
                                "unknown key `{name}`; expected vector, keyword, tag, k or method"
                            ))
                        })?;
                    self.with_weight(source, value)?
                }
            };
        }
        if let Some(method) = method {
            self.method = method;
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
        match self.method {
            FusionMethod::Rrf => format!("{},k={}", weights.join(","), self.k),
            method => format!(
                "method={},{},k={}",
                method.as_str(),
                weights.join(","),
                self.k
            ),
        }
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
    /// Fused score (`Σ weight_s / (k + rank_s)`, or `Σ weight_s × norm_s` for a
    /// convex combination); higher is better.
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

    let bounds = score_bounds(config.method(), &by_id);
    let mut fused: Vec<FusedHit<Id>> = by_id
        .into_iter()
        .map(|(id, matches)| {
            // BTreeMap iteration gives a fixed summation order, so the float
            // sum is bit-identical whatever order the lists came in.
            let score = matches
                .iter()
                .map(|(source, m)| {
                    let weight = config.weight(*source);
                    match config.method() {
                        FusionMethod::Rrf => weight / (config.k() + m.rank as f64),
                        FusionMethod::Convex(_) => {
                            weight * bounds[source.index()].normalise(m.raw_score)
                        }
                    }
                })
                .sum();
            FusedHit { id, score, matches }
        })
        .collect();
    fused.sort_by(compare_fused);
    fused
}

/// The lowest and highest score that min-max scaling maps to 0 and 1.
#[derive(Debug, Clone, Copy)]
struct Bounds {
    low: f64,
    high: f64,
}

impl Bounds {
    /// No score seen yet.
    const EMPTY: Self = Self {
        low: f64::INFINITY,
        high: f64::NEG_INFINITY,
    };

    /// Widens the bounds to `score`; non-finite scores are left out.
    fn include(&mut self, score: f64) {
        if score.is_finite() {
            self.low = self.low.min(score);
            self.high = self.high.max(score);
        }
    }

    /// `score` on `[0, 1]`: non-finite scores 0; every score 1 when the bounds are one value.
    fn normalise(self, score: f64) -> f64 {
        let range = self.high - self.low;
        if !score.is_finite() {
            0.0
        } else if range > 0.0 && range.is_finite() {
            ((score - self.low) / range).clamp(0.0, 1.0)
        } else if range.is_finite() {
            1.0
        } else {
            // The range overflowed (scores near ±f64::MAX): fall back to
            // halving both ends before subtracting.
            ((score / 2.0 - self.low / 2.0) / (self.high / 2.0 - self.low / 2.0)).clamp(0.0, 1.0)
        }
    }
}

/// The lowest possible raw score of each source: cosine similarity −1, BM25 relevance and
/// matched-tag counts 0.
fn theoretical_minimum(source: RetrievalSource) -> f64 {
    match source {
        RetrievalSource::Vector => -1.0,
        RetrievalSource::Keyword | RetrievalSource::Tag => 0.0,
    }
}

/// Each source's [`Bounds`] over the (deduplicated) hits it returned; unused for RRF.
fn score_bounds<Id>(
    method: FusionMethod,
    by_id: &BTreeMap<Id, BTreeMap<RetrievalSource, SourceMatch>>,
) -> [Bounds; 3] {
    let mut bounds = [Bounds::EMPTY; 3];
    let FusionMethod::Convex(norm) = method else {
        return bounds;
    };
    for (source, m) in by_id.values().flat_map(|matches| matches.iter()) {
        bounds[source.index()].include(m.raw_score);
    }
    if norm == Normalisation::TheoreticalMinMax {
        for source in RetrievalSource::ALL {
            let b = &mut bounds[source.index()];
            b.low = theoretical_minimum(source).min(b.low);
        }
    }
    bounds
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
    let mut bounds = Bounds::EMPTY;
    for &score in scores {
        bounds.include(score);
    }
    scores.iter().map(|&s| bounds.normalise(s)).collect()
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
mod tests;
