//! Retries with exponential backoff and jitter for transient target errors
//! (5xx, 429, timeouts, dropped connections). Whether an error is transient
//! is a property of [`TargetError`], never a string match.

use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use crate::target::TargetError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt (0 = no retries).
    pub max_retries: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 5,
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// Backoff before retry number `retry` (1-based): exponential, capped,
    /// with "equal jitter" (half fixed, half random) so parallel workers
    /// hitting the same outage do not retry in lockstep.
    pub fn backoff(&self, retry: u32) -> Duration {
        let exp = self
            .initial_backoff
            .saturating_mul(2u32.saturating_pow(retry.saturating_sub(1)))
            .min(self.max_backoff);
        let half = exp / 2;
        let random = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        let jitter_ns = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX).max(1);
        half + Duration::from_nanos(random % jitter_ns)
    }
}

/// Runs `op` until it succeeds, fails permanently or the retries run out.
/// Returns the result and the number of attempts made.
pub async fn with_retries<T, F, Fut>(
    policy: RetryPolicy,
    mut op: F,
) -> (Result<T, TargetError>, u32)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, TargetError>>,
{
    let mut attempt = 0;
    loop {
        attempt += 1;
        match op().await {
            Ok(value) => return (Ok(value), attempt),
            Err(err) if err.is_retryable() && attempt <= policy.max_retries => {
                tokio::time::sleep(policy.backoff(attempt)).await;
            }
            Err(err) => return (Err(err), attempt),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::target::TargetErrorKind;
    use std::cell::Cell;

    const FAST: RetryPolicy = RetryPolicy {
        max_retries: 3,
        initial_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(4),
    };

    #[test]
    fn backoff_grows_and_is_capped() {
        let policy = RetryPolicy {
            max_retries: 10,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(1000),
        };
        for _ in 0..50 {
            let first = policy.backoff(1);
            assert!(first >= Duration::from_millis(50) && first < Duration::from_millis(100));
            let late = policy.backoff(9);
            assert!(late >= Duration::from_millis(500) && late < Duration::from_millis(1000));
        }
    }

    fn run<T>(f: impl Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn transient_errors_are_retried_then_succeed() {
        let calls = Cell::new(0);
        let (result, attempts) = run(with_retries(FAST, || {
            calls.set(calls.get() + 1);
            let n = calls.get();
            async move {
                if n < 3 {
                    Err(TargetError::new(
                        TargetErrorKind::Transient,
                        "put",
                        Some("k"),
                        "503",
                    ))
                } else {
                    Ok(n)
                }
            }
        }));
        assert_eq!(result.unwrap(), 3);
        assert_eq!(attempts, 3);
    }

    #[test]
    fn permanent_errors_and_exhaustion_stop() {
        let (result, attempts) = run(with_retries(FAST, || async {
            Err::<(), _>(TargetError::new(
                TargetErrorKind::Auth,
                "put",
                Some("k"),
                "401",
            ))
        }));
        assert!(result.is_err());
        assert_eq!(attempts, 1);
        let (result, attempts) = run(with_retries(FAST, || async {
            Err::<(), _>(TargetError::new(
                TargetErrorKind::Transient,
                "put",
                Some("k"),
                "500",
            ))
        }));
        assert!(result.is_err());
        assert_eq!(attempts, 4);
    }
}
