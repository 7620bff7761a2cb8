//! Shared by the scheduler tests: a recording processor, workers, a backend (memory or
//! local stack) and the scenarios of issue 6, written once and run on both backends.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::sync::atomic::{AtomicI64, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chief_aggregation::UserRecord;
use chief_consumer::{
    CheckpointError, ConsumerConfig, ConsumerError, FetcherKind, InitialPosition, LeaseLostInput,
    LeaseStore, ProcessRecordsInput, ProcessorError, ProcessorFactory, RecordProcessor, Scheduler,
    ShardEndedInput, ShutdownRequestedInput,
};
use chief_producer::{Producer, ProducerConfig};
use chief_stream::StreamClient;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// One user record as a processor saw it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Seen {
    pub shard: String,
    pub key: String,
    pub index: u64,
    pub seq: String,
    pub sub: u64,
    pub worker: String,
}

/// How the test processor checkpoints.
#[derive(Debug, Clone, Copy)]
pub enum Checkpointing {
    /// After every batch, at shard end and at shutdown.
    EveryBatch,
    /// Only once, at the n-th record of each shard (and at shard end); not at shutdown.
    AtRecord(usize),
}

/// What the processors of one worker did.
#[derive(Debug, Default)]
pub struct Probe {
    pub seen: Mutex<Vec<Seen>>,
    pub lease_lost: AtomicU32,
    pub checkpoint_errors: Mutex<Vec<String>>,
    pub lease_lost_refusals: AtomicU32,
    pub in_flight: AtomicI64,
    /// `process_records` calls still to fail (each fails before touching the records).
    pub fail_calls: AtomicU32,
    pub failed_calls: AtomicU32,
    /// Shards whose processor got a batch, empty or not (with `deliver_empty_batches`: the
    /// shard's reader is positioned).
    pub reading: Mutex<BTreeSet<String>>,
}

impl Probe {
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("lock").clone()
    }
    pub fn count(&self) -> usize {
        self.seen.lock().expect("lock").len()
    }
}

pub struct TestFactory {
    pub worker: String,
    pub probe: Arc<Probe>,
    pub mode: Checkpointing,
}

pub struct TestProcessor {
    worker: String,
    shard: String,
    probe: Arc<Probe>,
    mode: Checkpointing,
    records: usize,
}

impl ProcessorFactory for TestFactory {
    type Processor = TestProcessor;
    fn create(&self, shard_id: &str) -> TestProcessor {
        TestProcessor {
            worker: self.worker.clone(),
            shard: shard_id.to_owned(),
            probe: self.probe.clone(),
            mode: self.mode,
            records: 0,
        }
    }
}

impl TestProcessor {
    fn note(&self, r: Result<(), CheckpointError>) {
        if let Err(e) = r {
            if matches!(e, CheckpointError::LeaseLost { .. }) {
                self.probe
                    .lease_lost_refusals
                    .fetch_add(1, Ordering::SeqCst);
            }
            self.probe
                .checkpoint_errors
                .lock()
                .expect("lock")
                .push(e.to_string());
        }
    }
}

impl RecordProcessor for TestProcessor {
    async fn process_records(
        &mut self,
        input: ProcessRecordsInput<'_>,
    ) -> Result<(), ProcessorError> {
        if self
            .probe
            .fail_calls
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            self.probe.failed_calls.fetch_add(1, Ordering::SeqCst);
            return Err("injected processing failure".into());
        }
        self.probe
            .reading
            .lock()
            .expect("lock")
            .insert(self.shard.clone());
        self.probe.in_flight.fetch_add(1, Ordering::SeqCst);
        let batch: Vec<Seen> = input
            .records
            .iter()
            .map(|r| {
                if let Some(why) = &r.corrupt {
                    // A corrupt aggregate handed over as it is: note why, and its bytes' length.
                    return Seen {
                        shard: self.shard.clone(),
                        key: format!("corrupt ({} bytes): {why}", r.data.len()),
                        index: u64::MAX,
                        seq: r.sequence_number.clone(),
                        sub: r.sub_sequence_number,
                        worker: self.worker.clone(),
                    };
                }
                let text = String::from_utf8_lossy(&r.data);
                let index = text
                    .rsplit(':')
                    .next()
                    .and_then(|i| i.parse().ok())
                    .expect("index in data");
                Seen {
                    shard: self.shard.clone(),
                    key: r.partition_key.clone(),
                    index,
                    seq: r.sequence_number.clone(),
                    sub: r.sub_sequence_number,
                    worker: self.worker.clone(),
                }
            })
            .collect();
        let before = self.records;
        self.records += input.records.len();
        match self.mode {
            // Like a transactional sink: the batch counts once its checkpoint is written;
            // a checkpoint refused because the lease moved means another worker owns
            // (and will deliver) these records.
            Checkpointing::EveryBatch => {
                let result = input.checkpointer.checkpoint().await;
                if result.is_ok() {
                    self.probe.seen.lock().expect("lock").extend(batch);
                }
                self.note(result);
            }
            Checkpointing::AtRecord(n) => {
                self.probe.seen.lock().expect("lock").extend(batch);
                if before < n && self.records >= n {
                    let r = input
                        .checkpointer
                        .checkpoint_at(input.records[n - 1 - before].position())
                        .await;
                    self.note(r);
                }
            }
        }
        self.probe.in_flight.fetch_sub(1, Ordering::SeqCst);
        Ok(())
    }

    async fn lease_lost(&mut self, _input: LeaseLostInput<'_>) {
        self.probe.lease_lost.fetch_add(1, Ordering::SeqCst);
    }

    async fn shard_ended(&mut self, input: ShardEndedInput<'_>) -> Result<(), ProcessorError> {
        input.checkpointer.checkpoint().await?;
        Ok(())
    }

    async fn shutdown_requested(
        &mut self,
        input: ShutdownRequestedInput<'_>,
    ) -> Result<(), ProcessorError> {
        if let Checkpointing::EveryBatch = self.mode {
            let r = input.checkpointer.checkpoint().await;
            self.note(r);
        }
        Ok(())
    }
}

/// A running worker.
pub struct Worker {
    pub id: String,
    pub probe: Arc<Probe>,
    token: CancellationToken,
    handle: JoinHandle<Result<(), ConsumerError>>,
}

impl Worker {
    /// Graceful stop; waits for it.
    pub async fn stop(self) {
        self.token.cancel();
        tokio::time::timeout(Duration::from_secs(30), self.handle)
            .await
            .expect("worker stops within 30 s")
            .expect("worker task")
            .expect("worker result");
    }

    /// Dies: no shutdown, no release.
    pub async fn kill(self) {
        self.handle.abort();
        let _ = self.handle.await;
    }
}

/// Where the tests run: the in-memory pair or the local stack.
pub trait Backend: Send + Sync + 'static {
    type Client: StreamClient + Clone;
    type Store: LeaseStore + Clone;
    fn client(&self) -> Self::Client;
    fn store(&self) -> Self::Store;
    fn stream(&self) -> String;
    /// Splits `shard` at the middle of its range and waits until the stream is usable.
    fn split(&self, shard: &str) -> impl Future<Output = ()> + Send;
    /// Merges two adjacent shards and waits until the stream is usable.
    fn merge(&self, a: &str, b: &str) -> impl Future<Output = ()> + Send;
    /// How the workers fetch records.
    fn fetcher(&self) -> FetcherKind {
        FetcherKind::Polling
    }
    /// [`fast_config`] for this backend's stream and fetcher.
    fn config(&self, table: &str, worker: &str) -> ConsumerConfig {
        ConsumerConfig {
            fetcher: self.fetcher(),
            ..fast_config(&self.stream(), table, worker)
        }
    }
}

/// The same backend read through enhanced fan-out instead of polling.
pub struct FanOut<B>(pub B);

impl<B: Backend> Backend for FanOut<B> {
    type Client = B::Client;
    type Store = B::Store;
    fn client(&self) -> Self::Client {
        self.0.client()
    }
    fn store(&self) -> Self::Store {
        self.0.store()
    }
    fn stream(&self) -> String {
        self.0.stream()
    }
    fn split(&self, shard: &str) -> impl Future<Output = ()> + Send {
        self.0.split(shard)
    }
    fn merge(&self, a: &str, b: &str) -> impl Future<Output = ()> + Send {
        self.0.merge(a, b)
    }
    fn fetcher(&self) -> FetcherKind {
        FetcherKind::FanOut
    }
}

/// Fast timings: failover 1.5 s, renewal 0.5 s, taking every 0.5 s, sync every 1 s.
pub fn fast_config(stream: &str, table: &str, worker: &str) -> ConsumerConfig {
    ConsumerConfig {
        stream: stream.to_owned(),
        table: table.to_owned(),
        worker_id: Some(worker.to_owned()),
        failover_time_ms: 1_500,
        lease_taking_interval_ms: 500,
        shard_sync_interval_ms: 1_000,
        poll_interval_ms: 50,
        idle_time_max_ms: 200,
        fan_out_end_check_ms: 1_000,
        fetch_retry: chief_config::retry::RetryPolicy {
            initial_backoff_ms: 20,
            max_backoff_ms: 200,
            ..Default::default()
        },
        processing_retry: chief_config::retry::RetryPolicy {
            initial_backoff_ms: 10,
            max_backoff_ms: 50,
            ..Default::default()
        },
        ..ConsumerConfig::default()
    }
}

pub fn start<B: Backend>(backend: &B, config: ConsumerConfig, mode: Checkpointing) -> Worker {
    start_with(backend, config, mode, Arc::new(Probe::default()))
}

/// As `start`, recording into `probe` (share one between workers for a global order).
pub fn start_with<B: Backend>(
    backend: &B,
    config: ConsumerConfig,
    mode: Checkpointing,
    probe: Arc<Probe>,
) -> Worker {
    let id = config.worker_id.clone().expect("worker id");
    let factory = TestFactory {
        worker: id.clone(),
        probe: probe.clone(),
        mode,
    };
    let scheduler =
        Scheduler::new(config, backend.client(), backend.store(), factory).expect("scheduler");
    let token = CancellationToken::new();
    let handle = tokio::spawn(scheduler.run(token.clone()));
    Worker {
        id,
        probe,
        token,
        handle,
    }
}

/// Polls `check` every 50 ms until it holds, or panics after `secs` seconds with `what`.
pub async fn wait_for<F, Fut>(secs: u64, what: &str, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(secs) {
        if check().await {
            return started.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out after {secs} s waiting for: {what}");
}

/// Active (not SHARD_END) leases per owner (`-` for none).
pub async fn owners<S: LeaseStore>(store: &S) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    // Before the worker created the table, there are no leases.
    for l in store.list_leases().await.unwrap_or_default() {
        if !l.checkpoint.is_shard_end() {
            *out.entry(l.lease_owner.unwrap_or_else(|| "-".into()))
                .or_insert(0) += 1;
        }
    }
    out
}

pub fn records(from: u64, n: u64, keys: u64) -> Vec<UserRecord> {
    (from..from + n)
        .map(|i| {
            UserRecord::new(
                format!("key-{:03}", i % keys),
                format!("key-{:03}:{i}", i % keys).into_bytes(),
            )
        })
        .collect()
}

/// Writes records with the chief producer (aggregated, small aggregates so that each
/// shard gets several Kinesis records), every one confirmed.
pub async fn write<C: StreamClient>(client: C, stream: &str, input: Vec<UserRecord>) {
    let config = ProducerConfig {
        aggregation_max_bytes: 1024,
        record_max_buffered_time_ms: 20,
        ..ProducerConfig::default()
    };
    let producer = Producer::start(client, stream, config)
        .await
        .expect("producer");
    let mut receipts = Vec::new();
    for r in input {
        receipts.push(producer.send(r).await.expect("send"));
    }
    for r in receipts {
        assert!(r.await.is_ok(), "record not put");
    }
    producer.shutdown().await;
}

/// Every index in `0..n` seen exactly `times` — i.e. an exact count.
pub fn assert_exactly_once(seen: &[Seen], n: u64) {
    let mut counts: HashMap<u64, usize> = HashMap::new();
    for s in seen {
        *counts.entry(s.index).or_default() += 1;
    }
    let missing: Vec<u64> = (0..n)
        .filter(|i| !counts.contains_key(i))
        .take(10)
        .collect();
    let dups: Vec<(u64, usize)> = counts
        .iter()
        .filter(|(_, c)| **c > 1)
        .map(|(i, c)| (*i, *c))
        .take(10)
        .collect();
    assert!(
        missing.is_empty(),
        "records never processed (first 10): {missing:?}"
    );
    assert!(
        dups.is_empty(),
        "records processed more than once (first 10): {dups:?}"
    );
    assert_eq!(
        seen.len() as u64,
        n,
        "processed {} user records for {n} written",
        seen.len()
    );
}

/// Per partition key, indices strictly increase in processing order (across shards).
pub fn assert_key_order(seen: &[Seen]) {
    let mut last: HashMap<&str, (u64, &str)> = HashMap::new();
    for s in seen {
        if let Some((prev, prev_shard)) = last.insert(&s.key, (s.index, &s.shard)) {
            assert!(
                prev < s.index,
                "key {} out of order: {prev} ({prev_shard}) then {} ({})",
                s.key,
                s.index,
                s.shard
            );
        }
    }
}

fn merged(workers: &[&Worker]) -> Vec<Seen> {
    workers.iter().flat_map(|w| w.probe.seen()).collect()
}

// ---------------------------------------------------------------------------------------
// Scenarios (issue 6, point 7). `table` is fresh per test; the stream has 4 shards.

/// Two workers balance to 2 + 2, then every record is processed exactly once.
pub async fn two_workers_balance<B: Backend>(b: &B, table: &str) {
    let store = b.store();
    let stream = b.stream();
    let a = start(b, b.config(table, "worker-a"), Checkpointing::EveryBatch);
    wait_for(30, "worker-a holds the 4 leases", || async {
        owners(&store).await.get("worker-a") == Some(&4)
    })
    .await;
    let w_b = start(b, b.config(table, "worker-b"), Checkpointing::EveryBatch);
    let took = wait_for(30, "leases balance to 2 + 2", || async {
        let o = owners(&store).await;
        o.get("worker-a") == Some(&2) && o.get("worker-b") == Some(&2)
    })
    .await;
    eprintln!("balanced to 2 + 2 in {took:?}");
    // Worker A noticed both steals (its processors were told) before any data exists.
    wait_for(30, "worker-a noticed 2 lost leases", || async {
        a.probe.lease_lost.load(Ordering::SeqCst) == 2
    })
    .await;
    let n = 400;
    write(b.client(), &stream, records(0, n, 40)).await;
    wait_for(60, "every record processed", || async {
        merged(&[&a, &w_b]).len() as u64 >= n
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let seen = merged(&[&a, &w_b]);
    assert_exactly_once(&seen, n);
    assert!(
        a.probe.count() > 0 && w_b.probe.count() > 0,
        "both workers processed records"
    );
    let o = owners(&store).await;
    assert_eq!(
        (o.get("worker-a"), o.get("worker-b")),
        (Some(&2), Some(&2)),
        "still balanced: {o:?}"
    );
    a.stop().await;
    w_b.stop().await;
}

/// A worker that dies without releasing is taken over after the failover time; nothing
/// checkpointed is replayed, nothing is lost.
pub async fn dead_worker_is_taken_over<B: Backend>(b: &B, table: &str) {
    let store = b.store();
    let stream = b.stream();
    let a = start(b, b.config(table, "worker-a"), Checkpointing::EveryBatch);
    wait_for(30, "worker-a holds the 4 leases", || async {
        owners(&store).await.get("worker-a") == Some(&4)
    })
    .await;
    let first = 200;
    write(b.client(), &stream, records(0, first, 20)).await;
    wait_for(60, "worker-a processed the first records", || async {
        a.probe.count() as u64 >= first
    })
    .await;
    wait_for(30, "worker-a's checkpoints written", || async {
        a.probe.in_flight.load(Ordering::SeqCst) == 0
    })
    .await;
    let w_b = start(b, b.config(table, "worker-b"), Checkpointing::EveryBatch);
    wait_for(30, "leases balance to 2 + 2", || async {
        let o = owners(&store).await;
        o.get("worker-a") == Some(&2) && o.get("worker-b") == Some(&2)
    })
    .await;
    wait_for(30, "worker-a noticed 2 lost leases", || async {
        a.probe.lease_lost.load(Ordering::SeqCst) == 2
    })
    .await;
    let a_seen = a.probe.seen();
    a.kill().await;
    let took = wait_for(
        30,
        "worker-b takes over the dead worker's leases",
        || async { owners(&store).await.get("worker-b") == Some(&4) },
    )
    .await;
    eprintln!("dead worker taken over after {took:?} (failover 1.5 s, taking every 0.5 s)");
    assert!(
        took >= Duration::from_millis(1_000),
        "taken before the lease could expire: {took:?}"
    );
    // And no later than the failover time plus a taking interval (plus slack for a
    // loaded machine and the emulators).
    let config = b.config(table, "worker-b");
    let bound = config.failover() + config.taking_interval() + Duration::from_secs(3);
    assert!(
        took <= bound,
        "taken over after {took:?}, more than failover + taking interval + 3 s = {bound:?}"
    );
    let second = 200;
    write(b.client(), &stream, records(first, second, 20)).await;
    wait_for(60, "every record processed", || async {
        (a_seen.len() + w_b.probe.count()) as u64 >= first + second
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut seen = a_seen;
    seen.extend(w_b.probe.seen());
    assert_exactly_once(&seen, first + second);
    w_b.stop().await;
}

/// A graceful stop checkpoints and releases: the other worker takes over at once (well
/// before the 10 s failover time) and replays nothing.
pub async fn graceful_stop_hands_over<B: Backend>(b: &B, table: &str) -> Duration {
    let store = b.store();
    let stream = b.stream();
    // The lease timings at their defaults (failover 10 s, renewal 3.3 s, taking 20 s,
    // claiming released leases every 1 s); only reading is fast.
    let defaults = |w: &str| ConsumerConfig {
        failover_time_ms: 10_000,
        lease_renewal_interval_ms: 0,
        lease_taking_interval_ms: 0,
        lease_claim_interval_ms: 0,
        lease_call_timeout_ms: 0,
        ..b.config(table, w)
    };
    let a = start(b, defaults("worker-a"), Checkpointing::EveryBatch);
    wait_for(30, "worker-a holds the 4 leases", || async {
        owners(&store).await.get("worker-a") == Some(&4)
    })
    .await;
    let w_b = start(b, defaults("worker-b"), Checkpointing::EveryBatch);
    wait_for(30, "leases balance to 2 + 2", || async {
        let o = owners(&store).await;
        o.get("worker-a") == Some(&2) && o.get("worker-b") == Some(&2)
    })
    .await;
    wait_for(30, "worker-a noticed 2 lost leases", || async {
        a.probe.lease_lost.load(Ordering::SeqCst) == 2
    })
    .await;
    let n = 300;
    write(b.client(), &stream, records(0, n, 30)).await;
    wait_for(60, "every record processed", || async {
        merged(&[&a, &w_b]).len() as u64 >= n
    })
    .await;
    let stopped = Instant::now();
    let a_seen = a.probe.seen();
    a.stop().await;
    let took = wait_for(30, "worker-b holds all 4 leases", || async {
        owners(&store).await.get("worker-b") == Some(&4)
    })
    .await;
    let handover = stopped.elapsed();
    eprintln!("graceful stop → handover in {handover:?} (stop itself + {took:?})");
    assert!(
        took < Duration::from_secs(2),
        "released leases taken {took:?} after the stop returned: over 2 s at the default timings"
    );
    let more = 100;
    write(b.client(), &stream, records(n, more, 30)).await;
    wait_for(60, "every record processed", || async {
        (a_seen.len() + w_b.probe.count()) as u64 >= n + more
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut seen = a_seen;
    seen.extend(w_b.probe.seen());
    assert_exactly_once(&seen, n + more);
    w_b.stop().await;
    handover
}

/// Two workers sharing one probe, balanced to 2 + 2 leases (with `a_first`, worker-a
/// takes all 4 before worker-b starts).
async fn two_balanced_workers<B: Backend>(
    b: &B,
    table: &str,
    a_first: bool,
) -> (Worker, Worker, Arc<Probe>) {
    let store = b.store();
    let probe = Arc::new(Probe::default());
    let worker = |name: &str| {
        start_with(
            b,
            b.config(table, name),
            Checkpointing::EveryBatch,
            probe.clone(),
        )
    };
    let a = worker("worker-a");
    if a_first {
        wait_for(30, "worker-a holds the 4 leases", || async {
            owners(&store).await.get("worker-a") == Some(&4)
        })
        .await;
    }
    let w_b = worker("worker-b");
    wait_for(30, "leases balance to 2 + 2", || async {
        let o = owners(&store).await;
        o.get("worker-a") == Some(&2) && o.get("worker-b") == Some(&2)
    })
    .await;
    (a, w_b, probe)
}

/// Records of a key seen out of order (a later index before an earlier one).
pub fn key_order_violations(seen: &[Seen]) -> usize {
    let mut last: HashMap<&str, u64> = HashMap::new();
    let mut violations = 0;
    for s in seen {
        if let Some(prev) = last.insert(&s.key, s.index)
            && prev > s.index
        {
            violations += 1;
        }
    }
    violations
}

/// A split and a merge while the producer is sending and two workers are reading: every
/// record is delivered exactly once (user records aggregated for the parent on the
/// producer's old map and put on the sibling child are sent again by the producer to
/// their own child, and skipped by the consumer where they hash outside the shard).
/// Returns the per-key order violations (records that shared the first PutRecords call
/// on the old map with an earlier record of their key: see the README).
pub async fn reshard_while_producing<B: Backend>(b: &B, table: &str) -> usize {
    let stream = b.stream();
    let (a, w_b, probe) = two_balanced_workers(b, table, false).await;
    let n: u64 = 1_500;
    let sent = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let producing = {
        let (client, stream, sent) = (b.client(), stream.clone(), sent.clone());
        tokio::spawn(async move {
            let config = ProducerConfig {
                aggregation_max_bytes: 1024,
                record_max_buffered_time_ms: 20,
                ..ProducerConfig::default()
            };
            let producer = Producer::start(client, &stream, config)
                .await
                .expect("producer");
            let mut receipts = Vec::new();
            for (i, r) in records(0, n, 30).into_iter().enumerate() {
                receipts.push(producer.send(r).await.expect("send"));
                sent.store(i as u64 + 1, Ordering::SeqCst);
                if i % 25 == 24 {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
            for r in receipts {
                assert!(r.await.is_ok(), "record not put");
            }
            producer.shutdown().await;
        })
    };
    let shards = b.client().list_shards(&stream).await.expect("ListShards");
    wait_for(60, "a third sent", || async {
        sent.load(Ordering::SeqCst) >= n / 3
    })
    .await;
    b.split(&shards[0].shard_id).await;
    wait_for(60, "two thirds sent", || async {
        sent.load(Ordering::SeqCst) >= 2 * n / 3
    })
    .await;
    b.merge(&shards[2].shard_id, &shards[3].shard_id).await;
    producing.await.expect("producer task");
    wait_for(120, "every record processed", || async {
        probe.count() as u64 >= n
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    a.stop().await;
    w_b.stop().await;
    let seen = probe.seen();
    assert_exactly_once(&seen, n);
    let violations = key_order_violations(&seen);
    eprintln!("live reshard: {n} records exactly once, {violations} per-key order violations");
    violations
}

/// A split and a merge in the middle of a run: nothing lost, each key in order across
/// parent and children (one shared log, so the order is global across both workers).
pub async fn reshard_mid_run<B: Backend>(b: &B, table: &str) {
    let store = b.store();
    let stream = b.stream();
    let (a, w_b, probe) = two_balanced_workers(b, table, true).await;
    let per_phase = 150;
    write(b.client(), &stream, records(0, per_phase, 30)).await;
    let shards = b.client().list_shards(&stream).await.expect("ListShards");
    b.split(&shards[0].shard_id).await;
    write(b.client(), &stream, records(per_phase, per_phase, 30)).await;
    b.merge(&shards[2].shard_id, &shards[3].shard_id).await;
    write(b.client(), &stream, records(2 * per_phase, per_phase, 30)).await;
    // A split of a split: one child of the first split splits again.
    let child = b
        .client()
        .list_shards(&stream)
        .await
        .expect("ListShards")
        .into_iter()
        .find(|s| s.is_open() && s.parent_shard_id.as_deref() == Some(&shards[0].shard_id))
        .expect("a child of the first split");
    b.split(&child.shard_id).await;
    write(b.client(), &stream, records(3 * per_phase, per_phase, 30)).await;
    let n = 4 * per_phase;
    wait_for(60, "every record processed", || async {
        probe.count() as u64 >= n
    })
    .await;
    // The 4 closed shards reached SHARD_END and, once their children started, their
    // leases were deleted (KCL's lease clean-up): 5 leases, the open shards'.
    let open: BTreeSet<String> = b
        .client()
        .list_shards(&stream)
        .await
        .expect("ListShards")
        .into_iter()
        .filter(|s| s.is_open())
        .map(|s| s.shard_id)
        .collect();
    assert_eq!(open.len(), 5);
    let lease_keys = || async {
        store
            .list_leases()
            .await
            .expect("leases")
            .into_iter()
            .map(|l| l.lease_key)
            .collect::<BTreeSet<String>>()
    };
    wait_for(30, "the finished parents' leases cleaned up", || async {
        lease_keys().await == open
    })
    .await;
    // Several shard syncs later, no parent was created (and read) again.
    tokio::time::sleep(Duration::from_millis(3_000)).await;
    assert_eq!(lease_keys().await, open, "no finished parent re-created");
    a.stop().await;
    w_b.stop().await;
    let seen = probe.seen();
    assert_key_order(&seen);
    assert_exactly_once(&seen, n);
    let children: std::collections::BTreeSet<&str> =
        seen.iter().map(|s| s.shard.as_str()).collect();
    assert!(
        children.len() >= 6,
        "records came from parents and children: {children:?}"
    );
}

/// A restart replays exactly what was not checkpointed (a checkpoint in the middle of an
/// aggregate skips the sub-records at or before it).
pub async fn restart_replays_only_what_was_not_checkpointed<B: Backend>(b: &B, table: &str) {
    let store = b.store();
    let stream = b.stream();
    let k = 7;
    let a = start(b, b.config(table, "worker-a"), Checkpointing::AtRecord(k));
    wait_for(30, "worker-a holds the 4 leases", || async {
        owners(&store).await.get("worker-a") == Some(&4)
    })
    .await;
    let n = 400;
    write(b.client(), &stream, records(0, n, 40)).await;
    wait_for(60, "every record processed", || async {
        a.probe.count() as u64 >= n
    })
    .await;
    wait_for(30, "checkpoints written", || async {
        a.probe.in_flight.load(Ordering::SeqCst) == 0
    })
    .await;
    let first = a.probe.seen();
    a.stop().await;
    assert_exactly_once(&first, n);
    let mut expected = Vec::new();
    let mut per_shard: BTreeMap<&str, Vec<&Seen>> = BTreeMap::new();
    for s in &first {
        per_shard.entry(&s.shard).or_default().push(s);
    }
    for list in per_shard.values() {
        assert!(list.len() > k, "each shard has more than {k} records");
        expected.extend(list[k..].iter().map(|s| s.index));
    }
    assert!(first[..].iter().any(|s| s.sub > 0), "data was aggregated");
    let a2 = start(b, b.config(table, "worker-a2"), Checkpointing::EveryBatch);
    wait_for(60, "the replay", || async {
        a2.probe.count() >= expected.len()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut replayed: Vec<u64> = a2.probe.seen().iter().map(|s| s.index).collect();
    replayed.sort_unstable();
    expected.sort_unstable();
    assert_eq!(
        replayed.len(),
        expected.len(),
        "replayed {} records, expected exactly {}",
        replayed.len(),
        expected.len()
    );
    assert_eq!(replayed, expected);
    a2.stop().await;
}

/// A checkpoint after the lease went to another worker is refused with a typed error and
/// writes nothing; the processor is told the lease was lost.
pub async fn checkpoint_after_lease_loss_is_refused<B: Backend>(b: &B, table: &str) {
    let store = b.store();
    let stream = b.stream();
    // Renewal every 10 s: the worker cannot notice the theft before it checkpoints.
    let config = ConsumerConfig {
        failover_time_ms: 30_000,
        lease_taking_interval_ms: 10_000,
        ..b.config(table, "worker-a")
    };
    let a = start(b, config, Checkpointing::EveryBatch);
    wait_for(30, "worker-a holds the 4 leases", || async {
        owners(&store).await.get("worker-a") == Some(&4)
    })
    .await;
    for l in store.list_leases().await.expect("leases") {
        store
            .take_lease(&l, "thief")
            .await
            .expect("thief takes the lease");
    }
    write(b.client(), &stream, records(0, 100, 40)).await;
    wait_for(30, "a checkpoint refused for lease loss", || async {
        a.probe.lease_lost_refusals.load(Ordering::SeqCst) >= 1
    })
    .await;
    wait_for(30, "the processor told of the lost lease", || async {
        a.probe.lease_lost.load(Ordering::SeqCst) >= 1
    })
    .await;
    let errors = a.probe.checkpoint_errors.lock().expect("lock").clone();
    assert!(errors[0].contains("lost its lease"), "{errors:?}");
    for l in store.list_leases().await.expect("leases") {
        assert_eq!(l.lease_owner.as_deref(), Some("thief"));
        assert!(
            l.checkpoint.is_sentinel(),
            "a refused checkpoint wrote {}",
            l.checkpoint
        );
    }
    a.stop().await;
}

/// The indices of `seen`, checked to be exactly `from..from + n`, each once.
fn assert_exactly(seen: &[Seen], from: u64, n: u64) {
    let mut indices: Vec<u64> = seen.iter().map(|s| s.index).collect();
    indices.sort_unstable();
    let expected: Vec<u64> = (from..from + n).collect();
    assert_eq!(
        indices,
        expected,
        "expected exactly the records {from}..{}",
        from + n
    );
}

/// `LATEST`: what was in the stream before the worker started is skipped, what comes after
/// is delivered, each record once.
pub async fn initial_position_latest<B: Backend>(b: &B, table: &str) {
    let stream = b.stream();
    write(b.client(), &stream, records(0, 100, 10)).await;
    let shards = b.client().list_shards(&stream).await.expect("shards").len();
    let config = ConsumerConfig {
        initial_position: InitialPosition::Latest,
        // An empty batch tells that the shard's reader holds its LATEST position.
        deliver_empty_batches: true,
        ..b.config(table, "worker-a")
    };
    let w = start(b, config, Checkpointing::EveryBatch);
    wait_for(60, "every shard's reader positioned", || async {
        w.probe.reading.lock().expect("lock").len() == shards
    })
    .await;
    write(b.client(), &stream, records(100, 50, 10)).await;
    expect_the_later_50_then_stop(w, "the 50 records written after the start").await;
}

/// `AT_TIMESTAMP`: reading starts at the first record that arrived at or after the time.
pub async fn initial_position_at_timestamp<B: Backend>(b: &B, table: &str) {
    let stream = b.stream();
    write(b.client(), &stream, records(0, 100, 10)).await;
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64;
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    write(b.client(), &stream, records(100, 50, 10)).await;
    let config = ConsumerConfig {
        initial_position: InitialPosition::AtTimestamp,
        initial_timestamp_ms: at,
        ..b.config(table, "worker-a")
    };
    let w = start(b, config, Checkpointing::EveryBatch);
    expect_the_later_50_then_stop(w, "the 50 records written after the timestamp").await;
}

/// The initial-position tests' end: the worker processes exactly records 100..150 (the 50
/// written after its start position, none before), then stops.
async fn expect_the_later_50_then_stop(w: Worker, what: &str) {
    wait_for(60, what, || async { w.probe.count() >= 50 }).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_exactly(&w.probe.seen(), 100, 50);
    w.stop().await;
}
