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
pub mod availability;
pub mod deployment;
pub mod metrics;
pub mod rollout;

/// How long the operations records outside the metrics table are kept before the daily cron
/// deletes them: resolved, notified alerts and rollout shadow comparisons (with the failover
/// counts of their days). One value for both: 30 days covers a monthly review of incidents
/// and of a rollout, and these tables stay small (one row per alert or sampled comparison).
/// A constant, not a var: nobody has needed another window.
pub const OPERATIONS_RETENTION_MS: u64 = 30 * 24 * 60 * 60 * 1_000;
