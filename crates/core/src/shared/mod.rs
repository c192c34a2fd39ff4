//! The few things every flow needs; no flow logic: the storage ports and
//! the clock the drivers share ([`storage`]) and calendar arithmetic
//! ([`calendar`]).

pub mod calendar;
pub mod storage;
