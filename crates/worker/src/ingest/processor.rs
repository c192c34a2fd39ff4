//! `DocumentProcessor`: one Durable Object per R2 key, so updates to one
//! document serialise. A shell over `portfolio_core::ingest::Processor`: it
//! builds the adapters, then `fetch` and `alarm` delegate. Each call's data
//! points (steps, runs, provider calls) are written after it, through the
//! object's `waitUntil`.

use crate::config;
use crate::error::json_response;
use crate::ingest::gate::GateClient;
use crate::providers::{metered_chat, metered_embedder, MeteredChat, MeteredEmbedder};
use crate::store::d1::D1Documents;
use crate::store::metrics::Metrics;
use crate::store::processor_storage::DurableStorage;
use crate::store::r2::R2Documents;
use crate::store::{vector_index_from_env, ConfiguredIndex, ConsoleLog, WorkerClock};
use portfolio_core::api::ErrorBody;
use portfolio_core::ingest::message::IngestCommand;
use portfolio_core::ingest::watchdog::WakeRequest;
use portfolio_core::ingest::{CommandError, Gating, IngestPorts, Processor, Tagger};
use portfolio_core::providers::ProviderKind;
use portfolio_core::shared::storage::StoreError;
use worker::{durable_object, DurableObject, Env, Method, Request, Response, State};

// `State` has no `Debug`; the object is never printed.
#[allow(missing_debug_implementations)]
#[durable_object]
pub struct DocumentProcessor {
    state: State,
    env: Env,
    /// Whether this instance has created its storage tables.
    tables_created: std::cell::Cell<bool>,
    /// Whether this instance's alarm handler is running (a watchdog wake then
    /// leaves the alarm to it: the platform reports none while it runs).
    alarm_running: std::cell::Cell<bool>,
    /// The vars parsed by this instance's first invocation: its `env` never changes, and a
    /// bulk ingestion runs several alarms per document.
    config: std::cell::OnceCell<config::ServiceConfig>,
}

fn platform(e: StoreError) -> worker::Error {
    worker::Error::RustError(e.to_string())
}

impl DurableObject for DocumentProcessor {
    fn new(state: State, env: Env) -> Self {
        Self {
            state,
            env,
            tables_created: std::cell::Cell::new(false),
            alarm_running: std::cell::Cell::new(false),
            config: std::cell::OnceCell::new(),
        }
    }

    async fn fetch(&self, mut req: Request) -> worker::Result<Response> {
        if (req.method(), req.path().as_str()) == (Method::Post, "/wake") {
            return self.wake(req.json::<WakeRequest>().await).await;
        }
        let command = match (req.method(), req.path().as_str()) {
            (Method::Post, "/commands") => match req.json::<IngestCommand>().await {
                Ok(command) => Some(command),
                Err(e) => return json_response(&ErrorBody::new("bad_command", e.to_string()), 400),
            },
            (Method::Get, "/status") => None,
            _ => {
                return json_response(&ErrorBody::new("not_found", "unknown processor route"), 404)
            }
        };
        let processor = self.processor()?;
        let answer = match command {
            None => json_response(&processor.status().await.map_err(platform)?, 200),
            Some(command) => match processor.command(&command).await {
                Ok(status) => json_response(&status, 202),
                Err(e @ CommandError::WrongProcessor { .. }) => {
                    json_response(&ErrorBody::new("wrong_processor", e.to_string()), 409)
                }
                Err(CommandError::Store(e)) => Err(platform(e)),
            },
        };
        self.state.wait_until(processor.ports.metrics.flush_later());
        answer
    }

    async fn alarm(&self) -> worker::Result<Response> {
        // An error makes the runtime retry the alarm; the state machine's
        // watchdog alarm covers anything lost in between.
        let _running = AlarmRunning::enter(&self.alarm_running);
        let processor = self.processor()?;
        let outcome = processor.alarm().await;
        self.state.wait_until(processor.ports.metrics.flush_later());
        outcome.map_err(platform)?;
        Response::ok("done")
    }
}

/// Marks the alarm handler as running until dropped (also on an early return).
struct AlarmRunning<'a>(&'a std::cell::Cell<bool>);

impl<'a> AlarmRunning<'a> {
    fn enter(flag: &'a std::cell::Cell<bool>) -> Self {
        flag.set(true);
        Self(flag)
    }
}

impl Drop for AlarmRunning<'_> {
    fn drop(&mut self) {
        self.0.set(false);
    }
}

/// The platform services one invocation works with: the processor's ports.
struct Adapters<'e> {
    storage: DurableStorage,
    documents: D1Documents,
    objects: R2Documents,
    index: ConfiguredIndex,
    embedder: Result<MeteredEmbedder, String>,
    chat: Result<MeteredChat, String>,
    chat_kind: ProviderKind,
    metrics: Metrics,
    gate: GateClient<'e>,
}

impl<'e> IngestPorts for Adapters<'e> {
    type Storage = DurableStorage;
    type Documents = D1Documents;
    type Objects = R2Documents;
    type Index = ConfiguredIndex;
    type Embedder = MeteredEmbedder;
    type Chat = MeteredChat;
    type Clock = WorkerClock;
    type Log = ConsoleLog;
    type Metrics = Metrics;
    type Gate = GateClient<'e>;

    fn storage(&self) -> &DurableStorage {
        &self.storage
    }
    fn documents(&self) -> &D1Documents {
        &self.documents
    }
    fn objects(&self) -> &R2Documents {
        &self.objects
    }
    fn index(&self) -> &ConfiguredIndex {
        &self.index
    }
    fn embedder(&self) -> Result<&MeteredEmbedder, &str> {
        self.embedder.as_ref().map_err(String::as_str)
    }
    fn tagger(&self) -> Tagger<'_, MeteredChat> {
        Tagger::for_provider(self.chat_kind, self.chat.as_ref().map_err(String::as_str))
    }
    fn clock(&self) -> &WorkerClock {
        &WorkerClock
    }
    fn log(&self) -> &ConsoleLog {
        &ConsoleLog
    }
    fn metrics(&self) -> &Metrics {
        &self.metrics
    }
    fn gate(&self) -> &GateClient<'e> {
        &self.gate
    }
}

impl DocumentProcessor {
    /// `POST /wake` from the watchdog cron: re-arms a dropped alarm, else changes nothing.
    async fn wake(&self, body: worker::Result<WakeRequest>) -> worker::Result<Response> {
        let request = match body {
            Ok(request) => request,
            Err(e) => return json_response(&ErrorBody::new("bad_wake", e.to_string()), 400),
        };
        let outcome = self
            .processor()?
            .wake(&request.key, self.alarm_running.get())
            .await;
        match outcome {
            Ok(outcome) => json_response(&outcome, 200),
            Err(e @ CommandError::WrongProcessor { .. }) => {
                json_response(&ErrorBody::new("wrong_processor", e.to_string()), 409)
            }
            Err(CommandError::Store(e)) => Err(platform(e)),
        }
    }

    /// The processor over this invocation's adapters, built from the typed configuration.
    fn processor(&self) -> worker::Result<Processor<Adapters<'_>>> {
        let storage = DurableStorage::open(self.state.storage(), !self.tables_created.get())
            .map_err(platform)?;
        self.tables_created.set(true);
        let env = &self.env;
        let config = config::load_once(&self.config, env)?;
        let metrics = Metrics::from_env(env, config.metrics.sink, config.metrics.buffer);
        let ports = Adapters {
            storage,
            documents: D1Documents::from_env(env).map_err(platform)?,
            objects: R2Documents::from_env(env).map_err(platform)?,
            index: vector_index_from_env(env, config)
                .map_err(|e| worker::Error::RustError(format!("vector index: {e}")))?,
            embedder: metered_embedder(env, config, &metrics).map_err(|e| e.to_string()),
            chat: metered_chat(env, config, &metrics).map_err(|e| e.to_string()),
            chat_kind: config.chat_provider,
            metrics,
            gate: GateClient::new(env),
        };
        Ok(Processor {
            ports,
            pipeline: config.pipeline,
            settings: config.ingest,
            gating: Gating::for_providers(
                config.provider_gate,
                config.embedding_provider,
                config.chat_provider,
            ),
        })
    }
}
