//! Consumer benchmark (`cargo bench -p chief-consumer`), three figures for BENCHMARKS.md:
//! 1. deaggregation + dispatch to a no-op processor, in-memory stream, one core
//!    (current-thread runtime): user records/s;
//! 2. lease table operations per shard per minute in steady state (default timings,
//!    counted on a wrapped in-memory store);
//! 3. put → `process_records` latency p50/p99, polling (default timings) and enhanced
//!    fan-out: on the in-memory stream (the latency our code adds), then on the local
//!    stack (kinesis-local + moto; needs `make stack-up`).
//!
//! 4. with `CHIEF_BENCH_SCALE=1` instead: the fleet simulation ([`scale`]).
//!
//! `CHIEF_BENCH_RECORDS` (default 1,000,000), `CHIEF_BENCH_STEADY_SECS` (default 30),
//! `CHIEF_BENCH_LATENCY_SECS` (default 20), `CHIEF_BENCH_IDLE_MAX_MS` (default: the config's 1,000); `CHIEF_BENCH_SKIP_LOCAL=1` skips figure 3.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use chief_aggregation::{Aggregator, UserRecord};
use chief_config::aws::AwsClients;
use chief_config::local_stack::LocalStack;
use chief_consumer::{
    ConsumerConfig, DynamoDbLeaseStore, ExtendedSequenceNumber, FetcherKind, Lease, LeaseError,
    LeaseStore, MemoryLeaseStore, ProcessRecordsInput, ProcessorError, ProcessorFactory,
    RecordProcessor, Scheduler, ShardEndedInput,
};
use chief_stream::{KinesisClient, MemoryStreams, PutEntry, StreamClient};
use tokio_util::sync::CancellationToken;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Counts records; checkpoints every batch; optionally records put → process latency.
#[derive(Clone, Default)]
struct Sink {
    records: Arc<AtomicU64>,
    latencies: Option<Arc<Mutex<Vec<Duration>>>>,
}

impl ProcessorFactory for Sink {
    type Processor = Sink;
    fn create(&self, _shard_id: &str) -> Sink {
        self.clone()
    }
}

impl RecordProcessor for Sink {
    async fn process_records(
        &mut self,
        input: ProcessRecordsInput<'_>,
    ) -> Result<(), ProcessorError> {
        if let Some(lat) = &self.latencies {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default();
            let mut lat = lat.lock().unwrap_or_else(|p| p.into_inner());
            for r in input.records {
                let sent: u128 = String::from_utf8_lossy(&r.data).parse().unwrap_or(0);
                lat.push(now.saturating_sub(Duration::from_nanos(sent as u64)));
            }
        }
        self.records
            .fetch_add(input.records.len() as u64, Ordering::Relaxed);
        input.checkpointer.checkpoint().await?;
        Ok(())
    }
    async fn shard_ended(&mut self, input: ShardEndedInput<'_>) -> Result<(), ProcessorError> {
        input.checkpointer.checkpoint().await?;
        Ok(())
    }
}

fn config(stream: &str, worker: &str) -> ConsumerConfig {
    ConsumerConfig {
        stream: stream.to_owned(),
        table: "bench".to_owned(),
        worker_id: Some(worker.to_owned()),
        ..ConsumerConfig::default()
    }
}

fn throughput() {
    let n = env("CHIEF_BENCH_RECORDS", 1_000_000);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let streams = MemoryStreams::new(1);
        streams.create_stream("bench", 1);
        let mut agg = Aggregator::new();
        let mut batch = Vec::new();
        let payload = "x".repeat(100);
        let mut kinesis_records = 0;
        let flush = |batch: &mut Vec<PutEntry>| {
            let b = std::mem::take(batch);
            let s = streams.clone();
            async move {
                if !b.is_empty() {
                    s.put_records("bench", b).await.expect("put");
                }
            }
        };
        for i in 0..n {
            let r = UserRecord::new(format!("key-{}", i % 1000), format!("{payload}{i}"));
            if let Some(k) = agg.add(r).expect("add") {
                batch.push(PutEntry { partition_key: k.partition_key, explicit_hash_key: k.explicit_hash_key, data: k.data });
                kinesis_records += 1;
                if batch.len() == 100 {
                    flush(&mut batch).await;
                }
            }
        }
        if let Some(k) = agg.flush() {
            batch.push(PutEntry { partition_key: k.partition_key, explicit_hash_key: k.explicit_hash_key, data: k.data });
            kinesis_records += 1;
        }
        flush(&mut batch).await;
        let sink = Sink::default();
        // No wait between GetRecords calls: the figure is the CPU cost of deaggregating and
        // dispatching (with the default 200 ms between calls of a shard, the ~12 calls of
        // 10 MiB this stream takes would bound it at ~2.4 s whatever the CPU does).
        let throughput_config = ConsumerConfig { poll_interval_ms: 0, ..config("bench", "w") };
        let scheduler = Scheduler::new(throughput_config, streams.clone(), MemoryLeaseStore::new("bench"), sink.clone())
            .expect("scheduler");
        let token = CancellationToken::new();
        let started = Instant::now();
        let run = tokio::spawn(scheduler.run(token.clone()));
        while sink.records.load(Ordering::Relaxed) < n {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let took = started.elapsed();
        token.cancel();
        let _ = run.await;
        println!(
            "throughput: {n} user records in {kinesis_records} aggregates (100-byte payloads) deaggregated and dispatched in {:.3} s on one core: {:.0} user records/s",
            took.as_secs_f64(),
            n as f64 / took.as_secs_f64()
        );
    });
}

/// A store that counts its calls.
#[derive(Clone)]
struct Counting {
    inner: MemoryLeaseStore,
    calls: Arc<AtomicU64>,
}

impl Counting {
    fn tick(&self) {
        self.calls.fetch_add(1, Ordering::Relaxed);
    }
}

impl LeaseStore for Counting {
    fn table(&self) -> &str {
        self.inner.table()
    }
    async fn ensure_table(&self) -> Result<(), LeaseError> {
        self.tick();
        self.inner.ensure_table().await
    }
    async fn list_leases(&self) -> Result<Vec<Lease>, LeaseError> {
        self.tick();
        self.inner.list_leases().await
    }
    async fn get_lease(&self, k: &str) -> Result<Option<Lease>, LeaseError> {
        self.tick();
        self.inner.get_lease(k).await
    }
    async fn create_lease_if_absent(&self, l: &Lease) -> Result<bool, LeaseError> {
        self.tick();
        self.inner.create_lease_if_absent(l).await
    }
    async fn renew_lease(&self, l: &Lease) -> Result<Lease, LeaseError> {
        self.tick();
        self.inner.renew_lease(l).await
    }
    async fn take_lease(&self, l: &Lease, o: &str) -> Result<Lease, LeaseError> {
        self.tick();
        self.inner.take_lease(l, o).await
    }
    async fn release_lease(&self, l: &Lease) -> Result<Lease, LeaseError> {
        self.tick();
        self.inner.release_lease(l).await
    }
    async fn checkpoint(&self, l: &Lease, c: &ExtendedSequenceNumber) -> Result<Lease, LeaseError> {
        self.tick();
        self.inner.checkpoint(l, c).await
    }
    async fn prepare_checkpoint(
        &self,
        l: &Lease,
        c: &ExtendedSequenceNumber,
    ) -> Result<Lease, LeaseError> {
        self.tick();
        self.inner.prepare_checkpoint(l, c).await
    }
    async fn set_child_shards(&self, l: &Lease, c: &BTreeSet<String>) -> Result<Lease, LeaseError> {
        self.tick();
        self.inner.set_child_shards(l, c).await
    }
    async fn delete_lease(&self, k: &str) -> Result<(), LeaseError> {
        self.tick();
        self.inner.delete_lease(k).await
    }
}

fn steady_state() {
    let secs = env("CHIEF_BENCH_STEADY_SECS", 30);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let streams = MemoryStreams::new(1);
        streams.create_stream("steady", 4);
        let calls = Arc::new(AtomicU64::new(0));
        let store = Counting { inner: MemoryLeaseStore::new("steady"), calls: calls.clone() };
        let token = CancellationToken::new();
        let mut runs = Vec::new();
        for w in ["a", "b"] {
            let s = Scheduler::new(config("steady", w), streams.clone(), store.clone(), Sink::default()).expect("scheduler");
            runs.push(tokio::spawn(s.run(token.clone())));
        }
        // Let both workers start and balance (first take round), then measure.
        tokio::time::sleep(Duration::from_secs(5)).await;
        let before = calls.load(Ordering::Relaxed);
        tokio::time::sleep(Duration::from_secs(secs)).await;
        let ops = calls.load(Ordering::Relaxed) - before;
        token.cancel();
        for r in runs {
            let _ = r.await;
        }
        let per_shard_minute = ops as f64 / 4.0 * 60.0 / secs as f64;
        println!(
            "steady state: 2 workers, 4 shards, default timings (failover 10 s, renewal 3.3 s, taking 20 s), idle stream: {ops} lease-table calls in {secs} s = {per_shard_minute:.1} per shard per minute (plus one per checkpoint the application writes)"
        );
    });
}

/// Puts one record (carrying its send time) every 50 ms for `secs` seconds through
/// `client` while a scheduler reads the stream with `cfg`; returns put → process latencies.
async fn measure_latency<C, S>(client: C, store: S, cfg: ConsumerConfig, secs: u64) -> Vec<Duration>
where
    C: StreamClient + Clone,
    S: LeaseStore,
{
    let stream = cfg.stream.clone();
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let sink = Sink {
        records: Arc::default(),
        latencies: Some(latencies.clone()),
    };
    let scheduler = Scheduler::new(cfg, client.clone(), store, sink.clone()).expect("scheduler");
    let token = CancellationToken::new();
    let run = tokio::spawn(scheduler.run(token.clone()));
    // Wait until both shards are being read.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let started = Instant::now();
    let mut sent = 0u64;
    while started.elapsed() < Duration::from_secs(secs) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let entry = PutEntry {
            partition_key: format!("k{sent}"),
            explicit_hash_key: None,
            data: now.to_string().into(),
        };
        client.put_records(&stream, vec![entry]).await.expect("put");
        sent += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    while sink.records.load(Ordering::Relaxed) < sent {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    token.cancel();
    let _ = run.await;
    let mut l = latencies.lock().unwrap_or_else(|p| p.into_inner()).clone();
    l.sort();
    l
}

fn report(what: &str, secs: u64, l: &[Duration]) {
    let pct = |p: f64| l[((l.len() as f64 * p) as usize).min(l.len() - 1)];
    println!(
        "latency ({what}; one record every 50 ms for {secs} s, {} records): put → process_records p50 {:?}, p99 {:?}, max {:?}",
        l.len(),
        pct(0.50),
        pct(0.99),
        l[l.len() - 1]
    );
}

fn describe(cfg: &ConsumerConfig) -> String {
    match cfg.fetcher {
        FetcherKind::Polling => format!(
            "polling, poll {} ms, adaptive idle ≤ {} ms",
            cfg.poll_interval_ms, cfg.idle_time_max_ms
        ),
        FetcherKind::FanOut => "enhanced fan-out".to_owned(),
    }
}

/// The latency runs' config: `fetcher`, and `CHIEF_BENCH_IDLE_MAX_MS` if set.
fn latency_config(stream: &str, fetcher: FetcherKind) -> ConsumerConfig {
    let cfg = config(stream, "w");
    ConsumerConfig {
        fetcher,
        idle_time_max_ms: env("CHIEF_BENCH_IDLE_MAX_MS", cfg.idle_time_max_ms),
        ..cfg
    }
}

/// The latency our own code adds: the in-memory stream answers at once and pushes
/// subscription events as soon as records are written.
fn latency_memory() {
    let secs = env("CHIEF_BENCH_LATENCY_SECS", 20);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    for fetcher in [FetcherKind::Polling, FetcherKind::FanOut] {
        rt.block_on(async {
            let streams = MemoryStreams::new(1);
            streams.create_stream("bench", 2);
            let cfg = latency_config("bench", fetcher);
            let what = format!("{}; in-memory stream and lease table", describe(&cfg));
            let l = measure_latency(streams, MemoryLeaseStore::new("bench"), cfg, secs).await;
            report(&what, secs, &l);
        });
    }
}

fn latency() {
    if std::env::var("CHIEF_BENCH_SKIP_LOCAL").is_ok() {
        return;
    }
    let secs = env("CHIEF_BENCH_LATENCY_SECS", 20);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    for fetcher in [FetcherKind::Polling, FetcherKind::FanOut] {
        rt.block_on(async {
            let stack = LocalStack::require();
            let clients = AwsClients::new(&stack.aws).await;
            let id = uuid::Uuid::new_v4().simple().to_string();
            let stream = format!("chief-bench-{id}");
            let table = format!("chief-bench-leases-{id}");
            let kinesis = clients.kinesis();
            let client = KinesisClient::new(kinesis.clone());
            client
                .create_stream(&stream, 2)
                .await
                .expect("CreateStream");
            client
                .wait_until_active(&stream, Duration::from_secs(60))
                .await
                .expect("ACTIVE");
            let cfg = ConsumerConfig {
                table: table.clone(),
                ..latency_config(&stream, fetcher)
            };
            let what = format!("{}; kinesis-local + moto", describe(&cfg));
            let store = DynamoDbLeaseStore::new(clients.dynamodb(), &table);
            let l = measure_latency(client, store, cfg, secs).await;
            report(&what, secs, &l);
            let _ = kinesis.delete_stream().stream_name(&stream).send().await;
            let _ = clients
                .dynamodb()
                .delete_table()
                .table_name(&table)
                .send()
                .await;
        });
    }
}

/// One `process_records` call: (shard, worker, start, end).
type Call = (Arc<str>, Arc<str>, Instant, Instant);

/// Every call of a fleet, shared.
type Calls = Arc<Mutex<Vec<Call>>>;

/// Records every `process_records` call.
#[derive(Clone)]
struct Tracker {
    worker: Arc<str>,
    shard: Arc<str>,
    calls: Calls,
}

struct TrackerFactory {
    worker: Arc<str>,
    calls: Calls,
}

impl ProcessorFactory for TrackerFactory {
    type Processor = Tracker;
    fn create(&self, shard_id: &str) -> Tracker {
        Tracker {
            worker: self.worker.clone(),
            shard: Arc::from(shard_id),
            calls: self.calls.clone(),
        }
    }
}

impl RecordProcessor for Tracker {
    async fn process_records(
        &mut self,
        input: ProcessRecordsInput<'_>,
    ) -> Result<(), ProcessorError> {
        let start = Instant::now();
        let _ = input;
        self.calls.lock().unwrap_or_else(|p| p.into_inner()).push((
            self.shard.clone(),
            self.worker.clone(),
            start,
            Instant::now(),
        ));
        Ok(())
    }

    async fn shard_ended(&mut self, input: ShardEndedInput<'_>) -> Result<(), ProcessorError> {
        input.checkpointer.checkpoint().await?;
        Ok(())
    }
}

/// Figure 4: a fleet on the in-memory stream and lease table, in real time with the lease
/// timings scaled down 10× (failover 1 s: renewal 333 ms, taking 2 s, claiming 333 ms):
/// `CHIEF_BENCH_SCALE_SHARDS` (2,000) shards, `CHIEF_BENCH_SCALE_WORKERS` (40) workers
/// joining one by one, then a kill -9 of a quarter of them. Time until balanced (most − least
/// leases per worker ≤ 1), lease-table calls per second, the longest time a shard had no
/// live owner, and every pair of `process_records` calls of one shard by two workers that
/// overlapped in time.
fn scale() {
    let shards = env("CHIEF_BENCH_SCALE_SHARDS", 2_000) as u32;
    let workers = env("CHIEF_BENCH_SCALE_WORKERS", 40) as usize;
    let killed = workers / 4;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let streams = MemoryStreams::new(77);
        streams.create_stream("Scale", shards);
        let table = MemoryLeaseStore::new("scale");
        let calls = Arc::new(Mutex::new(Vec::new()));
        let lease_calls = Arc::new(AtomicU64::new(0));
        let config = |worker: &str| ConsumerConfig {
            stream: "Scale".to_owned(),
            table: "scale".to_owned(),
            worker_id: Some(worker.to_owned()),
            failover_time_ms: 1_000,
            shard_sync_interval_ms: 6_000,
            deliver_empty_batches: true,
            ..ConsumerConfig::default()
        };
        let mut fleet: Vec<(String, CancellationToken, tokio::task::JoinHandle<()>)> = Vec::new();
        let start = |name: String| {
            let scheduler = Scheduler::new(
                config(&name),
                streams.clone(),
                Counting {
                    inner: table.clone(),
                    calls: lease_calls.clone(),
                },
                TrackerFactory {
                    worker: Arc::from(name.as_str()),
                    calls: calls.clone(),
                },
            )
            .expect("scheduler");
            let token = CancellationToken::new();
            let run = scheduler.run(token.clone());
            let handle = tokio::spawn(async move {
                let _ = run.await;
            });
            (name, token, handle)
        };
        // Who owns what, sampled every 100 ms: balance, and shards without a live owner.
        let alive: Arc<Mutex<BTreeSet<String>>> = Arc::default();
        let orphaned_since: Arc<Mutex<std::collections::HashMap<String, Instant>>> = Arc::default();
        let longest_orphan = Arc::new(Mutex::new(Duration::ZERO));
        let balanced_at: Arc<Mutex<Option<Instant>>> = Arc::default();
        let sampler = {
            let (table, alive, orphaned_since, longest_orphan, balanced_at) = (
                table.clone(),
                alive.clone(),
                orphaned_since.clone(),
                longest_orphan.clone(),
                balanced_at.clone(),
            );
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    let leases = table.list_leases().await.unwrap_or_default();
                    let now = Instant::now();
                    let alive = alive.lock().unwrap_or_else(|p| p.into_inner()).clone();
                    let mut per_worker: std::collections::HashMap<&str, usize> =
                        alive.iter().map(|w| (w.as_str(), 0)).collect();
                    let mut orphans = orphaned_since.lock().unwrap_or_else(|p| p.into_inner());
                    for l in &leases {
                        let live = l.lease_owner.as_deref().filter(|o| alive.contains(*o));
                        match live {
                            Some(owner) => {
                                *per_worker.entry(owner).or_default() += 1;
                                if let Some(since) = orphans.remove(&l.lease_key) {
                                    let mut longest =
                                        longest_orphan.lock().unwrap_or_else(|p| p.into_inner());
                                    *longest = (*longest).max(now - since);
                                }
                            }
                            None => {
                                orphans.entry(l.lease_key.clone()).or_insert(now);
                            }
                        }
                    }
                    let (most, least) = (
                        per_worker.values().max().copied().unwrap_or(0),
                        per_worker.values().min().copied().unwrap_or(0),
                    );
                    let mut at = balanced_at.lock().unwrap_or_else(|p| p.into_inner());
                    if orphans.is_empty() && !per_worker.is_empty() && most - least <= 1 {
                        at.get_or_insert(now);
                    } else {
                        *at = None;
                    }
                }
            })
        };
        let wait_balanced = |what: &'static str, since: Instant| {
            let balanced_at = balanced_at.clone();
            async move {
                let deadline = since + Duration::from_secs(600);
                loop {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    let at = *balanced_at.lock().unwrap_or_else(|p| p.into_inner());
                    if let Some(at) = at
                        && at.elapsed() >= Duration::from_secs(3)
                    {
                        println!("  {what}: balanced after {:.1} s", (at - since).as_secs_f64());
                        return at - since;
                    }
                    assert!(Instant::now() < deadline, "{what}: not balanced after 600 s");
                }
            }
        };
        println!("scale: {shards} shards, {workers} workers joining 0.25 s apart (failover 1 s)");
        let joined = Instant::now();
        let before = lease_calls.load(Ordering::Relaxed);
        for i in 0..workers {
            let name = format!("worker-{i:02}");
            alive.lock().unwrap_or_else(|p| p.into_inner()).insert(name.clone());
            fleet.push(start(name));
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        let join_time = wait_balanced("all joined", joined).await;
        let steady_from = (Instant::now(), lease_calls.load(Ordering::Relaxed));
        tokio::time::sleep(Duration::from_secs(10)).await;
        let steady = lease_calls.load(Ordering::Relaxed) - steady_from.1;
        let steady_rate = steady as f64 / steady_from.0.elapsed().as_secs_f64();
        println!(
            "  steady state: {steady_rate:.0} lease-table calls/s in all, {:.1} per worker ({} calls while joining)",
            steady_rate / workers as f64,
            steady_from.1 - before
        );
        let killed_at = Instant::now();
        for (name, _, handle) in fleet.drain(..killed) {
            alive.lock().unwrap_or_else(|p| p.into_inner()).remove(&name);
            handle.abort();
        }
        let kill_time = wait_balanced("after the kill -9", killed_at).await;
        sampler.abort();
        let longest = *longest_orphan.lock().unwrap_or_else(|p| p.into_inner());
        for (_, token, handle) in fleet {
            token.cancel();
            let _ = tokio::time::timeout(Duration::from_secs(10), handle).await;
        }
        let mut by_shard: std::collections::HashMap<Arc<str>, Vec<Call>> =
            std::collections::HashMap::new();
        for call in calls.lock().unwrap_or_else(|p| p.into_inner()).drain(..) {
            by_shard.entry(call.0.clone()).or_default().push(call);
        }
        let (mut overlaps, mut total_calls) = (0u64, 0usize);
        for list in by_shard.values_mut() {
            total_calls += list.len();
            list.sort_by_key(|call| call.2);
            for pair in list.windows(2) {
                if pair[0].1 != pair[1].1 && pair[1].2 < pair[0].3 {
                    overlaps += 1;
                }
            }
        }
        println!(
            "  joined in {:.1} s, re-balanced {:.1} s after killing {killed}; longest a shard had no live owner: {:.1} s",
            join_time.as_secs_f64(),
            kill_time.as_secs_f64(),
            longest.as_secs_f64()
        );
        println!(
            "  process_records calls: {total_calls}; calls of one shard by two workers overlapping in time: {overlaps}"
        );
    });
}

fn main() {
    if std::env::var("CHIEF_BENCH_SCALE").is_ok() {
        scale();
        return;
    }
    throughput();
    steady_state();
    latency_memory();
    latency();
}
