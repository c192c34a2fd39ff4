//! The one shape every data point has, and the constructors that fill it for
//! each kind. The same columns go to Analytics Engine (blobs and doubles, in
//! the order of [`DataPoint::blobs`] and [`DataPoint::doubles`]) and to the
//! local `metric_points` table, so one query reads the same in both. Every
//! point carries the Worker version that recorded it, so two versions
//! serving side by side (a gradual deployment) can be compared.

use serde::{Deserialize, Serialize};

/// What a data point measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricKind {
    /// One HTTP request (fetch).
    Request,
    /// One attempt of one ingestion step (one alarm's action).
    Step,
    /// One finished ingestion run of a document.
    Run,
    /// One reconciliation page.
    Reconcile,
    /// One call to an embedding or chat provider.
    Provider,
}

impl MetricKind {
    /// Every kind.
    pub const ALL: [MetricKind; 5] = [
        Self::Request,
        Self::Step,
        Self::Run,
        Self::Reconcile,
        Self::Provider,
    ];

    /// Stable name (`blob1` / the `kind` column, and Analytics Engine's index).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Request => "request",
            Self::Step => "step",
            Self::Run => "run",
            Self::Reconcile => "reconcile",
            Self::Provider => "provider",
        }
    }

    /// The kind named `name`.
    #[must_use]
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

/// How one step attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepOutcome {
    /// It did its work.
    Ok,
    /// It failed with an error worth another attempt (the state machine
    /// retries it unless the step is out of attempts).
    Retryable,
    /// It failed for good.
    Permanent,
    /// The object changed under it; the run hands over to the new version.
    Moved,
}

impl StepOutcome {
    /// Stable name (the point's `outcome`).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Retryable => "retryable",
            Self::Permanent => "permanent",
            Self::Moved => "moved",
        }
    }
}

/// One data point. Which fields mean what depends on `kind` (docs/operations.md,
/// "Metrics"); unused numbers are 0 and unused texts empty.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataPoint {
    /// When it happened (ms since the epoch).
    pub at_ms: u64,
    /// What it measures.
    pub kind: MetricKind,
    /// request: the route (`POST /api/search`); step: the step; run: the
    /// document key; reconcile: `run <id>`; provider: the provider (`openai`).
    pub name: String,
    /// request: `ok` / `client_error` / `error`; step: [`StepOutcome`]; run:
    /// the run's status (`ready`, `unchanged`, `failed`, …); reconcile:
    /// `page` / `last`; provider: `ok` / `error`.
    pub outcome: String,
    /// step: the document key; run: the failure reason (`embed: permanent`);
    /// provider: the operation (`embed`, `chat`, `stream`).
    pub detail: String,
    /// Wall time in ms.
    pub duration_ms: f64,
    /// request: the HTTP status; provider: the HTTP status of a refusal
    /// (0 when none was received).
    pub status: u16,
    /// run: chunks written; reconcile: objects judged; provider: inputs sent.
    pub items: f64,
    /// provider: tokens in and out, estimated from text length (3 bytes per
    /// token, the batch planner's conservative estimate).
    pub tokens: f64,
    /// run: failed step attempts that were tried again.
    pub retries: f64,
    /// provider: estimated cost in USD (`tokens` × the provider's cost per 1K).
    pub cost_usd: f64,
    /// reconcile: documents the page enqueued.
    pub enqueued: f64,
    /// The Worker version that recorded it
    /// ([`crate::operations::deployment::WorkerVersion::metric_label`]); empty when unknown.
    #[serde(default)]
    pub version: String,
}

impl DataPoint {
    /// A point of `kind` named `name` with every other field empty: the
    /// start of each kind's constructor (the flows that own a kind's inputs
    /// build their points from it: `crate::ingest::points`,
    /// `crate::reconcile`'s pages).
    pub(crate) fn new(at_ms: u64, kind: MetricKind, name: impl Into<String>) -> Self {
        Self {
            at_ms,
            kind,
            name: name.into(),
            outcome: String::new(),
            detail: String::new(),
            duration_ms: 0.0,
            status: 0,
            items: 0.0,
            tokens: 0.0,
            retries: 0.0,
            cost_usd: 0.0,
            enqueued: 0.0,
            version: String::new(),
        }
    }

    /// The same point labelled with the Worker version `version` (a
    /// [`crate::operations::deployment::WorkerVersion::metric_label`]).
    #[must_use]
    pub fn with_version(mut self, version: &str) -> Self {
        version.clone_into(&mut self.version);
        self
    }

    /// A request to `route` (a [`crate::operations::metrics::route_label`]) answered with
    /// `status` after `duration_ms`.
    #[must_use]
    pub fn request(at_ms: u64, route: impl Into<String>, status: u16, duration_ms: u64) -> Self {
        let outcome = match status {
            500.. => "error",
            400..=499 => "client_error",
            _ => "ok",
        };
        Self {
            outcome: outcome.into(),
            status,
            duration_ms: duration_ms as f64,
            ..Self::new(at_ms, MetricKind::Request, route)
        }
    }

    /// A call to `provider` (`operation`: `embed`, `chat`, `stream`).
    /// `refusal_status` is the HTTP status of a non-2xx answer, if any.
    #[must_use]
    #[allow(clippy::too_many_arguments)]
    pub fn provider_call(
        at_ms: u64,
        provider: &str,
        operation: &str,
        ok: bool,
        refusal_status: Option<u16>,
        inputs: usize,
        tokens: u64,
        cost_usd: f64,
        duration_ms: u64,
    ) -> Self {
        Self {
            outcome: if ok { "ok" } else { "error" }.into(),
            detail: operation.into(),
            status: refusal_status.unwrap_or(0),
            items: inputs as f64,
            tokens: tokens as f64,
            cost_usd,
            duration_ms: duration_ms as f64,
            ..Self::new(at_ms, MetricKind::Provider, provider)
        }
    }

    /// Analytics Engine blobs, in order: kind, name, outcome, detail,
    /// version (last, so the first four kept their places when it came).
    #[must_use]
    pub fn blobs(&self) -> [&str; 5] {
        [
            self.kind.as_str(),
            &self.name,
            &self.outcome,
            &self.detail,
            &self.version,
        ]
    }

    /// Analytics Engine doubles, in order: duration_ms, status, items,
    /// tokens, retries, cost_usd, enqueued.
    #[must_use]
    pub fn doubles(&self) -> [f64; 7] {
        [
            self.duration_ms,
            f64::from(self.status),
            self.items,
            self.tokens,
            self.retries,
            self.cost_usd,
            self.enqueued,
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_outcomes_follow_the_status_class() {
        let outcome = |status| DataPoint::request(0, "GET /api/health", status, 5).outcome;
        assert_eq!(outcome(200), "ok");
        assert_eq!(outcome(304), "ok");
        assert_eq!(outcome(404), "client_error");
        assert_eq!(outcome(503), "error");
    }

    #[test]
    fn a_point_is_labelled_with_its_version() {
        let point = DataPoint::request(0, "GET /api/health", 200, 5);
        assert_eq!(point.version, "", "unknown until labelled");
        assert_eq!(point.with_version("v-new").version, "v-new");
    }

    #[test]
    fn blobs_and_doubles_keep_the_documented_order() {
        let point =
            DataPoint::provider_call(9, "openai", "embed", false, Some(401), 3, 120, 0.5, 40)
                .with_version("v-1");
        assert_eq!(
            point.blobs(),
            ["provider", "openai", "error", "embed", "v-1"]
        );
        assert_eq!(point.doubles(), [40.0, 401.0, 3.0, 120.0, 0.0, 0.5, 0.0]);
        for kind in MetricKind::ALL {
            assert_eq!(MetricKind::parse(kind.as_str()), Some(kind));
        }
    }
}
