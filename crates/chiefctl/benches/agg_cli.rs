//! `cargo bench -p chiefctl --bench agg_cli`: `chiefctl agg pack` and `chiefctl agg unpack`
//! as whole processes (JSON lines in, JSON lines out, base64 data) against the same command
//! written over the official Python `aws_kinesis_agg` (`benches/agg_cli_peer.py`), on the same
//! input files, in the same run. Wall time of each process, best of `REPEATS`; both sides'
//! outputs are checked against each other and against the input before any figure is printed.
//!
//! Needs the project venv (`make stack-up`). `CHIEF_BENCH_RECORDS` overrides the count
//! (default 500,000 user records: 100 bytes of data, 36-character keys). Results are
//! recorded in BENCHMARKS.md.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;

const KEY_LEN: usize = 36;
const DATA_LEN: usize = 100;
const REPEATS: usize = 3;
const HINT: &str = "run `make stack-up` (installs .local/venv with aws-kinesis-agg)";

/// xorshift64*: deterministic, dependency-free.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// `n` user-record lines, UUID-shaped keys, random data.
fn write_input(path: &Path, n: usize) {
    let mut rng = Rng(0x5EED_CAFE_F00D_D00D);
    let mut out = BufWriter::new(File::create(path).expect("bench input file"));
    let mut data = [0u8; DATA_LEN];
    for _ in 0..n {
        for chunk in data.chunks_mut(8) {
            let word = rng.next().to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
        let (a, b) = (rng.next(), rng.next());
        let key = format!(
            "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xFFFF,
            a & 0xFFF,
            b >> 52,
            b & 0xFFFF_FFFF_FFFF
        );
        debug_assert_eq!(key.len(), KEY_LEN);
        writeln!(
            out,
            "{{\"partition_key\":\"{key}\",\"data\":\"{}\"}}",
            BASE64.encode(data)
        )
        .expect("write bench input");
    }
    out.flush().expect("write bench input");
}

/// Runs `command` with `input` on stdin and `output` as stdout: the best wall time of `REPEATS`.
fn best(mut command: impl FnMut() -> Command, input: &Path, output: &Path) -> Duration {
    let mut best = Duration::MAX;
    for _ in 0..REPEATS {
        let mut command = command();
        command
            .stdin(File::open(input).expect("bench input"))
            .stdout(File::create(output).expect("bench output"))
            .stderr(Stdio::inherit());
        let start = Instant::now();
        let status = command
            .status()
            .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}; {HINT}"));
        let elapsed = start.elapsed();
        assert!(status.success(), "{command:?} failed: {status}");
        best = best.min(elapsed);
    }
    best
}

fn lines(path: &Path) -> Vec<serde_json::Value> {
    BufReader::new(File::open(path).expect("bench output"))
        .lines()
        .map(|line| serde_json::from_str(&line.expect("read")).expect("a JSON line"))
        .collect()
}

/// The fields of each line that both sides must agree on.
fn fields(path: &Path, names: &[&str]) -> Vec<Vec<serde_json::Value>> {
    lines(path)
        .into_iter()
        .map(|line| names.iter().map(|name| line[*name].clone()).collect())
        .collect()
}

fn main() {
    let n: usize = std::env::var("CHIEF_BENCH_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500_000);
    let chiefctl = PathBuf::from(env!("CARGO_BIN_EXE_chiefctl"));
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let python = root.join(".local/venv/bin/python");
    assert!(python.exists(), "no {}; {HINT}", python.display());
    let peer = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/agg_cli_peer.py");

    let dir = std::env::temp_dir().join(format!("chief-agg-cli-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("bench directory");
    let users = dir.join("users.jsonl");
    let (rust_packed, py_packed) = (dir.join("rust-packed.jsonl"), dir.join("py-packed.jsonl"));
    let (rust_unpacked, py_unpacked) = (
        dir.join("rust-unpacked.jsonl"),
        dir.join("py-unpacked.jsonl"),
    );
    write_input(&users, n);
    let input_bytes = std::fs::metadata(&users).expect("bench input").len();
    println!(
        "chiefctl agg benchmark: {n} user records ({DATA_LEN}-byte data, {KEY_LEN}-character keys), \
         {:.1} MB of JSON lines, aggregates of at most 51200 bytes; wall time per process, best of {REPEATS}",
        input_bytes as f64 / 1e6
    );

    // aws_kinesis_agg leaves the outer partition key out of its limit: with 36-character
    // keys, this limit yields exactly the aggregates chiefctl builds at 51,200.
    let py_max = (51_200 - KEY_LEN).to_string();
    let rust_pack = best(
        || {
            let mut c = Command::new(&chiefctl);
            c.args(["agg", "pack"]);
            c
        },
        &users,
        &rust_packed,
    );
    let py_pack = best(
        || {
            let mut c = Command::new(&python);
            c.arg(&peer).args(["pack", &py_max]);
            c
        },
        &users,
        &py_packed,
    );
    // Both sides unpack the same Kinesis records: chiefctl's.
    let rust_unpack = best(
        || {
            let mut c = Command::new(&chiefctl);
            c.args(["agg", "unpack"]);
            c
        },
        &rust_packed,
        &rust_unpacked,
    );
    let py_unpack = best(
        || {
            let mut c = Command::new(&python);
            c.arg(&peer).arg("unpack");
            c
        },
        &rust_packed,
        &py_unpacked,
    );

    // The outputs agree before any figure counts.
    let packed = fields(&rust_packed, &["data", "user_records"]);
    assert_eq!(
        packed,
        fields(&py_packed, &["data", "user_records"]),
        "chiefctl and aws_kinesis_agg built byte-identical aggregates"
    );
    let input = fields(&users, &["partition_key", "data"]);
    let unpacked = fields(&rust_unpacked, &["partition_key", "data"]);
    assert_eq!(unpacked.len(), n, "every user record came back");
    assert!(unpacked == input, "chiefctl unpacked the input exactly");
    assert!(
        fields(
            &py_unpacked,
            &["partition_key", "data", "sub_sequence_number"]
        ) == fields(
            &rust_unpacked,
            &["partition_key", "data", "sub_sequence_number"]
        ),
        "aws_kinesis_agg unpacked the same user records"
    );
    if std::env::var_os("CHIEF_BENCH_KEEP").is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }

    println!(
        "{} Kinesis records, {n} user records, identical on both sides",
        packed.len()
    );
    println!();
    println!("| command | chiefctl | rec/s | aws_kinesis_agg (Python) | rec/s | ratio |");
    println!("|---------|---------:|------:|-------------------------:|------:|------:|");
    let row = |name: &str, rust: Duration, py: Duration| {
        println!(
            "| {name} | {:.3} s | {:.0} | {:.3} s | {:.0} | **{:.1}×** |",
            rust.as_secs_f64(),
            n as f64 / rust.as_secs_f64(),
            py.as_secs_f64(),
            n as f64 / py.as_secs_f64(),
            py.as_secs_f64() / rust.as_secs_f64()
        );
    };
    row("agg pack", rust_pack, py_pack);
    row("agg unpack", rust_unpack, py_unpack);
}
