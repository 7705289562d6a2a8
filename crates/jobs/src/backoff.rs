//! Retry arithmetic: exponential backoff with jitter and the retry-or-dead
//! decision after a failed attempt. Pure: the randomness is an argument.

use serde::{Deserialize, Serialize};

/// Exponential backoff: attempt n waits about `base * 2^(n-1)`, capped at
/// `cap`, with "equal jitter" (half fixed, half random) so retries of many
/// jobs that failed together spread out instead of hammering together.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackoffPolicy {
    /// Delay before the first retry, before jitter [1 s].
    pub base_ms: u64,
    /// Largest delay [5 min].
    pub cap_ms: u64,
}

impl Default for BackoffPolicy {
    fn default() -> Self {
        BackoffPolicy {
            base_ms: 1_000,
            cap_ms: 5 * 60 * 1_000,
        }
    }
}

impl BackoffPolicy {
    /// The delay before retry number `retry` (1 = first retry), given a
    /// uniform random number `random` in [0, 1). Lies in
    /// `[ceiling / 2, ceiling]` where `ceiling = min(cap, base * 2^(retry-1))`.
    pub fn delay_ms(&self, retry: u32, random: f64) -> u64 {
        let exponent = retry.saturating_sub(1).min(63);
        let ceiling = self
            .base_ms
            .saturating_mul(1u64 << exponent)
            .min(self.cap_ms);
        let half = ceiling / 2;
        let random = if random.is_finite() {
            random.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let jitter = ((ceiling - half) as f64 * random) as u64;
        (half + jitter).min(ceiling)
    }
}

/// What happens to a job whose attempt failed; computed by the worker and
/// carried out by the backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum FailDecision {
    /// Run again at `at` (ms since the epoch); status becomes `failed` meanwhile.
    Retry {
        /// When the retry becomes due.
        at: u64,
    },
    /// No retries left (or a permanent error): to the dead letters.
    Dead,
}

/// Decides after a failed attempt. `attempts` counts finished attempts
/// including the one that just failed; a job may run `max_retries + 1` times.
pub fn decide_after_failure(
    attempts: u32,
    max_retries: u32,
    permanent: bool,
    policy: &BackoffPolicy,
    now_ms: u64,
    random: f64,
) -> FailDecision {
    if permanent || attempts > max_retries {
        FailDecision::Dead
    } else {
        FailDecision::Retry {
            at: now_ms.saturating_add(policy.delay_ms(attempts, random)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delay_grows_exponentially_within_jitter_bounds_and_is_capped() {
        let p = BackoffPolicy {
            base_ms: 100,
            cap_ms: 1_000,
        };
        assert_eq!(p.delay_ms(1, 0.0), 50);
        assert_eq!(p.delay_ms(1, 1.0), 100);
        assert_eq!(p.delay_ms(2, 0.0), 100);
        assert_eq!(p.delay_ms(3, 0.999_999), 399);
        assert_eq!(p.delay_ms(10, 1.0), 1_000);
        assert_eq!(p.delay_ms(u32::MAX, 0.0), 500);
        assert_eq!(p.delay_ms(2, f64::NAN), 100);
        for retry in 1..70 {
            for r in [0.0, 0.3, 0.7, 0.99] {
                let d = p.delay_ms(retry, r);
                assert!(d <= 1_000 && d >= p.delay_ms(retry, 0.0));
            }
        }
    }

    #[test]
    fn retries_until_attempts_exceed_max_then_dead() {
        let p = BackoffPolicy {
            base_ms: 10,
            cap_ms: 100,
        };
        assert_eq!(
            decide_after_failure(1, 2, false, &p, 1_000, 0.0),
            FailDecision::Retry { at: 1_005 }
        );
        assert!(matches!(
            decide_after_failure(2, 2, false, &p, 0, 0.5),
            FailDecision::Retry { .. }
        ));
        assert_eq!(
            decide_after_failure(3, 2, false, &p, 0, 0.5),
            FailDecision::Dead
        );
        assert_eq!(
            decide_after_failure(1, 5, true, &p, 0, 0.5),
            FailDecision::Dead
        );
        assert_eq!(
            decide_after_failure(1, 0, false, &p, 0, 0.5),
            FailDecision::Dead
        );
    }
}
