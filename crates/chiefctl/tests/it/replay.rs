//! `chiefctl replay` against the local stack (`make stack-up`): seed 004's events from two
//! S3 objects, out of time order within and across them, are sent to a 1-shard stream in
//! the order of their `orderDateTime`, starting exactly at `--start-at` (the first event
//! sent is the first at or after it), each with an ingestion time, keyed by `orderId`;
//! paced by `--speedup`; a line that is not an event goes to the failed file. With
//! `--aggregate`, every event once, in KPL aggregates of the shard that owns its key.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;
use chief_config::aws::AwsClients;
use chief_config::local_stack::{LocalStack, workspace_root};
use chief_stream::{KinesisClient, StreamClient, read_all};

fn event(order: u64, time_ms: i64, kind: &str) -> serde_json::Value {
    let time = chrono::DateTime::from_timestamp_millis(time_ms)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
        .unwrap_or_default();
    serde_json::json!({"orderId": order, "orderDateTime": time, "recordType": kind})
}

async fn records(client: &KinesisClient, stream: &str) -> Vec<serde_json::Value> {
    read_all(client, stream)
        .await
        .expect("the stream")
        .into_iter()
        .map(|(_, r)| {
            let mut v: serde_json::Value = serde_json::from_slice(&r.data).expect("JSON");
            v["partitionKey"] = serde_json::Value::String(r.partition_key.clone());
            v
        })
        .collect()
}

/// One test's bucket, holding its events under `events/` (one object per body), and its
/// empty stream.
struct Fixture {
    bucket: String,
    stream: String,
    kinesis: KinesisClient,
    /// Where the replay writes what it did not send.
    failed: PathBuf,
}

impl Fixture {
    async fn new(objects: &[String], shards: i32) -> Self {
        let stack = LocalStack::require();
        let clients = AwsClients::new(&stack.aws).await;
        let id = uuid::Uuid::new_v4().simple().to_string()[..10].to_owned();
        let bucket = format!("chief-replay-{id}");
        let s3 = clients.s3();
        s3.create_bucket()
            .bucket(&bucket)
            .send()
            .await
            .expect("CreateBucket");
        for (i, body) in objects.iter().enumerate() {
            s3.put_object()
                .bucket(&bucket)
                .key(format!("events/part-{i}.json"))
                .body(ByteStream::from(body.clone().into_bytes()))
                .send()
                .await
                .expect("PutObject");
        }
        let kinesis = KinesisClient::new(clients.kinesis());
        let stream = format!("OrdersReplay-{id}");
        kinesis
            .create_stream(&stream, shards)
            .await
            .expect("CreateStream");
        kinesis
            .wait_until_active(&stream, Duration::from_secs(60))
            .await
            .expect("ACTIVE");
        let failed = std::env::temp_dir().join(format!("chief-replay-failed-{id}.jsonl"));
        Self {
            bucket,
            stream,
            kinesis,
            failed,
        }
    }

    /// `chiefctl replay` of the bucket's events to the stream, with `args` besides.
    fn replay(&self, args: &[&str]) -> std::process::Output {
        Command::new(env!("CARGO_BIN_EXE_chiefctl"))
            .args([
                "replay",
                "--bucket",
                &self.bucket,
                "--prefix",
                "events/",
                "--stream",
                &self.stream,
            ])
            .args(args)
            .arg("--failed")
            .arg(&self.failed)
            .arg("--config")
            .arg(workspace_root().join("config/local.toml"))
            .output()
            .expect("run chiefctl replay")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_sends_in_time_order_from_start_at_exactly_paced() {
    // 200 orders, 20 ms apart from t0; their two items up to 200 ms before or after; the
    // two objects hold alternate orders, each shuffled in time.
    let t0 = 1_767_225_600_000i64;
    let mut objects = [String::new(), String::new()];
    let mut all = Vec::new();
    for n in 0..200u64 {
        let time = t0 + i64::try_from(n).unwrap_or(0) * 20;
        let offsets = [(n * 37 % 200) as i64 - 100, (n * 91 % 400) as i64 - 200];
        let mut lines = vec![event(n, time, "Order")];
        for o in offsets {
            lines.push(event(n, time + o, "OrderItem"));
        }
        for line in lines.into_iter().rev() {
            objects[(n % 2) as usize].push_str(&format!("{line}\n"));
            all.push(line);
        }
    }
    objects[1].push_str("not an event\n");
    let f = Fixture::new(&objects, 1).await;
    // Start at an item's time, between orders: the first event sent is exactly it.
    let mut times: Vec<i64> = all
        .iter()
        .filter_map(|e| e["orderDateTime"].as_str())
        .filter_map(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.timestamp_millis())
        .collect();
    times.sort_unstable();
    let start_at = times[times.len() / 3];
    let start_text = chrono::DateTime::from_timestamp_millis(start_at)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
        .unwrap_or_default();
    let expected: Vec<i64> = times.iter().copied().filter(|t| *t >= start_at).collect();
    let span_ms = expected.last().unwrap_or(&0) - expected.first().unwrap_or(&0);
    let started = Instant::now();
    let out = f.replay(&[
        "--timestamp-attribute",
        "orderDateTime",
        "--partition-key-attribute",
        "orderId",
        "--speedup",
        "2",
        "--start-at",
        &start_text,
    ]);
    let elapsed = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // The one line that is not an event makes it exit 1, written to the failed file.
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("1 events not sent"), "{stderr}");
    let failed_lines = std::fs::read_to_string(&f.failed).expect("failed file");
    assert_eq!(failed_lines.lines().count(), 1, "{failed_lines}");
    assert!(failed_lines.contains("not an event"), "{failed_lines}");
    let _ = std::fs::remove_file(&f.failed);
    assert!(
        elapsed.as_millis() as i64 >= span_ms / 2 - 200,
        "paced at 2×: {span_ms} ms of events took {elapsed:?}"
    );

    let got = records(&f.kinesis, &f.stream).await;
    let got_times: Vec<i64> = got
        .iter()
        .filter_map(|e| e["orderDateTime"].as_str())
        .filter_map(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.timestamp_millis())
        .collect();
    assert_eq!(
        got_times.first(),
        Some(&start_at),
        "starts exactly at --start-at"
    );
    assert_eq!(got_times, expected, "every event from it, in time order");
    for e in &got {
        assert_eq!(
            e["partitionKey"].as_str(),
            Some(e["orderId"].to_string().as_str())
        );
        let ingestion = e["ingestionTime"].as_str().expect("ingestionTime");
        assert!(
            chrono::DateTime::parse_from_rfc3339(ingestion).is_ok(),
            "{ingestion}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_aggregate_puts_every_event_once_in_kpl_aggregates_of_its_shard() {
    // 300 orders of two items, 10 ms apart, the file in reverse time order.
    let t0 = 1_767_225_600_000i64;
    let mut events = Vec::new();
    for n in 0..300u64 {
        let time = t0 + i64::try_from(n).unwrap_or(0) * 10;
        events.push(event(n, time, "Order"));
        events.push(event(n, time + 1, "OrderItem"));
        events.push(event(n, time + 2, "OrderItem"));
    }
    let body: String = events.iter().rev().map(|e| format!("{e}\n")).collect();
    let f = Fixture::new(&[body], 2).await;
    let out = f.replay(&[
        "--partition-key-attribute",
        "orderId",
        "--speedup",
        "0",
        "--aggregate",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_file(&f.failed);

    let ranges: std::collections::HashMap<String, (u128, u128)> = f
        .kinesis
        .list_shards(&f.stream)
        .await
        .expect("ListShards")
        .into_iter()
        .map(|s| (s.shard_id, (s.starting_hash_key, s.ending_hash_key)))
        .collect();
    let stored = read_all(&f.kinesis, &f.stream).await.expect("the stream");
    let mut got: Vec<serde_json::Value> = Vec::new();
    let mut largest = 0;
    for (shard, record) in &stored {
        let (low, high) = ranges[shard];
        let mut n = 0;
        for user in chief_aggregation::deaggregate(chief_aggregation::UserRecord {
            partition_key: record.partition_key.clone(),
            explicit_hash_key: None,
            data: record.data.clone(),
        }) {
            n += 1;
            let hash = chief_aggregation::partition_key_hash(&user.record.partition_key);
            assert!(
                (low..=high).contains(&hash),
                "an event keyed {} in an aggregate on {shard}, which does not own its key",
                user.record.partition_key
            );
            let v: serde_json::Value = serde_json::from_slice(&user.record.data).expect("JSON");
            assert_eq!(
                v["orderId"].to_string(),
                user.record.partition_key,
                "keyed by orderId"
            );
            got.push(v);
        }
        largest = largest.max(n);
    }
    assert!(
        largest > 1 && stored.len() < events.len(),
        "aggregated: {} Kinesis records for {} events, the largest of {largest}",
        stored.len(),
        events.len()
    );
    // Every event exactly once, and each order's three in time order (one shard each).
    let key = |e: &serde_json::Value| {
        (
            e["orderId"].as_u64().unwrap_or(u64::MAX),
            e["orderDateTime"].as_str().unwrap_or_default().to_owned(),
        )
    };
    let mut want: Vec<_> = events.iter().map(key).collect();
    want.sort();
    let mut all: Vec<_> = got.iter().map(key).collect();
    all.sort();
    assert_eq!(all, want, "every event once");
    let mut per_order: std::collections::HashMap<u64, Vec<String>> = Default::default();
    for (order, time) in got.iter().map(key) {
        per_order.entry(order).or_default().push(time);
    }
    for (order, times) in per_order {
        let mut sorted = times.clone();
        sorted.sort();
        assert_eq!(times, sorted, "order {order}'s events in time order");
    }
}
