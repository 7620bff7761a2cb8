//! What the analytics crate's local-stack tests share: the binary as a worker process,
//! a run's own bucket, stream and config, putting records, and reading the results and
//! the stream back for the recomputation.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, UNIX_EPOCH};

use bytes::Bytes;
use chief_config::aws::AwsClients;
use chief_config::local_stack::{LocalStack, workspace_root};
use chief_stream::{KinesisClient, PutEntry, StreamClient, read_all};

pub const BIN: &str = env!("CARGO_BIN_EXE_chief-analytics");
pub const LEVELS: [&str; 4] = ["INFO", "WARN", "ERROR", "DEBUG"];
pub const WINDOW_MS: i64 = 2_000;

pub struct Worker {
    pub child: Child,
    pub log: PathBuf,
}

impl Worker {
    pub fn start(dir: &Path, worker: &str) -> Self {
        Self::start_with(dir, "analytics.toml", worker)
    }

    pub fn start_with(dir: &Path, config: &str, worker: &str) -> Self {
        let log = dir.join(format!("{worker}.log"));
        let file = std::fs::File::create(&log).expect("log file");
        let err = file.try_clone().expect("log file");
        let child = Command::new(BIN)
            .current_dir(workspace_root())
            .arg("--config")
            .arg(dir.join(config))
            .args(["--config", "config/local.toml", "--worker-id", worker])
            .env("RUST_LOG", "info")
            .stdout(Stdio::from(file))
            .stderr(Stdio::from(err))
            .spawn()
            .expect("spawn chief-analytics");
        Self { child, log }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub async fn put(client: &KinesisClient, stream: &str, from: usize, n: usize) {
    put_to(client, stream, from, n, &[]).await;
}

/// Puts records `from..from + n`; with `hash_keys`, record `i` goes to the shard of
/// `hash_keys[i % len]`.
pub async fn put_to(
    client: &KinesisClient,
    stream: &str,
    from: usize,
    n: usize,
    hash_keys: &[u128],
) {
    let mut pending: Vec<usize> = (from..from + n).collect();
    for _ in 0..20 {
        let entries = pending
            .iter()
            .map(|i| PutEntry {
                partition_key: format!("host-{i}"),
                explicit_hash_key: (!hash_keys.is_empty())
                    .then(|| hash_keys[i % hash_keys.len()].to_string()),
                data: Bytes::from(format!(
                    r#"{{"level":"{}","n":{i}}}"#,
                    LEVELS[(i * 7 + i / 3) % 4]
                )),
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
            .map(|(i, _)| *i)
            .collect();
        if pending.is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("records not put: {pending:?}");
}

/// Puts `n` records in bursts of 25 every 100 ms: arrival times spread over windows.
pub async fn put_spread(client: &KinesisClient, stream: &str, from: usize, n: usize) {
    for start in (from..from + n).step_by(25) {
        put(client, stream, start, 25.min(from + n - start)).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// (window start, level) → count, computed from the stream's records as read back: a
/// record is late (not counted) when an earlier record of its shard arrived at or after
/// its window's end; one that is not JSON is bad.
pub async fn expected(client: &KinesisClient, stream: &str) -> Expected {
    let mut bad = Vec::new();
    let mut counts = BTreeMap::new();
    let mut late = 0;
    let mut total = 0;
    let mut newest: BTreeMap<String, i64> = BTreeMap::new();
    for (shard, record) in read_all(client, stream).await.expect("the stream") {
        total += 1;
        let t = record
            .approximate_arrival
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map(|d| i64::try_from(d.as_millis()).unwrap_or_default())
            .expect("arrival time");
        let start = t.div_euclid(WINDOW_MS) * WINDOW_MS;
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(&record.data) else {
            bad.push(String::from_utf8_lossy(&record.data).into_owned());
            continue;
        };
        let newest = newest.entry(shard).or_insert(i64::MIN);
        if start + WINDOW_MS <= *newest {
            late += 1;
        } else {
            *counts
                .entry((start, v["level"].as_str().unwrap_or_default().to_owned()))
                .or_insert(0) += 1;
        }
        *newest = (*newest).max(t);
    }
    bad.sort();
    Expected {
        counts,
        late,
        total,
        bad,
    }
}

pub struct Expected {
    pub counts: BTreeMap<(i64, String), u64>,
    pub late: u64,
    pub total: usize,
    pub bad: Vec<String>,
}

/// (window start, level) → count, from the result objects; and how many objects.
pub async fn written(clients: &AwsClients, bucket: &str) -> (BTreeMap<(i64, String), u64>, usize) {
    let s3 = clients.s3();
    let list = s3
        .list_objects_v2()
        .bucket(bucket)
        .prefix("analytics/")
        .send()
        .await
        .expect("ListObjectsV2");
    let mut out = BTreeMap::new();
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
            let doc: serde_json::Value = serde_json::from_slice(line).expect("a row");
            let start = chrono::DateTime::parse_from_rfc3339(
                doc["window_start"].as_str().unwrap_or_default(),
            )
            .expect("window_start")
            .timestamp_millis();
            let key = (start, doc["level"].as_str().unwrap_or_default().to_owned());
            assert!(
                out.insert(key.clone(), doc["count"].as_u64().unwrap_or_default())
                    .is_none(),
                "{key:?} written twice"
            );
        }
    }
    (out, list.contents().len())
}

/// One test's own stream, bucket and work directory on the local stack.
pub struct Run {
    pub clients: AwsClients,
    pub kinesis: KinesisClient,
    pub id: String,
    pub dir: PathBuf,
    pub bucket: String,
    pub stream: String,
}

impl Run {
    /// A bucket, a stream of `shards` shards and a directory, named `<name>-<id>`.
    pub async fn new(name: &str, shards: i32) -> Self {
        let stack = LocalStack::require();
        let clients = AwsClients::new(&stack.aws).await;
        let id = uuid::Uuid::new_v4().simple().to_string()[..10].to_owned();
        let dir = workspace_root()
            .join(".local/e2e")
            .join(format!("{name}-{id}"));
        std::fs::create_dir_all(&dir).expect("work dir");
        let bucket = format!("chief-{name}-{id}");
        clients
            .s3()
            .create_bucket()
            .bucket(&bucket)
            .send()
            .await
            .expect("CreateBucket");
        let kinesis = KinesisClient::new(clients.kinesis());
        let stream = format!("AppLogs-{id}");
        create_stream(&kinesis, &stream, shards).await;
        Self {
            clients,
            kinesis,
            id,
            dir,
            bucket,
            stream,
        }
    }

    /// The lease table.
    pub fn lease_table(&self) -> String {
        format!("chief-analytics-{}", self.id)
    }

    /// The window table.
    pub fn window_table(&self) -> String {
        format!("chief-analytics-windows-{}", self.id)
    }

    /// Writes `analytics.toml`: level counts per 2 s window by arrival time into the
    /// bucket, with `extra` sections.
    pub fn write_config(&self, extra: &str) {
        std::fs::write(
            self.dir.join("analytics.toml"),
            format!(
                r#"
[consumer]
stream = "{stream}"
table = "{leases}"
initial_position = "TRIM_HORIZON"
failover_time_ms = 3000
lease_taking_interval_ms = 500
poll_interval_ms = 100
shard_sync_interval_ms = 1000
[store]
table = "{windows}"
[merge]
interval_ms = 300
[app]
name = "levels"
group_by = ["level"]
[app.parse]
format = "json"
[app.window]
size_s = 2
allowed_lateness_s = 0
idle_timeout_s = 2
[[app.aggregate]]
name = "count"
fn = "count"
[output.s3]
bucket = "{bucket}"
prefix = "analytics/"
{extra}
"#,
                stream = self.stream,
                leases = self.lease_table(),
                windows = self.window_table(),
                bucket = self.bucket,
            ),
        )
        .expect("config");
    }
}

/// Waits until the results in `bucket` count every record but the late ones.
pub async fn counted(
    clients: &AwsClients,
    bucket: &str,
    dir: &Path,
    total: u64,
    late: u64,
) -> BTreeMap<(i64, String), u64> {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let (got, _) = written(clients, bucket).await;
        let counted: u64 = got.values().sum();
        if counted + late >= total {
            return got;
        }
        assert!(
            Instant::now() < deadline,
            "{counted} of {} records counted after 90 s (logs in {})",
            total - late,
            dir.display()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

pub async fn create_stream(kinesis: &KinesisClient, stream: &str, shards: i32) {
    kinesis
        .create_stream(stream, shards)
        .await
        .expect("CreateStream");
    kinesis
        .wait_until_active(stream, Duration::from_secs(60))
        .await
        .expect("ACTIVE");
}

/// An SQS queue: its URL and ARN.
pub async fn create_queue(sqs: &aws_sdk_sqs::Client, name: &str) -> (String, String) {
    let url = sqs
        .create_queue()
        .queue_name(name)
        .send()
        .await
        .expect("CreateQueue")
        .queue_url()
        .expect("queue URL")
        .to_owned();
    let arn = sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .expect("GetQueueAttributes")
        .attributes()
        .and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn))
        .expect("QueueArn")
        .to_owned();
    (url, arn)
}
