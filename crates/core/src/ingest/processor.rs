//! The DocumentProcessor's driver: loads the pipeline state, resolves a
//! command against R2, lets the state machine decide, saves, performs the
//! actions and feeds their results back, one bounded step per alarm.
//!
//! Generic over the storage traits so it runs natively on fakes and in the
//! Worker on the platform. It must never read or write another document's state.

use super::gate::{Admission, ProviderGate, MAX_HOLD_MS};
use super::ports::{Commit, IngestPorts, Processor, StepResult};
use super::store::{DocumentStore, ProcessorStorage};
use crate::ingest::message::IngestCommand;
use crate::ingest::pipeline::{
    step, Action, Event, ObjectVersion, PipelineStep, ProcessorState, RunReason, StatusView,
    StepError,
};
use crate::ingest::settings::run_reason;
use crate::operations::metrics::{DataPoint, MetricsSink, StepOutcome};
use crate::shared::storage::{Clock, EventLog, Level, ObjectHead, ObjectStore, StoreError};
use serde::Serialize;
use serde_json::json;
use std::collections::VecDeque;

/// Upper bound of state-machine events in one invocation: one step action
/// per alarm plus the bookkeeping around it never needs more.
pub const MAX_EVENTS_PER_INVOCATION: usize = 16;

/// A held lease request that fails after at least this long reached the gate, which then
/// went away with the requests it held open (a deploy or reset of its Durable Object). The
/// batch then waits for the gate to come back, with its leases and queue from storage, rather
/// than calling the provider unguarded together with every other waiter. A request that fails
/// sooner found no gate at all: the batch goes ahead unguarded, as before held requests.
pub const GATE_LOST_AFTER_MS: u64 = 1_000;

/// When a batch whose held lease request was lost asks the gate again.
pub const GATE_LOST_RETRY_MS: u64 = 1_000;

/// What the status route and command answers return.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProcessorStatus {
    /// The key served, once known.
    pub key: Option<String>,
    /// The public status, once anything was requested.
    #[serde(flatten)]
    pub status: Option<StatusView>,
}

/// Why a command was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// The command names another key than the one this processor serves.
    #[error("this processor serves {serves}, not {asked}")]
    WrongProcessor {
        /// The key of this processor.
        serves: String,
        /// The key of the command.
        asked: String,
    },
    /// A storage call failed; the sender should retry.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The pipeline event for a command, resolved against what R2 holds now.
///
/// The command is only a hint that something changed: R2 is the source of
/// truth, read when the command is handled. An object that exists is
/// ingested (a delete message for a key re-uploaded since is no delete), a
/// missing one is deleted. Since this processor handles its commands one at
/// a time, the order it reads R2 in is the order of the writes it saw, so
/// the request is dated by the handling time (never before a request it
/// already accepted): the last write to R2 wins, whatever the order or
/// timestamps of the messages.
#[must_use]
pub fn resolve_command(
    command: &IngestCommand,
    current: Option<&ObjectHead>,
    now_ms: u64,
    state: &ProcessorState,
) -> Event {
    let force = matches!(command, IngestCommand::Process { force: true, .. });
    resolve_object(current, force, run_reason(command.reason()), now_ms, state)
}

/// The request for what R2 holds now (`None`: nothing), dated by `now_ms`
/// but never before a request already accepted.
fn resolve_object(
    current: Option<&ObjectHead>,
    force: bool,
    reason: RunReason,
    now_ms: u64,
    state: &ProcessorState,
) -> Event {
    let time = now_ms.max(state.newest_event_ms.unwrap_or(0));
    match current {
        Some(head) => Event::Requested {
            object_version: ObjectVersion {
                etag: head.etag.clone(),
                size: head.size,
                event_time_ms: time,
                sha256: head.sha256.clone(),
            },
            force,
            reason,
        },
        None => Event::DeleteRequested {
            event_time_ms: time,
            reason,
        },
    }
}

impl<P: IngestPorts> Processor<P> {
    /// The processor's key and public status.
    ///
    /// # Errors
    /// When its storage cannot be read.
    pub async fn status(&self) -> Result<ProcessorStatus, StoreError> {
        Ok(ProcessorStatus {
            key: self.ports.storage().key().await?,
            status: self.ports.storage().load_state().await?.status_view(),
        })
    }

    /// Takes a command from the queue: checks it is for this processor,
    /// resolves it against R2 and drives the state machine.
    ///
    /// # Errors
    /// `WrongProcessor` for another key; `Store` when R2 or the storage failed
    /// (nothing was accepted: the sender retries).
    pub async fn command(&self, command: &IngestCommand) -> Result<ProcessorStatus, CommandError> {
        let key = match self.ports.storage().key().await? {
            Some(key) if key != command.key() => {
                return Err(CommandError::WrongProcessor {
                    serves: key,
                    asked: command.key().to_owned(),
                })
            }
            Some(key) => key,
            None => {
                self.ports.storage().set_key(command.key()).await?;
                command.key().to_owned()
            }
        };
        let current = self.ports.objects().head(&key).await?;
        let state = self.ports.storage().load_state().await?;
        let event = resolve_command(
            command,
            current.as_ref(),
            self.ports.clock().now_ms(),
            &state,
        );
        self.drive(&key, state, event).await?;
        Ok(self.status().await?)
    }

    /// The alarm: performs the step that is due (if any).
    ///
    /// # Errors
    /// When the storage failed; the platform retries the alarm, and the state
    /// machine's watchdog covers anything lost in between.
    pub async fn alarm(&self) -> Result<(), StoreError> {
        let Some(key) = self.ports.storage().key().await? else {
            return Ok(());
        };
        let state = self.ports.storage().load_state().await?;
        self.drive(&key, state, Event::AlarmFired).await
    }

    /// Feeds `first` to the state machine and performs what it asks, feeding
    /// step results back, until nothing is left to do in this invocation.
    async fn drive(
        &self,
        key: &str,
        mut state: ProcessorState,
        first: Event,
    ) -> Result<(), StoreError> {
        let mut events = VecDeque::from([first]);
        let mut handled = 0;
        while let Some(event) = events.pop_front() {
            handled += 1;
            if handled > MAX_EVENTS_PER_INVOCATION {
                self.ports.log().log(
                    Level::Error,
                    json!({ "event": "processor_event_limit", "key": key }),
                );
                break;
            }
            let transition = step(&state, event, self.ports.clock().now_ms(), &self.pipeline);
            state = transition.state;
            // Save before acting: a crash mid-action resumes from this state.
            self.ports.storage().save_state(&state).await?;
            for action in transition.actions {
                match self.perform(key, action).await? {
                    Some(Outcome::Event(event)) => events.push_back(event),
                    // A newer write replaced the run's version: R2 wins, as for a command.
                    Some(Outcome::Moved(current)) => events.push_back(resolve_object(
                        current.as_ref(),
                        false,
                        RunReason::ObjectEvent,
                        self.ports.clock().now_ms(),
                        &state,
                    )),
                    None => {}
                }
            }
        }
        Ok(())
    }

    /// Performs one action; step actions report back with their outcome.
    async fn perform(&self, key: &str, action: Action) -> Result<Option<Outcome>, StoreError> {
        let started = self.ports.clock().now_ms();
        // Time spent waiting at the provider gate is not the step's own time.
        let gate_wait_ms = std::cell::Cell::new(0);
        let action_step = action.step();
        let result = match action {
            Action::ScheduleAlarm { at_ms } => {
                self.ports.storage().set_alarm(at_ms).await?;
                return Ok(None);
            }
            Action::Download { generation, object } => {
                Some(match self.download(key, &object.etag).await {
                    Ok(StepResult::Done((sha256, bytes_len))) => {
                        Outcome::Event(Event::Downloaded {
                            generation,
                            sha256,
                            bytes_len,
                        })
                    }
                    Ok(StepResult::Moved(current)) => Outcome::Moved(current),
                    Err(error) => failed(generation, PipelineStep::Download, error),
                })
            }
            Action::Chunk {
                generation,
                object,
                sha256,
            } => Some(
                match self.chunk(key, generation, &object.etag, &sha256).await {
                    Ok(StepResult::Done(chunk_count)) => Outcome::Event(Event::Chunked {
                        generation,
                        chunk_count,
                        batches: self.settings.batch_counts(chunk_count),
                    }),
                    Ok(StepResult::Moved(current)) => Outcome::Moved(current),
                    Err(error) => failed(generation, PipelineStep::Chunk, error),
                },
            ),
            Action::EmbedBatch { generation, index } => {
                let step = PipelineStep::Embed;
                Some(
                    match self
                        .embed_batch(key, generation, index, &gate_wait_ms)
                        .await
                    {
                        Ok(Leased::Ran(())) => {
                            Outcome::Event(Event::EmbeddedBatch { generation, index })
                        }
                        Ok(Leased::Deferred { retry_at_ms }) => {
                            return Ok(Some(deferred(generation, step, index, retry_at_ms)))
                        }
                        Err(error) => failed(generation, step, error),
                    },
                )
            }
            Action::TagBatch { generation, index } => {
                let step = PipelineStep::Tag;
                Some(
                    match self.tag_batch(key, generation, index, &gate_wait_ms).await {
                        Ok(Leased::Ran(())) => {
                            Outcome::Event(Event::TaggedBatch { generation, index })
                        }
                        Ok(Leased::Deferred { retry_at_ms }) => {
                            return Ok(Some(deferred(generation, step, index, retry_at_ms)))
                        }
                        Err(error) => failed(generation, step, error),
                    },
                )
            }
            Action::CommitGeneration { version } => Some(match self.commit(key, version).await {
                Ok(Commit::Done) => Outcome::Event(Event::Committed { version }),
                Ok(Commit::VectorsPending { visible, expected }) => {
                    Outcome::Event(Event::VectorsPending {
                        version,
                        visible,
                        expected,
                    })
                }
                Err(error) => failed(version, PipelineStep::Commit, error),
            }),
            Action::DeleteDocument { generation } => Some(match self.delete_document(key).await {
                Ok(()) => Outcome::Event(Event::Deleted { generation }),
                Err(error) => failed(generation, PipelineStep::Delete, error),
            }),
            Action::ReleaseStaging { version } => {
                if let Err(e) = self.ports.storage().discard(version).await {
                    self.side_effect_failed(key, "release_staging", &e);
                }
                None
            }
            Action::DeletePreviousGeneration { version }
            | Action::DiscardGeneration { version } => {
                // Best effort: leftovers are invisible and reconciliation sweeps them.
                if let Err(e) = self.drop_generation(key, version).await {
                    self.side_effect_failed(key, "drop_generation", &e);
                }
                None
            }
            Action::RecordRun(record) => {
                if let Err(e) = self.ports.documents().record_run(key, &record).await {
                    self.side_effect_failed(key, "record_run", &e);
                }
                self.ports.metrics().record(DataPoint::run(key, &record));
                self.ports.log().log(
                    Level::Info,
                    json!({ "event": "run_finished", "key": key, "run": record }),
                );
                None
            }
            Action::MarkDocumentStatus(view) => {
                let now = self.ports.clock().now_ms();
                if let Err(e) = self.ports.documents().mark_status(key, &view, now).await {
                    self.side_effect_failed(key, "mark_status", &e);
                }
                None
            }
        };
        if let (Some(step), Some(outcome)) = (action_step, &result) {
            let ok = !matches!(outcome, Outcome::Event(Event::StepFailed { .. }));
            let now = self.ports.clock().now_ms();
            let ms = now
                .saturating_sub(started)
                .saturating_sub(gate_wait_ms.get());
            let step_outcome = match outcome {
                Outcome::Event(Event::StepFailed { error, .. }) if error.retryable => {
                    StepOutcome::Retryable
                }
                Outcome::Event(Event::StepFailed { .. }) => StepOutcome::Permanent,
                Outcome::Moved(_) => StepOutcome::Moved,
                Outcome::Event(_) => StepOutcome::Ok,
            };
            self.ports
                .metrics()
                .record(DataPoint::step(now, step, step_outcome, key, ms));
            let event = match outcome {
                Outcome::Event(event) => json!(event),
                Outcome::Moved(current) => {
                    json!({ "type": "object_moved", "etag": current.as_ref().map(|h| &h.etag) })
                }
            };
            self.ports.log().log(
                if ok { Level::Info } else { Level::Warn },
                json!({ "event": "step", "key": key, "step": step.as_str(), "ok": ok,
                        "ms": ms, "gate_wait_ms": gate_wait_ms.get(), "result": event }),
            );
        }
        Ok(result)
    }

    /// Runs `call`, the provider call of one batch, under a lease from the provider gate when
    /// the step is gated, and gives the lease back as soon as the call returns (the batch's
    /// reads and writes around it hold no slot). The gate is asked to hold the request until
    /// a lease is handed to it (at most [`MAX_HOLD_MS`]), so the call starts as soon as a slot
    /// frees instead of at the batch's next alarm; the time waited goes to `gate_wait_ms`.
    ///
    /// A gate that cannot be reached lets the call through (logged): the overload backoff
    /// still protects the provider, and ingestion does not stop on the gate's account. A gate
    /// lost while holding the request defers the batch instead ([`GATE_LOST_AFTER_MS`]).
    pub(super) async fn leased<T>(
        &self,
        key: &str,
        generation: u64,
        step: PipelineStep,
        index: u32,
        gate_wait_ms: &std::cell::Cell<u64>,
        call: impl std::future::Future<Output = T>,
    ) -> Leased<T> {
        let gated = self.gating.is_some_and(|gating| match step {
            PipelineStep::Embed => gating.embed,
            PipelineStep::Tag => gating.tag,
            _ => false,
        });
        if !gated {
            return Leased::Ran(call.await);
        }
        let holder = format!("{key}#{generation}:{}:{index}", step.as_str());
        let asked_ms = self.ports.clock().now_ms();
        let answer = self.ports.gate().acquire(&holder, MAX_HOLD_MS).await;
        let now = self.ports.clock().now_ms();
        let waited_ms = now.saturating_sub(asked_ms);
        gate_wait_ms.set(waited_ms);
        let lease = match answer {
            Ok(Admission::Granted { .. }) => Some(holder),
            Ok(Admission::Wait { retry_after_ms, .. }) => {
                return Leased::Deferred {
                    retry_at_ms: now.saturating_add(retry_after_ms),
                }
            }
            Err(e) => {
                let lost = waited_ms >= GATE_LOST_AFTER_MS;
                self.ports.log().log(
                    Level::Warn,
                    json!({ "event": if lost { "provider_gate_lost" } else { "provider_gate_unreachable" },
                            "key": key, "waited_ms": waited_ms, "error": e.to_string() }),
                );
                if lost {
                    return Leased::Deferred {
                        retry_at_ms: now.saturating_add(GATE_LOST_RETRY_MS),
                    };
                }
                None
            }
        };
        let value = call.await;
        if let Some(holder) = lease {
            // A lost release expires on its own.
            if let Err(e) = self.ports.gate().release(&holder).await {
                self.side_effect_failed(key, "gate_release", &e);
            }
        }
        Leased::Ran(value)
    }

    fn side_effect_failed(&self, key: &str, what: &str, error: &StoreError) {
        self.ports.log().log(
            Level::Error,
            json!({ "event": "processor_side_effect_failed", "key": key, "action": what, "error": error.to_string() }),
        );
    }
}

/// How a gated batch's provider call went.
pub(super) enum Leased<T> {
    /// It ran (under a lease, or unguarded when no gate answered) and returned this.
    Ran(T),
    /// The gate said wait: the batch is deferred to `retry_at_ms`, no attempt spent.
    Deferred {
        /// When the batch asks again.
        retry_at_ms: u64,
    },
}

/// What a performed step action reports.
enum Outcome {
    /// The event to feed back.
    Event(Event),
    /// The run's object version is gone from R2: request what is there now.
    Moved(Option<ObjectHead>),
}

fn deferred(generation: u64, step: PipelineStep, index: u32, retry_at_ms: u64) -> Outcome {
    Outcome::Event(Event::StepDeferred {
        generation,
        step,
        index: Some(index),
        retry_at_ms,
    })
}

fn failed(generation: u64, step: PipelineStep, error: StepError) -> Outcome {
    Outcome::Event(Event::StepFailed {
        generation,
        step,
        error,
    })
}
