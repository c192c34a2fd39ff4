//! The metrics sink of one invocation (a request, a queue batch, a cron run,
//! a Durable Object call): every point goes to Analytics Engine at once
//! (`writeDataPoint` is synchronous and fire-and-forget) and/or into a buffer
//! that one D1 batch writes after the response, through `waitUntil`.
//!
//! Recording never fails and never waits: a write that fails is logged and
//! the point dropped. `METRICS_SINK` chooses the stores. Every point is
//! labelled with the Worker version recording it (`version_metadata`).
//!
//! Points bound for D1 wait in one buffer per isolate, not per invocation:
//! a request adds no D1 write of its own (D1 runs one query at a time, so a
//! write per request would queue in front of the searches). After its
//! answer, the invocation that finds the buffer due (`BufferPolicy`: full, or
//! its oldest point old enough) takes every point out of it and writes them
//! in one batch through its *own* `waitUntil`. No invocation ever awaits a
//! write another started: that is what made the runtime cancel requests
//! when a shared batch was awaited across requests ("a promise was resolved
//! … from a different request context", then "the Workers runtime canceled
//! this request … hung", seen under `wrangler dev`). The metrics readers
//! (`/admin/metrics`, availability, the cron) take and write the buffer
//! themselves before reading, so they see every point of their isolate.
//!
//! What can be lost: points still waiting when the runtime evicts the
//! isolate (at most `METRICS_BUFFER_POINTS` points, or the last
//! `METRICS_BUFFER_SECONDS` of a quiet isolate: a due buffer is only written
//! by the next invocation to arrive), and a batch whose write fails (logged).

use super::analytics_engine::{AnalyticsEngine, MAX_POINTS_PER_INVOCATION};
use super::d1_metrics::D1Metrics;
use super::ConsoleLog;
use super::WorkerClock;
use crate::bindings;
use portfolio_core::operations::metrics::{BufferPolicy, MetricsSinkKind};
use portfolio_core::operations::metrics::{DataPoint, MetricsSink};
use portfolio_core::shared::storage::{Clock, EventLog, Level};
use serde_json::json;
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::rc::Rc;
use worker::Env;

/// The isolate's points bound for D1, and when the oldest was recorded.
#[derive(Default)]
struct IsolateBuffer {
    points: Vec<DataPoint>,
    oldest_at_ms: Option<u64>,
}

thread_local! {
    // A Worker isolate runs one thread; every invocation it serves shares this.
    static PENDING: RefCell<IsolateBuffer> = RefCell::new(IsolateBuffer::default());
}

fn buffer(point: DataPoint, now_ms: u64) {
    PENDING.with(|pending| {
        let mut pending = pending.borrow_mut();
        pending.oldest_at_ms.get_or_insert(now_ms);
        pending.points.push(point);
    });
}

/// Takes every waiting point when `policy` says a write is due (always with
/// `None`), leaving the buffer empty; nothing otherwise.
fn take_if_due(policy: Option<&BufferPolicy>, now_ms: u64) -> Vec<DataPoint> {
    PENDING.with(|pending| {
        let mut pending = pending.borrow_mut();
        let due = policy.is_none_or(|p| p.due(pending.points.len(), pending.oldest_at_ms, now_ms));
        if !due {
            return Vec::new();
        }
        pending.oldest_at_ms = None;
        std::mem::take(&mut pending.points)
    })
}

struct Inner {
    policy: BufferPolicy,
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
    pub fn from_env(env: &Env, sink: MetricsSinkKind, policy: BufferPolicy) -> Self {
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
            policy,
            d1,
            analytics,
            written: Cell::new(0),
            sink,
            version: crate::version::from_env(env).metric_label().to_owned(),
        }))
    }

    /// Writes every point waiting in the isolate to D1 now (one batch),
    /// logging a failure: what a reader does before it reads.
    pub async fn flush(&self) {
        self.write(take_if_due(None, WorkerClock.now_ms())).await;
    }

    async fn write(&self, points: Vec<DataPoint>) {
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

    /// For this invocation's `waitUntil`, after its answer: the isolate's
    /// points if a write is due (taken now, so no other invocation writes or
    /// waits for them), else nothing.
    pub fn flush_later(&self) -> impl Future<Output = ()> + 'static {
        let metrics = self.clone();
        let points = if self.0.d1.is_some() {
            take_if_due(Some(&self.0.policy), WorkerClock.now_ms())
        } else {
            Vec::new()
        };
        async move { metrics.write(points).await }
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
            buffer(point, WorkerClock.now_ms());
        }
    }
}
