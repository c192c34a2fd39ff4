//! Ingestion's entry points: the queue consumer that hands documents to their
//! processor, and the per-document `DocumentProcessor` Durable Object, and the `IngestGate` object that
//! limits provider calls across documents. Both
//! are shells over `portfolio_core::ingest`.

pub mod consumer;
pub mod gate;
pub mod processor;
pub mod watchdog;

/// Base URL for fetch-style calls to a Durable Object stub (only the path matters).
pub const PROCESSOR_ORIGIN: &str = "https://document-processor";
