//! Ingestion's drivers: the queue consumer's per-message decision and the
//! DocumentProcessor's drive loop and steps, generic over the storage they
//! need (`store`), so the Worker only supplies adapters and entry points.
//!
//! Decisions about *what* runs next stay in `crate::ingest::pipeline` (the pure state
//! machine); these drivers perform its actions and never keep state of their own.

pub mod chunk;
pub mod consumer;
pub mod gate;
pub mod message;
pub mod pipeline;
pub mod points;
pub mod ports;
pub mod processor;
pub mod settings;
mod steps;
pub mod store;
pub mod tags;
pub mod watchdog;

#[cfg(test)]
mod fakes;
#[cfg(test)]
mod tests;

pub use ports::{Gating, IngestPorts, Processor, Tagger};
pub use processor::{resolve_command, CommandError, ProcessorStatus, MAX_EVENTS_PER_INVOCATION};
pub use steps::{generation_vector_ids, MAX_CHUNKS_PER_DOCUMENT};
