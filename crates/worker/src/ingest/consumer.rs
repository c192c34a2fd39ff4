//! Queue entry point: reads each delivered message and lets
//! `portfolio_core::ingest::consumer` decide, then acks or retries it.
//! Hands commands to the document's processor through its Durable Object stub.

use crate::bindings;
use crate::config::{self, ServiceConfig};
use crate::ingest::post_to_processor;
use crate::store::d1::D1Documents;
use crate::store::metrics::Metrics;
use crate::store::queue::QueueProducer;
use crate::store::{ConsoleLog, WorkerClock};
use crate::{alerts, reconcile};
use portfolio_core::ingest::consumer::{
    consume, ConsumerPorts, Delivery, ProcessorGateway, QueueRole, ReconcilePages, Verdict,
};
use portfolio_core::ingest::message::{IngestCommand, ReconcileContinuation};
use portfolio_core::ingest::settings::MISCONFIGURED_RETRY_SECONDS;
use portfolio_core::shared::storage::{EventLog, IngestQueue, Level, StoreError};
use serde_json::{json, Value};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use worker::worker_sys::{
    Context as ContextSys, Message as MessageSys, MessageBatch as MessageBatchSys,
};
use worker::Env;

/// `attempts`, which workers-rs does not expose; it starts at 1.
fn attempts(raw: &MessageSys) -> u32 {
    js_sys::Reflect::get(raw, &JsValue::from_str("attempts"))
        .ok()
        .and_then(|v| v.as_f64())
        .map_or(1, |a| a.max(1.0) as u32)
}

fn settle(raw: &MessageSys, id: &str, verdict: Verdict) {
    let outcome = match verdict {
        Verdict::Ack => raw.ack(),
        Verdict::Retry { delay_seconds } => {
            let options = js_sys::Object::new();
            let _ = js_sys::Reflect::set(
                &options,
                &JsValue::from_str("delaySeconds"),
                &JsValue::from_f64(f64::from(delay_seconds)),
            );
            raw.retry(options.into())
        }
    };
    if let Err(e) = outcome {
        ConsoleLog.log(
            Level::Error,
            json!({ "event": "queue_settle_failed", "message_id": id, "verdict": format!("{verdict:?}"), "error": format!("{e:?}") }),
        );
    }
}

/// Queue entry point (exported under the name workers-rs' shim dispatches to).
/// workers-rs 0.8's `#[event(queue)]` does not expose a message's `attempts`,
/// which the retry delay is computed from, hence the raw types.
#[wasm_bindgen(wasm_bindgen_futures = worker::wasm_bindgen_futures)]
pub async fn queue(batch: MessageBatchSys, env: Env, ctx: ContextSys) -> Result<JsValue, JsValue> {
    let queue_name = batch.queue().map(String::from).unwrap_or_default();
    let config = match config::load(&env) {
        Ok(config) => config,
        Err(e) => {
            // Nothing can be handled as configured: keep every message for later.
            ConsoleLog.log(
                Level::Error,
                json!({ "event": "queue_batch_misconfigured", "queue": queue_name, "error": e.to_string() }),
            );
            for raw in batch.messages()?.iter() {
                let raw: MessageSys = raw.unchecked_into();
                let id = raw.id().map(String::from).unwrap_or_default();
                settle(
                    &raw,
                    &id,
                    Verdict::Retry {
                        delay_seconds: MISCONFIGURED_RETRY_SECONDS,
                    },
                );
            }
            return Ok(JsValue::UNDEFINED);
        }
    };
    let metrics = Metrics::from_env(&env, config.metrics.sink, config.metrics.buffer);
    let role = QueueRole::of(&queue_name, &config.dlq_name);
    let ports = Adapters {
        processors: Processors { env: &env },
        reconciler: Reconciler {
            env: &env,
            config: &config,
            metrics: &metrics,
        },
        dead_letters: DeadLetterQueue { env: &env },
        // Only dead letters are recorded in D1.
        documents: match role {
            QueueRole::DeadLetter => D1Documents::from_env(&env).ok(),
            QueueRole::Ingest => None,
        },
    };
    for raw in batch.messages()?.iter() {
        let raw: MessageSys = raw.unchecked_into();
        let id = raw.id().map(String::from).unwrap_or_default();
        let body = raw
            .body()
            .map_err(|e| format!("{e:?}"))
            .and_then(|b| serde_wasm_bindgen::from_value::<Value>(b).map_err(|e| e.to_string()));
        let delivery = Delivery {
            id: &id,
            attempts: attempts(&raw),
            body: body.as_ref().map_err(String::as_str),
        };
        let verdict = consume(delivery, &queue_name, role, &config.ingest, &ports).await;
        settle(&raw, &id, verdict);
    }
    if role == QueueRole::DeadLetter {
        // Dead letters are alarming at once, not at the next cron.
        alerts::evaluate(&env, &config, "dead_letter").await;
    }
    let flush = metrics.flush_later();
    let promise = wasm_bindgen_futures::future_to_promise(async move {
        flush.await;
        Ok(JsValue::UNDEFINED)
    });
    if ctx.wait_until(&promise).is_err() {
        // Without waitUntil the promise still runs until the batch settles.
        ConsoleLog.log(
            Level::Warn,
            json!({ "event": "metrics_wait_until_failed", "queue": queue_name }),
        );
    }
    Ok(JsValue::UNDEFINED)
}

/// What the consumer works with, for one batch.
struct Adapters<'a> {
    processors: Processors<'a>,
    reconciler: Reconciler<'a>,
    dead_letters: DeadLetterQueue<'a>,
    documents: Option<D1Documents>,
}

impl<'a> ConsumerPorts for Adapters<'a> {
    type Processors = Processors<'a>;
    type Reconciler = Reconciler<'a>;
    type DeadLetters = DeadLetterQueue<'a>;
    type Documents = D1Documents;
    type Clock = WorkerClock;
    type Log = ConsoleLog;

    fn processors(&self) -> &Processors<'a> {
        &self.processors
    }
    fn reconciler(&self) -> &Reconciler<'a> {
        &self.reconciler
    }
    fn dead_letters(&self) -> &DeadLetterQueue<'a> {
        &self.dead_letters
    }
    fn documents(&self) -> Option<&D1Documents> {
        self.documents.as_ref()
    }
    fn clock(&self) -> &WorkerClock {
        &WorkerClock
    }
    fn log(&self) -> &ConsoleLog {
        &ConsoleLog
    }
}

/// The dead-letter queue, bound lazily: only malformed messages need it.
struct DeadLetterQueue<'a> {
    env: &'a Env,
}

impl IngestQueue for DeadLetterQueue<'_> {
    async fn send_batch(&self, messages: &[Value]) -> Result<(), StoreError> {
        QueueProducer::from_env(self.env, bindings::INGEST_DLQ)?
            .send_batch(messages)
            .await
    }
}

/// The document processors (one Durable Object per key).
struct Processors<'a> {
    env: &'a Env,
}

impl ProcessorGateway for Processors<'_> {
    async fn hand_off(&self, command: &IngestCommand) -> Result<(), StoreError> {
        let mut response = post_to_processor(
            self.env,
            command.key(),
            "/commands",
            command,
            "processor hand-off",
        )
        .await?;
        if (200..300).contains(&response.status_code()) {
            Ok(())
        } else {
            let text = response.text().await.unwrap_or_default();
            Err(StoreError::transient(
                "processor hand-off",
                format!("processor answered {}: {text}", response.status_code()),
            ))
        }
    }
}

/// The reconciler's continuation pages.
struct Reconciler<'a> {
    env: &'a Env,
    config: &'a ServiceConfig,
    metrics: &'a Metrics,
}

impl ReconcilePages for Reconciler<'_> {
    async fn continue_run(
        &self,
        continuation: &ReconcileContinuation,
        attempts: u32,
    ) -> Result<(), StoreError> {
        reconcile::continue_run(self.env, self.config, continuation, attempts, self.metrics)
            .await
            .map_err(|e| StoreError::transient("reconcile page", e))
    }

    async fn dead_lettered(
        &self,
        continuation: &ReconcileContinuation,
        error: &str,
    ) -> Result<(), StoreError> {
        reconcile::dead_lettered(self.env, self.config, continuation, error, self.metrics)
            .await
            .map_err(|e| StoreError::transient("reconcile run", e))
    }
}
