//! The in-memory copy of the D1-exact index that a Worker isolate keeps between requests:
//! unit vectors quantized to int8, the rules that keep the copy in step with the table's change
//! log (`vector_index_changes`, migration 0003), and the error-bounded pre-selection that lets an
//! exact rerank of a few candidates return exactly what a full exact scan returns.
//!
//! Owns those decisions; must never perform I/O or read a clock (the adapter
//! `crates/worker/src/store/vector_cache.rs` reads D1 and calls in here), and never decides a
//! final score: scores always come from [`crate::index::exact_top_k`] over the stored f32
//! vectors, so results are identical with and without the cache.
//!
//! **Why the pre-selection is exact.** A stored vector `v` is kept as `u = v / |v|` quantized:
//! `u ≈ scale · codes`, with a known error vector `r = u - scale · codes`. For a unit query `q`,
//! the true cosine is `q·u = scale · (q·codes) + q·r`, and `|q·r| ≤ min(|r|₂, |q|₁ · scale / 2)`
//! (Cauchy–Schwarz; each component of `r` is at most half a quantization step). So every vector
//! has an interval `[approx - err, approx + err]` holding its true score. A vector whose upper
//! end is below the k-th largest lower end cannot be in the top k (k others surely beat it):
//! only the rest are candidates, and reranking them exactly gives the exact top k.

use std::collections::HashMap;

use crate::index::{MetadataFilter, VectorMetadata};

mod select;

pub use select::{
    approximate_matches, best_estimates, rerank_batch, rerank_can_stop, Candidate, ExactRerank,
};

/// Added to every error bound: float rounding of the approximate score and of the exact cosine
/// it stands in for. Each sums ≤ 1536 f32 products, whose rounding is bounded by n·ε ≈ 1e-4
/// relative (ε = 2⁻²⁴); 1e-3 covers both with room to spare and barely widens the candidate set.
pub const SCORE_ROUNDING_MARGIN: f32 = 1e-3;

/// Memory one isolate's cache may take. Workers allow an isolate 128 MB for the JS heap and wasm
/// memory together (https://developers.cloudflare.com/workers/platform/limits/#memory), and a
/// query reads up to a 1000-row page (~12 MB of hex) on top: 40 MiB leaves room for both.
/// At 1536 dimensions this holds about 24,000 vectors; beyond it the index scans D1 instead.
pub const CACHE_MAX_BYTES: usize = 40 * 1024 * 1024;

/// Estimated bytes per cached vector besides its codes (id, metadata, slot, map entry); used to
/// decide from the row count alone whether a corpus fits before loading it.
pub const ENTRY_OVERHEAD_BYTES: usize = 200;

/// The most vectors of `dimensions` the cache holds within [`CACHE_MAX_BYTES`]: the largest
/// `D1_INDEX_MAX_VECTORS` (24,160 at 1536 dimensions).
#[must_use]
pub fn max_cached_vectors(dimensions: usize) -> u64 {
    (CACHE_MAX_BYTES / (dimensions + ENTRY_OVERHEAD_BYTES)) as u64
}

/// Tombstones (deletions) the change log keeps, counted in changes: a delete prunes those more
/// than this many changes old. A cache that far behind reloads everything, which reads no more
/// than the changes it missed would have.
pub const TOMBSTONE_RETENTION_CHANGES: u64 = 100_000;

/// The largest magnitude an int8 code takes (symmetric, so `-128` is never used).
const CODE_MAX: f32 = 127.0;

/// A unit vector quantized to int8: `u ≈ scale · codes`, off by at most `residual` (L2).
#[derive(Debug, Clone, PartialEq)]
pub struct QuantizedVector {
    /// One code per dimension.
    pub codes: Vec<i8>,
    /// Step between codes; NaN for a vector with no direction (zero or non-finite), which the
    /// pre-selection can never rule out and always hands to the exact rerank.
    pub scale: f32,
    /// `|u - scale · codes|₂`.
    pub residual: f32,
}

impl QuantizedVector {
    /// Quantizes `values / |values|`.
    #[must_use]
    pub fn new(values: &[f32]) -> Self {
        let length = values.iter().map(|v| v * v).sum::<f32>().sqrt();
        if !(length > 0.0 && length.is_finite()) || values.iter().any(|v| !v.is_finite()) {
            return Self {
                codes: vec![0; values.len()],
                scale: f32::NAN,
                residual: f32::INFINITY,
            };
        }
        let unit: Vec<f32> = values.iter().map(|v| v / length).collect();
        let max = unit.iter().fold(0.0_f32, |m, v| m.max(v.abs()));
        let scale = max / CODE_MAX;
        let mut residual = 0.0_f32;
        let codes = unit
            .iter()
            .map(|u| {
                // |u / scale| ≤ 127 by construction; the clamp only guards rounding.
                #[allow(clippy::cast_possible_truncation)]
                let code = (u / scale).round().clamp(-CODE_MAX, CODE_MAX) as i8;
                let off = u - f32::from(code) * scale;
                residual += off * off;
                code
            })
            .collect();
        Self {
            codes,
            scale,
            residual: residual.sqrt(),
        }
    }

    /// The `vector_index.quantized` BLOB (migration 0003): the codes, then `scale` and
    /// `residual` as little-endian f32. A quarter of the f32 vector's size, so a cold cache loads
    /// four times fewer bytes.
    #[must_use]
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(self.codes.len() + 8);
        bytes.extend(self.codes.iter().map(|c| c.to_le_bytes()[0]));
        bytes.extend_from_slice(&self.scale.to_le_bytes());
        bytes.extend_from_slice(&self.residual.to_le_bytes());
        bytes
    }

    /// Decodes that BLOB as read with `hex(quantized)`; `None` unless it is exactly
    /// `dimensions + 8` bytes of hex.
    #[must_use]
    pub fn from_hex(hex: &str, dimensions: usize) -> Option<Self> {
        if hex.len() != (dimensions + 8) * 2 {
            return None;
        }
        let nibble = |c: u8| match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        };
        let mut bytes = Vec::with_capacity(dimensions + 8);
        for pair in hex.as_bytes().chunks_exact(2) {
            bytes.push((nibble(pair[0])? << 4) | nibble(pair[1])?);
        }
        let tail = bytes.split_off(dimensions);
        let f = |i: usize| f32::from_le_bytes([tail[i], tail[i + 1], tail[i + 2], tail[i + 3]]);
        Some(Self {
            codes: bytes.into_iter().map(|b| i8::from_le_bytes([b])).collect(),
            scale: f(0),
            residual: f(4),
        })
    }

    /// Whether the pre-selection can bound this vector's score.
    #[must_use]
    pub fn is_scorable(&self) -> bool {
        self.scale.is_finite()
    }
}

/// One vector as the change log delivers it.
#[derive(Debug, Clone, PartialEq)]
pub enum IndexChange {
    /// The row `id` as written at `seq` (insert or update).
    Upsert {
        /// Vector id.
        id: String,
        /// Generation of the write.
        seq: u64,
        /// Its metadata.
        metadata: VectorMetadata,
        /// Its quantized direction.
        vector: QuantizedVector,
    },
    /// The row `id` deleted at `seq` (or no longer of the index's dimensions).
    Delete {
        /// Vector id.
        id: String,
        /// Generation of the delete.
        seq: u64,
    },
}

/// The one row of `vector_index_state`, read before every cached query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexState {
    /// Random per database; a different epoch means a different database (start over).
    pub epoch: String,
    /// Bumped by every row inserted, updated or deleted; the change log's latest `seq`.
    pub generation: u64,
    /// Rows in `vector_index`.
    pub vector_count: u64,
    /// Deletions up to this generation may have been pruned from the change log.
    pub pruned_through: u64,
}

/// What a query must do before it can trust the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncPlan {
    /// The cache holds the table as of the state's generation: score in memory.
    UpToDate,
    /// Read the change log after `after` and apply it; `reset` first empties the cache (a new
    /// database, a cache never loaded or one too far behind: then `after` is 0, everything).
    Changes {
        /// Read changes with `seq > after`.
        after: u64,
        /// Empty the cache first.
        reset: bool,
    },
    /// The corpus does not fit [`CACHE_MAX_BYTES`]: scan D1 as before, keep nothing.
    TooLarge,
}

#[derive(Debug)]
struct Slot {
    id: String,
    seq: u64,
    metadata: VectorMetadata,
    scale: f32,
    residual: f32,
    bytes: usize,
}

/// The cached index: quantized vectors in one contiguous array (slot `i` owns
/// `codes[i·d .. (i+1)·d]`), their ids and metadata, and how far the change log was applied.
#[derive(Debug)]
pub struct VectorCache {
    dimensions: usize,
    max_bytes: usize,
    max_vectors: u64,
    epoch: Option<String>,
    synced_through: Option<u64>,
    slots: Vec<Slot>,
    codes: Vec<i8>,
    by_id: HashMap<String, usize>,
    /// Deletions applied since the last completed sync, so an older write of the same id read
    /// later (the log is read in pages while writers go on) cannot bring the vector back.
    deleted: HashMap<String, u64>,
    bytes: usize,
    /// Set when the cache outgrew its budget: the vector count at that point.
    over_budget_at: Option<u64>,
}

impl VectorCache {
    /// An empty cache for vectors of `dimensions`, holding at most `max_bytes`.
    #[must_use]
    pub fn new(dimensions: usize, max_bytes: usize) -> Self {
        Self {
            dimensions,
            max_bytes,
            max_vectors: u64::MAX,
            epoch: None,
            synced_through: None,
            slots: Vec::new(),
            codes: Vec::new(),
            by_id: HashMap::new(),
            deleted: HashMap::new(),
            bytes: 0,
            over_budget_at: None,
        }
    }

    /// Also refuses (plans [`SyncPlan::TooLarge`] for) an index of more than `max_vectors`.
    #[must_use]
    pub fn with_max_vectors(mut self, max_vectors: u64) -> Self {
        self.max_vectors = max_vectors;
        self
    }

    /// The vector budget this cache was made with.
    #[must_use]
    pub fn max_vectors(&self) -> u64 {
        self.max_vectors
    }

    /// Dimensions of the cached vectors.
    #[must_use]
    pub fn dimensions(&self) -> usize {
        self.dimensions
    }

    /// Vectors held.
    #[must_use]
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether no vector is held.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Approximate memory held (codes, ids, metadata).
    #[must_use]
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The generation the cache last completed a sync at.
    #[must_use]
    pub fn synced_through(&self) -> Option<u64> {
        self.synced_through
    }

    /// The `seq` of the cached version of `id`, if cached.
    #[must_use]
    pub fn seq_of(&self, id: &str) -> Option<u64> {
        self.by_id.get(id).map(|&i| self.slots[i].seq)
    }

    /// Estimated memory for `vectors` cached vectors.
    #[must_use]
    pub fn estimated_bytes(&self, vectors: u64) -> u64 {
        vectors.saturating_mul((self.dimensions + ENTRY_OVERHEAD_BYTES) as u64)
    }

    /// Decides what a query must read, given the state row it just read.
    #[must_use]
    pub fn plan_sync(&self, state: &IndexState) -> SyncPlan {
        let too_large = state.vector_count > self.max_vectors
            || self.estimated_bytes(state.vector_count) > self.max_bytes as u64
            || self
                .over_budget_at
                .is_some_and(|at| state.vector_count >= at);
        if too_large {
            return SyncPlan::TooLarge;
        }
        match self.synced_through {
            Some(synced)
                if self.epoch.as_deref() == Some(state.epoch.as_str())
                    && synced <= state.generation
                    && synced >= state.pruned_through =>
            {
                if synced == state.generation {
                    SyncPlan::UpToDate
                } else {
                    SyncPlan::Changes {
                        after: synced,
                        reset: false,
                    }
                }
            }
            // Never loaded, another database, a generation that went backwards (a restored
            // database) or deletions we may have missed: start over.
            _ => SyncPlan::Changes {
                after: 0,
                reset: true,
            },
        }
    }

    /// Empties the cache (before a full load, or to give the memory back).
    pub fn reset(&mut self) {
        self.epoch = None;
        self.synced_through = None;
        self.slots = Vec::new();
        self.codes = Vec::new();
        self.by_id = HashMap::new();
        self.deleted = HashMap::new();
        self.bytes = 0;
    }

    /// Applies one change by `seq`: a change older than what the cache holds for its id (a
    /// cached write, or a remembered deletion) is ignored; on equal `seq` a deletion wins. So
    /// the changes of one sync may be applied in any order with the same result.
    pub fn apply(&mut self, change: IndexChange) {
        match change {
            IndexChange::Upsert {
                id,
                seq,
                metadata,
                vector,
            } => {
                if vector.codes.len() != self.dimensions {
                    // Not ours (other dimensions): for this index it is a deletion.
                    self.apply(IndexChange::Delete { id, seq });
                    return;
                }
                if self.deleted.get(&id).is_some_and(|&d| d >= seq) {
                    return;
                }
                self.deleted.remove(&id);
                let bytes = self.dimensions + ENTRY_OVERHEAD_BYTES + id.len();
                let d = self.dimensions;
                if let Some(&i) = self.by_id.get(&id) {
                    let slot = &mut self.slots[i];
                    if slot.seq > seq {
                        return;
                    }
                    self.bytes = self.bytes - slot.bytes + bytes;
                    slot.seq = seq;
                    slot.metadata = metadata;
                    slot.scale = vector.scale;
                    slot.residual = vector.residual;
                    slot.bytes = bytes;
                    self.codes[i * d..(i + 1) * d].copy_from_slice(&vector.codes);
                } else {
                    self.by_id.insert(id.clone(), self.slots.len());
                    self.codes.extend_from_slice(&vector.codes);
                    self.slots.push(Slot {
                        id,
                        seq,
                        metadata,
                        scale: vector.scale,
                        residual: vector.residual,
                        bytes,
                    });
                    self.bytes += bytes;
                }
            }
            IndexChange::Delete { id, seq } => {
                if let Some(&i) = self.by_id.get(&id) {
                    if self.slots[i].seq > seq {
                        return;
                    }
                    self.remove_slot(i);
                }
                let remembered = self.deleted.entry(id).or_insert(seq);
                *remembered = (*remembered).max(seq);
            }
        }
    }

    /// Removes slot `i`, moving the last slot into its place.
    fn remove_slot(&mut self, i: usize) {
        let d = self.dimensions;
        let last = self.slots.len() - 1;
        if i != last {
            self.codes.copy_within(last * d..(last + 1) * d, i * d);
            self.slots.swap(i, last);
            self.by_id.insert(self.slots[i].id.clone(), i);
        }
        self.codes.truncate(last * d);
        if let Some(slot) = self.slots.pop() {
            self.by_id.remove(&slot.id);
            self.bytes -= slot.bytes;
        }
    }

    /// Records a completed sync: the cache now holds `state`'s database at least as of
    /// `state.generation` (changes read after it may be applied too; the next sync reads them
    /// again and ignores them by `seq`). Deletions at or before it can no longer be contradicted
    /// by a later read, so they are forgotten.
    pub fn finish_sync(&mut self, state: &IndexState) {
        self.epoch = Some(state.epoch.clone());
        self.synced_through = Some(state.generation);
        self.deleted.retain(|_, seq| *seq > state.generation);
    }

    /// Whether the cache outgrew its budget; if so it empties itself and remembers the size at
    /// which it happened, so [`Self::plan_sync`] says `TooLarge` until the index shrinks.
    pub fn check_budget(&mut self, vector_count: u64) -> bool {
        if self.bytes <= self.max_bytes {
            return true;
        }
        self.reset();
        self.over_budget_at = Some(vector_count.max(1));
        false
    }

    /// The vectors that may be among the `k` best by cosine to `query` among those `filter`
    /// accepts — a superset of the exact top k (see the module docs) — with each one's upper
    /// bound on its cosine and estimate of it, highest bound first, so that an exact rerank
    /// ([`ExactRerank`]) may stop early. `query` must have a length (callers validate it first).
    #[must_use]
    pub fn preselect(
        &self,
        query: &[f32],
        filter: Option<&MetadataFilter>,
        k: usize,
    ) -> Vec<Candidate> {
        if k == 0 || query.len() != self.dimensions {
            return Vec::new();
        }
        let length = query.iter().map(|v| v * v).sum::<f32>().sqrt();
        let unit: Vec<f32> = query.iter().map(|v| v / length).collect();
        let l1: f32 = unit.iter().map(|v| v.abs()).sum();
        // A sparse query (few non-zero components, as from a feature-hashing embedder) is
        // scored on those components only.
        let nonzero: Vec<(usize, f32)> = unit
            .iter()
            .enumerate()
            .filter(|(_, v)| **v != 0.0)
            .map(|(j, v)| (j, *v))
            .collect();
        let sparse = nonzero.len() * 4 < self.dimensions;
        let d = self.dimensions;

        // (slot, lower bound, upper bound, estimate)
        let mut bounds: Vec<(usize, f32, f32, f32)> = Vec::new();
        for (i, slot) in self.slots.iter().enumerate() {
            if filter.is_some_and(|f| !f.matches(&slot.metadata)) {
                continue;
            }
            if !slot.scale.is_finite() {
                bounds.push((i, f32::NEG_INFINITY, f32::INFINITY, f32::NEG_INFINITY));
                continue;
            }
            let codes = &self.codes[i * d..(i + 1) * d];
            let dot = if sparse {
                nonzero
                    .iter()
                    .map(|&(j, q)| q * f32::from(codes[j]))
                    .sum::<f32>()
            } else {
                dot_i8(&unit, codes)
            };
            let approx = slot.scale * dot;
            let err = slot.residual.min(l1 * slot.scale / 2.0) + SCORE_ROUNDING_MARGIN;
            bounds.push((i, approx - err, approx + err, approx));
        }
        if bounds.len() > k {
            let mut lowers: Vec<f32> = bounds.iter().map(|b| b.1).collect();
            let (_, kth, _) = lowers.select_nth_unstable_by(k - 1, |a, b| b.total_cmp(a));
            let threshold = *kth;
            bounds.retain(|b| b.2 >= threshold);
        }
        bounds.sort_by(|a, b| b.2.total_cmp(&a.2));
        bounds
            .into_iter()
            .map(|(i, _, upper, estimate)| Candidate {
                id: self.slots[i].id.clone(),
                upper,
                estimate,
            })
            .collect()
    }
}

/// `Σ q_j · codes_j` with eight independent accumulators, which lets the compiler keep several
/// lanes busy (and vectorise where SIMD is enabled) without reassociating one long sum.
fn dot_i8(q: &[f32], codes: &[i8]) -> f32 {
    const LANES: usize = 8;
    let mut acc = [0.0_f32; LANES];
    let qs = q.chunks_exact(LANES);
    let cs = codes.chunks_exact(LANES);
    let (q_rest, c_rest) = (qs.remainder(), cs.remainder());
    for (qc, cc) in qs.zip(cs) {
        for lane in 0..LANES {
            acc[lane] += qc[lane] * f32::from(cc[lane]);
        }
    }
    let mut sum: f32 = acc.iter().sum();
    for (a, c) in q_rest.iter().zip(c_rest) {
        sum += a * f32::from(*c);
    }
    sum
}

#[cfg(test)]
mod tests;
