//! The D1-exact index's query algorithm, apart from its SQL: how a sync of the isolate's cache
//! goes (what to load, when to drop the copy), which path a query takes from the cache's answer
//! (scan D1, answer from estimates, rerank candidates exactly, refuse past the budget), and the
//! exact ranking of stored rows that the scan and the rerank share.
//!
//! Owns those decisions so the Worker's adapters (`store/d1_vectors.rs`, `store/vector_cache.rs`)
//! only read rows and hand them here. Never performs I/O, never reads a clock.

use super::cache::{
    approximate_matches, rerank_batch, Candidate, ExactRerank, IndexChange, IndexState, SyncPlan,
    VectorCache,
};
use super::{
    cosine_with_norm, decode_f32_le_hex, norm, TopK, VectorIndexError, VectorMatch, VectorMetadata,
    VectorQuery,
};

/// How a sync of the cache ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Synced {
    /// The cache is up to date.
    Ready,
    /// Another request of this isolate is syncing.
    Busy,
    /// The index holds this many vectors, more than the budget: nothing is cached.
    OverBudget(u64),
}

impl VectorCache {
    /// Before taking the isolate's sync lock: `Ok(after)` when changes after `after` must be
    /// loaded, else how the sync ended. A copy the index outgrew is dropped; any other copy is
    /// left alone, since another request may be loading into it.
    ///
    /// # Errors
    /// `Err` carries the end of the sync when there is nothing to load.
    pub fn check_sync(&mut self, state: &IndexState) -> Result<u64, Synced> {
        self.sync_step(state, false)
    }

    /// Holding the sync lock, with `state` read again (another request may have synced while
    /// this one waited): as [`Self::check_sync`], and a copy too far behind (or of another
    /// database) is emptied before loading from `after`.
    ///
    /// # Errors
    /// `Err` carries the end of the sync when there is nothing to load.
    pub fn begin_sync(&mut self, state: &IndexState) -> Result<u64, Synced> {
        self.sync_step(state, true)
    }

    fn sync_step(&mut self, state: &IndexState, holding_lock: bool) -> Result<u64, Synced> {
        match self.plan_sync(state) {
            SyncPlan::UpToDate => Err(Synced::Ready),
            SyncPlan::TooLarge => {
                self.reset();
                Err(Synced::OverBudget(state.vector_count))
            }
            SyncPlan::Changes { after, reset } => {
                if reset && holding_lock {
                    self.reset();
                }
                Ok(after)
            }
        }
    }

    /// Applies one page of the change log; `false` when the copy outgrew its budget (it is then
    /// empty, and the sync ends [`Synced::OverBudget`]).
    pub fn apply_page(&mut self, changes: Vec<IndexChange>, state: &IndexState) -> bool {
        for change in changes {
            self.apply(change);
        }
        self.check_budget(state.vector_count)
    }
}

/// What a query gets from the cache.
#[derive(Debug, Clone, PartialEq)]
pub enum Candidates {
    /// The vectors that may be among its top k, highest bound first.
    Bounded(Vec<Candidate>),
    /// Another request is loading the cache: scan D1 (the index is within budget).
    Busy,
    /// The index holds this many vectors, more than the budget.
    OverBudget {
        /// Vectors in the index.
        vectors: u64,
    },
}

impl Candidates {
    /// The query's candidates once the sync ended as `synced`, pre-selected from `cache` when
    /// it is up to date.
    #[must_use]
    pub fn after_sync(synced: Synced, cache: &VectorCache, query: &VectorQuery) -> Self {
        match synced {
            Synced::Ready => {
                Self::Bounded(cache.preselect(&query.vector, query.filter.as_ref(), query.top_k))
            }
            Synced::Busy => Self::Busy,
            Synced::OverBudget(vectors) => Self::OverBudget { vectors },
        }
    }
}

/// The path one query takes.
#[derive(Debug)]
pub enum QueryPath {
    /// Score every stored row, page by page (another request of the isolate is loading the
    /// cache: the index is within budget, so the scan is bounded).
    Scan,
    /// The cache's estimates are the answer: a search's vector source accepts them, and no
    /// row is read.
    Approximate(Vec<VectorMatch>),
    /// Read the candidates' stored f32 vectors, highest bound first, a batch at a time, and
    /// rank them with [`ExactRanking`] until the k-th exact score beats every bound left.
    Rerank(ExactRerank),
}

/// The path for `query` given the cache's answer; `page_rows` is the rows one read returns.
///
/// # Errors
/// [`VectorIndexError::OverBudget`] when the index holds more than `max_vectors`.
pub fn plan_query(
    candidates: Candidates,
    query: &VectorQuery,
    max_vectors: u64,
    page_rows: usize,
) -> Result<QueryPath, VectorIndexError> {
    match candidates {
        Candidates::Bounded(candidates) if query.approximate && !query.return_metadata => Ok(
            QueryPath::Approximate(approximate_matches(candidates, query.top_k)),
        ),
        Candidates::Bounded(candidates) => Ok(QueryPath::Rerank(ExactRerank::new(
            candidates,
            rerank_batch(query.top_k, page_rows),
        ))),
        Candidates::Busy => Ok(QueryPath::Scan),
        Candidates::OverBudget { vectors } => Err(VectorIndexError::OverBudget {
            vectors,
            budget: max_vectors,
        }),
    }
}

/// The exact top k of stored rows for one query: the ranking the scan and the rerank share, so
/// scores and order agree whichever path a query took. Rows of other dimensions and rows the
/// filter rejects are passed over.
#[derive(Debug)]
pub struct ExactRanking<'q> {
    query: &'q VectorQuery,
    query_norm: f32,
    top: TopK<VectorMetadata>,
}

impl<'q> ExactRanking<'q> {
    /// An empty ranking for `query`.
    #[must_use]
    pub fn new(query: &'q VectorQuery) -> Self {
        Self {
            query,
            query_norm: norm(&query.vector),
            top: TopK::new(query.top_k),
        }
    }

    /// Scores one stored row (its f32 embedding as little-endian hex) and keeps it if it is
    /// among the k best so far.
    ///
    /// # Errors
    /// [`VectorIndexError::CorruptStoredVector`] when the embedding does not decode.
    pub fn offer(
        &mut self,
        id: String,
        dimensions: usize,
        metadata: VectorMetadata,
        embedding_hex: &str,
    ) -> Result<(), VectorIndexError> {
        if dimensions != self.query.vector.len()
            || self
                .query
                .filter
                .as_ref()
                .is_some_and(|f| !f.matches(&metadata))
        {
            return Ok(());
        }
        let values = decode_f32_le_hex(&id, embedding_hex, dimensions)?;
        let score = cosine_with_norm(&self.query.vector, self.query_norm, &values);
        if self.top.would_keep(score, &id) {
            self.top.push(id, score, metadata);
        }
        Ok(())
    }

    /// The k best so far (a rerank asks it whether it may stop).
    #[must_use]
    pub fn top(&self) -> &TopK<VectorMetadata> {
        &self.top
    }

    /// The matches, best first, with metadata when the query asked for it.
    #[must_use]
    pub fn into_matches(self) -> Vec<VectorMatch> {
        let return_metadata = self.query.return_metadata;
        self.top
            .into_sorted()
            .into_iter()
            .map(|(id, score, metadata)| VectorMatch {
                id,
                score,
                metadata: return_metadata.then_some(metadata),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests;
