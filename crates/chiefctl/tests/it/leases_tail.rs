//! `chiefctl leases` and `chiefctl tail` against the local stack (`make stack-up`).

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use chief_aggregation::UserRecord;
use chief_config::aws::AwsClients;
use chief_config::local_stack::{LocalStack, workspace_root};
use chief_consumer::{DynamoDbLeaseStore, ExtendedSequenceNumber, Lease, LeaseStore};
use chief_producer::{Producer, ProducerConfig};
use chief_stream::KinesisClient;

fn chiefctl(args: &[&str]) -> Vec<serde_json::Value> {
    let out = Command::new(env!("CARGO_BIN_EXE_chiefctl"))
        .args(args)
        .arg("--config")
        .arg(workspace_root().join("config/local.toml"))
        .output()
        .expect("run chiefctl");
    assert!(
        out.status.success(),
        "chiefctl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

#[tokio::test]
async fn leases_prints_one_json_line_per_lease() {
    let stack = LocalStack::require();
    let clients = AwsClients::new(&stack.aws).await;
    let table = format!("chiefctl-leases-{}", uuid::Uuid::new_v4().simple());
    let store = DynamoDbLeaseStore::new(clients.dynamodb(), &table);
    store.ensure_table().await.expect("table");
    let mut parent = Lease::new("shardId-000000000000", ExtendedSequenceNumber::shard_end());
    parent.child_shard_ids = BTreeSet::from(["shardId-000000000001".to_owned()]);
    store.create_lease_if_absent(&parent).await.expect("create");
    let mut child = Lease::new(
        "shardId-000000000001",
        ExtendedSequenceNumber::new("4959", 3),
    );
    child.parent_shard_ids = BTreeSet::from(["shardId-000000000000".to_owned()]);
    child.lease_owner = Some("worker-1".to_owned());
    child.lease_counter = 12;
    store.create_lease_if_absent(&child).await.expect("create");

    let lines = chiefctl(&[
        "leases",
        "--table",
        &table,
        "--endpoint",
        stack.aws.dynamodb.endpoint.as_deref().expect("endpoint"),
    ]);
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["shard"], "shardId-000000000000");
    assert_eq!(lines[0]["owner"], serde_json::Value::Null);
    assert_eq!(lines[0]["checkpoint"], "SHARD_END");
    assert_eq!(lines[0]["children"][0], "shardId-000000000001");
    assert_eq!(lines[1]["owner"], "worker-1");
    assert_eq!(lines[1]["counter"], 12);
    assert_eq!(lines[1]["checkpoint"], "4959");
    assert_eq!(lines[1]["sub_sequence"], 3);
    assert_eq!(lines[1]["parents"][0], "shardId-000000000000");
    let _ = clients
        .dynamodb()
        .delete_table()
        .table_name(&table)
        .send()
        .await;
}

#[tokio::test]
async fn leases_reads_chief_variables_without_a_config_file_and_fails_in_one_readable_line() {
    let stack = LocalStack::require();
    let clients = AwsClients::new(&stack.aws).await;
    let table = format!("chiefctl-env-{}", uuid::Uuid::new_v4().simple());
    let store = DynamoDbLeaseStore::new(clients.dynamodb(), &table);
    store.ensure_table().await.expect("table");
    let lease = Lease::new("shardId-000000000000", ExtendedSequenceNumber::new("1", 0));
    store.create_lease_if_absent(&lease).await.expect("create");
    let endpoint = stack.aws.dynamodb.endpoint.clone().expect("endpoint");
    let run = |endpoint: &str| {
        Command::new(env!("CARGO_BIN_EXE_chiefctl"))
            .args(["leases", "--table", &table])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_ACCESS_KEY_ID", "chief-local")
            .env("AWS_SECRET_ACCESS_KEY", "chief-local")
            .env("CHIEF__AWS__REGION", "us-east-1")
            .env("CHIEF__AWS__DYNAMODB__ENDPOINT", endpoint)
            .output()
            .expect("run chiefctl")
    };
    // No --config: the endpoint comes from CHIEF__AWS__DYNAMODB__ENDPOINT.
    let out = run(&endpoint);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(stdout.contains("shardId-000000000000"), "{stdout}");
    // Nothing listens there: one line saying what failed, no Debug dump.
    let out = run("http://127.0.0.1:9");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("chiefctl leases: "), "{stderr}");
    assert!(stderr.contains(&table), "names the table: {stderr}");
    assert!(
        !stderr.contains(" { ") && !stderr.contains("Some("),
        "no Debug dump: {stderr}"
    );
    let _ = clients
        .dynamodb()
        .delete_table()
        .table_name(&table)
        .send()
        .await;
}

#[tokio::test]
async fn tail_prints_deaggregated_records_from_trim_horizon() {
    let stack = LocalStack::require();
    let clients = AwsClients::new(&stack.aws).await;
    let kinesis = clients.kinesis();
    let stream = format!("chiefctl-tail-{}", uuid::Uuid::new_v4().simple());
    let client = KinesisClient::new(kinesis.clone());
    client
        .create_stream(&stream, 2)
        .await
        .expect("CreateStream");
    client
        .wait_until_active(&stream, Duration::from_secs(30))
        .await
        .expect("ACTIVE");
    let producer = Producer::start(
        KinesisClient::new(kinesis.clone()),
        &stream,
        ProducerConfig::default(),
    )
    .await
    .expect("producer");
    let mut receipts = Vec::new();
    for i in 0..60 {
        receipts.push(
            producer
                .send(UserRecord::new(
                    format!("k{}", i % 7),
                    format!("record-{i}"),
                ))
                .await
                .expect("send"),
        );
    }
    for r in receipts {
        assert!(r.await.is_ok());
    }
    producer.shutdown().await;

    let lines = chiefctl(&[
        "tail",
        "--stream",
        &stream,
        "--from",
        "trim-horizon",
        "--max-records",
        "60",
    ]);
    assert_eq!(lines.len(), 60);
    let mut data: Vec<String> = lines
        .iter()
        .map(|l| {
            let bytes = BASE64
                .decode(l["data"].as_str().expect("data"))
                .expect("base64");
            String::from_utf8(bytes).expect("utf8")
        })
        .collect();
    data.sort();
    let mut want: Vec<String> = (0..60).map(|i| format!("record-{i}")).collect();
    want.sort();
    assert_eq!(data, want);
    assert!(
        lines
            .iter()
            .any(|l| l["sub_sequence_number"].as_u64() > Some(0)),
        "records were aggregated"
    );
    let _ = kinesis.delete_stream().stream_name(&stream).send().await;
}
