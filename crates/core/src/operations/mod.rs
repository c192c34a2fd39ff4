//! Running the service, not serving it: what it measures ([`metrics`]: the
//! data points and the reports made of them), what it warns about
//! ([`alerts`]: conditions, the alert state machine and its notices), how
//! traffic moves over from the legacy chat API ([`rollout`]: the client
//! split, failover and the daily report), and which Worker version is
//! answering ([`deployment`]).
//!
//! Pure, like the rest of the crate: the Worker records, notifies and
//! proxies.

pub mod alerts;
pub mod deployment;
pub mod metrics;
pub mod rollout;
