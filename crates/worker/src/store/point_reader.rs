//! Which metrics reader this invocation uses, from `METRICS_SINK`: the local
//! `metric_points` table, or Analytics Engine's SQL API (the token from the
//! `ANALYTICS_ENGINE_API_TOKEN` secret, fetched with the Worker's `fetch`).
//!
//! Chooses and delegates; what is read and how it is folded is the core's
//! (`portfolio_core::operations::metrics::{MetricsReader, analytics_sql}`).

use super::d1_point_reader::D1PointReader;
use crate::bindings;
use crate::providers::FetchTransport;
use portfolio_core::config::ServiceConfig;
use portfolio_core::operations::alerts::{ProviderCall, RequestWindow};
use portfolio_core::operations::availability::{BurnWindows, RequestCount};
use portfolio_core::operations::metrics::{
    AnalyticsSqlEndpoint, AnalyticsSqlReader, ComparisonWindow, MetricsReadError, MetricsReader,
    MetricsReport, MetricsWindow, Read, VersionReport, ANALYTICS_ENGINE_API_TOKEN,
};
use portfolio_core::shared::storage::StoreError;
use wasm_bindgen::JsValue;
use worker::Env;

/// Time limit of one SQL API statement. Not a platform limit: an admin
/// route or a cron run should fail with a clear error rather than hang.
const ANALYTICS_SQL_TIMEOUT_MS: u64 = 10_000;

/// The configured reader.
pub enum PointReader {
    /// `metric_points` in D1.
    D1(D1PointReader),
    /// Analytics Engine through its SQL API.
    AnalyticsEngine(AnalyticsSqlReader<FetchTransport>),
    /// None could be opened: every read answers this error (the alerts
    /// still judge what does not come from the points).
    Unavailable(MetricsReadError),
}

impl PointReader {
    /// The reader `config` names.
    ///
    /// # Errors
    /// `NotConfigured` naming the var or secret Analytics Engine's reader
    /// lacks; a D1 binding that is missing.
    pub fn from_env(env: &Env, config: &ServiceConfig) -> Result<Self, MetricsReadError> {
        if !config.metrics.sink.reads_analytics_engine() {
            let db = env
                .d1(bindings::DB)
                .map_err(|e| MetricsReadError::Store(StoreError::permanent("D1 binding", e)))?;
            return Ok(Self::D1(D1PointReader::new(db, config.metrics.max_rows)));
        }
        // A secret is a plain string on the environment object.
        let token =
            js_sys::Reflect::get(env.as_ref(), &JsValue::from_str(ANALYTICS_ENGINE_API_TOKEN))
                .ok()
                .and_then(|v| v.as_string());
        Ok(Self::AnalyticsEngine(AnalyticsSqlReader::new(
            FetchTransport::new(ANALYTICS_SQL_TIMEOUT_MS),
            AnalyticsSqlEndpoint::from_settings(&config.metrics.analytics_sql, token.as_deref())?,
        )))
    }

    /// `d1` or `analytics-engine`: where the figures came from.
    pub fn source(&self) -> &'static str {
        match self {
            Self::D1(_) => "d1",
            Self::AnalyticsEngine(_) | Self::Unavailable(_) => "analytics-engine",
        }
    }
}

impl MetricsReader for PointReader {
    async fn report(
        &self,
        window: MetricsWindow,
        now_ms: u64,
    ) -> Result<Read<MetricsReport>, MetricsReadError> {
        match self {
            Self::D1(r) => r.report(window, now_ms).await,
            Self::AnalyticsEngine(r) => r.report(window, now_ms).await,
            Self::Unavailable(e) => Err(e.clone()),
        }
    }

    async fn versions(
        &self,
        window: ComparisonWindow,
        now_ms: u64,
    ) -> Result<Read<VersionReport>, MetricsReadError> {
        match self {
            Self::D1(r) => r.versions(window, now_ms).await,
            Self::AnalyticsEngine(r) => r.versions(window, now_ms).await,
            Self::Unavailable(e) => Err(e.clone()),
        }
    }

    async fn requests(
        &self,
        since_ms: u64,
        now_ms: u64,
    ) -> Result<RequestWindow, MetricsReadError> {
        match self {
            Self::D1(r) => r.requests(since_ms, now_ms).await,
            Self::AnalyticsEngine(r) => r.requests(since_ms, now_ms).await,
            Self::Unavailable(e) => Err(e.clone()),
        }
    }

    async fn latest_provider_calls(&self) -> Result<Vec<ProviderCall>, MetricsReadError> {
        match self {
            Self::D1(r) => r.latest_provider_calls().await,
            Self::AnalyticsEngine(r) => r.latest_provider_calls().await,
            Self::Unavailable(e) => Err(e.clone()),
        }
    }

    async fn burn_windows(&self, now_ms: u64) -> Result<[BurnWindows; 2], MetricsReadError> {
        match self {
            Self::D1(r) => r.burn_windows(now_ms).await,
            Self::AnalyticsEngine(r) => r.burn_windows(now_ms).await,
            Self::Unavailable(e) => Err(e.clone()),
        }
    }

    async fn public_days(
        &self,
        since_ms: u64,
        now_ms: u64,
    ) -> Result<Vec<(String, RequestCount)>, MetricsReadError> {
        match self {
            Self::D1(r) => r.public_days(since_ms, now_ms).await,
            Self::AnalyticsEngine(r) => r.public_days(since_ms, now_ms).await,
            Self::Unavailable(e) => Err(e.clone()),
        }
    }
}
