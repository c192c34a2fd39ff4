//! The queue consumer's decision per message: hand a document command to its
//! processor, advance a reconciliation run, dead-letter what can never
//! succeed, and record dead letters — then ack or retry with a delay.
//!
//! Nothing is acked before it is safely handed on or recorded; a message
//! that can never succeed is never retried forever.

use super::store::{DeadLetter, DocumentStore};
use crate::ingest::message::{
    parse_ingest_message, parse_queue_message, retry_delay_seconds, IngestCommand, QueueMessage,
    ReconcileContinuation,
};
use crate::shared::storage::{Clock, EventLog, IngestQueue, Level, StoreError};
use serde_json::{json, Value};

/// What to do with a delivered message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Done with it.
    Ack,
    /// Deliver it again after this many seconds.
    Retry {
        /// Delay before the next delivery.
        delay_seconds: u32,
    },
}

impl Verdict {
    fn retry(attempts: u32) -> Self {
        Self::Retry {
            delay_seconds: retry_delay_seconds(attempts),
        }
    }
}

/// One delivered message.
#[derive(Debug, Clone, Copy)]
pub struct Delivery<'a> {
    /// The queue's message id.
    pub id: &'a str,
    /// Deliveries so far, from 1.
    pub attempts: u32,
    /// The JSON body, or why it could not be read.
    pub body: Result<&'a Value, &'a str>,
}

/// The processors, one per document key.
#[allow(async_fn_in_trait)]
pub trait ProcessorGateway {
    /// Hands the command to the processor of its key; `Ok` once it accepted it.
    async fn hand_off(&self, command: &IngestCommand) -> Result<(), StoreError>;
}

/// The reconciler, for its continuation messages on the ingest queue.
#[allow(async_fn_in_trait)]
pub trait ReconcilePages {
    /// Processes the page the continuation names (`attempts`: its deliveries).
    async fn continue_run(
        &self,
        continuation: &ReconcileContinuation,
        attempts: u32,
    ) -> Result<(), StoreError>;
    /// A continuation ran out of retries: its run can never finish.
    async fn dead_lettered(
        &self,
        continuation: &ReconcileContinuation,
        error: &str,
    ) -> Result<(), StoreError>;
}

/// A message on the ingest queue.
pub async fn consume_ingest(
    delivery: Delivery<'_>,
    queue_name: &str,
    processors: &impl ProcessorGateway,
    reconciler: &impl ReconcilePages,
    dead_letters: &impl IngestQueue,
    log: &impl EventLog,
) -> Verdict {
    let parsed = delivery
        .body
        .map_err(str::to_owned)
        .and_then(|body| parse_queue_message(body).map_err(|e| e.to_string()));
    let command = match parsed {
        Ok(QueueMessage::Document(command)) => command,
        Ok(QueueMessage::Reconcile(continuation)) => {
            return match reconciler
                .continue_run(&continuation, delivery.attempts)
                .await
            {
                Ok(()) => Verdict::Ack,
                Err(_) => Verdict::retry(delivery.attempts),
            };
        }
        Err(error) => {
            return dead_letter_malformed(delivery, queue_name, &error, dead_letters, log).await
        }
    };
    match processors.hand_off(&command).await {
        Ok(()) => {
            log.log(
                Level::Info,
                json!({ "event": "ingest_handed_off", "message_id": delivery.id, "key": command.key(),
                        "reason": command.reason(), "attempts": delivery.attempts }),
            );
            Verdict::Ack
        }
        Err(error) => {
            let verdict = Verdict::retry(delivery.attempts);
            log.log(
                Level::Warn,
                json!({ "event": "ingest_hand_off_failed", "message_id": delivery.id, "key": command.key(),
                        "attempts": delivery.attempts, "retry_in_s": retry_delay_seconds(delivery.attempts),
                        "error": error.to_string() }),
            );
            verdict
        }
    }
}

/// A malformed message can never succeed: forward it to the dead-letter
/// queue with the reason, then ack. If even that fails, retry (never drop it).
async fn dead_letter_malformed(
    delivery: Delivery<'_>,
    queue_name: &str,
    error: &str,
    dead_letters: &impl IngestQueue,
    log: &impl EventLog,
) -> Verdict {
    let body = delivery.body.ok().cloned().unwrap_or(Value::Null);
    log.log(
        Level::Error,
        json!({ "event": "ingest_message_malformed", "message_id": delivery.id, "queue": queue_name,
                "error": error, "body": body }),
    );
    let letter = json!({
        "dead_letter": { "queue": queue_name, "message_id": delivery.id, "error": error, "attempts": delivery.attempts },
        "body": body,
    });
    match dead_letters.send_batch(&[letter]).await {
        Ok(()) => Verdict::Ack,
        Err(e) => {
            log.log(
                Level::Error,
                json!({ "event": "dead_letter_send_failed", "message_id": delivery.id, "error": e.to_string() }),
            );
            Verdict::retry(delivery.attempts)
        }
    }
}

/// The dead letter a delivery on the dead-letter queue stands for. Letters we
/// forwarded ourselves carry their reason; others ran out of retries.
#[must_use]
pub fn read_dead_letter(delivery: Delivery<'_>, queue_name: &str) -> DeadLetter {
    let body = delivery.body.ok().cloned().unwrap_or(Value::Null);
    let (original, error, message_id, attempts) = match body.get("dead_letter") {
        Some(meta) => (
            body.get("body").cloned().unwrap_or(Value::Null),
            meta.get("error")
                .and_then(Value::as_str)
                .unwrap_or("malformed")
                .to_owned(),
            meta.get("message_id")
                .and_then(Value::as_str)
                .unwrap_or(delivery.id)
                .to_owned(),
            meta.get("attempts").and_then(Value::as_u64).unwrap_or(0),
        ),
        None => (
            body.clone(),
            "out of retries".to_owned(),
            delivery.id.to_owned(),
            0,
        ),
    };
    let document_key = parse_ingest_message(&original)
        .ok()
        .map(|c| c.key().to_owned());
    DeadLetter {
        queue: queue_name.to_owned(),
        message_id,
        document_key,
        body: original,
        error,
        attempts,
    }
}

/// A message on the dead-letter queue: recorded in D1 (and on its document
/// while that still waits for it), then acked.
pub async fn consume_dead_letter(
    delivery: Delivery<'_>,
    queue_name: &str,
    documents: &impl DocumentStore,
    reconciler: &impl ReconcilePages,
    clock: &impl Clock,
    log: &impl EventLog,
) -> Verdict {
    let letter = read_dead_letter(delivery, queue_name);
    // A reconciliation page out of retries: its run can never finish.
    if let Ok(QueueMessage::Reconcile(continuation)) = parse_queue_message(&letter.body) {
        if let Err(e) = reconciler.dead_lettered(&continuation, &letter.error).await {
            log.log(
                Level::Error,
                json!({ "event": "reconcile_dead_letter_not_recorded", "run_id": continuation.run_id, "error": e.to_string() }),
            );
        }
    }
    match documents.record_dead_letter(&letter, clock.now_ms()).await {
        Ok(()) => {
            log.log(
                Level::Warn,
                json!({ "event": "dead_letter_recorded", "message_id": letter.message_id,
                        "key": letter.document_key, "error": letter.error }),
            );
            Verdict::Ack
        }
        Err(e) => {
            log.log(
                Level::Error,
                json!({ "event": "dead_letter_record_failed", "message_id": letter.message_id, "error": e.to_string() }),
            );
            Verdict::retry(delivery.attempts)
        }
    }
}
