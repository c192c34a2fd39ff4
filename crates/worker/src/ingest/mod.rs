//! Ingestion: the queue consumer that hands documents to their processor, and
//! the per-document `DocumentProcessor` Durable Object with its steps.

pub mod consumer;
mod documents;
pub mod processor;
mod staging;
mod steps;
mod vectors;

/// Base URL for fetch-style calls to a Durable Object stub (only the path matters).
pub const PROCESSOR_ORIGIN: &str = "https://document-processor";
