//! Bad input: records the aggregator must refuse (and hand back), and Kinesis records the
//! deaggregator must pass through unchanged (and report).

use chief_aggregation::{
    AggregationError, Aggregator, Bytes, ConfigError, CorruptAggregate, DeaggregatedRecord,
    DeaggregationStats, MAGIC, MAX_RECORD_BYTES, RecordKind, UserRecord, deaggregate,
};
use md5::{Digest, Md5};

fn refused(record: UserRecord) -> AggregationError {
    let mut aggregator = Aggregator::new();
    aggregator
        .add(UserRecord::new("before", &b"kept"[..]))
        .expect("valid");
    let error = aggregator.add(record.clone()).expect_err("refused");
    assert_eq!(error.record(), &record);
    // The open aggregate is untouched.
    assert_eq!(aggregator.len(), 1);
    assert_eq!(
        aggregator.flush().map(|r| r.data),
        Some(Bytes::from_static(b"kept"))
    );
    error
}

#[test]
fn empty_partition_key_is_refused_and_handed_back() {
    let record = UserRecord::new("", &b"x"[..]);
    let error = refused(record.clone());
    assert!(matches!(error, AggregationError::EmptyPartitionKey { .. }));
    assert_eq!(error.into_record(), record);
}

#[test]
fn partition_key_over_256_characters_is_refused() {
    let record = UserRecord::new("é".repeat(257), &b"x"[..]);
    let error = refused(record.clone());
    assert!(matches!(
        error,
        AggregationError::PartitionKeyTooLong { chars: 257, .. }
    ));
    assert_eq!(
        error.to_string(),
        "user record refused: partition key is 257 characters long, over the limit of 256"
    );
    assert_eq!(error.into_record(), record);

    // 256 four-byte characters (1,024 bytes) are within the limit.
    let mut aggregator = Aggregator::new();
    aggregator
        .add(UserRecord::new("🔑".repeat(256), &b"x"[..]))
        .expect("256 characters are allowed");
}

#[test]
fn explicit_hash_key_outside_the_range_is_refused() {
    for bad in [
        "340282366920938463463374607431768211456", // 2^128
        "-1",
        "01",
        "",
        "0x10",
        "1 ",
    ] {
        let record = UserRecord::new("k", &b"x"[..]).with_explicit_hash_key(bad);
        let error = refused(record.clone());
        assert!(
            matches!(error, AggregationError::InvalidExplicitHashKey { .. }),
            "{bad:?}: {error}"
        );
        assert_eq!(error.into_record(), record);
    }
    let mut aggregator = Aggregator::new();
    for good in ["0", "340282366920938463463374607431768211455"] {
        aggregator
            .add(UserRecord::new("k", &b"x"[..]).with_explicit_hash_key(good))
            .expect("in range");
    }
}

#[test]
fn record_over_one_mebibyte_is_refused_and_one_at_the_limit_is_sent_plain() {
    let key = "key";
    let at_limit = UserRecord::new(key, vec![7u8; MAX_RECORD_BYTES - key.len()]);
    let over = UserRecord::new(key, vec![7u8; MAX_RECORD_BYTES - key.len() + 1]);

    let error = refused(over.clone());
    assert!(matches!(
        error,
        AggregationError::RecordTooLarge {
            size: 1_048_577,
            ..
        }
    ));
    assert_eq!(error.into_record(), over);

    let mut aggregator = Aggregator::with_max_bytes(MAX_RECORD_BYTES).expect("valid");
    assert_eq!(aggregator.add(at_limit.clone()).expect("valid"), None);
    let plain = aggregator.flush().expect("one record");
    assert_eq!(plain.user_records, 1);
    assert_eq!(plain.size(), MAX_RECORD_BYTES);
    assert_eq!(plain.data, at_limit.data);
}

#[test]
fn the_size_limit_must_be_within_one_mebibyte() {
    assert_eq!(
        Aggregator::with_max_bytes(0).err(),
        Some(ConfigError::MaxBytesOutOfRange { max_bytes: 0 })
    );
    assert_eq!(
        Aggregator::with_max_bytes(MAX_RECORD_BYTES + 1).err(),
        Some(ConfigError::MaxBytesOutOfRange {
            max_bytes: MAX_RECORD_BYTES + 1
        })
    );
    assert_eq!(
        Aggregator::with_max_bytes(MAX_RECORD_BYTES)
            .expect("1 MiB is allowed")
            .max_bytes(),
        MAX_RECORD_BYTES
    );
    assert_eq!(Aggregator::new().max_bytes(), 51_200);
}

/// Magic + `body` + MD5(`body`): a well-framed aggregate whatever the body holds.
fn framed(body: &[u8]) -> Bytes {
    let mut data = MAGIC.to_vec();
    data.extend_from_slice(body);
    data.extend_from_slice(&Md5::digest(body));
    data.into()
}

fn valid_aggregate() -> Bytes {
    let mut aggregator = Aggregator::new();
    aggregator
        .add(UserRecord::new("a", &b"one"[..]))
        .expect("valid");
    aggregator
        .add(UserRecord::new("b", &b"two"[..]).with_explicit_hash_key("5"))
        .expect("valid");
    aggregator.flush().expect("aggregate").data
}

/// Deaggregates `data` and checks it is passed through unchanged as one user record.
fn passed_through(data: Bytes) -> RecordKind {
    let received = UserRecord {
        partition_key: "outer".into(),
        explicit_hash_key: Some("99".into()),
        data,
    };
    let unpacked = deaggregate(received.clone());
    let kind = unpacked.kind().clone();
    assert_eq!(
        unpacked.collect::<Vec<_>>(),
        vec![DeaggregatedRecord {
            record: received,
            sub_sequence_number: 0
        }]
    );
    kind
}

#[test]
fn plain_records_pass_through() {
    assert_eq!(passed_through(Bytes::new()), RecordKind::Plain);
    assert_eq!(
        passed_through(Bytes::from_static(b"hello")),
        RecordKind::Plain
    );
    assert_eq!(
        passed_through(Bytes::from_static(&[0xF3, 0x89, 0x9A])),
        RecordKind::Plain
    );
    let mut wrong_magic = valid_aggregate().to_vec();
    wrong_magic[0] ^= 1;
    assert_eq!(passed_through(wrong_magic.into()), RecordKind::Plain);
}

#[test]
fn corrupt_aggregates_pass_through_and_say_why() {
    assert_eq!(
        passed_through(Bytes::from_static(&MAGIC)),
        RecordKind::Corrupt(CorruptAggregate::TooShort { len: 4 })
    );
    assert_eq!(
        passed_through(framed(&[])),
        RecordKind::Corrupt(CorruptAggregate::TooShort { len: 20 })
    );

    let good = valid_aggregate();
    for position in [4, good.len() / 2, good.len() - 1] {
        let mut flipped = good.to_vec();
        flipped[position] ^= 0x40;
        assert_eq!(
            passed_through(flipped.into()),
            RecordKind::Corrupt(CorruptAggregate::Md5Mismatch),
            "byte {position} flipped"
        );
    }
    let truncated = good.slice(..good.len() - 1);
    assert_eq!(
        passed_through(truncated),
        RecordKind::Corrupt(CorruptAggregate::Md5Mismatch)
    );

    // Well framed, but the protobuf is not an AggregatedRecord.
    assert!(matches!(
        passed_through(framed(&[0xFF])),
        RecordKind::Corrupt(CorruptAggregate::Protobuf(_))
    ));
    // A records field whose length runs past the end.
    assert!(matches!(
        passed_through(framed(&[0x1A, 0x09, 0x08, 0x00])),
        RecordKind::Corrupt(CorruptAggregate::Protobuf(_))
    ));
    // Invalid UTF-8 in the partition key table.
    assert!(matches!(
        passed_through(framed(&[
            0x0A, 0x01, 0xFF, 0x1A, 0x03, 0x08, 0x00, 0x1A, 0x00
        ])),
        RecordKind::Corrupt(CorruptAggregate::Protobuf(_))
    ));
    // Only a partition key table: no user record.
    assert_eq!(
        passed_through(framed(&[0x0A, 0x01, b'a'])),
        RecordKind::Corrupt(CorruptAggregate::Empty)
    );
    // Partition key index 5 of a table of 1.
    assert_eq!(
        passed_through(framed(&[
            0x0A, 0x01, b'a', 0x1A, 0x04, 0x08, 0x05, 0x1A, 0x00
        ])),
        RecordKind::Corrupt(CorruptAggregate::PartitionKeyIndexOutOfRange {
            record: 0,
            index: 5,
            table_len: 1
        })
    );
    // Explicit hash key index 0 of an empty table, in the second record.
    assert_eq!(
        passed_through(framed(&[
            0x0A, 0x01, b'a', 0x1A, 0x04, 0x08, 0x00, 0x1A, 0x00, 0x1A, 0x06, 0x08, 0x00, 0x10,
            0x00, 0x1A, 0x00
        ])),
        RecordKind::Corrupt(CorruptAggregate::ExplicitHashKeyIndexOutOfRange {
            record: 1,
            index: 0,
            table_len: 0
        })
    );
    // Required fields missing.
    assert_eq!(
        passed_through(framed(&[0x0A, 0x01, b'a', 0x1A, 0x02, 0x08, 0x00])),
        RecordKind::Corrupt(CorruptAggregate::MissingField {
            record: 0,
            field: "data"
        })
    );
    assert_eq!(
        passed_through(framed(&[0x0A, 0x01, b'a', 0x1A, 0x02, 0x1A, 0x00])),
        RecordKind::Corrupt(CorruptAggregate::MissingField {
            record: 0,
            field: "partition_key_index"
        })
    );
}

#[test]
fn tags_and_unknown_fields_are_read_and_ignored() {
    // Record { pk 0, data "x", tags [{key "t", value "v"}] }, then an unknown field 9.
    let body = [
        0x0A, 0x01, b'a', // partition_key_table "a"
        0x1A, 0x0D, // records, 13 bytes
        0x08, 0x00, 0x1A, 0x01, b'x', // pk index 0, data "x"
        0x22, 0x06, 0x0A, 0x01, b't', 0x12, 0x01, b'v', // tag
        0x48, 0x01, // unknown varint field 9
    ];
    let unpacked = deaggregate(UserRecord::new("outer", framed(&body)));
    assert_eq!(unpacked.kind(), &RecordKind::Aggregate { user_records: 1 });
    let records: Vec<_> = unpacked.collect();
    assert_eq!(
        records,
        vec![DeaggregatedRecord {
            record: UserRecord::new("a", &b"x"[..]),
            sub_sequence_number: 0
        }]
    );
}

#[test]
fn stats_count_every_kind() {
    let mut stats = DeaggregationStats::default();
    for data in [
        valid_aggregate(),
        Bytes::from_static(b"plain"),
        framed(&[0xFF]),
    ] {
        let unpacked = deaggregate(UserRecord::new("k", data));
        stats.observe(&unpacked);
        assert_eq!(unpacked.len(), unpacked.count());
    }
    assert_eq!(
        stats,
        DeaggregationStats {
            kinesis_records: 3,
            plain_records: 1,
            aggregates: 1,
            corrupt_aggregates: 1,
            user_records: 4,
        }
    );
}

#[test]
fn resume_after_skips_the_checkpointed_sub_records() {
    let mut aggregator = Aggregator::new();
    for i in 0..5 {
        aggregator
            .add(UserRecord::new(format!("k{i}"), vec![i]))
            .expect("valid");
    }
    let data = aggregator.flush().expect("aggregate").data;
    let subs = |checkpoint| -> Vec<u64> {
        deaggregate(UserRecord::new("k0", data.clone()))
            .resume_after(checkpoint)
            .map(|r| r.sub_sequence_number)
            .collect()
    };
    assert_eq!(subs(0), vec![1, 2, 3, 4]);
    assert_eq!(subs(2), vec![3, 4]);
    assert_eq!(subs(4), Vec::<u64>::new());
    assert_eq!(subs(u64::MAX), Vec::<u64>::new());
    assert_eq!(
        deaggregate(UserRecord::new("k", &b"plain"[..]))
            .resume_after(0)
            .count(),
        0
    );
}
