//! The reconciliation driver's types: [`ReconcilePorts`], the one trait naming the stores a
//! run works with (implemented by the Worker over D1, R2, the ingest queue and the configured
//! index, and by the native fakes), the [`Reconciler`] over it, and [`RunError`], how a page or
//! a run's start fails. Advancing a run (`run`) and doing one page (`page`) are each an
//! `impl Reconciler` of their own; both name these, so neither imports the other for them.

use super::store::{ReconcileStore, VectorCounting};
use super::{ReconcileError, ReconcileSettings};
use crate::index::{VectorIndex, VectorIndexError};
use crate::operations::metrics::MetricsSink;
use crate::shared::storage::{Clock, IngestQueue, ObjectStore, StoreError};
use thiserror::Error;

/// What a reconciliation run works with.
pub trait ReconcilePorts {
    /// The D1 side (documents, runs).
    type Store: ReconcileStore;
    /// The document bucket.
    type Objects: ObjectStore;
    /// The ingest queue (commands and continuations).
    type Queue: IngestQueue;
    /// The vector index (counted when `vector_counting` says so; swept always).
    type Index: VectorIndex;
    /// Time.
    type Clock: Clock;
    /// Data points: one per page recorded.
    type Metrics: MetricsSink;

    /// The D1 side.
    fn store(&self) -> &Self::Store;
    /// The document bucket.
    fn objects(&self) -> &Self::Objects;
    /// The ingest queue.
    fn queue(&self) -> &Self::Queue;
    /// The vector index.
    fn index(&self) -> &Self::Index;
    /// Time.
    fn clock(&self) -> &Self::Clock;
    /// Data points.
    fn metrics(&self) -> &Self::Metrics;
}

/// The reconciliation driver over its ports. `settings.page_size` is the
/// size of new runs; a running run keeps the size it was started with.
#[derive(Debug)]
pub struct Reconciler<P> {
    /// The stores.
    pub ports: P,
    /// Run settings.
    pub settings: ReconcileSettings,
    /// How vectors are counted.
    pub vector_counting: VectorCounting,
}

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
