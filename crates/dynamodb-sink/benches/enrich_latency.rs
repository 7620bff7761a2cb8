//! Seed 004's pipeline in memory (`cargo bench -p chief-dynamodb-sink --bench
//! enrich_latency`): what chief's code adds to the latency, without kinesis-local or moto.
//!
//! Events of `chief-datagen`'s orders and items (two items an order) are put into an
//! in-memory 2-shard stream at `CHIEF_BENCH_ITEMS_PER_S` items a second (default 1,000:
//! 1,500 events) for `CHIEF_BENCH_SECONDS` (default 60), each stamped with its ingestion
//! time as it is put, partition key `orderId`; `chief-join` (its `run_with`, the shipped
//! `config/join-orders.toml`) joins them into an in-memory enriched stream and
//! `chief-dynamodb-sink` (the shipped `config/dynamodb-sink.toml`) writes the rows to an
//! in-memory table that notes when it first took each key. Reported: ingestion → row
//! written, p50/p99/max over every row, and ingestion → the row's arrival in the enriched
//! stream (the join's half). Both read by enhanced fan-out as shipped (SubscribeToShard:
//! records pushed as they are written); `CHIEF_BENCH_FETCHER=polling` reads by GetRecords
//! instead, every `poll_interval_ms` (200 ms shipped; `CHIEF_BENCH_POLL_MS` overrides it).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::types::AttributeValue;
use bytes::Bytes;
use chief_analytics::enrich::{EnrichConfig, ProductSource};
use chief_consumer::{LeaseStore, MemoryLeaseStore};
use chief_datagen::etl::{OrderOrItem, OrdersItems, products};
use chief_dynamodb_sink::SinkConfig;
use chief_sinks::dynamodb::{Item, ItemTable, ItemTableError, MemoryItemTable};
use chief_sinks::object::MemoryObjectSink;
use chief_stream::{MemoryStreams, PutEntry, StreamClient};
use tokio_util::sync::CancellationToken;

fn env(var: &str, default: u64) -> u64 {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn rfc3339_ms(ms: i64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

/// The products object, in memory.
struct Products(Bytes);

impl ProductSource for Products {
    async fn head(&self) -> Result<(String, i64), String> {
        Ok(("v1".to_owned(), 0))
    }
    async fn get(&self) -> Result<Bytes, String> {
        Ok(self.0.clone())
    }
}

/// A table noting, per key, how long after its ingestion time the row was first written.
#[derive(Default)]
struct TimedTable {
    inner: MemoryItemTable,
    latency_ms: Mutex<HashMap<Vec<String>, i64>>,
}

impl ItemTable for TimedTable {
    async fn batch_write(&self, items: Vec<Item>) -> Result<Vec<Item>, ItemTableError> {
        let now = now_ms();
        {
            let mut seen = self
                .latency_ms
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            for item in &items {
                if let Some(AttributeValue::S(t)) = item.attributes.get("ingestionTime")
                    && let Ok(t) = chrono::DateTime::parse_from_rfc3339(t)
                {
                    seen.entry(item.key.clone())
                        .or_insert(now - t.timestamp_millis());
                }
            }
        }
        self.inner.batch_write(items).await
    }

    fn name(&self) -> &str {
        "OrdersEnriched"
    }
}

fn quantiles(mut v: Vec<i64>) -> String {
    if v.is_empty() {
        return "none".to_owned();
    }
    v.sort_unstable();
    let at = |q: f64| v[((v.len() as f64 * q) as usize).min(v.len() - 1)];
    format!(
        "p50 {} ms, p99 {} ms, max {} ms ({} rows)",
        at(0.5),
        at(0.99),
        v[v.len() - 1],
        v.len()
    )
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(bench());
}

async fn bench() {
    let items_per_s = env("CHIEF_BENCH_ITEMS_PER_S", 1_000);
    let seconds = env("CHIEF_BENCH_SECONDS", 60);
    let root = chief_config::local_stack::workspace_root();
    let mut join: EnrichConfig =
        chief_config::load(&[root.join("config/join-orders.toml")]).expect("join config");
    let mut sink: SinkConfig =
        chief_config::load(&[root.join("config/dynamodb-sink.toml")]).expect("sink config");
    for c in [&mut join.consumer, &mut sink.consumer] {
        if let Ok(ms) = std::env::var("CHIEF_BENCH_POLL_MS") {
            c.poll_interval_ms = ms.parse().expect("CHIEF_BENCH_POLL_MS");
        }
        if let Ok(kind) = std::env::var("CHIEF_BENCH_FETCHER") {
            c.fetcher = serde_json::from_value(serde_json::Value::String(kind))
                .expect("CHIEF_BENCH_FETCHER: polling or fan_out");
        }
    }
    let fetcher = format!("{:?}", join.consumer.fetcher);
    join.metrics.listen = None;
    sink.metrics.listen = None;
    let poll = (
        join.consumer.poll_interval_ms,
        sink.consumer.poll_interval_ms,
    );

    let streams = MemoryStreams::new(1);
    streams.create_stream(&join.consumer.stream, 2);
    streams.create_stream(&join.output.stream, 2);
    let catalog = products(1, 1_000);
    let body: Vec<u8> = catalog
        .iter()
        .flat_map(|p| {
            let mut line = serde_json::to_vec(p).expect("json");
            line.push(b'\n');
            line
        })
        .collect();
    let table = Arc::new(TimedTable::default());
    let token = CancellationToken::new();
    let join_leases = MemoryLeaseStore::new("join");
    let sink_leases = MemoryLeaseStore::new("sink");
    let join_task = tokio::spawn(chief_analytics::enrich::run_with(
        join.clone(),
        chief_analytics::enrich::Parts {
            stream: streams.clone(),
            leases: join_leases.clone(),
            objects: Arc::new(MemoryObjectSink::new()),
            products: Products(Bytes::from(body)),
            health: chief_config::health::Health::new(),
        },
        token.clone(),
    ));
    let sink_task = tokio::spawn(chief_dynamodb_sink::run_with(
        sink,
        chief_dynamodb_sink::Parts {
            stream: streams.clone(),
            leases: sink_leases.clone(),
            table: Arc::clone(&table),
            objects: Arc::new(MemoryObjectSink::new()),
            health: chief_config::health::Health::new(),
        },
        token.clone(),
    ));
    // Until both hold every shard of their stream: a shard nobody reads yet would count
    // its wait for a lease as latency.
    for leases in [&join_leases, &sink_leases] {
        loop {
            let held = leases
                .list_leases()
                .await
                .expect("leases")
                .iter()
                .filter(|l| l.lease_owner.is_some())
                .count();
            if held == 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    // Orders of two items: events at 1.5 × the item rate, put every 10 ms.
    let orders = items_per_s * seconds / 2;
    let events: Vec<OrderOrItem> = OrdersItems::new(1, catalog, 1_767_225_600_000, 10)
        .take(usize::try_from(orders * 3).unwrap_or(usize::MAX))
        .collect();
    let per_tick = (items_per_s * 3 / 2) as f64 / 100.0;
    let started = Instant::now();
    let mut sent = 0usize;
    let mut tick = 0u64;
    while sent < events.len() {
        tick += 1;
        let due = ((tick as f64 * per_tick) as usize).min(events.len());
        let stamp = rfc3339_ms(now_ms());
        let entries: Vec<PutEntry> = events[sent..due]
            .iter()
            .map(|e| {
                let mut v = serde_json::to_value(e).expect("json");
                let key = v["orderId"].to_string();
                v["ingestionTime"] = serde_json::Value::String(stamp.clone());
                PutEntry {
                    partition_key: key,
                    explicit_hash_key: None,
                    data: Bytes::from(serde_json::to_vec(&v).expect("json")),
                }
            })
            .collect();
        if !entries.is_empty() {
            for r in streams
                .put_records(&join.consumer.stream, entries)
                .await
                .expect("put")
            {
                r.expect("entry");
            }
        }
        sent = due;
        tokio::time::sleep_until(
            tokio::time::Instant::from_std(started) + Duration::from_millis(tick * 10),
        )
        .await;
    }
    let items = usize::try_from(orders * 2).unwrap_or(usize::MAX);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let written = table
            .latency_ms
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len();
        if written >= items || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    token.cancel();
    join_task.await.expect("join task").expect("join");
    sink_task.await.expect("sink task").expect("sink");

    // The join's half, from the enriched stream's records.
    let mut join_half = Vec::new();
    for (_, r) in chief_stream::read_all(&streams, &join.output.stream)
        .await
        .expect("read")
    {
        let arrived = r
            .approximate_arrival
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map(|d| d.as_millis() as i64);
        // The join KPL-aggregates its rows.
        for row in chief_aggregation::deaggregate(chief_aggregation::UserRecord {
            partition_key: r.partition_key.clone(),
            explicit_hash_key: None,
            data: r.data.clone(),
        }) {
            let v: serde_json::Value = serde_json::from_slice(&row.record.data).expect("row");
            let ingested = v["ingestionTime"]
                .as_str()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.timestamp_millis());
            if let (Some(i), Some(a)) = (ingested, arrived) {
                join_half.push(a - i);
            }
        }
    }
    let latency: Vec<i64> = table
        .latency_ms
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .values()
        .copied()
        .collect();
    println!(
        "in memory, {items_per_s} items/s for {seconds} s, {fetcher}, polls every {} / {} ms (join / sink): {} items sent, {} rows written",
        poll.0,
        poll.1,
        items,
        latency.len()
    );
    println!(
        "  ingestion → row written:     {}",
        quantiles(latency.clone())
    );
    println!("  ingestion → enriched stream: {}", quantiles(join_half));
    assert_eq!(latency.len(), items, "every item has its row");
}
