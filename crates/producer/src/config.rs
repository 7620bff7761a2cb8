//! The `[producer]` config section, with the KPL's defaults where the KPL has one.

use std::time::Duration;

use chief_config::retry::RetryPolicy;
use serde::{Deserialize, Serialize};

/// How the producer aggregates, collects, limits, retries and buffers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProducerConfig {
    /// Pack user records bound for the same shard into KPL aggregates. Default true.
    pub aggregation_enabled: bool,
    /// Largest aggregate, in bytes as Kinesis counts them (KPL `AggregationMaxSize`).
    /// Default 51,200; at most 1 MiB.
    pub aggregation_max_bytes: usize,
    /// Most entries in one PutRecords call (KPL `CollectionMaxCount`). Default 500.
    pub collection_max_count: usize,
    /// Most bytes in one PutRecords call (KPL `CollectionMaxSize`). Default 5 MiB.
    pub collection_max_bytes: usize,
    /// Most entries of one shard in one call. Default 500. With 1, per-partition-key order
    /// holds even when Kinesis refuses part of a call (see the crate docs).
    pub max_entries_per_shard_per_call: usize,
    /// Longest a record waits for its aggregate or call to fill, in milliseconds
    /// (KPL `RecordMaxBufferedTime`). Default 100.
    pub record_max_buffered_time_ms: u64,
    /// Time to live of a record, in milliseconds (KPL `RecordTtl`): a record not put by
    /// then is failed back to the caller with its attempts. Default 30,000.
    pub record_ttl_ms: u64,
    /// Per-shard rate limit, percent of the shard's write limit of 1,000 records/s and
    /// 1 MiB/s (KPL `RateLimit`). Default 150.
    pub rate_limit_percent: u32,
    /// Most PutRecords calls in flight (KPL `MaxConnections`). Default 24.
    pub max_connections: usize,
    /// Fail records at once when their shard throttles, instead of retrying
    /// (KPL `FailIfThrottled`). Default false.
    pub fail_if_throttled: bool,
    /// Bound of the buffer, in bytes of user records (data + keys + 200 bytes of
    /// book-keeping each, see `RECORD_OVERHEAD_BYTES`): `send` waits while it is full.
    /// Default 64 MiB.
    pub buffer_max_bytes: usize,
    /// Bound of the buffer in user records: `send` waits while it is full. Default 1,000,000.
    pub buffer_max_records: usize,
    /// Back-off between attempts of a failed entry.
    pub retry: RetryPolicy,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        Self {
            aggregation_enabled: true,
            aggregation_max_bytes: chief_aggregation::DEFAULT_MAX_AGGREGATE_BYTES,
            collection_max_count: 500,
            collection_max_bytes: 5 * 1024 * 1024,
            max_entries_per_shard_per_call: 500,
            record_max_buffered_time_ms: 100,
            record_ttl_ms: 30_000,
            rate_limit_percent: 150,
            max_connections: 24,
            fail_if_throttled: false,
            buffer_max_bytes: 64 * 1024 * 1024,
            buffer_max_records: 1_000_000,
            retry: RetryPolicy::default(),
        }
    }
}

impl ProducerConfig {
    /// `record_max_buffered_time_ms` as a duration.
    pub fn linger(&self) -> Duration {
        Duration::from_millis(self.record_max_buffered_time_ms)
    }

    /// `record_ttl_ms` as a duration.
    pub fn ttl(&self) -> Duration {
        Duration::from_millis(self.record_ttl_ms)
    }

    /// Checks the values against Kinesis' limits.
    pub fn validate(&self) -> Result<(), String> {
        let mib = 1024 * 1024;
        if !(1..=500).contains(&self.collection_max_count) {
            return Err(format!(
                "collection_max_count {} not in 1..=500",
                self.collection_max_count
            ));
        }
        if !(1..=5 * mib).contains(&self.collection_max_bytes) {
            return Err(format!(
                "collection_max_bytes {} not in 1..=5 MiB",
                self.collection_max_bytes
            ));
        }
        if self.aggregation_max_bytes > mib || self.aggregation_max_bytes < 64 {
            return Err(format!(
                "aggregation_max_bytes {} not in 64..=1 MiB",
                self.aggregation_max_bytes
            ));
        }
        if self.max_entries_per_shard_per_call == 0 || self.max_connections == 0 {
            return Err(
                "max_entries_per_shard_per_call and max_connections must be at least 1".into(),
            );
        }
        if self.rate_limit_percent == 0 {
            return Err("rate_limit_percent must be at least 1".into());
        }
        if self.buffer_max_records == 0 || self.buffer_max_bytes < mib + 64 {
            return Err("the buffer must hold at least one 1 MiB record".into());
        }
        Ok(())
    }
}
