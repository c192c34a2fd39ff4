//! The reconciliation driver's types: [`Reconciler`], the stores it works
//! over, and [`RunError`], how a page or a run's start fails. Advancing a run
//! (`run`) and doing one page (`page`) are each an `impl Reconciler` of their
//! own; both name these, so neither imports the other for them.

use super::store::VectorCounting;
use super::{ReconcileError, ReconcileSettings};
use crate::index::VectorIndexError;
use crate::shared::storage::StoreError;
use thiserror::Error;

/// Why a page (or a run's start) failed.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum RunError {
    /// A store call failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The vector index failed while counting.
    #[error("vector index: {0}")]
    Index(#[from] VectorIndexError),
    /// The page or the run row cannot be judged.
    #[error(transparent)]
    Rules(#[from] ReconcileError),
}

/// The reconciliation driver over its stores. `settings.page_size` is the
/// size of new runs; a running run keeps the size it was started with.
#[derive(Debug)]
pub struct Reconciler<S, O, Q, V, C, M> {
    /// The D1 side.
    pub store: S,
    /// The document bucket.
    pub objects: O,
    /// The ingest queue (commands and continuations).
    pub queue: Q,
    /// The vector index (counted when `vector_counting` says so; swept always).
    pub index: V,
    /// Time.
    pub clock: C,
    /// Run settings.
    pub settings: ReconcileSettings,
    /// How vectors are counted.
    pub vector_counting: VectorCounting,
    /// Data points: one per page recorded.
    pub metrics: M,
}
