//! A shard's batches by partition (Firehose's dynamic partitioning: one buffer per
//! partition key value), with one durable position for the shard.
//!
//! Records arrive in shard order and go to the batch of their partition. A batch is
//! written on its own (full, or due); the shard's durable position is then the last
//! accepted record before the first record of the oldest batch still open — every
//! record up to it is in its sink — or the last accepted record when none is open.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::Instant;

use chrono::{DateTime, Utc};

use super::{Batch, Limits, RecordPosition};

/// More partitions would be open than allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{open} partitions are open, the most allowed")]
pub struct TooManyPartitions {
    /// The open partitions.
    pub open: usize,
}

#[derive(Debug)]
struct Open<B> {
    batch: Batch<B>,
    /// The ordinal of its first record.
    first_ordinal: u64,
    /// The record accepted just before its first one (durable bound while it is open).
    before_first: Option<RecordPosition>,
}

/// One shard's batches, by partition key `K`.
#[derive(Debug)]
pub struct PartitionedBatcher<K, B> {
    limits: Limits,
    max_open: usize,
    open: HashMap<K, Open<B>>,
    ordinal: u64,
    accepted: Option<RecordPosition>,
    durable: Option<RecordPosition>,
}

impl<K: Eq + Hash + Clone, B: Default> PartitionedBatcher<K, B> {
    /// Batches bounded by `limits`, at most `max_open` open at once.
    pub fn new(limits: Limits, max_open: usize) -> Self {
        Self {
            limits,
            max_open: max_open.max(1),
            open: HashMap::new(),
            ordinal: 0,
            accepted: None,
            durable: None,
        }
    }

    /// A record handled without a write (an error record written at once, …).
    pub fn skip(&mut self, position: &RecordPosition) {
        self.ordinal += 1;
        self.accepted = Some(position.clone());
        if self.open.is_empty() {
            self.durable = Some(position.clone());
        }
    }

    /// Whether a record of `bytes` for `key` would take its batch past the byte bound.
    pub fn would_overflow(&self, key: &K, bytes: usize) -> bool {
        self.open
            .get(key)
            .is_some_and(|o| o.batch.bytes + bytes > self.limits.max_bytes)
    }

    /// Adds a record to `key`'s batch (opened at `now` when it is the first); whether that
    /// batch is now full.
    ///
    /// # Errors
    /// [`TooManyPartitions`] when `key` has no open batch and `max_open` are open; the
    /// record is not accepted then.
    pub fn push(
        &mut self,
        key: &K,
        position: &RecordPosition,
        arrival: DateTime<Utc>,
        now: Instant,
        bytes: usize,
        add: impl FnOnce(&mut B),
    ) -> Result<bool, TooManyPartitions> {
        if !self.open.contains_key(key) && self.open.len() >= self.max_open {
            return Err(TooManyPartitions {
                open: self.open.len(),
            });
        }
        self.ordinal += 1;
        let ordinal = self.ordinal;
        let before_first = self.accepted.clone();
        let open = self.open.entry(key.clone()).or_insert_with(|| Open {
            batch: Batch {
                body: B::default(),
                records: 0,
                bytes: 0,
                first: position.clone(),
                first_arrival: arrival,
                opened: now,
            },
            first_ordinal: ordinal,
            before_first,
        });
        add(&mut open.batch.body);
        open.batch.records += 1;
        open.batch.bytes += bytes;
        self.accepted = Some(position.clone());
        Ok(open.batch.records >= self.limits.max_records
            || open.batch.bytes >= self.limits.max_bytes)
    }

    /// `key`'s open batch.
    pub fn batch(&self, key: &K) -> Option<&Batch<B>> {
        self.open.get(key).map(|o| &o.batch)
    }

    /// `key`'s open batch, to take its body for a write (and put it back if that fails).
    pub fn batch_mut(&mut self, key: &K) -> Option<&mut Batch<B>> {
        self.open.get_mut(key).map(|o| &mut o.batch)
    }

    /// The keys of every open batch, oldest first.
    pub fn open_keys(&self) -> Vec<K> {
        let mut keys: Vec<(u64, K)> = self
            .open
            .iter()
            .map(|(k, o)| (o.first_ordinal, k.clone()))
            .collect();
        keys.sort_by_key(|(ordinal, _)| *ordinal);
        keys.into_iter().map(|(_, k)| k).collect()
    }

    /// The keys of the batches due at `now`, oldest first.
    pub fn due(&self, now: Instant) -> Vec<K> {
        let mut keys: Vec<(u64, K)> = self
            .open
            .iter()
            .filter(|(_, o)| now >= o.batch.opened + self.limits.max_age)
            .map(|(k, o)| (o.first_ordinal, k.clone()))
            .collect();
        keys.sort_by_key(|(ordinal, _)| *ordinal);
        keys.into_iter().map(|(_, k)| k).collect()
    }

    /// The earliest deadline of an open batch.
    pub fn deadline(&self) -> Option<Instant> {
        self.open
            .values()
            .map(|o| o.batch.opened + self.limits.max_age)
            .min()
    }

    /// `key`'s batch is in its sink: it is closed, and the durable position moves up to
    /// the record before the oldest batch still open.
    pub fn written(&mut self, key: &K) {
        self.open.remove(key);
        self.durable = match self.open.values().min_by_key(|o| o.first_ordinal) {
            None => self.accepted.clone(),
            Some(oldest) => oldest.before_first.clone().or(self.durable.take()),
        };
    }

    /// The last position such that it and everything before it is durable.
    pub fn durable(&self) -> Option<&RecordPosition> {
        self.durable.as_ref()
    }

    /// The last record accepted.
    pub fn accepted(&self) -> Option<&RecordPosition> {
        self.accepted.as_ref()
    }

    /// Open batches.
    pub fn open_batches(&self) -> usize {
        self.open.len()
    }

    /// Records in every open batch.
    pub fn buffered_records(&self) -> usize {
        self.open.values().map(|o| o.batch.records).sum()
    }

    /// Bytes in every open batch.
    pub fn buffered_bytes(&self) -> usize {
        self.open.values().map(|o| o.batch.bytes).sum()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn pos(n: u64) -> RecordPosition {
        RecordPosition {
            sequence_number: format!("{n}"),
            sub_sequence_number: 0,
        }
    }

    fn batcher(max_open: usize) -> PartitionedBatcher<&'static str, Vec<u64>> {
        PartitionedBatcher::new(
            Limits {
                max_records: 100,
                max_bytes: 100,
                max_age: Duration::from_secs(10),
            },
            max_open,
        )
    }

    fn push(
        b: &mut PartitionedBatcher<&'static str, Vec<u64>>,
        key: &'static str,
        n: u64,
        now: Instant,
    ) -> Result<bool, TooManyPartitions> {
        b.push(&key, &pos(n), DateTime::<Utc>::UNIX_EPOCH, now, 1, |v| {
            v.push(n)
        })
    }

    #[test]
    fn durable_stops_before_the_oldest_open_batch() -> Result<(), TooManyPartitions> {
        let mut b = batcher(10);
        let now = Instant::now();
        b.skip(&pos(1));
        push(&mut b, "a", 2, now)?;
        push(&mut b, "b", 3, now)?;
        push(&mut b, "a", 4, now)?;
        b.skip(&pos(5));
        push(&mut b, "c", 6, now)?;
        assert_eq!(b.durable(), Some(&pos(1)));
        assert_eq!(b.open_keys(), vec!["a", "b", "c"]);
        // Writing a younger batch does not move it: `a` still holds 2.
        b.written(&"b");
        assert_eq!(b.durable(), Some(&pos(1)));
        b.written(&"a");
        assert_eq!(b.durable(), Some(&pos(5)), "up to the record before c's 6");
        assert_eq!(b.batch(&"c").map(|x| x.body.clone()), Some(vec![6]));
        b.written(&"c");
        assert_eq!(b.durable(), Some(&pos(6)));
        assert_eq!(b.buffered_records(), 0);
        Ok(())
    }

    #[test]
    fn at_most_max_open_partitions() -> Result<(), TooManyPartitions> {
        let mut b = batcher(2);
        let now = Instant::now();
        push(&mut b, "a", 1, now)?;
        push(&mut b, "b", 2, now)?;
        assert_eq!(
            push(&mut b, "c", 3, now),
            Err(TooManyPartitions { open: 2 })
        );
        assert_eq!(
            b.accepted(),
            Some(&pos(2)),
            "the refused record is not accepted"
        );
        assert!(
            push(&mut b, "a", 4, now).is_ok(),
            "an open one still takes records"
        );
        assert_eq!(b.due(now + Duration::from_secs(10)), vec!["a", "b"]);
        assert!(b.due(now + Duration::from_secs(9)).is_empty());
        assert_eq!(b.deadline(), Some(now + Duration::from_secs(10)));
        Ok(())
    }
}
