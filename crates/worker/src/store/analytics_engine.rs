//! Workers Analytics Engine, the deployed environments' metrics store: one
//! `writeDataPoint` per point on the `METRICS` dataset binding. The call is
//! synchronous and fire-and-forget (the runtime sends points after the
//! invocation), so it adds no wait to a request.
//!
//! Layout (docs/operations.md, "Metrics"): index1 = kind (Analytics Engine samples per
//! index); blob1–5 = kind, name, outcome, detail, version (the Worker
//! version id); double1–7 = duration_ms, status, items, tokens, retries,
//! cost_usd, enqueued.

use portfolio_core::operations::metrics::DataPoint;
use worker::{AnalyticsEngineDataPointBuilder, AnalyticsEngineDataset, Env};

/// Name of the Analytics Engine dataset binding (`analytics_engine_datasets`).
pub const METRICS_BINDING: &str = "METRICS";

/// Analytics Engine's limit on a point's blobs together. Source: Workers
/// Analytics Engine limits ("The total size of all blobs in a request must
/// not exceed 16 KB").
const MAX_BLOBS_BYTES: usize = 16 * 1_024;
/// Longest blob written: the five of a point stay within `MAX_BLOBS_BYTES`.
const MAX_BLOB_BYTES: usize = MAX_BLOBS_BYTES / 5;

/// Most points one invocation may write. Source: Workers Analytics Engine
/// limits ("a maximum of 250 data points per Worker invocation").
pub const MAX_POINTS_PER_INVOCATION: usize = 250;

/// The `METRICS` dataset.
#[derive(Debug, Clone)]
pub struct AnalyticsEngine {
    dataset: AnalyticsEngineDataset,
}

fn clipped(text: &str) -> &str {
    if text.len() <= MAX_BLOB_BYTES {
        return text;
    }
    let mut end = MAX_BLOB_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

impl AnalyticsEngine {
    /// The dataset bound as `METRICS`, `None` when the binding is absent.
    pub fn from_env(env: &Env) -> Option<Self> {
        env.analytics_engine(METRICS_BINDING)
            .ok()
            .map(|dataset| Self { dataset })
    }

    /// Writes one point (synchronously; the runtime ships it later).
    ///
    /// # Errors
    /// When the runtime refuses the point.
    pub fn write(&self, point: &DataPoint) -> worker::Result<()> {
        let [kind, name, outcome, detail, version] = point.blobs();
        AnalyticsEngineDataPointBuilder::new()
            .indexes([kind])
            .blobs([
                kind,
                clipped(name),
                clipped(outcome),
                clipped(detail),
                clipped(version),
            ])
            .doubles(point.doubles())
            .write_to(&self.dataset)
    }
}
