//! Error types.

use crate::record::UserRecord;

/// A user record the aggregator refused. Every variant hands the record back
/// ([`AggregationError::into_record`]) so the caller can fail it back to its owner.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AggregationError {
    /// The partition key is the empty string.
    #[error("user record refused: empty partition key")]
    EmptyPartitionKey {
        /// The refused record.
        record: UserRecord,
    },
    /// The partition key is longer than 256 Unicode characters.
    #[error("user record refused: partition key is {chars} characters long, over the limit of 256")]
    PartitionKeyTooLong {
        /// The refused record.
        record: UserRecord,
        /// The key's length in characters.
        chars: usize,
    },
    /// The explicit hash key is not a decimal integer in `0..2^128`.
    #[error(
        "user record refused: explicit hash key {:?} is not a decimal integer in 0..2^128",
        record.explicit_hash_key.as_deref().unwrap_or_default()
    )]
    InvalidExplicitHashKey {
        /// The refused record.
        record: UserRecord,
    },
    /// Data plus partition key is over the 1 MiB Kinesis record limit.
    #[error(
        "user record refused: {size} bytes (data + partition key), over the 1 MiB Kinesis record limit"
    )]
    RecordTooLarge {
        /// The refused record.
        record: UserRecord,
        /// Data plus partition key, in bytes.
        size: usize,
    },
}

impl AggregationError {
    /// The refused record.
    pub fn record(&self) -> &UserRecord {
        match self {
            AggregationError::EmptyPartitionKey { record }
            | AggregationError::PartitionKeyTooLong { record, .. }
            | AggregationError::InvalidExplicitHashKey { record }
            | AggregationError::RecordTooLarge { record, .. } => record,
        }
    }

    /// The refused record, handed back.
    pub fn into_record(self) -> UserRecord {
        match self {
            AggregationError::EmptyPartitionKey { record }
            | AggregationError::PartitionKeyTooLong { record, .. }
            | AggregationError::InvalidExplicitHashKey { record }
            | AggregationError::RecordTooLarge { record, .. } => record,
        }
    }
}

/// An aggregator setting out of range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The aggregate size limit is 0 or over the 1 MiB Kinesis record limit.
    #[error("aggregate size limit {max_bytes} bytes is out of range 1..=1048576")]
    MaxBytesOutOfRange {
        /// The refused limit.
        max_bytes: usize,
    },
}

/// A string that is not a valid hash key: a decimal integer in `0..2^128` without sign or
/// leading zeros (the Kinesis pattern `0|[1-9]\d{0,38}`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("hash key {value:?} is not a decimal integer in 0..2^128")]
pub struct InvalidHashKey {
    /// The refused string.
    pub value: String,
}

/// A shard map that cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ShardMapError {
    /// A shard's starting hash key is above its ending hash key.
    #[error("shard {shard_id}: starting hash key {start} is above ending hash key {end}")]
    InvertedRange {
        /// The shard.
        shard_id: String,
        /// Its starting hash key.
        start: u128,
        /// Its ending hash key.
        end: u128,
    },
    /// Two shards' hash key ranges overlap.
    #[error("shards {first} and {second} have overlapping hash key ranges")]
    Overlap {
        /// The shard with the lower starting hash key.
        first: String,
        /// The shard whose range starts inside the first one's.
        second: String,
    },
    /// A hash key of a shard is not a valid decimal hash key.
    #[error("shard {shard_id}: {source}")]
    InvalidHashKey {
        /// The shard.
        shard_id: String,
        /// What is wrong with the key.
        source: InvalidHashKey,
    },
}
