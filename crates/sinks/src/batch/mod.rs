//! The per-shard batcher.
//!
//! A sink offers each record of a shard in order. A record either needs no write (it was
//! dead-lettered, or dropped as a duplicate): [`Batcher::skip`]; or it joins the open
//! batch: [`Batcher::push`]. The sink writes the batch when [`Batcher::push`] says it is
//! full, when [`Batcher::would_overflow`] says the next record would take it past its
//! byte bound, or when it is due ([`Batcher::deadline`]); once the write is durable it
//! calls [`Batcher::written`]. [`Batcher::durable`] never passes a buffered record, so a
//! checkpoint at it never skips data that is not in its sink.

pub mod partitioned;

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

pub use partitioned::{PartitionedBatcher, TooManyPartitions};

/// Where a record sits in its shard.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RecordPosition {
    /// The Kinesis sequence number.
    pub sequence_number: String,
    /// The user record's index in its KPL aggregate (0 for a plain record).
    pub sub_sequence_number: u64,
}

/// A batch's bounds: it is full at `max_records` records or `max_bytes` bytes, and due
/// `max_age` after its first record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most records.
    pub max_records: usize,
    /// Most bytes.
    pub max_bytes: usize,
    /// Longest the first record waits.
    pub max_age: Duration,
}

/// The open batch: the sink's body (`B`: rows, documents…) and what it needs to name it.
#[derive(Debug)]
pub struct Batch<B> {
    /// What the sink accumulates.
    pub body: B,
    /// Records in it.
    pub records: usize,
    /// Bytes counted in it.
    pub bytes: usize,
    /// The first record's position.
    pub first: RecordPosition,
    /// The first record's arrival time.
    pub first_arrival: DateTime<Utc>,
    /// When it was opened.
    pub opened: Instant,
}

/// One shard's batch and positions.
#[derive(Debug)]
pub struct Batcher<B> {
    limits: Limits,
    batch: Option<Batch<B>>,
    accepted: Option<RecordPosition>,
    durable: Option<RecordPosition>,
}

impl<B: Default> Batcher<B> {
    /// An empty batcher with `limits`.
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            batch: None,
            accepted: None,
            durable: None,
        }
    }

    /// A record handled without a write: accepted, and durable at once if nothing is
    /// buffered before it.
    pub fn skip(&mut self, position: &RecordPosition) {
        self.accepted = Some(position.clone());
        if self.batch.is_none() {
            self.durable = Some(position.clone());
        }
    }

    /// Adds a record of `bytes` to the open batch (opened at `now` with this record
    /// first), `add` putting it into the body; whether the batch is now full.
    pub fn push(
        &mut self,
        position: &RecordPosition,
        arrival: DateTime<Utc>,
        now: Instant,
        bytes: usize,
        add: impl FnOnce(&mut B),
    ) -> bool {
        let batch = self.batch.get_or_insert_with(|| Batch {
            body: B::default(),
            records: 0,
            bytes: 0,
            first: position.clone(),
            first_arrival: arrival,
            opened: now,
        });
        add(&mut batch.body);
        batch.records += 1;
        batch.bytes += bytes;
        self.accepted = Some(position.clone());
        batch.records >= self.limits.max_records || batch.bytes >= self.limits.max_bytes
    }

    /// Whether a record of `bytes` would take the open batch past its byte bound.
    pub fn would_overflow(&self, bytes: usize) -> bool {
        self.batch
            .as_ref()
            .is_some_and(|b| b.bytes + bytes > self.limits.max_bytes)
    }

    /// The open batch, if any.
    pub fn batch(&self) -> Option<&Batch<B>> {
        self.batch.as_ref()
    }

    /// The open batch, to change what it holds (e.g. drop what was delivered).
    pub fn batch_mut(&mut self) -> Option<&mut Batch<B>> {
        self.batch.as_mut()
    }

    /// The open batch is in its sink: it is closed and every accepted record durable.
    pub fn written(&mut self) {
        self.batch = None;
        self.durable = self.accepted.clone();
    }

    /// When the open batch reaches its age bound, if there is one.
    pub fn deadline(&self) -> Option<Instant> {
        self.batch.as_ref().map(|b| b.opened + self.limits.max_age)
    }

    /// Whether the open batch is due at `now`.
    pub fn is_due(&self, now: Instant) -> bool {
        self.deadline().is_some_and(|d| now >= d)
    }

    /// The last position such that it and everything before it is durable.
    pub fn durable(&self) -> Option<&RecordPosition> {
        self.durable.as_ref()
    }

    /// The last record accepted (buffered or handled without a write).
    pub fn accepted(&self) -> Option<&RecordPosition> {
        self.accepted.as_ref()
    }

    /// The durable position, if it moved since `before` (what to checkpoint now).
    pub fn advanced_since(&self, before: Option<&RecordPosition>) -> Option<RecordPosition> {
        (self.durable.as_ref() != before)
            .then(|| self.durable.clone())
            .flatten()
    }

    /// Records in the open batch.
    pub fn buffered_records(&self) -> usize {
        self.batch.as_ref().map_or(0, |b| b.records)
    }

    /// Bytes in the open batch.
    pub fn buffered_bytes(&self) -> usize {
        self.batch.as_ref().map_or(0, |b| b.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pos(n: u64) -> RecordPosition {
        RecordPosition {
            sequence_number: format!("{n:020}"),
            sub_sequence_number: 0,
        }
    }

    fn limits() -> Limits {
        Limits {
            max_records: 3,
            max_bytes: 10,
            max_age: Duration::from_secs(60),
        }
    }

    #[test]
    fn nothing_is_durable_past_a_buffered_record() {
        let mut b: Batcher<Vec<u64>> = Batcher::new(limits());
        let now = Instant::now();
        b.skip(&pos(1));
        assert_eq!(
            b.durable(),
            Some(&pos(1)),
            "nothing buffered: durable at once"
        );
        assert!(!b.push(&pos(2), DateTime::<Utc>::UNIX_EPOCH, now, 1, |v| v.push(2)));
        b.skip(&pos(3));
        assert_eq!(b.durable(), Some(&pos(1)), "3 waits behind the buffered 2");
        assert_eq!(b.accepted(), Some(&pos(3)));
        let before = b.durable().cloned();
        b.written();
        assert_eq!(b.advanced_since(before.as_ref()), Some(pos(3)));
        assert_eq!(b.advanced_since(b.durable()), None);
        assert_eq!(b.buffered_records(), 0);
    }

    #[test]
    fn full_by_records_or_bytes_due_by_age() {
        let mut b: Batcher<Vec<u64>> = Batcher::new(limits());
        let now = Instant::now();
        assert!(!b.push(&pos(1), DateTime::<Utc>::UNIX_EPOCH, now, 2, |v| v.push(1)));
        assert!(!b.push(&pos(2), DateTime::<Utc>::UNIX_EPOCH, now, 2, |v| v.push(2)));
        assert!(
            b.push(&pos(3), DateTime::<Utc>::UNIX_EPOCH, now, 2, |v| v.push(3)),
            "3 records"
        );
        assert_eq!(b.batch().map(|x| x.body.clone()), Some(vec![1, 2, 3]));
        assert_eq!(b.batch().map(|x| x.first.clone()), Some(pos(1)));
        b.written();
        assert!(
            b.push(&pos(4), DateTime::<Utc>::UNIX_EPOCH, now, 10, |_| {}),
            "10 bytes"
        );
        b.written();
        b.push(&pos(5), DateTime::<Utc>::UNIX_EPOCH, now, 6, |_| {});
        assert!(b.would_overflow(5) && !b.would_overflow(4));
        assert!(!b.is_due(now + Duration::from_secs(59)));
        assert!(b.is_due(now + Duration::from_secs(60)));
    }
}
