//! The ingestion pipeline of one document as a pure state machine: the
//! DocumentProcessor Durable Object's decisions, without its I/O. It owns
//! states, retries, backoff and supersede rules; it never touches R2, D1,
//! providers or a clock (`now_ms` is an argument).
//!
//! # Protocol for the Durable Object (one object per R2 key)
//!
//! 1. Load [`ProcessorState`] (JSON, [`ProcessorState::from_json`]) or start from
//!    [`ProcessorState::new`].
//! 2. Call [`step`] with the event (queue message, admin call, alarm, or the
//!    result of an action it performed), `now_ms` and the [`PipelineConfig`].
//! 3. **Save the returned state**, then perform the actions in order. A step
//!    action is always preceded by a `ScheduleAlarm` (the watchdog), and the
//!    attempt is counted in the saved state before the step runs. An alarm
//!    that finds a step still in flight means the invocation running it died
//!    without a result (a trap, a stack overflow, out of memory, an eviction:
//!    alarms of one object never overlap), so that attempt failed: the same
//!    (idempotent) action is issued again at once, and after the last attempt
//!    the run fails with an error that says so.
//! 4. Feed each step action's outcome back as an [`Event`] (or
//!    [`Event::StepFailed`]) and repeat. A success schedules the next step on an
//!    alarm at `now`, so every alarm invocation performs exactly one bounded
//!    step (one download, one chunking, one embedding or tagging batch, one commit).
//!
//! Download and chunking are two steps: the unchanged-content check needs only
//! the hash, so an unchanged document never gets chunked, and each alarm does
//! one thing. A crash at any point leaves the previous generation serving (new
//! rows are invisible until `CommitGeneration` flips `documents.active_version`)
//! and the run resumable from the last completed step.
//!
//! # Which request wins
//!
//! Requests are ordered by the object's event time (`ObjectVersion::event_time_ms`,
//! or the delete event's time):
//! - older than the newest request already accepted: **stale**, ignored (an
//!   out-of-order queue delivery);
//! - same etag as the running run, a deferred request or (when idle) the live
//!   generation, without a stronger `force`: **duplicate**, ignored;
//! - otherwise (newer or equal time, different etag, or `force`): **newer**. It
//!   supersedes the running run with a fresh generation number (generations
//!   increase monotonically per document; results of the old one are ignored
//!   because results carry their generation). While a commit or delete runs, the
//!   newer request waits in `deferred` and starts when that step ends.
//!
//! A delete supersedes any run; a request after a delete (not older than it)
//! starts a fresh run.

mod action;
mod backoff;
mod event;
mod state;
mod transition;

pub use action::{Action, RunRecord};
pub use backoff::{
    OverloadWait, PipelineConfig, PipelineConfigError, RetryPolicy, VectorWait,
    DEFAULT_BASE_DELAY_MS, DEFAULT_MAX_ATTEMPTS, DEFAULT_MAX_DELAY_MS, DEFAULT_OVERLOAD_BASE_MS,
    DEFAULT_OVERLOAD_GIVE_UP_MS, DEFAULT_OVERLOAD_MAX_MS, DEFAULT_STEP_WATCHDOG_MS,
    DEFAULT_VECTOR_WAIT_BASE_MS, DEFAULT_VECTOR_WAIT_MAX_MS,
};
pub use event::{BatchCounts, Event, ObjectVersion, PipelineStep, Request, RunReason, StepError};
pub use state::{
    InFlight, LiveGeneration, ProcessorState, Progress, PublicStatus, Run, RunOutcome, Stage,
    StateDecodeError, StatusView, StepTiming, SCHEMA_VERSION,
};
pub use transition::{step, Transition};
