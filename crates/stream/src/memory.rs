//! An in-memory Kinesis: streams of shards with hash-key ranges, sequence numbers that
//! increase across a stream's shards, splits and merges, and fault injection.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use chief_aggregation::{parse_hash_key, partition_key_hash};

use crate::{
    ChildShard, GetRecordsOutput, IteratorPosition, PutEntry, PutEntryError, PutEntryResult,
    PutSuccess, ReceivedRecord, Shard, StreamClient, StreamError, Subscription, SubscriptionEvent,
    compare_sequence_numbers,
};

/// How long a subscription lasts unless [`MemoryStreams::set_subscription_lifetime`] says
/// otherwise (Kinesis ends every SubscribeToShard subscription after five minutes).
const SUBSCRIPTION_LIFETIME: Duration = Duration::from_secs(300);
/// How often a subscription sends an event when there are no records.
const SUBSCRIPTION_HEARTBEAT: Duration = Duration::from_secs(1);

/// Faults the in-memory Kinesis injects; change them at any time with
/// [`MemoryStreams::set_faults`]. Ratios are probabilities in `[0, 1]`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Faults {
    /// Share of PutRecords entries refused with `ProvisionedThroughputExceededException`.
    pub throttle_ratio: f64,
    /// Share of PutRecords entries refused with `InternalFailure`.
    pub internal_failure_ratio: f64,
    /// Share of calls that fail whole with an HTTP 500 (`InternalFailure`, retryable).
    pub call_error_ratio: f64,
    /// Share of calls that time out (after `latency`), writing nothing.
    pub timeout_ratio: f64,
    /// Added to every call.
    pub latency: Duration,
    /// Refuse every PutRecords entry (throttled): a stream that never accepts.
    pub reject_all: bool,
    /// Calls do not return while this is set: a stalled stream.
    pub stall: bool,
    /// Share of GetRecords calls refused with `ProvisionedThroughputExceededException`.
    pub read_throttle_ratio: f64,
    /// Share of GetRecords calls failing with an expired iterator.
    pub expired_iterator_ratio: f64,
    /// Added to every ListShards call only (a slow shard listing).
    pub list_shards_delay: Duration,
}

/// A record as stored in a shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRecord {
    /// Sequence number (56 decimal digits, so that string order is numeric order).
    pub sequence_number: String,
    /// Partition key as sent.
    pub partition_key: String,
    /// Explicit hash key as sent.
    pub explicit_hash_key: Option<String>,
    /// The bytes.
    pub data: Bytes,
    /// When it was written.
    pub arrival: SystemTime,
}

/// Call counters of a [`MemoryStreams`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemoryStats {
    /// PutRecords calls answered (successfully or with per-entry errors).
    pub put_records_calls: u64,
    /// Entries written.
    pub entries_written: u64,
    /// Entries refused (throttled or internal failure).
    pub entries_refused: u64,
    /// Calls failed whole (500s and time-outs).
    pub calls_failed: u64,
    /// Bytes written (data + partition key).
    pub bytes_written: u64,
    /// GetRecords calls answered.
    pub get_records_calls: u64,
    /// Records returned by GetRecords.
    pub records_read: u64,
}

#[derive(Debug)]
struct MemShard {
    info: Shard,
    records: Vec<StoredRecord>,
}

#[derive(Debug, Default)]
struct MemStream {
    shards: Vec<MemShard>,
    next_sequence: u128,
}

impl MemStream {
    fn next_sequence_number(&mut self) -> String {
        self.next_sequence += 1;
        format!("{:056}", self.next_sequence)
    }

    fn shard_index_or_err(
        &self,
        op: &'static str,
        stream: &str,
        shard_id: &str,
    ) -> Result<usize, StreamError> {
        self.shard_index(shard_id)
            .ok_or_else(|| StreamError::Service {
                operation: op,
                stream: stream.to_owned(),
                code: "ResourceNotFoundException".to_owned(),
                message: format!("shard {shard_id} not found"),
                retryable: false,
            })
    }

    fn shard_index(&self, shard_id: &str) -> Option<usize> {
        self.shards.iter().position(|s| s.info.shard_id == shard_id)
    }

    fn add_shard(
        &mut self,
        start: u128,
        end: u128,
        parent: Option<String>,
        adjacent: Option<String>,
    ) {
        let starting_sequence_number = self.next_sequence_number();
        let shard_id = format!("shardId-{:012}", self.shards.len());
        self.shards.push(MemShard {
            info: Shard {
                shard_id,
                parent_shard_id: parent,
                adjacent_parent_shard_id: adjacent,
                starting_hash_key: start,
                ending_hash_key: end,
                starting_sequence_number,
                ending_sequence_number: None,
            },
            records: Vec::new(),
        });
    }

    fn close(&mut self, index: usize) {
        let end = self.next_sequence_number();
        self.shards[index].info.ending_sequence_number = Some(end);
    }
}

#[derive(Debug, Default)]
struct State {
    streams: HashMap<String, MemStream>,
    faults: Faults,
    rng: u64,
    stats: MemoryStats,
    /// Registered fan-out consumers: ARN → stream.
    consumers: HashMap<String, String>,
    /// Open subscriptions (consumer ARN, shard): Kinesis allows one at a time.
    subscriptions: HashSet<(String, String)>,
    /// Zero means [`SUBSCRIPTION_LIFETIME`].
    subscription_lifetime: Duration,
}

impl State {
    /// splitmix64: deterministic, good enough to draw faults.
    fn draw(&mut self) -> f64 {
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }

    fn stream_mut(
        &mut self,
        op: &'static str,
        stream: &str,
    ) -> Result<&mut MemStream, StreamError> {
        self.streams
            .get_mut(stream)
            .ok_or_else(|| StreamError::StreamNotFound {
                operation: op,
                stream: stream.to_owned(),
                message: format!("Stream {stream} under account 000000000000 not found."),
            })
    }
}

/// An in-memory Kinesis. Cloning shares the same streams.
#[derive(Debug, Clone, Default)]
pub struct MemoryStreams {
    state: Arc<Mutex<State>>,
    /// Wakes subscriptions when records are written or shards close.
    written: Arc<tokio::sync::Notify>,
}

/// Releases a (consumer, shard) subscription slot when the subscription ends.
struct SubscriptionSlot {
    streams: MemoryStreams,
    key: (String, String),
}

impl Drop for SubscriptionSlot {
    fn drop(&mut self) {
        self.streams.lock().subscriptions.remove(&self.key);
    }
}

fn invalid(op: &'static str, stream: &str, message: String) -> StreamError {
    StreamError::Service {
        operation: op,
        stream: stream.to_owned(),
        code: "InvalidArgumentException".to_owned(),
        message,
        retryable: false,
    }
}

impl MemoryStreams {
    /// An empty Kinesis whose fault draws follow `seed`.
    pub fn new(seed: u64) -> Self {
        let me = Self::default();
        me.lock().rng = seed;
        me
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind; keep using it.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Creates a stream whose `shard_count` shards split the hash space evenly, as Kinesis does.
    pub fn create_stream(&self, stream: &str, shard_count: u32) {
        let mut s = MemStream::default();
        let n = u128::from(shard_count.max(1));
        let step = u128::MAX / n;
        for i in 0..n {
            let start = i * step;
            let end = if i + 1 == n {
                u128::MAX
            } else {
                (i + 1) * step - 1
            };
            s.add_shard(start, end, None, None);
        }
        self.lock().streams.insert(stream.to_owned(), s);
    }

    /// Splits an open shard at `new_starting_hash_key` into two children and closes it.
    pub fn split_shard(
        &self,
        stream: &str,
        shard_id: &str,
        new_starting_hash_key: u128,
    ) -> Result<(), StreamError> {
        let mut state = self.lock();
        let s = state.stream_mut("SplitShard", stream)?;
        let i = s
            .shard_index(shard_id)
            .filter(|&i| s.shards[i].info.is_open())
            .ok_or_else(|| invalid("SplitShard", stream, format!("no open shard {shard_id}")))?;
        let (start, end) = (
            s.shards[i].info.starting_hash_key,
            s.shards[i].info.ending_hash_key,
        );
        if new_starting_hash_key <= start || new_starting_hash_key > end {
            return Err(invalid(
                "SplitShard",
                stream,
                format!("hash key {new_starting_hash_key} is not inside {shard_id}"),
            ));
        }
        s.close(i);
        let parent = Some(shard_id.to_owned());
        s.add_shard(start, new_starting_hash_key - 1, parent.clone(), None);
        s.add_shard(new_starting_hash_key, end, parent, None);
        self.written.notify_waiters();
        Ok(())
    }

    /// Merges two open, adjacent shards into one child and closes them.
    pub fn merge_shards(
        &self,
        stream: &str,
        shard: &str,
        adjacent: &str,
    ) -> Result<(), StreamError> {
        let mut state = self.lock();
        let s = state.stream_mut("MergeShards", stream)?;
        let find = |s: &MemStream, id: &str| {
            s.shard_index(id)
                .filter(|&i| s.shards[i].info.is_open())
                .ok_or_else(|| invalid("MergeShards", stream, format!("no open shard {id}")))
        };
        let (a, b) = (find(s, shard)?, find(s, adjacent)?);
        let (lo, hi) = if s.shards[a].info.starting_hash_key < s.shards[b].info.starting_hash_key {
            (a, b)
        } else {
            (b, a)
        };
        if s.shards[lo].info.ending_hash_key.checked_add(1)
            != Some(s.shards[hi].info.starting_hash_key)
        {
            return Err(invalid(
                "MergeShards",
                stream,
                format!("{shard} and {adjacent} are not adjacent"),
            ));
        }
        let (start, end) = (
            s.shards[lo].info.starting_hash_key,
            s.shards[hi].info.ending_hash_key,
        );
        s.close(a);
        s.close(b);
        s.add_shard(
            start,
            end,
            Some(shard.to_owned()),
            Some(adjacent.to_owned()),
        );
        self.written.notify_waiters();
        Ok(())
    }

    /// Replaces the injected faults.
    pub fn set_faults(&self, faults: Faults) {
        self.lock().faults = faults;
    }

    /// Ends subscriptions after `lifetime` instead of five minutes (to test resubscribing).
    pub fn set_subscription_lifetime(&self, lifetime: Duration) {
        self.lock().subscription_lifetime = lifetime;
    }

    /// The sequence number just before `iterator`'s position (the shard's starting
    /// sequence number at its start): where a subscription continues from.
    fn continuation(&self, stream: &str, iterator: &str) -> Option<String> {
        let (index, offset) = decode_iterator(stream, iterator)?;
        let state = self.lock();
        let shard = state.streams.get(stream)?.shards.get(index)?;
        match offset.checked_sub(1) {
            Some(before) => shard.records.get(before).map(|r| r.sequence_number.clone()),
            None => Some(shard.info.starting_sequence_number.clone()),
        }
    }

    /// An iterator at `position`, without drawing faults (the caller did, once per call).
    fn iterator_at(
        &self,
        operation: &'static str,
        stream: &str,
        shard_id: &str,
        position: &IteratorPosition,
    ) -> Result<String, StreamError> {
        let mut state = self.lock();
        let s = state.stream_mut(operation, stream)?;
        let index = s.shard_index_or_err(operation, stream, shard_id)?;
        let records = &s.shards[index].records;
        let offset = match position {
            IteratorPosition::TrimHorizon => 0,
            IteratorPosition::Latest => records.len(),
            IteratorPosition::AtTimestamp(at) => records.partition_point(|r| r.arrival < *at),
            IteratorPosition::AtSequenceNumber(seq) => records
                .partition_point(|r| compare_sequence_numbers(&r.sequence_number, seq).is_lt()),
            IteratorPosition::AfterSequenceNumber(seq) => records
                .partition_point(|r| compare_sequence_numbers(&r.sequence_number, seq).is_le()),
        };
        Ok(encode_iterator(stream, index, offset))
    }

    /// The call counters so far.
    pub fn stats(&self) -> MemoryStats {
        self.lock().stats
    }

    /// The stream's shards, as ListShards would return them but never failed by injected
    /// faults: for tests inspecting the stream, not exercising the client.
    pub fn shards(&self, stream: &str) -> Vec<Shard> {
        let state = self.lock();
        state
            .streams
            .get(stream)
            .map(|s| s.shards.iter().map(|m| m.info.clone()).collect())
            .unwrap_or_default()
    }

    /// The records of one shard, in sequence order.
    pub fn records(&self, stream: &str, shard_id: &str) -> Vec<StoredRecord> {
        let state = self.lock();
        state
            .streams
            .get(stream)
            .and_then(|s| s.shard_index(shard_id).map(|i| s.shards[i].records.clone()))
            .unwrap_or_default()
    }

    /// Waits out `latency` and `stall`, then draws whether the call fails whole.
    async fn call_faults(&self, operation: &'static str, stream: &str) -> Result<(), StreamError> {
        let latency = self.lock().faults.latency;
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        while self.lock().faults.stall {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let mut state = self.lock();
        let (timeout, error) = (state.faults.timeout_ratio, state.faults.call_error_ratio);
        if timeout > 0.0 && state.draw() < timeout {
            state.stats.calls_failed += 1;
            return Err(StreamError::Timeout {
                operation,
                stream: stream.to_owned(),
            });
        }
        if error > 0.0 && state.draw() < error {
            state.stats.calls_failed += 1;
            return Err(StreamError::Service {
                operation,
                stream: stream.to_owned(),
                code: "InternalFailure".to_owned(),
                message: "injected HTTP 500".to_owned(),
                retryable: true,
            });
        }
        Ok(())
    }
}

impl StreamClient for MemoryStreams {
    async fn list_shards(&self, stream: &str) -> Result<Vec<Shard>, StreamError> {
        let delay = self.lock().faults.list_shards_delay;
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        self.call_faults("ListShards", stream).await?;
        let mut state = self.lock();
        let s = state.stream_mut("ListShards", stream)?;
        Ok(s.shards.iter().map(|m| m.info.clone()).collect())
    }

    async fn put_records(
        &self,
        stream: &str,
        entries: Vec<PutEntry>,
    ) -> Result<Vec<PutEntryResult>, StreamError> {
        const OP: &str = "PutRecords";
        if entries.is_empty() || entries.len() > 500 {
            return Err(invalid(
                OP,
                stream,
                format!("{} entries (1..=500)", entries.len()),
            ));
        }
        let total: usize = entries.iter().map(PutEntry::size).sum();
        if total > 5 * 1024 * 1024 {
            return Err(invalid(
                OP,
                stream,
                format!("{total} bytes in one call (max 5 MiB)"),
            ));
        }
        self.call_faults(OP, stream).await?;
        let mut state = self.lock();
        let faults = state.faults.clone();
        let mut results = Vec::with_capacity(entries.len());
        // Validate before writing anything: a bad entry fails the whole call, as in Kinesis.
        let mut hashes = Vec::with_capacity(entries.len());
        for e in &entries {
            if e.size() > 1024 * 1024 {
                return Err(invalid(
                    OP,
                    stream,
                    format!("record of {} bytes (max 1 MiB)", e.size()),
                ));
            }
            let hash = match &e.explicit_hash_key {
                Some(ehk) => {
                    parse_hash_key(ehk).map_err(|err| invalid(OP, stream, err.to_string()))?
                }
                None => partition_key_hash(&e.partition_key),
            };
            hashes.push(hash);
        }
        state.stream_mut(OP, stream)?;
        let mut written = 0u64;
        let mut refused = 0u64;
        let mut bytes = 0u64;
        for (e, hash) in entries.into_iter().zip(hashes) {
            let refuse = if faults.reject_all
                || (faults.throttle_ratio > 0.0 && state.draw() < faults.throttle_ratio)
            {
                Some(PutEntryError {
                    code: PutEntryError::THROTTLED.to_owned(),
                    message: "Rate exceeded for shard (injected).".to_owned(),
                })
            } else if faults.internal_failure_ratio > 0.0
                && state.draw() < faults.internal_failure_ratio
            {
                Some(PutEntryError {
                    code: PutEntryError::INTERNAL_FAILURE.to_owned(),
                    message: "Internal service failure (injected).".to_owned(),
                })
            } else {
                None
            };
            if let Some(err) = refuse {
                refused += 1;
                results.push(Err(err));
                continue;
            }
            let s = state.stream_mut(OP, stream)?;
            let Some(i) = s
                .shards
                .iter()
                .position(|m| m.info.is_open() && m.info.contains(hash))
            else {
                return Err(invalid(
                    OP,
                    stream,
                    format!("no open shard owns hash key {hash}"),
                ));
            };
            let sequence_number = s.next_sequence_number();
            bytes += e.size() as u64;
            let shard = &mut s.shards[i];
            shard.records.push(StoredRecord {
                sequence_number: sequence_number.clone(),
                partition_key: e.partition_key,
                explicit_hash_key: e.explicit_hash_key,
                data: e.data,
                arrival: SystemTime::now(),
            });
            written += 1;
            results.push(Ok(PutSuccess {
                shard_id: shard.info.shard_id.clone(),
                sequence_number,
            }));
        }
        state.stats.put_records_calls += 1;
        state.stats.entries_written += written;
        state.stats.entries_refused += refused;
        state.stats.bytes_written += bytes;
        drop(state);
        if written > 0 {
            self.written.notify_waiters();
        }
        Ok(results)
    }

    async fn get_shard_iterator(
        &self,
        stream: &str,
        shard_id: &str,
        position: &IteratorPosition,
    ) -> Result<String, StreamError> {
        const OP: &str = "GetShardIterator";
        self.call_faults(OP, stream).await?;
        self.iterator_at(OP, stream, shard_id, position)
    }

    async fn get_records(
        &self,
        stream: &str,
        iterator: &str,
        limit: u32,
    ) -> Result<GetRecordsOutput, StreamError> {
        const OP: &str = "GetRecords";
        if !(1..=10_000).contains(&limit) {
            return Err(invalid(
                OP,
                stream,
                format!("limit {limit} not in 1..=10000"),
            ));
        }
        self.call_faults(OP, stream).await?;
        let mut state = self.lock();
        let (throttle, expire) = (
            state.faults.read_throttle_ratio,
            state.faults.expired_iterator_ratio,
        );
        if throttle > 0.0 && state.draw() < throttle {
            return Err(StreamError::Throttled {
                operation: OP,
                stream: stream.to_owned(),
                code: PutEntryError::THROTTLED.to_owned(),
                message: "Rate exceeded for shard (injected).".to_owned(),
            });
        }
        if expire > 0.0 && state.draw() < expire {
            return Err(StreamError::ExpiredIterator {
                operation: OP,
                stream: stream.to_owned(),
                message: "Iterator expired (injected).".to_owned(),
            });
        }
        let Some((index, offset)) = decode_iterator(stream, iterator) else {
            return Err(invalid(
                OP,
                stream,
                format!("bad shard iterator {iterator}"),
            ));
        };
        let s = state.stream_mut(OP, stream)?;
        let Some(shard) = s.shards.get(index) else {
            return Err(invalid(
                OP,
                stream,
                format!("bad shard iterator {iterator}"),
            ));
        };
        let total = shard.records.len();
        let start = offset.min(total);
        let end = start.saturating_add(limit as usize).min(total);
        let mut bytes = 0usize;
        let mut records = Vec::with_capacity(end - start);
        for r in &shard.records[start..end] {
            // GetRecords returns at most 10 MiB.
            bytes += r.data.len() + r.partition_key.len();
            if !records.is_empty() && bytes > 10 * 1024 * 1024 {
                break;
            }
            records.push(ReceivedRecord {
                sequence_number: r.sequence_number.clone(),
                partition_key: r.partition_key.clone(),
                approximate_arrival: Some(r.arrival),
                data: r.data.clone(),
            });
        }
        let next = start + records.len();
        let millis_behind_latest = if next >= total {
            0
        } else {
            shard
                .records
                .last()
                .and_then(|newest| {
                    newest
                        .arrival
                        .duration_since(shard.records[next].arrival)
                        .ok()
                })
                .map_or(0, |d| d.as_millis() as u64)
        };
        let closed_and_done = !shard.info.is_open() && next >= total;
        let shard_id = shard.info.shard_id.clone();
        let child_shards = if closed_and_done {
            s.shards
                .iter()
                .filter(|c| {
                    c.info.parent_shard_id.as_deref() == Some(&shard_id)
                        || c.info.adjacent_parent_shard_id.as_deref() == Some(&shard_id)
                })
                .map(|c| ChildShard {
                    shard_id: c.info.shard_id.clone(),
                    parent_shards: c
                        .info
                        .parent_shard_id
                        .iter()
                        .chain(c.info.adjacent_parent_shard_id.iter())
                        .cloned()
                        .collect(),
                    starting_hash_key: c.info.starting_hash_key,
                    ending_hash_key: c.info.ending_hash_key,
                })
                .collect()
        } else {
            Vec::new()
        };
        state.stats.get_records_calls += 1;
        state.stats.records_read += records.len() as u64;
        Ok(GetRecordsOutput {
            records,
            next_shard_iterator: (!closed_and_done).then(|| encode_iterator(stream, index, next)),
            millis_behind_latest: Some(millis_behind_latest),
            child_shards,
        })
    }

    async fn register_consumer(
        &self,
        stream: &str,
        consumer_name: &str,
    ) -> Result<String, StreamError> {
        const OP: &str = "RegisterStreamConsumer";
        self.call_faults(OP, stream).await?;
        let mut state = self.lock();
        state.stream_mut(OP, stream)?;
        let arn = format!(
            "arn:aws:kinesis:us-east-1:000000000000:stream/{stream}/consumer/{consumer_name}:1"
        );
        state.consumers.insert(arn.clone(), stream.to_owned());
        Ok(arn)
    }

    async fn subscribe_to_shard(
        &self,
        stream: &str,
        consumer_arn: &str,
        shard_id: &str,
        position: &IteratorPosition,
    ) -> Result<Subscription, StreamError> {
        const OP: &str = "SubscribeToShard";
        self.call_faults(OP, stream).await?;
        let key = (consumer_arn.to_owned(), shard_id.to_owned());
        let lifetime = {
            let mut state = self.lock();
            if state.consumers.get(consumer_arn).map(String::as_str) != Some(stream) {
                return Err(StreamError::Service {
                    operation: OP,
                    stream: stream.to_owned(),
                    code: "ResourceNotFoundException".to_owned(),
                    message: format!("consumer {consumer_arn} is not registered on {stream}"),
                    retryable: false,
                });
            }
            if !state.subscriptions.insert(key.clone()) {
                return Err(StreamError::Service {
                    operation: OP,
                    stream: stream.to_owned(),
                    code: "ResourceInUseException".to_owned(),
                    message: format!(
                        "another active subscription exists for {consumer_arn} on {shard_id}"
                    ),
                    retryable: true,
                });
            }
            match state.subscription_lifetime {
                Duration::ZERO => SUBSCRIPTION_LIFETIME,
                lifetime => lifetime,
            }
        };
        let slot = SubscriptionSlot {
            streams: self.clone(),
            key,
        };
        // One call, one draw of the injected faults (made above).
        let mut iterator = self.iterator_at(OP, stream, shard_id, position)?;
        let me = self.clone();
        let stream = stream.to_owned();
        Ok(Subscription::spawn(move |tx| async move {
            let _slot = slot;
            let deadline = tokio::time::Instant::now() + lifetime;
            let mut last_sent: Option<tokio::time::Instant> = None;
            loop {
                // Registered before reading, so that a write in between still wakes us.
                let written = me.written.notified();
                tokio::pin!(written);
                written.as_mut().enable();
                let out = match me.get_records(&stream, &iterator, 10_000).await {
                    Ok(out) => out,
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                };
                let empty = out.records.is_empty();
                let end = out.next_shard_iterator.is_none();
                let heartbeat = last_sent.is_none_or(|t| t.elapsed() >= SUBSCRIPTION_HEARTBEAT);
                if !empty || end || heartbeat {
                    let continuation = match &out.next_shard_iterator {
                        Some(next) => me.continuation(&stream, next),
                        None => None,
                    };
                    let event = SubscriptionEvent {
                        records: out.records,
                        continuation_sequence_number: continuation,
                        millis_behind_latest: out.millis_behind_latest,
                        child_shards: out.child_shards,
                    };
                    if tx.send(Ok(event)).await.is_err() {
                        return;
                    }
                    last_sent = Some(tokio::time::Instant::now());
                }
                let Some(next) = out.next_shard_iterator else {
                    return;
                };
                iterator = next;
                if empty {
                    let beat = SUBSCRIPTION_HEARTBEAT
                        .saturating_sub(last_sent.map_or(Duration::ZERO, |t| t.elapsed()));
                    tokio::select! {
                        () = &mut written => {}
                        () = tokio::time::sleep(beat) => {}
                        () = tokio::time::sleep_until(deadline) => return,
                    }
                }
                if tokio::time::Instant::now() >= deadline {
                    return;
                }
            }
        }))
    }
}

/// Opaque to callers: `memit/<shard index>/<offset>/<stream>`.
fn encode_iterator(stream: &str, shard_index: usize, offset: usize) -> String {
    format!("memit/{shard_index}/{offset}/{stream}")
}

fn decode_iterator(stream: &str, iterator: &str) -> Option<(usize, usize)> {
    let rest = iterator.strip_prefix("memit/")?;
    let mut parts = rest.splitn(3, '/');
    let index = parts.next()?.parse().ok()?;
    let offset = parts.next()?.parse().ok()?;
    (parts.next()? == stream).then_some((index, offset))
}
