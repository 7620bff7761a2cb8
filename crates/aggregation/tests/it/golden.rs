//! Golden bytes: aggregates as `aws-kinesis-agg` 1.2.3 (the official Python library)
//! writes them for the same user records, captured once with
//! `RecordAggregator.add_user_record(...)` then `clear_and_get().get_contents()`.

use chief_aggregation::{
    Aggregator, DeaggregatedRecord, KinesisRecord, RecordKind, UserRecord, deaggregate,
    partition_key_hash,
};

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

fn aggregate(records: &[UserRecord]) -> KinesisRecord {
    let mut aggregator = Aggregator::new();
    for record in records {
        assert_eq!(
            aggregator.add(record.clone()).expect("valid record"),
            None,
            "closed early"
        );
    }
    let size = aggregator.size();
    let out = aggregator.flush().expect("one aggregate");
    assert!(aggregator.is_empty());
    assert_eq!(out.size(), size, "size() is the emitted size");
    out
}

fn check_golden(records: Vec<UserRecord>, golden_hex: &str) {
    let out = aggregate(&records);
    assert_eq!(out.data.as_ref(), hex(golden_hex).as_slice());
    assert_eq!(out.user_records, records.len());
    assert_eq!(out.partition_key, records[0].partition_key);
    let expected_ehk = records[0]
        .explicit_hash_key
        .clone()
        .unwrap_or_else(|| partition_key_hash(&records[0].partition_key).to_string());
    assert_eq!(out.explicit_hash_key, Some(expected_ehk));

    let back = deaggregate(UserRecord::new(out.partition_key, out.data));
    assert_eq!(
        back.kind(),
        &RecordKind::Aggregate {
            user_records: records.len()
        }
    );
    let expected: Vec<DeaggregatedRecord> = records
        .into_iter()
        .zip(0..)
        .map(|(record, sub_sequence_number)| DeaggregatedRecord {
            record,
            sub_sequence_number,
        })
        .collect();
    assert_eq!(back.collect::<Vec<_>>(), expected);
}

#[test]
fn two_records_one_with_explicit_hash_key_and_empty_data() {
    check_golden(
        vec![
            UserRecord::new("a", &b"x"[..]),
            UserRecord::new("b", &b""[..]).with_explicit_hash_key("1"),
        ],
        "f3899ac2\
         0a0161 0a0162 120131\
         1a05 0800 1a0178\
         1a06 0801 1000 1a00\
         d808c030da64a5608d3a373b76b534d3"
            .replace(' ', "")
            .as_str(),
    );
}

#[test]
fn repeated_keys_are_deduplicated_into_the_tables() {
    let max = u128::MAX.to_string();
    check_golden(
        vec![
            UserRecord::new("k1", &b"one"[..]),
            UserRecord::new("k2", &b"two"[..]).with_explicit_hash_key(max.clone()),
            UserRecord::new("k1", &b"three"[..]),
            UserRecord::new("k2", &b"four"[..]).with_explicit_hash_key(max),
        ],
        "f3899ac20a026b310a026b3212273334303238323336363932303933383436333436333337343630373433\
         313736383231313435351a0708001a036f6e651a09080110001a0374776f1a0908001a057468726565\
         1a0a080110001a04666f7572333b42b4f34b262f0ffcd8ca4dbda72d",
    );
}

#[test]
fn unicode_key_and_multi_byte_lengths() {
    check_golden(
        vec![
            UserRecord::new("ключ-🔑", (0u8..200).collect::<Vec<u8>>()),
            UserRecord::new("a", &b"\x00"[..]),
        ],
        "f3899ac20a0dd0bad0bbd18ed1872df09f94910a01611acd0108001ac801000102030405060708090a0b0c0d\
         0e0f101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f30313233343536373839\
         3a3b3c3d3e3f404142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f60616263646566\
         6768696a6b6c6d6e6f707172737475767778797a7b7c7d7e7f808182838485868788898a8b8c8d8e8f90919293\
         9495969798999a9b9c9d9e9fa0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebfc0\
         c1c2c3c4c5c6c71a0508011a01000d015df65a7cb2abbbf3f17ee13e5fdc",
    );
}

#[test]
fn a_lone_record_is_emitted_plain() {
    let record = UserRecord::new("only", &b"payload"[..]);
    let mut aggregator = Aggregator::new();
    assert_eq!(aggregator.add(record.clone()).expect("valid"), None);
    assert_eq!(
        aggregator.flush(),
        Some(KinesisRecord {
            partition_key: "only".into(),
            explicit_hash_key: None,
            data: record.data.clone(),
            user_records: 1,
        })
    );
    assert_eq!(aggregator.flush(), None);

    let with_ehk = record.with_explicit_hash_key("42");
    aggregator.add(with_ehk).expect("valid");
    assert_eq!(
        aggregator.flush().and_then(|r| r.explicit_hash_key),
        Some("42".to_owned())
    );
}
