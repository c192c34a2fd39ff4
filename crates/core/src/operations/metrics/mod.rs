//! Metrics: the data points the service records (one per request, ingestion
//! step, run, reconciliation page and provider call), where they go (a
//! [`MetricsSink`] the Worker implements over Analytics Engine and D1), and
//! what `GET /admin/metrics` makes of them (percentiles, error rates, rates
//! over a window) and `GET /admin/metrics/versions` (the same per Worker
//! version, for a gradual deployment).
//!
//! Pure: never writes a point anywhere itself, never reads a clock. Recording
//! a point can never fail or block the caller: sinks buffer or drop.

pub mod analytics_sql;
mod metered;
mod point;
mod reader;
mod report;
mod route;
mod settings;
mod versions;

pub use analytics_sql::{AnalyticsSqlEndpoint, AnalyticsSqlReader, ANALYTICS_ENGINE_API_TOKEN};
pub use metered::{CostPer1k, Metered};
pub use point::{DataPoint, MetricKind, StepOutcome};
pub use reader::{MetricsReadError, MetricsReader, Read};
pub use report::{
    nearest_rank, percentile, DocumentCounts, InFlightDocument, IngestionReport, MetricsReport,
    MetricsSummary, MetricsWindow, ProviderReport, QueueCounts, ReconcileReport, RequestReport,
    RouteReport, StepReport, WindowError,
};
pub use route::{is_public_route, route_label};
pub use settings::{
    AnalyticsSqlSettings, BufferPolicy, MetricsSettings, MetricsSinkKind,
    DEFAULT_ANALYTICS_SQL_BASE_URL, DEFAULT_BUFFER_POINTS, DEFAULT_BUFFER_SECONDS,
};
pub use versions::{
    ComparisonWindow, ComparisonWindowError, VersionComparison, VersionReport, VersionStats,
    DEFAULT_COMPARISON_WINDOW_MS, MAX_COMPARISON_WINDOW_MS,
};

use std::cell::RefCell;
use std::rc::Rc;

/// Where data points go. Recording never fails and never waits: an adapter
/// that cannot write logs the problem and drops the point.
pub trait MetricsSink {
    /// Records one data point.
    fn record(&self, point: DataPoint);
}

impl<T: MetricsSink + ?Sized> MetricsSink for &T {
    fn record(&self, point: DataPoint) {
        (**self).record(point);
    }
}

impl<T: MetricsSink + ?Sized> MetricsSink for Rc<T> {
    fn record(&self, point: DataPoint) {
        (**self).record(point);
    }
}

/// Drops every point (drivers whose caller does not measure).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoMetrics;

impl MetricsSink for NoMetrics {
    fn record(&self, _point: DataPoint) {}
}

/// Keeps points in memory until taken: the tests' recorder (the Worker's
/// D1 sink buffers per isolate, `crates/worker/src/store/metrics.rs`).
#[derive(Debug, Default)]
pub struct MetricsBuffer {
    points: RefCell<Vec<DataPoint>>,
}

impl MetricsBuffer {
    /// Takes every point recorded so far, leaving the buffer empty.
    pub fn take(&self) -> Vec<DataPoint> {
        std::mem::take(&mut *self.points.borrow_mut())
    }

    /// A copy of the points recorded so far.
    #[must_use]
    pub fn snapshot(&self) -> Vec<DataPoint> {
        self.points.borrow().clone()
    }
}

impl MetricsSink for MetricsBuffer {
    fn record(&self, point: DataPoint) {
        self.points.borrow_mut().push(point);
    }
}
