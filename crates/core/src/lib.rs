//! Pure decisions of the portfolio document service.
//!
//! Everything that can be decided without I/O lives here and is tested
//! natively: the Worker (`crates/worker`) only performs the I/O these modules
//! ask for. Nothing in this crate may read a clock, the network or storage.

pub mod admin;
pub mod alerts;
pub mod api;
pub mod calendar;
pub mod chunk;
pub mod companies;
pub mod config;
pub mod deployment;
pub mod document;
pub mod index;
pub mod ingest;
pub mod keys;
pub mod metrics;
pub mod prompts;
pub mod providers;
pub mod query;
pub mod reconcile;
pub mod rollout;
pub mod storage;
pub mod tags;
