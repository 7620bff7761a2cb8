//! The read side of the Kinesis boundary: shard iterators, GetRecords results, child shards.

use std::cmp::Ordering;
use std::time::SystemTime;

use bytes::Bytes;

/// Where a shard iterator starts (GetShardIterator's `ShardIteratorType`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IteratorPosition {
    /// The oldest record still in the shard.
    TrimHorizon,
    /// Just after the newest record: only records written from now on.
    Latest,
    /// The first record that arrived at or after this time.
    AtTimestamp(SystemTime),
    /// The record with this sequence number (or the next one if it is gone).
    AtSequenceNumber(String),
    /// The record after this sequence number.
    AfterSequenceNumber(String),
}

/// One Kinesis record as GetRecords returns it (still aggregated).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedRecord {
    /// Its sequence number.
    pub sequence_number: String,
    /// Its partition key.
    pub partition_key: String,
    /// When Kinesis took it, if reported.
    pub approximate_arrival: Option<SystemTime>,
    /// The bytes (a KPL aggregate or a plain record).
    pub data: Bytes,
}

/// A shard that replaced a closed shard, as reported at the end of the closed shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildShard {
    /// The child's id.
    pub shard_id: String,
    /// Its parents (one after a split, two after a merge).
    pub parent_shards: Vec<String>,
    /// First hash key it owns.
    pub starting_hash_key: u128,
    /// Last hash key it owns (inclusive).
    pub ending_hash_key: u128,
}

/// The answer to one GetRecords call.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GetRecordsOutput {
    /// The records, in sequence order.
    pub records: Vec<ReceivedRecord>,
    /// The iterator for the next call; `None` once the reader is at the end of a closed shard.
    pub next_shard_iterator: Option<String>,
    /// How far the reader is behind the newest record of the shard, in milliseconds.
    pub millis_behind_latest: Option<u64>,
    /// At the end of a closed shard: the shards that replaced it.
    pub child_shards: Vec<ChildShard>,
}

impl GetRecordsOutput {
    /// Whether the reader reached the end of a closed shard.
    pub fn is_shard_end(&self) -> bool {
        self.next_shard_iterator.is_none()
    }

    /// Appends the answer read after this one: its records follow these, and its next
    /// iterator, lag and children are now this answer's (one batch for a reader that
    /// takes both at once).
    pub fn absorb(&mut self, next: Self) {
        self.records.extend(next.records);
        self.next_shard_iterator = next.next_shard_iterator;
        self.millis_behind_latest = next.millis_behind_latest;
        self.child_shards = next.child_shards;
    }
}

/// Compares two Kinesis sequence numbers (decimal strings of any length) numerically.
pub fn compare_sequence_numbers(a: &str, b: &str) -> Ordering {
    let a = a.trim_start_matches('0');
    let b = b.trim_start_matches('0');
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

/// Every record of `stream` now: each shard (closed ones too) read from `TRIM_HORIZON`
/// until a page comes back empty or the shard ends — `(shard id, record)` in shard order,
/// shard after shard. For tools and tests that look at a whole (small) stream.
///
/// # Errors
/// Listing the shards or reading one failed.
pub async fn read_all<C: crate::StreamClient>(
    client: &C,
    stream: &str,
) -> Result<Vec<(String, ReceivedRecord)>, crate::StreamError> {
    let mut out = Vec::new();
    for shard in client.list_shards(stream).await? {
        let mut iterator = client
            .get_shard_iterator(
                stream,
                &shard.shard_id,
                &crate::IteratorPosition::TrimHorizon,
            )
            .await?;
        loop {
            let page = client.get_records(stream, &iterator, 10_000).await?;
            let empty = page.records.is_empty();
            out.extend(
                page.records
                    .into_iter()
                    .map(|r| (shard.shard_id.clone(), r)),
            );
            match page.next_shard_iterator {
                Some(next) if !empty => iterator = next,
                _ => break,
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_numbers_compare_numerically_whatever_their_padding() {
        assert_eq!(compare_sequence_numbers("0009", "10"), Ordering::Less);
        assert_eq!(compare_sequence_numbers("10", "010"), Ordering::Equal);
        assert_eq!(
            compare_sequence_numbers(
                "49590338271490256608559692538361571095921575989136588898",
                "9"
            ),
            Ordering::Greater
        );
    }
}
