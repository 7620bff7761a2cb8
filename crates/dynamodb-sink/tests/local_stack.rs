//! `chief-dynamodb-sink` on the local stack (`make stack-up`): kinesis-local, moto's
//! DynamoDB and S3 through the real SDK clients. DynamoDB misbehaves as it does under load
//! (a fault wrapper refuses every 4th `BatchWriteItem` with
//! `ProvisionedThroughputExceededException` and leaves half the items of every 3rd
//! unprocessed): the test proves both faults happened, then that the table holds exactly
//! one item per record with every attribute, the records that are not items are in the
//! dead-letter prefix, and each shard is checkpointed at its last record.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::AttributeValue;
use base64::Engine as _;
use bytes::Bytes;
use chief_config::aws::AwsClients;
use chief_config::health::Health;
use chief_config::local_stack::LocalStack;
use chief_consumer::{DynamoDbLeaseStore, LeaseStore};
use chief_dynamodb_sink::{Parts, SinkConfig, run_with};
use chief_sinks::dynamodb::{DynamoDbItemTable, FaultyItemTable};
use chief_sinks::object::S3ObjectSink;
use chief_stream::{KinesisClient, PutEntry, StreamClient};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

async fn scan(
    clients: &AwsClients,
    table: &str,
) -> Vec<std::collections::HashMap<String, AttributeValue>> {
    let mut out = Vec::new();
    let mut start = None;
    loop {
        let page = clients
            .dynamodb()
            .scan()
            .table_name(table)
            .set_exclusive_start_key(start)
            .send()
            .await
            .expect("Scan");
        out.extend(page.items().iter().cloned());
        match page.last_evaluated_key() {
            Some(k) if !k.is_empty() => start = Some(k.clone()),
            _ => break,
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn throttling_and_unprocessed_items_lose_no_row_and_bad_records_are_dead_lettered() {
    let stack = LocalStack::require();
    let clients = AwsClients::new(&stack.aws).await;
    let suffix = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
    let stream = format!("enriched-{suffix}");
    let table = format!("OrdersEnriched-{suffix}");
    let bucket = format!("chief-dynamodb-sink-{suffix}");
    let kinesis = KinesisClient::new(clients.kinesis());
    kinesis
        .create_stream(&stream, 2)
        .await
        .expect("CreateStream");
    kinesis
        .wait_until_active(&stream, Duration::from_secs(60))
        .await
        .expect("stream ACTIVE");
    chief_sinks::dynamodb::ensure_table(
        &clients.dynamodb(),
        &table,
        &chief_dynamodb_sink::TableSettings::default().key_schema(),
    )
    .await
    .expect("CreateTable");
    clients
        .s3()
        .create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .expect("CreateBucket");

    // 1,200 rows (600 orders × 2 items), some written twice (as after a fail-over), and
    // three records that are not items of the table.
    let mut expected: BTreeMap<(u64, u64), Value> = BTreeMap::new();
    let mut records: Vec<(String, Bytes)> = Vec::new();
    for order in 0..600u64 {
        for item in 0..2u64 {
            let row = json!({
                "orderId": 10_000_001 + order,
                "itemId": 999_900_001 + order * 2 + item,
                "itemQuantity": 1 + (order + item) % 3,
                "itemAmount": (1_250 + order) as f64 / 100.0,
                "productName": format!("Sleek Silk Hat {order}"),
                "shipToState": "WA",
                "ingestionTime": "2026-12-05T03:00:00.000Z",
            });
            expected.insert(
                (10_000_001 + order, 999_900_001 + order * 2 + item),
                row.clone(),
            );
            let bytes = Bytes::from(serde_json::to_vec(&row).expect("json"));
            records.push(((10_000_001 + order).to_string(), bytes.clone()));
            if order % 50 == 0 {
                records.push(((10_000_001 + order).to_string(), bytes));
            }
        }
    }
    let bad: Vec<Bytes> = vec![
        Bytes::from_static(b"not json at all"),
        Bytes::from_static(br#"{"orderId": 1}"#),
        Bytes::from_static(br#"{"orderId": "x", "itemId": 2}"#),
    ];
    for (i, b) in bad.iter().enumerate() {
        records.insert(100 + i * 300, (format!("bad-{i}"), b.clone()));
    }
    for chunk in records.chunks(250) {
        let entries: Vec<PutEntry> = chunk
            .iter()
            .map(|(key, data)| PutEntry {
                partition_key: key.clone(),
                explicit_hash_key: None,
                data: data.clone(),
            })
            .collect();
        let mut pending = entries;
        for _ in 0..50 {
            let results = kinesis
                .put_records(&stream, pending.clone())
                .await
                .expect("PutRecords");
            pending = pending
                .into_iter()
                .zip(results)
                .filter(|(_, r)| r.is_err())
                .map(|(e, _)| e)
                .collect();
            if pending.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(pending.is_empty(), "records not put");
    }

    let mut config = SinkConfig {
        aws: stack.aws.clone(),
        ..SinkConfig::default()
    };
    config.consumer.stream = stream.clone();
    config.consumer.table = format!("chief-dynamodb-sink-{suffix}");
    config.consumer.poll_interval_ms = 100;
    config.consumer.max_records = 300;
    config.sink.table = table.clone();
    config.sink.retry.initial_backoff_ms = 5;
    config.sink.retry.max_backoff_ms = 50;
    config.dead_letter.bucket = bucket.clone();
    let faulty = Arc::new(FaultyItemTable::new(
        DynamoDbItemTable::new(clients.dynamodb(), table.clone(), config.sink.key_schema()),
        4,
        3,
    ));
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(run_with(
        config.clone(),
        Parts {
            stream: kinesis.clone(),
            leases: DynamoDbLeaseStore::new(clients.dynamodb(), &config.consumer.table),
            table: Arc::clone(&faulty),
            objects: S3ObjectSink::new(clients.s3(), bucket.clone()),
            health: Health::default(),
        },
        shutdown.clone(),
    ));
    // Until every shard is checkpointed at its last record (what was put is all there is).
    let leases = DynamoDbLeaseStore::new(clients.dynamodb(), &config.consumer.table);
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut last_by_shard: BTreeMap<String, String> = BTreeMap::new();
    for (shard, record) in chief_stream::read_all(&kinesis, &stream)
        .await
        .expect("read")
    {
        last_by_shard.insert(shard, record.sequence_number);
    }
    loop {
        let list = leases.list_leases().await.expect("leases");
        let done = last_by_shard.iter().all(|(shard, last)| {
            list.iter()
                .any(|l| &l.lease_key == shard && l.checkpoint.sequence_number == *last)
        });
        if done {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not every shard checkpointed at its last record within 120 s: {list:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    shutdown.cancel();
    run.await.expect("join").expect("the sink stops cleanly");

    // The faults happened.
    assert!(
        faulty.throttled_calls() > 0,
        "no BatchWriteItem was throttled"
    );
    assert!(
        faulty.unprocessed_items() > 0,
        "no item came back unprocessed"
    );
    // Exactly the rows, every attribute.
    let items = scan(&clients, &table).await;
    let got: BTreeMap<(u64, u64), Value> = items
        .iter()
        .map(|item| {
            let row = chief_sinks::dynamodb::json_of(&AttributeValue::M(item.clone()))
                .expect("an item of JSON attributes");
            let key = (
                row["orderId"].as_u64().expect("orderId"),
                row["itemId"].as_u64().expect("itemId"),
            );
            (key, row)
        })
        .collect();
    assert_eq!(items.len(), expected.len(), "one item per key");
    assert_eq!(got.len(), expected.len());
    for (key, row) in &expected {
        assert_eq!(got.get(key), Some(row), "item {key:?}");
    }
    // The records that are not items, in the dead-letter prefix with their bytes.
    let listed = clients
        .s3()
        .list_objects_v2()
        .bucket(&bucket)
        .prefix("errors/chief-dynamodb-sink/")
        .send()
        .await
        .expect("ListObjectsV2");
    let mut dead: BTreeSet<Vec<u8>> = BTreeSet::new();
    for object in listed.contents() {
        let body = clients
            .s3()
            .get_object()
            .bucket(&bucket)
            .key(object.key().unwrap_or_default())
            .send()
            .await
            .expect("GetObject")
            .body
            .collect()
            .await
            .expect("body")
            .into_bytes();
        let letter: Value = serde_json::from_slice(&body).expect("dead letter JSON");
        assert!(
            letter["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{letter}"
        );
        dead.insert(
            base64::engine::general_purpose::STANDARD
                .decode(letter["data_base64"].as_str().expect("data_base64"))
                .expect("base64"),
        );
    }
    let bad: BTreeSet<Vec<u8>> = bad.iter().map(|b| b.to_vec()).collect();
    assert_eq!(dead, bad, "the dead letters are the three bad records");
    let _ = clients
        .kinesis()
        .delete_stream()
        .stream_name(&stream)
        .send()
        .await;
}
