//! Windows: half-open intervals `[start, end)` of milliseconds. A record exactly at a
//! window's end belongs to the next window.

use serde::{Deserialize, Serialize};

/// One window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Window {
    /// First millisecond in it.
    pub start_ms: i64,
    /// First millisecond after it.
    pub end_ms: i64,
}

impl Window {
    /// Whether a shard whose newest record time is `max_time` no longer takes records
    /// into it.
    pub fn closed_by(&self, max_time: Option<i64>, lateness_ms: i64) -> bool {
        max_time.is_some_and(|t| self.end_ms.saturating_add(lateness_ms) <= t)
    }

    /// `start_ms` as RFC 3339 (UTC, milliseconds).
    pub fn start_text(&self) -> String {
        rfc3339(self.start_ms)
    }

    /// `end_ms` as RFC 3339 (UTC, milliseconds).
    pub fn end_text(&self) -> String {
        rfc3339(self.end_ms)
    }
}

/// A time as RFC 3339, UTC, milliseconds.
pub fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
        .unwrap_or_default()
}

/// The windows of `size_ms`, starting every `slide_ms`, that hold `time_ms` — oldest
/// first — into `out`.
pub fn assign(time_ms: i64, size_ms: i64, slide_ms: i64, out: &mut Vec<Window>) {
    out.clear();
    let last = time_ms.div_euclid(slide_ms) * slide_ms;
    let mut start = last;
    while start + size_ms > time_ms {
        start -= slide_ms;
    }
    start += slide_ms;
    while start <= last {
        out.push(Window {
            start_ms: start,
            end_ms: start + size_ms,
        });
        start += slide_ms;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn starts(t: i64, size: i64, slide: i64) -> Vec<i64> {
        let mut out = Vec::new();
        assign(t, size, slide, &mut out);
        out.iter().map(|w| w.start_ms).collect()
    }

    #[test]
    fn tumbling_and_hopping() {
        assert_eq!(starts(59_999, 60_000, 60_000), vec![0]);
        assert_eq!(
            starts(60_000, 60_000, 60_000),
            vec![60_000],
            "the end is the next window's"
        );
        assert_eq!(starts(-1, 60_000, 60_000), vec![-60_000]);
        assert_eq!(starts(25_000, 60_000, 20_000), vec![-20_000, 0, 20_000]);
        assert_eq!(starts(40_000, 60_000, 20_000), vec![0, 20_000, 40_000]);
        let w = Window {
            start_ms: 0,
            end_ms: 60_000,
        };
        assert!(!w.closed_by(Some(64_999), 5_000));
        assert!(w.closed_by(Some(65_000), 5_000));
        assert!(!w.closed_by(None, 0));
        assert_eq!(w.end_text(), "1970-01-01T00:01:00.000Z");
    }
}
