//! The composition root: once per invocation (fetch, scheduled) it loads the
//! typed configuration and the metrics sink, and it is the one place that
//! turns the platform environment into adapters (D1 stores, R2, the queue,
//! the vector index, providers, Durable Object stubs, rate limiters).
//!
//! Handlers receive a `&Root` and never touch `Env`, `config::load` or a
//! binding name. Must never decide anything: what to build follows from the
//! configuration, what to do with it is the handlers' and core's.

use crate::bindings;
use crate::config::{self, ConfigError, ServiceConfig};
use crate::error::ApiError;
use crate::providers::{
    metered_chat, metered_embedder, MeteredChat, MeteredEmbedder, ProviderSetupError,
    ServiceReranker,
};
use crate::store::d1::D1Documents;
use crate::store::d1_alerts::D1Alerts;
use crate::store::d1_availability::D1Availability;
use crate::store::d1_companies::D1Companies;
use crate::store::d1_feedback::D1Feedback;
use crate::store::d1_history::D1History;
use crate::store::d1_metrics::D1Metrics;
use crate::store::d1_rollout::D1Rollout;
use crate::store::d1_search::D1Search;
use crate::store::metrics::Metrics;
use crate::store::point_reader::PointReader;
use crate::store::queue::QueueProducer;
use crate::store::r2::R2Documents;
use crate::store::{vector_index_from_env, ConfiguredIndex};
use portfolio_core::api::routes::Limiter;
use portfolio_core::index::VectorIndexError;
use portfolio_core::operations::deployment::WorkerVersion;
use portfolio_core::operations::metrics::{BufferPolicy, MetricsSinkKind};
use portfolio_core::shared::storage::StoreError;
use wasm_bindgen::JsValue;
use worker::{D1Database, Env, RateLimiter, Stub};

/// Name of the secret (or var, locally) holding the admin token.
pub const ADMIN_TOKEN: &str = "ADMIN_TOKEN";

/// One invocation's configuration, metrics and adapter factory (a clone
/// shares them: work after the response, through `waitUntil`).
#[derive(Clone)]
pub struct Root {
    env: Env,
    config: Result<ServiceConfig, ConfigError>,
    metrics: Metrics,
}

impl Root {
    /// Loads the configuration and opens the metrics sink it names (D1 when
    /// the configuration is invalid, so the failure is still counted).
    pub fn new(env: Env) -> Self {
        let config = config::load(&env);
        let (sink, policy) = config
            .as_ref()
            .map_or((MetricsSinkKind::D1, BufferPolicy::default()), |c| {
                (c.metrics.sink, c.metrics.buffer)
            });
        let metrics = Metrics::from_env(&env, sink, policy);
        Self {
            env,
            config,
            metrics,
        }
    }

    /// The configuration as parsed (health and admin report its problems).
    pub fn config(&self) -> &Result<ServiceConfig, ConfigError> {
        &self.config
    }

    /// This invocation's data points.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The raw environment, for the flows whose adapters are still built
    /// inside them (ingest, reconciliation, CORS).
    pub fn env(&self) -> &Env {
        &self.env
    }

    /// A secret or var as a plain string (unset: `None`; blank: `Some("")`).
    pub fn secret(&self, name: &str) -> Option<String> {
        js_sys::Reflect::get(self.env.as_ref(), &JsValue::from_str(name))
            .ok()
            .and_then(|v| v.as_string())
    }

    /// The configured admin token, if any.
    pub fn admin_token(&self) -> Option<String> {
        self.secret(ADMIN_TOKEN)
    }

    /// A var the configuration does not own, `None` when unset or blank.
    pub fn var(&self, name: &str) -> Option<String> {
        config::var(&self.env, name)
    }

    /// Whether a binding is present. Checked on the raw environment object
    /// because `Env::get_binding` checks JS constructor names, which differ
    /// between real bindings and local stand-ins.
    pub fn binding_present(&self, name: &str) -> bool {
        js_sys::Reflect::get(self.env.as_ref(), &JsValue::from_str(name))
            .map(|v| !v.is_undefined() && !v.is_null())
            .unwrap_or(false)
    }

    /// The Worker version answering.
    pub fn version(&self) -> WorkerVersion {
        crate::version::from_env(&self.env)
    }

    /// The D1 database.
    pub fn db(&self) -> Result<D1Database, ApiError> {
        Ok(self.env.d1(bindings::DB)?)
    }

    /// Documents, chunks and their status rows.
    pub fn documents(&self) -> Result<D1Documents, ApiError> {
        Ok(D1Documents::from_env(&self.env)?)
    }

    /// Run history and dead letters.
    pub fn history(&self) -> Result<D1History, ApiError> {
        Ok(D1History::from_env(&self.env)?)
    }

    /// The public catalog and retrieval's keyword source.
    pub fn search(&self) -> Result<D1Search, ApiError> {
        Ok(D1Search::new(self.db()?))
    }

    /// Companies and legacy ids.
    pub fn companies(&self) -> Result<D1Companies, ApiError> {
        Ok(D1Companies::new(self.db()?))
    }

    /// Alerts.
    pub fn alerts(&self) -> Result<D1Alerts, ApiError> {
        Ok(D1Alerts::new(self.db()?))
    }

    /// Availability's per-day counts.
    pub fn availability(&self) -> Result<D1Availability, ApiError> {
        Ok(D1Availability::new(self.db()?))
    }

    /// Readers' ratings.
    pub fn feedback(&self) -> Result<D1Feedback, ApiError> {
        Ok(D1Feedback::new(self.db()?))
    }

    /// Where the metrics routes, availability and the alerts read the points
    /// (`METRICS_SINK`).
    pub fn point_reader(&self, config: &ServiceConfig) -> Result<PointReader, ApiError> {
        Ok(PointReader::from_env(&self.env, config)?)
    }

    /// Stored data points.
    pub fn metric_points(&self) -> Result<D1Metrics, ApiError> {
        Ok(D1Metrics::new(self.db()?))
    }

    /// The rollout setting, shadow comparisons and failover counts.
    pub fn rollout(&self) -> Result<D1Rollout, ApiError> {
        Ok(D1Rollout::new(self.db()?))
    }

    /// The R2 bucket of the documents.
    pub fn objects(&self) -> Result<R2Documents, ApiError> {
        Ok(R2Documents::from_env(&self.env)?)
    }

    /// The ingest queue's producer.
    pub fn ingest_queue(&self) -> Result<QueueProducer, StoreError> {
        QueueProducer::from_env(&self.env, bindings::INGEST_QUEUE)
    }

    /// The configured vector index.
    pub fn vector_index(
        &self,
        config: &ServiceConfig,
    ) -> Result<ConfiguredIndex, VectorIndexError> {
        vector_index_from_env(&self.env, config)
    }

    /// The configured embedder, metered.
    pub fn embedder(&self, config: &ServiceConfig) -> Result<MeteredEmbedder, ProviderSetupError> {
        metered_embedder(&self.env, config, &self.metrics)
    }

    /// The configured chat model, metered.
    pub fn chat(&self, config: &ServiceConfig) -> Result<MeteredChat, ProviderSetupError> {
        metered_chat(&self.env, config, &self.metrics)
    }

    /// The configured reranker (`None`: `RERANKER=none`).
    pub fn reranker(
        &self,
        config: &ServiceConfig,
    ) -> Result<Option<ServiceReranker>, ProviderSetupError> {
        ServiceReranker::from_env(&self.env, config)
    }

    /// The processor object of document `key`.
    pub fn processor(&self, key: &str) -> Result<Stub, ApiError> {
        Ok(self
            .env
            .durable_object(bindings::DOCUMENT_PROCESSOR)?
            .id_from_name(key)?
            .get_stub()?)
    }

    /// A route's rate limiter; `None` when it is not bound (no limit).
    pub fn rate_limiter(&self, limiter: Limiter) -> Option<RateLimiter> {
        self.env.rate_limiter(bindings::rate_limiter(limiter)).ok()
    }
}
