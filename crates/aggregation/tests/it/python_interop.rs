//! Interop in both directions with the official Python library, PyPI `aws-kinesis-agg`
//! 1.2.3, run from the project's venv (`.local/venv`, made by `make stack-up`) through
//! `tests/interop/peer.py`. These tests fail, never skip, when the peer is missing.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use chief_aggregation::{
    Aggregator, Bytes, DeaggregatedRecord, KinesisRecord, RecordKind, UserRecord, deaggregate,
    partition_key_hash,
};
use serde_json::{Value, json};

const SETUP_HINT: &str = "run `make stack-up` (installs .local/venv with aws-kinesis-agg)";

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs `peer.py <args>` with `input` as stdin lines, returns its stdout lines as JSON.
fn peer(args: &[&str], input: &[Value]) -> Vec<Value> {
    let python = workspace_root().join(".local/venv/bin/python");
    assert!(
        python.exists(),
        "the Python peer is missing: no {}; {SETUP_HINT}",
        python.display()
    );
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/interop/peer.py");
    let mut child = Command::new(&python)
        .arg(&script)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}; {SETUP_HINT}", python.display()));
    let mut stdin = child.stdin.take().expect("piped stdin");
    let lines: String = input.iter().map(|v| format!("{v}\n")).collect();
    let writer = std::thread::spawn(move || {
        stdin.write_all(lines.as_bytes()).expect("write to peer");
    });
    let output = child.wait_with_output().expect("peer output");
    writer.join().expect("writer thread");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "peer.py {args:?} failed ({}): {stderr}\n{}",
        output.status,
        if stderr.contains("ModuleNotFoundError") {
            SETUP_HINT
        } else {
            ""
        }
    );
    String::from_utf8(output.stdout)
        .expect("UTF-8 output")
        .lines()
        .map(|line| serde_json::from_str(line).expect("JSON line from peer"))
        .collect()
}

fn user_record_json(record: &UserRecord) -> Value {
    let mut value = json!({
        "partition_key": record.partition_key,
        "data": BASE64.encode(&record.data),
    });
    if let Some(ehk) = &record.explicit_hash_key {
        value["explicit_hash_key"] = json!(ehk);
    }
    value
}

fn kinesis_record_json(record: &KinesisRecord) -> Value {
    json!({
        "partition_key": record.partition_key,
        "data": BASE64.encode(&record.data),
    })
}

fn bytes_field(value: &Value, field: &str) -> Bytes {
    BASE64
        .decode(value[field].as_str().expect("base64 string"))
        .expect("valid base64")
        .into()
}

fn str_field(value: &Value, field: &str) -> Option<String> {
    value[field].as_str().map(str::to_owned)
}

/// Deterministic pseudo-random bytes (xorshift).
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// A mixed bag: unique and repeated keys, Unicode and 256-character keys, empty data,
/// explicit hash keys at the ends of the range, repeated explicit hash keys.
fn mixed_records(n: u64) -> Vec<UserRecord> {
    (0..n)
        .map(|i| {
            let partition_key = match i % 7 {
                0 => format!("order-{:030}", i),
                1 => "repeated".to_owned(),
                2 => format!("ключ-🔑-{i}"),
                3 => "é".repeat(256),
                _ => format!("{i:036}"),
            };
            let data = if i % 11 == 0 {
                Vec::new()
            } else {
                noise(i, (i * 37 % 400) as usize)
            };
            let record = UserRecord::new(partition_key, data);
            match i % 5 {
                0 => record.with_explicit_hash_key(u128::MAX.to_string()),
                1 => record.with_explicit_hash_key("0"),
                2 => record.with_explicit_hash_key(((u128::from(i) << 90) + 12_345).to_string()),
                _ => record,
            }
        })
        .collect()
}

fn aggregate_all(max_bytes: usize, records: &[UserRecord]) -> Vec<KinesisRecord> {
    let mut aggregator = Aggregator::with_max_bytes(max_bytes).expect("valid limit");
    let mut out = Vec::new();
    for record in records {
        out.extend(aggregator.add(record.clone()).expect("valid record"));
    }
    out.extend(aggregator.flush());
    out
}

#[test]
fn python_reads_what_we_write() {
    let records = mixed_records(3_000);
    let ours = aggregate_all(20_000, &records);
    assert!(ours.len() > 10, "several aggregates");
    let input: Vec<Value> = ours.iter().map(kinesis_record_json).collect();
    let theirs = peer(&["deaggregate"], &input);

    // What Python must yield: every user record, in order, with sub-sequence numbers per
    // Kinesis record. One quirk of aws-kinesis-agg 1.2.3's deaggregator is mirrored here:
    // it reads a record's absent explicit_hash_key_index as 0, so a record without an
    // explicit hash key in an aggregate whose table is not empty comes out with the
    // table's first key (the KCL checks presence and yields none).
    let mut expected = Vec::new();
    let mut next = 0;
    for kinesis_record in &ours {
        let members = &records[next..next + kinesis_record.user_records];
        next += members.len();
        let first_ehk = members.iter().find_map(|r| r.explicit_hash_key.clone());
        for (sub_sequence_number, member) in members.iter().enumerate() {
            let explicit_hash_key = if kinesis_record.is_aggregate() {
                member.explicit_hash_key.clone().or(first_ehk.clone())
            } else {
                None // a plain record passes through without one (it is not in the data)
            };
            expected.push(json!({
                "partition_key": member.partition_key,
                "explicit_hash_key": explicit_hash_key,
                "data": BASE64.encode(&member.data),
                "sub_sequence_number": if kinesis_record.is_aggregate() { sub_sequence_number } else { 0 },
                "aggregated": kinesis_record.is_aggregate(),
            }));
        }
    }
    assert_eq!(next, records.len());
    assert_eq!(theirs.len(), expected.len());
    for (i, (got, want)) in theirs.iter().zip(&expected).enumerate() {
        assert_eq!(got, want, "user record {i}");
    }
}

#[test]
fn we_read_what_python_writes() {
    let records = mixed_records(3_000);
    let input: Vec<Value> = records.iter().map(user_record_json).collect();
    let theirs = peer(&["aggregate", "--max-size", "20000"], &input);
    assert!(theirs.len() > 10, "several aggregates");

    let mut next = 0;
    for kinesis_record in &theirs {
        let n = kinesis_record["user_records"].as_u64().expect("count") as usize;
        let members = &records[next..next + n];
        next += n;
        assert_eq!(
            str_field(kinesis_record, "partition_key").as_deref(),
            Some(members[0].partition_key.as_str())
        );
        let unpacked = deaggregate(UserRecord {
            partition_key: str_field(kinesis_record, "partition_key").expect("key"),
            explicit_hash_key: str_field(kinesis_record, "explicit_hash_key"),
            data: bytes_field(kinesis_record, "data"),
        });
        assert_eq!(unpacked.kind(), &RecordKind::Aggregate { user_records: n });
        let expected: Vec<DeaggregatedRecord> = members
            .iter()
            .cloned()
            .zip(0..)
            .map(|(record, sub_sequence_number)| DeaggregatedRecord {
                record,
                sub_sequence_number,
            })
            .collect();
        assert_eq!(unpacked.collect::<Vec<_>>(), expected);
    }
    assert_eq!(next, records.len());
}

#[test]
fn we_write_the_bytes_python_writes() {
    // Unique 36-character keys and unique explicit hash keys: then aws-kinesis-agg's size
    // estimate is exact (it never finds a key in its tables, a str/bytes mix-up), and its
    // limit, which leaves out the outer partition key, equals ours minus 36.
    let records: Vec<UserRecord> = (0..5_000u64)
        .map(|i| {
            let record = UserRecord::new(
                format!("{:08x}-0000-4000-8000-{:012x}", i, i * 7_919),
                noise(i, 100),
            );
            if i % 4 == 0 {
                record.with_explicit_hash_key(
                    (u128::from(i) * 68_056_473_384_187_692_692).to_string(),
                )
            } else {
                record
            }
        })
        .collect();
    let max_bytes = 51_200;
    let ours = aggregate_all(max_bytes, &records);
    let input: Vec<Value> = records.iter().map(user_record_json).collect();
    let python_max = (max_bytes - 36).to_string();
    let theirs = peer(&["aggregate", "--max-size", &python_max], &input);

    assert_eq!(ours.len(), theirs.len(), "same number of Kinesis records");
    assert!(ours.iter().filter(|r| r.is_aggregate()).count() > 5);
    for (i, (mine, python)) in ours.iter().zip(&theirs).enumerate() {
        assert_eq!(
            python["user_records"].as_u64(),
            Some(mine.user_records as u64),
            "Kinesis record {i}: same split"
        );
        assert_eq!(
            str_field(python, "partition_key").as_deref(),
            Some(mine.partition_key.as_str())
        );
        let python_data = bytes_field(python, "data");
        if mine.is_aggregate() {
            assert_eq!(mine.data, python_data, "Kinesis record {i}: same bytes");
            assert!(mine.size() <= max_bytes);
            // Python leaves the explicit hash key to the first record's; we always route
            // explicitly, to the first record's shard.
            let first = &records[ours[..i].iter().map(|r| r.user_records).sum::<usize>()];
            assert_eq!(
                str_field(python, "explicit_hash_key"),
                first.explicit_hash_key
            );
            assert_eq!(
                mine.explicit_hash_key,
                Some(
                    first.explicit_hash_key.clone().unwrap_or_else(|| {
                        partition_key_hash(&first.partition_key).to_string()
                    })
                )
            );
        } else {
            // aws-kinesis-agg wraps a lone record in an aggregate; the KPL and we send it
            // plain.
            let unpacked: Vec<_> = deaggregate(UserRecord::new("k", python_data)).collect();
            assert_eq!(unpacked.len(), 1);
            assert_eq!(unpacked[0].record.data, mine.data);
        }
    }
}

#[test]
fn bad_records_are_passed_through_like_python_does() {
    let good = aggregate_all(51_200, &mixed_records(20)).remove(0);
    assert!(good.is_aggregate());
    let mut bad_md5 = good.data.to_vec();
    let last = bad_md5.len() - 1;
    bad_md5[last] ^= 1;
    let mut bad_protobuf = chief_aggregation::MAGIC.to_vec();
    bad_protobuf.push(0xFF);
    {
        use md5::{Digest, Md5};
        bad_protobuf.extend_from_slice(&Md5::digest([0xFF]));
    }
    let inputs: Vec<Bytes> = vec![
        Bytes::from_static(b"plain data"),
        Bytes::new(),
        Bytes::from_static(&chief_aggregation::MAGIC),
        bad_md5.into(),
        bad_protobuf.into(),
        good.data.slice(..good.data.len() - 3),
    ];
    let kinesis_records: Vec<Value> = inputs
        .iter()
        .map(|data| json!({"partition_key": "outer", "data": BASE64.encode(data)}))
        .collect();
    let theirs = peer(&["deaggregate"], &kinesis_records);
    assert_eq!(theirs.len(), inputs.len(), "one record out per record in");
    for (data, python) in inputs.iter().zip(&theirs) {
        let ours: Vec<_> = deaggregate(UserRecord::new("outer", data.clone())).collect();
        assert_eq!(ours.len(), 1);
        assert_eq!(python["aggregated"], json!(false));
        assert_eq!(bytes_field(python, "data"), ours[0].record.data);
        assert_eq!(&ours[0].record.data, data, "passed through unchanged");
        assert_eq!(python["partition_key"], json!(ours[0].record.partition_key));
        assert_eq!(
            python["sub_sequence_number"],
            json!(ours[0].sub_sequence_number)
        );
    }
}
