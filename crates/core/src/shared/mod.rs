//! The few things every flow needs; no flow logic: the storage ports and
//! the clock the drivers share ([`storage`]), calendar arithmetic
//! ([`calendar`]) and the key a client is known by ([`client`]).

pub mod calendar;
pub mod client;
pub mod storage;
