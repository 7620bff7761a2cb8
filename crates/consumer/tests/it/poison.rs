//! A batch that fails forever: with `on_processing_failure = "retry"` (the default) the
//! shard holds there and nothing is skipped; with `"dead_letter"` the batch goes to the
//! processor's dead-letter sink after `processing_retry.deadline_ms` and the shard moves
//! on, every other record processed exactly once and the checkpoint past the batch.

use crate::support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chief_config::health::Health;
use chief_config::retry::RetryPolicy;
use chief_consumer::{
    ConsumerConfig, DeadLetterInput, LeaseStore, MemoryLeaseStore, OnProcessingFailure,
    ProcessRecordsInput, ProcessorError, ProcessorFactory, RecordProcessor, Scheduler,
    ShardEndedInput,
};
use chief_stream::{MemoryStreams, PutEntry, StreamClient};
use support::{fast_config, wait_for};
use tokio_util::sync::CancellationToken;

const STREAM: &str = "Poison";
const POISON: u64 = 50;

#[derive(Default)]
struct Log {
    processed: Mutex<Vec<u64>>,
    dead_lettered: Mutex<Vec<u64>>,
    attempts: Mutex<Vec<u32>>,
}

struct Poisoned(Arc<Log>);

fn index(data: &[u8]) -> u64 {
    String::from_utf8_lossy(data)
        .rsplit(':')
        .next()
        .and_then(|i| i.parse().ok())
        .expect("index in data")
}

impl RecordProcessor for Poisoned {
    async fn process_records(
        &mut self,
        input: ProcessRecordsInput<'_>,
    ) -> Result<(), ProcessorError> {
        let batch: Vec<u64> = input.records.iter().map(|r| index(&r.data)).collect();
        if batch.contains(&POISON) {
            return Err(format!("record {POISON} cannot be processed").into());
        }
        self.0.processed.lock().expect("lock").extend(batch);
        input.checkpointer.checkpoint().await?;
        Ok(())
    }

    async fn dead_letter(&mut self, input: DeadLetterInput<'_>) -> Result<(), ProcessorError> {
        assert!(
            input.error.contains("cannot be processed"),
            "{}",
            input.error
        );
        self.0.attempts.lock().expect("lock").push(input.attempts);
        self.0
            .dead_lettered
            .lock()
            .expect("lock")
            .extend(input.records.iter().map(|r| index(&r.data)));
        Ok(())
    }

    async fn shard_ended(&mut self, input: ShardEndedInput<'_>) -> Result<(), ProcessorError> {
        input.checkpointer.checkpoint().await?;
        Ok(())
    }
}

struct Factory(Arc<Log>);

impl ProcessorFactory for Factory {
    type Processor = Poisoned;
    fn create(&self, _shard_id: &str) -> Poisoned {
        Poisoned(self.0.clone())
    }
}

/// 100 plain records on a 1-shard stream, read 10 at a time.
async fn setup() -> (MemoryStreams, MemoryLeaseStore) {
    let streams = MemoryStreams::new(41);
    streams.create_stream(STREAM, 1);
    let entries: Vec<PutEntry> = (0..100)
        .map(|i| PutEntry {
            partition_key: format!("key-{}", i % 7),
            explicit_hash_key: None,
            data: format!("key-{}:{i}", i % 7).into_bytes().into(),
        })
        .collect();
    let put = streams.put_records(STREAM, entries).await.expect("put");
    assert!(put.iter().all(Result::is_ok));
    (streams, MemoryLeaseStore::new("poison"))
}

fn config(mode: OnProcessingFailure, deadline_ms: u64) -> ConsumerConfig {
    ConsumerConfig {
        max_records: 10,
        on_processing_failure: mode,
        processing_retry: RetryPolicy {
            initial_backoff_ms: 10,
            max_backoff_ms: 50,
            multiplier: 2.0,
            deadline_ms,
        },
        ..fast_config(STREAM, "poison", "w")
    }
}

fn run(
    config: ConsumerConfig,
    streams: &MemoryStreams,
    store: &MemoryLeaseStore,
    log: &Arc<Log>,
) -> (CancellationToken, tokio::task::JoinHandle<()>) {
    run_reporting(config, streams, store, log, Health::new())
}

fn run_reporting(
    config: ConsumerConfig,
    streams: &MemoryStreams,
    store: &MemoryLeaseStore,
    log: &Arc<Log>,
    health: Health,
) -> (CancellationToken, tokio::task::JoinHandle<()>) {
    let scheduler = Scheduler::new(config, streams.clone(), store.clone(), Factory(log.clone()))
        .expect("scheduler")
        .with_health(health);
    let token = CancellationToken::new();
    let run = scheduler.run(token.clone());
    (
        token,
        tokio::spawn(async move {
            run.await.expect("scheduler");
        }),
    )
}

#[tokio::test]
async fn dead_letter_mode_hands_the_failing_batch_over_after_the_deadline_and_moves_on() {
    let (streams, store) = setup().await;
    let log = Arc::new(Log::default());
    let (token, handle) = run(
        config(OnProcessingFailure::DeadLetter, 500),
        &streams,
        &store,
        &log,
    );
    wait_for(30, "every record processed or dead-lettered", || async {
        log.processed.lock().expect("lock").len() + log.dead_lettered.lock().expect("lock").len()
            >= 100
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let processed = log.processed.lock().expect("lock").clone();
    let dead = log.dead_lettered.lock().expect("lock").clone();
    assert!(dead.contains(&POISON), "{dead:?}");
    assert!(dead.len() <= 10, "only the poison's batch: {dead:?}");
    let attempts = log.attempts.lock().expect("lock").clone();
    assert_eq!(attempts.len(), 1, "dead-lettered once");
    assert!(
        attempts[0] >= 3,
        "retried until the 500 ms deadline: {attempts:?}"
    );
    let mut all: Vec<u64> = processed.iter().chain(&dead).copied().collect();
    all.sort_unstable();
    assert_eq!(
        all,
        (0..100).collect::<Vec<_>>(),
        "each record once, none lost"
    );
    assert!(processed.contains(&99), "the shard went on past the batch");
    // The checkpoint covers the dead-lettered batch and everything after it.
    let lease = store.list_leases().await.expect("leases").remove(0);
    let last = streams
        .records(STREAM, &lease.lease_key)
        .last()
        .cloned()
        .expect("records");
    assert_eq!(lease.checkpoint.sequence_number, last.sequence_number);
    token.cancel();
    handle.await.expect("join");
}

#[tokio::test]
async fn retry_mode_never_skips_the_failing_batch_and_reports_not_ready() {
    let (streams, store) = setup().await;
    let log = Arc::new(Log::default());
    let health = Health::new();
    let (token, handle) = run_reporting(
        ConsumerConfig {
            unready_after_failing_ms: 1_000,
            ..config(OnProcessingFailure::Retry, 500)
        },
        &streams,
        &store,
        &log,
        health.clone(),
    );
    // Well past the 500 ms deadline: still retrying, nothing after the poison delivered.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let processed = log.processed.lock().expect("lock").clone();
    assert!(log.dead_lettered.lock().expect("lock").is_empty());
    assert!(
        !processed.is_empty(),
        "the batches before the poison were processed"
    );
    assert!(
        processed.iter().all(|i| *i < POISON),
        "nothing past the poison: {processed:?}"
    );
    // Failing for over a second: the worker says it is not ready, and why.
    let failing = health.failing();
    assert_eq!(failing.len(), 1, "{failing:?}");
    assert_eq!(failing[0].0, "shard shardId-000000000000 processing");
    assert!(
        failing[0].1.starts_with("process_records failing for ")
            && failing[0].1.contains("record 50 cannot be processed"),
        "{failing:?}"
    );
    token.cancel();
    handle.await.expect("join");
    // Stopped: the shard's checks went with its task; the worker reports it stopped.
    assert_eq!(
        health.failing(),
        vec![("consumer".to_owned(), "stopped".to_owned())]
    );
}

#[test]
fn dead_letter_mode_without_a_deadline_is_refused() {
    let err = config(OnProcessingFailure::DeadLetter, 0)
        .validate()
        .expect_err("refused");
    assert!(err.contains("deadline_ms"), "{err}");
}
