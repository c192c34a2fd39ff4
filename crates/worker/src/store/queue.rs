//! The ingest queue (and its dead-letter queue) behind
//! `portfolio_core::shared::storage::IngestQueue`.
//!
//! Messages go out as JSON built with the JSON-compatible serializer: the
//! default one turns objects into JS `Map`s, which arrive at the consumer as `{}`.

use portfolio_core::ingest::message::IngestCommand;
use portfolio_core::shared::storage::{IngestQueue, StoreError};
use serde::Serialize;
use serde_json::Value;
use worker::{BatchMessageBuilder, Env, Queue, QueueContentType, RawMessageBuilder};

/// A queue producer binding.
pub struct QueueProducer {
    queue: Queue,
    binding: &'static str,
}

impl std::fmt::Debug for QueueProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "QueueProducer({})", self.binding)
    }
}

impl QueueProducer {
    /// The producer bound as `binding` (`INGEST_QUEUE`, `INGEST_DLQ`).
    ///
    /// # Errors
    /// When the binding is missing.
    pub fn from_env(env: &Env, binding: &'static str) -> Result<Self, StoreError> {
        let queue = env
            .queue(binding)
            .map_err(|e| StoreError::permanent(format!("queue binding {binding}"), e))?;
        Ok(Self { queue, binding })
    }

    /// Sends one ingest command, in core's wire format (the only one the consumer reads).
    pub async fn send(&self, command: &IngestCommand) -> Result<(), StoreError> {
        let js = command
            .serialize(&serde_wasm_bindgen::Serializer::json_compatible())
            .map_err(|e| StoreError::permanent("queue message", e))?;
        self.queue
            .send_raw(RawMessageBuilder::new(js).build_with_content_type(QueueContentType::Json))
            .await
            .map_err(|e| StoreError::transient(format!("send to {}", self.binding), e))
    }
}

impl IngestQueue for QueueProducer {
    async fn send_batch(&self, messages: &[Value]) -> Result<(), StoreError> {
        if messages.is_empty() {
            return Ok(());
        }
        let serializer = serde_wasm_bindgen::Serializer::json_compatible();
        let raw = messages
            .iter()
            .map(|m| {
                m.serialize(&serializer).map(|js| {
                    RawMessageBuilder::new(js).build_with_content_type(QueueContentType::Json)
                })
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| StoreError::permanent("queue message", e))?;
        self.queue
            .send_raw_batch(BatchMessageBuilder::new().messages(raw).build())
            .await
            .map_err(|e| StoreError::transient(format!("send batch to {}", self.binding), e))
    }
}
