//! The metrics sink of one invocation (a request, a queue batch, a cron run,
//! a Durable Object call): every point goes to Analytics Engine at once
//! (`writeDataPoint` is synchronous and fire-and-forget) and/or into a buffer
//! that one D1 batch writes after the response, through `waitUntil`.
//!
//! Recording never fails and never waits: a write that fails is logged and
//! the point dropped. `METRICS_SINK` chooses the stores. Every point is
//! labelled with the Worker version recording it (`version_metadata`).
//!
//! Each invocation writes its own points. Coalescing the writes of several
//! requests in one isolate-wide batch was tried and dropped: awaiting a write
//! started by another request makes the runtime cancel the waiting request
//! ("a promise was resolved … from a different request context", then "the
//! Workers runtime canceled this request … hung"), seen under `wrangler dev`.

use super::analytics_engine::{AnalyticsEngine, MAX_POINTS_PER_INVOCATION};
use super::d1_metrics::D1Metrics;
use super::ConsoleLog;
use crate::bindings;
use portfolio_core::operations::metrics::MetricsSinkKind;
use portfolio_core::operations::metrics::{DataPoint, MetricsBuffer, MetricsSink};
use portfolio_core::shared::storage::{EventLog, Level};
use serde_json::json;
use std::cell::Cell;
use std::future::Future;
use std::rc::Rc;
use worker::Env;

struct Inner {
    buffer: MetricsBuffer,
    d1: Option<D1Metrics>,
    analytics: Option<AnalyticsEngine>,
    written: Cell<usize>,
    sink: MetricsSinkKind,
    /// The version label of every point (`""` when unknown).
    version: String,
}

/// A cheap handle (clone it into whatever records), one per invocation.
#[derive(Clone)]
pub struct Metrics(Rc<Inner>);

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Metrics({})", self.0.sink.as_str())
    }
}

impl Metrics {
    /// The sink `sink` names over this invocation's bindings. A binding the
    /// sink needs but the environment lacks is reported when points arrive
    /// (`/api/health` names it too), never as an error here.
    pub fn from_env(env: &Env, sink: MetricsSinkKind) -> Self {
        let d1 = if sink.writes_d1() {
            env.d1(bindings::DB).ok().map(D1Metrics::new)
        } else {
            None
        };
        let analytics = if sink.writes_analytics_engine() {
            AnalyticsEngine::from_env(env)
        } else {
            None
        };
        Self(Rc::new(Inner {
            buffer: MetricsBuffer::default(),
            d1,
            analytics,
            written: Cell::new(0),
            sink,
            version: crate::version::from_env(env).metric_label().to_owned(),
        }))
    }

    /// Writes the buffered points to D1 (one batch), logging a failure.
    pub async fn flush(&self) {
        let points = self.0.buffer.take();
        if points.is_empty() {
            return;
        }
        let Some(d1) = &self.0.d1 else {
            return;
        };
        if let Err(e) = d1.write(&points).await {
            ConsoleLog.log(
                Level::Warn,
                json!({ "event": "metrics_write_failed", "store": "d1", "points": points.len(), "error": e.to_string() }),
            );
        }
    }

    /// The flush as a `'static` future, for `waitUntil`.
    pub fn flush_later(&self) -> impl Future<Output = ()> + 'static {
        let metrics = self.clone();
        async move { metrics.flush().await }
    }

    fn write_analytics(&self, point: &DataPoint) {
        if !self.0.sink.writes_analytics_engine() {
            return;
        }
        let Some(dataset) = &self.0.analytics else {
            if self.0.written.replace(self.0.written.get() + 1) == 0 {
                ConsoleLog.log(
                    Level::Warn,
                    json!({ "event": "metrics_write_failed", "store": "analytics-engine",
                            "error": "METRICS_SINK writes to Analytics Engine but the METRICS binding is missing" }),
                );
            }
            return;
        };
        let written = self.0.written.get();
        if written >= MAX_POINTS_PER_INVOCATION {
            if written == MAX_POINTS_PER_INVOCATION {
                ConsoleLog.log(
                    Level::Warn,
                    json!({ "event": "metrics_points_dropped", "store": "analytics-engine",
                            "limit": MAX_POINTS_PER_INVOCATION }),
                );
            }
            self.0.written.set(written + 1);
            return;
        }
        self.0.written.set(written + 1);
        if let Err(e) = dataset.write(point) {
            ConsoleLog.log(
                Level::Warn,
                json!({ "event": "metrics_write_failed", "store": "analytics-engine", "error": e.to_string() }),
            );
        }
    }
}

impl MetricsSink for Metrics {
    fn record(&self, point: DataPoint) {
        let point = point.with_version(&self.0.version);
        self.write_analytics(&point);
        if self.0.d1.is_some() {
            self.0.buffer.record(point);
        }
    }
}
