//! The queue consumer's decision per message: hand a document command to its
//! processor, advance a reconciliation run, dead-letter what can never
//! succeed, and record dead letters — then ack or retry with a delay.
//!
//! Nothing is acked before it is safely handed on or recorded; a message
//! that can never succeed is never retried forever.

use super::settings::IngestSettings;
use super::store::{DeadLetter, DocumentStore};
use crate::ingest::message::{
    parse_ingest_message, parse_queue_message, retry_delay_seconds, IngestCommand, QueueMessage,
    ReconcileContinuation,
};
use crate::shared::storage::{Clock, EventLog, IngestQueue, Level, StoreError};
use serde::Serialize;
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

/// Which consumer a queue's deliveries go to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueRole {
    /// Document commands and reconciliation pages: handed on.
    Ingest,
    /// Messages out of retries or malformed: recorded.
    DeadLetter,
}

impl QueueRole {
    /// The role of the queue named `queue_name`, given the configured dead-letter queue's name.
    #[must_use]
    pub fn of(queue_name: &str, dlq_name: &str) -> Self {
        if queue_name == dlq_name {
            Self::DeadLetter
        } else {
            Self::Ingest
        }
    }
}

/// What the queue consumer works with.
#[allow(async_fn_in_trait)]
pub trait ConsumerPorts {
    /// The document processors.
    type Processors: ProcessorGateway;
    /// The reconciler's continuation pages.
    type Reconciler: ReconcilePages;
    /// The dead-letter queue malformed messages are forwarded to.
    type DeadLetters: IngestQueue;
    /// The D1 side, where dead letters are recorded.
    type Documents: DocumentStore;
    /// Time.
    type Clock: Clock;
    /// Log lines.
    type Log: EventLog;

    /// The document processors.
    fn processors(&self) -> &Self::Processors;
    /// The reconciler.
    fn reconciler(&self) -> &Self::Reconciler;
    /// The dead-letter queue.
    fn dead_letters(&self) -> &Self::DeadLetters;
    /// The D1 side, where dead letters are recorded (`None`: it could not be bound).
    fn documents(&self) -> Option<&Self::Documents>;
    /// Time.
    fn clock(&self) -> &Self::Clock;
    /// Log lines.
    fn log(&self) -> &Self::Log;
}

/// A delivered message, by the role of its queue: handed on from the ingest queue, recorded
/// from the dead-letter queue (retried after `settings.dead_letter_retry_seconds` when D1
/// cannot be bound to record it).
pub async fn consume(
    delivery: Delivery<'_>,
    queue_name: &str,
    role: QueueRole,
    settings: &IngestSettings,
    ports: &impl ConsumerPorts,
) -> Verdict {
    match role {
        QueueRole::Ingest => {
            consume_ingest(
                delivery,
                queue_name,
                ports.processors(),
                ports.reconciler(),
                ports.dead_letters(),
                ports.log(),
            )
            .await
        }
        QueueRole::DeadLetter => match ports.documents() {
            Some(documents) => {
                consume_dead_letter(
                    delivery,
                    queue_name,
                    documents,
                    ports.reconciler(),
                    ports.clock(),
                    ports.log(),
                )
                .await
            }
            None => Verdict::Retry {
                delay_seconds: settings.dead_letter_retry_seconds,
            },
        },
    }
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

/// The message the consumer forwards to the dead-letter queue itself: the original body and
/// why it can never succeed ([`read_dead_letter`] reads it back).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeadLetterEnvelope {
    /// Why, and where it came from.
    pub dead_letter: DeadLetterReason,
    /// The original body (`null` when it could not be read).
    pub body: Value,
}

/// Why a forwarded message is a dead letter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeadLetterReason {
    /// The queue it was delivered on.
    pub queue: String,
    /// Its id there.
    pub message_id: String,
    /// Why it can never succeed.
    pub error: String,
    /// Its deliveries so far.
    pub attempts: u32,
}

impl DeadLetterEnvelope {
    /// The queue message.
    #[must_use]
    pub fn to_value(&self) -> Value {
        json!(self)
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
    let letter = DeadLetterEnvelope {
        dead_letter: DeadLetterReason {
            queue: queue_name.to_owned(),
            message_id: delivery.id.to_owned(),
            error: error.to_owned(),
            attempts: delivery.attempts,
        },
        body,
    }
    .to_value();
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::fakes::{
        FakeDatabase, FakeQueue, Lines, ManualClock, NoReconciler, RecordingGateway,
    };
    use pollster::block_on;
    use serde_json::json;

    struct Ports {
        processors: RecordingGateway,
        dead_letters: FakeQueue,
        documents: Option<FakeDatabase<'static>>,
        clock: ManualClock,
        log: Lines,
    }

    impl ConsumerPorts for Ports {
        type Processors = RecordingGateway;
        type Reconciler = NoReconciler;
        type DeadLetters = FakeQueue;
        type Documents = FakeDatabase<'static>;
        type Clock = ManualClock;
        type Log = Lines;

        fn processors(&self) -> &RecordingGateway {
            &self.processors
        }
        fn reconciler(&self) -> &NoReconciler {
            &NoReconciler
        }
        fn dead_letters(&self) -> &FakeQueue {
            &self.dead_letters
        }
        fn documents(&self) -> Option<&FakeDatabase<'static>> {
            self.documents.as_ref()
        }
        fn clock(&self) -> &ManualClock {
            &self.clock
        }
        fn log(&self) -> &Lines {
            &self.log
        }
    }

    fn ports(documents: Option<FakeDatabase<'static>>) -> Ports {
        Ports {
            processors: RecordingGateway::default(),
            dead_letters: FakeQueue::default(),
            documents,
            clock: ManualClock::at(1_700_000_000_000),
            log: Lines::default(),
        }
    }

    #[test]
    fn a_forwarded_dead_letter_keeps_its_wire_format() {
        let body = json!({ "type": "process" });
        let letter = DeadLetterEnvelope {
            dead_letter: DeadLetterReason {
                queue: "portfolio-ingest".into(),
                message_id: "m1".into(),
                error: "missing key".into(),
                attempts: 2,
            },
            body: body.clone(),
        };
        let written = json!({
            "dead_letter": { "queue": "portfolio-ingest", "message_id": "m1", "error": "missing key", "attempts": 2 },
            "body": body,
        });
        assert_eq!(letter.to_value(), written);
        assert_eq!(
            serde_json::to_string(&letter.to_value()).expect("serializes"),
            serde_json::to_string(&written).expect("serializes")
        );
        let read = read_dead_letter(
            Delivery {
                id: "dlq-1",
                attempts: 1,
                body: Ok(&written),
            },
            "portfolio-ingest-dlq",
        );
        assert_eq!(
            (read.message_id.as_str(), read.error.as_str(), read.attempts),
            ("m1", "missing key", 2)
        );
    }

    #[test]
    fn the_dead_letter_queue_is_told_apart_by_its_configured_name() {
        assert_eq!(
            QueueRole::of("portfolio-ingest-dlq", "portfolio-ingest-dlq"),
            QueueRole::DeadLetter
        );
        assert_eq!(
            QueueRole::of("portfolio-ingest", "portfolio-ingest-dlq"),
            QueueRole::Ingest
        );
    }

    #[test]
    fn ingest_deliveries_are_handed_to_their_processor() {
        let ports = ports(None);
        let body =
            json!({ "type": "process", "key": "companies/acme/a.md", "reason": "admin:put" });
        let delivery = Delivery {
            id: "m1",
            attempts: 1,
            body: Ok(&body),
        };
        let verdict = block_on(consume(
            delivery,
            "portfolio-ingest",
            QueueRole::Ingest,
            &IngestSettings::default(),
            &ports,
        ));
        assert_eq!(verdict, Verdict::Ack);
        assert_eq!(ports.processors.handed.borrow().len(), 1);
    }

    #[test]
    fn dead_letters_are_recorded_or_retried_after_the_configured_delay() {
        let body =
            json!({ "type": "process", "key": "companies/acme/a.md", "reason": "admin:put" });
        let delivery = Delivery {
            id: "m1",
            attempts: 3,
            body: Ok(&body),
        };
        let recorded = ports(Some(FakeDatabase::default()));
        let verdict = block_on(consume(
            delivery,
            "dlq",
            QueueRole::DeadLetter,
            &IngestSettings::default(),
            &recorded,
        ));
        assert_eq!(verdict, Verdict::Ack);
        assert!(recorded.processors.handed.borrow().is_empty());

        let unbound = ports(None);
        let settings = IngestSettings::default();
        assert_eq!(settings.dead_letter_retry_seconds, 60);
        let verdict = block_on(consume(
            delivery,
            "dlq",
            QueueRole::DeadLetter,
            &settings,
            &unbound,
        ));
        assert_eq!(verdict, Verdict::Retry { delay_seconds: 60 });
        let slower = IngestSettings {
            dead_letter_retry_seconds: 120,
            ..settings
        };
        let verdict = block_on(consume(
            delivery,
            "dlq",
            QueueRole::DeadLetter,
            &slower,
            &unbound,
        ));
        assert_eq!(verdict, Verdict::Retry { delay_seconds: 120 });
    }
}
