//! `chief-analytics` as processes on the local stack (`make stack-up`: kinesis-local,
//! moto's DynamoDB, S3 and SES): two workers share a 2-shard stream by leases; one of
//! them is killed with SIGKILL while it holds a lease and open windows, and the other
//! takes its shard over from the checkpoint. Every window's result in S3 must equal a
//! computation of the same records read back from the stream (their arrival times, per
//! window and level) — nothing counted twice from the replay, nothing missing; records
//! that do not parse are stored, each once. And alerts: an email through SES for each
//! window with more than one ERROR, exactly once, across a kill right after the first
//! one was sent, with the window's report as a zip (read by Python's `zipfile`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, UNIX_EPOCH};

use bytes::Bytes;
use chief_analytics::store::{DynamoDbWindowStore, RejectKind, WindowStore};
use chief_config::aws::AwsClients;
use chief_config::local_stack::{LocalStack, workspace_root};
use chief_consumer::{DynamoDbLeaseStore, LeaseStore};
use chief_stream::{KinesisClient, PutEntry, StreamClient, read_all};

const BIN: &str = env!("CARGO_BIN_EXE_chief-analytics");
const LEVELS: [&str; 4] = ["INFO", "WARN", "ERROR", "DEBUG"];
const WINDOW_MS: i64 = 2_000;

struct Worker {
    child: Child,
    log: PathBuf,
}

impl Worker {
    fn start(dir: &Path, worker: &str) -> Self {
        Self::start_with(dir, "analytics.toml", worker)
    }

    fn start_with(dir: &Path, config: &str, worker: &str) -> Self {
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

async fn put(client: &KinesisClient, stream: &str, from: usize, n: usize) {
    put_to(client, stream, from, n, &[]).await;
}

/// Puts records `from..from + n`; with `hash_keys`, record `i` goes to the shard of
/// `hash_keys[i % len]`.
async fn put_to(client: &KinesisClient, stream: &str, from: usize, n: usize, hash_keys: &[u128]) {
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

/// One test's own stream, bucket and work directory on the local stack.
struct Run {
    clients: AwsClients,
    kinesis: KinesisClient,
    id: String,
    dir: PathBuf,
    bucket: String,
    stream: String,
}

impl Run {
    /// A bucket, a stream of `shards` shards and a directory, named `<name>-<id>`.
    async fn new(name: &str, shards: i32) -> Self {
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
    fn lease_table(&self) -> String {
        format!("chief-analytics-{}", self.id)
    }

    /// The window table.
    fn window_table(&self) -> String {
        format!("chief-analytics-windows-{}", self.id)
    }

    /// Writes `analytics.toml`: level counts per 2 s window by arrival time into the
    /// bucket, with `extra` sections.
    fn write_config(&self, extra: &str) {
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
async fn counted(
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

async fn create_stream(kinesis: &KinesisClient, stream: &str, shards: i32) {
    kinesis
        .create_stream(stream, shards)
        .await
        .expect("CreateStream");
    kinesis
        .wait_until_active(stream, Duration::from_secs(60))
        .await
        .expect("ACTIVE");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_and_a_kill_9_give_every_window_exactly() {
    let run = Run::new("analytics", 2).await;
    run.write_config(&format!(
        "[output.kinesis]\nstream = \"{}-results\"",
        run.stream
    ));
    let lease_table = run.lease_table();
    let Run {
        clients,
        kinesis,
        id,
        dir,
        bucket,
        stream,
    } = run;
    create_stream(&kinesis, &format!("{stream}-results"), 1).await;
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
    let got = counted(&clients, &bucket, &dir, 1_150, late).await;
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
    // The same rows in the output stream (at least once: a row put twice has one id).
    let mut by_id: BTreeMap<String, serde_json::Value> = BTreeMap::new();
    for (_, record) in read_all(&kinesis, &format!("{stream}-results"))
        .await
        .expect("the output stream")
    {
        let doc: serde_json::Value = serde_json::from_slice(&record.data).expect("a row");
        let id = doc["id"].as_str().unwrap_or_default().to_owned();
        if let Some(before) = by_id.insert(id.clone(), doc.clone()) {
            assert_eq!(before, doc, "{id} put twice with different values");
        }
    }
    let streamed: BTreeMap<(i64, String), u64> = by_id
        .values()
        .map(|doc| {
            let start = chrono::DateTime::parse_from_rfc3339(
                doc["window_start"].as_str().unwrap_or_default(),
            )
            .expect("window_start")
            .timestamp_millis();
            (
                (start, doc["level"].as_str().unwrap_or_default().to_owned()),
                doc["count"].as_u64().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(streamed, want, "the output stream's rows");
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

/// The raw emails moto's SES holds for `recipient`.
fn emails_to(recipient: &str) -> Vec<String> {
    // moto's dump of every backend fails now and then (a key of a bucket another test just
    // deleted): asked again.
    for _ in 0..20 {
        if let Some(emails) = try_emails_to(recipient) {
            return emails;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    panic!("moto's /moto-api/data.json kept failing");
}

fn try_emails_to(recipient: &str) -> Option<Vec<String>> {
    use std::io::{Read as _, Write as _};
    let addr = "127.0.0.1:5000";
    let mut stream = std::net::TcpStream::connect(addr).expect("connect to moto");
    write!(
        stream,
        "GET /moto-api/data.json HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).expect("read");
    let at = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(0, |i| i + 4);
    if !response.starts_with(b"HTTP/1.1 200") && !response.starts_with(b"HTTP/1.0 200") {
        return None;
    }
    let data: serde_json::Value = serde_json::from_slice(&response[at..]).ok()?;
    let emails = data["ses"]["RawMessage"]
        .as_array()
        .map(|messages| {
            messages
                .iter()
                .filter(|m| {
                    m["destinations"]
                        .as_array()
                        .is_some_and(|d| d.iter().any(|a| a.as_str() == Some(recipient)))
                })
                .filter_map(|m| m["raw_data"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    Some(emails)
}

/// The zip attached to a raw email, unzipped by Python's `zipfile`: `name\ncontent`.
fn attachment(raw: &str) -> String {
    use base64::Engine as _;
    let body = raw
        .split("Content-Transfer-Encoding: base64\r\n\r\n")
        .nth(1)
        .expect("a base64 attachment");
    let b64: String = body.lines().take_while(|l| !l.starts_with("--")).collect();
    let zip = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .expect("base64");
    let path =
        std::env::temp_dir().join(format!("chief-mail-{}.zip", uuid::Uuid::new_v4().simple()));
    std::fs::write(&path, zip).expect("zip file");
    let out = Command::new("python3")
        .args([
            "-c",
            "import sys, zipfile\nz = zipfile.ZipFile(sys.argv[1])\nassert z.testzip() is None\nfor n in z.namelist():\n    print(n)\n    print(z.read(n).decode(), end='')",
        ])
        .arg(&path)
        .output()
        .expect("python3");
    let _ = std::fs::remove_file(&path);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Event time of window `w` (60 s windows from 2026-01-01), plus `ms`.
fn at(w: i64, ms: i64) -> i64 {
    1_767_225_600_000 + w * 60_000 + ms
}

async fn put_events(client: &KinesisClient, stream: &str, events: &[(i64, &str)]) {
    let entries = events
        .iter()
        .enumerate()
        .map(|(i, (time, level))| PutEntry {
            partition_key: format!("host-{i}"),
            explicit_hash_key: None,
            data: Bytes::from(format!(r#"{{"level":"{level}","time":{time}}}"#)),
        })
        .collect();
    let results = client
        .put_records(stream, entries)
        .await
        .expect("PutRecords");
    assert!(results.iter().all(Result::is_ok), "events put");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_is_emailed_once_per_window_with_more_than_one_error_across_a_kill_right_after_sending()
 {
    let stack = LocalStack::require();
    let Run {
        clients,
        kinesis,
        id,
        dir,
        bucket,
        stream,
    } = Run::new("analytics-alerts", 1).await;
    // SES sends only from a verified identity (moto verifies at once).
    let mut ses = aws_sdk_sesv2::config::Builder::from(clients.sdk_config());
    if let Some(url) = &stack.aws.ses.endpoint {
        ses = ses.endpoint_url(url);
    }
    aws_sdk_sesv2::Client::from_conf(ses.build())
        .create_email_identity()
        .email_identity("alerts@chief.example")
        .send()
        .await
        .expect("CreateEmailIdentity");
    let recipient = format!("ops-{id}@chief.example");
    std::fs::write(
        dir.join("alerts.toml"),
        format!(
            r#"
[consumer]
stream = "{stream}"
table = "chief-analytics-alerts-{id}"
initial_position = "TRIM_HORIZON"
failover_time_ms = 3000
lease_taking_interval_ms = 500
poll_interval_ms = 100
[store]
table = "chief-analytics-alerts-windows-{id}"
[merge]
interval_ms = 300
[app]
name = "levels"
group_by = ["level"]
[app.parse]
format = "json"
[app.time]
source = "field"
field = "time"
format = "epoch_millis"
[app.window]
size_s = 60
idle_timeout_s = 2
[[app.aggregate]]
name = "count"
fn = "count"
[output.s3]
bucket = "{bucket}"
prefix = "analytics/"
[[alert]]
name = "errors"
when = "ERROR > 1"
email = {{ from = "alerts@chief.example", to = ["{recipient}"] }}
"#
        ),
    )
    .expect("config");

    // Windows 0-2 with 0, 1 and 2 ERRORs; a record of window 3 closes them.
    let mut first = Worker::start_with(&dir, "alerts.toml", "worker-a");
    put_events(
        &kinesis,
        &stream,
        &[
            (at(0, 1_000), "INFO"),
            (at(0, 2_000), "INFO"),
            (at(1, 1_000), "ERROR"),
            (at(1, 2_000), "INFO"),
            (at(2, 1_000), "ERROR"),
            (at(2, 30_000), "WARN"),
            (at(2, 59_999), "ERROR"),
            (at(3, 0), "INFO"),
        ],
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while emails_to(&recipient).is_empty() {
        assert!(
            Instant::now() < deadline,
            "no alert emailed within 60 s (logs in {})",
            dir.display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Killed right after the first alert went out.
    first.child.kill().expect("kill -9");
    first.child.wait().expect("reaped");
    assert_eq!(
        emails_to(&recipient).len(),
        1,
        "the kill came after one alert"
    );

    // A second worker: window 3 gets 3 ERRORs; a record of window 4 closes it.
    let second = Worker::start_with(&dir, "alerts.toml", "worker-b");
    put_events(
        &kinesis,
        &stream,
        &[
            (at(3, 1_000), "ERROR"),
            (at(3, 2_000), "ERROR"),
            (at(3, 3_000), "ERROR"),
            (at(4, 0), "DEBUG"),
        ],
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(90);
    while written(&clients, &bucket).await.1 < 4 {
        assert!(
            Instant::now() < deadline,
            "not every window written within 90 s (logs in {})",
            dir.display()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // Rounds after the last window: nothing more is sent.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let emails = emails_to(&recipient);
    assert_eq!(
        emails.len(),
        2,
        "one email per window with more than one ERROR"
    );
    let w2 = chief_analytics::Window {
        start_ms: at(2, 0),
        end_ms: at(3, 0),
    };
    let w3 = chief_analytics::Window {
        start_ms: at(3, 0),
        end_ms: at(4, 0),
    };
    assert_eq!(
        attachment(&emails[0]),
        format!(
            "levels-errors-{}.csv\nwindow_start,window_end,level,count\n{s},{e},ERROR,2\n{s},{e},WARN,1\n",
            w2.start_ms,
            s = w2.start_text(),
            e = w2.end_text()
        )
    );
    assert_eq!(
        attachment(&emails[1]),
        format!(
            "levels-errors-{}.csv\nwindow_start,window_end,level,count\n{s},{e},ERROR,3\n{s},{e},INFO,1\n",
            w3.start_ms,
            s = w3.start_text(),
            e = w3.end_text()
        )
    );
    assert!(emails[0].contains("Subject: [chief] levels: ERROR > 1 in"));
    drop(second);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_a_split_mid_run_and_an_idle_shard_give_every_window_exactly() {
    let run = Run::new("analytics-split", 2).await;
    run.write_config("");
    let lease_table = run.lease_table();
    let Run {
        clients,
        kinesis,
        id,
        dir,
        bucket,
        stream,
    } = run;
    let leases = DynamoDbLeaseStore::new(clients.dynamodb(), &lease_table);
    let _workers: Vec<Worker> = ["worker-a", "worker-b", "worker-c"]
        .iter()
        .map(|w| Worker::start(&dir, w))
        .collect();
    put_spread(&kinesis, &stream, 0, 300).await;
    // The split: shard 0's records stop, its two children carry on.
    let shards = kinesis.list_shards(&stream).await.expect("shards");
    let parent = shards[0].clone();
    let mid =
        parent.starting_hash_key + (parent.ending_hash_key - parent.starting_hash_key) / 2 + 1;
    clients
        .kinesis()
        .split_shard()
        .stream_name(&stream)
        .shard_to_split(&parent.shard_id)
        .new_starting_hash_key(mid.to_string())
        .send()
        .await
        .expect("SplitShard");
    kinesis
        .wait_until_active(&stream, Duration::from_secs(60))
        .await
        .expect("ACTIVE");
    // After it, records go to the first child and to shard 1 only: the second child stays
    // idle, and must not hold the windows open.
    let shard1 = shards[1].starting_hash_key + 5;
    for start in (300..600).step_by(25) {
        put_to(
            &kinesis,
            &stream,
            start,
            25,
            &[parent.starting_hash_key + 1, shard1],
        )
        .await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let after = kinesis.list_shards(&stream).await.expect("shards");
    assert_eq!(after.len(), 4, "the parent and its two children: {after:?}");
    let Expected {
        counts: want,
        late,
        total,
        ..
    } = expected(&kinesis, &stream).await;
    assert_eq!(total, 600, "every record is in the stream");
    let got = counted(&clients, &bucket, &dir, 600, late).await;
    assert_eq!(
        got, want,
        "every window's counts, exactly, across the split"
    );
    let parent_lease = leases
        .list_leases()
        .await
        .expect("leases")
        .into_iter()
        .find(|l| l.lease_key == parent.shard_id)
        .expect("the parent's lease");
    assert!(
        parent_lease.checkpoint.is_shard_end(),
        "the parent was read to its end: {parent_lease:?}"
    );
    let idle_child = after
        .iter()
        .find(|s| {
            s.parent_shard_id.as_deref() == Some(parent.shard_id.as_str())
                && s.starting_hash_key == mid
        })
        .expect("the second child");
    let store =
        DynamoDbWindowStore::new(clients.dynamodb(), format!("chief-analytics-windows-{id}"));
    let progress = store.progress().await.expect("progress");
    let idle = progress
        .iter()
        .find(|p| p.shard == idle_child.shard_id)
        .expect("the idle child reports");
    assert!(
        idle.max_time.is_some(),
        "the idle child's time moved on: {idle:?}"
    );
    let in_idle_child = read_all(&kinesis, &stream)
        .await
        .expect("the stream")
        .iter()
        .filter(|(shard, _)| *shard == idle_child.shard_id)
        .count();
    assert_eq!(in_idle_child, 0, "the second child got no record");
}
