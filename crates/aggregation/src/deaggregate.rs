//! Unpacking aggregates into user records, with the KCL's tolerance of bad input.

use bytes::Bytes;
use md5::{Digest, Md5};
use prost::Message;

use crate::proto;
use crate::record::UserRecord;
use crate::{DIGEST_LEN, MAGIC};

/// Why a record that starts with the magic is not a readable aggregate. Such a record is
/// passed through unchanged as one user record, as the KCL does.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CorruptAggregate {
    /// Too short to hold the magic, a protobuf and the MD5.
    #[error("aggregate of {len} bytes is too short to hold magic, protobuf and MD5")]
    TooShort {
        /// The record's data length.
        len: usize,
    },
    /// The MD5 at the end does not match the protobuf.
    #[error("aggregate MD5 does not match its protobuf")]
    Md5Mismatch,
    /// The protobuf does not decode as an `AggregatedRecord`.
    #[error("aggregate protobuf does not decode: {0}")]
    Protobuf(prost::DecodeError),
    /// The protobuf decodes but holds no user record.
    #[error("aggregate holds no user record")]
    Empty,
    /// A user record lacks a required field.
    #[error("user record {record} of the aggregate lacks required field {field}")]
    MissingField {
        /// Position of the user record in the aggregate.
        record: usize,
        /// The missing field.
        field: &'static str,
    },
    /// A user record's partition key index is past the end of the partition key table.
    #[error(
        "user record {record} of the aggregate has partition key index {index}, table has {table_len}"
    )]
    PartitionKeyIndexOutOfRange {
        /// Position of the user record in the aggregate.
        record: usize,
        /// The index found.
        index: u64,
        /// Length of the table.
        table_len: usize,
    },
    /// A user record's explicit hash key index is past the end of the explicit hash key
    /// table.
    #[error(
        "user record {record} of the aggregate has explicit hash key index {index}, table has {table_len}"
    )]
    ExplicitHashKeyIndexOutOfRange {
        /// Position of the user record in the aggregate.
        record: usize,
        /// The index found.
        index: u64,
        /// Length of the table.
        table_len: usize,
    },
}

/// What a Kinesis record turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecordKind {
    /// Not an aggregate (no magic): one user record, the record itself.
    Plain,
    /// A valid aggregate of this many user records.
    Aggregate {
        /// Number of user records in it.
        user_records: usize,
    },
    /// Starts with the magic but is not a readable aggregate: passed through unchanged as
    /// one user record. Worth counting and logging.
    Corrupt(CorruptAggregate),
}

/// One user record out of a Kinesis record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeaggregatedRecord {
    /// The user record.
    pub record: UserRecord,
    /// Its position in the aggregate (0-based); 0 for a plain or passed-through record.
    /// With the Kinesis record's sequence number, the user record's identity.
    pub sub_sequence_number: u64,
}

/// The user records of one Kinesis record, from [`deaggregate`]: an iterator of
/// [`DeaggregatedRecord`] that also tells what the record was ([`kind`](Self::kind)).
///
/// Every user record of a valid aggregate is checked before the first one is yielded, so
/// an aggregate is either unpacked whole or passed through whole.
#[derive(Debug)]
pub struct Deaggregation {
    kind: RecordKind,
    state: State,
}

#[derive(Debug)]
enum State {
    /// A plain or passed-through record, not yet yielded.
    Single(Option<UserRecord>),
    /// A checked aggregate.
    Aggregate {
        partition_keys: Vec<String>,
        /// Uses left of each partition key: the last use takes the string, no copy.
        partition_key_uses: Vec<u32>,
        explicit_hash_keys: Vec<String>,
        records: std::vec::IntoIter<proto::Record>,
        next_sub_sequence_number: u64,
    },
}

/// Unpacks one Kinesis record, given in [`UserRecord`] shape (its partition key, data and,
/// where known, explicit hash key).
///
/// - No magic: a plain record, yielded as is with sub-sequence number 0.
/// - Magic and a matching MD5 over a valid `AggregatedRecord`: its user records, with
///   sub-sequence numbers 0, 1, 2, …
/// - Magic but bad MD5, bad protobuf, an index out of range or no record: passed through
///   unchanged as one user record (the KCL's behaviour: never drop a record), and
///   reported by [`Deaggregation::kind`] as [`RecordKind::Corrupt`].
///
/// Never panics, whatever the bytes.
pub fn deaggregate(record: UserRecord) -> Deaggregation {
    let kind = match check(&record.data) {
        Ok(None) => RecordKind::Plain,
        Ok(Some((aggregate, partition_key_uses))) => {
            let user_records = aggregate.records.len();
            return Deaggregation {
                kind: RecordKind::Aggregate { user_records },
                state: State::Aggregate {
                    partition_keys: aggregate.partition_key_table,
                    partition_key_uses,
                    explicit_hash_keys: aggregate.explicit_hash_key_table,
                    records: aggregate.records.into_iter(),
                    next_sub_sequence_number: 0,
                },
            };
        }
        Err(corrupt) => RecordKind::Corrupt(corrupt),
    };
    Deaggregation {
        kind,
        state: State::Single(Some(record)),
    }
}

/// `Ok(None)`: no magic, a plain record. `Ok(Some(_))`: a valid aggregate, every index
/// checked, with the number of uses of each partition key. `Err(_)`: magic but unreadable.
fn check(data: &Bytes) -> Result<Option<(proto::AggregatedRecord, Vec<u32>)>, CorruptAggregate> {
    if !data.starts_with(&MAGIC) {
        return Ok(None);
    }
    let len = data.len();
    if len <= MAGIC.len() + DIGEST_LEN {
        return Err(CorruptAggregate::TooShort { len });
    }
    let body_end = len - DIGEST_LEN;
    let body = data.slice(MAGIC.len()..body_end);
    if Md5::digest(&body).as_slice() != &data[body_end..] {
        return Err(CorruptAggregate::Md5Mismatch);
    }
    let aggregate = proto::AggregatedRecord::decode(body).map_err(CorruptAggregate::Protobuf)?;
    if aggregate.records.is_empty() {
        return Err(CorruptAggregate::Empty);
    }
    let partition_keys = aggregate.partition_key_table.len();
    let mut partition_key_uses = vec![0u32; partition_keys];
    let explicit_hash_keys = aggregate.explicit_hash_key_table.len();
    for (position, record) in aggregate.records.iter().enumerate() {
        let missing = |field| CorruptAggregate::MissingField {
            record: position,
            field,
        };
        let index = record
            .partition_key_index
            .ok_or_else(|| missing("partition_key_index"))?;
        let Some(uses) = usize::try_from(index)
            .ok()
            .and_then(|i| partition_key_uses.get_mut(i))
        else {
            return Err(CorruptAggregate::PartitionKeyIndexOutOfRange {
                record: position,
                index,
                table_len: partition_keys,
            });
        };
        *uses = uses.saturating_add(1);
        if let Some(index) = record.explicit_hash_key_index
            && index >= explicit_hash_keys as u64
        {
            return Err(CorruptAggregate::ExplicitHashKeyIndexOutOfRange {
                record: position,
                index,
                table_len: explicit_hash_keys,
            });
        }
        if record.data.is_none() {
            return Err(missing("data"));
        }
        if record.tags.iter().any(|tag| tag.key.is_none()) {
            return Err(missing("tags.key"));
        }
    }
    Ok(Some((aggregate, partition_key_uses)))
}

impl Deaggregation {
    /// What the Kinesis record was: plain, a valid aggregate, or corrupt and passed through.
    pub fn kind(&self) -> &RecordKind {
        &self.kind
    }

    /// Whether the record started with the magic but could not be read, and is passed
    /// through as one user record.
    pub fn is_corrupt(&self) -> bool {
        matches!(self.kind, RecordKind::Corrupt(_))
    }

    /// Skips the user records a checkpoint at `sub_sequence_number` covers (those with a
    /// sub-sequence number `<= sub_sequence_number`), for a consumer restarting
    /// `AT_SEQUENCE_NUMBER` of a checkpointed (sequence number, sub-sequence number).
    #[must_use]
    pub fn resume_after(mut self, sub_sequence_number: u64) -> Self {
        match &mut self.state {
            State::Single(record) => {
                // A plain record has sub-sequence number 0, which any checkpoint covers.
                *record = None;
            }
            State::Aggregate {
                records,
                next_sub_sequence_number,
                ..
            } => {
                while *next_sub_sequence_number <= sub_sequence_number {
                    if records.next().is_none() {
                        break;
                    }
                    *next_sub_sequence_number += 1;
                }
            }
        }
        self
    }
}

impl Iterator for Deaggregation {
    type Item = DeaggregatedRecord;

    fn next(&mut self) -> Option<DeaggregatedRecord> {
        match &mut self.state {
            State::Single(record) => record.take().map(|record| DeaggregatedRecord {
                record,
                sub_sequence_number: 0,
            }),
            State::Aggregate {
                partition_keys,
                partition_key_uses,
                explicit_hash_keys,
                records,
                next_sub_sequence_number,
            } => {
                let record = records.next()?;
                let sub_sequence_number = *next_sub_sequence_number;
                *next_sub_sequence_number += 1;
                // `check` verified every index and the data; the fallbacks are unreachable.
                let partition_key = record
                    .partition_key_index
                    .and_then(|i| usize::try_from(i).ok())
                    .map(|i| take_or_clone(partition_keys, partition_key_uses, i))
                    .unwrap_or_default();
                let explicit_hash_key = record
                    .explicit_hash_key_index
                    .and_then(|i| explicit_hash_keys.get(usize::try_from(i).ok()?))
                    .cloned();
                Some(DeaggregatedRecord {
                    record: UserRecord {
                        partition_key,
                        explicit_hash_key,
                        data: record.data.unwrap_or_default(),
                    },
                    sub_sequence_number,
                })
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let len = match &self.state {
            State::Single(record) => usize::from(record.is_some()),
            State::Aggregate { records, .. } => records.len(),
        };
        (len, Some(len))
    }
}

impl ExactSizeIterator for Deaggregation {}

/// The partition key at `index`: moved out on its last use, cloned before.
fn take_or_clone(keys: &mut [String], uses: &mut [u32], index: usize) -> String {
    let (Some(key), Some(left)) = (keys.get_mut(index), uses.get_mut(index)) else {
        return String::new();
    };
    *left = left.saturating_sub(1);
    if *left == 0 {
        std::mem::take(key)
    } else {
        key.clone()
    }
}

/// Counters over many [`deaggregate`] calls, for a consumer's metrics and logs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeaggregationStats {
    /// Kinesis records seen.
    pub kinesis_records: u64,
    /// Of those, plain records.
    pub plain_records: u64,
    /// Of those, valid aggregates.
    pub aggregates: u64,
    /// Of those, corrupt aggregates passed through as one user record.
    pub corrupt_aggregates: u64,
    /// User records out of all of them (a plain or corrupt record counts as one).
    pub user_records: u64,
}

impl DeaggregationStats {
    /// Counts one Kinesis record; call before iterating it.
    pub fn observe(&mut self, deaggregation: &Deaggregation) {
        self.kinesis_records += 1;
        match deaggregation.kind() {
            RecordKind::Plain => {
                self.plain_records += 1;
                self.user_records += 1;
            }
            RecordKind::Aggregate { user_records } => {
                self.aggregates += 1;
                self.user_records += *user_records as u64;
            }
            RecordKind::Corrupt(_) => {
                self.corrupt_aggregates += 1;
                self.user_records += 1;
            }
        }
    }
}
