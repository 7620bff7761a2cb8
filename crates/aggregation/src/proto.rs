//! The protobuf messages of the aggregation format, derived by hand with `prost` (no protoc
//! at build time), and the few encoding primitives the aggregator writes with.
//!
//! The proto2 `required` fields are declared optional here so that a decoder can tell a
//! missing field from a zero one: the official decoders refuse a message with a missing
//! required field, and so do we (see `deaggregate`).

use bytes::Bytes;

/// `AggregatedRecord`: the protobuf between the magic and the MD5.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct AggregatedRecord {
    /// Partition keys, de-duplicated.
    #[prost(string, repeated, tag = "1")]
    pub partition_key_table: Vec<String>,
    /// Explicit hash keys, de-duplicated.
    #[prost(string, repeated, tag = "2")]
    pub explicit_hash_key_table: Vec<String>,
    /// The user records.
    #[prost(message, repeated, tag = "3")]
    pub records: Vec<Record>,
}

/// `Record`: one user record inside an aggregate.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Record {
    /// Index into the partition key table (required).
    #[prost(uint64, optional, tag = "1")]
    pub partition_key_index: Option<u64>,
    /// Index into the explicit hash key table.
    #[prost(uint64, optional, tag = "2")]
    pub explicit_hash_key_index: Option<u64>,
    /// The payload (required).
    #[prost(bytes = "bytes", optional, tag = "3")]
    pub data: Option<Bytes>,
    /// Tags: part of the format, never written by the KPL, ignored when read.
    #[prost(message, repeated, tag = "4")]
    pub tags: Vec<Tag>,
}

/// `Tag`: a key/value label on a user record.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Tag {
    /// The tag key (required).
    #[prost(string, optional, tag = "1")]
    pub key: Option<String>,
    /// The tag value.
    #[prost(string, optional, tag = "2")]
    pub value: Option<String>,
}

/// Field keys (field number << 3 | wire type) of the fields the aggregator writes.
pub(crate) mod key {
    /// `AggregatedRecord.partition_key_table`, length-delimited.
    pub const PARTITION_KEY_TABLE: u8 = 1 << 3 | 2;
    /// `AggregatedRecord.explicit_hash_key_table`, length-delimited.
    pub const EXPLICIT_HASH_KEY_TABLE: u8 = 2 << 3 | 2;
    /// `AggregatedRecord.records`, length-delimited.
    pub const RECORDS: u8 = 3 << 3 | 2;
    /// `Record.partition_key_index`, varint.
    pub const PARTITION_KEY_INDEX: u8 = 1 << 3;
    /// `Record.explicit_hash_key_index`, varint.
    pub const EXPLICIT_HASH_KEY_INDEX: u8 = 2 << 3;
    /// `Record.data`, length-delimited.
    pub const DATA: u8 = 3 << 3 | 2;
}

/// Bytes a varint of `value` takes.
#[inline]
pub(crate) fn varint_len(value: u64) -> usize {
    // 1 byte per 7 significant bits, at least 1.
    let bits = 64 - (value | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

/// Appends `value` as a varint.
#[inline]
pub(crate) fn put_varint(buf: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        buf.push((value as u8) | 0x80);
        value >>= 7;
    }
    buf.push(value as u8);
}

/// Bytes a length-delimited field of `len` bytes of payload takes (key, length, payload).
#[inline]
pub(crate) fn delimited_len(len: usize) -> usize {
    1 + varint_len(len as u64) + len
}

/// Appends a length-delimited field.
#[inline]
pub(crate) fn put_delimited(buf: &mut Vec<u8>, key: u8, payload: &[u8]) {
    buf.push(key);
    put_varint(buf, payload.len() as u64);
    buf.extend_from_slice(payload);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_matches_prost() {
        for value in [
            0u64,
            1,
            127,
            128,
            300,
            16_383,
            16_384,
            u64::from(u32::MAX),
            u64::MAX,
        ] {
            let mut ours = Vec::new();
            put_varint(&mut ours, value);
            let mut theirs = Vec::new();
            prost::encoding::encode_varint(value, &mut theirs);
            assert_eq!(ours, theirs, "{value}");
            assert_eq!(varint_len(value), theirs.len(), "{value}");
        }
    }
}
