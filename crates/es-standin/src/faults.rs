//! Fault injection, set per index (`PUT /_standin/faults/{index}`) so that parallel tests
//! using different indices do not disturb each other.
//!
//! Item rejections are deterministic: with ratios adding up to `r`, item `k` (counting the
//! items of that index from 1 since the faults were set) is rejected exactly when
//! `floor(k·r)` grows, so after `n` items exactly `floor(n·r)` were rejected — spread
//! evenly, no randomness to make a test flaky — and the rejections are split between 429
//! and 400 the same way (20 % and 5 % over 100 items: 20 and 5).

use serde::{Deserialize, Serialize};

/// What to inject for one index. The JSON body of `PUT /_standin/faults/{index}`; every
/// field is optional.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Faults {
    /// Share of `_bulk` items answered `429 es_rejected_execution_exception` (retryable).
    /// Default 0.
    pub reject_429_ratio: f64,
    /// Share of `_bulk` items answered `400 document_parsing_exception` (rejected for
    /// good). Default 0. With `reject_429_ratio` at most 1 in total.
    pub reject_400_ratio: f64,
    /// The next this many `_bulk` requests touching the index fail as a whole with
    /// `fail_status`. Default 0.
    pub fail_requests: u32,
    /// The status of those whole-request failures: 429 (`es_rejected_execution_exception`),
    /// 503 (`cluster_block_exception`) or any other 4xx/5xx. Default 503.
    pub fail_status: u16,
    /// Delay before answering each `_bulk` request touching the index, in milliseconds
    /// (to test client time-outs). Default 0.
    pub delay_ms: u64,
}

impl Default for Faults {
    fn default() -> Self {
        Self {
            reject_429_ratio: 0.0,
            reject_400_ratio: 0.0,
            fail_requests: 0,
            fail_status: 503,
            delay_ms: 0,
        }
    }
}

impl Faults {
    /// Checks the ratios (each in `[0, 1]`, together at most 1) and the status.
    ///
    /// # Errors
    /// A sentence naming the field.
    pub fn validate(&self) -> Result<(), String> {
        for (name, ratio) in [
            ("reject_429_ratio", self.reject_429_ratio),
            ("reject_400_ratio", self.reject_400_ratio),
        ] {
            if !(0.0..=1.0).contains(&ratio) {
                return Err(format!("{name} must be between 0 and 1, not {ratio}"));
            }
        }
        if self.reject_429_ratio + self.reject_400_ratio > 1.0 {
            return Err("reject_429_ratio + reject_400_ratio must be at most 1".to_owned());
        }
        if !(400..=599).contains(&self.fail_status) {
            return Err(format!(
                "fail_status must be a 4xx or 5xx status, not {}",
                self.fail_status
            ));
        }
        Ok(())
    }
}

/// How many of the first `n` items a ratio picks: `floor(n · ratio)`, with a little slack
/// so that ratios like 0.2 or 1/3, which `f64` cannot hold exactly, still pick exactly
/// one item in 5 or 3.
fn due(n: u64, ratio: f64) -> u64 {
    (n as f64 * ratio + 1e-9).floor() as u64
}

/// What an item gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ItemFault {
    Reject429,
    Reject400,
}

/// The faults of one index and where their counting stands.
#[derive(Debug, Clone)]
pub(crate) struct FaultState {
    faults: Faults,
    /// Items seen since the faults were set.
    items: u64,
    /// Of those, items rejected.
    rejected: u64,
    requests_left: u32,
}

impl FaultState {
    pub fn new(faults: Faults) -> Self {
        Self {
            requests_left: faults.fail_requests,
            faults,
            items: 0,
            rejected: 0,
        }
    }

    /// The faults as set, with `fail_requests` counting down.
    pub fn current(&self) -> Faults {
        Faults {
            fail_requests: self.requests_left,
            ..self.faults.clone()
        }
    }

    pub fn delay_ms(&self) -> u64 {
        self.faults.delay_ms
    }

    /// Whether the next `_bulk` request fails as a whole; counts it down if so.
    pub fn take_request_failure(&mut self) -> Option<u16> {
        if self.requests_left == 0 {
            return None;
        }
        self.requests_left -= 1;
        Some(self.faults.fail_status)
    }

    /// The fate of the next item.
    pub fn next_item(&mut self) -> Option<ItemFault> {
        let share_any = self.faults.reject_429_ratio + self.faults.reject_400_ratio;
        self.items += 1;
        if due(self.items, share_any) == due(self.items - 1, share_any) {
            return None;
        }
        // Among the rejected items, 429s come at their share of the total: after `f`
        // rejections floor(f · 429-share / total-share) were 429s.
        self.rejected += 1;
        let share_429 = self.faults.reject_429_ratio / share_any;
        if due(self.rejected, share_429) > due(self.rejected - 1, share_429) {
            Some(ItemFault::Reject429)
        } else {
            Some(ItemFault::Reject400)
        }
    }

    pub fn ratio(&self, fault: ItemFault) -> f64 {
        match fault {
            ItemFault::Reject429 => self.faults.reject_429_ratio,
            ItemFault::Reject400 => self.faults.reject_400_ratio,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(state: &mut FaultState, n: usize) -> (usize, usize) {
        let (mut r429, mut r400) = (0, 0);
        for _ in 0..n {
            match state.next_item() {
                Some(ItemFault::Reject429) => r429 += 1,
                Some(ItemFault::Reject400) => r400 += 1,
                None => {}
            }
        }
        (r429, r400)
    }

    #[test]
    fn ratios_are_exact() {
        let mut state = FaultState::new(Faults {
            reject_429_ratio: 0.2,
            reject_400_ratio: 0.05,
            ..Faults::default()
        });
        assert_eq!(count(&mut state, 100), (20, 5));
        assert_eq!(count(&mut state, 900), (180, 45));
        let mut all = FaultState::new(Faults {
            reject_429_ratio: 0.5,
            reject_400_ratio: 0.5,
            ..Faults::default()
        });
        assert_eq!(count(&mut all, 10), (5, 5));
        let mut third = FaultState::new(Faults {
            reject_429_ratio: 1.0 / 3.0,
            ..Faults::default()
        });
        assert_eq!(count(&mut third, 3_000), (1_000, 0));
    }

    #[test]
    fn request_failures_count_down() {
        let mut state = FaultState::new(Faults {
            fail_requests: 2,
            fail_status: 429,
            ..Faults::default()
        });
        assert_eq!(state.take_request_failure(), Some(429));
        assert_eq!(state.current().fail_requests, 1);
        assert_eq!(state.take_request_failure(), Some(429));
        assert_eq!(state.take_request_failure(), None);
    }

    #[test]
    fn validation_names_the_field() {
        let bad = Faults {
            reject_429_ratio: 1.5,
            ..Faults::default()
        };
        assert!(
            bad.validate()
                .expect_err("ratio")
                .contains("reject_429_ratio")
        );
        let sum = Faults {
            reject_429_ratio: 0.6,
            reject_400_ratio: 0.6,
            ..Faults::default()
        };
        assert!(sum.validate().is_err());
        let status = Faults {
            fail_status: 200,
            ..Faults::default()
        };
        assert!(
            status
                .validate()
                .expect_err("status")
                .contains("fail_status")
        );
        assert_eq!(Faults::default().validate(), Ok(()));
    }
}
