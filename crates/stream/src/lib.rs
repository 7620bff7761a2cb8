//! The Kinesis boundary of chief.
//!
//! [`StreamClient`] is the small trait the producer and the consumer talk to: the write
//! side (ListShards, PutRecords) and the read side (GetShardIterator, GetRecords, and the
//! enhanced fan-out calls RegisterStreamConsumer and SubscribeToShard). It has
//! two implementations, tested against the same expectations:
//! - [`KinesisClient`]: the AWS SDK client (real Kinesis or a local emulator);
//! - [`MemoryStreams`]: an in-memory Kinesis (hash-range routing, sequence numbers,
//!   resharding) with fault injection — throttled entries, failed calls, time-outs,
//!   latency, a stream that never accepts, a stream that stalls — for tests and
//!   benchmarks that no emulator can provide (none enforces shard limits).

mod error;
mod kinesis;
mod memory;
mod read;
mod subscribe;

use std::future::Future;

use bytes::Bytes;

pub use error::{PutEntryError, StreamError, error_line, is_fatal_code};
pub use kinesis::KinesisClient;
pub use memory::{Faults, MemoryStats, MemoryStreams, StoredRecord};
pub use read::{
    ChildShard, GetRecordsOutput, IteratorPosition, ReceivedRecord, compare_sequence_numbers,
    read_all,
};
pub use subscribe::{EventSender, Subscription, SubscriptionEvent};

/// One shard of a stream, as ListShards describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shard {
    /// `shardId-000000000000`.
    pub shard_id: String,
    /// The parent shard (after a split or a merge).
    pub parent_shard_id: Option<String>,
    /// The second parent of a merged shard.
    pub adjacent_parent_shard_id: Option<String>,
    /// First hash key the shard owns.
    pub starting_hash_key: u128,
    /// Last hash key the shard owns (inclusive).
    pub ending_hash_key: u128,
    /// First sequence number of the shard.
    pub starting_sequence_number: String,
    /// Last sequence number, present once the shard is closed (split or merged away).
    pub ending_sequence_number: Option<String>,
}

impl Shard {
    /// Whether the shard still accepts records.
    pub fn is_open(&self) -> bool {
        self.ending_sequence_number.is_none()
    }

    /// Whether the shard owns `hash_key`.
    pub fn contains(&self, hash_key: u128) -> bool {
        (self.starting_hash_key..=self.ending_hash_key).contains(&hash_key)
    }
}

/// One entry of a PutRecords call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutEntry {
    /// Partition key (1..=256 characters).
    pub partition_key: String,
    /// Explicit hash key (decimal), overriding the partition key's hash for routing.
    pub explicit_hash_key: Option<String>,
    /// The record's bytes.
    pub data: Bytes,
}

impl PutEntry {
    /// What Kinesis counts against the 1 MiB record and 5 MiB request limits.
    pub fn size(&self) -> usize {
        self.data.len() + self.partition_key.len()
    }
}

/// Where a PutRecords entry landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutSuccess {
    /// The shard that took it.
    pub shard_id: String,
    /// Its sequence number.
    pub sequence_number: String,
}

/// The outcome of one PutRecords entry, in request order.
pub type PutEntryResult = Result<PutSuccess, PutEntryError>;

/// The Kinesis calls chief makes.
pub trait StreamClient: Send + Sync + 'static {
    /// All shards of the stream, open and closed, in ListShards order (every page).
    fn list_shards(
        &self,
        stream: &str,
    ) -> impl Future<Output = Result<Vec<Shard>, StreamError>> + Send;

    /// PutRecords: one result per entry, in order. A call-level error means no entry
    /// was written; per-entry errors (throttling, internal failure) are in the results.
    fn put_records(
        &self,
        stream: &str,
        entries: Vec<PutEntry>,
    ) -> impl Future<Output = Result<Vec<PutEntryResult>, StreamError>> + Send;

    /// GetShardIterator: an opaque iterator reading `shard_id` from `position`.
    fn get_shard_iterator(
        &self,
        stream: &str,
        shard_id: &str,
        position: &IteratorPosition,
    ) -> impl Future<Output = Result<String, StreamError>> + Send;

    /// GetRecords: up to `limit` records (1..=10,000) from `iterator`, the next iterator
    /// (none at the end of a closed shard, where the child shards are reported), and
    /// `MillisBehindLatest`. An expired iterator fails with [`StreamError::ExpiredIterator`].
    fn get_records(
        &self,
        stream: &str,
        iterator: &str,
        limit: u32,
    ) -> impl Future<Output = Result<GetRecordsOutput, StreamError>> + Send;

    /// RegisterStreamConsumer for enhanced fan-out, or the existing consumer of that name
    /// (DescribeStreamConsumer); waits until it is `ACTIVE` and returns its ARN.
    fn register_consumer(
        &self,
        stream: &str,
        consumer_name: &str,
    ) -> impl Future<Output = Result<String, StreamError>> + Send;

    /// SubscribeToShard: pushes the shard's records from `position` to a registered
    /// consumer (`consumer_arn`) until the subscription ends (after five minutes) or fails.
    /// `stream` names the stream in errors.
    fn subscribe_to_shard(
        &self,
        stream: &str,
        consumer_arn: &str,
        shard_id: &str,
        position: &IteratorPosition,
    ) -> impl Future<Output = Result<Subscription, StreamError>> + Send;
}

/// The last sequence number of every shard of `stream` that has records, read from
/// `TRIM_HORIZON` (benchmarks and tests: "every shard is checkpointed at its tip").
///
/// # Errors
/// A ListShards, GetShardIterator or GetRecords failure.
pub async fn shard_tips<C: StreamClient>(
    client: &C,
    stream: &str,
) -> Result<Vec<(String, String)>, StreamError> {
    let mut out = Vec::new();
    for shard in client.list_shards(stream).await? {
        let mut iterator = client
            .get_shard_iterator(stream, &shard.shard_id, &IteratorPosition::TrimHorizon)
            .await?;
        let mut last = None;
        loop {
            let page = client.get_records(stream, &iterator, 10_000).await?;
            if let Some(r) = page.records.last() {
                last = Some(r.sequence_number.clone());
            }
            match page.next_shard_iterator {
                Some(next) if !page.records.is_empty() => iterator = next,
                _ => break,
            }
        }
        if let Some(last) = last {
            out.push((shard.shard_id, last));
        }
    }
    Ok(out)
}
