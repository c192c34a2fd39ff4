//! The provider gate: a concurrency limit on provider calls shared by every
//! document's processor, so a bulk upload cannot send the provider more
//! requests at once than it can answer (each processor is its own Durable
//! Object; without a shared limit, 2,800 documents call at once).
//!
//! A processor asks for a lease before an embedding or tagging batch and
//! gives it back after. The gate answers at once: granted, or "come back in
//! N ms" with N estimated from the queue ahead and how long leases are held.
//! Waiters are served in the order they arrived among those due (told to be
//! back by now), so a document's next batch queues behind the others and
//! documents progress in turn, while a slot that frees before the next in
//! line comes back goes to whoever asks first rather than standing idle. Leases expire,
//! so a processor that dies holding one cannot block the gate, and waiters
//! that stop asking lose their place.
//!
//! The state is plain data with the time as an argument: the `IngestGate`
//! Durable Object stores it and calls [`GateState::acquire`] and
//! [`GateState::release`]; tests drive it on a fake clock.

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
    /// Mean hold time, in ms.
    pub mean_hold_ms: u64,
}

impl GateState {
    /// Asks for a lease for `holder` (one batch of one run; asking again with the same
    /// holder is idempotent: an existing lease is extended, a waiter keeps its place).
    pub fn acquire(&mut self, holder: &str, now_ms: u64, settings: &GateSettings) -> Admission {
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
                });
                self.waiting.len() - 1
            }
        };
        // Only waiters ahead that are due (told to be back by now) go first: a slot that
        // frees before the next in line comes back is not left idle.
        let due_ahead = self.waiting[..position]
            .iter()
            .filter(|w| w.due_ms <= now_ms)
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
        // Slots open at about `limit` per mean hold time; this waiter needs
        // `position - free + 1` of them.
        let needed = (position - free + 1) as u64;
        let hold = self.mean_hold_ms.unwrap_or(INITIAL_HOLD_MS).max(1);
        let retry_after_ms =
            (needed.saturating_mul(hold) / limit as u64).clamp(MIN_RETRY_MS, MAX_RETRY_MS);
        let waiter = &mut self.waiting[position];
        waiter.due_ms = now_ms.saturating_add(retry_after_ms);
        waiter.expires_ms = waiter.due_ms.saturating_add(WAITER_GRACE_MS);
        Admission::Wait {
            retry_after_ms,
            ahead: u32::try_from(position).unwrap_or(u32::MAX),
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
            mean_hold_ms: copy.mean_hold_ms.unwrap_or(0),
        }
    }

    /// Drops leases past their end and waiters that did not come back in time.
    fn expire(&mut self, now_ms: u64) {
        let before = self.leases.len();
        self.leases.retain(|l| l.until_ms > now_ms);
        self.expired += (before - self.leases.len()) as u64;
        self.waiting
            .retain(|w| w.expires_ms == 0 || w.expires_ms > now_ms);
    }
}

/// Where processors ask for leases: the `IngestGate` Durable Object in the
/// Worker, [`LocalGate`] in native tests.
#[allow(async_fn_in_trait)]
pub trait ProviderGate {
    /// Asks for a lease for `holder`.
    ///
    /// # Errors
    /// When the gate cannot be reached.
    async fn acquire(&self, holder: &str) -> Result<Admission, StoreError>;

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
    async fn acquire(&self, holder: &str) -> Result<Admission, StoreError> {
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
mod tests {
    use super::*;

    fn settings(limit: u32) -> GateSettings {
        GateSettings {
            limit,
            lease_ms: 60_000,
        }
    }

    #[test]
    fn requests_and_release_answers_keep_their_wire_format() {
        let request = GateRequest {
            holder: "companies/acme/a.md#3:embed:0".into(),
        };
        assert_eq!(
            serde_json::to_string(&request).expect("serializes"),
            r#"{"holder":"companies/acme/a.md#3:embed:0"}"#
        );
        assert_eq!(
            serde_json::to_string(&GateRelease { released: true }).expect("serializes"),
            r#"{"released":true}"#
        );
    }

    fn granted(a: Admission) -> bool {
        matches!(a, Admission::Granted { .. })
    }

    #[test]
    fn grants_up_to_the_limit_then_queues_in_order() {
        let mut gate = GateState::default();
        let s = settings(2);
        assert!(granted(gate.acquire("a", 0, &s)));
        assert!(granted(gate.acquire("b", 0, &s)));
        let Admission::Wait { ahead, .. } = gate.acquire("c", 0, &s) else {
            panic!("third caller must wait");
        };
        assert_eq!(ahead, 0);
        let Admission::Wait { ahead, .. } = gate.acquire("d", 1, &s) else {
            panic!("fourth caller must wait");
        };
        assert_eq!(ahead, 1);
        assert!(gate.release("a", 300));
        // "d" asks first, but "c" is ahead of it and due: one slot, one waiter served.
        assert!(!granted(gate.acquire("d", 301, &s)));
        assert!(granted(gate.acquire("c", 302, &s)));
        assert!(gate.release("b", 400));
        assert!(granted(gate.acquire("d", 401, &s)));
        assert_eq!(gate.stats(401).in_flight, 2);
        assert_eq!(gate.stats(401).waiting, 0);
    }

    #[test]
    fn a_slot_is_not_kept_idle_for_a_waiter_that_is_not_due_yet() {
        let mut gate = GateState::default();
        let s = settings(1);
        assert!(granted(gate.acquire("a", 0, &s)));
        let Admission::Wait { retry_after_ms, .. } = gate.acquire("b", 0, &s) else {
            panic!("must wait");
        };
        assert!(gate.release("a", 10));
        // "b" will ask at `retry_after_ms`; "c" asks before that and gets the free slot.
        assert!(granted(gate.acquire("c", retry_after_ms - 1, &s)));
        // Once due, "b" goes before later arrivals.
        assert!(!granted(gate.acquire("d", retry_after_ms, &s)));
        assert!(gate.release("c", retry_after_ms + 1));
        assert!(!granted(gate.acquire("d", retry_after_ms + 2, &s)));
        assert!(granted(gate.acquire("b", retry_after_ms + 3, &s)));
    }

    #[test]
    fn asking_again_is_idempotent() {
        let mut gate = GateState::default();
        let s = settings(1);
        assert!(granted(gate.acquire("a", 0, &s)));
        // A retried request (its answer was lost) gets the same lease, extended.
        assert_eq!(
            gate.acquire("a", 10, &s),
            Admission::Granted { until_ms: 60_010 }
        );
        assert_eq!(gate.stats(10).in_flight, 1);
        assert!(!granted(gate.acquire("b", 10, &s)));
        assert!(!granted(gate.acquire("b", 20, &s)));
        assert_eq!(gate.stats(20).waiting, 1);
    }

    #[test]
    fn releasing_twice_or_after_expiry_changes_nothing() {
        let mut gate = GateState::default();
        let s = settings(1);
        assert!(granted(gate.acquire("a", 0, &s)));
        assert!(gate.release("a", 50));
        assert!(!gate.release("a", 60));
        assert!(granted(gate.acquire("b", 70, &s)));
        // "b" dies holding its lease: it expires, "c" gets the slot, and b's late
        // release does not free c's.
        assert!(!granted(gate.acquire("c", 80, &s)));
        assert!(granted(gate.acquire("c", 60_071, &s)));
        assert!(!gate.release("b", 60_100));
        assert!(!granted(gate.acquire("d", 60_101, &s)));
        assert_eq!(gate.stats(60_101).expired, 1);
    }

    #[test]
    fn a_waiter_that_stops_asking_loses_its_place() {
        let mut gate = GateState::default();
        let s = settings(1);
        assert!(granted(gate.acquire("a", 0, &s)));
        let Admission::Wait { retry_after_ms, .. } = gate.acquire("gone", 0, &s) else {
            panic!("must wait");
        };
        assert!(!granted(gate.acquire("next", 1, &s)));
        gate.release("a", 10);
        // "gone" never comes back: once its grace has passed, "next" is first.
        let later = retry_after_ms + WAITER_GRACE_MS + 1;
        assert!(granted(gate.acquire("next", later, &s)));
    }

    #[test]
    fn waits_follow_the_queue_and_the_hold_time() {
        let mut gate = GateState::default();
        let s = settings(2);
        for (i, holder) in ["a", "b"].iter().enumerate() {
            assert!(granted(gate.acquire(holder, i as u64, &s)));
        }
        gate.release("a", 400);
        gate.release("b", 401);
        // Mean hold ≈ 400 ms and 2 slots: the first waiter needs one slot (≈ 200 ms), the
        // sixth needs six (three rounds of 400 ms).
        for holder in ["c", "d"] {
            assert!(granted(gate.acquire(holder, 500, &s)));
        }
        let waits: Vec<u64> = (0..6)
            .map(|i| match gate.acquire(&format!("w{i}"), 500, &s) {
                Admission::Wait { retry_after_ms, .. } => retry_after_ms,
                Admission::Granted { .. } => panic!("no slot is free"),
            })
            .collect();
        assert!(waits.windows(2).all(|w| w[0] <= w[1]), "{waits:?}");
        assert!((150..=250).contains(&waits[0]), "{waits:?}");
        assert!((1_100..=1_300).contains(&waits[5]), "{waits:?}");
    }

    #[test]
    fn never_more_leases_than_the_limit_in_any_interleaving() {
        // A deterministic pseudo-random schedule of 20 holders asking, releasing and dying.
        let s = GateSettings {
            limit: 3,
            lease_ms: 1_000,
        };
        let mut gate = GateState::default();
        let mut seed = 0x9e37_79b9_u64;
        let mut holding: Vec<String> = Vec::new();
        let mut now = 0;
        let mut done = 0;
        for _ in 0..20_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            now += seed % 40;
            let who = format!("h{}", (seed >> 8) % 20);
            match (seed >> 20) % 5 {
                0..=2 => {
                    if granted(gate.acquire(&who, now, &s)) && !holding.contains(&who) {
                        holding.push(who);
                    }
                }
                3 => {
                    if let Some(i) = holding.iter().position(|h| *h == who) {
                        holding.swap_remove(i);
                        if gate.release(&who, now) {
                            done += 1;
                        }
                    }
                }
                // Dies: never releases; its lease must expire.
                _ => holding.retain(|h| *h != who),
            }
            assert!(gate.stats(now).in_flight <= 3);
        }
        // The gate kept serving: slots came back by release and by expiry.
        let stats = gate.stats(now);
        assert!(done > 200, "{done} releases");
        assert!(stats.granted > 500 && stats.expired > 50, "{stats:?}");
    }
}
