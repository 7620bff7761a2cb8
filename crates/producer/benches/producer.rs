//! Producer benchmark (`cargo bench -p chief-producer`), on one core (a current-thread
//! runtime), with 100-byte records and 36-character partition keys:
//! 1. peak RSS while a stalled in-memory stream keeps a 256 MiB buffer full;
//! 2. user records/s into the in-memory Kinesis, aggregated (by `send_batch` and by `send`)
//!    and not, and the ratio of Kinesis records (what PutRecords bills) between the two;
//! 3. the end rate into the local Kinesis (`make stack-up`), aggregated, by `send_batch`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chief_aggregation::UserRecord;
use chief_config::aws::AwsClients;
use chief_config::local_stack::LocalStack;
use chief_producer::{BatchReceipt, Producer, ProducerConfig, RecordReceipt};
use chief_stream::{Faults, KinesisClient, MemoryStreams, StreamClient};
use tokio::sync::mpsc;

const DATA: usize = 100;

fn record(i: u64) -> UserRecord {
    // 36-character keys, like the UUIDs of orders.
    let key = format!(
        "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
        i as u32,
        i % 0xFFFF,
        i % 0xFFF,
        (i * 7) % 0xFFF,
        i.wrapping_mul(2_654_435_761) & 0xFFFF_FFFF_FFFF
    );
    let mut data = format!("{{\"orderid\":\"{key}\",\"n\":{i}}}").into_bytes();
    data.resize(DATA, b' ');
    UserRecord::new(key, data)
}

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<f64>().ok())
            })
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn fast_config(aggregation: bool) -> ProducerConfig {
    ProducerConfig {
        aggregation_enabled: aggregation,
        // The in-memory stream has no shard limits: lift the limiter so it measures the producer.
        rate_limit_percent: 1_000_000,
        ..ProducerConfig::default()
    }
}

/// How the bench hands records to the producer.
#[derive(Clone, Copy)]
enum Sending {
    /// `send`, one receipt per record.
    Each,
    /// `send_batch` of this many records, one receipt per batch.
    Batches(usize),
}

/// Outcomes counted: how many were put, and the failures by reason.
#[derive(Default)]
struct Tally {
    ok: u64,
    failed: std::collections::BTreeMap<String, u64>,
}

impl Tally {
    fn add(&mut self, outcome: &chief_producer::RecordOutcome) {
        match outcome {
            Ok(_) => self.ok += 1,
            Err(f) => *self.failed.entry(format!("{:?}", f.reason)).or_default() += 1,
        }
    }

    /// Every record put, or a clear failure naming why the others were not.
    fn assert_all_put(&self, n: u64) {
        assert!(
            self.ok == n,
            "{} of {n} records put; failed: {:?}",
            self.ok,
            self.failed
        );
    }
}

/// Sends `n` records and awaits every outcome (in a second task); returns records/s and
/// the outcomes' tally.
async fn run<C: StreamClient>(
    client: C,
    stream: &str,
    config: ProducerConfig,
    n: u64,
    sending: Sending,
) -> (f64, Tally) {
    let producer = Arc::new(
        Producer::start(client, stream, config)
            .await
            .expect("start"),
    );
    // Records are made before the clock starts: the figure is the producer's, not format!'s.
    let records: Vec<UserRecord> = (0..n).map(record).collect();
    let start = Instant::now();
    let tally = match sending {
        Sending::Each => {
            let (tx, mut rx) = mpsc::channel::<RecordReceipt>(100_000);
            let waiter = tokio::spawn(async move {
                let mut tally = Tally::default();
                while let Some(r) = rx.recv().await {
                    tally.add(&r.await);
                }
                tally
            });
            for r in records {
                let receipt = producer.send(r).await.expect("send");
                if tx.send(receipt).await.is_err() {
                    break;
                }
            }
            drop(tx);
            waiter.await.expect("waiter")
        }
        Sending::Batches(size) => {
            let (tx, mut rx) = mpsc::channel::<BatchReceipt>(1_000);
            let waiter = tokio::spawn(async move {
                let mut tally = Tally::default();
                while let Some(r) = rx.recv().await {
                    for o in r.await {
                        tally.add(&o);
                    }
                }
                tally
            });
            let mut records = records.into_iter();
            loop {
                let batch: Vec<UserRecord> = records.by_ref().take(size).collect();
                if batch.is_empty() {
                    break;
                }
                let receipt = producer.send_batch(batch).await.expect("send_batch");
                if tx.send(receipt).await.is_err() {
                    break;
                }
            }
            drop(tx);
            waiter.await.expect("waiter")
        }
    };
    let elapsed = start.elapsed();
    if let Ok(p) = Arc::try_unwrap(producer) {
        p.shutdown().await;
    }
    (n as f64 / elapsed.as_secs_f64(), tally)
}

fn phase(name: &str) -> bool {
    std::env::var("CHIEF_BENCH_PHASES").map_or(true, |p| p.split(',').any(|x| x == name))
}

fn main() {
    let n: u64 = std::env::var("CHIEF_BENCH_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        if phase("rss") {
            rss_phase().await;
        }
        if phase("memory") {
            memory_phase(n).await;
        }
        if phase("local") {
            local_phase().await;
        }
    });
}

/// 1. Peak RSS at a 256 MiB bound: stall the stream and fill the buffer.
async fn rss_phase() {
    let rss_before = peak_rss_mib();
    let memory = MemoryStreams::new(1);
    memory.create_stream("Bench", 4);
    let bound = 256 * 1024 * 1024;
    let config = ProducerConfig {
        buffer_max_bytes: bound,
        buffer_max_records: 100_000_000,
        ..fast_config(true)
    };
    let producer = Arc::new(
        Producer::start(memory.clone(), "Bench", config)
            .await
            .expect("start"),
    );
    memory.set_faults(Faults {
        stall: true,
        ..Faults::default()
    });
    let filler = {
        let producer = producer.clone();
        tokio::spawn(async move {
            let mut receipts = 0u64;
            for i in 0..3_000_000u64 {
                match producer.send(record(i)).await {
                    Ok(r) => drop(r),
                    Err(_) => break,
                }
                receipts += 1;
            }
            receipts
        })
    };
    let mut last = 0;
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let p = producer.stats().pending;
        if p == last {
            break;
        }
        last = p;
    }
    let full = producer.stats().pending;
    let rss_full = peak_rss_mib();
    memory.set_faults(Faults::default());
    let sent = filler.await.expect("filler");
    if let Ok(p) = Arc::try_unwrap(producer) {
        p.shutdown().await;
    }
    let per_record = DATA + 36 + chief_producer::RECORD_OVERHEAD_BYTES;
    println!(
        "buffer bound 256 MiB: {full} records buffered while stalled ({:.0} MiB counted), peak RSS {rss_full:.0} MiB (process before: {rss_before:.0} MiB); then {sent} records put",
        (full as usize * per_record) as f64 / 1048576.0
    );
}

/// Records per `send_batch` call in the batch runs.
const BATCH: usize = 1_000;

/// Phase 2, speed and billing ratio on the in-memory Kinesis: aggregated by `send_batch`,
/// aggregated by `send`, not aggregated by `send`. `CHIEF_BENCH_MEMORY=batch` runs only the
/// first (for profiling).
async fn memory_phase(n: u64) {
    let only_batch = std::env::var("CHIEF_BENCH_MEMORY").is_ok_and(|v| v == "batch");
    let batch_stream = MemoryStreams::new(4);
    batch_stream.create_stream("Bench", 4);
    let (batch_rate, ok) = run(
        batch_stream.clone(),
        "Bench",
        fast_config(true),
        n,
        Sending::Batches(BATCH),
    )
    .await;
    ok.assert_all_put(n);
    println!("in-memory Kinesis, 1 core, {n} records of {DATA} B:");
    println!(
        "  aggregated, send_batch({BATCH}): {batch_rate:>10.0} user records/s ({:.1} MB/s), {} Kinesis records",
        batch_rate * DATA as f64 / 1e6,
        batch_stream.stats().entries_written
    );
    if only_batch {
        return;
    }
    let agg_stream = MemoryStreams::new(2);
    agg_stream.create_stream("Bench", 4);
    let (agg_rate, ok) = run(
        agg_stream.clone(),
        "Bench",
        fast_config(true),
        n,
        Sending::Each,
    )
    .await;
    ok.assert_all_put(n);
    let plain_stream = MemoryStreams::new(3);
    plain_stream.create_stream("Bench", 4);
    let (plain_rate, ok) = run(
        plain_stream.clone(),
        "Bench",
        fast_config(false),
        n,
        Sending::Each,
    )
    .await;
    ok.assert_all_put(n);
    let (agg_records, plain_records) = (
        agg_stream.stats().entries_written,
        plain_stream.stats().entries_written,
    );
    println!(
        "  aggregated, send:            {agg_rate:>10.0} user records/s ({:.1} MB/s), {agg_records} Kinesis records",
        agg_rate * DATA as f64 / 1e6
    );
    println!(
        "  not aggregated, send:        {plain_rate:>10.0} user records/s ({:.1} MB/s), {plain_records} Kinesis records",
        plain_rate * DATA as f64 / 1e6
    );
    println!(
        "  Kinesis records per user record: {:.5} aggregated vs 1 (billing ratio 1:{:.0})",
        agg_records as f64 / n as f64,
        n as f64 / agg_records as f64
    );
}

/// 3. The local Kinesis.
async fn local_phase() {
    let stack = LocalStack::require();
    let clients = AwsClients::new(&stack.aws).await;
    let k = clients.kinesis();
    let name = format!("bench-{}", uuid::Uuid::new_v4().simple());
    let client = KinesisClient::new(k.clone());
    client.create_stream(&name, 4).await.expect("CreateStream");
    client
        .wait_until_active(&name, Duration::from_secs(60))
        .await
        .expect("ACTIVE");
    let n = 200_000;
    let (rate, ok) = run(
        KinesisClient::new(k.clone()),
        &name,
        ProducerConfig {
            // The default buffer holds all 200,000 records, and the emulator takes ~40 s
            // for them: with the default 30 s TTL the last ones would expire in the buffer.
            record_ttl_ms: 300_000,
            ..ProducerConfig::default()
        },
        n,
        Sending::Batches(BATCH),
    )
    .await;
    ok.assert_all_put(n);
    println!(
        "local Kinesis (kinesis-local), 4 shards, default config but a 300 s TTL: {rate:.0} user records/s end to end ({n} records)"
    );
    let _ = k.delete_stream().stream_name(&name).send().await;
}
