//! `chief-dashboard` on the local stack (`make stack-up`: kinesis-local, moto's DynamoDB),
//! read through its own HTTP endpoints as a browser's `EventSource` reads them (a raw
//! HTTP/1.1 client that decodes the chunked `text/event-stream`): orders and job results
//! with duplicates and malformed records go in through chief's producer; the events'
//! totals must reach exactly the unique counts, revenue and statuses computed here from
//! the generated records; a client that reconnects with `Last-Event-ID` gets exactly the
//! events after it; a restarted dashboard ends with the same exact numbers.

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
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio_util::sync::CancellationToken;

/// One server-sent event.
#[derive(Debug, Clone)]
struct Sse {
    id: Option<u64>,
    event: String,
    data: Value,
}

/// A `GET /events` connection.
struct EventStream {
    reader: BufReader<tokio::net::TcpStream>,
    buffer: String,
}

impl EventStream {
    async fn open(addr: SocketAddr, last_event_id: Option<u64>) -> Self {
        let mut socket = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let resume = last_event_id.map_or(String::new(), |id| format!("Last-Event-ID: {id}\r\n"));
        socket
            .write_all(
                format!(
                    "GET /events HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n{resume}\r\n"
                )
                .as_bytes(),
            )
            .await
            .expect("request");
        let mut reader = BufReader::new(socket);
        let mut head = String::new();
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).await.expect("head");
            if line == "\r\n" || line.is_empty() {
                break;
            }
            head.push_str(&line);
        }
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(
            head.to_ascii_lowercase()
                .contains("content-type: text/event-stream"),
            "{head}"
        );
        assert!(
            head.to_ascii_lowercase()
                .contains("transfer-encoding: chunked"),
            "{head}"
        );
        Self {
            reader,
            buffer: String::new(),
        }
    }

    /// The next event, or `None` when the server closed the stream.
    async fn next(&mut self) -> Option<Sse> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let (mut id, mut event, mut data) = (None, "message".to_owned(), String::new());
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        id = Some(v.trim().parse().expect("numeric id"));
                    } else if let Some(v) = line.strip_prefix("event:") {
                        v.trim().clone_into(&mut event);
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.strip_prefix(' ').unwrap_or(v));
                    }
                }
                if data.is_empty() {
                    continue; // a keep-alive comment
                }
                let data = serde_json::from_str(&data).expect("event data is JSON");
                return Some(Sse { id, event, data });
            }
            // One chunk: its size in hex, CRLF, the bytes, CRLF.
            let mut size = String::new();
            if self.reader.read_line(&mut size).await.ok()? == 0 {
                return None;
            }
            let size = usize::from_str_radix(size.trim(), 16).expect("chunk size");
            if size == 0 {
                return None;
            }
            let mut chunk = vec![0; size + 2];
            self.reader.read_exact(&mut chunk).await.ok()?;
            chunk.truncate(size);
            self.buffer.push_str(
                &String::from_utf8(chunk)
                    .expect("UTF-8")
                    .replace("\r\n", "\n"),
            );
        }
    }
}

/// What the page must end with, computed from the records sent.
#[derive(Debug, Default, PartialEq, Eq)]
struct Expected {
    orders: u64,
    jobresults: u64,
    revenue_cents: u64,
    duplicates: u64,
    bad: u64,
    statuses: BTreeMap<String, u64>,
}

impl Expected {
    fn of(totals: &Value) -> Self {
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
struct Input {
    orders: Vec<Bytes>,
    jobs: Vec<Bytes>,
}

fn input(
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

async fn send(producer: &Producer, records: &[Bytes]) {
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

struct Stack {
    stack: LocalStack,
    clients: AwsClients,
    kinesis: KinesisClient,
    orders_stream: String,
    jobs_stream: String,
    id: String,
}

impl Stack {
    async fn new() -> Self {
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

    fn config(&self) -> DashboardConfig {
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
    async fn start(&self, token: CancellationToken) -> (SocketAddr, tokio::task::JoinHandle<()>) {
        let config = self.config();
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

    async fn producers(&self) -> (Producer, Producer) {
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

    async fn delete(&self) {
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

/// Reads events until the totals equal `expected`; every event's id follows the last.
async fn until(events: &mut EventStream, expected: &Expected, mut last: Option<u64>) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let event = tokio::time::timeout_at(deadline.into(), events.next())
            .await
            .unwrap_or_else(|_| panic!("the totals did not reach {expected:?}"))
            .expect("the stream stays open");
        let id = event.id.expect("every event has an id");
        let totals = match event.event.as_str() {
            "snapshot" => &event.data["totals"],
            "update" => {
                if let Some(last) = last {
                    assert_eq!(id, last + 1, "no event missed or repeated");
                }
                &event.data["totals"]
            }
            other => panic!("unexpected event {other}: {:?}", event.data),
        };
        last = Some(id);
        let got = Expected::of(totals);
        if got == *expected {
            return id;
        }
        assert!(
            got.orders <= expected.orders
                && got.jobresults <= expected.jobresults
                && got.bad <= expected.bad,
            "counted more than sent: {got:?} > {expected:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_events_reach_exactly_the_unique_counts_resume_after_last_event_id_and_survive_a_restart()
 {
    let stack = Stack::new().await;
    let token = CancellationToken::new();
    let (addr, task) = stack.start(token.clone()).await;
    let (orders, jobs) = stack.producers().await;
    let mut expected = Expected::default();
    let mut seen = (BTreeSet::new(), BTreeSet::new());

    // A browser opens the page before the first record.
    let mut events = EventStream::open(addr, None).await;
    let first = events.next().await.expect("a first event");
    assert_eq!(first.event, "snapshot");
    assert_eq!(first.data["totals"]["orders"], 0);

    let wave = input(7, 400, &mut expected, &mut seen);
    send(&orders, &wave.orders).await;
    send(&jobs, &wave.jobs).await;
    assert!(
        expected.duplicates > 30 && expected.bad == 8,
        "{expected:?}"
    );
    let last = until(&mut events, &expected, first.id).await;
    drop(events);

    // The browser is away while more records arrive; it comes back with Last-Event-ID and
    // is sent exactly the events after it, the first of which follows its last.
    let wave = input(8, 300, &mut expected, &mut seen);
    send(&orders, &wave.orders).await;
    send(&jobs, &wave.jobs).await;
    let summary_deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let summary = http_get_json(addr, "/api/summary").await;
        if Expected::of(&summary["totals"]) == expected {
            assert!(
                summary["id"].as_u64().expect("id") > last,
                "events were made meanwhile"
            );
            break;
        }
        assert!(Instant::now() < summary_deadline, "summary {summary}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut events = EventStream::open(addr, Some(last)).await;
    let replayed = events.next().await.expect("replayed events");
    assert_eq!(
        replayed.event, "update",
        "a resumed browser gets updates, not a snapshot"
    );
    assert_eq!(
        replayed.id,
        Some(last + 1),
        "the first event after its last one"
    );
    until(&mut events, &expected, replayed.id).await;
    // Shards: three, each owned by this instance, with a lag.
    let summary = http_get_json(addr, "/api/summary").await;
    let shards = summary["shards"].as_array().expect("shards");
    assert_eq!(shards.len(), 3, "{summary}");
    for shard in shards {
        assert_eq!(shard["owner"], summary["worker_id"], "{shard}");
        assert!(shard["millis_behind_latest"].is_u64(), "{shard}");
    }
    assert!(summary["bad_record"]["error"].is_string(), "{summary}");
    drop(events);

    // Restart: the new process reads both streams again and ends with the same numbers;
    // an old Last-Event-ID gets a snapshot.
    token.cancel();
    tokio::time::timeout(Duration::from_secs(60), task)
        .await
        .expect("the dashboard stops")
        .expect("join");
    let token = CancellationToken::new();
    let (addr, task) = stack.start(token.clone()).await;
    let mut events = EventStream::open(addr, Some(last)).await;
    let first = events.next().await.expect("first event");
    assert_eq!(
        first.event, "snapshot",
        "an id of the last run gets a snapshot"
    );
    until(&mut events, &expected, first.id).await;
    token.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(60), task).await;
    orders.shutdown().await;
    jobs.shutdown().await;
    stack.delete().await;
}

async fn http_get_json(addr: SocketAddr, path: &str) -> Value {
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
