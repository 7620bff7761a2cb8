//! Per-shard token buckets for Kinesis records and bytes, like the KPL's rate limiter.

use std::time::{Duration, Instant};

/// Kinesis' write limit per shard: records per second.
pub const SHARD_RECORDS_PER_SEC: f64 = 1_000.0;
/// Kinesis' write limit per shard: bytes per second.
pub const SHARD_BYTES_PER_SEC: f64 = 1_048_576.0;

/// Two token buckets (records, bytes) that refill continuously and hold one second's worth.
/// An entry may go when both hold a positive balance; it then takes its cost, which may
/// drive a balance below zero (a 1 MiB entry still goes, and the shard then waits).
#[derive(Debug, Clone)]
pub struct TokenBucket {
    records_per_sec: f64,
    bytes_per_sec: f64,
    records: f64,
    bytes: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket allowing `percent` % of the shard limits.
    pub fn for_shard(percent: u32, now: Instant) -> Self {
        let f = f64::from(percent) / 100.0;
        Self {
            records_per_sec: SHARD_RECORDS_PER_SEC * f,
            bytes_per_sec: SHARD_BYTES_PER_SEC * f,
            records: SHARD_RECORDS_PER_SEC * f,
            bytes: SHARD_BYTES_PER_SEC * f,
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now.max(self.last);
        self.records = (self.records + dt * self.records_per_sec).min(self.records_per_sec);
        self.bytes = (self.bytes + dt * self.bytes_per_sec).min(self.bytes_per_sec);
    }

    /// Takes one record of `bytes` if the balances allow; says whether it did.
    pub fn try_take(&mut self, bytes: usize, now: Instant) -> bool {
        self.refill(now);
        if self.records <= 0.0 || self.bytes <= 0.0 {
            return false;
        }
        self.records -= 1.0;
        self.bytes -= bytes as f64;
        true
    }

    /// How long until both balances are positive again.
    pub fn wait(&mut self, now: Instant) -> Duration {
        self.refill(now);
        let r = if self.records > 0.0 {
            0.0
        } else {
            (-self.records + 1e-6) / self.records_per_sec
        };
        let b = if self.bytes > 0.0 {
            0.0
        } else {
            (-self.bytes + 1.0) / self.bytes_per_sec
        };
        Duration::from_secs_f64(r.max(b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_the_configured_rate_and_no_more() {
        let t0 = Instant::now();
        let mut b = TokenBucket::for_shard(100, t0);
        let taken = (0..5_000).filter(|_| b.try_take(10, t0)).count();
        assert_eq!(taken, 1_000, "one second's worth of records at once");
        assert!(!b.try_take(10, t0));
        let later = t0 + Duration::from_millis(100);
        let more = (0..5_000).filter(|_| b.try_take(10, later)).count();
        assert!(
            (99..=101).contains(&more),
            "100 ms refills ~100 records, got {more}"
        );
    }

    #[test]
    fn bytes_limit_and_wait() {
        let t0 = Instant::now();
        let mut b = TokenBucket::for_shard(150, t0);
        // 1.5 MiB/s: one 1 MiB entry and one more go, then the bucket is in debt.
        assert!(b.try_take(1 << 20, t0));
        assert!(b.try_take(1 << 20, t0));
        assert!(!b.try_take(1, t0));
        let wait = b.wait(t0);
        // Debt of 0.5 MiB at 1.5 MiB/s: a third of a second.
        assert!((wait.as_millis() as i64 - 333).abs() <= 2, "{wait:?}");
        assert!(b.try_take(1, t0 + wait + Duration::from_millis(1)));
    }
}
