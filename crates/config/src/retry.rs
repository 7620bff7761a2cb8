//! The one retry policy of chief (DESIGN.md convention 5): exponential back-off with full
//! jitter, a cap, and a deadline. Partial failures retry only the failed items; that is
//! the caller's business, this module only says how long to wait and when to give up.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How to back off between attempts. Used as a config section (`[producer.retry]`, …).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryPolicy {
    /// Upper bound of the first delay in milliseconds. Default 100.
    pub initial_backoff_ms: u64,
    /// Cap of any delay in milliseconds. Default 5000.
    pub max_backoff_ms: u64,
    /// Growth factor of the upper bound per attempt. Default 2.0.
    pub multiplier: f64,
    /// Give up once this much time has passed since the first attempt, in milliseconds;
    /// 0 means never (the caller has its own deadline, like the producer's record TTL).
    /// Default 0.
    pub deadline_ms: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            initial_backoff_ms: 100,
            max_backoff_ms: 5_000,
            multiplier: 2.0,
            deadline_ms: 0,
        }
    }
}

impl RetryPolicy {
    /// The upper bound of the delay before retry number `retry` (1 = first retry):
    /// `min(max, initial × multiplier^(retry-1))`.
    pub fn ceiling(&self, retry: u32) -> Duration {
        let exp = self
            .multiplier
            .max(1.0)
            .powi(retry.saturating_sub(1).min(64) as i32);
        let ms = (self.initial_backoff_ms as f64 * exp).min(self.max_backoff_ms as f64);
        Duration::from_millis(ms.max(0.0) as u64)
    }

    /// The delay before retry number `retry`, with full jitter: uniform in
    /// `[0, ceiling(retry)]`, drawn from `unit`, a number in `[0, 1)`.
    pub fn delay(&self, retry: u32, unit: f64) -> Duration {
        self.ceiling(retry).mul_f64(unit.clamp(0.0, 1.0))
    }

    /// The delay before retry number `retry`, jittered with a thread-local generator.
    pub fn jittered(&self, retry: u32) -> Duration {
        self.delay(retry, jitter_unit())
    }

    /// Whether a retry may still start `elapsed` after the first attempt.
    pub fn allows(&self, elapsed: Duration) -> bool {
        self.deadline_ms == 0 || elapsed < Duration::from_millis(self.deadline_ms)
    }
}

/// A number in `[0, 1)` from a thread-local xorshift generator seeded by the clock and
/// the thread: jitter needs spread, not cryptographic quality.
pub fn jitter_unit() -> f64 {
    use std::cell::Cell;
    thread_local! {
        static STATE: Cell<u64> = Cell::new({
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0x2545_F491_4F6C_DD1D, |d| d.as_nanos() as u64);
            let here = &nanos as *const u64 as u64;
            (nanos ^ here.rotate_left(32)) | 1
        });
    }
    STATE.with(|s| {
        let mut x = s.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.set(x);
        (x >> 11) as f64 / (1u64 << 53) as f64
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceiling_grows_exponentially_up_to_the_cap() {
        let p = RetryPolicy::default();
        let got: Vec<u64> = (1..=8).map(|r| p.ceiling(r).as_millis() as u64).collect();
        assert_eq!(got, vec![100, 200, 400, 800, 1600, 3200, 5000, 5000]);
        assert_eq!(p.ceiling(10_000), Duration::from_millis(5000));
    }

    #[test]
    fn full_jitter_spans_zero_to_the_ceiling() {
        let p = RetryPolicy::default();
        assert_eq!(p.delay(3, 0.0), Duration::ZERO);
        assert_eq!(p.delay(3, 0.5), Duration::from_millis(200));
        assert_eq!(p.delay(3, 7.0), Duration::from_millis(400));
        let draws: Vec<Duration> = (0..1000).map(|_| p.jittered(3)).collect();
        assert!(draws.iter().all(|d| *d <= Duration::from_millis(400)));
        let low = draws
            .iter()
            .filter(|d| **d < Duration::from_millis(200))
            .count();
        assert!(
            (350..650).contains(&low),
            "jitter is not spread: {low}/1000 low"
        );
    }

    #[test]
    fn deadline_zero_means_no_deadline() {
        let mut p = RetryPolicy::default();
        assert!(p.allows(Duration::from_secs(3600)));
        p.deadline_ms = 1000;
        assert!(p.allows(Duration::from_millis(999)));
        assert!(!p.allows(Duration::from_millis(1000)));
    }
}
