//! The executor's recently-seen window: drops the replays that at-least-once delivery
//! and producer retries cause, keyed by `orderid` (DESIGN.md, de-duplication level 1).
//!
//! The window is bounded in entries ([`DedupConfig::max_entries`]) and in age
//! ([`DedupConfig::max_age_ms`]), so its memory is bounded by construction: at most
//! `max_entries` keys, each held once (an `Arc<str>` shared by the hash map and the
//! insertion-order queue), about `len(orderid) + 80` bytes per entry.
//!
//! Time is passed in ([`Instant`]s), never read inside, so tests drive the clock.
//! An id counts from the first time it was seen: a hit does not extend its life.
//!
//! Every hit increments the counter `DuplicatesDropped` (label `executor`).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::model::OrderId;

/// The metric counting the records the window recognised as duplicates.
pub const DUPLICATES_DROPPED: &str = "DuplicatesDropped";

/// The `[dedup]` config section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DedupConfig {
    /// Most ids remembered; the oldest is forgotten first. 0 turns de-duplication off.
    /// Default 100,000 (about 15 MiB with chief's 73-character ids).
    pub max_entries: usize,
    /// How long an id is remembered after it was first seen, in milliseconds; 0 means
    /// only the entry bound applies. Default 600,000 (10 minutes).
    pub max_age_ms: u64,
}

impl Default for DedupConfig {
    fn default() -> Self {
        Self {
            max_entries: 100_000,
            max_age_ms: 600_000,
        }
    }
}

impl DedupConfig {
    /// `max_age_ms` as a duration, `None` when there is no age bound.
    pub fn max_age(&self) -> Option<Duration> {
        (self.max_age_ms > 0).then(|| Duration::from_millis(self.max_age_ms))
    }
}

/// What [`DedupWindow::check`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// The id was not in the window; it is now.
    First,
    /// The id is in the window: the record is a duplicate (counted).
    Duplicate,
}

impl Seen {
    /// Whether the record is a duplicate.
    pub fn is_duplicate(self) -> bool {
        self == Seen::Duplicate
    }
}

/// A bounded window of recently seen `orderid`s. One per shard processor (or one per
/// executor behind a lock); not synchronised itself.
#[derive(Debug)]
pub struct DedupWindow {
    max_entries: usize,
    max_age: Option<Duration>,
    /// Id → when it was inserted.
    seen: HashMap<Arc<str>, Instant>,
    /// Insertion order, oldest first; the same keys as `seen`.
    order: VecDeque<(Instant, Arc<str>)>,
    /// The latest time passed in: time never goes backwards inside the window, which
    /// keeps `order` sorted.
    now: Option<Instant>,
    hits: u64,
    counter: metrics::Counter,
}

impl DedupWindow {
    /// An empty window; hits are counted under `DuplicatesDropped{executor}`.
    pub fn new(config: &DedupConfig, executor: &str) -> Self {
        Self {
            max_entries: config.max_entries,
            max_age: config.max_age(),
            seen: HashMap::new(),
            order: VecDeque::new(),
            now: None,
            hits: 0,
            counter: metrics::counter!(DUPLICATES_DROPPED, "executor" => executor.to_owned()),
        }
    }

    /// Looks `id` up at time `now` and remembers it if it is new. Ids older than the age
    /// bound are forgotten first; when the window is full the oldest id makes room.
    pub fn check(&mut self, id: &OrderId, now: Instant) -> Seen {
        if self.max_entries == 0 {
            return Seen::First;
        }
        let now = match self.now {
            Some(latest) if latest > now => latest,
            _ => now,
        };
        self.now = Some(now);
        self.expire(now);
        if self.seen.contains_key(id.as_str()) {
            self.hits += 1;
            self.counter.increment(1);
            tracing::trace!(orderid = %id, hits = self.hits, "duplicate dropped");
            return Seen::Duplicate;
        }
        while self.order.len() >= self.max_entries {
            self.pop_oldest();
        }
        let key: Arc<str> = Arc::from(id.as_str());
        self.seen.insert(Arc::clone(&key), now);
        self.order.push_back((now, key));
        Seen::First
    }

    /// Forgets every id first seen at least `max_age` before `now`.
    fn expire(&mut self, now: Instant) {
        let Some(max_age) = self.max_age else {
            return;
        };
        while let Some((inserted, _)) = self.order.front() {
            if now.saturating_duration_since(*inserted) < max_age {
                break;
            }
            self.pop_oldest();
        }
    }

    fn pop_oldest(&mut self) {
        if let Some((_, key)) = self.order.pop_front() {
            self.seen.remove(&key);
        }
    }

    /// How many ids the window holds now.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Whether the window holds no id.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// How many duplicates it has recognised since it was built.
    pub fn hits(&self) -> u64 {
        self.hits
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicU64, Ordering};

    use metrics::{
        Counter, CounterFn, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit,
    };

    use super::*;

    fn id(n: u32) -> OrderId {
        OrderId::new(format!("order-{n}")).expect("valid id")
    }

    fn config(max_entries: usize, max_age_ms: u64) -> DedupConfig {
        DedupConfig {
            max_entries,
            max_age_ms,
        }
    }

    #[test]
    fn exact_hits_and_misses() {
        let t0 = Instant::now();
        let mut w = DedupWindow::new(&config(10, 0), "test");
        let got: Vec<Seen> = [1, 2, 1, 3, 2, 2, 4]
            .iter()
            .map(|n| w.check(&id(*n), t0))
            .collect();
        use Seen::{Duplicate as D, First as F};
        assert_eq!(got, vec![F, F, D, F, D, D, F]);
        assert_eq!(w.hits(), 3);
        assert_eq!(w.len(), 4);
    }

    #[test]
    fn the_oldest_id_makes_room_when_the_window_is_full() {
        let t0 = Instant::now();
        let mut w = DedupWindow::new(&config(3, 0), "test");
        for n in 1..=3 {
            assert_eq!(w.check(&id(n), t0), Seen::First);
        }
        // 4 evicts 1; 2 and 3 are still known, 1 is new again (and evicts 2).
        assert_eq!(w.check(&id(4), t0), Seen::First);
        assert_eq!(w.len(), 3);
        assert_eq!(w.check(&id(3), t0), Seen::Duplicate);
        assert_eq!(w.check(&id(1), t0), Seen::First);
        assert_eq!(w.check(&id(2), t0), Seen::First);
        assert_eq!(w.check(&id(4), t0), Seen::Duplicate);
        assert_eq!(w.len(), 3);
        assert_eq!(w.hits(), 2);
    }

    #[test]
    fn ids_are_forgotten_at_the_age_bound_counted_from_the_first_sighting() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut w = DedupWindow::new(&config(100, 1_000), "test");
        assert_eq!(w.check(&id(1), t0), Seen::First);
        assert_eq!(w.check(&id(2), t0 + ms(500)), Seen::First);
        // A hit does not refresh the id.
        assert_eq!(w.check(&id(1), t0 + ms(999)), Seen::Duplicate);
        // At exactly max_age, 1 is forgotten; 2 is still there.
        assert_eq!(w.check(&id(2), t0 + ms(1_000)), Seen::Duplicate);
        assert_eq!(w.len(), 1);
        assert_eq!(w.check(&id(1), t0 + ms(1_000)), Seen::First);
        assert_eq!(w.check(&id(2), t0 + ms(1_500)), Seen::First);
        assert_eq!(w.len(), 2);
        // Later, everything has expired.
        assert_eq!(w.check(&id(3), t0 + ms(10_000)), Seen::First);
        assert_eq!(w.len(), 1);
        assert_eq!(w.hits(), 2);
    }

    #[test]
    fn a_clock_going_backwards_is_treated_as_standing_still() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut w = DedupWindow::new(&config(100, 1_000), "test");
        assert_eq!(w.check(&id(1), t0 + ms(900)), Seen::First);
        assert_eq!(w.check(&id(2), t0), Seen::First);
        // 2 was stored at 900 ms, so both expire together at 1,900 ms.
        assert_eq!(w.check(&id(2), t0 + ms(1_899)), Seen::Duplicate);
        assert_eq!(w.check(&id(3), t0 + ms(1_900)), Seen::First);
        assert_eq!(w.len(), 1);
    }

    #[test]
    fn zero_entries_turns_deduplication_off() {
        let t0 = Instant::now();
        let mut w = DedupWindow::new(&config(0, 1_000), "test");
        assert_eq!(w.check(&id(1), t0), Seen::First);
        assert_eq!(w.check(&id(1), t0), Seen::First);
        assert!(w.is_empty());
        assert_eq!(w.hits(), 0);
    }

    #[test]
    fn memory_stays_bounded_under_a_long_stream_of_unique_ids() {
        let t0 = Instant::now();
        let mut w = DedupWindow::new(&config(1_000, 0), "test");
        for n in 0..50_000 {
            w.check(&id(n), t0);
        }
        assert_eq!(w.len(), 1_000);
        assert_eq!(w.seen.len(), 1_000);
        assert!(
            w.seen.capacity() < 4_096,
            "map grew to {}",
            w.seen.capacity()
        );
        assert!(
            w.order.capacity() < 4_096,
            "queue grew to {}",
            w.order.capacity()
        );
    }

    /// A recorder that keeps only the `DuplicatesDropped` counters, by label set.
    #[derive(Default)]
    struct Counters(Mutex<Vec<(String, Arc<AtomicU64>)>>);

    struct Atomic(Arc<AtomicU64>);

    impl CounterFn for Atomic {
        fn increment(&self, value: u64) {
            self.0.fetch_add(value, Ordering::Relaxed);
        }
        fn absolute(&self, value: u64) {
            self.0.store(value, Ordering::Relaxed);
        }
    }

    impl Recorder for Counters {
        fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
            let cell = Arc::new(AtomicU64::new(0));
            let labels: Vec<String> = key
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            self.0.lock().expect("lock").push((
                format!("{}{{{}}}", key.name(), labels.join(",")),
                cell.clone(),
            ));
            Counter::from_arc(Arc::new(Atomic(cell)))
        }
        fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
            Gauge::noop()
        }
        fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
            Histogram::noop()
        }
    }

    #[test]
    fn hits_are_counted_in_the_duplicates_dropped_metric() {
        let recorder = Counters::default();
        let t0 = Instant::now();
        metrics::with_local_recorder(&recorder, || {
            let mut w = DedupWindow::new(&config(10, 0), "chief-order-factory-s3");
            for n in [1, 1, 2, 1, 2, 3] {
                w.check(&id(n), t0);
            }
        });
        let counters = recorder.0.lock().expect("lock");
        assert_eq!(counters.len(), 1);
        assert_eq!(
            counters[0].0,
            "DuplicatesDropped{executor=chief-order-factory-s3}"
        );
        assert_eq!(counters[0].1.load(Ordering::Relaxed), 3);
    }
}
