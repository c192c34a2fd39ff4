//! Retry policy: exponential backoff with full jitter, `Retry-After` honoured and capped.
//!
//! Owns how long to wait and when to give up; the jitter comes from a seed and the clock is a
//! function passed in, so the policy is deterministic in tests. Must never read a real clock.

use super::error::ProviderError;
use super::transport::Sleeper;
use std::cell::Cell;
use std::future::Future;

/// Default attempts per call, the first included.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 4;
/// Default backoff before the first retry, before jitter.
pub const DEFAULT_BASE_DELAY_MS: u64 = 500;
/// Default cap on one backoff delay.
pub const DEFAULT_MAX_DELAY_MS: u64 = 8_000;
/// Default cap on a provider's `Retry-After`: a Durable Object alarm step should stay short,
/// a longer wait is better left to the queue's own retry delay.
pub const DEFAULT_MAX_RETRY_AFTER_MS: u64 = 20_000;

/// Deterministic jitter from a seed (SplitMix64); the Worker seeds it per request.
#[derive(Debug, Clone)]
pub struct SeededJitter {
    state: Cell<u64>,
}

impl SeededJitter {
    /// A jitter source starting from `seed`.
    #[must_use]
    pub fn new(seed: u64) -> Self {
        Self {
            state: Cell::new(seed),
        }
    }

    /// Next value in `[0, 1)`.
    pub fn next_unit(&self) -> f64 {
        let next = self.state.get().wrapping_add(0x9E37_79B9_7F4A_7C15);
        self.state.set(next);
        let mut z = next;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        // The top 53 bits fill an f64 mantissa exactly.
        #[allow(clippy::cast_precision_loss)]
        let unit = (z >> 11) as f64 / (1u64 << 53) as f64;
        unit
    }
}

/// When to retry and how long to wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    max_attempts: u32,
    base_delay_ms: u64,
    max_delay_ms: u64,
    max_retry_after_ms: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            base_delay_ms: DEFAULT_BASE_DELAY_MS,
            max_delay_ms: DEFAULT_MAX_DELAY_MS,
            max_retry_after_ms: DEFAULT_MAX_RETRY_AFTER_MS,
        }
    }
}

impl RetryPolicy {
    /// A policy that never retries.
    #[must_use]
    pub fn no_retries() -> Self {
        Self {
            max_attempts: 1,
            ..Self::default()
        }
    }

    /// Attempts per call including the first (at least 1).
    #[must_use]
    pub fn with_max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// Backoff ceiling before the first retry; doubles each retry.
    #[must_use]
    pub fn with_base_delay_ms(mut self, ms: u64) -> Self {
        self.base_delay_ms = ms;
        self
    }

    /// Cap on one backoff delay.
    #[must_use]
    pub fn with_max_delay_ms(mut self, ms: u64) -> Self {
        self.max_delay_ms = ms;
        self
    }

    /// Cap on a provider's `Retry-After`.
    #[must_use]
    pub fn with_max_retry_after_ms(mut self, ms: u64) -> Self {
        self.max_retry_after_ms = ms;
        self
    }

    /// Attempts per call including the first.
    #[must_use]
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// Full-jitter backoff before retry number `retry` (0 for the first): `unit * min(max, base * 2^retry)`.
    #[must_use]
    pub fn backoff_ms(&self, retry: u32, unit: f64) -> u64 {
        let ceiling = self
            .base_delay_ms
            .saturating_mul(1u64.checked_shl(retry).unwrap_or(u64::MAX))
            .min(self.max_delay_ms);
        #[allow(
            clippy::cast_precision_loss,
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss
        )]
        let delay = (ceiling as f64 * unit.clamp(0.0, 1.0)).floor() as u64;
        delay
    }

    /// The wait before the next attempt after `attempt` (1-based) failed with `err`, or `None`
    /// to give up (permanent error or attempts used up).
    #[must_use]
    pub fn delay_after(
        &self,
        attempt: u32,
        err: &ProviderError,
        unit: f64,
        now_unix_ms: u64,
    ) -> Option<u64> {
        if !err.is_retryable() || attempt >= self.max_attempts {
            return None;
        }
        Some(match err.retry_after() {
            Some(after) => after.delay_ms(now_unix_ms).min(self.max_retry_after_ms),
            None => self.backoff_ms(attempt.saturating_sub(1), unit),
        })
    }
}

/// Runs attempts under a [`RetryPolicy`], sleeping with the injected [`Sleeper`].
#[derive(Debug)]
pub struct Retrier<S> {
    policy: RetryPolicy,
    sleeper: S,
    jitter: SeededJitter,
    now_unix_ms: fn() -> u64,
}

fn epoch_clock() -> u64 {
    0
}

impl<S: Sleeper> Retrier<S> {
    /// A retrier with `policy`, sleeping via `sleeper`, jitter seeded with `seed`; its clock
    /// reads 0 until [`Retrier::with_clock`] (only an HTTP-date `Retry-After` needs it).
    #[must_use]
    pub fn new(policy: RetryPolicy, sleeper: S, seed: u64) -> Self {
        Self {
            policy,
            sleeper,
            jitter: SeededJitter::new(seed),
            now_unix_ms: epoch_clock,
        }
    }

    /// Sets the clock (milliseconds since the Unix epoch) used for HTTP-date `Retry-After`.
    #[must_use]
    pub fn with_clock(mut self, now_unix_ms: fn() -> u64) -> Self {
        self.now_unix_ms = now_unix_ms;
        self
    }

    /// The policy in force.
    #[must_use]
    pub fn policy(&self) -> &RetryPolicy {
        &self.policy
    }

    /// After `attempt` (1-based) failed with `err`: sleeps and returns true to retry, or
    /// returns false at once to give up.
    pub async fn pause_before_retry(&self, attempt: u32, err: &ProviderError) -> bool {
        let unit = self.jitter.next_unit();
        match self
            .policy
            .delay_after(attempt, err, unit, (self.now_unix_ms)())
        {
            Some(ms) => {
                self.sleeper.sleep(ms).await;
                true
            }
            None => false,
        }
    }

    /// Calls `attempt(n)` for n = 1, 2, … until it succeeds or the policy gives up.
    ///
    /// # Errors
    /// The last attempt's error.
    pub async fn run<T, F, Fut>(&self, mut attempt: F) -> Result<T, ProviderError>
    where
        F: FnMut(u32) -> Fut,
        Fut: Future<Output = Result<T, ProviderError>>,
    {
        let mut n = 1;
        loop {
            match attempt(n).await {
                Ok(value) => return Ok(value),
                Err(err) => {
                    if !self.pause_before_retry(n, &err).await {
                        return Err(err);
                    }
                }
            }
            n += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::retry_after::RetryAfter;
    use crate::providers::transport::TransportError;
    use std::cell::RefCell;

    #[derive(Debug, Default)]
    struct RecordingSleeper(RefCell<Vec<u64>>);

    impl Sleeper for RecordingSleeper {
        async fn sleep(&self, ms: u64) {
            self.0.borrow_mut().push(ms);
        }
    }

    fn status(code: u16, retry_after: Option<RetryAfter>) -> ProviderError {
        ProviderError::Status {
            provider: "t",
            status: code,
            body_excerpt: String::new(),
            retry_after,
        }
    }

    #[test]
    fn retry_after_parses_seconds_and_dates() {
        assert_eq!(RetryAfter::parse(" 120 "), Some(RetryAfter::Seconds(120)));
        let date = RetryAfter::parse("Wed, 21 Oct 2015 07:28:00 GMT").unwrap();
        assert_eq!(
            date,
            RetryAfter::At {
                unix_secs: 1_445_412_480
            }
        );
        assert_eq!(date.delay_ms(1_445_412_470_000), 10_000);
        assert_eq!(
            date.delay_ms(1_445_412_490_000),
            0,
            "past dates mean no wait"
        );
        assert_eq!(RetryAfter::parse("soon"), None);
        assert_eq!(RetryAfter::parse("-5"), None);
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_and_scales_with_jitter() {
        let policy = RetryPolicy::default()
            .with_base_delay_ms(100)
            .with_max_delay_ms(1_000);
        assert_eq!(policy.backoff_ms(0, 1.0), 100);
        assert_eq!(policy.backoff_ms(1, 1.0), 200);
        assert_eq!(policy.backoff_ms(3, 1.0), 800);
        assert_eq!(policy.backoff_ms(4, 1.0), 1_000);
        assert_eq!(
            policy.backoff_ms(60, 1.0),
            1_000,
            "no overflow on large retry numbers"
        );
        assert_eq!(policy.backoff_ms(3, 0.5), 400);
        assert_eq!(policy.backoff_ms(3, 0.0), 0);
    }

    #[test]
    fn delay_after_honours_retryability_attempts_and_retry_after_cap() {
        let policy = RetryPolicy::default()
            .with_max_attempts(3)
            .with_max_retry_after_ms(5_000);
        assert_eq!(policy.delay_after(1, &status(400, None), 0.5, 0), None);
        assert_eq!(
            policy.delay_after(3, &status(500, None), 0.5, 0),
            None,
            "attempts used up"
        );
        assert_eq!(
            policy.delay_after(1, &status(429, Some(RetryAfter::Seconds(2))), 0.9, 0),
            Some(2_000)
        );
        assert_eq!(
            policy.delay_after(1, &status(429, Some(RetryAfter::Seconds(60))), 0.9, 0),
            Some(5_000)
        );
        let at = RetryAfter::At { unix_secs: 100 };
        assert_eq!(
            policy.delay_after(2, &status(503, Some(at)), 0.9, 99_000),
            Some(1_000)
        );
    }

    #[test]
    fn seeded_jitter_is_deterministic_and_in_range() {
        let a = SeededJitter::new(42);
        let b = SeededJitter::new(42);
        let xs: Vec<f64> = (0..100).map(|_| a.next_unit()).collect();
        let ys: Vec<f64> = (0..100).map(|_| b.next_unit()).collect();
        assert_eq!(xs, ys);
        assert!(xs.iter().all(|x| (0.0..1.0).contains(x)));
        assert_ne!(xs[0], SeededJitter::new(43).next_unit());
    }

    #[test]
    fn retrier_retries_retryable_errors_then_succeeds() {
        let sleeper = RecordingSleeper::default();
        let retrier = Retrier::new(RetryPolicy::default().with_base_delay_ms(100), &sleeper, 7);
        let calls = Cell::new(0);
        let result = pollster::block_on(retrier.run(|n| {
            calls.set(calls.get() + 1);
            async move {
                if n < 3 {
                    Err(ProviderError::Transport {
                        provider: "t",
                        source: TransportError::Timeout("x".into()),
                    })
                } else {
                    Ok(n)
                }
            }
        }));
        assert_eq!(result, Ok(3));
        assert_eq!(calls.get(), 3);
        let delays = sleeper.0.borrow();
        assert_eq!(delays.len(), 2);
        assert!(
            delays[0] < 100 && delays[1] < 200,
            "full jitter stays under the ceiling: {delays:?}"
        );
    }

    #[test]
    fn retrier_stops_on_permanent_errors_and_after_max_attempts() {
        let sleeper = RecordingSleeper::default();
        let retrier = Retrier::new(RetryPolicy::default().with_max_attempts(2), &sleeper, 1);
        let calls = Cell::new(0);
        let permanent: Result<(), _> = pollster::block_on(retrier.run(|_| {
            calls.set(calls.get() + 1);
            async { Err(status(401, None)) }
        }));
        assert_eq!(permanent.unwrap_err().status(), Some(401));
        assert_eq!(calls.get(), 1);

        calls.set(0);
        let exhausted: Result<(), _> = pollster::block_on(retrier.run(|_| {
            calls.set(calls.get() + 1);
            async { Err(status(503, None)) }
        }));
        assert_eq!(exhausted.unwrap_err().status(), Some(503));
        assert_eq!(calls.get(), 2);
    }

    #[test]
    fn retrier_uses_its_clock_for_http_dates() {
        let sleeper = RecordingSleeper::default();
        let retrier = Retrier::new(RetryPolicy::default(), &sleeper, 1).with_clock(|| 1_000_000);
        let at = RetryAfter::At { unix_secs: 1_003 };
        assert!(pollster::block_on(
            retrier.pause_before_retry(1, &status(429, Some(at)))
        ));
        assert_eq!(*sleeper.0.borrow(), vec![3_000]);
    }
}
