//! `deaggregate` must never panic, whatever the bytes, and must keep its promises:
//! a plain or corrupt record comes back unchanged as one user record with sub-sequence
//! number 0; a valid aggregate yields as many user records as it says, numbered 0, 1, 2…,
//! and they survive a round trip through the aggregator.
//!
//! Each input is tried twice: as a Kinesis record's data as is (magic, MD5 and all), and
//! framed as magic + input + MD5(input), so that the fuzzer reaches the protobuf decoder
//! without having to forge an MD5.

#![no_main]

use chief_aggregation::{Aggregator, Bytes, MAGIC, RecordKind, UserRecord, deaggregate};
use libfuzzer_sys::fuzz_target;
use md5::{Digest, Md5};

fuzz_target!(|input: &[u8]| {
    check(Bytes::copy_from_slice(input));
    let mut framed = MAGIC.to_vec();
    framed.extend_from_slice(input);
    framed.extend_from_slice(&Md5::digest(input));
    check(Bytes::from(framed));
});

fn check(data: Bytes) {
    let received = UserRecord::new("outer", data.clone());
    let unpacked = deaggregate(received.clone());
    let kind = unpacked.kind().clone();
    let len = unpacked.len();
    let records: Vec<_> = unpacked.collect();
    assert_eq!(records.len(), len, "ExactSizeIterator length");
    match kind {
        RecordKind::Plain | RecordKind::Corrupt(_) => {
            assert!(matches!(kind, RecordKind::Corrupt(_)) || !data.starts_with(&MAGIC));
            assert_eq!(records.len(), 1);
            assert_eq!(records[0].record, received, "passed through unchanged");
            assert_eq!(records[0].sub_sequence_number, 0);
        }
        RecordKind::Aggregate { user_records } => {
            assert_eq!(records.len(), user_records);
            for (i, sub) in records.iter().enumerate() {
                assert_eq!(sub.sub_sequence_number, i as u64);
            }
            // Whatever we read, we can write and read back (when it is within the limits
            // the aggregator enforces).
            let mut aggregator = Aggregator::with_max_bytes(chief_aggregation::MAX_RECORD_BYTES)
                .expect("valid limit");
            let mut out = Vec::new();
            let mut accepted = Vec::new();
            for sub in &records {
                if let Ok(closed) = aggregator.add(sub.record.clone()) {
                    out.extend(closed);
                    accepted.push(sub.record.clone());
                }
            }
            out.extend(aggregator.flush());
            let again: Vec<UserRecord> = out
                .into_iter()
                .flat_map(|k| {
                    let plain = !k.is_aggregate();
                    let record = UserRecord {
                        partition_key: k.partition_key,
                        explicit_hash_key: k.explicit_hash_key,
                        data: k.data,
                    };
                    if plain {
                        vec![record]
                    } else {
                        deaggregate(record).map(|sub| sub.record).collect()
                    }
                })
                .collect();
            assert_eq!(again, accepted);
        }
        _ => {}
    }
}
