//! `chief-agent` sending to Firehose delivery streams on the local stack (`make
//! stack-up`): moto serves the Firehose API and writes each `PutRecordBatch` straight to
//! S3 as one object (no buffering of its own), so the objects under the delivery
//! stream's prefix are exactly the calls the agent made, and their records are read back
//! and compared with the input, computed independently here.

use std::collections::{BTreeMap, HashSet};
use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_firehose::types::{DeliveryStreamType, ExtendedS3DestinationConfiguration};
use bytes::Bytes;
use chief_agent::firehose::{FirehoseApi, FirehoseClient, FirehoseFailure};
use chief_config::aws::AwsClients;
use chief_config::local_stack::{LocalStack, workspace_root};
use chief_stream::{IteratorPosition, KinesisClient, StreamClient};

/// The package's own binary, which cargo builds for its integration tests.
const BIN: &str = env!("CARGO_BIN_EXE_chief-agent");

fn firehose_client(stack: &LocalStack, clients: &AwsClients) -> aws_sdk_firehose::Client {
    let endpoint = stack
        .aws
        .firehose
        .endpoint
        .clone()
        .expect("config/local.toml sets [aws.firehose] endpoint (moto)");
    aws_sdk_firehose::Client::from_conf(
        aws_sdk_firehose::config::Builder::from(clients.sdk_config())
            .endpoint_url(endpoint)
            .build(),
    )
}

struct Delivery {
    firehose: aws_sdk_firehose::Client,
    s3: aws_sdk_s3::Client,
    bucket: String,
    name: String,
}

impl Delivery {
    /// A bucket and a delivery stream writing to it under `<name>/`.
    async fn create(stack: &LocalStack, clients: &AwsClients, name: &str) -> Self {
        let s3 = clients.s3();
        let bucket = format!("agent-firehose-{name}").to_lowercase();
        s3.create_bucket()
            .bucket(&bucket)
            .send()
            .await
            .expect("CreateBucket");
        let firehose = firehose_client(stack, clients);
        firehose
            .create_delivery_stream()
            .delivery_stream_name(name)
            .delivery_stream_type(DeliveryStreamType::DirectPut)
            .extended_s3_destination_configuration(
                ExtendedS3DestinationConfiguration::builder()
                    .role_arn("arn:aws:iam::123456789012:role/firehose")
                    .bucket_arn(format!("arn:aws:s3:::{bucket}"))
                    .prefix(format!("{name}/"))
                    // moto echoes only what it was given, and the SDK requires these
                    // in DescribeDeliveryStream's answer (Firehose always sends them).
                    .compression_format(aws_sdk_firehose::types::CompressionFormat::Uncompressed)
                    .buffering_hints(
                        aws_sdk_firehose::types::BufferingHints::builder()
                            .size_in_mbs(1)
                            .interval_in_seconds(60)
                            .build(),
                    )
                    .build()
                    .expect("destination"),
            )
            .send()
            .await
            .expect("CreateDeliveryStream (moto)");
        Self {
            firehose,
            s3,
            bucket,
            name: name.to_owned(),
        }
    }

    /// Every object under the prefix: its records (lines).
    async fn objects(&self) -> Vec<Vec<String>> {
        let mut out = Vec::new();
        let mut pages = self
            .s3
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(format!("{}/", self.name))
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            for object in page.expect("ListObjectsV2").contents() {
                let body = self
                    .s3
                    .get_object()
                    .bucket(&self.bucket)
                    .key(object.key().unwrap_or_default())
                    .send()
                    .await
                    .expect("GetObject")
                    .body
                    .collect()
                    .await
                    .expect("body")
                    .into_bytes();
                let text = String::from_utf8(body.to_vec()).expect("utf-8");
                assert!(text.ends_with('\n'), "records end with a newline: {text:?}");
                out.push(text.lines().map(str::to_owned).collect());
            }
        }
        out
    }

    async fn wait_for(&self, records: usize) -> Vec<Vec<String>> {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let objects = self.objects().await;
            let n: usize = objects.iter().map(Vec::len).sum();
            if n >= records {
                return objects;
            }
            assert!(
                Instant::now() < deadline,
                "{n} of {records} records in S3 after 120 s"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    async fn delete(&self) {
        let _ = self
            .firehose
            .delete_delivery_stream()
            .delivery_stream_name(&self.name)
            .send()
            .await;
    }
}

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..10]
    )
}

fn test_dir(name: &str) -> PathBuf {
    let dir = workspace_root().join(".local/e2e").join(name);
    std::fs::create_dir_all(&dir).expect("dir");
    dir
}

/// Row `n` of the CSV: every 500th has a column too many (an error record).
fn row(n: usize) -> String {
    if n % 500 == 250 {
        format!("{n},\"extra, quoted\",{},surplus", n * 3)
    } else {
        format!("{n},\"name {n}, with a comma\",{}", n * 3)
    }
}

/// What CSVTOJSON must make of a good row, computed here without the agent's code.
/// Fields in the order of `customFieldNames`, as the agent writes them.
fn expected_json(n: usize) -> String {
    format!(
        r#"{{"id":"{n}","name":"name {n}, with a comma","amount":"{}"}}"#,
        n * 3
    )
}

/// The agent process: CSV rows to a delivery stream, rows with the wrong column count to
/// an error Kinesis stream; every good row lands in S3 exactly once, converted, in calls
/// of at most `maxBufferSizeRecords`; every bad row is in the error stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_rows_reach_s3_through_firehose_and_bad_rows_the_error_stream() {
    const ROWS: usize = 20_000;
    const PER_CALL: usize = 200;
    let stack = LocalStack::require();
    let clients = AwsClients::new(&stack.aws).await;
    let name = unique("agent-fh");
    let dir = test_dir(&name);
    let delivery = Delivery::create(&stack, &clients, &name).await;
    let kinesis = KinesisClient::new(clients.kinesis());
    let errors = format!("{name}-errors");
    kinesis
        .create_stream(&errors, 1)
        .await
        .expect("CreateStream");
    kinesis
        .wait_until_active(&errors, Duration::from_secs(60))
        .await
        .expect("ACTIVE");

    let mut text = String::from("id,name,amount\n");
    for n in 0..ROWS {
        text.push_str(&row(n));
        text.push('\n');
    }
    std::fs::write(dir.join("rows.csv"), text).expect("csv");
    std::fs::write(
        dir.join("agent.json"),
        serde_json::json!({
            "checkpointFile": dir.join("checkpoints"),
            "flows": [{
                "filePattern": format!("{}/rows.csv", dir.display()),
                "deliveryStream": name,
                "initialPosition": "START_OF_FILE",
                "skipHeaderLines": 1,
                "maxBufferAgeMillis": 1000,
                "maxBufferSizeRecords": PER_CALL,
                "chief.errorKinesisStream": errors,
                "dataProcessingOptions": [{
                    "optionName": "CSVTOJSON",
                    "customFieldNames": ["id", "name", "amount"],
                }],
            }]
        })
        .to_string(),
    )
    .expect("agent.json");
    let log = dir.join("agent.log");
    let out = std::fs::File::create(&log).expect("log");
    let mut child = Command::new(BIN)
        .current_dir(workspace_root())
        .arg("--config")
        .arg(dir.join("agent.json"))
        .args([
            "--settings",
            "config/agent.toml",
            "--settings",
            "config/local.toml",
        ])
        .stdout(Stdio::from(out.try_clone().expect("log")))
        .stderr(Stdio::from(out))
        .spawn()
        .expect("spawn chief-agent");

    let bad: Vec<usize> = (0..ROWS).filter(|n| n % 500 == 250).collect();
    let objects = delivery.wait_for(ROWS - bad.len()).await;
    // Error records are sent with the others: wait for them too.
    let deadline = Instant::now() + Duration::from_secs(60);
    let error_records = loop {
        let records = stream_records(&kinesis, &errors).await;
        if records.len() >= bad.len() {
            break records;
        }
        assert!(Instant::now() < deadline, "{} error records", records.len());
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .expect("kill");
    assert!(status.success());
    let exit = child.wait().expect("wait");
    assert!(exit.success(), "agent exit {exit} (log {})", log.display());

    // Exactly the good rows, converted, once each.
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for record in objects.iter().flatten() {
        *counts.entry(record.clone()).or_default() += 1;
    }
    let expected: BTreeMap<String, usize> = (0..ROWS)
        .filter(|n| n % 500 != 250)
        .map(|n| (expected_json(n), 1))
        .collect();
    assert_eq!(counts.len(), expected.len(), "distinct records in S3");
    let missing = expected.keys().find(|k| !counts.contains_key(*k));
    let other = counts.iter().find(|(k, n)| expected.get(*k) != Some(n));
    assert!(
        counts == expected,
        "S3 holds each good row exactly once: missing {missing:?}, unexpected {other:?}"
    );
    // One object per PutRecordBatch (moto), none larger than the flow allows.
    let largest = objects.iter().map(Vec::len).max().unwrap_or_default();
    assert!(largest <= PER_CALL, "a call of {largest} records");
    assert!(objects.len() >= (ROWS - bad.len()).div_ceil(PER_CALL));
    // The bad rows, each once, with their line numbers (the header is line 1).
    let mut lines: Vec<(u64, String)> = error_records
        .iter()
        .map(|r| {
            let v: serde_json::Value = serde_json::from_slice(r).expect("error record JSON");
            (
                v["line"].as_u64().expect("line"),
                v["data"].as_str().expect("data").to_owned(),
            )
        })
        .collect();
    lines.sort();
    let want: Vec<(u64, String)> = bad.iter().map(|&n| (n as u64 + 2, row(n))).collect();
    assert_eq!(lines, want, "the error stream holds exactly the bad rows");
    assert!(!dir.join("checkpoints.errors").exists(), "no error file");
    delivery.delete().await;
    let _ = clients
        .kinesis()
        .delete_stream()
        .stream_name(&errors)
        .send()
        .await;
}

async fn stream_records(client: &KinesisClient, stream: &str) -> Vec<Bytes> {
    let mut out = Vec::new();
    for shard in client.list_shards(stream).await.expect("shards") {
        let mut iterator = client
            .get_shard_iterator(stream, &shard.shard_id, &IteratorPosition::TrimHorizon)
            .await
            .expect("iterator");
        loop {
            let page = client
                .get_records(stream, &iterator, 10_000)
                .await
                .expect("records");
            out.extend(page.records.iter().map(|r| r.data.clone()));
            match page.next_shard_iterator {
                Some(next) if !page.records.is_empty() => iterator = next,
                _ => break,
            }
        }
    }
    out
}

/// The real client, refusing entries as Firehose does under load: the first time a
/// record is seen, one in 7 is answered `ServiceUnavailableException` (and not passed
/// on), and every 5th call fails whole.
#[derive(Clone)]
struct Refusing {
    inner: FirehoseClient,
    state: Arc<Mutex<RefusingState>>,
}

#[derive(Default)]
struct RefusingState {
    seen: HashSet<Bytes>,
    calls: usize,
    refused_entries: usize,
    refused_calls: usize,
    passed_on: usize,
}

impl FirehoseApi for Refusing {
    async fn check(&self, stream: &str) -> Result<(), FirehoseFailure> {
        self.inner.check(stream).await
    }

    async fn put_record_batch(
        &self,
        stream: &str,
        records: &[Bytes],
    ) -> Result<Vec<Option<FirehoseFailure>>, FirehoseFailure> {
        let refuse: Vec<bool> = {
            let mut state = self.state.lock().expect("state");
            state.calls += 1;
            if state.calls.is_multiple_of(5) {
                state.refused_calls += 1;
                return Err(FirehoseFailure {
                    code: "ServiceUnavailableException".into(),
                    message: "Slow down.".into(),
                    fatal: false,
                });
            }
            let mut refuse = Vec::new();
            for (i, r) in records.iter().enumerate() {
                let first = state.seen.insert(r.clone());
                refuse.push(first && i % 7 == 3);
            }
            state.refused_entries += refuse.iter().filter(|r| **r).count();
            refuse
        };
        let passed: Vec<Bytes> = records
            .iter()
            .zip(&refuse)
            .filter(|(_, r)| !**r)
            .map(|(d, _)| d.clone())
            .collect();
        let mut answers = if passed.is_empty() {
            Vec::new()
        } else {
            self.inner.put_record_batch(stream, &passed).await?
        }
        .into_iter();
        self.state.lock().expect("state").passed_on += passed.len();
        Ok(refuse
            .iter()
            .map(|r| {
                if *r {
                    Some(FirehoseFailure {
                        code: "ServiceUnavailableException".into(),
                        message: "Slow down.".into(),
                        fatal: false,
                    })
                } else {
                    answers.next().flatten()
                }
            })
            .collect())
    }
}

/// Entries Firehose refuses are sent again, and only those: every line is in S3 exactly
/// once although calls and entries were refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_refused_entries_are_sent_again() {
    const LINES: usize = 5_000;
    let stack = LocalStack::require();
    let clients = AwsClients::new(&stack.aws).await;
    let name = unique("agent-fh-retry");
    let dir = test_dir(&name);
    let delivery = Delivery::create(&stack, &clients, &name).await;
    let mut f = std::fs::File::create(dir.join("app.log")).expect("log");
    for n in 0..LINES {
        writeln!(f, "line {n:05}").expect("write");
    }
    drop(f);
    let agent: chief_agent::config::AgentConfig = serde_json::from_value(serde_json::json!({
        "checkpointFile": dir.join("checkpoints"),
        "flows": [{
            "filePattern": format!("{}/app.log", dir.display()),
            "deliveryStream": name,
            "initialPosition": "START_OF_FILE",
            "maxBufferAgeMillis": 1000,
            "maxBufferSizeRecords": 100,
            "retryInitialBackoffMillis": 10,
            "retryMaxBackoffMillis": 50,
        }]
    }))
    .expect("agent.json");
    let refusing = Refusing {
        inner: FirehoseClient::new(firehose_client(&stack, &clients)),
        state: Arc::default(),
    };
    let token = tokio_util::sync::CancellationToken::new();
    let settings = chief_agent::AgentSettings {
        drain_ms: 10_000,
        ..Default::default()
    };
    let task = tokio::spawn(chief_agent::run_with(
        agent,
        settings,
        KinesisClient::new(clients.kinesis()),
        refusing.clone(),
        token.clone(),
        chief_config::health::Health::new(),
    ));
    let objects = delivery.wait_for(LINES).await;
    token.cancel();
    let stats = task.await.expect("join").expect("agent");
    let (refused_entries, refused_calls, passed_on) = {
        let state = refusing.state.lock().expect("state");
        (state.refused_entries, state.refused_calls, state.passed_on)
    };
    // The faults happened.
    assert!(
        refused_entries > 100 && refused_calls > 5,
        "{refused_entries} entries and {refused_calls} calls refused"
    );
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for record in objects.iter().flatten() {
        *counts.entry(record.clone()).or_default() += 1;
    }
    let expected: BTreeMap<String, usize> =
        (0..LINES).map(|n| (format!("line {n:05}"), 1)).collect();
    assert!(counts == expected, "S3 holds every line exactly once");
    // What reached Firehose is what S3 holds: nothing taken was sent twice.
    assert_eq!(passed_on, LINES);
    assert_eq!(stats[0].acked, LINES as u64);
    // The checkpoint is at the file's end.
    let checkpoints =
        chief_agent::checkpoint::Checkpoints::load(&dir.join("checkpoints")).expect("checkpoint");
    let size = std::fs::metadata(dir.join("app.log")).expect("log").len();
    let offsets: Vec<u64> = checkpoints
        .flows
        .values()
        .flat_map(|f| f.files.iter().map(|p| p.offset))
        .collect();
    assert_eq!(offsets, vec![size]);
    delivery.delete().await;
}

/// A delivery stream that does not exist: the agent exits non-zero at once, with one
/// line naming it.
#[test]
fn a_missing_delivery_stream_fails_loudly() {
    let stack = LocalStack::require();
    let _ = stack;
    let dir = test_dir(&unique("agent-fh-missing"));
    std::fs::write(dir.join("app.log"), "a\n").expect("log");
    std::fs::write(
        dir.join("agent.json"),
        serde_json::json!({
            "checkpointFile": dir.join("checkpoints"),
            "flows": [{
                "filePattern": format!("{}/app.log", dir.display()),
                "deliveryStream": "no-such-delivery-stream",
            }]
        })
        .to_string(),
    )
    .expect("agent.json");
    let started = Instant::now();
    let out = Command::new(BIN)
        .current_dir(workspace_root())
        .arg("--config")
        .arg(dir.join("agent.json"))
        .args([
            "--settings",
            "config/agent.toml",
            "--settings",
            "config/local.toml",
        ])
        .output()
        .expect("run chief-agent");
    assert!(!out.status.success());
    assert!(started.elapsed() < Duration::from_secs(30));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("Firehose delivery stream no-such-delivery-stream")
            && stderr.contains("ResourceNotFoundException"),
        "{stderr}"
    );
}
