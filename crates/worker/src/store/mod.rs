//! Storage adapters: the vector index implementations behind `portfolio_core`'s `VectorIndex`,
//! retrieval's reads (`d1_search`), R2, the ingest queue, and the metrics stores (D1's
//! `metric_points`, Analytics Engine) behind `portfolio_core::operations::metrics::MetricsSink`.
//!
//! Owns the choice of implementation from configuration (`VECTOR_INDEX`). Must never hold
//! logic the core can own: adapters translate calls, the core validates, batches and ranks.

pub mod analytics_engine;
pub mod d1;
pub mod d1_alerts;
pub mod d1_availability;
pub mod d1_companies;
pub mod d1_feedback;
pub mod d1_history;
pub mod d1_metrics;
pub mod d1_point_reader;
pub mod d1_reconcile;
pub mod d1_rollout;
mod d1_rows;
pub mod d1_search;
pub mod d1_vectors;
pub mod d1_watchdog;
pub mod metrics;
pub mod point_reader;
pub mod processor_storage;
pub mod queue;
pub mod r2;
pub mod vector_cache;
pub mod vectorize;

use crate::bindings;
use crate::config::ServiceConfig;
use d1_vectors::D1VectorIndex;
use portfolio_core::index::IndexKind;
use portfolio_core::index::{
    IndexInfo, MutationReceipt, VectorIndex, VectorIndexError, VectorMatch, VectorQuery,
    VectorRecord,
};
use vectorize::VectorizeIndex;
use worker::Env;

/// The Worker's clock (`Date.now()`; std's clocks panic on wasm).
#[derive(Debug, Clone, Copy, Default)]
pub struct WorkerClock;

impl portfolio_core::shared::storage::Clock for WorkerClock {
    fn now_ms(&self) -> u64 {
        worker::Date::now().as_millis()
    }
}

/// Structured log lines as JSON on the console (Workers Logs picks them up).
#[derive(Debug, Clone, Copy, Default)]
pub struct ConsoleLog;

impl portfolio_core::shared::storage::EventLog for ConsoleLog {
    fn log(&self, level: portfolio_core::shared::storage::Level, mut fields: serde_json::Value) {
        use portfolio_core::shared::storage::Level;
        let name = match level {
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        };
        if let Some(map) = fields.as_object_mut() {
            map.insert("level".into(), name.into());
        }
        match level {
            Level::Info => worker::console_log!("{fields}"),
            Level::Warn => worker::console_warn!("{fields}"),
            Level::Error => worker::console_error!("{fields}"),
        }
    }
}

/// The vector index the configuration selects.
#[derive(Debug)]
pub enum ConfiguredIndex {
    /// `VECTOR_INDEX=d1` (default): exact cosine over the `vector_index` table.
    D1(D1VectorIndex),
    /// `VECTOR_INDEX=vectorize`: the `VECTORIZE` binding.
    Vectorize(VectorizeIndex),
}

/// Builds the index `VECTOR_INDEX` names.
///
/// # Errors
/// `NotConfigured` for a missing binding.
pub fn vector_index_from_env(
    env: &Env,
    config: &ServiceConfig,
) -> Result<ConfiguredIndex, VectorIndexError> {
    let dimensions = config.dimensions as usize;
    match config.vector_index {
        IndexKind::D1 => {
            let db = env
                .d1(bindings::DB)
                .map_err(|e| VectorIndexError::NotConfigured {
                    reason: format!("D1 binding {}: {e}", bindings::DB),
                })?;
            Ok(ConfiguredIndex::D1(
                D1VectorIndex::new(db, dimensions).with_max_vectors(config.d1_index_max_vectors),
            ))
        }
        IndexKind::Vectorize => Ok(ConfiguredIndex::Vectorize(VectorizeIndex::from_env(
            env,
            bindings::VECTORIZE,
            dimensions,
        )?)),
    }
}

impl VectorIndex for ConfiguredIndex {
    fn implementation(&self) -> &'static str {
        match self {
            Self::D1(i) => i.implementation(),
            Self::Vectorize(i) => i.implementation(),
        }
    }

    async fn upsert(&self, records: &[VectorRecord]) -> Result<MutationReceipt, VectorIndexError> {
        match self {
            Self::D1(i) => i.upsert(records).await,
            Self::Vectorize(i) => i.upsert(records).await,
        }
    }

    async fn query(&self, query: &VectorQuery) -> Result<Vec<VectorMatch>, VectorIndexError> {
        match self {
            Self::D1(i) => i.query(query).await,
            Self::Vectorize(i) => i.query(query).await,
        }
    }

    async fn get_by_ids(&self, ids: &[String]) -> Result<Vec<VectorRecord>, VectorIndexError> {
        match self {
            Self::D1(i) => i.get_by_ids(ids).await,
            Self::Vectorize(i) => i.get_by_ids(ids).await,
        }
    }

    async fn delete_by_ids(&self, ids: &[String]) -> Result<MutationReceipt, VectorIndexError> {
        match self {
            Self::D1(i) => i.delete_by_ids(ids).await,
            Self::Vectorize(i) => i.delete_by_ids(ids).await,
        }
    }

    async fn describe(&self) -> Result<IndexInfo, VectorIndexError> {
        match self {
            Self::D1(i) => i.describe().await,
            Self::Vectorize(i) => i.describe().await,
        }
    }

    fn writes_land_later(&self) -> bool {
        match self {
            Self::D1(i) => i.writes_land_later(),
            Self::Vectorize(i) => i.writes_land_later(),
        }
    }

    async fn count_present(&self, ids: &[String]) -> Result<usize, VectorIndexError> {
        match self {
            Self::D1(i) => i.count_present(ids).await,
            Self::Vectorize(i) => i.count_present(ids).await,
        }
    }
}
