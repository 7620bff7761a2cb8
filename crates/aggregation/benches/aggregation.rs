//! `cargo bench -p chief-aggregation`: aggregate and deaggregate 1,000,000 user records of
//! 100 bytes with 36-character partition keys, single-threaded, side by side with the
//! official Python `aws_kinesis_agg` on the same records, against this machine's own
//! single-core MD5 throughput (the ceiling: every aggregate byte is hashed once each way).
//!
//! Needs the project venv (`make stack-up`). `CHIEF_BENCH_RECORDS` overrides the count.
//! Results are recorded in BENCHMARKS.md.

use std::hint::black_box;
use std::io::Write;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use chief_aggregation::{
    Aggregator, Bytes, DEFAULT_MAX_AGGREGATE_BYTES, KinesisRecord, UserRecord, deaggregate,
};
use md5::{Digest, Md5};

const KEY_LEN: usize = 36;
const DATA_LEN: usize = 100;
const REPEATS: usize = 5;
const PYTHON_REPEATS: usize = 3;

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

/// `n` records with UUID-shaped keys and random data, the data slices of one buffer.
fn generate(n: usize) -> Vec<UserRecord> {
    let mut rng = Rng(0x5EED_CAFE_F00D_D00D);
    let mut buffer = Vec::with_capacity(n * DATA_LEN);
    while buffer.len() < n * DATA_LEN {
        buffer.extend_from_slice(&rng.next().to_le_bytes());
    }
    buffer.truncate(n * DATA_LEN);
    let buffer = Bytes::from(buffer);
    (0..n)
        .map(|i| {
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
            UserRecord::new(key, buffer.slice(i * DATA_LEN..(i + 1) * DATA_LEN))
        })
        .collect()
}

fn aggregate(records: Vec<UserRecord>) -> Vec<KinesisRecord> {
    let mut aggregator = Aggregator::new();
    let mut out = Vec::with_capacity(records.len() / 300);
    for record in records {
        match aggregator.add(record) {
            Ok(closed) => out.extend(closed),
            Err(error) => panic!("generated record refused: {error}"),
        }
    }
    out.extend(aggregator.flush());
    out
}

fn deaggregate_all(kinesis_records: &[KinesisRecord]) -> usize {
    let mut count = 0;
    for record in kinesis_records {
        let received = UserRecord::new(record.partition_key.clone(), record.data.clone());
        for sub in deaggregate(received) {
            black_box(&sub);
            count += 1;
        }
    }
    count
}

/// The best of `REPEATS` runs of `run`, which gets fresh input from `setup` (untimed).
fn best<I, O>(mut setup: impl FnMut() -> I, mut run: impl FnMut(I) -> O) -> (Duration, O) {
    let mut best: Option<(Duration, O)> = None;
    for _ in 0..REPEATS {
        let input = setup();
        let start = Instant::now();
        let output = black_box(run(black_box(input)));
        let elapsed = start.elapsed();
        if best.as_ref().is_none_or(|(b, _)| elapsed < *b) {
            best = Some((elapsed, output));
        }
    }
    best.unwrap_or_else(|| unreachable!("REPEATS > 0"))
}

fn md5_mb_per_s() -> f64 {
    let buffer: Vec<u8> = (0..64 << 20)
        .map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let (elapsed, _) = best(|| (), |()| Md5::digest(&buffer));
    buffer.len() as f64 / elapsed.as_secs_f64() / 1e6
}

struct PythonResult {
    aggregate: Duration,
    deaggregate: Duration,
    kinesis_records: usize,
    aggregate_bytes: usize,
}

fn python(records: &[UserRecord]) -> PythonResult {
    const HINT: &str = "run `make stack-up` (installs .local/venv with aws-kinesis-agg)";
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let python = root.join(".local/venv/bin/python");
    assert!(python.exists(), "no {}; {HINT}", python.display());

    let path = std::env::temp_dir().join(format!("chief-agg-bench-{}.bin", std::process::id()));
    let mut file = std::io::BufWriter::new(std::fs::File::create(&path).expect("temp file"));
    for record in records {
        file.write_all(&[record.partition_key.len() as u8])
            .expect("write");
        file.write_all(record.partition_key.as_bytes())
            .expect("write");
        file.write_all(&(record.data.len() as u32).to_le_bytes())
            .expect("write");
        file.write_all(&record.data).expect("write");
    }
    file.flush().expect("write");
    drop(file);

    // aws_kinesis_agg leaves the outer partition key out of its limit: with 36-character
    // keys, this limit yields exactly our aggregates.
    let max_size = DEFAULT_MAX_AGGREGATE_BYTES - KEY_LEN;
    let output = Command::new(&python)
        .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/python_peer.py"))
        .arg(&path)
        .arg(max_size.to_string())
        .arg(PYTHON_REPEATS.to_string())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}; {HINT}", python.display()));
    let _ = std::fs::remove_file(&path);
    assert!(
        output.status.success(),
        "python_peer.py failed: {}\n{HINT}",
        String::from_utf8_lossy(&output.stderr)
    );
    let result: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("JSON from python_peer.py");
    let seconds = |field: &str| Duration::from_secs_f64(result[field].as_f64().expect("seconds"));
    let count = |field: &str| result[field].as_u64().expect("count") as usize;
    PythonResult {
        aggregate: seconds("aggregate_seconds"),
        deaggregate: seconds("deaggregate_seconds"),
        kinesis_records: count("kinesis_records"),
        aggregate_bytes: count("aggregate_bytes"),
    }
}

fn main() {
    let n: usize = std::env::var("CHIEF_BENCH_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    println!(
        "chief-aggregation benchmark: {n} user records, {DATA_LEN}-byte data, {KEY_LEN}-character keys, \
         aggregates of at most {DEFAULT_MAX_AGGREGATE_BYTES} bytes, one thread"
    );
    let records = generate(n);

    let md5 = md5_mb_per_s();
    let (aggregate_time, kinesis_records) = best(|| records.clone(), aggregate);
    let aggregate_bytes: usize = kinesis_records.iter().map(|r| r.data.len()).sum();
    let (deaggregate_time, count) = best(|| (), |()| deaggregate_all(&kinesis_records));
    assert_eq!(count, n, "every user record comes back");

    println!("running the Python peer (aws_kinesis_agg) on the same records…");
    let py = python(&records);
    assert_eq!(
        (py.kinesis_records, py.aggregate_bytes),
        (kinesis_records.len(), aggregate_bytes),
        "Python and Rust built the same aggregates"
    );

    let mb = aggregate_bytes as f64 / 1e6;
    // The most any implementation can do on one core: hash every aggregate byte once.
    let md5_bound_rate = md5 / (mb / n as f64);
    let row = |name: &str, rust: Duration, python: Duration| {
        let rust_rate = n as f64 / rust.as_secs_f64();
        let python_rate = n as f64 / python.as_secs_f64();
        let rust_mb = mb / rust.as_secs_f64();
        println!(
            "| {name:<11} | {:>10.0} | {:>9.1} | {:>12.0} | {:>7.2} | {:>6.1}× | {:>5.0} % | {:>14.1}× |",
            rust_rate,
            rust_mb,
            python_rate,
            mb / python.as_secs_f64(),
            rust_rate / python_rate,
            100.0 * rust_mb / md5,
            md5_bound_rate / python_rate,
        );
    };
    println!();
    println!(
        "{} Kinesis records, {:.1} MB of aggregates ({:.1} bytes per user record)",
        kinesis_records.len(),
        mb,
        aggregate_bytes as f64 / n as f64
    );
    println!(
        "single-core MD5 (md-5 crate, 64 MiB buffer): {md5:.0} MB/s = {md5_bound_rate:.0} user records/s at most"
    );
    println!();
    println!(
        "| direction   | Rust rec/s | Rust MB/s | Python rec/s | Py MB/s | ratio   | of MD5  | MD5 bound ÷ Py |"
    );
    println!(
        "|-------------|------------|-----------|--------------|---------|---------|---------|----------------|"
    );
    row("aggregate", aggregate_time, py.aggregate);
    row("deaggregate", deaggregate_time, py.deaggregate);
    println!();
    println!(
        "MB = 10^6 bytes of aggregated record data; ratio = Rust rec/s ÷ Python rec/s; \
         MD5 bound ÷ Py = the best ratio any single-core implementation could reach; \
         Rust: best of {REPEATS} runs, Python: best of {PYTHON_REPEATS}."
    );
}
