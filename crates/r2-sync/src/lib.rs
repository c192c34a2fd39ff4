#![doc = include_str!("../README.md")]
//!
//! Library behind the `r2-sync` binary: walking a folder, hashing, planning
//! and executing a sync against a [`target::SyncTarget`]. The binary
//! (`main.rs`) only parses arguments and wires these pieces together.

pub mod execute;
pub mod hash_cache;
pub mod key;
pub mod plan;
pub mod profile;
pub mod remote;
pub mod report;
pub mod retry;
pub mod run;
pub mod target;
pub mod walk;

pub use execute::{execute_plan, ExecuteOptions, OpResult, OpStatus, ProgressSink};
pub use hash_cache::StateCache;
pub use plan::{plan_sync, ChangeKind, DeleteGuard, LocalEntry, PlanError, RemoteEntry, SyncPlan};
pub use run::{run_sync, Confirmation, SyncRequest, SyncUi};
pub use target::{RemoteObject, SyncTarget, TargetError};
pub use walk::{walk_folder, LocalFile, WalkOptions};
