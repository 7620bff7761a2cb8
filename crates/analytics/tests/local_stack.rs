//! `chief-analytics` as processes on the local stack (`make stack-up`: kinesis-local,
//! moto's DynamoDB and S3): two workers share a 2-shard stream by leases; one of them is
//! killed with SIGKILL while it holds a lease and open windows, and the other takes its
//! shard over from the checkpoint. Every window's result in S3 must equal a computation
//! of the same records read back from the stream (their arrival times, per window and
//! level) — nothing counted twice from the replay, nothing missing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, UNIX_EPOCH};

use bytes::Bytes;
use chief_analytics::store::{DynamoDbWindowStore, RejectKind, WindowStore};
use chief_config::aws::AwsClients;
use chief_config::local_stack::{LocalStack, workspace_root};
use chief_consumer::{DynamoDbLeaseStore, LeaseStore};
use chief_stream::{IteratorPosition, KinesisClient, PutEntry, StreamClient};

const BIN: &str = env!("CARGO_BIN_EXE_chief-analytics");
const LEVELS: [&str; 4] = ["INFO", "WARN", "ERROR", "DEBUG"];
const WINDOW_MS: i64 = 2_000;

struct Worker {
    child: Child,
    log: PathBuf,
}

impl Worker {
    fn start(dir: &Path, worker: &str) -> Self {
        let log = dir.join(format!("{worker}.log"));
        let file = std::fs::File::create(&log).expect("log file");
        let err = file.try_clone().expect("log file");
        let child = Command::new(BIN)
            .current_dir(workspace_root())
            .arg("--config")
            .arg(dir.join("analytics.toml"))
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

async fn put(client: &KinesisClient, stream: &str, from: usize, n: usize) {
    let mut pending: Vec<usize> = (from..from + n).collect();
    for _ in 0..20 {
        let entries = pending
            .iter()
            .map(|i| PutEntry {
                partition_key: format!("host-{i}"),
                explicit_hash_key: None,
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
async fn put_spread(client: &KinesisClient, stream: &str, from: usize, n: usize) {
    for start in (from..from + n).step_by(25) {
        put(client, stream, start, 25.min(from + n - start)).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// (window start, level) → count, computed from the stream's records as read back: a
/// record is late (not counted) when an earlier record of its shard arrived at or after
/// its window's end; one that is not JSON is bad.
async fn expected(client: &KinesisClient, stream: &str) -> Expected {
    let mut bad = Vec::new();
    let mut counts = BTreeMap::new();
    let mut late = 0;
    let mut total = 0;
    for shard in client.list_shards(stream).await.expect("shards") {
        let mut iterator = client
            .get_shard_iterator(stream, &shard.shard_id, &IteratorPosition::TrimHorizon)
            .await
            .expect("iterator");
        let mut newest: Option<i64> = None;
        loop {
            let page = client
                .get_records(stream, &iterator, 10_000)
                .await
                .expect("records");
            for record in &page.records {
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
                if newest.is_some_and(|n| start + WINDOW_MS <= n) {
                    late += 1;
                } else {
                    *counts
                        .entry((start, v["level"].as_str().unwrap_or_default().to_owned()))
                        .or_insert(0) += 1;
                }
                newest = Some(newest.map_or(t, |n| n.max(t)));
            }
            match page.next_shard_iterator {
                Some(next) if !page.records.is_empty() => iterator = next,
                _ => break,
            }
        }
    }
    bad.sort();
    Expected {
        counts,
        late,
        total,
        bad,
    }
}

struct Expected {
    counts: BTreeMap<(i64, String), u64>,
    late: u64,
    total: usize,
    bad: Vec<String>,
}

/// (window start, level) → count, from the result objects; and how many objects.
async fn written(clients: &AwsClients, bucket: &str) -> (BTreeMap<(i64, String), u64>, usize) {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_and_a_kill_9_give_every_window_exactly() {
    let stack = LocalStack::require();
    let clients = AwsClients::new(&stack.aws).await;
    let id = uuid::Uuid::new_v4().simple().to_string()[..10].to_owned();
    let dir = workspace_root()
        .join(".local/e2e")
        .join(format!("analytics-{id}"));
    std::fs::create_dir_all(&dir).expect("work dir");
    let bucket = format!("chief-analytics-{id}");
    clients
        .s3()
        .create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .expect("CreateBucket");
    let kinesis = KinesisClient::new(clients.kinesis());
    let stream = format!("AppLogs-{id}");
    kinesis
        .create_stream(&stream, 2)
        .await
        .expect("CreateStream");
    kinesis
        .wait_until_active(&stream, Duration::from_secs(60))
        .await
        .expect("ACTIVE");
    let lease_table = format!("chief-analytics-{id}");
    std::fs::write(
        dir.join("analytics.toml"),
        format!(
            r#"
[consumer]
stream = "{stream}"
table = "{lease_table}"
initial_position = "TRIM_HORIZON"
failover_time_ms = 3000
lease_taking_interval_ms = 500
poll_interval_ms = 100
[store]
table = "chief-analytics-windows-{id}"
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
"#
        ),
    )
    .expect("config");
    let leases = DynamoDbLeaseStore::new(clients.dynamodb(), &lease_table);

    let mut a = Worker::start(&dir, "worker-a");
    let b = Worker::start(&dir, "worker-b");
    // Both workers hold a shard before the records come.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let owners: Vec<Option<String>> = leases
            .list_leases()
            .await
            .unwrap_or_default()
            .iter()
            .map(|l| l.lease_owner.clone())
            .collect();
        if owners.contains(&Some("worker-a".into())) && owners.contains(&Some("worker-b".into())) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the workers did not share the shards within 60 s: {owners:?} (logs in {})",
            dir.display()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    put_spread(&kinesis, &stream, 0, 500).await;
    // A first window written: the stages work before the fault.
    let deadline = Instant::now() + Duration::from_secs(60);
    while written(&clients, &bucket).await.1 == 0 {
        assert!(
            Instant::now() < deadline,
            "no window written within 60 s (logs in {})",
            dir.display()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    put_spread(&kinesis, &stream, 500, 150).await;
    // Records that do not parse: stored by position as bad, never counted or dropped.
    let bad_entries = (0..5)
        .map(|i| PutEntry {
            partition_key: format!("bad-{i}"),
            explicit_hash_key: None,
            data: Bytes::from(format!("not json {i}")),
        })
        .collect();
    let results = kinesis
        .put_records(&stream, bad_entries)
        .await
        .expect("PutRecords");
    assert!(results.iter().all(Result::is_ok), "bad records put");
    let held: Vec<String> = leases
        .list_leases()
        .await
        .expect("leases")
        .iter()
        .filter(|l| l.lease_owner.as_deref() == Some("worker-a"))
        .map(|l| l.lease_key.clone())
        .collect();
    assert!(!held.is_empty(), "the kill hits a lease holder");
    a.child.kill().expect("kill -9");
    a.child.wait().expect("reaped");
    put_spread(&kinesis, &stream, 650, 500).await;

    // worker-b takes the shard over and every window is written (the last once both
    // shards are idle for 2 s).
    let Expected {
        counts: want,
        late,
        total,
        bad,
    } = expected(&kinesis, &stream).await;
    assert_eq!(total, 1_155, "every record is in the stream");
    assert_eq!(bad.len(), 5);
    let deadline = Instant::now() + Duration::from_secs(90);
    let got = loop {
        let (got, _) = written(&clients, &bucket).await;
        let counted: u64 = got.values().sum();
        if counted + late >= 1_150 {
            break got;
        }
        assert!(
            Instant::now() < deadline,
            "{counted} of {} records counted after 90 s (logs in {})",
            1_150 - late,
            dir.display()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let owners: Vec<Option<String>> = leases
        .list_leases()
        .await
        .expect("leases")
        .iter()
        .map(|l| l.lease_owner.clone())
        .collect();
    assert_eq!(
        owners,
        vec![Some("worker-b".to_owned()); 2],
        "worker-b took the shard over"
    );
    assert!(want.len() > 8, "the records span several windows: {want:?}");
    assert_eq!(got, want, "every window's counts, exactly");
    let store =
        DynamoDbWindowStore::new(clients.dynamodb(), format!("chief-analytics-windows-{id}"));
    let (mut stored_bad, mut stored_late) = (Vec::new(), 0);
    for shard in kinesis.list_shards(&stream).await.expect("shards") {
        for r in store
            .rejected(&shard.shard_id, RejectKind::Bad)
            .await
            .expect("bad")
        {
            stored_bad.push(String::from_utf8_lossy(&r.data).into_owned());
        }
        stored_late += store
            .rejected(&shard.shard_id, RejectKind::Late)
            .await
            .expect("late")
            .len() as u64;
    }
    stored_bad.sort();
    assert_eq!(stored_bad, bad, "every bad record stored, once, as it was");
    assert_eq!(stored_late, late, "every late record stored");
    // SIGTERM: a graceful stop, exit 0.
    let mut b = b;
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(b.child.id().to_string())
        .status()
        .expect("kill");
    assert!(status.success());
    let exit = b.child.wait().expect("wait");
    assert!(
        exit.success(),
        "worker-b exit {exit} (log {})",
        b.log.display()
    );
}
