//! Packing user records into aggregates.

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use bytes::Bytes;
use foldhash::fast::RandomState;
use md5::{Digest, Md5};

use crate::error::{AggregationError, ConfigError};
use crate::hash::partition_key_hash;
use crate::proto::{delimited_len, key, put_delimited, put_varint, varint_len};
use crate::record::{KinesisRecord, UserRecord};
use crate::{DEFAULT_MAX_AGGREGATE_BYTES, DIGEST_LEN, MAGIC, MAX_RECORD_BYTES};

/// Packs user records into aggregated Kinesis records of at most `max_bytes`.
///
/// The size counted is exactly what Kinesis counts: the encoded data (magic, protobuf,
/// MD5) plus the outer partition key. [`add`](Aggregator::add) closes the current
/// aggregate and returns it when the new record would take it over the limit; the record
/// then opens the next aggregate. A user record too big to share an aggregate (but within
/// the 1 MiB Kinesis limit) travels alone, and a lone record is always emitted plain, as
/// the KPL does.
///
/// The producer aggregates per predicted shard: keep one `Aggregator` per shard.
#[derive(Debug)]
pub struct Aggregator {
    max_bytes: usize,
    /// Partition key → index in the table (foldhash: SipHash was 3 % of the producer's
    /// time per record; the tables live for one aggregate of at most 1 MiB).
    partition_keys: HashMap<String, u64, RandomState>,
    /// Explicit hash key → index in the table.
    explicit_hash_keys: HashMap<String, u64, RandomState>,
    /// The encoded `partition_key_table` fields, in index order.
    partition_key_table: Vec<u8>,
    /// The encoded `explicit_hash_key_table` fields, in index order.
    explicit_hash_key_table: Vec<u8>,
    /// The encoded `records` fields, in order.
    records: Vec<u8>,
    /// The first user record: its keys route the aggregate, and it is what a lone record
    /// is emitted as.
    first: Option<UserRecord>,
    count: usize,
}

impl Default for Aggregator {
    fn default() -> Self {
        Self::new()
    }
}

impl Aggregator {
    /// An aggregator with the KPL's default limit of 51,200 bytes.
    pub fn new() -> Self {
        Aggregator {
            max_bytes: DEFAULT_MAX_AGGREGATE_BYTES,
            partition_keys: HashMap::default(),
            explicit_hash_keys: HashMap::default(),
            partition_key_table: Vec::new(),
            explicit_hash_key_table: Vec::new(),
            records: Vec::new(),
            first: None,
            count: 0,
        }
    }

    /// An aggregator closing aggregates at `max_bytes` (1 to 1,048,576).
    pub fn with_max_bytes(max_bytes: usize) -> Result<Self, ConfigError> {
        if max_bytes == 0 || max_bytes > MAX_RECORD_BYTES {
            return Err(ConfigError::MaxBytesOutOfRange { max_bytes });
        }
        Ok(Aggregator {
            max_bytes,
            ..Self::new()
        })
    }

    /// The size limit of an aggregate, in bytes.
    pub fn max_bytes(&self) -> usize {
        self.max_bytes
    }

    /// Number of user records in the open aggregate.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether the open aggregate has no user record.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The size Kinesis would count for the open aggregate (outer partition key, magic,
    /// protobuf, MD5); 0 when empty. A lone record is emitted plain, which is smaller.
    pub fn size(&self) -> usize {
        match &self.first {
            None => 0,
            Some(first) => {
                first.partition_key.len() + MAGIC.len() + self.protobuf_len() + DIGEST_LEN
            }
        }
    }

    /// The size Kinesis would count for the open aggregate with `record` added: cheap (two
    /// table lookups, no encoding). Compare with [`max_bytes`](Aggregator::max_bytes), or
    /// use [`fits`](Aggregator::fits).
    pub fn size_with(&self, record: &UserRecord) -> usize {
        let outer_partition_key = self
            .first
            .as_ref()
            .map_or(record.partition_key.len(), |first| {
                first.partition_key.len()
            });
        outer_partition_key
            + MAGIC.len()
            + self.protobuf_len()
            + self.added_len(record)
            + DIGEST_LEN
    }

    /// Whether `record` can join the open aggregate without closing it: true if it fits in
    /// `max_bytes`, or if the aggregate is empty (a record always opens one).
    pub fn fits(&self, record: &UserRecord) -> bool {
        self.is_empty() || self.size_with(record) <= self.max_bytes
    }

    /// Adds a user record. Returns the closed aggregate if the record did not fit in the
    /// open one (the record then opens the next), else `None`.
    ///
    /// A record breaking a Kinesis limit is refused and handed back in the error; the open
    /// aggregate is untouched.
    pub fn add(&mut self, record: UserRecord) -> Result<Option<KinesisRecord>, AggregationError> {
        let record = record.validate()?;
        match self.try_push(record) {
            Ok(()) => Ok(None),
            Err(record) => {
                let closed = self.flush();
                // An empty aggregate takes any record: this cannot hand it back again.
                let _ = self.try_push(record);
                Ok(closed)
            }
        }
    }

    /// Closes the open aggregate and returns it, or `None` if it is empty.
    pub fn flush(&mut self) -> Option<KinesisRecord> {
        let first = self.first.take()?;
        let user_records = std::mem::take(&mut self.count);
        if user_records == 1 {
            self.clear();
            return Some(KinesisRecord {
                partition_key: first.partition_key,
                explicit_hash_key: first.explicit_hash_key,
                data: first.data,
                user_records,
            });
        }

        let protobuf_len = self.protobuf_len();
        let mut data = Vec::with_capacity(MAGIC.len() + protobuf_len + DIGEST_LEN);
        data.extend_from_slice(&MAGIC);
        let mut md5 = Md5::new();
        for part in [
            &self.partition_key_table,
            &self.explicit_hash_key_table,
            &self.records,
        ] {
            md5.update(part);
            data.extend_from_slice(part);
        }
        data.extend_from_slice(&md5.finalize());
        self.clear();

        let explicit_hash_key = first
            .explicit_hash_key
            .unwrap_or_else(|| partition_key_hash(&first.partition_key).to_string());
        Some(KinesisRecord {
            partition_key: first.partition_key,
            explicit_hash_key: Some(explicit_hash_key),
            data: Bytes::from(data),
            user_records,
        })
    }

    fn protobuf_len(&self) -> usize {
        self.partition_key_table.len() + self.explicit_hash_key_table.len() + self.records.len()
    }

    /// Bytes `record` would add to the protobuf: table entries and the `records` field.
    fn added_len(&self, record: &UserRecord) -> usize {
        let mut added_len = 0;
        let partition_key_index = match self.partition_keys.get(&record.partition_key) {
            Some(&index) => index,
            None => {
                added_len += delimited_len(record.partition_key.len());
                self.partition_keys.len() as u64
            }
        };
        let mut record_len = 1 + varint_len(partition_key_index) + delimited_len(record.data.len());
        if let Some(ehk) = &record.explicit_hash_key {
            let index = match self.explicit_hash_keys.get(ehk) {
                Some(&index) => index,
                None => {
                    added_len += delimited_len(ehk.len());
                    self.explicit_hash_keys.len() as u64
                }
            };
            record_len += 1 + varint_len(index);
        }
        added_len + delimited_len(record_len)
    }

    /// Adds `record` if it fits or the aggregate is empty, else hands it back untouched.
    ///
    /// The same sizing as `added_len` plus the insertion, but with one hash of the partition key
    /// (through the map's entry) instead of two: this is the hot path.
    fn try_push(&mut self, record: UserRecord) -> Result<(), UserRecord> {
        let UserRecord {
            partition_key,
            explicit_hash_key,
            data,
        } = record;
        let protobuf_len = self.protobuf_len();
        let outer_partition_key = self
            .first
            .as_ref()
            .map_or(partition_key.len(), |first| first.partition_key.len());
        let next_partition_key_index = self.partition_keys.len() as u64;

        let partition_key_entry = self.partition_keys.entry(partition_key);
        let (partition_key_index, mut added_len) = match &partition_key_entry {
            Entry::Occupied(entry) => (*entry.get(), 0),
            Entry::Vacant(entry) => (next_partition_key_index, delimited_len(entry.key().len())),
        };
        let mut record_len = 1 + varint_len(partition_key_index) + delimited_len(data.len());
        let explicit_hash_key_place = explicit_hash_key.as_ref().map(|ehk| {
            let (index, new) = match self.explicit_hash_keys.get(ehk) {
                Some(&index) => (index, false),
                None => {
                    added_len += delimited_len(ehk.len());
                    (self.explicit_hash_keys.len() as u64, true)
                }
            };
            record_len += 1 + varint_len(index);
            (index, new)
        });
        added_len += delimited_len(record_len);

        let size = outer_partition_key + MAGIC.len() + protobuf_len + added_len + DIGEST_LEN;
        if self.count > 0 && size > self.max_bytes {
            let partition_key = match partition_key_entry {
                Entry::Occupied(entry) => entry.key().clone(),
                Entry::Vacant(entry) => entry.into_key(),
            };
            return Err(UserRecord {
                partition_key,
                explicit_hash_key,
                data,
            });
        }

        let records = &mut self.records;
        records.push(key::RECORDS);
        put_varint(records, record_len as u64);
        records.push(key::PARTITION_KEY_INDEX);
        put_varint(records, partition_key_index);
        if let Some((index, _)) = explicit_hash_key_place {
            records.push(key::EXPLICIT_HASH_KEY_INDEX);
            put_varint(records, index);
        }
        put_delimited(records, key::DATA, &data);

        if self.first.is_none() {
            self.first = Some(UserRecord {
                partition_key: partition_key_entry.key().clone(),
                explicit_hash_key: explicit_hash_key.clone(),
                data,
            });
        }
        if let Entry::Vacant(entry) = partition_key_entry {
            put_delimited(
                &mut self.partition_key_table,
                key::PARTITION_KEY_TABLE,
                entry.key().as_bytes(),
            );
            entry.insert(partition_key_index);
        }
        if let (Some(ehk), Some((index, true))) = (explicit_hash_key, explicit_hash_key_place) {
            put_delimited(
                &mut self.explicit_hash_key_table,
                key::EXPLICIT_HASH_KEY_TABLE,
                ehk.as_bytes(),
            );
            self.explicit_hash_keys.insert(ehk, index);
        }
        self.count += 1;
        Ok(())
    }

    fn clear(&mut self) {
        self.partition_keys.clear();
        self.explicit_hash_keys.clear();
        self.partition_key_table.clear();
        self.explicit_hash_key_table.clear();
        self.records.clear();
        self.first = None;
        self.count = 0;
    }
}
