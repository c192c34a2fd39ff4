//! Pure decisions of the portfolio document service.
//!
//! Everything that can be decided without I/O lives here and is tested
//! natively: the Worker (`crates/worker`) only performs the I/O these modules
//! ask for. Nothing in this crate may read a clock, the network or storage.

pub mod admin;
pub mod api;
pub mod config;
pub mod document;
pub mod index;
pub mod ingest;
pub mod operations;
pub mod providers;
pub mod query;
pub mod reconcile;
pub mod shared;
