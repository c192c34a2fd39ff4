//! Exact search: cosine similarity, a bounded top-k that breaks ties by id,
//! and the exact filtered top-k every index's answers are compared against.

use super::*;
use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// Euclidean norm.
#[must_use]
pub fn norm(values: &[f32]) -> f32 {
    values.iter().map(|v| v * v).sum::<f32>().sqrt()
}

/// Cosine similarity of `query` (with its precomputed norm) and `candidate`; 0 when either has
/// no length, so a degenerate stored vector ranks last rather than poisoning the order.
#[must_use]
pub fn cosine_with_norm(query: &[f32], query_norm: f32, candidate: &[f32]) -> f32 {
    let (mut dot, mut sq) = (0.0_f32, 0.0_f32);
    for (q, c) in query.iter().zip(candidate) {
        dot += q * c;
        sq += c * c;
    }
    let denom = query_norm * sq.sqrt();
    if denom > 0.0 && denom.is_finite() {
        dot / denom
    } else {
        0.0
    }
}

/// Cosine similarity of two vectors.
#[must_use]
pub fn cosine_similarity(a: &[f32], b: &[f32]) -> f32 {
    cosine_with_norm(a, norm(a), b)
}

struct Ranked<T> {
    score: f32,
    id: String,
    item: T,
}

impl<T> Ranked<T> {
    /// `Less` when `self` ranks before `other`: higher score, then smaller id.
    fn rank_cmp(&self, other: &Self) -> Ordering {
        other
            .score
            .total_cmp(&self.score)
            .then_with(|| self.id.cmp(&other.id))
    }
}
impl<T> PartialEq for Ranked<T> {
    fn eq(&self, other: &Self) -> bool {
        self.rank_cmp(other) == Ordering::Equal
    }
}
impl<T> Eq for Ranked<T> {}
impl<T> PartialOrd for Ranked<T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<T> Ord for Ranked<T> {
    fn cmp(&self, other: &Self) -> Ordering {
        self.rank_cmp(other)
    }
}

/// Streaming exact top-k: keeps the `k` best `(id, score)` pairs seen, in O(k) memory, so the
/// D1 index can scan the table page by page. Order: score descending, then id ascending.
#[derive(Debug)]
pub struct TopK<T> {
    k: usize,
    // Max-heap by rank order: the top is the worst kept entry, evicted first.
    heap: BinaryHeap<Ranked<T>>,
}

impl<T> std::fmt::Debug for Ranked<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "({}, {})", self.id, self.score)
    }
}

impl<T> TopK<T> {
    /// Keeps the best `k` entries.
    #[must_use]
    pub fn new(k: usize) -> Self {
        Self {
            k,
            heap: BinaryHeap::with_capacity(k.saturating_add(1).min(1024)),
        }
    }

    /// Whether an entry with `score` and `id` would be kept (lets callers skip work).
    #[must_use]
    pub fn would_keep(&self, score: f32, id: &str) -> bool {
        if self.k == 0 || score.is_nan() {
            return false;
        }
        if self.heap.len() < self.k {
            return true;
        }
        self.heap.peek().is_none_or(|worst| {
            score > worst.score || (score == worst.score && id < worst.id.as_str())
        })
    }

    /// The score of the worst kept entry once `k` are kept (`None` before).
    #[must_use]
    pub fn kth_score(&self) -> Option<f32> {
        if self.k == 0 || self.heap.len() < self.k {
            return None;
        }
        self.heap.peek().map(|worst| worst.score)
    }

    /// Offers an entry; NaN scores are ignored.
    pub fn push(&mut self, id: String, score: f32, item: T) {
        if !self.would_keep(score, &id) {
            return;
        }
        self.heap.push(Ranked { score, id, item });
        if self.heap.len() > self.k {
            self.heap.pop();
        }
    }

    /// The kept entries, best first.
    #[must_use]
    pub fn into_sorted(self) -> Vec<(String, f32, T)> {
        self.heap
            .into_sorted_vec()
            .into_iter()
            .map(|r| (r.id, r.score, r.item))
            .collect()
    }
}

/// Exact cosine top-k over in-memory records, filtered by metadata: the D1 index's ranking and
/// the reference the tests compare Vectorize's answers against.
#[must_use]
pub fn exact_top_k<'a>(
    query: &VectorQuery,
    records: impl IntoIterator<Item = &'a VectorRecord>,
) -> Vec<VectorMatch> {
    let query_norm = norm(&query.vector);
    let mut top = TopK::new(query.top_k);
    for record in records {
        if query
            .filter
            .as_ref()
            .is_some_and(|f| !f.matches(&record.metadata))
        {
            continue;
        }
        let score = cosine_with_norm(&query.vector, query_norm, &record.values);
        if top.would_keep(score, &record.id) {
            top.push(record.id.clone(), score, &record.metadata);
        }
    }
    top.into_sorted()
        .into_iter()
        .map(|(id, score, metadata)| VectorMatch {
            id,
            score,
            metadata: query.return_metadata.then(|| metadata.clone()),
        })
        .collect()
}
