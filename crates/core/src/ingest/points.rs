//! The data points ingestion records, one per step attempt and one per
//! finished run, built from the pipeline's own types. The point's shape
//! (its columns and their order) is `crate::operations::metrics`'s; what
//! fills it for a step or a run is decided here, so metrics never names an
//! ingestion type.

use crate::ingest::pipeline::{PipelineStep, RunOutcome, RunRecord};
use crate::operations::metrics::{DataPoint, MetricKind, StepOutcome};

impl DataPoint {
    /// One attempt of `step` for the document `key`.
    #[must_use]
    pub fn step(
        at_ms: u64,
        step: PipelineStep,
        outcome: StepOutcome,
        key: &str,
        duration_ms: u64,
    ) -> Self {
        Self {
            outcome: outcome.as_str().into(),
            detail: key.into(),
            duration_ms: duration_ms as f64,
            ..Self::new(at_ms, MetricKind::Step, step.as_str())
        }
    }

    /// A finished run of the document `key`.
    #[must_use]
    pub fn run(key: &str, record: &RunRecord) -> Self {
        let committed = record.outcome == RunOutcome::Committed;
        Self {
            outcome: record.outcome.run_status().into(),
            detail: failure_reason(record).unwrap_or_default(),
            duration_ms: record.duration_ms() as f64,
            items: if committed {
                f64::from(record.chunk_count.unwrap_or(0))
            } else {
                0.0
            },
            retries: f64::from(record.retries),
            ..Self::new(record.finished_at_ms, MetricKind::Run, key)
        }
    }
}

/// Why a failed run failed, as a short reason to group by: the step it
/// failed in and whether the error was permanent or the step ran out of
/// attempts (`embed: permanent`, `download: out of attempts`). `None` for a
/// run that did not fail.
#[must_use]
pub fn failure_reason(record: &RunRecord) -> Option<String> {
    if record.outcome != RunOutcome::Failed {
        return None;
    }
    let step = record
        .steps
        .last()
        .map_or("run", |timing| timing.step.as_str());
    let why = match &record.error {
        Some(error) if error.retryable => "out of attempts",
        Some(_) => "permanent",
        None => "unknown",
    };
    Some(format!("{step}: {why}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::pipeline::{RunReason, StepError, StepTiming};

    fn record(outcome: RunOutcome, error: Option<StepError>) -> RunRecord {
        RunRecord {
            generation: 2,
            reason: RunReason::Admin,
            object: None,
            force: false,
            outcome,
            queued_at_ms: 1_000,
            started_at_ms: Some(1_100),
            finished_at_ms: 4_000,
            steps: vec![
                StepTiming {
                    step: PipelineStep::Download,
                    started_at_ms: 1_100,
                    finished_at_ms: Some(1_200),
                    attempts: 1,
                },
                StepTiming {
                    step: PipelineStep::Embed,
                    started_at_ms: 1_200,
                    finished_at_ms: Some(4_000),
                    attempts: 3,
                },
            ],
            sha256: None,
            chunk_count: Some(12),
            attempts: 4,
            retries: 2,
            error,
        }
    }

    #[test]
    fn a_run_point_carries_its_outcome_reason_chunks_and_retries() {
        let done = DataPoint::run("a.md", &record(RunOutcome::Committed, None));
        assert_eq!(
            (done.kind, done.name.as_str(), done.outcome.as_str()),
            (MetricKind::Run, "a.md", "ready")
        );
        assert_eq!((done.at_ms, done.duration_ms), (4_000, 3_000.0));
        assert_eq!((done.items, done.retries), (12.0, 2.0));
        assert_eq!(done.detail, "");

        let exhausted = DataPoint::run(
            "a.md",
            &record(RunOutcome::Failed, Some(StepError::retryable("503"))),
        );
        assert_eq!(exhausted.detail, "embed: out of attempts");
        assert_eq!(exhausted.items, 0.0, "a failed run wrote no chunks");
        let refused = DataPoint::run(
            "a.md",
            &record(RunOutcome::Failed, Some(StepError::permanent("401"))),
        );
        assert_eq!(refused.detail, "embed: permanent");
    }
}
