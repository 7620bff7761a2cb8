//! What the dashboard's tests share: the local stack's streams, the dashboard started
//! in-process, generated input with duplicates and malformed records, and what the page
//! must end with, computed from that input.

#![allow(dead_code)]

pub mod webdriver;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use chief_config::aws::AwsClients;
use chief_config::local_stack::LocalStack;
use chief_consumer::DynamoDbLeaseStore;
use chief_dashboard::{DashboardConfig, Parts};
use chief_datagen::Generator;
use chief_pipeline::model::{JobResult, Order};
use chief_producer::{Producer, ProducerConfig, UserRecord};
use chief_stream::KinesisClient;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

/// What the page must end with, computed from the records sent.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Expected {
    pub orders: u64,
    pub jobresults: u64,
    pub revenue_cents: u64,
    pub duplicates: u64,
    pub bad: u64,
    pub statuses: BTreeMap<String, u64>,
}

impl Expected {
    pub fn of(totals: &Value) -> Self {
        let n = |k: &str| {
            totals[k]
                .as_u64()
                .unwrap_or_else(|| panic!("{k} in {totals}"))
        };
        Self {
            orders: n("orders"),
            jobresults: n("jobresults"),
            revenue_cents: n("revenue_cents"),
            duplicates: n("duplicates"),
            bad: n("bad"),
            statuses: totals["statuses"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| (k.clone(), v.as_u64().unwrap_or_default()))
                        .collect()
                })
                .unwrap_or_default(),
        }
    }
}

/// Generated orders and job results (with duplicates) plus malformed records, and what
/// the dashboard must count of them.
pub struct Input {
    pub orders: Vec<Bytes>,
    pub jobs: Vec<Bytes>,
}

pub fn input(
    seed: u64,
    count: usize,
    expected: &mut Expected,
    seen: &mut (BTreeSet<String>, BTreeSet<String>),
) -> Input {
    let mut orders = Generator::<Order>::new(seed, 0.2).expect("generator");
    let mut jobs = Generator::<JobResult>::new(seed, 0.2).expect("generator");
    let mut out = Input {
        orders: Vec::new(),
        jobs: Vec::new(),
    };
    for i in 0..count {
        let (order, _) = orders.next_record();
        if seen.0.insert(order.orderid.as_str().to_owned()) {
            expected.orders += 1;
            expected.revenue_cents += order
                .items
                .iter()
                .map(|item| u64::from(item.quantity) * item.unit_price_cents)
                .sum::<u64>();
        } else {
            expected.duplicates += 1;
        }
        out.orders
            .push(Bytes::from(serde_json::to_vec(&order).expect("JSON")));
        let (job, _) = jobs.next_record();
        if seen.1.insert(job.orderid.as_str().to_owned()) {
            expected.jobresults += 1;
            *expected
                .statuses
                .entry(job.jobstatus.as_str().to_owned())
                .or_default() += 1;
        } else {
            expected.duplicates += 1;
        }
        out.jobs
            .push(Bytes::from(serde_json::to_vec(&job).expect("JSON")));
        if i % 100 == 50 {
            // Malformed: not JSON, and JSON without an orderid.
            out.orders.push(Bytes::from_static(b"{not json"));
            out.jobs.push(Bytes::from_static(
                br#"{"userid":"u","jobstatus":"completed"}"#,
            ));
            expected.bad += 2;
        }
    }
    out
}

pub async fn send(producer: &Producer, records: &[Bytes]) {
    let batch: Vec<UserRecord> = records
        .iter()
        .enumerate()
        .map(|(i, data)| UserRecord {
            partition_key: format!("k{i}"),
            explicit_hash_key: None,
            data: data.clone(),
        })
        .collect();
    let outcomes = producer.send_batch(batch).await.expect("send_batch").await;
    for outcome in outcomes {
        outcome.expect("every record put");
    }
}

pub struct Stack {
    pub stack: LocalStack,
    pub clients: AwsClients,
    pub kinesis: KinesisClient,
    pub orders_stream: String,
    pub jobs_stream: String,
    pub id: String,
}

impl Stack {
    pub async fn new() -> Self {
        let stack = LocalStack::require();
        let clients = AwsClients::new(&stack.aws).await;
        let kinesis = KinesisClient::new(clients.kinesis());
        let id = uuid::Uuid::new_v4().simple().to_string()[..10].to_owned();
        let orders_stream = format!("dash-orders-{id}");
        let jobs_stream = format!("dash-jobs-{id}");
        for (stream, shards) in [(&orders_stream, 2), (&jobs_stream, 1)] {
            kinesis
                .create_stream(stream, shards)
                .await
                .expect("CreateStream");
            kinesis
                .wait_until_active(stream, Duration::from_secs(60))
                .await
                .expect("ACTIVE");
        }
        Self {
            stack,
            clients,
            kinesis,
            orders_stream,
            jobs_stream,
            id,
        }
    }

    pub fn config(&self) -> DashboardConfig {
        let mut config = DashboardConfig {
            aws: self.stack.aws.clone(),
            ..Default::default()
        };
        config.http.listen = "127.0.0.1:0".into();
        config.orders.stream.clone_from(&self.orders_stream);
        config.orders.table = format!("dash-orders-{}", self.id);
        config.orders.worker_id = Some(format!("dashboard-{}", self.id));
        config.orders.poll_interval_ms = 100;
        config.orders.idle_time_max_ms = 200;
        config.jobresults = config.orders.clone();
        config.jobresults.stream.clone_from(&self.jobs_stream);
        config.jobresults.table = format!("dash-jobs-{}", self.id);
        config
    }

    /// Starts a dashboard; its page's address.
    pub async fn start(
        &self,
        token: CancellationToken,
    ) -> (SocketAddr, tokio::task::JoinHandle<()>) {
        self.start_with(token, |_| {}).await
    }

    /// Starts a dashboard with `tweak` applied to its config; its page's address.
    pub async fn start_with(
        &self,
        token: CancellationToken,
        tweak: impl FnOnce(&mut DashboardConfig),
    ) -> (SocketAddr, tokio::task::JoinHandle<()>) {
        let mut config = self.config();
        tweak(&mut config);
        let parts = Parts {
            stream: self.kinesis.clone(),
            orders_leases: DynamoDbLeaseStore::new(self.clients.dynamodb(), &config.orders.table),
            jobresults_leases: DynamoDbLeaseStore::new(
                self.clients.dynamodb(),
                &config.jobresults.table,
            ),
            health: chief_config::health::Health::new(),
        };
        let addr = Arc::new(Mutex::new(None));
        let seen = Arc::clone(&addr);
        let task = tokio::spawn(async move {
            chief_dashboard::run_with(config, parts, token, move |a| {
                *seen.lock().expect("addr") = Some(a);
            })
            .await
            .expect("dashboard");
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(a) = *addr.lock().expect("addr") {
                return (a, task);
            }
            assert!(
                Instant::now() < deadline,
                "the dashboard did not start listening"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn producers(&self) -> (Producer, Producer) {
        let config = ProducerConfig::default();
        (
            Producer::start(self.kinesis.clone(), &self.orders_stream, config.clone())
                .await
                .expect("orders producer"),
            Producer::start(self.kinesis.clone(), &self.jobs_stream, config)
                .await
                .expect("jobs producer"),
        )
    }

    pub async fn delete(&self) {
        for stream in [&self.orders_stream, &self.jobs_stream] {
            let _ = self
                .clients
                .kinesis()
                .delete_stream()
                .stream_name(stream)
                .send()
                .await;
        }
    }
}

pub async fn http_get_json(addr: SocketAddr, path: &str) -> Value {
    let mut socket = tokio::net::TcpStream::connect(addr).await.expect("connect");
    socket
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .expect("request");
    let mut text = String::new();
    socket.read_to_string(&mut text).await.expect("response");
    let (head, body) = text.split_once("\r\n\r\n").expect("a response");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}
