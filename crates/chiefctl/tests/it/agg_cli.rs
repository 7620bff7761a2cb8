//! `chiefctl agg pack|unpack`, run as the built binary.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Value, json};

fn chiefctl(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_chiefctl"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run chiefctl");
    let mut pipe = child.stdin.take().expect("piped stdin");
    let input = stdin.to_owned();
    let writer = std::thread::spawn(move || {
        // chiefctl may stop reading early (bad input); a broken pipe is fine then.
        let _ = pipe.write_all(input.as_bytes());
    });
    let output = child.wait_with_output().expect("chiefctl output");
    writer.join().expect("writer thread");
    output
}

fn json_lines(bytes: &[u8]) -> Vec<Value> {
    String::from_utf8(bytes.to_vec())
        .expect("UTF-8")
        .lines()
        .map(|line| serde_json::from_str(line).expect("JSON line"))
        .collect()
}

fn to_lines(values: &[Value]) -> String {
    values.iter().map(|v| format!("{v}\n")).collect()
}

fn user_records(n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| {
            let data: Vec<u8> = (0..(i % 300)).map(|j| (i * 31 + j) as u8).collect();
            let mut record = json!({
                "partition_key": format!("key-{}-ключ", i % 40),
                "data": BASE64.encode(data),
            });
            if i % 3 == 0 {
                record["explicit_hash_key"] = json!(format!("{}", i * 1_000_003));
            }
            record
        })
        .collect()
}

#[test]
fn pack_then_unpack_gives_the_records_back() {
    let input = user_records(2_000);
    let packed = chiefctl(&["agg", "pack", "--max-bytes", "10000"], &to_lines(&input));
    assert!(
        packed.status.success(),
        "{}",
        String::from_utf8_lossy(&packed.stderr)
    );
    let kinesis_records = json_lines(&packed.stdout);
    assert!(kinesis_records.len() > 10, "several aggregates");
    let total: u64 = kinesis_records
        .iter()
        .map(|r| r["user_records"].as_u64().expect("user_records"))
        .sum();
    assert_eq!(total, input.len() as u64);
    for record in &kinesis_records {
        let size = BASE64
            .decode(record["data"].as_str().expect("data"))
            .expect("base64")
            .len()
            + record["partition_key"].as_str().expect("key").len();
        assert!(size <= 10_000, "Kinesis record of {size} bytes");
    }

    let unpacked = chiefctl(&["agg", "unpack"], &to_lines(&kinesis_records));
    assert!(
        unpacked.status.success(),
        "{}",
        String::from_utf8_lossy(&unpacked.stderr)
    );
    assert!(unpacked.stderr.is_empty());
    let output = json_lines(&unpacked.stdout);

    let mut expected = Vec::new();
    let mut next = 0;
    for kinesis_record in &kinesis_records {
        let n = kinesis_record["user_records"].as_u64().expect("count") as usize;
        for (sub_sequence_number, record) in input[next..next + n].iter().enumerate() {
            let mut record = record.clone();
            record["sub_sequence_number"] = json!(sub_sequence_number);
            expected.push(record);
        }
        next += n;
    }
    assert_eq!(output, expected);
}

#[test]
fn unpack_ignores_extra_fields_and_passes_plain_records_through() {
    let input = "{\"partition_key\":\"p\",\"data\":\"aGVsbG8=\",\"sequence_number\":\"4960\",\"user_records\":1}\n";
    let out = chiefctl(&["agg", "unpack"], input);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "{\"partition_key\":\"p\",\"data\":\"aGVsbG8=\",\"sub_sequence_number\":0}\n"
    );
}

#[test]
fn a_malformed_line_exits_2_naming_the_line() {
    let good = to_lines(&user_records(3));
    for (args, input, expected) in [
        (
            &["agg", "pack"][..],
            format!("{good}{{\"partition_key\": \"k\", \"data\": 5}}\n"),
            "line 4: ",
        ),
        (
            &["agg", "pack"][..],
            format!("{good}\nnot json\n"),
            "line 5: ",
        ),
        (
            &["agg", "pack"][..],
            format!("{good}{{\"partition_key\": \"k\", \"data\": \"%%%\"}}\n"),
            "line 4: \"data\" is not valid base64",
        ),
        (
            &["agg", "pack"][..],
            format!(
                "{good}{{\"partition_key\": \"k\", \"explicit_hash_key\": \"-1\", \"data\": \"\"}}\n"
            ),
            "line 4: user record refused: explicit hash key \"-1\"",
        ),
        (
            &["agg", "unpack"][..],
            "{\"data\": \"\"}\n".to_owned(),
            "line 1: ",
        ),
    ] {
        let out = chiefctl(args, &input);
        assert_eq!(out.status.code(), Some(2), "{args:?} {input:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.starts_with(&format!("chiefctl agg: {expected}")),
            "stderr {stderr:?} should start with {expected:?}"
        );
    }
}

#[test]
fn max_bytes_out_of_range_exits_2() {
    let out = chiefctl(&["agg", "pack", "--max-bytes", "2000000"], "");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--max-bytes"));
}
