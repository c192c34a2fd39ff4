//! The transition function of the DocumentProcessor: `(state, event, now) ->
//! (state, actions)`. It decides every retry, backoff, supersede and no-op;
//! it never performs I/O, reads a clock or panics on any state or event.

use super::action::{Action, RunRecord};
use super::backoff::PipelineConfig;
use super::event::{Event, PipelineStep, Request, StepError};
use super::state::{InFlight, ProcessorState, Run, RunOutcome, Stage, StatusView, StepTiming};

/// The result of one step of the state machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    /// The state to persist.
    pub state: ProcessorState,
    /// What to do, in order (an alarm is always scheduled before a step action).
    pub actions: Vec<Action>,
}

/// Applies `event` at `now_ms` to `state`.
///
/// Events that do not apply (stale requests, duplicate deliveries, results of
/// a superseded run, alarms with nothing due) return the state unchanged and
/// no actions, so feeding the same event twice is harmless.
#[must_use]
pub fn step(
    state: &ProcessorState,
    event: Event,
    now_ms: u64,
    config: &PipelineConfig,
) -> Transition {
    let mut machine = Machine {
        state: state.clone(),
        actions: Vec::new(),
        now: now_ms,
        config,
    };
    match event {
        Event::Requested {
            object_version,
            force,
            reason,
        } => machine.on_request(Request::Ingest {
            object: object_version,
            force,
            reason,
        }),
        Event::DeleteRequested {
            event_time_ms,
            reason,
        } => machine.on_request(Request::Delete {
            event_time_ms,
            reason,
        }),
        Event::AlarmFired => machine.on_alarm(),
        Event::Downloaded {
            generation,
            sha256,
            bytes_len,
        } => {
            if machine.accepts(generation, PipelineStep::Download, None) {
                machine.on_downloaded(sha256, bytes_len);
            }
        }
        Event::Chunked {
            generation,
            chunk_count,
            batches,
        } => {
            if machine.accepts(generation, PipelineStep::Chunk, None) {
                machine.on_chunked(chunk_count, batches);
            }
        }
        Event::EmbeddedBatch { generation, index } => {
            if machine.accepts(generation, PipelineStep::Embed, Some(index)) {
                machine.on_batch_done(PipelineStep::Embed);
            }
        }
        Event::TaggedBatch { generation, index } => {
            if machine.accepts(generation, PipelineStep::Tag, Some(index)) {
                machine.on_batch_done(PipelineStep::Tag);
            }
        }
        Event::Committed { version } => {
            if machine.accepts(version, PipelineStep::Commit, None) {
                machine.on_committed();
            }
        }
        Event::VectorsPending {
            version,
            visible,
            expected,
        } => {
            if machine.accepts(version, PipelineStep::Commit, None) {
                machine.on_vectors_pending(visible, expected);
            }
        }
        Event::StepDeferred {
            generation,
            step,
            index,
            retry_at_ms,
        } => {
            if machine.accepts(generation, step, index) {
                machine.on_step_deferred(retry_at_ms);
            }
        }
        Event::Deleted { generation } => {
            if machine.accepts(generation, PipelineStep::Delete, None) {
                machine.on_deleted();
            }
        }
        Event::StepFailed {
            generation,
            step,
            error,
        } => {
            if machine.accepts(generation, step, None) {
                machine.on_step_failed(error);
            }
        }
    }
    machine.finish(state)
}

#[derive(Debug)]
struct Machine<'a> {
    state: ProcessorState,
    actions: Vec<Action>,
    now: u64,
    config: &'a PipelineConfig,
}

impl Machine<'_> {
    // ---- requests -------------------------------------------------------

    fn on_request(&mut self, request: Request) {
        if self.is_stale(&request) || self.is_duplicate(&request) {
            return;
        }
        let time = request.event_time_ms();
        self.state.newest_event_ms = Some(self.state.newest_event_ms.map_or(time, |n| n.max(time)));
        if self.state.stage.is_exclusive() {
            // A commit or delete may be writing the live document right now;
            // superseding it could resurrect or discard live rows. Wait for it.
            self.state.deferred = Some(request);
            return;
        }
        if self.state.stage.is_running() {
            self.supersede();
        }
        self.start_run(request);
    }

    /// Older than the newest request accepted: an out-of-order delivery.
    fn is_stale(&self, request: &Request) -> bool {
        self.state
            .newest_event_ms
            .is_some_and(|newest| request.event_time_ms() < newest)
    }

    /// Same object version as the running, deferred or live one (and not a
    /// stronger `force`), or a delete of a document already being deleted.
    fn is_duplicate(&self, request: &Request) -> bool {
        let deferred = self.state.deferred.as_ref();
        match request {
            Request::Ingest { object, force, .. } => {
                let running = self
                    .state
                    .run
                    .as_ref()
                    .filter(|_| self.state.stage.is_running());
                // A deferred request (say, a delete) will replace what is
                // running, so a request equal to the running one is news then.
                let same_as_running = deferred.is_none()
                    && running.is_some_and(|run| {
                        run.object().is_some_and(|o| o.etag == object.etag)
                            && (!force || run.force())
                    });
                let same_as_deferred = matches!(
                    deferred,
                    Some(Request::Ingest { object: d, force: df, .. })
                        if d.etag == object.etag && (!force || *df)
                );
                let same_as_live = !force
                    && running.is_none()
                    && deferred.is_none()
                    && self
                        .state
                        .live
                        .as_ref()
                        .is_some_and(|live| live.object.etag == object.etag);
                same_as_running || same_as_deferred || same_as_live
            }
            Request::Delete { .. } => {
                matches!(self.state.stage, Stage::Deleting | Stage::Deleted)
                    || matches!(deferred, Some(Request::Delete { .. }))
            }
        }
    }

    fn start_run(&mut self, request: Request) {
        let generation = self.state.last_generation.saturating_add(1);
        self.state.last_generation = generation;
        let mut run = Run::new(generation, request, self.now);
        let next_stage = match &run.request {
            Request::Ingest { object, force, .. } => {
                let known_sha = object.sha256.as_deref();
                let unchanged = !force
                    && known_sha.is_some()
                    && self.state.live.as_ref().map(|l| l.sha256.as_str()) == known_sha;
                if unchanged {
                    // The uploader told us the hash: no need to even download.
                    run.sha256 = object.sha256.clone();
                    let object = object.clone();
                    if let Some(live) = self.state.live.as_mut() {
                        live.object = object;
                    }
                    self.state.run = Some(run);
                    self.end_run(RunOutcome::Unchanged);
                    return;
                }
                Stage::Queued
            }
            Request::Delete { .. } => Stage::Deleting,
        };
        self.state.run = Some(run);
        self.state.stage = next_stage;
        self.schedule(self.now);
    }

    fn supersede(&mut self) {
        self.discard_unpublished();
        self.end_run(RunOutcome::Superseded);
    }

    // ---- alarms ---------------------------------------------------------

    fn on_alarm(&mut self) {
        let Some(step) = self.state.stage.step() else {
            return;
        };
        let now = self.now;
        let max_attempts = self.config.retry().max_attempts();
        let Some(run) = self.state.run.as_mut() else {
            return;
        };
        if run.in_flight.is_some() {
            // Steps are issued only from alarms and an object's alarms never
            // overlap (see `DEFAULT_STEP_WATCHDOG_MS`), so the invocation that
            // issued this attempt is over and never reported: it crashed (a
            // wasm trap, a stack overflow, out of memory, the CPU limit) or
            // the object was evicted mid-step. The attempt was counted before
            // the step ran, so a step that kills its invocation every time
            // ends the run after `max_attempts` instead of looping.
            let attempts = run.attempts;
            run.in_flight = None;
            run.updated_at_ms = now;
            if attempts >= max_attempts {
                run.last_error = Some(StepError::retryable(format!(
                    "step {} did not finish in {attempts} attempts (the Worker crashed or ran \
                     out of stack/memory during it)",
                    step.as_str()
                )));
                self.fail_run();
                return;
            }
            // Issued again at once: the watchdog already spaced the attempts,
            // and an eviction (a deploy) is no reason to wait.
            run.retries += 1;
            run.last_error = Some(StepError::retryable(format!(
                "step {} did not finish in attempt {attempts} of {max_attempts} (the Worker \
                 crashed, ran out of stack/memory or was evicted during it); trying again",
                step.as_str()
            )));
        } else if now < run.not_before_ms {
            let at = run.not_before_ms;
            self.schedule(at);
            return;
        }
        self.issue(step);
    }

    fn issue(&mut self, step: PipelineStep) {
        let now = self.now;
        let deadline = now.saturating_add(self.config.step_watchdog_ms());
        if self.state.stage == Stage::Queued {
            self.state.stage = Stage::Downloading;
        }
        let Some(action) = self.step_action() else {
            self.on_step_failed(StepError::permanent(format!(
                "inconsistent processor state: cannot build the `{}` action",
                step.as_str()
            )));
            return;
        };
        let Some(run) = self.state.run.as_mut() else {
            return;
        };
        run.started_at_ms.get_or_insert(now);
        run.updated_at_ms = now;
        run.attempts = run.attempts.saturating_add(1);
        run.in_flight = Some(InFlight {
            issued_at_ms: now,
            deadline_ms: deadline,
        });
        match run.steps.last_mut() {
            Some(timing) if timing.step == step && timing.finished_at_ms.is_none() => {
                timing.attempts = timing.attempts.saturating_add(1);
            }
            _ => run.steps.push(StepTiming {
                step,
                started_at_ms: now,
                finished_at_ms: None,
                attempts: 1,
            }),
        }
        // Armed (and the attempt counted) before the step runs: if the step
        // kills the invocation, this alarm brings the object back and
        // `on_alarm` counts the attempt as failed.
        self.schedule(deadline);
        self.actions.push(action);
    }

    fn step_action(&self) -> Option<Action> {
        let run = self.state.run.as_ref()?;
        let generation = run.generation;
        Some(match self.state.stage {
            Stage::Queued | Stage::Downloading => Action::Download {
                generation,
                object: run.object()?.clone(),
            },
            Stage::Chunking => Action::Chunk {
                generation,
                object: run.object()?.clone(),
                sha256: run.sha256.clone()?,
            },
            Stage::Embedding { done, .. } => Action::EmbedBatch {
                generation,
                index: done,
            },
            Stage::Tagging { done, .. } => Action::TagBatch {
                generation,
                index: done,
            },
            Stage::Committing => Action::CommitGeneration {
                version: generation,
            },
            Stage::Deleting => Action::DeleteDocument { generation },
            Stage::Idle | Stage::Ready | Stage::Failed { .. } | Stage::Deleted => return None,
        })
    }

    // ---- endings --------------------------------------------------------

    fn fail_run(&mut self) {
        self.discard_unpublished();
        self.end_run(RunOutcome::Failed);
    }

    /// Asks the adapter to drop what a run that will never commit may have
    /// written (the adapter keeps it if the generation did go live).
    fn discard_unpublished(&mut self) {
        if let Some(run) = self.state.run.as_ref() {
            if run.object().is_some() && run.started_at_ms.is_some() {
                self.actions.push(Action::DiscardGeneration {
                    version: run.generation,
                });
            }
        }
    }

    fn end_run(&mut self, outcome: RunOutcome) {
        let now = self.now;
        let failed_step = self.state.stage.step().unwrap_or(PipelineStep::Download);
        let Some(run) = self.state.run.as_mut() else {
            return;
        };
        run.finished_at_ms = Some(now);
        run.updated_at_ms = now;
        run.outcome = Some(outcome);
        run.in_flight = None;
        for timing in &mut run.steps {
            timing.finished_at_ms.get_or_insert(now);
        }
        self.actions
            .push(Action::RecordRun(RunRecord::of(run, outcome, now)));
        self.state.stage = match outcome {
            RunOutcome::Committed | RunOutcome::Unchanged => Stage::Ready,
            RunOutcome::Failed => Stage::Failed { step: failed_step },
            RunOutcome::Deleted => Stage::Deleted,
            // The caller starts the superseding run right away.
            RunOutcome::Superseded => return,
        };
        if let Some(request) = self.state.deferred.take() {
            self.start_run(request);
        }
    }

    // ---- output ---------------------------------------------------------

    /// Sets the object's single alarm; a later call in the same transition wins.
    fn schedule(&mut self, at_ms: u64) {
        self.actions
            .retain(|a| !matches!(a, Action::ScheduleAlarm { .. }));
        self.actions.push(Action::ScheduleAlarm { at_ms });
    }

    fn finish(mut self, before: &ProcessorState) -> Transition {
        let after = self.state.status_view();
        let key = |view: &StatusView| (view.status, view.step, view.generation);
        if let Some(view) = after {
            if before.status_view().as_ref().map(key) != Some(key(&view)) {
                // Status goes out before the step action, so the row says
                // "processing" while the step runs.
                let position = self
                    .actions
                    .iter()
                    .position(|a| a.step().is_some())
                    .unwrap_or(self.actions.len());
                self.actions
                    .insert(position, Action::MarkDocumentStatus(view));
            }
        }
        Transition {
            state: self.state,
            actions: self.actions,
        }
    }
}

mod results;

#[cfg(test)]
mod tests;
