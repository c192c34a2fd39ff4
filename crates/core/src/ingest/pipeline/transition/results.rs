//! The machine's answers to a step's result: whether a result belongs to the
//! running attempt ([`Machine::accepts`]), and what each result (downloaded,
//! chunked, a batch done, committed, vectors pending, deferred, deleted,
//! failed) moves the run to.

use super::super::action::Action;
use super::super::event::{BatchCounts, PipelineStep, StepError};
use super::super::state::{LiveGeneration, RunOutcome, Stage};
use super::Machine;

impl Machine<'_> {
    /// Whether a result belongs to the running run and the step (batch) it is at.
    pub(super) fn accepts(&self, generation: u64, step: PipelineStep, index: Option<u32>) -> bool {
        let Some(run) = self.state.run.as_ref() else {
            return false;
        };
        let position_matches = match (&self.state.stage, index) {
            (Stage::Queued, _) => false,
            (Stage::Embedding { done, .. } | Stage::Tagging { done, .. }, Some(i)) => *done == i,
            (_, Some(_)) => false,
            (_, None) => true,
        };
        run.generation == generation
            && run.outcome.is_none()
            && self.state.stage.step() == Some(step)
            && position_matches
    }

    /// The current step (or batch) succeeded: the next one starts from zero attempts.
    pub(super) fn complete_attempt(&mut self, closes_step: bool) {
        let now = self.now;
        if let Some(run) = self.state.run.as_mut() {
            run.attempts = 0;
            run.overloads = 0;
            run.overloaded_since_ms = None;
            run.in_flight = None;
            run.not_before_ms = now;
            run.updated_at_ms = now;
            if closes_step {
                if let Some(timing) = run.steps.last_mut() {
                    timing.finished_at_ms.get_or_insert(now);
                }
            }
        }
    }

    pub(super) fn on_downloaded(&mut self, sha256: String, bytes_len: u64) {
        self.complete_attempt(true);
        let Some(run) = self.state.run.as_mut() else {
            return;
        };
        let unchanged =
            !run.force() && self.state.live.as_ref().is_some_and(|l| l.sha256 == sha256);
        run.sha256 = Some(sha256);
        run.bytes_len = Some(bytes_len);
        if unchanged {
            let object = run.object().cloned();
            if let (Some(live), Some(object)) = (self.state.live.as_mut(), object) {
                live.object = object;
            }
            self.end_run(RunOutcome::Unchanged);
        } else {
            self.state.stage = Stage::Chunking;
            self.schedule(self.now);
        }
    }

    pub(super) fn on_chunked(&mut self, chunk_count: u32, batches: BatchCounts) {
        if batches.embed > chunk_count || (chunk_count > 0 && batches.embed == 0) {
            // Committing this plan would publish chunks without vectors.
            self.on_step_failed(StepError::permanent(format!(
                "chunk plan is inconsistent: {chunk_count} chunks in {} embedding batches",
                batches.embed
            )));
            return;
        }
        self.complete_attempt(true);
        if let Some(run) = self.state.run.as_mut() {
            run.chunk_count = Some(chunk_count);
            run.batches = Some(batches);
        }
        self.state.stage = if batches.embed > 0 {
            Stage::Embedding {
                done: 0,
                total: batches.embed,
            }
        } else if batches.tag > 0 {
            Stage::Tagging {
                done: 0,
                total: batches.tag,
            }
        } else {
            Stage::Committing
        };
        self.schedule(self.now);
    }

    pub(super) fn on_batch_done(&mut self, step: PipelineStep) {
        let (done, total) = match self.state.stage {
            Stage::Embedding { done, total } | Stage::Tagging { done, total } => {
                (done.saturating_add(1), total)
            }
            _ => return,
        };
        let finished = done >= total;
        self.complete_attempt(finished);
        let tag_batches = self
            .state
            .run
            .as_mut()
            .map(|run| {
                match step {
                    PipelineStep::Embed => run.batches_done.embed = done,
                    _ => run.batches_done.tag = done,
                }
                run.batches.map_or(0, |b| b.tag)
            })
            .unwrap_or(0);
        self.state.stage = match (step, finished) {
            (PipelineStep::Embed, false) => Stage::Embedding { done, total },
            (PipelineStep::Embed, true) if tag_batches > 0 => Stage::Tagging {
                done: 0,
                total: tag_batches,
            },
            (PipelineStep::Tag, false) => Stage::Tagging { done, total },
            _ => Stage::Committing,
        };
        // Each batch runs from its own alarm, so one alarm invocation stays
        // within the platform's time and subrequest limits.
        self.schedule(self.now);
    }

    pub(super) fn on_committed(&mut self) {
        self.complete_attempt(true);
        let Some(run) = self.state.run.as_ref() else {
            return;
        };
        let (Some(object), Some(sha256)) = (run.object().cloned(), run.sha256.clone()) else {
            self.on_step_failed(StepError::permanent(
                "inconsistent processor state: commit of a run without object or hash",
            ));
            return;
        };
        let version = run.generation;
        let previous = self.state.live.replace(LiveGeneration {
            version,
            object,
            sha256,
            chunk_count: run.chunk_count.unwrap_or(0),
        });
        self.actions.push(Action::ReleaseStaging { version });
        if let Some(previous) = previous.filter(|p| p.version != version) {
            self.actions.push(Action::DeletePreviousGeneration {
                version: previous.version,
            });
        }
        self.end_run(RunOutcome::Committed);
    }

    /// The commit found its vectors not all visible yet and wrote nothing. Waiting is not a
    /// failed attempt; the check is repeated, ever less often, until the vectors show or the
    /// give-up time has passed since the commit was first issued (then the run fails, retryable:
    /// reconciliation retries it later).
    pub(super) fn on_vectors_pending(&mut self, visible: u32, expected: u32) {
        let now = self.now;
        let wait = *self.config.vector_wait();
        let Some(run) = self.state.run.as_mut() else {
            return;
        };
        run.attempts = run.attempts.saturating_sub(1);
        let since = match run.steps.last_mut() {
            Some(timing) if timing.step == PipelineStep::Commit => {
                timing.attempts = timing.attempts.saturating_sub(1);
                timing.started_at_ms
            }
            _ => now,
        };
        run.in_flight = None;
        run.updated_at_ms = now;
        let waited = now.saturating_sub(since);
        if waited >= wait.give_up_ms {
            run.last_error = Some(StepError::retryable(format!(
                "{} of {expected} vectors of generation {} still not visible in the vector index \
                 after {waited} ms",
                expected.saturating_sub(visible),
                run.generation
            )));
            self.fail_run();
            return;
        }
        let at = now.saturating_add(wait.next_delay(waited));
        run.not_before_ms = at;
        self.schedule(at);
    }

    /// The gate asked the step to wait: the issue is taken back (not an attempt) and the
    /// same step is issued again at `retry_at_ms` (never in the past).
    pub(super) fn on_step_deferred(&mut self, retry_at_ms: u64) {
        let now = self.now;
        // Only the issue awaiting its result can be taken back (a repeated report is ignored).
        let Some(run) = self.state.run.as_mut().filter(|r| r.in_flight.is_some()) else {
            return;
        };
        run.attempts = run.attempts.saturating_sub(1);
        if let Some(timing) = run.steps.last_mut() {
            timing.attempts = timing.attempts.saturating_sub(1);
        }
        run.in_flight = None;
        run.updated_at_ms = now;
        let at = retry_at_ms.max(now);
        run.not_before_ms = at;
        self.schedule(at);
    }

    pub(super) fn on_deleted(&mut self) {
        self.complete_attempt(true);
        self.state.live = None;
        self.end_run(RunOutcome::Deleted);
    }

    pub(super) fn on_step_failed(&mut self, error: StepError) {
        let now = self.now;
        let retry = *self.config.retry();
        let overload = *self.config.overload_wait();
        let Some(run) = self.state.run.as_mut() else {
            return;
        };
        run.in_flight = None;
        run.updated_at_ms = now;
        let retryable = error.retryable;
        if retryable && error.overloaded {
            // Not the document's fault: the attempt does not count, and the wait grows to
            // minutes, until the provider answers or the give-up time has passed.
            let since = *run.overloaded_since_ms.get_or_insert(now);
            run.attempts = run.attempts.saturating_sub(1);
            run.overloads = run.overloads.saturating_add(1);
            run.retries += 1;
            let waited = now.saturating_sub(since);
            run.last_error = Some(error);
            if waited >= overload.give_up_ms {
                if let Some(last) = run.last_error.as_mut() {
                    last.message = format!(
                        "provider overloaded for {waited} ms ({} attempts in a row); last: {}",
                        run.overloads, last.message
                    );
                }
                self.fail_run();
                return;
            }
            let at = now.saturating_add(overload.delay_after(run.overloads));
            run.not_before_ms = at;
            self.schedule(at);
            return;
        }
        run.last_error = Some(error);
        if !retryable || run.attempts >= retry.max_attempts() {
            self.fail_run();
            return;
        }
        run.retries += 1;
        let at = now.saturating_add(retry.delay_after(run.attempts));
        run.not_before_ms = at;
        self.schedule(at);
    }
}
