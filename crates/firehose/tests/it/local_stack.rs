//! `chief-firehose` on the local stack (`make stack-up`): real Kinesis (kinesis-local),
//! DynamoDB leases and S3 (moto), and an Elasticsearch stand-in speaking the real wire.
//! Each test makes its own stream, bucket and lease table. What is in S3 is read back and
//! checked against the records sent, not against the delivery's counters.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use chief_config::aws::AwsClients;
use chief_config::health::Health;
use chief_config::local_stack::LocalStack;
use chief_consumer::{DynamoDbLeaseStore, LeaseStore};
use chief_es_standin::RunningStandin;
use chief_es_standin::{Faults, Standin, StandinConfig};
use chief_firehose::elasticsearch::{BackupMode, IndexRotation};
use chief_firehose::s3::{Compression, Incoming, S3Settings, ShardS3Delivery};
use chief_firehose::{DestinationKind, FirehoseConfig, Parts};
use chief_sinks::batch::RecordPosition;
use chief_sinks::elasticsearch::ElasticsearchIndex;
use chief_sinks::object::S3ObjectSink;
use chief_stream::{KinesisClient, PutEntry, PutSuccess, StreamClient};
use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

struct Env {
    stack: LocalStack,
    clients: AwsClients,
    suffix: String,
    bucket: String,
}

async fn env() -> Env {
    // Logs on failure: `RUST_LOG=info cargo test -p chief-firehose --test it local_stack::`.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let stack = LocalStack::require();
    let clients = AwsClients::new(&stack.aws).await;
    let suffix = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
    let bucket = format!("chief-firehose-{suffix}");
    clients
        .s3()
        .create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .expect("CreateBucket");
    Env {
        stack,
        clients,
        suffix,
        bucket,
    }
}

fn utc_now() -> DateTime<Utc> {
    DateTime::<Utc>::from(std::time::SystemTime::now())
}

/// One stored object.
#[derive(Debug, Clone)]
struct Stored {
    key: String,
    body: Bytes,
    last_modified: i64,
}

impl Env {
    async fn stream(&self, name: &str, shards: i32) -> String {
        let kinesis = KinesisClient::new(self.clients.kinesis());
        let stream = format!("{name}-{}", self.suffix);
        kinesis
            .create_stream(&stream, shards)
            .await
            .expect("CreateStream");
        kinesis
            .wait_until_active(&stream, Duration::from_secs(60))
            .await
            .expect("stream ACTIVE");
        stream
    }

    async fn delete_stream(&self, stream: &str) {
        // kinesis-local has a shard limit across streams.
        let _ = self
            .clients
            .kinesis()
            .delete_stream()
            .stream_name(stream)
            .send()
            .await;
    }

    fn config(&self, stream: &str, name: &str) -> FirehoseConfig {
        let mut c = FirehoseConfig {
            aws: self.stack.aws.clone(),
            ..FirehoseConfig::default()
        };
        c.delivery.name = name.to_owned();
        c.consumer.stream = stream.to_owned();
        c.consumer.table = format!("chief-firehose-{name}-{}", self.suffix);
        c.consumer.failover_time_ms = 3_000;
        c.consumer.lease_taking_interval_ms = 500;
        c.consumer.shard_sync_interval_ms = 2_000;
        c.consumer.poll_interval_ms = 100;
        c.consumer.idle_time_max_ms = 200;
        c.s3.bucket = self.bucket.clone();
        c
    }

    /// Puts `records` in order (500 a call, failed entries again), one partition key each;
    /// where each landed.
    async fn put(&self, stream: &str, records: &[(String, Bytes)]) -> Vec<PutSuccess> {
        let kinesis = KinesisClient::new(self.clients.kinesis());
        let mut landed = Vec::with_capacity(records.len());
        for chunk in records.chunks(100) {
            // One call at a time and in order, so that each shard keeps the put order.
            for (key, data) in chunk {
                let mut attempts = 0;
                loop {
                    attempts += 1;
                    let result = kinesis
                        .put_records(
                            stream,
                            vec![PutEntry {
                                partition_key: key.clone(),
                                explicit_hash_key: None,
                                data: data.clone(),
                            }],
                        )
                        .await
                        .expect("PutRecords");
                    match result.into_iter().next() {
                        Some(Ok(success)) => {
                            landed.push(success);
                            break;
                        }
                        _ if attempts < 20 => {
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                        other => panic!("record not put after 20 attempts: {other:?}"),
                    }
                }
            }
        }
        landed
    }

    async fn objects(&self, prefix: &str) -> Vec<Stored> {
        let s3 = self.clients.s3();
        let mut out = Vec::new();
        let mut token = None;
        loop {
            let page = s3
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(prefix)
                .set_continuation_token(token)
                .send()
                .await
                .expect("ListObjectsV2");
            for object in page.contents() {
                let key = object.key().unwrap_or_default().to_owned();
                let body = s3
                    .get_object()
                    .bucket(&self.bucket)
                    .key(&key)
                    .send()
                    .await
                    .expect("GetObject")
                    .body
                    .collect()
                    .await
                    .expect("object body")
                    .into_bytes();
                out.push(Stored {
                    key,
                    body,
                    last_modified: object.last_modified().map_or(0, |t| t.secs()),
                });
            }
            match page.next_continuation_token() {
                Some(next) => token = Some(next.to_owned()),
                None => break,
            }
        }
        out
    }

    async fn leases(&self, table: &str) -> Vec<chief_consumer::Lease> {
        // Empty until the delivery has made its table.
        DynamoDbLeaseStore::new(self.clients.dynamodb(), table)
            .list_leases()
            .await
            .unwrap_or_default()
    }
}

/// An error and its sources, `: `-separated.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

/// Runs a delivery in this process until the token fires.
fn start(config: FirehoseConfig) -> (CancellationToken, JoinHandle<Result<(), String>>) {
    let shutdown = CancellationToken::new();
    let token = shutdown.clone();
    let task = tokio::spawn(async move {
        chief_firehose::run(config, token, Health::new())
            .await
            .map_err(|e| chain(&e))
    });
    (shutdown, task)
}

async fn stop(shutdown: CancellationToken, task: JoinHandle<Result<(), String>>) {
    shutdown.cancel();
    let result = tokio::time::timeout(Duration::from_secs(60), task)
        .await
        .expect("delivery stops within 60 s")
        .expect("delivery task");
    assert_eq!(result, Ok(()), "delivery ended with an error");
}

/// Waits until `done` says the objects under `prefix` are complete.
async fn wait_for(
    env: &Env,
    prefix: &str,
    what: &str,
    done: impl Fn(&[Stored]) -> bool,
) -> Vec<Stored> {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let objects = env.objects(prefix).await;
        if done(&objects) {
            return objects;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not there after 90 s ({} objects under {prefix})",
            objects.len()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

const RECORD: usize = 4_000;

/// Record `n` of exactly [`RECORD`] bytes: `{"n":…,"pad":"…"}`.
fn record(n: usize) -> Bytes {
    let head = format!(r#"{{"n":{n},"pad":""#);
    let mut s = head.clone();
    s.push_str(&"x".repeat(RECORD - head.len() - 2));
    s.push_str(r#""}"#);
    assert_eq!(s.len(), RECORD);
    Bytes::from(s)
}

fn record_number(data: &[u8]) -> usize {
    let v: Value = serde_json::from_slice(data).expect("a record");
    v["n"].as_u64().expect("n") as usize
}

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .expect("a time")
        .with_timezone(&Utc)
}

/// `<prefix>YYYY/MM/DD/HH/<name>-1-yyyy-MM-dd-HH-mm-ss-<uuid>`: the hour path and the
/// name's time, which must agree (both are the oldest record's arrival).
fn parse_key(key: &str, prefix: &str, name: &str) -> (String, String) {
    let rest = key
        .strip_prefix(prefix)
        .unwrap_or_else(|| panic!("{key} does not start with {prefix}"));
    let (path, object) = rest.split_at(14);
    assert!(
        path.len() == 14
            && path
                .chars()
                .enumerate()
                .all(|(i, c)| if [4, 7, 10, 13].contains(&i) {
                    c == '/'
                } else {
                    c.is_ascii_digit()
                }),
        "{key}: `{path}` is not YYYY/MM/DD/HH/"
    );
    let stamp = object
        .strip_prefix(&format!("{name}-1-"))
        .unwrap_or_else(|| panic!("{key}: object name does not start with {name}-1-"));
    let (time, uuid) = stamp.split_at(19);
    assert!(
        uuid::Uuid::parse_str(uuid.trim_start_matches('-')).is_ok(),
        "{key}: `{uuid}` is not -<uuid>"
    );
    (path.to_owned(), time.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s3_gets_every_record_once_in_shard_order_within_the_size_hint_and_interval() {
    let env = env().await;
    let stream = env.stream("fh-bytes", 2).await;
    let name = format!("bytes-{}", env.suffix);
    let mut config = env.config(&stream, &name);
    config.s3.prefix = "Firehose/".into();
    config.s3.buffering_size_mib = 1;
    config.s3.buffering_interval_seconds = 2;
    let table = config.consumer.table.clone();
    let (shutdown, task) = start(config);

    let sent = 700;
    let records: Vec<(String, Bytes)> = (0..sent).map(|n| (format!("pk-{n}"), record(n))).collect();
    let started = utc_now();
    let landed = env.put(&stream, &records).await;
    let shard_of: Vec<String> = landed.iter().map(|s| s.shard_id.clone()).collect();
    let total = sent * RECORD;
    let objects = wait_for(&env, "Firehose/", "every record in S3", |o| {
        o.iter().map(|s| s.body.len()).sum::<usize>() >= total
    })
    .await;
    stop(shutdown, task).await;
    let finished = utc_now();

    let mut seen = vec![0u32; sent];
    let mut last_in_shard: BTreeMap<String, usize> = BTreeMap::new();
    let mut objects = objects;
    // Objects of a shard in the order of their records.
    objects.sort_by_key(|o| record_number(&o.body[..RECORD]));
    for object in &objects {
        assert!(
            object.body.len() <= 1024 * 1024,
            "{} has {} bytes, over the 1 MiB hint",
            object.key,
            object.body.len()
        );
        assert_eq!(
            object.body.len() % RECORD,
            0,
            "{}: not whole records",
            object.key
        );
        let (path, time) = parse_key(&object.key, "Firehose/", &name);
        let name_time = chrono::NaiveDateTime::parse_from_str(&time, "%Y-%m-%d-%H-%M-%S")
            .expect("name time")
            .and_utc();
        assert_eq!(
            path,
            name_time.format("%Y/%m/%d/%H/").to_string(),
            "{}",
            object.key
        );
        assert!(
            name_time.timestamp() >= started.timestamp() - 1 && name_time <= finished,
            "{}: time outside the run",
            object.key
        );
        assert!(
            object.last_modified - name_time.timestamp() <= 2 + 5,
            "{} written {} s after its oldest record, over interval + 5 s",
            object.key,
            object.last_modified - name_time.timestamp()
        );
        let numbers: Vec<usize> = object.body.chunks(RECORD).map(record_number).collect();
        let shard = &shard_of[numbers[0]];
        for (i, n) in numbers.iter().enumerate() {
            assert_eq!(
                &object.body[i * RECORD..(i + 1) * RECORD],
                &record(*n)[..],
                "exact bytes"
            );
            assert_eq!(
                &shard_of[*n], shard,
                "{}: records of two shards",
                object.key
            );
            if let Some(previous) = last_in_shard.insert(shard.clone(), *n) {
                assert!(
                    previous < *n,
                    "{}: {n} after {previous} in shard {shard}",
                    object.key
                );
            }
            seen[*n] += 1;
        }
    }
    let lost: Vec<usize> = (0..sent).filter(|n| seen[*n] == 0).collect();
    let doubled: Vec<usize> = (0..sent).filter(|n| seen[*n] > 1).collect();
    assert!(lost.is_empty(), "lost {lost:?}");
    assert!(
        doubled.is_empty(),
        "written twice without a failure: {doubled:?}"
    );
    // 700 × 4,000 bytes over two shards cannot fit in two 1 MiB objects per shard.
    assert!(objects.len() >= 4, "{} objects", objects.len());
    // A graceful stop checkpointed each shard at its last record.
    let mut last_sequence: BTreeMap<&str, &str> = BTreeMap::new();
    for success in &landed {
        last_sequence.insert(&success.shard_id, &success.sequence_number);
    }
    for lease in env.leases(&table).await {
        assert_eq!(
            Some(lease.checkpoint.sequence_number.as_str()),
            last_sequence.get(lease.lease_key.as_str()).copied(),
            "checkpoint of {}",
            lease.lease_key
        );
    }
    env.delete_stream(&stream).await;
}

fn gunzip(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(body)
        .read_to_end(&mut out)
        .expect("a GZIP object");
    out
}

fn pos(n: u64) -> RecordPosition {
    RecordPosition {
        sequence_number: format!("{}", 49_000_000 + n),
        sub_sequence_number: 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefixes_partitions_gzip_and_error_output_across_an_hour_boundary() {
    let env = env().await;
    let mut s3 = chief_firehose::s3::S3DestinationConfig {
        bucket: env.bucket.clone(),
        prefix: "trips/vendor=!{partitionKeyFromQuery:vendor}/!{timestamp:yyyy/MM/dd/HH}/".into(),
        error_output_prefix: "errors/!{firehose:error-output-type}/!{timestamp:yyyy-MM-dd}/".into(),
        compression: Compression::Gzip,
        append_newline: true,
        ..Default::default()
    };
    s3.dynamic_partitioning.enabled = true;
    s3.dynamic_partitioning
        .keys
        .insert("vendor".into(), "/vendor/id".into());
    s3.dynamic_partitioning.max_open_partitions = 2;
    let settings = Arc::new(S3Settings::new(&s3, "taxi", 3).expect("settings"));
    let sink = S3ObjectSink::new(env.clients.s3(), env.bucket.clone());
    let mut delivery = ShardS3Delivery::new(sink, settings, "shardId-000000000000");

    // The clock is the records' arrival: across 11:00 UTC.
    let inputs: Vec<(&str, &[u8])> = vec![
        ("2026-12-04T10:59:58Z", br#"{"vendor":{"id":"a"},"fare":1}"#),
        ("2026-12-04T10:59:59Z", br#"{"vendor":{"id":"b"},"fare":2}"#),
        ("2026-12-04T11:00:01Z", br#"{"vendor":{"id":"a"},"fare":3}"#),
        ("2026-12-04T11:00:01Z", b"not json"),
        ("2026-12-04T11:00:02Z", br#"{"vendor":{},"fare":5}"#),
        ("2026-12-04T11:00:02Z", br#"{"vendor":{"id":"c"},"fare":6}"#),
    ];
    let now = Instant::now();
    for (i, (time, data)) in inputs.iter().enumerate() {
        let position = pos(i as u64);
        delivery
            .accept(
                Incoming {
                    data,
                    position: &position,
                    arrival: at(time),
                },
                now,
            )
            .await
            .expect("accept");
    }
    assert_eq!(delivery.durable(), None, "nothing written yet");
    delivery.flush().await.expect("flush");
    assert_eq!(delivery.durable(), Some(&pos(5)));
    // A record after the flush opens a new object in its own hour.
    let position = pos(6);
    delivery
        .accept(
            Incoming {
                data: br#"{"vendor":{"id":"a"},"fare":7}"#,
                position: &position,
                arrival: at("2026-12-04T11:00:03Z"),
            },
            now,
        )
        .await
        .expect("accept");
    delivery.flush().await.expect("flush");

    let mut objects: BTreeMap<String, String> = BTreeMap::new();
    for object in env.objects("").await {
        assert!(object.key.ends_with(".gz"), "{}", object.key);
        let text = String::from_utf8(gunzip(&object.body)).expect("UTF-8");
        // Drop the name but its time: `taxi-3-<time>-<uuid>.gz`.
        let (dir, file) = object.key.rsplit_once('/').expect("a path");
        assert!(file.starts_with("taxi-3-2026-12-04-"), "{}", object.key);
        objects.insert(format!("{dir}/{}", &file[..26]), text);
    }
    let keys: Vec<&str> = objects.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        vec![
            "errors/processing-failed/2026-12-04/taxi-3-2026-12-04-11-00-01",
            "trips/vendor=a/2026/12/04/10/taxi-3-2026-12-04-10-59-58",
            "trips/vendor=a/2026/12/04/11/taxi-3-2026-12-04-11-00-03",
            "trips/vendor=b/2026/12/04/10/taxi-3-2026-12-04-10-59-59",
        ]
    );
    // The oldest record names the object: 11:00:01 joins 10:59:58's object in hour 10.
    assert_eq!(
        objects["trips/vendor=a/2026/12/04/10/taxi-3-2026-12-04-10-59-58"],
        "{\"vendor\":{\"id\":\"a\"},\"fare\":1}\n{\"vendor\":{\"id\":\"a\"},\"fare\":3}\n"
    );
    let errors: Vec<Value> =
        objects["errors/processing-failed/2026-12-04/taxi-3-2026-12-04-11-00-01"]
            .lines()
            .map(|l| serde_json::from_str(l).expect("an error record"))
            .collect();
    let codes: Vec<&str> = errors
        .iter()
        .map(|e| e["errorCode"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        codes,
        vec![
            "DynamicPartitioning.MetadataExtractionFailed",
            "DynamicPartitioning.MetadataExtractionFailed",
            "DynamicPartitioning.ActivePartitionsLimitExceeded",
        ]
    );
    let raw: Vec<Vec<u8>> = errors
        .iter()
        .map(|e| {
            base64::engine::general_purpose::STANDARD
                .decode(e["rawData"].as_str().unwrap_or_default())
                .expect("base64")
        })
        .collect();
    assert_eq!(
        raw,
        vec![
            inputs[3].1.to_vec(),
            inputs[4].1.to_vec(),
            inputs[5].1.to_vec()
        ]
    );
    assert_eq!(
        errors[0]["arrivalTimestamp"],
        at("2026-12-04T11:00:01Z").timestamp_millis()
    );
    assert_eq!(errors[2]["sequenceNumber"], pos(5).sequence_number);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_workers_share_the_shards_and_deliver_everything() {
    let env = env().await;
    let stream = env.stream("fh-workers", 4).await;
    let name = format!("workers-{}", env.suffix);
    let mut config = env.config(&stream, &name);
    config.s3.prefix = "two/".into();
    config.s3.append_newline = true;
    config.s3.buffering_interval_seconds = 1;
    let table = config.consumer.table.clone();
    let mut first = config.clone();
    first.consumer.worker_id = Some("worker-1".into());
    let mut second = config;
    second.consumer.worker_id = Some("worker-2".into());
    let (s1, t1) = start(first);
    let (s2, t2) = start(second);
    // Both hold leases before the records come.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let owners: BTreeMap<String, usize> = env
            .leases(&table)
            .await
            .into_iter()
            .filter_map(|l| l.lease_owner)
            .fold(BTreeMap::new(), |mut m, o| {
                *m.entry(o).or_default() += 1;
                m
            });
        if owners.len() == 2 && owners.values().all(|n| *n == 2) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "leases not shared 2/2 within 60 s: {owners:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let sent = 400;
    let records: Vec<(String, Bytes)> = (0..sent)
        .map(|n| (format!("pk-{n}"), Bytes::from(format!(r#"{{"n":{n}}}"#))))
        .collect();
    env.put(&stream, &records).await;
    let objects = wait_for(&env, "two/", "every record", |o| {
        o.iter()
            .map(|s| s.body.iter().filter(|b| **b == b'\n').count())
            .sum::<usize>()
            >= sent
    })
    .await;
    stop(s1, t1).await;
    stop(s2, t2).await;
    let mut got: Vec<usize> = objects
        .iter()
        .flat_map(|o| {
            o.body
                .split(|b| *b == b'\n')
                .filter(|l| !l.is_empty())
                .map(record_number)
                .collect::<Vec<_>>()
        })
        .collect();
    got.sort_unstable();
    assert_eq!(
        got,
        (0..sent).collect::<Vec<_>>(),
        "each record exactly once"
    );
    env.delete_stream(&stream).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn elasticsearch_refusing_items_ends_with_indexed_plus_backed_up_equal_to_sent() {
    let env = env().await;
    let standin = RunningStandin::start("127.0.0.1:0", Standin::new(StandinConfig::default()))
        .await
        .expect("stand-in");
    let stream = env.stream("fh-es", 1).await;
    let name = format!("es-{}", env.suffix);
    let mut config = env.config(&stream, &name);
    config.delivery.destination = DestinationKind::Elasticsearch;
    config.elasticsearch.url = standin.url();
    config.elasticsearch.index = format!("analysed-logs-{}", env.suffix);
    config.elasticsearch.index_rotation = IndexRotation::OneDay;
    config.elasticsearch.document_id_pointer = Some("/id".into());
    config.elasticsearch.buffering_interval_seconds = 1;
    config.elasticsearch.retry_duration_seconds = 1;
    config.elasticsearch.retry.initial_backoff_ms = 50;
    config.elasticsearch.retry.max_backoff_ms = 200;
    config.elasticsearch.s3_backup_mode = BackupMode::AllDocuments;
    config.s3.prefix = "backup/".into();
    config.s3.error_output_prefix = "failed/".into();
    config.s3.append_newline = true;
    let index = ElasticsearchIndex::new(&config.elasticsearch.search_config(), Value::Null)
        .expect("client");
    let today = IndexRotation::OneDay.index_name(&config.elasticsearch.index, utc_now());
    standin
        .standin()
        .set_faults(
            &today,
            Faults {
                reject_429_ratio: 0.3,
                reject_400_ratio: 0.1,
                ..Faults::default()
            },
        )
        .expect("faults");
    let clients = AwsClients::new(&env.stack.aws).await;
    let parts = Parts {
        stream: KinesisClient::new(clients.kinesis()),
        leases: DynamoDbLeaseStore::new(clients.dynamodb(), &config.consumer.table),
        objects: S3ObjectSink::new(clients.s3(), env.bucket.clone()),
        index: Some(Arc::new(index)),
        health: Health::new(),
    };
    let shutdown = CancellationToken::new();
    let token = shutdown.clone();
    let task = tokio::spawn(async move {
        chief_firehose::run_with(config, parts, token)
            .await
            .map_err(|e| chain(&e))
    });
    let sent = 300;
    let records: Vec<(String, Bytes)> = (0..sent)
        .map(|n| {
            (
                format!("pk-{n}"),
                Bytes::from(format!(r#"{{"id":"doc-{n}","n":{n}}}"#)),
            )
        })
        .collect();
    env.put(&stream, &records).await;
    let line_count = |objects: &[Stored]| -> usize {
        objects
            .iter()
            .map(|s| s.body.iter().filter(|b| **b == b'\n').count())
            .sum()
    };
    // Every record is backed up (AllDocuments) only after its batch was indexed.
    wait_for(&env, "backup/", "every record backed up", |o| {
        line_count(o) >= sent
    })
    .await;
    stop(shutdown, task).await;

    // The faults happened.
    let stats = standin.standin().stats(&today);
    assert!(
        stats.rejected_429 > 0 && stats.rejected_400 > 0,
        "no refusals: {stats:?}"
    );
    let indexed: BTreeSet<String> = standin.standin().ids(&today).into_iter().collect();
    let mut failed: BTreeMap<String, Value> = BTreeMap::new();
    for object in env.objects("failed/").await {
        assert!(
            object.key.starts_with("failed/elasticsearch-failed/"),
            "{}",
            object.key
        );
        for line in object.body.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let record: Value = serde_json::from_slice(line).expect("a failed-document record");
            let id = record["esDocumentId"]
                .as_str()
                .expect("esDocumentId")
                .to_owned();
            assert_eq!(record["esIndexName"], today.as_str());
            let raw = base64::engine::general_purpose::STANDARD
                .decode(record["rawData"].as_str().expect("rawData"))
                .expect("base64");
            assert_eq!(
                raw,
                records[id["doc-".len()..].parse::<usize>().expect("n")]
                    .1
                    .to_vec()
            );
            assert!(
                failed.insert(id, record).is_none(),
                "a document failed twice"
            );
        }
    }
    assert!(
        failed.values().any(|r| r["errorCode"] == "400"),
        "no 400 in the backup"
    );
    let all: BTreeSet<String> = (0..sent).map(|n| format!("doc-{n}")).collect();
    let backed_up: BTreeSet<String> = failed.keys().cloned().collect();
    assert!(
        indexed.is_disjoint(&backed_up),
        "indexed and failed: {:?}",
        indexed.intersection(&backed_up).collect::<Vec<_>>()
    );
    let union: BTreeSet<String> = indexed.union(&backed_up).cloned().collect();
    assert_eq!(union, all, "indexed + failed-in-backup = sent");
    assert_eq!(indexed.len() + backed_up.len(), sent);
    standin.stop().await;
    env.delete_stream(&stream).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_bucket_stops_the_delivery_with_an_error() {
    let env = env().await;
    let stream = env.stream("fh-nobucket", 1).await;
    let mut config = env.config(&stream, &format!("nobucket-{}", env.suffix));
    config.s3.bucket = format!("missing-{}", env.suffix);
    config.s3.buffering_interval_seconds = 0;
    let (_shutdown, task) = start(config);
    env.put(&stream, &[("k".into(), Bytes::from_static(b"x"))])
        .await;
    let result = tokio::time::timeout(Duration::from_secs(60), task)
        .await
        .expect("stops on its own within 60 s")
        .expect("task");
    let error = result.expect_err("a missing bucket is fatal");
    assert!(
        error.contains("NoSuchBucket") || error.contains("missing-"),
        "{error}"
    );
    env.delete_stream(&stream).await;
}
