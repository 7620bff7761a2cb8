//! The records on either side of aggregation.

use std::fmt;

use bytes::Bytes;

use crate::error::{AggregationError, InvalidHashKey};
use crate::hash::{parse_hash_key, partition_key_hash};
use crate::{MAX_PARTITION_KEY_CHARS, MAX_RECORD_BYTES};

/// One record as the application put it (or, on the consumer side, as it read it).
///
/// On the consumer side a Kinesis record read from the stream has the same shape, which is
/// what [`deaggregate`](crate::deaggregate) takes.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct UserRecord {
    /// The partition key: 1 to 256 Unicode characters.
    pub partition_key: String,
    /// An explicit hash key overriding the partition key's hash: a decimal integer in
    /// `0..2^128`, or `None`.
    pub explicit_hash_key: Option<String>,
    /// The payload.
    pub data: Bytes,
}

impl UserRecord {
    /// A user record without an explicit hash key.
    pub fn new(partition_key: impl Into<String>, data: impl Into<Bytes>) -> Self {
        UserRecord {
            partition_key: partition_key.into(),
            explicit_hash_key: None,
            data: data.into(),
        }
    }

    /// This record with `explicit_hash_key` set.
    #[must_use]
    pub fn with_explicit_hash_key(mut self, explicit_hash_key: impl Into<String>) -> Self {
        self.explicit_hash_key = Some(explicit_hash_key.into());
        self
    }

    /// The 128-bit hash key that routes this record: the explicit hash key if there is one,
    /// else the MD5 of the partition key.
    pub fn hash_key(&self) -> Result<u128, InvalidHashKey> {
        match &self.explicit_hash_key {
            Some(key) => parse_hash_key(key),
            None => Ok(partition_key_hash(&self.partition_key)),
        }
    }

    /// The size Kinesis counts against its 1 MiB limit: data plus partition key, in bytes.
    pub fn size(&self) -> usize {
        self.data.len() + self.partition_key.len()
    }

    /// Checks the Kinesis limits (partition key length, explicit hash key range, record
    /// size) and hands the record back inside the error if one is broken.
    pub fn validate(self) -> Result<Self, AggregationError> {
        let key = &self.partition_key;
        if key.is_empty() {
            return Err(AggregationError::EmptyPartitionKey { record: self });
        }
        // A key of at most 256 bytes has at most 256 characters: count only longer ones.
        if key.len() > MAX_PARTITION_KEY_CHARS {
            let chars = key.chars().count();
            if chars > MAX_PARTITION_KEY_CHARS {
                return Err(AggregationError::PartitionKeyTooLong {
                    record: self,
                    chars,
                });
            }
        }
        if let Some(ehk) = &self.explicit_hash_key
            && parse_hash_key(ehk).is_err()
        {
            return Err(AggregationError::InvalidExplicitHashKey { record: self });
        }
        let size = self.size();
        if size > MAX_RECORD_BYTES {
            return Err(AggregationError::RecordTooLarge { record: self, size });
        }
        Ok(self)
    }
}

/// Shows at most the first 64 bytes of data, so that errors carrying a 1 MiB record stay
/// readable.
impl fmt::Debug for UserRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const SHOWN: usize = 64;
        let mut s = f.debug_struct("UserRecord");
        s.field("partition_key", &self.partition_key)
            .field("explicit_hash_key", &self.explicit_hash_key);
        if self.data.len() <= SHOWN {
            s.field("data", &self.data);
        } else {
            s.field(
                "data",
                &format_args!(
                    "{:?}… ({} bytes)",
                    self.data.slice(..SHOWN),
                    self.data.len()
                ),
            );
        }
        s.finish()
    }
}

/// One record to put on the stream: an aggregate of several user records, or a single
/// user record sent plain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KinesisRecord {
    /// The partition key to put with: the first user record's.
    pub partition_key: String,
    /// The explicit hash key to put with. For an aggregate: the first user record's
    /// explicit hash key, else the decimal hash of its partition key, so that the aggregate
    /// lands on the shard that owns the first user record. For a plain record: the user
    /// record's own (possibly `None`).
    pub explicit_hash_key: Option<String>,
    /// The record's data: an aggregate (magic, protobuf, MD5) or the plain user data.
    pub data: Bytes,
    /// How many user records this record carries (1 for a plain record).
    pub user_records: usize,
}

impl KinesisRecord {
    /// The size Kinesis counts against its 1 MiB limit: data plus partition key, in bytes.
    pub fn size(&self) -> usize {
        self.data.len() + self.partition_key.len()
    }

    /// Whether this record is an aggregate (more than one user record) rather than a plain
    /// user record.
    pub fn is_aggregate(&self) -> bool {
        self.user_records > 1
    }
}
