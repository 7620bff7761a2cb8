//! The four executors end to end on the local stack (`make stack-up`): real Kinesis
//! (kinesis-local), DynamoDB leases and S3 (moto), and the Elasticsearch stand-in. Each
//! test makes its own streams, bucket, lease tables and indices.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use chief_aggregation::UserRecord;
use chief_config::aws::AwsClients;
use chief_config::local_stack::LocalStack;
use chief_consumer::{DynamoDbLeaseStore, LeaseStore};
use chief_datagen::Generator;
use chief_executors::{Executor, ExecutorConfig};
use chief_pipeline::archive::DeadLetter;
use chief_pipeline::model::{JobResult, Order, OrderId};
use chief_pipeline::tsv;
use chief_producer::{Producer, ProducerConfig};
use chief_stream::KinesisClient;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

struct Env {
    stack: LocalStack,
    clients: AwsClients,
    suffix: String,
    bucket: String,
    orders: String,
    jobs: String,
}

async fn env() -> Env {
    // Logs on failure: `RUST_LOG=info cargo test -p chief-executors --test it local_stack::`.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let stack = LocalStack::require();
    let clients = AwsClients::new(&stack.aws).await;
    let suffix = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
    let bucket = format!("chief-exec-{suffix}");
    clients
        .s3()
        .create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .expect("CreateBucket");
    let kinesis = KinesisClient::new(clients.kinesis());
    let orders = format!("Orders-{suffix}");
    let jobs = format!("JobResults-{suffix}");
    for (name, shards) in [(&orders, 4), (&jobs, 2)] {
        kinesis
            .create_stream(name, shards)
            .await
            .expect("CreateStream");
    }
    for name in [&orders, &jobs] {
        kinesis
            .wait_until_active(name, Duration::from_secs(60))
            .await
            .expect("stream ACTIVE");
    }
    Env {
        stack,
        clients,
        suffix,
        bucket,
        orders,
        jobs,
    }
}

impl Env {
    /// Deletes the streams (kinesis-local has a shard limit across streams).
    async fn delete_streams(&self) {
        for name in [&self.orders, &self.jobs] {
            let _ = self
                .clients
                .kinesis()
                .delete_stream()
                .stream_name(name)
                .enforce_consumer_deletion(true)
                .send()
                .await;
        }
    }

    fn config(&self, executor: Executor) -> ExecutorConfig {
        let mut c = ExecutorConfig {
            aws: self.stack.aws.clone(),
            ..ExecutorConfig::default()
        };
        c.consumer.stream = match executor.kind() {
            chief_pipeline::archive::RowKind::JobResults => self.jobs.clone(),
            _ => self.orders.clone(),
        };
        c.consumer.table = format!("{}-{}", executor.name(), self.suffix);
        c.consumer.failover_time_ms = 3_000;
        c.consumer.lease_taking_interval_ms = 500;
        c.consumer.shard_sync_interval_ms = 2_000;
        c.consumer.poll_interval_ms = 100;
        c.consumer.idle_time_max_ms = 200;
        c.archive.bucket = self.bucket.clone();
        c.archive.prefix = prefix(executor).to_owned();
        c.archive.max_age_ms = 500;
        c.elasticsearch.url = self.stack.elasticsearch.url.clone();
        c.elasticsearch.index = self.index(executor);
        c.elasticsearch.max_age_ms = 200;
        c
    }

    fn index(&self, executor: Executor) -> String {
        match executor.kind() {
            chief_pipeline::archive::RowKind::JobResults => format!("jobresults-{}", self.suffix),
            _ => format!("orders-{}", self.suffix),
        }
    }

    /// Puts `records` (JSON bytes) with partition key = their `orderid` (or `bad-<n>`).
    async fn produce(&self, stream: &str, records: &[Vec<u8>]) {
        let producer = Producer::start(
            KinesisClient::new(self.clients.kinesis()),
            stream,
            // kinesis-local on a loaded machine is far slower than Kinesis.
            ProducerConfig {
                record_ttl_ms: 300_000,
                ..ProducerConfig::default()
            },
        )
        .await
        .expect("producer");
        let mut receipts = Vec::new();
        for (n, data) in records.iter().enumerate() {
            let key = OrderId::from_json(data)
                .map(|id| id.as_str().to_owned())
                .unwrap_or_else(|_| format!("bad-{n}"));
            let record = UserRecord {
                partition_key: key,
                explicit_hash_key: None,
                data: Bytes::from(data.clone()),
            };
            receipts.push(producer.send(record).await.expect("send"));
        }
        producer.flush().await;
        for receipt in receipts {
            assert!(receipt.await.is_ok(), "every record is put");
        }
        producer.shutdown().await;
    }

    fn start(&self, executor: Executor, worker: &str) -> Running {
        let mut config = self.config(executor);
        config.consumer.worker_id = Some(worker.to_owned());
        let token = CancellationToken::new();
        let handle = tokio::spawn(chief_executors::run(
            executor,
            config,
            token.clone(),
            chief_config::health::Health::new(),
        ));
        Running { token, handle }
    }

    /// Every object under `prefix`: key → body.
    async fn objects(&self, prefix: &str) -> BTreeMap<String, Vec<u8>> {
        let s3 = self.clients.s3();
        let list = s3
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .max_keys(1000)
            .send()
            .await
            .expect("ListObjectsV2");
        let mut out = BTreeMap::new();
        for object in list.contents() {
            let key = object.key().expect("key").to_owned();
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
                .expect("body")
                .into_bytes()
                .to_vec();
            out.insert(key, body);
        }
        out
    }

    /// The rows of every batch file of `executor`.
    async fn rows(&self, executor: Executor) -> Vec<Vec<Option<Vec<u8>>>> {
        self.objects(&format!("{}/", prefix(executor)))
            .await
            .values()
            .flat_map(|body| tsv::read_rows(body))
            .collect()
    }

    async fn es(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        http(&self.stack.elasticsearch.url, method, path, body).await
    }

    async fn es_count(&self, executor: Executor) -> u64 {
        let index = self.index(executor);
        self.es("POST", &format!("/{index}/_refresh"), None).await;
        let (status, body) = self.es("GET", &format!("/{index}/_count"), None).await;
        if status == 404 {
            return 0;
        }
        body["count"].as_u64().expect("count")
    }

    async fn leases(&self, executor: Executor) -> Vec<chief_consumer::Lease> {
        DynamoDbLeaseStore::new(
            self.clients.dynamodb(),
            format!("{}-{}", executor.name(), self.suffix),
        )
        .list_leases()
        .await
        .expect("leases")
    }
}

fn prefix(executor: Executor) -> &'static str {
    match executor {
        Executor::OrderFactoryS3 => "ChiefOrderS3",
        Executor::OrderEsS3 => "ChiefOrderEsS3",
        Executor::JobResultEs => "ChiefJobResultEs",
        Executor::JobResultNotifyS3 => "ChiefJobResultNotifyS3",
    }
}

struct Running {
    token: CancellationToken,
    handle: JoinHandle<Result<(), chief_executors::ExecutorError>>,
}

impl Running {
    async fn stop(self) {
        self.token.cancel();
        tokio::time::timeout(Duration::from_secs(60), self.handle)
            .await
            .expect("stops within 60 s")
            .expect("join")
            .expect("the executor stops cleanly");
    }
}

/// A minimal HTTP/1.0 client for the stand-in's extra endpoints.
async fn http(base: &str, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    let authority = base.trim_start_matches("http://").trim_end_matches('/');
    let mut stream = tokio::net::TcpStream::connect(authority)
        .await
        .expect("the Elasticsearch stand-in answers (make stack-up)");
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.0\r\nHost: {authority}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.expect("read");
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

/// Polls `check` until it is true, for at most `secs` seconds.
async fn eventually<F, Fut>(secs: u64, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if check().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {secs} s waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

fn orders(count: usize, seed: u64, duplicates: f64) -> Vec<Vec<u8>> {
    Generator::<Order>::new(seed, duplicates)
        .expect("generator")
        .take(count)
        .map(|o| serde_json::to_vec(&o).expect("json"))
        .collect()
}

fn job_results(count: usize, seed: u64, duplicates: f64) -> Vec<Vec<u8>> {
    Generator::<JobResult>::new(seed, duplicates)
        .expect("generator")
        .take(count)
        .map(|j| serde_json::to_vec(&j).expect("json"))
        .collect()
}

/// orderid → the record's bytes, for the unique records of `records`.
fn unique(records: &[Vec<u8>]) -> BTreeMap<String, Vec<u8>> {
    records
        .iter()
        .filter_map(|r| {
            // The record contract decides what reaches a sink.
            Order::parse(r)
                .map(|order| order.orderid)
                .or_else(|_| JobResult::parse(r).map(|job| job.orderid))
                .ok()
                .map(|id| (id.as_str().to_owned(), r.clone()))
        })
        .collect()
}

fn ids_of(rows: &[Vec<Option<Vec<u8>>>]) -> Vec<String> {
    rows.iter()
        .map(|row| String::from_utf8(row[0].clone().expect("orderid")).expect("utf-8"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_four_executors_sink_every_unique_record_exactly_once() {
    let env = env().await;
    let sent_orders = orders(1_500, 11, 0.1);
    let sent_jobs = job_results(800, 12, 0.1);
    let unique_orders = unique(&sent_orders);
    let unique_jobs = unique(&sent_jobs);
    assert!(unique_orders.len() < sent_orders.len() && unique_jobs.len() < sent_jobs.len());
    env.produce(&env.orders, &sent_orders).await;
    env.produce(&env.jobs, &sent_jobs).await;

    let running: Vec<Running> = Executor::ALL
        .iter()
        .map(|e| env.start(*e, "worker-1"))
        .collect();
    let expect = [
        (Executor::OrderFactoryS3, unique_orders.len()),
        (Executor::OrderEsS3, unique_orders.len()),
        (Executor::JobResultNotifyS3, unique_jobs.len()),
    ];
    for (executor, n) in expect {
        eventually(90, &format!("{executor} writes {n} rows"), || async {
            env.rows(executor).await.len() >= n
        })
        .await;
    }
    for (executor, n) in [
        (Executor::OrderEsS3, unique_orders.len()),
        (Executor::JobResultEs, unique_jobs.len()),
    ] {
        eventually(90, &format!("{executor} indexes {n} documents"), || async {
            env.es_count(executor).await >= n as u64
        })
        .await;
    }
    for r in running {
        r.stop().await;
    }

    // S3: every unique order exactly once, its orderdata the bytes that were sent.
    for executor in [Executor::OrderFactoryS3, Executor::OrderEsS3] {
        let rows = env.rows(executor).await;
        let ids = ids_of(&rows);
        assert_eq!(
            ids.len(),
            unique_orders.len(),
            "{executor}: no duplicate rows"
        );
        assert_eq!(
            ids.iter().cloned().collect::<BTreeSet<_>>(),
            unique_orders.keys().cloned().collect::<BTreeSet<_>>(),
            "{executor}: exactly the unique orders"
        );
        for row in &rows {
            assert_eq!(row.len(), 2);
            let id = String::from_utf8(row[0].clone().expect("id")).expect("utf-8");
            assert_eq!(row[1].as_deref(), Some(unique_orders[&id].as_slice()));
        }
    }
    // Job results: six columns, exactly as the writer encodes the parsed record.
    let rows = env.rows(Executor::JobResultNotifyS3).await;
    assert_eq!(
        rows.len(),
        unique_jobs.len(),
        "no duplicate job result rows"
    );
    for row in &rows {
        let id = String::from_utf8(row[0].clone().expect("id")).expect("utf-8");
        let job = JobResult::parse(&unique_jobs[&id]).expect("parse");
        let mut expected = Vec::new();
        tsv::write_job_result_row(&mut expected, &job);
        assert_eq!(tsv::read_rows(&expected), vec![row.clone()]);
    }
    // Elasticsearch: exactly the unique ids, each with its source.
    assert_eq!(
        env.es_count(Executor::OrderEsS3).await,
        unique_orders.len() as u64
    );
    assert_eq!(
        env.es_count(Executor::JobResultEs).await,
        unique_jobs.len() as u64
    );
    let (id, data) = unique_jobs.iter().next().expect("one");
    let (status, doc) = env
        .es(
            "GET",
            &format!("/{}/_doc/{id}", env.index(Executor::JobResultEs)),
            None,
        )
        .await;
    assert_eq!(status, 200, "{doc}");
    assert_eq!(
        doc["_source"],
        serde_json::from_slice::<Value>(data).expect("json")
    );
    // Graceful stop: every lease checkpointed and released.
    for executor in Executor::ALL {
        let leases = env.leases(executor).await;
        assert!(!leases.is_empty());
        for lease in leases {
            assert_eq!(lease.lease_owner, None, "{executor}: {lease:?} released");
            assert!(
                !lease.checkpoint.is_sentinel(),
                "{executor}: {lease:?} checkpointed"
            );
        }
    }
    // No dead letters in a clean run.
    assert!(env.objects("errors/").await.is_empty());
    env.delete_streams().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_share_the_shards_and_lose_nothing() {
    let env = env().await;
    let sent = orders(600, 21, 0.1);
    let unique_orders = unique(&sent);
    let a = env.start(Executor::OrderFactoryS3, "worker-a");
    let b = env.start(Executor::OrderFactoryS3, "worker-b");
    env.produce(&env.orders, &sent).await;
    eventually(90, "two leases each", || async {
        let leases = env.leases(Executor::OrderFactoryS3).await;
        let owned = |w: &str| {
            leases
                .iter()
                .filter(|l| l.lease_owner.as_deref() == Some(w))
                .count()
        };
        leases.len() == 4 && owned("worker-a") == 2 && owned("worker-b") == 2
    })
    .await;
    eventually(90, "every order written", || async {
        env.rows(Executor::OrderFactoryS3).await.len() >= unique_orders.len()
    })
    .await;
    a.stop().await;
    b.stop().await;
    let ids = ids_of(&env.rows(Executor::OrderFactoryS3).await);
    assert_eq!(
        ids.iter().cloned().collect::<BTreeSet<_>>(),
        unique_orders.keys().cloned().collect::<BTreeSet<_>>()
    );
    assert_eq!(ids.len(), unique_orders.len(), "no duplicate rows");
    env.delete_streams().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_records_are_dead_lettered_and_hostile_orderdata_round_trips() {
    let env = env().await;
    // Orders whose JSON carries every byte LOAD DATA escapes: raw tabs and newlines as
    // JSON whitespace, backslashes, a literal \N, and emoji.
    let mut sent: Vec<Vec<u8>> = (0..20)
        .map(|n| {
            format!(
                "{{\"orderid\":\"{:08x}-0000-4000-8000-{:012x}\",\t\"orderdata\":\n\"tab\\there \\\\N back\\\\slash \u{1F680}\\u0000 #{n}\"\r\n,\"user\":{{\"userid\":\"u\",\"name\":\"n\"}},\"factoryid\":\"f\",\"items\":[],\"timestamp\":\"2024-01-01T00:00:00Z\"}}",
                n, n
            )
            .into_bytes()
        })
        .collect();
    sent.insert(5, b"not json at all".to_vec());
    sent.insert(12, br#"{"name":"an order without an orderid"}"#.to_vec());
    // The record contract: a valid id in an array, or invalid UTF-8 beside a valid id.
    sent.insert(15, br#"["0000000f-0000-4000-8000-00000000000f"]"#.to_vec());
    let mut not_utf8 = sent[0].clone();
    let at = not_utf8.len() - 40;
    not_utf8[at] = 0xff;
    sent.insert(17, not_utf8);
    let bad: Vec<Vec<u8>> = [5, 12, 15, 17].map(|i| sent[i].clone()).to_vec();
    env.produce(&env.orders, &sent).await;
    let run = env.start(Executor::OrderFactoryS3, "worker-1");
    eventually(90, "20 rows", || async {
        env.rows(Executor::OrderFactoryS3).await.len() >= 20
    })
    .await;
    eventually(30, "4 dead letters", || async {
        env.objects("errors/chief-order-factory-s3/").await.len() >= 4
    })
    .await;
    run.stop().await;

    let rows = env.rows(Executor::OrderFactoryS3).await;
    let good = unique(&sent);
    assert_eq!(rows.len(), 20);
    for row in &rows {
        let id = String::from_utf8(row[0].clone().expect("id")).expect("utf-8");
        assert_eq!(
            row[1].as_deref(),
            Some(good[&id].as_slice()),
            "orderdata byte for byte"
        );
    }
    let letters = env.objects("errors/chief-order-factory-s3/").await;
    assert_eq!(letters.len(), 4, "{:?}", letters.keys());
    let mut raw: Vec<Vec<u8>> = Vec::new();
    for body in letters.values() {
        let letter: DeadLetter = serde_json::from_slice(body).expect("dead letter JSON");
        assert_eq!(letter.executor, "chief-order-factory-s3");
        assert!(!letter.error.is_empty());
        use base64::Engine as _;
        raw.push(
            base64::engine::general_purpose::STANDARD
                .decode(&letter.data_base64)
                .expect("base64"),
        );
    }
    raw.sort();
    let mut expected = bad.clone();
    expected.sort();
    assert_eq!(raw, expected, "the dead letters hold the exact bytes");
    // The shard went on: every lease checkpointed past the bad records.
    let leases = env.leases(Executor::OrderFactoryS3).await;
    for lease in &leases {
        assert!(
            !lease.checkpoint.is_sentinel() || lease.lease_owner.is_none(),
            "a lease held at a graceful stop and never checkpointed: {lease:?}\nall: {leases:#?}"
        );
    }
    env.delete_streams().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_fifth_of_bulk_items_rejected_429_elasticsearch_still_gets_every_id() {
    let env = env().await;
    let index = env.index(Executor::JobResultEs);
    let (status, body) = env
        .es(
            "PUT",
            &format!("/_standin/faults/{index}"),
            Some(&serde_json::json!({"reject_429_ratio": 0.2})),
        )
        .await;
    assert!(status < 300, "{status} {body}");
    let sent = job_results(500, 31, 0.1);
    let unique_jobs = unique(&sent);
    env.produce(&env.jobs, &sent).await;
    let run = env.start(Executor::JobResultEs, "worker-1");
    eventually(90, "every job result indexed", || async {
        env.es_count(Executor::JobResultEs).await >= unique_jobs.len() as u64
    })
    .await;
    run.stop().await;
    assert_eq!(
        env.es_count(Executor::JobResultEs).await,
        unique_jobs.len() as u64
    );
    let (_, stats) = env
        .es("GET", &format!("/_standin/stats/{index}"), None)
        .await;
    let rejected = stats["stats"]["rejected_429"]
        .as_u64()
        .expect("rejected_429");
    let items = stats["stats"]["bulk_items"].as_u64().expect("bulk_items");
    assert_eq!(
        items - rejected,
        unique_jobs.len() as u64,
        "every id indexed exactly once: {stats}"
    );
    assert_eq!(
        rejected,
        items / 5,
        "a fifth of the items were refused: {stats}"
    );
    for id in unique_jobs.keys().take(20) {
        let (status, _) = env.es("GET", &format!("/{index}/_doc/{id}"), None).await;
        assert_eq!(status, 200, "{id}");
    }
    env.delete_streams().await;
}
