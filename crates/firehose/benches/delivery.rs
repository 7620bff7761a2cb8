//! Delivery benchmark (`cargo bench -p chief-firehose`): `chief-firehose`'s whole path —
//! consumer (fetch, leases, checkpoints) → buffers → objects — stream → S3 in memory, on
//! one core (a current-thread runtime), uncompressed and GZIP.
//!
//! `CHIEF_BENCH_RECORDS` records (default 200,000, rounded up so that every shard fills
//! whole 5 MiB objects) of `CHIEF_BENCH_RECORD_BYTES` bytes (default 512, a JSON line
//! like the taxi trips of seed 002, random letters as its text) are put round robin into
//! a 4-shard in-memory stream before the clock starts; the clock stops when every shard's
//! checkpoint reached its last record, which happens only after its objects are written.
//! The objects are then read back and their bytes compared with what was sent.

use std::io::Read as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chief_consumer::{LeaseStore, MemoryLeaseStore};
use chief_firehose::s3::Compression;
use chief_firehose::{FirehoseConfig, Parts};
use chief_sinks::elasticsearch::MemorySearchIndex;
use chief_sinks::object::{MemoryObjectSink, ObjectSink};
use chief_stream::{MemoryStreams, PutEntry, StreamClient};
use tokio_util::sync::CancellationToken;

const STREAM: &str = "TaxiTrips";
const SHARDS: u32 = 4;

fn count(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Record `n`: a JSON line of exactly `size` bytes (newline included).
fn record(n: usize, size: usize) -> Bytes {
    let head = format!(
        r#"{{"trip_id":{n},"vendor_id":{},"fare":{}.{:02},"note":""#,
        n % 7,
        n % 90,
        n % 100
    );
    let mut s = head.clone();
    let pad = size.saturating_sub(head.len() + 3);
    let mut x = n as u64 * 2_654_435_761 + 1;
    s.extend((0..pad).map(|_| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (b'a' + (x % 26) as u8) as char
    }));
    s.push_str("\"}\n");
    Bytes::from(s)
}

async fn put(streams: &MemoryStreams, records: &[Bytes]) {
    for (i, chunk) in records.chunks(500).enumerate() {
        let entries = chunk
            .iter()
            .enumerate()
            .map(|(j, data)| PutEntry {
                partition_key: format!("trip-{}", i * 500 + j),
                // Round robin over the shards (each owns a quarter of the hash range), so
                // that every shard fills whole objects and none waits for the interval.
                explicit_hash_key: Some(
                    ((u128::MAX / u128::from(SHARDS))
                        * ((i * 500 + j) as u128 % u128::from(SHARDS))
                        + 1)
                    .to_string(),
                ),
                data: data.clone(),
            })
            .collect();
        for result in streams.put_records(STREAM, entries).await.expect("put") {
            result.expect("entry");
        }
    }
}

async fn run(compression: Compression, records: &[Bytes]) {
    let streams = MemoryStreams::new(1);
    streams.create_stream(STREAM, SHARDS);
    put(&streams, records).await;
    let tips = chief_stream::shard_tips(&streams, STREAM)
        .await
        .expect("tips");
    let leases = MemoryLeaseStore::new("bench");
    let sink = Arc::new(MemoryObjectSink::new());
    let mut config = FirehoseConfig::default();
    config.delivery.name = "bench".into();
    config.consumer.stream = STREAM.into();
    config.consumer.table = "bench".into();
    config.consumer.poll_interval_ms = 10;
    config.consumer.idle_time_max_ms = 50;
    config.s3.bucket = "bench".into();
    config.s3.prefix = "Firehose/".into();
    config.s3.compression = compression;
    config.s3.buffering_interval_seconds = 300;
    let parts: Parts<_, _, _, MemorySearchIndex> = Parts {
        stream: streams.clone(),
        leases: leases.clone(),
        objects: Arc::clone(&sink),
        index: None,
        health: chief_config::health::Health::new(),
    };
    let token = CancellationToken::new();
    let started = Instant::now();
    let task = tokio::spawn(chief_firehose::run_with(config, parts, token.clone()));
    loop {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let leases = leases.list_leases().await.expect("leases");
        let done = tips.iter().all(|(shard, tip)| {
            leases.iter().any(|l| {
                &l.lease_key == shard
                    && !l.checkpoint.is_sentinel()
                    && chief_stream::compare_sequence_numbers(&l.checkpoint.sequence_number, tip)
                        .is_ge()
            })
        });
        if done {
            break;
        }
    }
    let elapsed = started.elapsed();
    token.cancel();
    task.await.expect("join").expect("delivery");

    // What is in the objects, against what was sent.
    let mut stored = 0usize;
    let mut bytes = 0usize;
    let mut lines = Vec::new();
    for meta in sink.list("Firehose/").await.expect("list") {
        let body = sink.get(&meta.key).await.expect("get").body;
        stored += body.len();
        let body = match compression {
            Compression::Uncompressed => body.to_vec(),
            Compression::Gzip => {
                let mut out = Vec::new();
                flate2::read::GzDecoder::new(&body[..])
                    .read_to_end(&mut out)
                    .expect("gunzip");
                out
            }
        };
        bytes += body.len();
        lines.extend(body.split_inclusive(|b| *b == b'\n').map(<[u8]>::to_vec));
    }
    let sent: usize = records.iter().map(Bytes::len).sum();
    lines.sort_unstable();
    let mut expected: Vec<Vec<u8>> = records.iter().map(|r| r.to_vec()).collect();
    expected.sort_unstable();
    assert!(
        lines == expected,
        "the objects hold exactly the records sent"
    );
    println!(
        "firehose memory {compression:?}: {} records, {:.1} MiB in {:.2}s = {:.1} MiB/s per core, {:.0} records/s; stored {:.1} MiB ({:.1}%)",
        records.len(),
        sent as f64 / 1048576.0,
        elapsed.as_secs_f64(),
        bytes as f64 / 1048576.0 / elapsed.as_secs_f64(),
        records.len() as f64 / elapsed.as_secs_f64(),
        stored as f64 / 1048576.0,
        100.0 * stored as f64 / bytes as f64,
    );
}

fn main() {
    let size = count("CHIEF_BENCH_RECORD_BYTES", 512);
    // Whole 5 MiB objects in every shard: the clock measures work, not the interval.
    let round = SHARDS as usize * (5 * 1024 * 1024 / size);
    let n = count("CHIEF_BENCH_RECORDS", 200_000).div_ceil(round) * round;
    let records: Vec<Bytes> = (0..n).map(|i| record(i, size)).collect();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run(Compression::Uncompressed, &records));
    runtime.block_on(run(Compression::Gzip, &records));
}
