//! `chief-firehose` as a process on the local stack (`make stack-up`): kill -9 of the
//! worker holding the leases, while it has records buffered, loses nothing — a second
//! worker takes the shards over from the last checkpoint and delivers every record
//! (some twice: at-least-once, as Firehose). Its `/healthz` and `/metrics` answer, with
//! Firehose's metric names.

use crate::support;

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::BIN;

use bytes::Bytes;
use chief_config::aws::AwsClients;
use chief_config::local_stack::{LocalStack, workspace_root};
use chief_consumer::{DynamoDbLeaseStore, LeaseStore};
use chief_stream::{KinesisClient, PutEntry, StreamClient};

struct Worker {
    child: Child,
    log: PathBuf,
}

impl Worker {
    /// Starts `chief-firehose` with the taxi delivery on this test's stream, table and
    /// bucket.
    fn start(id: &str, worker: &str, stream: &str, bucket: &str, dir: &Path) -> Self {
        let log = dir.join(format!("{worker}.log"));
        let file = std::fs::File::create(&log).expect("log file");
        let err = file.try_clone().expect("log file");
        let child = Command::new(BIN)
            .current_dir(workspace_root())
            .args([
                "--config",
                "config/firehose-taxi.toml",
                "--config",
                "config/local.toml",
                "--worker-id",
                worker,
            ])
            .env("CHIEF__DELIVERY__NAME", format!("taxi-{id}"))
            .env("CHIEF__CONSUMER__STREAM", stream)
            .env(
                "CHIEF__CONSUMER__TABLE",
                format!("chief-firehose-taxi-{id}"),
            )
            .env("CHIEF__CONSUMER__FAILOVER_TIME_MS", "3000")
            .env("CHIEF__CONSUMER__LEASE_TAKING_INTERVAL_MS", "500")
            .env("CHIEF__CONSUMER__POLL_INTERVAL_MS", "100")
            .env("CHIEF__S3__BUCKET", bucket)
            .env("CHIEF__S3__BUFFERING_INTERVAL_SECONDS", "3")
            // One trip a line (the shipped taxi delivery concatenates: its agent ends lines).
            .env("CHIEF__S3__APPEND_NEWLINE", "true")
            .env("RUST_LOG", "info")
            .stdout(Stdio::from(file))
            .stderr(Stdio::from(err))
            .spawn()
            .expect("spawn chief-firehose");
        Self { child, log }
    }

    /// The `/metrics` address it logged.
    fn metrics_addr(&self) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let file = std::fs::File::open(&self.log).expect("log");
            for line in BufReader::new(file).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("health and metrics on http://").nth(1) {
                    return rest.split('/').next().unwrap_or_default().to_owned();
                }
            }
            assert!(
                Instant::now() < deadline,
                "no metrics address in {}",
                self.log.display()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn http_get(addr: &str, path: &str) -> (u16, String) {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    (status, body)
}

async fn put(client: &KinesisClient, stream: &str, range: std::ops::Range<usize>) {
    let records: Vec<usize> = range.collect();
    for chunk in records.chunks(100) {
        let mut pending: Vec<usize> = chunk.to_vec();
        for _ in 0..20 {
            let entries = pending
                .iter()
                .map(|n| PutEntry {
                    partition_key: format!("trip-{n}"),
                    explicit_hash_key: None,
                    data: Bytes::from(format!(r#"{{"trip_id":{n}}}"#)),
                })
                .collect();
            let results = client
                .put_records(stream, entries)
                .await
                .expect("PutRecords");
            pending = pending
                .iter()
                .zip(results)
                .filter(|(_, r)| r.is_err())
                .map(|(n, _)| *n)
                .collect();
            if pending.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert!(pending.is_empty(), "records not put: {pending:?}");
    }
}

/// How many times each trip is in the bucket's `Firehose/` objects.
async fn delivered(clients: &AwsClients, bucket: &str) -> BTreeMap<usize, usize> {
    let s3 = clients.s3();
    let mut seen = BTreeMap::new();
    let list = s3
        .list_objects_v2()
        .bucket(bucket)
        .prefix("Firehose/")
        .send()
        .await
        .expect("ListObjectsV2");
    for object in list.contents() {
        let body = s3
            .get_object()
            .bucket(bucket)
            .key(object.key().unwrap_or_default())
            .send()
            .await
            .expect("GetObject")
            .body
            .collect()
            .await
            .expect("body")
            .into_bytes();
        for line in body.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let value: serde_json::Value = serde_json::from_slice(line).expect("a trip");
            let n = value["trip_id"].as_u64().expect("trip_id") as usize;
            *seen.entry(n).or_insert(0) += 1;
        }
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_the_lease_holder_with_records_buffered_loses_nothing() {
    let stack = LocalStack::require();
    let clients = AwsClients::new(&stack.aws).await;
    let id = uuid::Uuid::new_v4().simple().to_string()[..10].to_owned();
    let dir = workspace_root()
        .join(".local/e2e")
        .join(format!("firehose-kill-{id}"));
    std::fs::create_dir_all(&dir).expect("work dir");
    let bucket = format!("chief-firehose-kill-{id}");
    clients
        .s3()
        .create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .expect("CreateBucket");
    let kinesis = KinesisClient::new(clients.kinesis());
    let stream = format!("TaxiTrips-{id}");
    kinesis
        .create_stream(&stream, 2)
        .await
        .expect("CreateStream");
    kinesis
        .wait_until_active(&stream, Duration::from_secs(60))
        .await
        .expect("ACTIVE");
    let table = format!("chief-firehose-taxi-{id}");
    let leases = DynamoDbLeaseStore::new(clients.dynamodb(), &table);

    let first = Worker::start(&id, "worker-a", &stream, &bucket, &dir);
    // Worker a holds both shards, and has written and checkpointed a first object.
    put(&kinesis, &stream, 0..300).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let held = leases.list_leases().await.unwrap_or_default();
        let checkpointed = held
            .iter()
            .filter(|l| l.lease_owner.as_deref() == Some("worker-a") && !l.checkpoint.is_sentinel())
            .count();
        if checkpointed == 2 && delivered(&clients, &bucket).await.len() == 300 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "worker a did not deliver the first 300 within 60 s (log {})",
            first.log.display()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // More records, buffered (the interval is 3 s) when the kill comes.
    put(&kinesis, &stream, 300..600).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let before = leases.list_leases().await.expect("leases");
    let owners: Vec<Option<String>> = before.iter().map(|l| l.lease_owner.clone()).collect();
    assert_eq!(
        owners,
        vec![Some("worker-a".to_owned()); 2],
        "the kill hits the lease holder"
    );
    let mut first = first;
    first.child.kill().expect("kill -9");
    first.child.wait().expect("reaped");
    let after_kill = delivered(&clients, &bucket).await;
    assert!(
        after_kill.len() < 600,
        "the kill came after everything was written ({} trips): no fault",
        after_kill.len()
    );

    let second = Worker::start(&id, "worker-b", &stream, &bucket, &dir);
    put(&kinesis, &stream, 600..900).await;
    let deadline = Instant::now() + Duration::from_secs(90);
    let seen = loop {
        let seen = delivered(&clients, &bucket).await;
        if seen.len() == 900 {
            break seen;
        }
        assert!(
            Instant::now() < deadline,
            "{} of 900 trips delivered after 90 s (log {})",
            seen.len(),
            second.log.display()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(
        seen.keys().copied().collect::<Vec<_>>(),
        (0..900).collect::<Vec<_>>()
    );
    let owners: Vec<Option<String>> = leases
        .list_leases()
        .await
        .expect("leases")
        .into_iter()
        .map(|l| l.lease_owner)
        .collect();
    assert_eq!(
        owners,
        vec![Some("worker-b".to_owned()); 2],
        "worker b took both shards over"
    );

    // Health and Firehose's metric names (Prometheus spells the dots as underscores).
    let addr = second.metrics_addr();
    assert_eq!(http_get(&addr, "/healthz").0, 200);
    let (status, metrics) = http_get(&addr, "/metrics");
    assert_eq!(status, 200);
    for name in [
        "IncomingRecords",
        "DeliveryToS3_Records",
        "DeliveryToS3_Success",
        "DeliveryToS3_DataFreshness",
    ] {
        assert!(
            metrics
                .lines()
                .any(|l| l.starts_with(name)
                    && l.contains(&format!("delivery_stream=\"taxi-{id}\""))),
            "/metrics lacks {name}:\n{metrics}"
        );
    }
    // Every record written twice was counted as replayed (read again up to the pending
    // checkpoint worker a prepared before its writes).
    let written_twice: usize = seen.values().map(|n| n - 1).sum();
    let replayed: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("ReplayedRecords"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(
        replayed >= written_twice as f64,
        "{written_twice} records written twice but {replayed} counted as replayed"
    );
    let mut second = second;
    terminate(&second.child);
    let status = second.child.wait().expect("wait");
    assert!(
        status.success(),
        "worker b exit {status} (log {})",
        second.log.display()
    );
    let _ = clients
        .kinesis()
        .delete_stream()
        .stream_name(&stream)
        .send()
        .await;
}

fn terminate(child: &Child) {
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .expect("kill");
    assert!(status.success());
}
