//! Agent benchmark (`cargo bench -p chief-agent`): `chief-agent`'s whole path — tail →
//! records → conversion → producer → an in-memory 4-shard stream — on one core (a
//! current-thread runtime), for `SINGLELINE` (no conversion: the lines as read),
//! `CSVTOJSON` (seed 002's 17 taxi columns) and `LOGTOJSON` (`COMBINEDAPACHELOG`, seed
//! 001's lines); and the peak RSS while tailing 100 files.
//!
//! `CHIEF_BENCH_LINES` lines per mode (default 200,000), written to a file before the
//! clock starts; the clock stops when the stream holds one record per line. The producer's
//! per-shard rate limit is lifted: the figure is the agent's own cost. Every record is
//! then checked: as many as lines, each a JSON object with the expected fields.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chief_agent::config::AgentConfig;
use chief_agent::{AgentSettings, run_with};
use chief_datagen::lines::{ApacheLog, TAXI_COLUMNS, TaxiCsv};
use chief_stream::MemoryStreams;
use tokio_util::sync::CancellationToken;

const STREAM: &str = "Lines";

/// The benchmark's flows send to Kinesis only.
#[derive(Clone)]
struct NoFirehose;

impl chief_agent::firehose::FirehoseApi for NoFirehose {
    async fn check(&self, stream: &str) -> Result<(), chief_agent::firehose::FirehoseFailure> {
        Err(chief_agent::firehose::FirehoseFailure {
            code: "ResourceNotFoundException".into(),
            message: format!("no delivery stream {stream} in this benchmark"),
            fatal: true,
        })
    }

    async fn put_record_batch(
        &self,
        stream: &str,
        _records: &[bytes::Bytes],
    ) -> Result<
        Vec<Option<chief_agent::firehose::FirehoseFailure>>,
        chief_agent::firehose::FirehoseFailure,
    > {
        Err(chief_agent::firehose::FirehoseFailure {
            code: "ResourceNotFoundException".into(),
            message: format!("no delivery stream {stream} in this benchmark"),
            fatal: true,
        })
    }
}

fn count(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn write_lines(path: &Path, lines: impl Iterator<Item = String>) -> usize {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).expect("file"));
    let mut bytes = 0;
    for line in lines {
        bytes += line.len() + 1;
        writeln!(f, "{line}").expect("write");
    }
    f.flush().expect("flush");
    bytes
}

/// Runs the agent on `pattern` until the stream holds `expected` records; the time taken.
async fn run(
    dir: &Path,
    pattern: &str,
    options: serde_json::Value,
    expected: u64,
) -> (Duration, MemoryStreams) {
    let streams = MemoryStreams::new(1);
    streams.create_stream(STREAM, 4);
    let json = serde_json::json!({
        "checkpointFile": dir.join(format!("checkpoints-{expected}-{}", options.to_string().len())),
        "flows": [{
            "filePattern": pattern,
            "kinesisStream": STREAM,
            "initialPosition": "START_OF_FILE",
            "maxBufferAgeMillis": 1000,
            "dataProcessingOptions": options,
        }]
    });
    let agent = AgentConfig::parse(Path::new("bench.json"), &json.to_string()).expect("agent.json");
    let mut settings = AgentSettings::default();
    settings.producer.rate_limit_percent = 1_000_000;
    let token = CancellationToken::new();
    let started = Instant::now();
    let task = tokio::spawn(run_with(
        agent,
        settings,
        streams.clone(),
        NoFirehose,
        token.clone(),
        chief_config::health::Health::new(),
    ));
    loop {
        tokio::time::sleep(Duration::from_millis(5)).await;
        if streams.stats().entries_written >= expected {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(600), "stalled");
    }
    let elapsed = started.elapsed();
    token.cancel();
    task.await.expect("join").expect("agent");
    (elapsed, streams)
}

fn records(streams: &MemoryStreams) -> Vec<bytes::Bytes> {
    streams
        .shards(STREAM)
        .iter()
        .flat_map(|s| streams.records(STREAM, &s.shard_id))
        .map(|r| r.data)
        .collect()
}

async fn modes(dir: &Path, n: usize) {
    let csv = dir.join("taxi.csv");
    let csv_bytes = write_lines(&csv, TaxiCsv::new(1, chief_datagen::DEFAULT_START).take(n));
    let log = dir.join("access_log");
    let log_bytes = write_lines(
        &log,
        ApacheLog::new(1, chief_datagen::DEFAULT_START).take(n),
    );
    let raw = dir.join("raw.log");
    let raw_bytes = write_lines(
        &raw,
        ApacheLog::new(2, chief_datagen::DEFAULT_START).take(n),
    );
    let cases: [(&str, &PathBuf, usize, serde_json::Value, &[&str]); 3] = [
        (
            "SINGLELINE (none)",
            &raw,
            raw_bytes,
            serde_json::json!([]),
            &[],
        ),
        (
            "CSVTOJSON",
            &csv,
            csv_bytes,
            serde_json::json!([{"optionName": "CSVTOJSON", "customFieldNames": TAXI_COLUMNS}]),
            &["VendorID", "total_amount"],
        ),
        (
            "LOGTOJSON combined",
            &log,
            log_bytes,
            serde_json::json!([{"optionName": "LOGTOJSON", "logFormat": "COMBINEDAPACHELOG"}]),
            &["host", "agent"],
        ),
    ];
    for (name, path, bytes, options, fields) in cases {
        let (elapsed, streams) = run(dir, &path.display().to_string(), options, n as u64).await;
        let out = records(&streams);
        assert_eq!(out.len(), n, "{name}: one record per line");
        for data in &out {
            assert_eq!(
                data.last(),
                Some(&b'\n'),
                "{name}: records end with a newline"
            );
            if !fields.is_empty() {
                let v: serde_json::Value = serde_json::from_slice(data).expect("JSON");
                for f in fields {
                    assert!(v[*f].is_string(), "{name}: {f} in {v}");
                }
            }
        }
        println!(
            "agent {name}: {n} lines ({:.1} MiB) in {:.2}s = {:.0} lines/s per core ({:.1} MiB/s)",
            bytes as f64 / 1048576.0,
            elapsed.as_secs_f64(),
            n as f64 / elapsed.as_secs_f64(),
            bytes as f64 / 1048576.0 / elapsed.as_secs_f64()
        );
    }
}

async fn many_files(dir: &Path) {
    let files = 100;
    let per = count("CHIEF_BENCH_LINES_PER_FILE", 500);
    let sub = dir.join("many");
    std::fs::create_dir_all(&sub).expect("dir");
    for i in 0..files {
        write_lines(
            &sub.join(format!("access_log_{i:03}")),
            ApacheLog::new(i as u64, chief_datagen::DEFAULT_START).take(per),
        );
    }
    let before = peak_rss_kib();
    let (elapsed, streams) = run(
        dir,
        &format!("{}/access_log_*", sub.display()),
        serde_json::json!([]),
        (files * per) as u64,
    )
    .await;
    let stored = streams.stats().bytes_written;
    println!(
        "agent tailing {files} files ({} lines) in {:.2}s: peak RSS {:.1} MiB (before {:.1} MiB; the in-memory stream holds {:.1} MiB of it)",
        files * per,
        elapsed.as_secs_f64(),
        peak_rss_kib() as f64 / 1024.0,
        before as f64 / 1024.0,
        stored as f64 / 1048576.0
    );
}

fn main() {
    let dir = std::env::temp_dir().join(format!("chief-agent-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    // Peak RSS first, before the big runs raise the high-water mark.
    runtime.block_on(many_files(&dir));
    runtime.block_on(modes(&dir, count("CHIEF_BENCH_LINES", 200_000)));
    let _ = std::fs::remove_dir_all(&dir);
}
