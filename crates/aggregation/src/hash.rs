//! Partition-key hashing and hash key → shard lookup.

use md5::{Digest, Md5};

use crate::error::{InvalidHashKey, ShardMapError};

/// The hash Kinesis routes a partition key by: the MD5 of its UTF-8 bytes read as a
/// big-endian 128-bit unsigned integer.
pub fn partition_key_hash(partition_key: &str) -> u128 {
    let digest: [u8; 16] = Md5::digest(partition_key.as_bytes()).into();
    u128::from_be_bytes(digest)
}

/// Parses a hash key as Kinesis writes it (explicit hash keys, shard hash key ranges): a
/// decimal integer in `0..2^128`, no sign, no leading zeros.
pub fn parse_hash_key(value: &str) -> Result<u128, InvalidHashKey> {
    let bytes = value.as_bytes();
    let well_formed = !bytes.is_empty()
        && bytes.len() <= 39
        && bytes.iter().all(u8::is_ascii_digit)
        && (bytes[0] != b'0' || bytes.len() == 1);
    if !well_formed {
        return Err(InvalidHashKey {
            value: value.to_owned(),
        });
    }
    value.parse::<u128>().map_err(|_| InvalidHashKey {
        value: value.to_owned(),
    })
}

/// One shard's hash key range, both ends inclusive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardRange {
    /// The shard id, e.g. `shardId-000000000000`.
    pub shard_id: String,
    /// The lowest hash key the shard owns.
    pub starting_hash_key: u128,
    /// The highest hash key the shard owns.
    pub ending_hash_key: u128,
}

impl ShardRange {
    /// A range from the decimal strings ListShards returns.
    pub fn from_decimal(
        shard_id: impl Into<String>,
        starting_hash_key: &str,
        ending_hash_key: &str,
    ) -> Result<Self, ShardMapError> {
        let shard_id = shard_id.into();
        let parse = |key: &str| {
            parse_hash_key(key).map_err(|source| ShardMapError::InvalidHashKey {
                shard_id: shard_id.clone(),
                source,
            })
        };
        Ok(ShardRange {
            starting_hash_key: parse(starting_hash_key)?,
            ending_hash_key: parse(ending_hash_key)?,
            shard_id,
        })
    }

    /// Whether `hash_key` falls in this range.
    pub fn contains(&self, hash_key: u128) -> bool {
        (self.starting_hash_key..=self.ending_hash_key).contains(&hash_key)
    }
}

/// The open shards of a stream, sorted by starting hash key, for hash key → shard lookup.
///
/// Ranges must not overlap; gaps are allowed (a map being rebuilt during a reshard) and a
/// hash key in a gap finds no shard.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShardMap {
    ranges: Vec<ShardRange>,
}

impl ShardMap {
    /// Builds a map from ranges in any order.
    pub fn new(ranges: impl IntoIterator<Item = ShardRange>) -> Result<Self, ShardMapError> {
        let mut ranges: Vec<ShardRange> = ranges.into_iter().collect();
        if let Some(bad) = ranges
            .iter()
            .find(|r| r.starting_hash_key > r.ending_hash_key)
        {
            return Err(ShardMapError::InvertedRange {
                shard_id: bad.shard_id.clone(),
                start: bad.starting_hash_key,
                end: bad.ending_hash_key,
            });
        }
        ranges.sort_by_key(|r| r.starting_hash_key);
        if let Some(pair) = ranges
            .windows(2)
            .find(|pair| pair[1].starting_hash_key <= pair[0].ending_hash_key)
        {
            return Err(ShardMapError::Overlap {
                first: pair[0].shard_id.clone(),
                second: pair[1].shard_id.clone(),
            });
        }
        Ok(ShardMap { ranges })
    }

    /// The shard owning `hash_key`, or `None` if it falls in a gap.
    pub fn shard_for(&self, hash_key: u128) -> Option<&ShardRange> {
        let after = self
            .ranges
            .partition_point(|r| r.starting_hash_key <= hash_key);
        let candidate = self.ranges.get(after.checked_sub(1)?)?;
        candidate.contains(hash_key).then_some(candidate)
    }

    /// The ranges, sorted by starting hash key.
    pub fn ranges(&self) -> &[ShardRange] {
        &self.ranges
    }

    /// Number of shards.
    pub fn len(&self) -> usize {
        self.ranges.len()
    }

    /// Whether the map has no shard.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// Whether the ranges cover the whole hash key space `0..=2^128-1` without gaps.
    pub fn is_complete(&self) -> bool {
        let (Some(first), Some(last)) = (self.ranges.first(), self.ranges.last()) else {
            return false;
        };
        first.starting_hash_key == 0
            && last.ending_hash_key == u128::MAX
            && self.ranges.windows(2).all(|pair| {
                pair[0].ending_hash_key.checked_add(1) == Some(pair[1].starting_hash_key)
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_key_hash_is_big_endian_md5() {
        // MD5("a") = 0cc175b9c0f1b6a831c399e269772661
        assert_eq!(
            partition_key_hash("a"),
            0x0cc1_75b9_c0f1_b6a8_31c3_99e2_6977_2661
        );
        assert_eq!(
            partition_key_hash("a").to_string(),
            "16955237001963240173058271559858726497"
        );
    }

    #[test]
    fn hash_key_parsing_follows_the_kinesis_pattern() {
        assert_eq!(parse_hash_key("0"), Ok(0));
        assert_eq!(parse_hash_key(&u128::MAX.to_string()), Ok(u128::MAX));
        for bad in [
            "",
            "-1",
            "+1",
            "01",
            " 1",
            "1.0",
            "340282366920938463463374607431768211456", // 2^128
            "9999999999999999999999999999999999999999",
        ] {
            assert!(parse_hash_key(bad).is_err(), "{bad:?} accepted");
        }
    }

    fn range(id: &str, start: u128, end: u128) -> ShardRange {
        ShardRange {
            shard_id: id.to_owned(),
            starting_hash_key: start,
            ending_hash_key: end,
        }
    }

    #[test]
    fn shard_map_finds_the_owner_and_reports_gaps() {
        let half = u128::MAX / 2;
        let map = ShardMap::new([range("b", half + 1, u128::MAX), range("a", 0, half)])
            .expect("valid map");
        assert!(map.is_complete());
        assert_eq!(map.shard_for(0).map(|r| r.shard_id.as_str()), Some("a"));
        assert_eq!(map.shard_for(half).map(|r| r.shard_id.as_str()), Some("a"));
        assert_eq!(
            map.shard_for(half + 1).map(|r| r.shard_id.as_str()),
            Some("b")
        );
        assert_eq!(
            map.shard_for(u128::MAX).map(|r| r.shard_id.as_str()),
            Some("b")
        );

        let gappy = ShardMap::new([range("a", 10, 20), range("b", 30, 40)]).expect("valid map");
        assert!(!gappy.is_complete());
        for missing in [0, 9, 21, 29, 41, u128::MAX] {
            assert_eq!(gappy.shard_for(missing), None, "{missing}");
        }
        assert_eq!(gappy.shard_for(35).map(|r| r.shard_id.as_str()), Some("b"));
        assert_eq!(ShardMap::default().shard_for(1), None);
    }

    #[test]
    fn shard_map_refuses_overlaps_and_inverted_ranges() {
        assert!(matches!(
            ShardMap::new([range("a", 0, 10), range("b", 10, 20)]),
            Err(ShardMapError::Overlap { .. })
        ));
        assert!(matches!(
            ShardMap::new([range("a", 5, 4)]),
            Err(ShardMapError::InvertedRange { .. })
        ));
        assert!(ShardRange::from_decimal("s", "0", "x").is_err());
        assert_eq!(
            ShardRange::from_decimal("s", "0", "340282366920938463463374607431768211455"),
            Ok(range("s", 0, u128::MAX))
        );
    }
}
