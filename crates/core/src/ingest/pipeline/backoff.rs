//! Retry policy and pipeline configuration: how many attempts a step gets,
//! how long to wait between them, and when the watchdog alarm of a step fires.
//! Pure arithmetic on milliseconds; it never reads a clock or sleeps.

/// Attempts per step before the run fails (issue: "Failed after 3 attempts").
pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;

/// Delay before the second attempt of a step; doubles after each failure.
pub const DEFAULT_BASE_DELAY_MS: u64 = 2_000;

/// Upper bound of the backoff delay.
pub const DEFAULT_MAX_DELAY_MS: u64 = 60_000;

/// When the watchdog alarm armed before a step fires, after the step was
/// issued. It brings the object back if the invocation running the step dies
/// without a result (a wasm trap, a stack overflow, out of memory, the CPU
/// limit, an eviction); that attempt then counts as failed.
///
/// It can be this short because it cannot fire while the step still runs:
/// steps run only in alarm invocations, and workerd starts an object's next
/// alarm only once the running one has ended (`Worker::Actor::handleAlarm`
/// waits for `runningAlarmTask`, `src/workerd/io/worker.c++`). A healthy step
/// replaces the alarm when it reports. An invocation that hangs instead of
/// failing is ended by the platform after 15 minutes (the alarm wall-time
/// limit, `getAlarmLimit`), and the watchdog fires then.
pub const DEFAULT_STEP_WATCHDOG_MS: u64 = 1_000;

/// First wait of a commit whose vectors are not visible yet; each later wait is as long as the
/// commit has waited so far (so the checks thin out geometrically), up to [`DEFAULT_VECTOR_WAIT_MAX_MS`].
pub const DEFAULT_VECTOR_WAIT_BASE_MS: u64 = 500;

/// Longest wait between two visibility checks of a commit.
pub const DEFAULT_VECTOR_WAIT_MAX_MS: u64 = 10_000;

/// First wait after a step found the provider overloaded (429, 503, a timeout); doubles
/// with each overloaded attempt in a row.
pub const DEFAULT_OVERLOAD_BASE_MS: u64 = 5_000;

/// Longest wait between two attempts on an overloaded provider.
pub const DEFAULT_OVERLOAD_MAX_MS: u64 = 5 * 60 * 1_000;

/// How long a run keeps waiting for an overloaded provider before it fails (retryable, so
/// the daily reconciliation tries it again).
pub const DEFAULT_OVERLOAD_GIVE_UP_MS: u64 = 24 * 60 * 60 * 1_000;

/// Invalid retry or pipeline configuration (a newtype, so messages can change freely).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(transparent)]
pub struct PipelineConfigError(#[from] ConfigErrorKind);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum ConfigErrorKind {
    #[error("max attempts must be at least 1")]
    ZeroAttempts,
    #[error("base delay must be greater than 0 ms")]
    ZeroBaseDelay,
    #[error("max delay ({max_ms} ms) must not be below the base delay ({base_ms} ms)")]
    CapBelowBase { base_ms: u64, max_ms: u64 },
    #[error("step watchdog must be greater than 0 ms")]
    ZeroStepWatchdog,
    #[error("overload wait: 0 < base ({base_ms} ms) <= max ({max_ms} ms) <= give-up ({give_up_ms} ms) must hold")]
    OverloadWait {
        base_ms: u64,
        max_ms: u64,
        give_up_ms: u64,
    },
    #[error("vector wait: 0 < base ({base_ms} ms) <= max ({max_ms} ms) <= give-up ({give_up_ms} ms) must hold")]
    VectorWait {
        base_ms: u64,
        max_ms: u64,
        give_up_ms: u64,
    },
}

/// Exponential backoff with factor 2: `min(base * 2^(attempt-1), max)`.
///
/// Deterministic on purpose: the state machine must give the same answer for
/// the same input. Callers wanting jitter add it to the delay themselves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    max_attempts: u32,
    base_delay_ms: u64,
    max_delay_ms: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self::new()
    }
}

impl RetryPolicy {
    /// 3 attempts, 2 s base delay, 60 s cap.
    #[must_use]
    pub fn new() -> Self {
        Self {
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            base_delay_ms: DEFAULT_BASE_DELAY_MS,
            max_delay_ms: DEFAULT_MAX_DELAY_MS,
        }
    }

    /// Sets how many times one step may be attempted in total (>= 1).
    pub fn with_max_attempts(mut self, attempts: u32) -> Result<Self, PipelineConfigError> {
        if attempts == 0 {
            return Err(ConfigErrorKind::ZeroAttempts.into());
        }
        self.max_attempts = attempts;
        Ok(self)
    }

    /// Sets the delay after the first failure (> 0 and <= the cap).
    pub fn with_base_delay_ms(mut self, base_ms: u64) -> Result<Self, PipelineConfigError> {
        if base_ms == 0 {
            return Err(ConfigErrorKind::ZeroBaseDelay.into());
        }
        if base_ms > self.max_delay_ms {
            return Err(ConfigErrorKind::CapBelowBase {
                base_ms,
                max_ms: self.max_delay_ms,
            }
            .into());
        }
        self.base_delay_ms = base_ms;
        Ok(self)
    }

    /// Sets the largest delay between attempts (>= the base delay).
    pub fn with_max_delay_ms(mut self, max_ms: u64) -> Result<Self, PipelineConfigError> {
        if max_ms < self.base_delay_ms {
            return Err(ConfigErrorKind::CapBelowBase {
                base_ms: self.base_delay_ms,
                max_ms,
            }
            .into());
        }
        self.max_delay_ms = max_ms;
        Ok(self)
    }

    /// Total attempts one step gets.
    #[must_use]
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// Delay before the next attempt, after `failed_attempts` (>= 1) attempts failed.
    #[must_use]
    pub fn delay_after(&self, failed_attempts: u32) -> u64 {
        let exponent = failed_attempts.saturating_sub(1);
        let factor = 1_u64.checked_shl(exponent).unwrap_or(u64::MAX);
        self.base_delay_ms
            .saturating_mul(factor)
            .min(self.max_delay_ms)
    }
}

/// How a commit waits for its vectors to become visible in an index that applies writes
/// later (Vectorize): the first check again after `base_ms`, then after as long as it has
/// waited so far, at most `max_ms` apart; after `give_up_ms` the run fails (retryable).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VectorWait {
    /// First wait.
    pub base_ms: u64,
    /// Longest wait between two checks.
    pub max_ms: u64,
    /// Total wait after which the commit gives up.
    pub give_up_ms: u64,
}

impl Default for VectorWait {
    fn default() -> Self {
        Self {
            base_ms: DEFAULT_VECTOR_WAIT_BASE_MS,
            max_ms: DEFAULT_VECTOR_WAIT_MAX_MS,
            give_up_ms: crate::index::VECTOR_SETTLE_MS,
        }
    }
}

impl VectorWait {
    /// The wait before the next check, after `waited_ms` of waiting.
    #[must_use]
    pub fn next_delay(&self, waited_ms: u64) -> u64 {
        waited_ms.clamp(self.base_ms, self.max_ms)
    }
}

/// How a step waits for an overloaded provider: the attempt is not counted; the wait starts
/// at `base_ms` and doubles with each overloaded attempt in a row, up to `max_ms`; once the
/// run has waited `give_up_ms` since the first of them, it fails (retryable).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverloadWait {
    /// Wait after the first overloaded attempt.
    pub base_ms: u64,
    /// Longest wait.
    pub max_ms: u64,
    /// Total time after which the run gives up.
    pub give_up_ms: u64,
}

impl Default for OverloadWait {
    fn default() -> Self {
        Self {
            base_ms: DEFAULT_OVERLOAD_BASE_MS,
            max_ms: DEFAULT_OVERLOAD_MAX_MS,
            give_up_ms: DEFAULT_OVERLOAD_GIVE_UP_MS,
        }
    }
}

impl OverloadWait {
    /// The wait after `in_a_row` (>= 1) overloaded attempts in a row.
    #[must_use]
    pub fn delay_after(&self, in_a_row: u32) -> u64 {
        let factor = 1_u64
            .checked_shl(in_a_row.saturating_sub(1))
            .unwrap_or(u64::MAX);
        self.base_ms.saturating_mul(factor).min(self.max_ms)
    }
}

/// Knobs of the ingestion state machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PipelineConfig {
    retry: RetryPolicy,
    step_watchdog_ms: u64,
    vector_wait: VectorWait,
    overload: OverloadWait,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self::new()
    }
}

impl PipelineConfig {
    /// Default retry policy and step watchdog ([`DEFAULT_STEP_WATCHDOG_MS`]).
    #[must_use]
    pub fn new() -> Self {
        Self {
            retry: RetryPolicy::new(),
            step_watchdog_ms: DEFAULT_STEP_WATCHDOG_MS,
            vector_wait: VectorWait::default(),
            overload: OverloadWait::default(),
        }
    }

    /// Replaces the retry policy.
    #[must_use]
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Sets when the watchdog alarm of an issued step fires, after the issue (> 0; see
    /// [`DEFAULT_STEP_WATCHDOG_MS`]).
    pub fn with_step_watchdog_ms(mut self, watchdog_ms: u64) -> Result<Self, PipelineConfigError> {
        if watchdog_ms == 0 {
            return Err(ConfigErrorKind::ZeroStepWatchdog.into());
        }
        self.step_watchdog_ms = watchdog_ms;
        Ok(self)
    }

    /// Sets how a commit waits for its vectors (`0 < base <= max <= give_up`).
    pub fn with_vector_wait(mut self, wait: VectorWait) -> Result<Self, PipelineConfigError> {
        if wait.base_ms == 0 || wait.base_ms > wait.max_ms || wait.max_ms > wait.give_up_ms {
            return Err(ConfigErrorKind::VectorWait {
                base_ms: wait.base_ms,
                max_ms: wait.max_ms,
                give_up_ms: wait.give_up_ms,
            }
            .into());
        }
        self.vector_wait = wait;
        Ok(self)
    }

    /// Sets how a step waits for an overloaded provider (`0 < base <= max <= give_up`).
    pub fn with_overload_wait(mut self, wait: OverloadWait) -> Result<Self, PipelineConfigError> {
        if wait.base_ms == 0 || wait.base_ms > wait.max_ms || wait.max_ms > wait.give_up_ms {
            return Err(ConfigErrorKind::OverloadWait {
                base_ms: wait.base_ms,
                max_ms: wait.max_ms,
                give_up_ms: wait.give_up_ms,
            }
            .into());
        }
        self.overload = wait;
        Ok(self)
    }

    /// How a step waits for an overloaded provider.
    #[must_use]
    pub fn overload_wait(&self) -> &OverloadWait {
        &self.overload
    }

    /// How a commit waits for its vectors.
    #[must_use]
    pub fn vector_wait(&self) -> &VectorWait {
        &self.vector_wait
    }

    /// The retry policy.
    #[must_use]
    pub fn retry(&self) -> &RetryPolicy {
        &self.retry
    }

    /// When the watchdog alarm of an issued step fires, in ms after the issue.
    #[must_use]
    pub fn step_watchdog_ms(&self) -> u64 {
        self.step_watchdog_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap() {
        let policy = RetryPolicy::new();
        let delays: Vec<u64> = (1..=7).map(|n| policy.delay_after(n)).collect();
        assert_eq!(
            delays,
            vec![2_000, 4_000, 8_000, 16_000, 32_000, 60_000, 60_000]
        );
        assert_eq!(policy.delay_after(u32::MAX), 60_000);
        assert_eq!(policy.delay_after(0), 2_000);
    }

    #[test]
    fn huge_values_saturate_instead_of_overflowing() {
        let policy = RetryPolicy::new()
            .with_max_delay_ms(u64::MAX)
            .unwrap()
            .with_base_delay_ms(u64::MAX / 2)
            .unwrap();
        assert_eq!(policy.delay_after(1), u64::MAX / 2);
        assert_eq!(policy.delay_after(3), u64::MAX);
        assert_eq!(policy.delay_after(200), u64::MAX);
    }

    #[test]
    fn invalid_settings_are_rejected() {
        assert!(RetryPolicy::new().with_max_attempts(0).is_err());
        assert!(RetryPolicy::new().with_base_delay_ms(0).is_err());
        assert!(RetryPolicy::new().with_base_delay_ms(61_000).is_err());
        assert!(RetryPolicy::new().with_max_delay_ms(1_999).is_err());
        assert!(PipelineConfig::new().with_step_watchdog_ms(0).is_err());
        let config = PipelineConfig::new()
            .with_retry(RetryPolicy::new().with_max_attempts(5).unwrap())
            .with_step_watchdog_ms(5_000)
            .unwrap();
        assert_eq!(config.retry().max_attempts(), 5);
        assert_eq!(config.step_watchdog_ms(), 5_000);
        assert_eq!(
            PipelineConfig::new().step_watchdog_ms(),
            DEFAULT_STEP_WATCHDOG_MS
        );
        for (base_ms, max_ms, give_up_ms) in [(0, 1, 2), (3, 2, 4), (1, 5, 4)] {
            let wait = VectorWait {
                base_ms,
                max_ms,
                give_up_ms,
            };
            assert!(PipelineConfig::new().with_vector_wait(wait).is_err());
        }
    }

    #[test]
    fn overload_waits_double_from_seconds_to_minutes() {
        let wait = OverloadWait::default();
        let delays: Vec<u64> = (1..=8).map(|n| wait.delay_after(n)).collect();
        assert_eq!(
            delays,
            vec![5_000, 10_000, 20_000, 40_000, 80_000, 160_000, 300_000, 300_000]
        );
        assert_eq!(wait.delay_after(u32::MAX), 300_000);
        for (base_ms, max_ms, give_up_ms) in [(0, 1, 2), (3, 2, 4), (1, 5, 4)] {
            let wait = OverloadWait {
                base_ms,
                max_ms,
                give_up_ms,
            };
            assert!(PipelineConfig::new().with_overload_wait(wait).is_err());
        }
    }

    #[test]
    fn vector_checks_thin_out_up_to_the_cap() {
        let wait = VectorWait::default();
        let mut waited = 0;
        let mut delays = Vec::new();
        for _ in 0..8 {
            let delay = wait.next_delay(waited);
            delays.push(delay);
            waited += delay;
        }
        assert_eq!(
            delays,
            vec![500, 500, 1_000, 2_000, 4_000, 8_000, 10_000, 10_000]
        );
    }
}
