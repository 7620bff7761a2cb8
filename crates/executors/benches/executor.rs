//! Executor benchmark (`cargo bench -p chief-executors`): `chief-order-factory-s3`'s whole
//! path — consumer (fetch, deaggregate, leases, checkpoints) → parse → de-duplication →
//! `LOAD DATA` encoding → S3 batch files — on one core (a current-thread runtime).
//!
//! Phases (`CHIEF_BENCH_PHASES=memory,local`, default both):
//! - `memory`: in-memory stream, lease table and object sink; orders/s per core of the
//!   executor's own work (`CHIEF_BENCH_ORDERS`, default 200,000).
//! - `local`: kinesis-local, moto (DynamoDB leases, S3) from `make stack-up`; end-to-end
//!   orders/s of draining a backlog (`CHIEF_BENCH_LOCAL_ORDERS`, default 20,000).
//!
//! Orders come from `chief-datagen` with 10 % duplicates, put by the producer (KPL
//! aggregation) before the clock starts; the clock stops when every shard's checkpoint
//! reached its last record, which happens only after the batch files are written.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chief_aggregation::UserRecord;
use chief_config::aws::AwsClients;
use chief_config::local_stack::LocalStack;
use chief_consumer::{DynamoDbLeaseStore, LeaseStore, MemoryLeaseStore};
use chief_datagen::Generator;
use chief_executors::{Executor, ExecutorConfig, Parts};
use chief_pipeline::model::{Order, OrderId};
use chief_pipeline::object_sink::{MemoryObjectSink, ObjectSink, S3ObjectSink};
use chief_pipeline::search::MemorySearchIndex;
use chief_pipeline::tsv;
use chief_producer::{Producer, ProducerConfig};
use chief_stream::{KinesisClient, MemoryStreams, StreamClient};
use tokio_util::sync::CancellationToken;

const STREAM: &str = "OrdersStream";
const SHARDS: u32 = 4;

fn phase(name: &str) -> bool {
    std::env::var("CHIEF_BENCH_PHASES").map_or(true, |p| p.split(',').any(|x| x == name))
}

fn count(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn orders(n: usize) -> (Vec<Vec<u8>>, usize) {
    let sent: Vec<Vec<u8>> = Generator::<Order>::new(7, 0.1)
        .expect("generator")
        .take(n)
        .map(|o| serde_json::to_vec(&o).expect("json"))
        .collect();
    let unique = sent
        .iter()
        .filter_map(|o| OrderId::from_json(o).ok())
        .collect::<BTreeSet<_>>()
        .len();
    (sent, unique)
}

async fn produce<C: StreamClient>(client: C, stream: &str, sent: &[Vec<u8>]) {
    let producer = Producer::start(client, stream, ProducerConfig::default())
        .await
        .expect("producer");
    let mut receipts = Vec::with_capacity(sent.len());
    for data in sent {
        let key = OrderId::from_json(data).expect("orderid");
        let record = UserRecord {
            partition_key: key.as_str().to_owned(),
            explicit_hash_key: None,
            data: Bytes::from(data.clone()),
        };
        receipts.push(producer.send(record).await.expect("send"));
    }
    producer.flush().await;
    for r in receipts {
        r.await.expect("put");
    }
    producer.shutdown().await;
}

/// The last sequence number of every shard.
async fn tips<C: StreamClient>(client: &C, stream: &str) -> Vec<(String, String)> {
    chief_stream::shard_tips(client, stream)
        .await
        .expect("shard tips")
}

/// Runs the executor until every shard is checkpointed at its tip; the time it took.
async fn drain<C, L, O>(
    config: ExecutorConfig,
    parts: Parts<C, L, O, MemorySearchIndex>,
    leases: L,
    tips: &[(String, String)],
) -> Duration
where
    C: StreamClient + Clone,
    L: LeaseStore + Clone,
    O: ObjectSink + Clone + 'static,
{
    let token = CancellationToken::new();
    let started = Instant::now();
    let run = tokio::spawn(chief_executors::run_with(
        Executor::OrderFactoryS3,
        config,
        parts,
        token.clone(),
    ));
    loop {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let leases = leases.list_leases().await.expect("leases");
        let done = tips.iter().all(|(shard, tip)| {
            leases.iter().any(|l| {
                &l.lease_key == shard
                    && chief_stream::compare_sequence_numbers(&l.checkpoint.sequence_number, tip)
                        .is_ge()
                    && !l.checkpoint.is_sentinel()
            })
        });
        if done {
            break;
        }
    }
    let elapsed = started.elapsed();
    token.cancel();
    run.await.expect("join").expect("executor");
    elapsed
}

async fn rows<O: ObjectSink>(sink: &O) -> usize {
    let mut n = 0;
    for meta in sink.list("ChiefOrderS3/").await.expect("list") {
        n += tsv::read_rows(&sink.get(&meta.key).await.expect("get").body).len();
    }
    n
}

fn config(stream: &str, table: &str) -> ExecutorConfig {
    let mut c = ExecutorConfig::default();
    c.consumer.stream = stream.to_owned();
    c.consumer.table = table.to_owned();
    c.consumer.poll_interval_ms = 10;
    c.consumer.idle_time_max_ms = 50;
    c.archive.bucket = "bench".into();
    c.archive.prefix = "ChiefOrderS3".into();
    c.archive.max_age_ms = 200;
    c
}

async fn memory_phase() {
    let n = count("CHIEF_BENCH_ORDERS", 200_000);
    let (sent, unique) = orders(n);
    let streams = MemoryStreams::new(1);
    streams.create_stream(STREAM, SHARDS);
    produce(streams.clone(), STREAM, &sent).await;
    let tips = tips(&streams, STREAM).await;
    let leases = MemoryLeaseStore::new("bench");
    let sink = Arc::new(MemoryObjectSink::new());
    let parts = Parts {
        stream: streams.clone(),
        leases: leases.clone(),
        objects: Arc::clone(&sink),
        index: None,
        health: chief_config::health::Health::new(),
    };
    let elapsed = drain(config(STREAM, "bench"), parts, leases, &tips).await;
    let written = rows(&sink).await;
    assert_eq!(written, unique, "every unique order written once");
    println!(
        "executor memory: {n} orders ({unique} unique) in {:.2}s = {:.0} orders/s per core",
        elapsed.as_secs_f64(),
        n as f64 / elapsed.as_secs_f64()
    );
}

async fn local_phase() {
    let n = count("CHIEF_BENCH_LOCAL_ORDERS", 20_000);
    let (sent, unique) = orders(n);
    let stack = LocalStack::require();
    let clients = AwsClients::new(&stack.aws).await;
    let suffix = uuid::Uuid::new_v4().simple().to_string()[..10].to_owned();
    let stream = format!("bench-orders-{suffix}");
    let bucket = format!("bench-{suffix}");
    let kinesis = KinesisClient::new(clients.kinesis());
    kinesis
        .create_stream(&stream, SHARDS as i32)
        .await
        .expect("stream");
    kinesis
        .wait_until_active(&stream, Duration::from_secs(60))
        .await
        .expect("active");
    clients
        .s3()
        .create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .expect("bucket");
    produce(kinesis.clone(), &stream, &sent).await;
    let tips = tips(&kinesis, &stream).await;
    let table = format!("bench-leases-{suffix}");
    let leases = DynamoDbLeaseStore::new(clients.dynamodb(), &table);
    let sink = S3ObjectSink::new(clients.s3(), bucket.clone());
    let mut config = config(&stream, &table);
    config.aws = stack.aws.clone();
    config.archive.bucket = bucket;
    config.consumer.poll_interval_ms = 200;
    config.consumer.idle_time_max_ms = 200;
    let parts = Parts {
        stream: kinesis,
        leases: leases.clone(),
        objects: sink.clone(),
        index: None,
        health: chief_config::health::Health::new(),
    };
    let elapsed = drain(config, parts, leases, &tips).await;
    let written = rows(&sink).await;
    assert_eq!(written, unique, "every unique order written once");
    println!(
        "executor local stack: {n} orders ({unique} unique) in {:.2}s = {:.0} orders/s end to end",
        elapsed.as_secs_f64(),
        n as f64 / elapsed.as_secs_f64()
    );
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        if phase("memory") {
            memory_phase().await;
        }
        if phase("local") {
            local_phase().await;
        }
    });
}
