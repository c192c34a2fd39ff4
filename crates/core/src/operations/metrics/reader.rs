//! The port the metrics' readers go through: what `/admin/metrics`,
//! `/admin/metrics/versions`, availability and the alert conditions read
//! from the data points, whichever store holds them (the local D1 table, or
//! Analytics Engine through its SQL API: [`super::analytics_sql`]).
//!
//! Names what is read, never how: each adapter decides how to count and
//! rank in its own store, and must give the same answer for the same points.

use super::report::MetricsReport;
use super::versions::{ComparisonWindow, VersionReport};
use super::MetricsWindow;
use crate::operations::alerts::{ProviderCall, RequestWindow};
use crate::operations::availability::{BurnWindows, RequestCount};
use crate::shared::storage::StoreError;
use thiserror::Error;

/// A report and how many rows the store handed over to make it.
pub type Read<T> = (T, u64);

/// Where the data points are read from.
#[allow(async_fn_in_trait)]
pub trait MetricsReader {
    /// `GET /admin/metrics`' report of `window` ending at `now_ms` (without
    /// the D1 state counts, which the caller adds).
    async fn report(
        &self,
        window: MetricsWindow,
        now_ms: u64,
    ) -> Result<Read<MetricsReport>, MetricsReadError>;

    /// `GET /admin/metrics/versions`: public requests per Worker version.
    async fn versions(
        &self,
        window: ComparisonWindow,
        now_ms: u64,
    ) -> Result<Read<VersionReport>, MetricsReadError>;

    /// Requests since `since_ms`, admin routes left out (an operator's call
    /// is not the service's latency): the alerts' error-rate and p95 window.
    async fn requests(&self, since_ms: u64, now_ms: u64)
        -> Result<RequestWindow, MetricsReadError>;

    /// Each provider's latest call.
    async fn latest_provider_calls(&self) -> Result<Vec<ProviderCall>, MetricsReadError>;

    /// Public requests over each fast-burn rule's windows ending at `now_ms`
    /// (`crate::operations::availability::FAST_BURN`, same order).
    async fn burn_windows(&self, now_ms: u64) -> Result<[BurnWindows; 2], MetricsReadError>;

    /// Public requests per UTC day (`YYYY-MM-DD`) from `since_ms` to `now_ms`.
    async fn public_days(
        &self,
        since_ms: u64,
        now_ms: u64,
    ) -> Result<Vec<(String, RequestCount)>, MetricsReadError>;
}

/// Why the points could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MetricsReadError {
    /// The reader lacks a setting or secret (named, never its value).
    #[error("metrics are read from Analytics Engine (METRICS_SINK=analytics-engine) but {missing} is not set")]
    NotConfigured {
        /// The var or secret to set.
        missing: &'static str,
    },
    /// The SQL API refused the token.
    #[error("the Analytics Engine SQL API refused ANALYTICS_ENGINE_API_TOKEN (HTTP {status}); it needs the permission Account Analytics: Read on this account")]
    Unauthorized {
        /// 401 or 403.
        status: u16,
    },
    /// The SQL API answered with an error.
    #[error("the Analytics Engine SQL API answered HTTP {status}: {message}")]
    Rejected {
        /// Its status.
        status: u16,
        /// What it said (at most 300 characters).
        message: String,
    },
    /// The SQL API could not be reached or did not answer in time.
    #[error("the Analytics Engine SQL API could not be reached: {0}")]
    Unreachable(String),
    /// The answer was not the `FORMAT JSON` body asked for.
    #[error("the Analytics Engine SQL API answered something unreadable: {0}")]
    Malformed(String),
    /// The local store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl MetricsReadError {
    /// Stable error code for the `{ "error": { "code" } }` body.
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotConfigured { .. } => "metrics_store_not_configured",
            Self::Unauthorized { .. } => "metrics_store_unauthorized",
            Self::Rejected { .. } => "metrics_store_rejected",
            Self::Unreachable(_) => "metrics_store_unreachable",
            Self::Malformed(_) => "metrics_store_malformed",
            Self::Store(_) => "internal",
        }
    }

    /// The HTTP status an admin route answers with: 503 while the service's
    /// own setup is at fault or the store is away (an operator can act, or
    /// wait), 502 when the store answered wrongly, 500 for the local store.
    #[must_use]
    pub fn http_status(&self) -> u16 {
        match self {
            Self::NotConfigured { .. } | Self::Unauthorized { .. } | Self::Unreachable(_) => 503,
            Self::Rejected { .. } | Self::Malformed(_) => 502,
            Self::Store(_) => 500,
        }
    }
}
