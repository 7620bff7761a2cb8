//! A quick, stable-toolchain cousin of the `cargo fuzz` target in `fuzz/`: `deaggregate`
//! never panics and always keeps its promises, on arbitrary bytes and on mutated valid
//! aggregates (re-framed with a fresh MD5 so the mutations reach the protobuf decoder).

use chief_aggregation::{Aggregator, Bytes, MAGIC, RecordKind, UserRecord, deaggregate};
use md5::{Digest, Md5};
use proptest::prelude::*;

fn framed(body: &[u8]) -> Bytes {
    let mut data = MAGIC.to_vec();
    data.extend_from_slice(body);
    data.extend_from_slice(&Md5::digest(body));
    data.into()
}

fn valid_body() -> Vec<u8> {
    let mut aggregator = Aggregator::new();
    for (i, key) in ["a", "b", "a", "ключ"].iter().enumerate() {
        let record = UserRecord::new(*key, vec![i as u8; i * 3]);
        let record = if i % 2 == 1 {
            record.with_explicit_hash_key((i * 1_000).to_string())
        } else {
            record
        };
        aggregator.add(record).expect("valid");
    }
    let data = aggregator.flush().expect("aggregate").data;
    data[MAGIC.len()..data.len() - 16].to_vec()
}

fn check(data: Bytes) {
    let received = UserRecord::new("outer", data.clone());
    let unpacked = deaggregate(received.clone());
    let kind = unpacked.kind().clone();
    let len = unpacked.len();
    let records: Vec<_> = unpacked.collect();
    assert_eq!(records.len(), len);
    match kind {
        RecordKind::Aggregate { user_records } => {
            assert_eq!(records.len(), user_records);
            assert!(
                records
                    .iter()
                    .zip(0..)
                    .all(|(r, i)| r.sub_sequence_number == i)
            );
        }
        _ => {
            assert_eq!(records.len(), 1);
            assert_eq!(records[0].record, received);
            assert_eq!(records[0].sub_sequence_number, 0);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        check(bytes.clone().into());
        check(framed(&bytes));
    }

    #[test]
    fn mutated_aggregates_never_panic(
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let mut body = valid_body();
        for (at, value) in edits {
            let i = at.index(body.len());
            body[i] = value;
        }
        if truncate {
            body.truncate(cut.index(body.len()));
        }
        check(framed(&body));
    }
}
