//! `chiefctl replay` (seed 004, as amazon-kinesis-replay does): JSON events from the S3
//! objects under a prefix → a stream, in the order of a timestamp attribute, paced by it.
//!
//! Every object under `--prefix` is read (one JSON object a line); the events are sorted by
//! `--timestamp-attribute` (RFC 3339, or epoch milliseconds), those before `--start-at` left
//! out — the first event sent is the first one at or after it — and sent through chief's
//! producer (one event a record, sent within 20 ms; with `--aggregate`, KPL aggregates of
//! the events bound for the same shard, which a stream takes far more of) with the partition key
//! `--partition-key-attribute` (random when absent), each with an ingestion timestamp
//! added (`--ingestion-attribute`, RFC 3339 with milliseconds) for latency measurement.
//! Paced: an event goes when as much wall time has passed since the first as event time
//! divided by `--speedup`; `--speedup 0` sends as fast as possible. A progress line every
//! second; lines that are not events and records the stream refused for good go to
//! `--failed` (JSON lines with the reason); exit 1 if there are any.
//!
//! The events are held in memory while they are sorted (about their size in bytes).

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use chief_aggregation::UserRecord;
use chief_config::aws::AwsClients;
use chief_producer::{Producer, ProducerConfig};
use chief_stream::KinesisClient;

use crate::reconcile::load_config;

#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// The bucket holding the events.
    #[arg(long)]
    pub bucket: String,
    /// The key prefix of the objects to replay.
    #[arg(long, default_value = "")]
    pub prefix: String,
    /// The stream.
    #[arg(long)]
    pub stream: String,
    /// The attribute holding each event's time (RFC 3339, or epoch milliseconds).
    #[arg(long, default_value = "orderDateTime")]
    pub timestamp_attribute: String,
    /// The attribute whose value is the partition key (random when absent).
    #[arg(long)]
    pub partition_key_attribute: Option<String>,
    /// Event time runs this many times faster than wall time; 0: as fast as possible.
    #[arg(long, default_value_t = 1.0)]
    pub speedup: f64,
    /// Start at this event time (RFC 3339): the first event sent is the first one at or
    /// after it.
    #[arg(long)]
    pub start_at: Option<String>,
    /// The attribute added to each event with the time it was sent (RFC 3339, ms).
    #[arg(long, default_value = "ingestionTime")]
    pub ingestion_attribute: String,
    /// KPL-aggregate the events per predicted shard (many events a Kinesis record);
    /// without it, one event a record, as amazon-kinesis-replay sends them.
    #[arg(long)]
    pub aggregate: bool,
    /// Where lines that are not events, and records the stream refused, are written.
    #[arg(long, default_value = "replay-failed.jsonl")]
    pub failed: PathBuf,
    /// Config files whose [aws] section is used (e.g. config/local.toml).
    #[arg(long = "config")]
    pub config: Vec<PathBuf>,
}

/// Runs the subcommand.
pub fn main(args: ReplayArgs) -> ExitCode {
    let result = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the runtime")
        .and_then(|rt| rt.block_on(run(&args)));
    match result {
        Ok(0) => ExitCode::SUCCESS,
        Ok(failed) => {
            eprintln!(
                "chiefctl replay: {failed} events not sent, written to {}",
                args.failed.display()
            );
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("chiefctl replay: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// An event's time in milliseconds since the epoch: RFC 3339 text or a number.
pub fn event_time(value: &serde_json::Value) -> Option<i64> {
    match value {
        serde_json::Value::String(s) => chrono::DateTime::parse_from_rfc3339(s)
            .ok()
            .map(|t| t.timestamp_millis()),
        serde_json::Value::Number(n) => n.as_i64(),
        _ => None,
    }
}

fn rfc3339_ms(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
        .unwrap_or_default()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

struct Event {
    time: i64,
    /// Object and line number: the order of events with the same time.
    origin: (usize, usize),
    value: serde_json::Map<String, serde_json::Value>,
}

async fn run(args: &ReplayArgs) -> anyhow::Result<u64> {
    anyhow::ensure!(
        args.speedup >= 0.0 && args.speedup.is_finite(),
        "--speedup must be 0 (as fast as possible) or more"
    );
    let start_at = args
        .start_at
        .as_deref()
        .map(|s| {
            chrono::DateTime::parse_from_rfc3339(s)
                .map(|t| t.timestamp_millis())
                .with_context(|| format!("--start-at {s}: not an RFC 3339 time"))
        })
        .transpose()?;
    let config = load_config(&args.config)?;
    let clients = AwsClients::new(&config.aws).await;
    let s3 = clients.s3();
    let mut failed_out = std::io::BufWriter::new(
        std::fs::File::create(&args.failed)
            .with_context(|| format!("creating {}", args.failed.display()))?,
    );
    let mut failed = 0u64;
    let mut fail = |line: &[u8], why: &str| -> anyhow::Result<()> {
        failed += 1;
        let entry = serde_json::json!({"error": why, "data": String::from_utf8_lossy(line)});
        writeln!(failed_out, "{entry}").context("writing the failed file")
    };

    // Every event of every object, sorted by time.
    let mut keys = Vec::new();
    let mut token = None;
    loop {
        let page = s3
            .list_objects_v2()
            .bucket(&args.bucket)
            .prefix(&args.prefix)
            .set_continuation_token(token)
            .send()
            .await
            .with_context(|| format!("listing s3://{}/{}", args.bucket, args.prefix))?;
        keys.extend(
            page.contents()
                .iter()
                .filter_map(|o| o.key().map(str::to_owned)),
        );
        match page.next_continuation_token {
            Some(t) => token = Some(t),
            None => break,
        }
    }
    anyhow::ensure!(
        !keys.is_empty(),
        "no object under s3://{}/{}",
        args.bucket,
        args.prefix
    );
    let mut events = Vec::new();
    for (o, key) in keys.iter().enumerate() {
        let body = s3
            .get_object()
            .bucket(&args.bucket)
            .key(key)
            .send()
            .await
            .with_context(|| format!("reading s3://{}/{key}", args.bucket))?
            .body
            .collect()
            .await
            .with_context(|| format!("reading s3://{}/{key}", args.bucket))?
            .into_bytes();
        for (n, line) in body.split(|b| *b == b'\n').enumerate() {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let value = match serde_json::from_slice::<serde_json::Value>(line) {
                Ok(serde_json::Value::Object(map)) => map,
                _ => {
                    fail(line, &format!("{key} line {}: not a JSON object", n + 1))?;
                    continue;
                }
            };
            let Some(time) = value.get(&args.timestamp_attribute).and_then(event_time) else {
                fail(
                    line,
                    &format!(
                        "{key} line {}: no time in `{}`",
                        n + 1,
                        args.timestamp_attribute
                    ),
                )?;
                continue;
            };
            if start_at.is_some_and(|s| time < s) {
                continue;
            }
            events.push(Event {
                time,
                origin: (o, n),
                value,
            });
        }
    }
    events.sort_by_key(|e| (e.time, e.origin));
    let total = events.len();
    eprintln!(
        "chiefctl replay: {total} events from {} objects, {} → {}",
        keys.len(),
        events
            .first()
            .map(|e| rfc3339_ms(e.time))
            .unwrap_or_default(),
        events
            .last()
            .map(|e| rfc3339_ms(e.time))
            .unwrap_or_default(),
    );

    let producer = Producer::start(
        KinesisClient::new(clients.kinesis()),
        args.stream.clone(),
        ProducerConfig {
            aggregation_enabled: args.aggregate,
            record_max_buffered_time_ms: 20,
            ..ProducerConfig::default()
        },
    )
    .await
    .with_context(|| format!("starting the producer on {}", args.stream))?;
    let first_time = events.first().map_or(0, |e| e.time);
    let started = tokio::time::Instant::now();
    let mut last_report = Instant::now();
    let mut receipts = Vec::with_capacity(total);
    for (i, mut event) in events.into_iter().enumerate() {
        if args.speedup > 0.0 {
            let offset_ms = (event.time - first_time) as f64 / args.speedup;
            tokio::time::sleep_until(
                started + Duration::from_secs_f64(offset_ms.max(0.0) / 1000.0),
            )
            .await;
        }
        let key = args
            .partition_key_attribute
            .as_ref()
            .and_then(|a| event.value.get(a))
            .map_or_else(
                || format!("{:032x}", rand_key(i, event.time)),
                |v| match v {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                },
            );
        event.value.insert(
            args.ingestion_attribute.clone(),
            serde_json::Value::String(rfc3339_ms(now_ms())),
        );
        let data = serde_json::to_vec(&event.value).context("encoding an event")?;
        let receipt = producer
            .send(UserRecord {
                partition_key: key,
                explicit_hash_key: None,
                data: Bytes::from(data),
            })
            .await
            .map_err(|e| anyhow::anyhow!("the producer refused a record: {e}"))?;
        receipts.push(receipt);
        if last_report.elapsed() >= Duration::from_secs(1) {
            last_report = Instant::now();
            let secs = started.elapsed().as_secs_f64().max(0.001);
            eprintln!(
                "chiefctl replay: {}/{total} sent ({:.0}/s), event time {}",
                i + 1,
                (i + 1) as f64 / secs,
                rfc3339_ms(event.time)
            );
        }
    }
    producer.flush().await;
    let mut sent = 0u64;
    for receipt in receipts {
        match receipt.await {
            Ok(_) => sent += 1,
            Err(failure) => {
                let data = failure
                    .record
                    .as_ref()
                    .map(|r| r.data.to_vec())
                    .unwrap_or_default();
                fail(&data, &format!("not put: {:?}", failure.reason))?;
            }
        }
    }
    producer.shutdown().await;
    failed_out.flush().context("writing the failed file")?;
    eprintln!(
        "chiefctl replay: {sent} of {total} events sent in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(failed)
}

/// A partition key spread over the hash key space, deterministic per event.
fn rand_key(i: usize, time: i64) -> u128 {
    let mut x = (i as u128) ^ ((time as u128) << 64) ^ 0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c834;
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd_c4ce_b9fe_1a85_ec53);
    x ^= x >> 29;
    x
}
