//! `DocumentProcessor`: one Durable Object per R2 key, so updates to one
//! document serialise. It loads its pipeline state, lets the core state
//! machine decide, saves, and performs the actions it is given, one bounded
//! step per alarm.
//!
//! It must never read or write another document's state.

use super::documents;
use super::staging::Staging;
use super::steps::StepContext;
use crate::bindings;
use crate::config::var;
use crate::error::json_response;
use portfolio_core::api::ErrorBody;
use portfolio_core::ingest_message::IngestCommand;
use portfolio_core::ingestion::{command_event, run_reason, IngestSettings};
use portfolio_core::keys::SHA256_METADATA;
use portfolio_core::pipeline::{
    step, Action, Event, ObjectVersion, PipelineConfig, PipelineStep, StatusView, StepError,
};
use serde::Serialize;
use serde_json::json;
use std::collections::VecDeque;
use worker::{
    console_error, console_log, durable_object, DurableObject, Env, Method, Request, Response,
    State,
};

/// Upper bound of state-machine steps in one invocation: one step action per
/// alarm plus the bookkeeping around it never needs more.
const MAX_EVENTS_PER_INVOCATION: usize = 16;

// `State` has no `Debug`; the object is never printed.
#[allow(missing_debug_implementations)]
#[durable_object]
pub struct DocumentProcessor {
    state: State,
    env: Env,
    /// Whether this instance has created its storage tables.
    tables_created: std::cell::Cell<bool>,
}

/// What `GET /status` and command responses return.
#[derive(Debug, Serialize)]
struct ProcessorStatus {
    key: Option<String>,
    #[serde(flatten)]
    status: Option<StatusView>,
}

fn now_ms() -> u64 {
    worker::Date::now().as_millis()
}

fn parse_time_ms(rfc3339: Option<&str>) -> Option<u64> {
    let ms = js_sys::Date::parse(rfc3339?);
    (ms.is_finite() && ms >= 0.0).then_some(ms as u64)
}

fn settings(env: &Env) -> IngestSettings {
    IngestSettings::from_vars(
        var(env, "EMBED_BATCH_SIZE").as_deref(),
        var(env, "TAG_BATCH_SIZE").as_deref(),
    )
}

impl DurableObject for DocumentProcessor {
    fn new(state: State, env: Env) -> Self {
        Self {
            state,
            env,
            tables_created: std::cell::Cell::new(false),
        }
    }

    async fn fetch(&self, mut req: Request) -> worker::Result<Response> {
        let staging = self.staging()?;
        match (req.method(), req.path().as_str()) {
            (Method::Post, "/commands") => {
                let command: IngestCommand = match req.json().await {
                    Ok(command) => command,
                    Err(e) => {
                        return json_response(&ErrorBody::new("bad_command", e.to_string()), 400)
                    }
                };
                match staging.key()? {
                    Some(key) if key != command.key() => {
                        let message = format!("this processor serves {key}, not {}", command.key());
                        return json_response(&ErrorBody::new("wrong_processor", message), 409);
                    }
                    Some(_) => {}
                    None => staging.set_key(command.key())?,
                }
                let event = self.command_event(&command).await?;
                self.drive(&staging, event).await?;
                json_response(&self.status(&staging)?, 202)
            }
            (Method::Get, "/status") => json_response(&self.status(&staging)?, 200),
            _ => json_response(&ErrorBody::new("not_found", "unknown processor route"), 404),
        }
    }

    async fn alarm(&self) -> worker::Result<Response> {
        let staging = self.staging()?;
        if staging.key()?.is_none() {
            return Response::ok("idle");
        }
        // An error here makes the runtime retry the alarm; the state machine's
        // watchdog alarm covers anything lost in between.
        self.drive(&staging, Event::AlarmFired).await?;
        Response::ok("done")
    }
}

impl DocumentProcessor {
    /// The object's storage, its tables created on the instance's first use.
    fn staging(&self) -> worker::Result<Staging> {
        let staging = Staging::open(self.state.storage().sql(), !self.tables_created.get())?;
        self.tables_created.set(true);
        Ok(staging)
    }

    fn status(&self, staging: &Staging) -> worker::Result<ProcessorStatus> {
        Ok(ProcessorStatus {
            key: staging.key()?,
            status: staging.state()?.status_view(),
        })
    }

    /// The pipeline event for a command; a `process` for an object that no
    /// longer exists removes the document (R2 is the source of truth).
    async fn command_event(&self, command: &IngestCommand) -> worker::Result<Event> {
        let now = now_ms();
        let object = match command {
            IngestCommand::Process {
                object: Some(v), ..
            } if v.etag.is_some() => Some(ObjectVersion {
                etag: v.etag.clone().unwrap_or_default(),
                size: v.size.unwrap_or(0),
                event_time_ms: parse_time_ms(v.event_time.as_deref()).unwrap_or(now),
                sha256: None,
            }),
            IngestCommand::Process { key, .. } => {
                let bucket = self.env.bucket(bindings::DOCUMENTS)?;
                match bucket.head(key.clone()).await? {
                    Some(head) => Some(ObjectVersion {
                        etag: head.etag(),
                        size: head.size(),
                        event_time_ms: head.uploaded().as_millis(),
                        sha256: head
                            .custom_metadata()
                            .ok()
                            .and_then(|m| m.get(SHA256_METADATA).cloned()),
                    }),
                    None => {
                        return Ok(Event::DeleteRequested {
                            event_time_ms: now,
                            reason: run_reason(command.reason()),
                        })
                    }
                }
            }
            IngestCommand::Delete { .. } => None,
        };
        let delete_time = match command {
            IngestCommand::Delete { event_time, .. } => {
                parse_time_ms(event_time.as_deref()).unwrap_or(now)
            }
            IngestCommand::Process { .. } => now,
        };
        command_event(command, object, delete_time)
            .ok_or_else(|| worker::Error::RustError("command without object version".into()))
    }

    /// Feeds `first` to the state machine and performs what it asks, feeding
    /// step results back, until nothing is left to do in this invocation.
    async fn drive(&self, staging: &Staging, first: Event) -> worker::Result<()> {
        let key = staging
            .key()?
            .ok_or_else(|| worker::Error::RustError("processor has no key yet".into()))?;
        let config = PipelineConfig::from_vars(var(&self.env, "INGEST_RETRY_BASE_MS").as_deref());
        let settings = settings(&self.env);
        let mut state = staging.state()?;
        let mut events = VecDeque::from([first]);
        let mut handled = 0;
        while let Some(event) = events.pop_front() {
            handled += 1;
            if handled > MAX_EVENTS_PER_INVOCATION {
                console_error!(
                    "{}",
                    json!({ "level": "error", "event": "processor_event_limit", "key": key })
                );
                break;
            }
            let transition = step(&state, event, now_ms(), &config);
            state = transition.state;
            // Save before acting: a crash mid-action resumes from this state.
            staging.save_state(&state)?;
            let context = StepContext {
                env: &self.env,
                staging,
                key: &key,
                settings,
                now: worker::Date::now().as_millis() as f64,
            };
            for action in transition.actions {
                if let Some(result) = self.perform(&context, action).await? {
                    events.push_back(result);
                }
            }
        }
        Ok(())
    }

    /// Performs one action; step actions report back with their result event.
    async fn perform(&self, cx: &StepContext<'_>, action: Action) -> worker::Result<Option<Event>> {
        let started = now_ms();
        let step_name = action.step().map(PipelineStep::as_str);
        let result = match action {
            Action::ScheduleAlarm { at_ms } => {
                let offset = at_ms.saturating_sub(now_ms()) as i64;
                self.state.storage().set_alarm(offset).await?;
                return Ok(None);
            }
            Action::Download { generation, .. } => Some(match cx.download().await {
                Ok((sha256, bytes_len)) => Event::Downloaded {
                    generation,
                    sha256,
                    bytes_len,
                },
                Err(error) => failed(generation, PipelineStep::Download, error),
            }),
            Action::Chunk {
                generation,
                object,
                sha256,
            } => Some(match cx.chunk(generation, &object, &sha256).await {
                Ok(chunk_count) => Event::Chunked {
                    generation,
                    chunk_count,
                    batches: cx.settings.batch_counts(chunk_count),
                },
                Err(error) => failed(generation, PipelineStep::Chunk, error),
            }),
            Action::EmbedBatch { generation, index } => {
                Some(match cx.embed_batch(generation, index).await {
                    Ok(()) => Event::EmbeddedBatch { generation, index },
                    Err(error) => failed(generation, PipelineStep::Embed, error),
                })
            }
            Action::TagBatch { generation, index } => {
                Some(match cx.tag_batch(generation, index).await {
                    Ok(()) => Event::TaggedBatch { generation, index },
                    Err(error) => failed(generation, PipelineStep::Tag, error),
                })
            }
            Action::CommitGeneration { version } => Some(match cx.commit(version).await {
                Ok(()) => Event::Committed { version },
                Err(error) => failed(version, PipelineStep::Commit, error),
            }),
            Action::DeleteDocument { generation } => Some(match cx.delete_document().await {
                Ok(()) => Event::Deleted { generation },
                Err(error) => failed(generation, PipelineStep::Delete, error),
            }),
            Action::DeletePreviousGeneration { version }
            | Action::DiscardGeneration { version } => {
                // Best effort: leftovers are invisible and reconciliation removes them.
                if let Err(e) = cx.drop_generation(version).await {
                    log_side_effect(cx.key, "drop_generation", &e);
                }
                None
            }
            Action::RecordRun(record) => {
                let outcome = async {
                    let db = cx.env.d1(bindings::DB)?;
                    documents::record_run(&db, cx.key, &record).await
                };
                if let Err(e) = outcome.await {
                    log_side_effect(cx.key, "record_run", &e);
                }
                console_log!(
                    "{}",
                    json!({ "level": "info", "event": "run_finished", "key": cx.key, "run": record })
                );
                None
            }
            Action::MarkDocumentStatus(view) => {
                let outcome = async {
                    let db = cx.env.d1(bindings::DB)?;
                    documents::mark_status(&db, cx.key, &view, cx.now).await
                };
                if let Err(e) = outcome.await {
                    log_side_effect(cx.key, "mark_status", &e);
                }
                None
            }
        };
        if let (Some(step), Some(event)) = (step_name, &result) {
            let ok = !matches!(event, Event::StepFailed { .. });
            console_log!(
                "{}",
                json!({ "level": if ok { "info" } else { "warn" }, "event": "step", "key": cx.key, "step": step, "ok": ok, "ms": now_ms().saturating_sub(started), "result": event })
            );
        }
        Ok(result)
    }
}

fn failed(generation: u64, step: PipelineStep, error: StepError) -> Event {
    Event::StepFailed {
        generation,
        step,
        error,
    }
}

fn log_side_effect(key: &str, what: &str, error: &worker::Error) {
    console_error!(
        "{}",
        json!({ "level": "error", "event": "processor_side_effect_failed", "key": key, "action": what, "error": error.to_string() })
    );
}
