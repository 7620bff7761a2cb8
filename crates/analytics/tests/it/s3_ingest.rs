//! `chief-s3-ingest` as a process on the local stack (`make stack-up`: moto's S3, SQS and
//! DynamoDB, kinesis-local): a bucket notifies a queue of every object created; hosts
//! upload the same growing log file again and again. The stream must hold every line
//! exactly once — the lines added since the last upload of a key, a last line only once
//! it has its newline, a shrunk file sent again from its start — and a duplicate
//! notification sends nothing. Every message is deleted once its lines are in.

use crate::support;

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;
use chief_config::aws::AwsClients;
use chief_config::local_stack::{LocalStack, workspace_root};
use chief_stream::{KinesisClient, read_all};
use support::create_queue;

const BIN: &str = env!("CARGO_BIN_EXE_chief-s3-ingest");

struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn stream_lines(client: &KinesisClient, stream: &str) -> Vec<String> {
    read_all(client, stream)
        .await
        .expect("the stream")
        .into_iter()
        .map(|(_, r)| String::from_utf8_lossy(&r.data).into_owned())
        .collect()
}

async fn wait_for(client: &KinesisClient, stream: &str, n: usize, what: &str) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let lines = stream_lines(client, stream).await;
        if lines.len() >= n {
            return lines;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: {} of {n} lines in the stream after 60 s",
            lines.len()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

fn lines(prefix: &str, range: std::ops::Range<usize>) -> String {
    range.map(|n| format!("{prefix} line {n:04}\n")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_lines_of_uploaded_logs_reach_the_stream_once() {
    let stack = LocalStack::require();
    let clients = AwsClients::new(&stack.aws).await;
    let id = uuid::Uuid::new_v4().simple().to_string()[..10].to_owned();
    let dir = workspace_root()
        .join(".local/e2e")
        .join(format!("s3-ingest-{id}"));
    std::fs::create_dir_all(&dir).expect("work dir");
    let (s3, sqs) = (clients.s3(), clients.sqs());
    let bucket = format!("chief-app-logs-{id}");
    s3.create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .expect("CreateBucket");
    let (queue, arn) = create_queue(&sqs, &format!("chief-app-logs-{id}")).await;
    use aws_sdk_s3::types::{Event, NotificationConfiguration, QueueConfiguration};
    s3.put_bucket_notification_configuration()
        .bucket(&bucket)
        .notification_configuration(
            NotificationConfiguration::builder()
                .queue_configurations(
                    QueueConfiguration::builder()
                        .queue_arn(&arn)
                        .events(Event::from("s3:ObjectCreated:*"))
                        .build()
                        .expect("queue configuration"),
                )
                .build(),
        )
        .send()
        .await
        .expect("PutBucketNotificationConfiguration");
    let kinesis = KinesisClient::new(clients.kinesis());
    let stream = format!("AppLogs-{id}");
    kinesis
        .create_stream(&stream, 1)
        .await
        .expect("CreateStream");
    kinesis
        .wait_until_active(&stream, Duration::from_secs(60))
        .await
        .expect("ACTIVE");
    std::fs::write(
        dir.join("ingest.toml"),
        format!(
            "[ingest]\nqueue_url = \"{queue}\"\nstream = \"{stream}\"\nstate_table = \"chief-s3-ingest-{id}\"\nwait_time_s = 0\nvisibility_timeout_s = 5\n"
        ),
    )
    .expect("config");
    let log = std::fs::File::create(dir.join("ingest.log")).expect("log");
    let mut process = Process(
        Command::new(BIN)
            .current_dir(workspace_root())
            .arg("--config")
            .arg(dir.join("ingest.toml"))
            .args(["--config", "config/local.toml"])
            .env("RUST_LOG", "info")
            .stdout(Stdio::from(log.try_clone().expect("log")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn chief-s3-ingest"),
    );
    let upload = |key: &'static str, body: String| {
        let (s3, bucket) = (s3.clone(), bucket.clone());
        async move {
            s3.put_object()
                .bucket(&bucket)
                .key(key)
                .body(ByteStream::from(body.into_bytes()))
                .send()
                .await
                .expect("PutObject");
        }
    };

    upload("logs/host-1.log", lines("host-1", 0..100)).await;
    wait_for(&kinesis, &stream, 100, "first upload").await;
    // The same file, grown: only the new lines.
    upload("logs/host-1.log", lines("host-1", 0..150)).await;
    wait_for(&kinesis, &stream, 150, "grown file").await;
    // A last line without its newline waits for it.
    upload(
        "logs/host-2.log",
        format!("{}host-2 tail", lines("host-2", 0..20)),
    )
    .await;
    wait_for(&kinesis, &stream, 170, "second host").await;
    upload(
        "logs/host-2.log",
        format!(
            "{}host-2 tail\n{}",
            lines("host-2", 0..20),
            lines("host-2", 20..25)
        ),
    )
    .await;
    wait_for(&kinesis, &stream, 176, "the tail ended").await;
    // A duplicate notification (the last message again) sends nothing.
    let event = serde_json::json!({"Records": [{
        "eventName": "ObjectCreated:Put",
        "s3": {"bucket": {"name": bucket}, "object": {"key": "logs/host-1.log", "size": 1, "eTag": "x"}}
    }]});
    sqs.send_message()
        .queue_url(&queue)
        .message_body(event.to_string())
        .send()
        .await
        .expect("SendMessage");
    // Rotated: a shorter file under the same key is a new file, sent from its start.
    upload("logs/host-1.log", lines("host-1 rotated", 0..30)).await;
    let got = wait_for(&kinesis, &stream, 206, "rotated file").await;

    // The queue drains: every message deleted once its lines were in.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        use aws_sdk_sqs::types::QueueAttributeName as A;
        let attributes = sqs
            .get_queue_attributes()
            .queue_url(&queue)
            .attribute_names(A::ApproximateNumberOfMessages)
            .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .expect("GetQueueAttributes");
        let count: u64 = attributes
            .attributes()
            .map(|a| a.values().filter_map(|v| v.parse::<u64>().ok()).sum())
            .unwrap_or_default();
        if count == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{count} messages left in the queue"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let got_after = stream_lines(&kinesis, &stream).await;
    assert_eq!(
        got_after.len(),
        got.len(),
        "nothing more after the duplicate"
    );

    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for line in &got_after {
        *counts.entry(line.clone()).or_default() += 1;
    }
    let mut expected: Vec<String> = lines("host-1", 0..150)
        .lines()
        .chain(lines("host-2", 0..20).lines())
        .chain(std::iter::once("host-2 tail"))
        .chain(lines("host-2", 20..25).lines())
        .chain(lines("host-1 rotated", 0..30).lines())
        .map(|l| format!("{l}\n"))
        .collect();
    expected.sort();
    let keys: Vec<String> = counts.keys().cloned().collect();
    assert_eq!(keys, expected, "every line, with its newline");
    assert!(counts.values().all(|c| *c == 1), "no line twice");
    // In order within a file (one shard).
    let host1: Vec<&String> = got_after
        .iter()
        .filter(|l| l.starts_with("host-1 line"))
        .collect();
    assert!(
        host1.windows(2).all(|w| w[0] < w[1]),
        "host-1's lines in order"
    );

    let status = Command::new("kill")
        .arg("-TERM")
        .arg(process.0.id().to_string())
        .status()
        .expect("kill");
    assert!(status.success());
    let exit = process.0.wait().expect("wait");
    assert!(
        exit.success(),
        "chief-s3-ingest exit {exit} (log {})",
        dir.join("ingest.log").display()
    );
}
