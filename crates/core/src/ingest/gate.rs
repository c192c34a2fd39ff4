//! The provider gate: a concurrency limit on provider calls shared by every
//! document's processor, so a bulk upload cannot send the provider more
//! requests at once than it can answer (each processor is its own Durable
//! Object; without a shared limit, 2,800 documents call at once).
//!
//! A processor asks for a lease before an embedding or tagging batch and
//! gives it back after. It may ask the gate to *hold* its request: the gate
//! then answers only when a lease is granted to it or the hold ends, and a
//! slot given back is handed to the first held waiter at once, inside the
//! release ([`GateState::hand_off`]), so no slot idles between a release and
//! the next waiter's retry. A request that is not held (or whose hold ended)
//! is answered at once: granted, or "come back in N ms" with N estimated from
//! the queue ahead and how long leases are held. Waiters are served in the
//! order they arrived among those due (held, or told to be back by now), so
//! documents progress in turn. Leases expire, so a processor that dies holding
//! one cannot block the gate, and waiters that stop asking lose their place.
//!
//! The state is plain data with the time as an argument: the `IngestGate`
//! Durable Object stores it and holds the open requests; tests drive it on a
//! fake clock. It never decides anything about a document.

use serde::{Deserialize, Serialize};

use crate::shared::storage::StoreError;

/// Default number of provider calls in flight at once, across all documents.
pub const DEFAULT_GATE_LIMIT: u32 = 8;

/// Default lease length: longer than one batch call with the provider
/// client's own retries (4 attempts of at most 30 s each, plus backoff).
pub const DEFAULT_LEASE_MS: u64 = 3 * 60 * 1_000;

/// Shortest "come back in" answer.
pub const MIN_RETRY_MS: u64 = 50;

/// Longest "come back in" answer (a waiter never sleeps longer than this).
pub const MAX_RETRY_MS: u64 = 10_000;

/// How late a waiter may come back before it loses its place in the queue.
pub const WAITER_GRACE_MS: u64 = 2_000;

/// Longest the gate holds a request open waiting for a lease; the processor
/// then sleeps [`MIN_RETRY_MS`] on an alarm and asks again, keeping its place.
///
/// The caller is a processor's alarm handler, which may run for 15 minutes of
/// wall time, and a request to a Durable Object has no wall-time limit while
/// its caller stays connected; waiting costs no CPU time on either side
/// (<https://developers.cloudflare.com/durable-objects/platform/limits/>,
/// "Wall time limits by invocation type"). Awaiting the gate's answer opens
/// the processor's input gate, so its other requests (commands, status) are
/// served meanwhile, as during a provider call
/// (<https://developers.cloudflare.com/durable-objects/best-practices/rules-of-durable-objects/>,
/// "Understand how input and output gates work"). 30 s keeps a waiting
/// processor to one alarm per 30 s instead of one per retry, and bounds how
/// long a lease freed by expiry alone (its holder died) waits for the next
/// call to the gate to be handed on.
pub const MAX_HOLD_MS: u64 = 30_000;

/// Hold time assumed before any lease was given back.
const INITIAL_HOLD_MS: u64 = 500;

/// The gate's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GateSettings {
    /// Calls in flight at once (>= 1).
    pub limit: u32,
    /// How long a lease lasts unless given back.
    pub lease_ms: u64,
}

impl Default for GateSettings {
    fn default() -> Self {
        Self {
            limit: DEFAULT_GATE_LIMIT,
            lease_ms: DEFAULT_LEASE_MS,
        }
    }
}

/// The gate's answer to a request for a lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "admission", rename_all = "snake_case")]
pub enum Admission {
    /// Go ahead; the lease lasts until `until_ms` unless given back earlier.
    Granted {
        /// When the lease expires.
        until_ms: u64,
    },
    /// Ask again in `retry_after_ms`.
    Wait {
        /// How long to wait before asking again.
        retry_after_ms: u64,
        /// Waiters ahead of this one.
        ahead: u32,
    },
}

/// The body of a request to the gate for `holder`'s lease (to take or give back): the one
/// wire format both sides of the `IngestGate` object read and write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GateRequest {
    /// The batch asking (`key#generation:step:index`).
    pub holder: String,
    /// For an acquire: how long the gate may hold the request open for a lease (capped at
    /// [`MAX_HOLD_MS`]). Absent (an older processor, or a release): answered at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_ms: Option<u64>,
}

/// A lease handed to a held waiter when a slot freed: the gate answers its open request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandOff {
    /// The waiter that got the lease.
    pub holder: String,
    /// When the lease expires.
    pub until_ms: u64,
}

/// The gate's answer to a release: whether `holder` held a lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GateRelease {
    /// A lease was given back.
    pub released: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Lease {
    holder: String,
    granted_ms: u64,
    until_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Waiter {
    holder: String,
    /// When it was told to ask again: from then on, it goes before those behind it.
    #[serde(default)]
    due_ms: u64,
    /// It loses its place if it has not asked again by then.
    expires_ms: u64,
    /// Its request is held open until then: a freed slot is handed to it at once.
    #[serde(default)]
    held_until_ms: u64,
}

impl Waiter {
    fn held(&self, now_ms: u64) -> bool {
        self.held_until_ms > now_ms
    }
}

/// What the gate holds: leases out, waiters in order, and the mean hold time.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GateState {
    leases: Vec<Lease>,
    waiting: Vec<Waiter>,
    /// Exponentially weighted mean of how long leases were held, in ms.
    mean_hold_ms: Option<u64>,
    /// Leases granted since the state was created.
    granted: u64,
    /// Leases that expired without being given back.
    expired: u64,
    /// Leases handed to held waiters (part of `granted`).
    #[serde(default)]
    handed_off: u64,
}

/// Counters for the admin view and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct GateStats {
    /// Leases out now.
    pub in_flight: u32,
    /// Waiters in the queue now.
    pub waiting: u32,
    /// Leases granted so far.
    pub granted: u64,
    /// Leases that expired without being given back.
    pub expired: u64,
    /// Leases handed to held waiters at a release (part of `granted`).
    pub handed_off: u64,
    /// Waiters whose request is held open now.
    pub held: u32,
    /// Mean hold time, in ms.
    pub mean_hold_ms: u64,
}

impl GateState {
    /// Asks for a lease for `holder` (one batch of one run; asking again with the same
    /// holder is idempotent: an existing lease is extended, a waiter keeps its place), to be
    /// answered at once.
    pub fn acquire(&mut self, holder: &str, now_ms: u64, settings: &GateSettings) -> Admission {
        self.ask(holder, now_ms, settings, None)
    }

    /// Asks for a lease like [`acquire`](Self::acquire), and when it must wait, keeps the
    /// request held until `until_ms`: the waiter is then served by [`hand_off`](Self::hand_off)
    /// (its `Wait` answer is not sent; the caller keeps the request open) or, when the hold ends
    /// first, by [`end_hold`](Self::end_hold).
    pub fn hold(
        &mut self,
        holder: &str,
        now_ms: u64,
        settings: &GateSettings,
        until_ms: u64,
    ) -> Admission {
        let until_ms = until_ms.min(now_ms.saturating_add(MAX_HOLD_MS));
        self.ask(holder, now_ms, settings, Some(until_ms))
    }

    /// `holder`'s held request ends without a hand-off (its hold elapsed, or the gate lost
    /// it): granted if a slot is free for it now, else "come back in [`MIN_RETRY_MS`]", keeping
    /// its place in the queue.
    pub fn end_hold(&mut self, holder: &str, now_ms: u64, settings: &GateSettings) -> Admission {
        match self.ask(holder, now_ms, settings, None) {
            Admission::Wait { ahead, .. } => {
                if let Some(waiter) = self.waiting.iter_mut().find(|w| w.holder == holder) {
                    waiter.due_ms = now_ms.saturating_add(MIN_RETRY_MS);
                    waiter.expires_ms = waiter.due_ms.saturating_add(WAITER_GRACE_MS);
                }
                Admission::Wait {
                    retry_after_ms: MIN_RETRY_MS,
                    ahead,
                }
            }
            granted => granted,
        }
    }

    /// Hands each free slot to the first held waiter in queue order (after dropping expired
    /// leases): call it after every change, and answer each returned holder's open request.
    pub fn hand_off(&mut self, now_ms: u64, settings: &GateSettings) -> Vec<HandOff> {
        self.expire(now_ms);
        let limit = settings.limit.max(1) as usize;
        let mut handed = Vec::new();
        while self.leases.len() < limit {
            let Some(position) = self.waiting.iter().position(|w| w.held(now_ms)) else {
                break;
            };
            let waiter = self.waiting.remove(position);
            let until_ms = now_ms.saturating_add(settings.lease_ms);
            self.leases.push(Lease {
                holder: waiter.holder.clone(),
                granted_ms: now_ms,
                until_ms,
            });
            self.granted += 1;
            self.handed_off += 1;
            handed.push(HandOff {
                holder: waiter.holder,
                until_ms,
            });
        }
        handed
    }

    /// No request is held any more (a new gate instance: the open requests died with the old
    /// one). Held waiters become waiters due now, keeping their places for the grace period.
    pub fn forget_holds(&mut self, now_ms: u64) {
        for waiter in self.waiting.iter_mut().filter(|w| w.held_until_ms > 0) {
            waiter.held_until_ms = 0;
            waiter.due_ms = now_ms;
            waiter.expires_ms = now_ms.saturating_add(WAITER_GRACE_MS);
        }
    }

    fn ask(
        &mut self,
        holder: &str,
        now_ms: u64,
        settings: &GateSettings,
        hold_until_ms: Option<u64>,
    ) -> Admission {
        self.expire(now_ms);
        let until_ms = now_ms.saturating_add(settings.lease_ms);
        if let Some(lease) = self.leases.iter_mut().find(|l| l.holder == holder) {
            lease.until_ms = until_ms;
            return Admission::Granted { until_ms };
        }
        let limit = settings.limit.max(1) as usize;
        let free = limit.saturating_sub(self.leases.len());
        let position = match self.waiting.iter().position(|w| w.holder == holder) {
            Some(position) => position,
            None => {
                self.waiting.push(Waiter {
                    holder: holder.to_owned(),
                    due_ms: now_ms,
                    expires_ms: 0,
                    held_until_ms: 0,
                });
                self.waiting.len() - 1
            }
        };
        // Only waiters ahead that are due (held, or told to be back by now) go first: a slot
        // that frees before the next in line comes back is not left idle.
        let due_ahead = self.waiting[..position]
            .iter()
            .filter(|w| w.due_ms <= now_ms || w.held(now_ms))
            .count();
        if due_ahead < free {
            self.waiting.remove(position);
            self.leases.push(Lease {
                holder: holder.to_owned(),
                granted_ms: now_ms,
                until_ms,
            });
            self.granted += 1;
            return Admission::Granted { until_ms };
        }
        let ahead = u32::try_from(position).unwrap_or(u32::MAX);
        let waiter = &mut self.waiting[position];
        if let Some(hold_until) = hold_until_ms.filter(|&t| t > now_ms) {
            waiter.due_ms = now_ms;
            waiter.held_until_ms = hold_until;
            waiter.expires_ms = hold_until.saturating_add(WAITER_GRACE_MS);
            return Admission::Wait {
                retry_after_ms: hold_until - now_ms,
                ahead,
            };
        }
        // Slots open at about `limit` per mean hold time; this waiter needs
        // `position - free + 1` of them.
        let needed = (position - free + 1) as u64;
        let hold = self.mean_hold_ms.unwrap_or(INITIAL_HOLD_MS).max(1);
        let retry_after_ms =
            (needed.saturating_mul(hold) / limit as u64).clamp(MIN_RETRY_MS, MAX_RETRY_MS);
        waiter.held_until_ms = 0;
        waiter.due_ms = now_ms.saturating_add(retry_after_ms);
        waiter.expires_ms = waiter.due_ms.saturating_add(WAITER_GRACE_MS);
        Admission::Wait {
            retry_after_ms,
            ahead,
        }
    }

    /// Gives `holder`'s lease back. Returns whether it held one (a release after
    /// the lease expired, or a second release, changes nothing).
    pub fn release(&mut self, holder: &str, now_ms: u64) -> bool {
        let Some(position) = self.leases.iter().position(|l| l.holder == holder) else {
            return false;
        };
        let lease = self.leases.swap_remove(position);
        let held = now_ms.saturating_sub(lease.granted_ms);
        // Weight 1/4 for the newest sample: follows a provider that slows down within a few calls.
        self.mean_hold_ms = Some(match self.mean_hold_ms {
            Some(mean) => (mean.saturating_mul(3).saturating_add(held)) / 4,
            None => held,
        });
        true
    }

    /// Counters as of `now_ms`.
    #[must_use]
    pub fn stats(&self, now_ms: u64) -> GateStats {
        let mut copy = self.clone();
        copy.expire(now_ms);
        GateStats {
            in_flight: u32::try_from(copy.leases.len()).unwrap_or(u32::MAX),
            waiting: u32::try_from(copy.waiting.len()).unwrap_or(u32::MAX),
            granted: copy.granted,
            expired: copy.expired,
            handed_off: copy.handed_off,
            held: u32::try_from(copy.waiting.iter().filter(|w| w.held(now_ms)).count())
                .unwrap_or(u32::MAX),
            mean_hold_ms: copy.mean_hold_ms.unwrap_or(0),
        }
    }

    /// Drops leases past their end and waiters that did not come back in time.
    fn expire(&mut self, now_ms: u64) {
        let before = self.leases.len();
        self.leases.retain(|l| l.until_ms > now_ms);
        self.expired += (before - self.leases.len()) as u64;
        self.waiting
            .retain(|w| w.expires_ms == 0 || w.expires_ms > now_ms || w.held(now_ms));
    }
}

/// Where processors ask for leases: the `IngestGate` Durable Object in the
/// Worker, [`LocalGate`] in native tests.
#[allow(async_fn_in_trait)]
pub trait ProviderGate {
    /// Asks for a lease for `holder`. The gate may hold the request open for up to `wait_ms`
    /// (0: answer at once) and answers when a lease is handed to it or the wait is over.
    ///
    /// # Errors
    /// When the gate cannot be reached, or went away while holding the request.
    async fn acquire(&self, holder: &str, wait_ms: u64) -> Result<Admission, StoreError>;

    /// Gives `holder`'s lease back.
    ///
    /// # Errors
    /// When the gate cannot be reached (the lease then expires on its own).
    async fn release(&self, holder: &str) -> Result<(), StoreError>;
}

/// A gate in memory on a shared clock, for native tests and the fakes.
#[derive(Debug)]
pub struct LocalGate<'a, K> {
    state: std::cell::RefCell<GateState>,
    settings: GateSettings,
    clock: &'a K,
}

impl<'a, K: crate::shared::storage::Clock> LocalGate<'a, K> {
    /// An empty gate with `settings`, reading time from `clock`.
    #[must_use]
    pub fn new(settings: GateSettings, clock: &'a K) -> Self {
        Self {
            state: std::cell::RefCell::new(GateState::default()),
            settings,
            clock,
        }
    }

    /// Counters now.
    #[must_use]
    pub fn stats(&self) -> GateStats {
        self.state.borrow().stats(self.clock.now_ms())
    }
}

impl<K: crate::shared::storage::Clock> ProviderGate for LocalGate<'_, K> {
    /// Answers at once: nothing else runs while a native test awaits it.
    async fn acquire(&self, holder: &str, _wait_ms: u64) -> Result<Admission, StoreError> {
        let now = self.clock.now_ms();
        Ok(self.state.borrow_mut().acquire(holder, now, &self.settings))
    }

    async fn release(&self, holder: &str) -> Result<(), StoreError> {
        let now = self.clock.now_ms();
        self.state.borrow_mut().release(holder, now);
        Ok(())
    }
}

#[cfg(test)]
mod tests;
