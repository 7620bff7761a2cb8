//! A KPL-style Kinesis producer, without what the KPL's users hate about it.
//!
//! [`Producer::send`] takes a [`UserRecord`] and, once the bounded buffer has room,
//! returns a [`RecordReceipt`]: a future of the record's outcome — where it landed
//! (shard, sequence and sub-sequence number, attempts) or why it failed, with the record
//! handed back and every attempt made. [`Producer::send_batch`] does the same for many
//! records at once, at about twice the rate per core, with one [`BatchReceipt`] for the
//! batch's outcomes. Inside, one task:
//! - predicts each record's shard from a shard map (ListShards), refreshed when a record
//!   lands on another shard than predicted (a reshard), re-predicting buffered records;
//!   the user records of an aggregate put on a shard that does not own them are sent
//!   again to the shard that does (the KPL's "Wrong Shard" retry; consumers skip the
//!   copies, as the KCL does), and the stale shard sends nothing until the new map;
//! - aggregates records per predicted shard in the KPL wire format (optional);
//! - collects entries into PutRecords calls (≤ 500 entries, ≤ 5 MiB), at most one call in
//!   flight per shard so that per-partition-key order holds, and at most
//!   `max_connections` calls in all;
//! - rate-limits each shard with token buckets (records/s and bytes/s, 150 % of the shard
//!   limit by default, as the KPL);
//! - retries only the failed entries, with jittered exponential back-off, until the
//!   record's time to live runs out;
//! - exports the KPL metric names through the `metrics` facade.
//!
//! **Bounded memory:** the buffer is bounded in bytes and in records; while it is full,
//! `send` waits (backpressure) instead of growing.
//!
//! **Order:** records of one partition key reach Kinesis in `send` order, because a shard
//! has one call in flight at a time and a failed entry is retried before anything newer of
//! its shard. One case remains, as in the KPL: if Kinesis refuses an entry of a call but
//! takes a later entry of the same shard in that call, the later one lands first; and
//! after a split, a record of the call that first hit the old map can land ahead of an
//! earlier record of its key that is sent again. Set `max_entries_per_shard_per_call = 1`
//! to rule both out.

mod config;
mod limiter;
mod outcome;
mod pipeline;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use chief_aggregation::AggregationError;
use chief_stream::{StreamClient, StreamError};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::task::JoinHandle;

pub use chief_aggregation::UserRecord;
pub use config::ProducerConfig;
pub use limiter::TokenBucket;
pub use outcome::{
    Attempt, AttemptError, BatchReceipt, FailureReason, RecordFailure, RecordOutcome,
    RecordReceipt, RecordSuccess,
};

use outcome::BatchSlot;
use pipeline::{Control, Incoming, Pipeline};

/// Retries of ListShards at start before giving up.
const START_RETRIES: u32 = 8;

/// Book-keeping bytes counted per buffered record on top of its data and keys: its
/// receipt channel, its place in the aggregate's tables and queues. Measured: with 100-byte
/// records and 36-byte keys, peak RSS per buffered record is ~340 bytes (BENCHMARKS.md), so
/// the buffer bound is close to the memory the buffer really takes.
pub const RECORD_OVERHEAD_BYTES: usize = 200;

/// The producer could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProducerError {
    /// The config breaks a Kinesis limit or is unusable.
    #[error("invalid producer config: {0}")]
    Config(String),
    /// ListShards failed.
    #[error("cannot read the shards of stream {stream}: {source}")]
    ListShards {
        /// The stream.
        stream: String,
        /// The error.
        source: StreamError,
    },
    /// The open shards do not form a usable map.
    #[error("stream {stream} has no usable shard map: {reason}")]
    ShardMap {
        /// The stream.
        stream: String,
        /// What is wrong.
        reason: String,
    },
}

/// `send` refused a record; the record is handed back.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// The record breaks a Kinesis limit (key length, size, explicit hash key).
    #[error("invalid record: {0}")]
    Invalid(#[from] AggregationError),
    /// The record alone is larger than the whole buffer.
    #[error("record of {cost} bytes does not fit a buffer of {bound} bytes")]
    LargerThanBuffer {
        /// The record.
        record: UserRecord,
        /// What it would take in the buffer.
        cost: usize,
        /// The buffer bound.
        bound: usize,
    },
    /// The producer is shutting down or stopped.
    #[error("the producer is shut down")]
    Closed {
        /// The record.
        record: UserRecord,
    },
    /// `try_send` only: the buffer is full now.
    #[error("the producer's buffer is full")]
    Full {
        /// The record.
        record: UserRecord,
    },
}

/// `send_batch` refused a batch; every record of it is handed back, in order.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BatchSendError {
    /// The batch alone is larger than the whole buffer: send it in smaller batches.
    #[error(
        "a batch of {count} records and {cost} bytes does not fit a buffer of {max_records} records and {bound} bytes"
    )]
    LargerThanBuffer {
        /// The records.
        records: Vec<UserRecord>,
        /// How many of them would be buffered (the valid ones).
        count: usize,
        /// What they would take in the buffer.
        cost: usize,
        /// The buffer bound in bytes.
        bound: usize,
        /// The buffer bound in records.
        max_records: usize,
    },
    /// The producer is shutting down or stopped.
    #[error("the producer is shut down")]
    Closed {
        /// The records.
        records: Vec<UserRecord>,
    },
}

impl BatchSendError {
    /// The refused records, in the batch's order.
    pub fn into_records(self) -> Vec<UserRecord> {
        match self {
            Self::LargerThanBuffer { records, .. } | Self::Closed { records } => records,
        }
    }
}

/// What a valid record takes in the buffer.
fn buffer_cost(record: &UserRecord) -> usize {
    record.size() + record.explicit_hash_key.as_ref().map_or(0, String::len) + RECORD_OVERHEAD_BYTES
}

/// The records of a batch back in their order, from its valid records (index in the
/// batch, record, cost) and its invalid ones (index, error holding the record).
fn in_batch_order(
    valid: Vec<(usize, UserRecord, usize)>,
    invalid: Vec<(usize, AggregationError)>,
) -> Vec<UserRecord> {
    let mut all: Vec<(usize, UserRecord)> = valid
        .into_iter()
        .map(|(i, r, _)| (i, r))
        .chain(invalid.into_iter().map(|(i, e)| (i, e.into_record())))
        .collect();
    all.sort_by_key(|(i, _)| *i);
    all.into_iter().map(|(_, r)| r).collect()
}

impl SendError {
    /// The refused record.
    pub fn into_record(self) -> UserRecord {
        match self {
            Self::Invalid(e) => e.into_record(),
            Self::LargerThanBuffer { record, .. }
            | Self::Closed { record }
            | Self::Full { record } => record,
        }
    }
}

/// Counters of a producer, for progress output.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProducerStats {
    /// Records accepted by `send`.
    pub received: u64,
    /// Records put.
    pub put: u64,
    /// Records failed back.
    pub failed: u64,
    /// Records accepted and without outcome yet.
    pub pending: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    received: AtomicU64,
    put: AtomicU64,
    failed: AtomicU64,
}

impl Counters {
    fn pending(&self) -> u64 {
        let done = self.put.load(Ordering::Acquire) + self.failed.load(Ordering::Acquire);
        self.received.load(Ordering::Acquire).saturating_sub(done)
    }
}

fn snapshot(counters: &Counters) -> ProducerStats {
    let received = counters.received.load(Ordering::Acquire);
    let put = counters.put.load(Ordering::Acquire);
    let failed = counters.failed.load(Ordering::Acquire);
    ProducerStats {
        received,
        put,
        failed,
        pending: received.saturating_sub(put + failed),
    }
}

/// The buffer bound: permits for records and for bytes.
#[derive(Debug)]
pub(crate) struct Budget {
    records: Semaphore,
    bytes: Semaphore,
}

impl Budget {
    fn release(&self, records: usize, bytes: usize) {
        self.records.add_permits(records);
        self.bytes.add_permits(bytes);
    }
}

/// A KPL-style producer for one stream. Share it with `Arc` to send from many tasks.
#[derive(Debug)]
pub struct Producer {
    stream: String,
    intake: mpsc::UnboundedSender<Incoming>,
    control: mpsc::UnboundedSender<Control>,
    budget: Arc<Budget>,
    counters: Arc<Counters>,
    bound: usize,
    max_records: usize,
    /// The producer task, until the first `shutdown` has waited for it.
    task: tokio::sync::Mutex<Option<JoinHandle<()>>>,
}

impl Producer {
    /// Reads the stream's shards and starts the producer task.
    pub async fn start<C: StreamClient>(
        client: C,
        stream: impl Into<String>,
        config: ProducerConfig,
    ) -> Result<Self, ProducerError> {
        config.validate().map_err(ProducerError::Config)?;
        let stream: String = stream.into();
        let mut retry = 0;
        let shards = loop {
            match client.list_shards(&stream).await {
                Ok(shards) => break shards,
                Err(e) if e.is_retryable() && retry < START_RETRIES => {
                    retry += 1;
                    tracing::warn!(stream = %stream, error = %e, retry, "ListShards failed; retrying");
                    tokio::time::sleep(config.retry.jittered(retry)).await;
                }
                Err(source) => return Err(ProducerError::ListShards { stream, source }),
            }
        };
        let map = pipeline::open_shard_map(&shards).map_err(|reason| ProducerError::ShardMap {
            stream: stream.clone(),
            reason,
        })?;
        let budget = Arc::new(Budget {
            records: Semaphore::new(config.buffer_max_records),
            bytes: Semaphore::new(config.buffer_max_bytes),
        });
        let counters = Arc::new(Counters::default());
        let (intake_tx, intake_rx) = mpsc::unbounded_channel();
        let (control_tx, control_rx) = mpsc::unbounded_channel();
        let (bound, max_records) = (config.buffer_max_bytes, config.buffer_max_records);
        let pipeline = Pipeline::new(
            Arc::new(client),
            Arc::from(stream.as_str()),
            config,
            budget.clone(),
            counters.clone(),
            intake_rx,
            control_rx,
            map,
        );
        let task = tokio::spawn(pipeline.run());
        Ok(Self {
            stream,
            intake: intake_tx,
            control: control_tx,
            budget,
            counters,
            bound,
            max_records,
            task: tokio::sync::Mutex::new(Some(task)),
        })
    }

    /// The stream this producer writes to.
    pub fn stream(&self) -> &str {
        &self.stream
    }

    /// Hands a record to the producer. Waits while the buffer is full; then returns a
    /// receipt that resolves to the record's outcome. Refuses (and hands back) a record
    /// that breaks a Kinesis limit, and any record once the producer is shutting down.
    pub async fn send(&self, record: UserRecord) -> Result<RecordReceipt, SendError> {
        let (record, cost) = self.admissible(record)?;
        // cost ≤ bound ≤ usize and a single record is ≤ 1 MiB + keys: fits u32.
        if !self.reserve(1, cost as u32).await {
            return Err(SendError::Closed { record });
        }
        self.submit_one(record, cost)
    }

    /// As [`send`](Producer::send), but never waits: a record that does not fit the buffer
    /// now is handed back at once ([`SendError::Full`]), for callers that would rather
    /// shed or divert load than block.
    pub fn try_send(&self, record: UserRecord) -> Result<RecordReceipt, SendError> {
        let (record, cost) = self.admissible(record)?;
        if self.budget.records.is_closed() {
            return Err(SendError::Closed { record });
        }
        // cost ≤ bound ≤ usize and a single record is ≤ 1 MiB + keys: fits u32.
        let Ok(records) = self.budget.records.try_acquire_many(1) else {
            return Err(self.full_or_closed(record));
        };
        let Ok(bytes) = self.budget.bytes.try_acquire_many(cost as u32) else {
            return Err(self.full_or_closed(record));
        };
        records.forget();
        bytes.forget();
        self.submit_one(record, cost)
    }

    /// The record if it keeps Kinesis' limits and fits the buffer at all, with its cost.
    fn admissible(&self, record: UserRecord) -> Result<(UserRecord, usize), SendError> {
        let record = record.validate()?;
        let cost = buffer_cost(&record);
        if cost > self.bound {
            return Err(SendError::LargerThanBuffer {
                record,
                cost,
                bound: self.bound,
            });
        }
        Ok((record, cost))
    }

    /// Hands one record whose room is reserved to the producer task.
    fn submit_one(&self, record: UserRecord, cost: usize) -> Result<RecordReceipt, SendError> {
        let (reply, rx) = oneshot::channel();
        let incoming = Incoming::One {
            record,
            reply,
            arrived: Instant::now(),
            cost,
        };
        if let Err(incoming) = self.enqueue(incoming, 1, cost) {
            if let Incoming::One { record, .. } = incoming {
                return Err(SendError::Closed { record });
            }
            unreachable!("the message sent is the one handed back");
        }
        Ok(RecordReceipt { rx })
    }

    fn full_or_closed(&self, record: UserRecord) -> SendError {
        if self.budget.records.is_closed() || self.budget.bytes.is_closed() {
            SendError::Closed { record }
        } else {
            SendError::Full { record }
        }
    }

    /// Hands many records to the producer at once: one wait for buffer room and one
    /// message to the producer task for the lot, and one receipt that resolves to every
    /// record's outcome in the batch's order — much cheaper per record than [`send`]
    /// (`BENCHMARKS.md`). The records are aggregated and put exactly as if each had been
    /// given to `send` in order. A record that breaks a Kinesis limit is not refused with
    /// the batch: its outcome is a `Rejected` failure (`InvalidRecord`) that hands it back.
    /// Refuses the whole batch, handing every record back, if its valid records alone do
    /// not fit the buffer bounds, or once the producer is shutting down.
    ///
    /// [`send`]: Producer::send
    pub async fn send_batch(
        &self,
        records: Vec<UserRecord>,
    ) -> Result<BatchReceipt, BatchSendError> {
        let n = records.len();
        let mut valid: Vec<(usize, UserRecord, usize)> = Vec::with_capacity(n);
        let mut invalid: Vec<(usize, AggregationError)> = Vec::new();
        let mut cost = 0usize;
        for (i, record) in records.into_iter().enumerate() {
            match record.validate() {
                Ok(record) => {
                    let c = buffer_cost(&record);
                    cost += c;
                    valid.push((i, record, c));
                }
                Err(e) => invalid.push((i, e)),
            }
        }
        let count = valid.len();
        let (Ok(permits), Ok(bytes)) = (u32::try_from(count), u32::try_from(cost)) else {
            return Err(self.batch_too_large(valid, invalid, cost));
        };
        if cost > self.bound || count > self.max_records {
            return Err(self.batch_too_large(valid, invalid, cost));
        }
        let give_back = |valid, invalid| BatchSendError::Closed {
            records: in_batch_order(valid, invalid),
        };
        if count > 0 && !self.reserve(permits, bytes).await {
            return Err(give_back(valid, invalid));
        }
        let (slot, receipt) = BatchSlot::new(n);
        if count > 0 {
            let incoming = Incoming::Batch {
                records: valid,
                slot: slot.clone(),
                arrived: Instant::now(),
            };
            if let Err(incoming) = self.enqueue(incoming, count, cost) {
                if let Incoming::Batch { records, .. } = incoming {
                    return Err(give_back(records, invalid));
                }
                unreachable!("the message sent is the one handed back");
            }
        }
        slot.set(invalid.into_iter().map(|(i, e)| {
            let reason = FailureReason::Rejected {
                code: "InvalidRecord".to_owned(),
                message: e.to_string(),
            };
            let failure = RecordFailure {
                record: Some(e.into_record()),
                reason,
                attempts: Arc::from(Vec::new()),
            };
            (i, Err(Box::new(failure)))
        }));
        Ok(receipt)
    }

    /// Takes `records` and `bytes` of buffer room, waiting while the buffer is full; `false`
    /// once the producer is shutting down (nothing is then taken).
    async fn reserve(&self, records: u32, bytes: u32) -> bool {
        let Ok(records) = self.budget.records.acquire_many(records).await else {
            return false;
        };
        let Ok(bytes) = self.budget.bytes.acquire_many(bytes).await else {
            return false;
        };
        records.forget();
        bytes.forget();
        true
    }

    /// Hands `count` records holding `cost` of reserved room to the producer task; if the
    /// task no longer takes records, gives the room back and returns the message.
    fn enqueue(&self, incoming: Incoming, count: usize, cost: usize) -> Result<(), Incoming> {
        self.counters
            .received
            .fetch_add(count as u64, Ordering::AcqRel);
        self.intake
            .send(incoming)
            .map_err(|mpsc::error::SendError(incoming)| {
                self.counters
                    .received
                    .fetch_sub(count as u64, Ordering::AcqRel);
                self.budget.release(count, cost);
                incoming
            })
    }

    fn batch_too_large(
        &self,
        valid: Vec<(usize, UserRecord, usize)>,
        invalid: Vec<(usize, AggregationError)>,
        cost: usize,
    ) -> BatchSendError {
        BatchSendError::LargerThanBuffer {
            count: valid.len(),
            records: in_batch_order(valid, invalid),
            cost,
            bound: self.bound,
            max_records: self.max_records,
        }
    }

    /// Sends everything buffered now, without waiting for aggregates or calls to fill, and
    /// returns when every record accepted so far has its outcome (with other tasks still
    /// sending: when the producer is momentarily idle).
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.control.send(Control::Flush(tx)).is_ok() {
            let _ = rx.await;
        }
    }

    /// The counters so far.
    pub fn stats(&self) -> ProducerStats {
        snapshot(&self.counters)
    }

    /// Stops taking records, sends everything buffered (retrying within each record's
    /// TTL), and returns when every record has its outcome. Callable from a shared handle
    /// (`Arc<Producer>`), by any number of tasks: each returns once the producer is done.
    pub async fn shutdown(&self) -> ProducerStats {
        self.budget.records.close();
        self.budget.bytes.close();
        let _ = self.control.send(Control::Shutdown);
        // Held across the wait: a second caller waits here until the first is done.
        let mut task = self.task.lock().await;
        if let Some(handle) = task.take()
            && let Err(e) = handle.await
        {
            tracing::error!(error = %e, "producer task ended abnormally");
        }
        snapshot(&self.counters)
    }
}
