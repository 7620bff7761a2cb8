//! Round trip: whatever goes into the aggregator comes out of `deaggregate`, in order, with
//! sub-sequence numbers, and every aggregate respects the size limit exactly.

use chief_aggregation::{
    Aggregator, DeaggregatedRecord, KinesisRecord, MAX_RECORD_BYTES, RecordKind, UserRecord,
    deaggregate, partition_key_hash,
};
use proptest::prelude::*;

fn partition_key() -> impl Strategy<Value = String> {
    prop_oneof![
        // A small pool, so that keys repeat and the tables de-duplicate.
        prop::sample::select(vec!["a", "b", "ключ", "🔑", "order-1"]).prop_map(String::from),
        // Any Unicode, up to the limit.
        prop::collection::vec(any::<char>(), 1..=256).prop_map(String::from_iter),
        // Exactly the limit, in multi-byte characters (up to 1,024 bytes).
        prop::collection::vec(any::<char>(), 256).prop_map(String::from_iter),
    ]
}

fn explicit_hash_key() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        2 => Just(None),
        1 => prop::sample::select(vec![0u128, 1, u128::MAX]).prop_map(|k| Some(k.to_string())),
        1 => any::<u128>().prop_map(|k| Some(k.to_string())),
    ]
}

fn user_record() -> impl Strategy<Value = UserRecord> {
    (
        partition_key(),
        explicit_hash_key(),
        prop_oneof![Just(Vec::new()), prop::collection::vec(any::<u8>(), 0..300),],
    )
        .prop_map(|(partition_key, explicit_hash_key, data)| UserRecord {
            partition_key,
            explicit_hash_key,
            data: data.into(),
        })
}

/// Aggregates `records`, checking `size_with` against the real sizes on the way.
fn aggregate_all(max_bytes: usize, records: &[UserRecord]) -> Vec<KinesisRecord> {
    let mut aggregator = Aggregator::with_max_bytes(max_bytes).expect("valid limit");
    let mut out = Vec::new();
    for record in records {
        let fits = aggregator.fits(record);
        let predicted = aggregator.size_with(record);
        let closed = aggregator.add(record.clone()).expect("valid record");
        assert_eq!(
            closed.is_some(),
            !fits,
            "add closes exactly when it does not fit"
        );
        if fits {
            assert_eq!(aggregator.size(), predicted, "size_with predicts the size");
        }
        out.extend(closed);
    }
    out.extend(aggregator.flush());
    out
}

fn check_round_trip(max_bytes: usize, records: &[UserRecord]) {
    let out = aggregate_all(max_bytes, records);
    let mut next = 0;
    for (i, kinesis_record) in out.iter().enumerate() {
        let n = kinesis_record.user_records;
        let members = &records[next..next + n];
        let first = &members[0];
        assert_eq!(kinesis_record.partition_key, first.partition_key);
        if n == 1 {
            assert_eq!(kinesis_record.explicit_hash_key, first.explicit_hash_key);
            assert_eq!(kinesis_record.data, first.data);
        } else {
            assert!(
                kinesis_record.size() <= max_bytes,
                "aggregate over the limit"
            );
            let routing = first
                .explicit_hash_key
                .clone()
                .unwrap_or_else(|| partition_key_hash(&first.partition_key).to_string());
            assert_eq!(kinesis_record.explicit_hash_key, Some(routing));
        }
        assert!(kinesis_record.size() <= MAX_RECORD_BYTES);

        // Greedy: the next record would not have fitted.
        if let Some(following) = records.get(next + n)
            && i + 1 < out.len()
        {
            let mut again = Aggregator::with_max_bytes(max_bytes).expect("valid limit");
            for member in members {
                again.add(member.clone()).expect("valid record");
            }
            assert!(
                !again.fits(following),
                "closed although the next record fitted"
            );
        }

        let unpacked = deaggregate(UserRecord::new(
            kinesis_record.partition_key.clone(),
            kinesis_record.data.clone(),
        ));
        let expected_kind = if n == 1 && !first.data.starts_with(&chief_aggregation::MAGIC) {
            RecordKind::Plain
        } else {
            RecordKind::Aggregate { user_records: n }
        };
        if n > 1 {
            assert_eq!(unpacked.kind(), &expected_kind);
        }
        let got: Vec<DeaggregatedRecord> = unpacked.collect();
        if n > 1 {
            let expected: Vec<DeaggregatedRecord> = members
                .iter()
                .cloned()
                .zip(0..)
                .map(|(record, sub_sequence_number)| DeaggregatedRecord {
                    record,
                    sub_sequence_number,
                })
                .collect();
            assert_eq!(got, expected);
        } else {
            assert_eq!(got.len(), 1);
            assert_eq!(got[0].record.data, first.data);
            assert_eq!(got[0].sub_sequence_number, 0);
        }
        next += n;
    }
    assert_eq!(
        next,
        records.len(),
        "every user record is in exactly one output"
    );
}

proptest! {
    #[test]
    fn round_trip_default_limit(records in prop::collection::vec(user_record(), 1..60)) {
        check_round_trip(chief_aggregation::DEFAULT_MAX_AGGREGATE_BYTES, &records);
    }

    #[test]
    fn round_trip_small_limits_split_often(
        max_bytes in 1usize..3_000,
        records in prop::collection::vec(user_record(), 1..60),
    ) {
        check_round_trip(max_bytes, &records);
    }

    #[test]
    fn round_trip_one_mebibyte_limit(records in prop::collection::vec(user_record(), 1..20)) {
        check_round_trip(MAX_RECORD_BYTES, &records);
    }
}

/// Deterministic pseudo-random bytes (xorshift), so that the big tests need no RNG crate.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

#[test]
fn one_record() {
    check_round_trip(
        51_200,
        &[UserRecord::new("k", noise(1, 100)).with_explicit_hash_key("7")],
    );
}

#[test]
fn ten_thousand_records() {
    let records: Vec<UserRecord> = (0..10_000u64)
        .map(|i| {
            let record =
                UserRecord::new(format!("{:036}", i * 7_919), noise(i, (i % 250) as usize));
            if i % 3 == 0 {
                record.with_explicit_hash_key((u128::from(i) << 64).to_string())
            } else {
                record
            }
        })
        .collect();
    check_round_trip(51_200, &records);
    check_round_trip(MAX_RECORD_BYTES, &records);
    // 5,000 of them fit in one 1 MiB aggregate.
    let out = aggregate_all(MAX_RECORD_BYTES, &records[..5_000]);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].user_records, 5_000);
}

#[test]
fn the_size_limit_is_exact() {
    let first = UserRecord::new("pk-1", noise(2, 500));
    let second = UserRecord::new("pk-2", noise(3, 500));
    let mut probe = Aggregator::new();
    probe.add(first.clone()).expect("valid");
    let exact = probe.size_with(&second);
    // magic 4 + pk table 2×6 + records 2×(3 + 2 + 3 + 500) + MD5 16, plus outer key 4.
    assert_eq!(exact, 4 + 4 + 2 * 6 + 2 * (3 + 2 + 3 + 500) + 16);

    let mut at_limit = Aggregator::with_max_bytes(exact).expect("valid");
    assert_eq!(at_limit.add(first.clone()).expect("valid"), None);
    assert_eq!(at_limit.add(second.clone()).expect("valid"), None);
    let both = at_limit.flush().expect("an aggregate");
    assert_eq!(both.user_records, 2);
    assert_eq!(both.size(), exact);

    let mut below = Aggregator::with_max_bytes(exact - 1).expect("valid");
    assert_eq!(below.add(first.clone()).expect("valid"), None);
    let closed = below.add(second.clone()).expect("valid").expect("closed");
    assert_eq!(closed.user_records, 1);
    assert_eq!(closed.data, first.data);
    assert_eq!(below.flush().map(|r| r.data), Some(second.data));
}

#[test]
fn a_record_bigger_than_the_limit_travels_alone_and_plain() {
    let small = |i| UserRecord::new(format!("s{i}"), noise(i, 10));
    let big = UserRecord::new("big", noise(9, 60_000));
    let mut aggregator = Aggregator::new();
    aggregator.add(small(1)).expect("valid");
    aggregator.add(small(2)).expect("valid");
    let closed = aggregator.add(big.clone()).expect("valid").expect("closed");
    assert_eq!(closed.user_records, 2);
    let alone = aggregator.add(small(3)).expect("valid").expect("closed");
    assert_eq!(alone.user_records, 1);
    assert_eq!(alone.data, big.data);
    assert_eq!(alone.partition_key, "big");
    assert_eq!(aggregator.flush().map(|r| r.user_records), Some(1));
}
