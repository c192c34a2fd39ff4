//! What the cache's pre-selected candidates become: the answer to a query
//! that accepts estimates ([`approximate_matches`]), or the order an exact
//! rerank reads their rows in ([`ExactRerank`]) and when it may stop
//! ([`rerank_can_stop`]).

use crate::index::{TopK, VectorMatch};

/// A pre-selected vector and the most its exact cosine to the query can be.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// Vector id.
    pub id: String,
    /// Upper bound on its cosine (infinite for a vector the cache cannot bound).
    pub upper: f32,
    /// The cache's estimate of its cosine (minus infinity for a vector it cannot bound).
    pub estimate: f32,
}

/// The `k` candidates with the best estimates, best first, ties by id: what a query that
/// accepts an approximate answer gets without reading any row. Every vector among the k best
/// estimates has an upper bound at least the k-th best lower bound, so pre-selected candidates
/// hold all of them.
#[must_use]
pub fn best_estimates(mut candidates: Vec<Candidate>, k: usize) -> Vec<Candidate> {
    candidates.sort_by(|a, b| {
        b.estimate
            .total_cmp(&a.estimate)
            .then_with(|| a.id.cmp(&b.id))
    });
    candidates.truncate(k);
    candidates
}

/// The answer to a query that accepts estimates: the `k` best estimates ([`best_estimates`]),
/// without the vectors estimated at or below 0. Those share nothing with the query as far as
/// the int8 codes can tell, and their many equal estimates would be ordered by id alone, which
/// a restore renumbers: a search's answers would then depend on the order documents arrived.
#[must_use]
pub fn approximate_matches(candidates: Vec<Candidate>, k: usize) -> Vec<VectorMatch> {
    best_estimates(candidates, k)
        .into_iter()
        .filter(|c| c.estimate > 0.0)
        .map(|c| VectorMatch {
            id: c.id,
            score: c.estimate,
            metadata: None,
        })
        .collect()
}

/// Rows an exact rerank reads per batch for `k` results: 2 × k, at least 16, at most
/// `max_batch` (the reader's page).
#[must_use]
pub fn rerank_batch(k: usize, max_batch: usize) -> usize {
    (2 * k).clamp(16, max_batch.max(16))
}

/// The order in which an exact rerank reads the pre-selected candidates' rows: highest bound
/// first, a batch at a time, until every candidate is read or [`rerank_can_stop`].
#[derive(Debug)]
pub struct ExactRerank {
    candidates: Vec<Candidate>,
    batch: usize,
    read: usize,
}

impl ExactRerank {
    /// Reads `candidates` (as [`super::VectorCache::preselect`] orders them) `batch` at a time.
    #[must_use]
    pub fn new(candidates: Vec<Candidate>, batch: usize) -> Self {
        Self {
            candidates,
            batch: batch.max(1),
            read: 0,
        }
    }

    /// The ids to read next, given the top k of the rows read so far; `None` once the rest
    /// cannot change it.
    pub fn next_batch<T>(&mut self, top: &TopK<T>) -> Option<Vec<String>> {
        let next = self.candidates.get(self.read)?;
        if rerank_can_stop(top, next.upper) {
            return None;
        }
        let end = self.candidates.len().min(self.read + self.batch);
        let ids = self.candidates[self.read..end]
            .iter()
            .map(|c| c.id.clone())
            .collect();
        self.read = end;
        Some(ids)
    }

    /// How many candidates were handed out.
    #[must_use]
    pub fn read(&self) -> usize {
        self.read
    }
}

/// Whether an exact rerank reading candidates by descending bound may stop: the `k` best
/// exact scores so far are all above `next_upper`, the bound of every candidate not read yet,
/// so none of those can enter the top k.
#[must_use]
pub fn rerank_can_stop<T>(top: &TopK<T>, next_upper: f32) -> bool {
    top.kth_score().is_some_and(|kth| kth > next_upper)
}
