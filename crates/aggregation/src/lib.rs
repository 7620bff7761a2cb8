//! The KPL aggregated-record wire format: encode, decode, partition-key hashing and
//! hash key → shard lookup. No I/O, no async.
//!
//! # Wire format
//!
//! An aggregated Kinesis record's data is the magic `F3 89 9A C2`, a protobuf (proto2)
//! `AggregatedRecord` and the 16-byte MD5 of the protobuf bytes:
//!
//! ```text
//! message AggregatedRecord {
//!   repeated string partition_key_table     = 1;
//!   repeated string explicit_hash_key_table = 2;
//!   repeated Record records                 = 3;
//! }
//! message Record {
//!   required uint64 partition_key_index     = 1;
//!   optional uint64 explicit_hash_key_index = 2;
//!   required bytes  data                    = 3;
//!   repeated Tag    tags                    = 4;
//! }
//! ```
//!
//! The bytes [`Aggregator`] writes are the bytes the official KPL and the
//! `aws-kinesis-agg` libraries write for the same user records (fields in field-number
//! order, keys de-duplicated into the tables in order of first use), and [`deaggregate`]
//! reads what they write. An aggregate holding a single user record is emitted as that
//! plain record, as the KPL does.
//!
//! # Producer side
//!
//! ```
//! use chief_aggregation::{Aggregator, UserRecord};
//!
//! let mut aggregator = Aggregator::new();
//! let mut out = Vec::new();
//! for i in 0..3 {
//!     let record = UserRecord::new(format!("key-{i}"), b"payload".to_vec());
//!     if let Some(kinesis_record) = aggregator.add(record)? {
//!         out.push(kinesis_record);
//!     }
//! }
//! out.extend(aggregator.flush());
//! assert_eq!(out.len(), 1);
//! assert_eq!(out[0].user_records, 3);
//! # Ok::<(), chief_aggregation::AggregationError>(())
//! ```
//!
//! # Consumer side
//!
//! ```
//! use chief_aggregation::{deaggregate, RecordKind, UserRecord};
//!
//! // A Kinesis record as read from the stream, in `UserRecord` shape.
//! let received = UserRecord::new("pk", b"not an aggregate".to_vec());
//! let records = deaggregate(received);
//! assert_eq!(records.kind(), &RecordKind::Plain);
//! let subs: Vec<_> = records.collect();
//! assert_eq!(subs[0].sub_sequence_number, 0);
//! ```

mod aggregator;
mod deaggregate;
mod error;
mod hash;
mod proto;
mod record;

pub use aggregator::Aggregator;
pub use bytes::Bytes;
pub use deaggregate::{
    CorruptAggregate, DeaggregatedRecord, Deaggregation, DeaggregationStats, RecordKind,
    deaggregate,
};
pub use error::{AggregationError, ConfigError, InvalidHashKey, ShardMapError};
pub use hash::{ShardMap, ShardRange, parse_hash_key, partition_key_hash};
pub use record::{KinesisRecord, UserRecord};

/// The four bytes that open every aggregated record.
pub const MAGIC: [u8; 4] = [0xF3, 0x89, 0x9A, 0xC2];

/// Length of the MD5 digest that closes every aggregated record.
pub const DIGEST_LEN: usize = 16;

/// The Kinesis limit on one record: data plus partition key, in bytes (1 MiB).
pub const MAX_RECORD_BYTES: usize = 1024 * 1024;

/// The KPL's default `AggregationMaxSize`: the largest aggregate [`Aggregator::new`] builds.
pub const DEFAULT_MAX_AGGREGATE_BYTES: usize = 51_200;

/// The Kinesis limit on a partition key, in Unicode characters.
pub const MAX_PARTITION_KEY_CHARS: usize = 256;
