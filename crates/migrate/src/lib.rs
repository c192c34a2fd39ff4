#![doc = include_str!("../README.md")]
//!
//! Library behind the `migrate` binary. `main.rs` only parses arguments and
//! wires these modules together.

pub mod backup;
pub mod clock;
pub mod convert;
pub mod corpus;
pub mod export;
pub mod import;
pub mod manifest;
pub mod postgres;
pub mod records;
pub mod rollback;
pub mod runlog;
pub mod source;
pub mod target;
pub mod target_spec;
pub mod verify;
