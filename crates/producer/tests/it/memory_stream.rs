//! The producer against the in-memory Kinesis of `chief-stream`: delivery, faults,
//! expiry, backpressure, resharding and order.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chief_aggregation::{UserRecord, deaggregate};
use chief_producer::{BatchSendError, FailureReason, Producer, ProducerConfig, SendError};
use chief_stream::{Faults, MemoryStreams, Shard};

const STREAM: &str = "TestStream";

fn records(n: usize, keys: usize) -> Vec<UserRecord> {
    (0..n)
        .map(|i| {
            let key = format!("key-{:04}", i % keys);
            UserRecord::new(
                key.clone(),
                format!("{key}:{i:08}:{}", "x".repeat(60)).into_bytes(),
            )
        })
        .collect()
}

/// Every user record in the stream, per shard in sequence order, checking that each lies
/// in the hash range of the shard that holds it.
async fn read_back(memory: &MemoryStreams) -> Vec<(String, UserRecord)> {
    read_back_checked(memory, true).await
}

/// Every user record stored in the stream, per shard in sequence order: (shard, the
/// Kinesis record's sequence number, sub-sequence number, record).
fn stored_user_records(memory: &MemoryStreams) -> Vec<(Shard, String, u64, UserRecord)> {
    let mut out = Vec::new();
    for shard in memory.shards(STREAM) {
        for stored in memory.records(STREAM, &shard.shard_id) {
            let outer = UserRecord {
                partition_key: stored.partition_key,
                explicit_hash_key: stored.explicit_hash_key,
                data: stored.data,
            };
            for d in deaggregate(outer) {
                out.push((
                    shard.clone(),
                    stored.sequence_number.clone(),
                    d.sub_sequence_number,
                    d.record,
                ));
            }
        }
    }
    out
}

/// As `read_back`; with `check_ranges` false, records of aggregates predicted for a shard
/// that was split while they were in flight may lie in the sibling's range (the consumer
/// keeps them).
async fn read_back_checked(
    memory: &MemoryStreams,
    check_ranges: bool,
) -> Vec<(String, UserRecord)> {
    stored_user_records(memory)
        .into_iter()
        .map(|(shard, _, _, record)| {
            let hash = record.hash_key().expect("hash");
            assert!(
                !check_ranges || shard.contains(hash),
                "user record {:?} is on {} which does not own its hash",
                record.partition_key,
                shard.shard_id
            );
            (shard.shard_id, record)
        })
        .collect()
}

/// Every user record as a KCL reads the stream: shard by shard in id order (a parent
/// before its children), each in sequence order, skipping the user records of aggregates
/// that hash outside their shard (copies the producer sent again to their own shard).
/// Also returns how many were skipped.
fn read_back_as_kcl(memory: &MemoryStreams) -> (Vec<(String, UserRecord)>, usize) {
    let mut skipped = 0;
    let mut kept = Vec::new();
    for (shard, _, _, record) in stored_user_records(memory) {
        if shard.contains(record.hash_key().expect("hash")) {
            kept.push((shard.shard_id, record));
        } else {
            skipped += 1;
        }
    }
    (kept, skipped)
}

/// For every key, the records' indices increase in the order a KCL reads them: one
/// shard after another, parents before children (`read_back_as_kcl`'s order).
fn assert_key_order_across_shards(stream: &[(String, UserRecord)]) -> usize {
    let mut last: HashMap<&str, u64> = HashMap::new();
    let mut violations = 0;
    for (_, r) in stream {
        let index: u64 = String::from_utf8_lossy(&r.data)
            .split(':')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("index");
        if let Some(prev) = last.insert(&r.partition_key, index)
            && prev > index
        {
            violations += 1;
        }
    }
    violations
}

/// Back-off for the fault tests: from `initial_ms` up to `max_ms`.
fn retry(initial_ms: u64, max_ms: u64) -> chief_config::retry::RetryPolicy {
    chief_config::retry::RetryPolicy {
        initial_backoff_ms: initial_ms,
        max_backoff_ms: max_ms,
        ..Default::default()
    }
}

/// A 4-shard stream that throttles 30 % of entries, fails 5 % with internal failures and
/// 10 % of calls whole, and times out 2 % of calls.
fn faulty_stream(seed: u64) -> MemoryStreams {
    let memory = MemoryStreams::new(seed);
    memory.create_stream(STREAM, 4);
    memory.set_faults(Faults {
        throttle_ratio: 0.3,
        internal_failure_ratio: 0.05,
        call_error_ratio: 0.1,
        timeout_ratio: 0.02,
        ..Faults::default()
    });
    memory
}

/// A 2-shard stream that refuses every entry, and a config whose records expire after
/// 400 ms of retries.
fn never_accepting(seed: u64) -> (MemoryStreams, ProducerConfig) {
    let memory = MemoryStreams::new(seed);
    memory.create_stream(STREAM, 2);
    memory.set_faults(Faults {
        reject_all: true,
        ..Faults::default()
    });
    let config = ProducerConfig {
        record_ttl_ms: 400,
        retry: retry(20, 50),
        ..ProducerConfig::default()
    };
    (memory, config)
}

/// A producer (shared) on a fresh stream of `shards` shards that is then stalled: no call
/// returns until the faults are cleared.
async fn stalled_producer(
    seed: u64,
    shards: u32,
    config: ProducerConfig,
) -> (MemoryStreams, Arc<Producer>) {
    let memory = MemoryStreams::new(seed);
    memory.create_stream(STREAM, shards);
    let producer = Arc::new(
        Producer::start(memory.clone(), STREAM, config)
            .await
            .expect("start"),
    );
    memory.set_faults(Faults {
        stall: true,
        ..Faults::default()
    });
    (memory, producer)
}

fn sorted(mut v: Vec<UserRecord>) -> Vec<UserRecord> {
    v.sort_by(|a, b| (&a.partition_key, &a.data).cmp(&(&b.partition_key, &b.data)));
    v
}

async fn send_all(producer: &Producer, input: &[UserRecord]) -> Vec<chief_producer::RecordOutcome> {
    let mut receipts = Vec::with_capacity(input.len());
    for r in input {
        receipts.push(producer.send(r.clone()).await.expect("send"));
    }
    let mut outcomes = Vec::with_capacity(receipts.len());
    for r in receipts {
        outcomes.push(r.await);
    }
    outcomes
}

/// For every key, the records' indices (in data) appear in increasing order in the stream.
fn assert_per_key_order(stream: &[(String, UserRecord)]) {
    let mut last: HashMap<(String, String), u64> = HashMap::new();
    for (shard, r) in stream {
        let text = String::from_utf8_lossy(&r.data);
        let index: u64 = text
            .split(':')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("index");
        let k = (shard.clone(), r.partition_key.clone());
        if let Some(prev) = last.insert(k, index) {
            assert!(
                prev < index,
                "key {} out of order: {prev} then {index}",
                r.partition_key
            );
        }
    }
}

#[tokio::test]
async fn delivers_every_record_to_the_shard_owning_it() {
    let memory = MemoryStreams::new(1);
    memory.create_stream(STREAM, 4);
    let producer = Producer::start(memory.clone(), STREAM, ProducerConfig::default())
        .await
        .expect("start");
    let input = records(20_000, 500);
    let outcomes = send_all(&producer, &input).await;
    let stats = producer.shutdown().await;
    assert_eq!(
        (stats.received, stats.put, stats.failed, stats.pending),
        (20_000, 20_000, 0, 0)
    );

    // Outcomes: shard and (sequence, sub-sequence) identify each record uniquely.
    let mut ids = std::collections::HashSet::new();
    for o in &outcomes {
        let s = o.as_ref().expect("success");
        assert!(ids.insert((s.sequence_number.clone(), s.sub_sequence_number)));
        assert!(s.attempts.len() == 1 && s.attempts[0].is_success());
    }
    let back = read_back(&memory).await;
    assert_eq!(
        sorted(back.iter().map(|(_, r)| r.clone()).collect()),
        sorted(input)
    );
    assert_per_key_order(&back);
    let kinesis_records = memory.stats().entries_written;
    assert!(
        kinesis_records < 200,
        "aggregation packs ~600 records per Kinesis record, got {kinesis_records}"
    );
}

#[tokio::test]
async fn throttling_internal_failures_and_500s_still_deliver_everything_exactly_once() {
    let memory = faulty_stream(7);
    let config = ProducerConfig {
        aggregation_max_bytes: 4096,
        retry: retry(5, 50),
        ..ProducerConfig::default()
    };
    let producer = Producer::start(memory.clone(), STREAM, config)
        .await
        .expect("start");
    let input = records(10_000, 100);
    let outcomes = send_all(&producer, &input).await;
    producer.shutdown().await;
    let retried = outcomes
        .iter()
        .filter(|o| o.as_ref().is_ok_and(|s| s.attempts.len() > 1))
        .count();
    assert!(outcomes.iter().all(Result::is_ok), "every record is put");
    assert!(
        retried > 1000,
        "faults were injected and retried ({retried})"
    );
    let stats = memory.stats();
    assert!(
        stats.entries_refused > 0 && stats.calls_failed > 0,
        "{stats:?}"
    );
    let back: Vec<UserRecord> = read_back(&memory)
        .await
        .into_iter()
        .map(|(_, r)| r)
        .collect();
    assert_eq!(back.len(), input.len(), "no record twice, none lost");
    assert_eq!(sorted(back), sorted(input));
}

#[tokio::test]
async fn per_key_order_holds_under_throttling_with_one_entry_per_shard_per_call() {
    let memory = MemoryStreams::new(3);
    memory.create_stream(STREAM, 2);
    memory.set_faults(Faults {
        throttle_ratio: 0.3,
        ..Faults::default()
    });
    let config = ProducerConfig {
        aggregation_max_bytes: 2048,
        max_entries_per_shard_per_call: 1,
        retry: retry(1, 10),
        ..ProducerConfig::default()
    };
    let producer = Producer::start(memory.clone(), STREAM, config)
        .await
        .expect("start");
    let input = records(3_000, 20);
    let outcomes = send_all(&producer, &input).await;
    producer.shutdown().await;
    assert!(outcomes.iter().all(Result::is_ok));
    let back = read_back(&memory).await;
    assert_eq!(back.len(), 3_000);
    assert_per_key_order(&back);
}

#[tokio::test]
async fn a_stream_that_never_accepts_fails_every_record_back_after_its_ttl() {
    let (memory, config) = never_accepting(5);
    let producer = Producer::start(memory.clone(), STREAM, config)
        .await
        .expect("start");
    let input = records(1_000, 50);
    let started = std::time::Instant::now();
    let outcomes = send_all(&producer, &input).await;
    let elapsed = started.elapsed();
    let stats = producer.shutdown().await;
    assert_eq!((stats.put, stats.failed), (0, 1_000));
    assert!(
        elapsed >= Duration::from_millis(400),
        "failed before the TTL: {elapsed:?}"
    );
    let mut handed_back = Vec::new();
    for o in outcomes {
        let f = o.expect_err("every record fails");
        assert_eq!(f.reason, FailureReason::Expired);
        assert!(
            f.attempts.len() >= 2,
            "retried until the TTL: {} attempts",
            f.attempts.len()
        );
        assert!(f.attempts.iter().all(|a| {
            a.error
                .as_ref()
                .is_some_and(|e| e.code == "ProvisionedThroughputExceededException")
        }));
        handed_back.push(f.record.expect("the record comes back"));
    }
    assert_eq!(handed_back, input, "records come back exactly, in order");
    assert_eq!(memory.stats().entries_written, 0);
}

#[tokio::test]
async fn retries_stop_at_the_retry_deadline_before_the_ttl() {
    let (memory, mut config) = never_accepting(6);
    config.record_ttl_ms = 30_000;
    config.retry.deadline_ms = 300;
    let producer = Producer::start(memory.clone(), STREAM, config)
        .await
        .expect("start");
    let input = records(100, 10);
    let started = std::time::Instant::now();
    let outcomes = send_all(&producer, &input).await;
    let elapsed = started.elapsed();
    producer.shutdown().await;
    assert!(
        elapsed < Duration::from_secs(10),
        "the 300 ms retry deadline, not the 30 s TTL, ended them: {elapsed:?}"
    );
    for o in outcomes {
        let f = o.expect_err("every record fails");
        assert_eq!(f.reason, FailureReason::Expired);
        let first = f.attempts.first().expect("attempted").started;
        let last = f.attempts.last().expect("attempted").started;
        let span = last.duration_since(first).unwrap_or_default();
        assert!(f.attempts.len() >= 2, "retried: {}", f.attempts.len());
        assert!(
            // No retry planned past the deadline (100 ms of slack for the scheduler).
            span < Duration::from_millis(400),
            "no retry started past the deadline: {span:?}"
        );
    }
    assert_eq!(memory.stats().entries_written, 0);
}

#[tokio::test]
async fn a_stalled_stream_keeps_the_buffer_under_its_bound_while_send_waits() {
    let bound = 2 * 1024 * 1024;
    let (memory, producer) = stalled_producer(
        9,
        4,
        ProducerConfig {
            buffer_max_bytes: bound,
            ..ProducerConfig::default()
        },
    )
    .await;
    let input = records(100_000, 1000);
    let per_record = input[0].size() + chief_producer::RECORD_OVERHEAD_BYTES;
    let sender = {
        let producer = producer.clone();
        let input = input.clone();
        tokio::spawn(async move {
            let mut receipts = Vec::new();
            for r in input {
                receipts.push(producer.send(r).await.expect("send"));
            }
            receipts
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stalled = producer.stats();
    assert!(
        !sender.is_finished(),
        "send must wait while the buffer is full"
    );
    assert!(
        stalled.pending as usize * per_record <= bound,
        "{} records of {per_record} bytes pending exceed the bound {bound}",
        stalled.pending
    );
    assert!(
        stalled.pending as usize * per_record > bound / 2,
        "the buffer fills up to its bound"
    );
    memory.set_faults(Faults::default());
    let receipts = sender.await.expect("sender");
    for r in receipts {
        r.await.expect("put after the stall");
    }
    let producer = Arc::into_inner(producer).expect("sole owner");
    let stats = producer.shutdown().await;
    assert_eq!((stats.put, stats.failed), (100_000, 0));
}

#[tokio::test]
async fn try_send_hands_a_record_back_at_once_when_the_buffer_is_full_and_shutdown_is_shared() {
    let (memory, producer) = stalled_producer(
        10,
        2,
        ProducerConfig {
            buffer_max_records: 100,
            ..ProducerConfig::default()
        },
    )
    .await;
    let input = records(150, 10);
    let mut receipts = Vec::new();
    let mut handed_back = Vec::new();
    let started = std::time::Instant::now();
    for r in &input {
        match producer.try_send(r.clone()) {
            Ok(receipt) => receipts.push(receipt),
            Err(SendError::Full { record }) => handed_back.push(record),
            Err(e) => panic!("unexpected: {e}"),
        }
    }
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "try_send never waits: {:?}",
        started.elapsed()
    );
    assert_eq!(
        receipts.len(),
        100,
        "exactly the buffer's 100 records taken"
    );
    assert_eq!(handed_back, input[100..], "the rest handed back, in order");

    // Two holders of the producer shut it down at once; both see the same end.
    memory.set_faults(Faults::default());
    let other = producer.clone();
    let (a, b) = tokio::join!(producer.shutdown(), other.shutdown());
    assert_eq!((a.put, a.failed), (100, 0));
    assert_eq!((b.put, b.failed), (100, 0));
    for r in receipts {
        r.await.expect("put");
    }
    assert!(matches!(
        producer.try_send(input[0].clone()),
        Err(SendError::Closed { .. })
    ));
}

#[tokio::test]
async fn a_slow_shard_map_refresh_after_a_split_stalls_neither_intake_nor_other_shards() {
    let memory = MemoryStreams::new(12);
    memory.create_stream(STREAM, 2);
    let producer = Producer::start(memory.clone(), STREAM, ProducerConfig::default())
        .await
        .expect("start");
    let input = records(6_000, 300);
    let (first, rest) = input.split_at(2_000);
    let mut outcomes = send_all(&producer, first).await;
    // Split a shard and make every ListShards take 3 s: the first record that lands on a
    // child marks the map stale, and the refresh takes 3 s.
    let shards = memory.shards(STREAM);
    let (parent, other) = (shards[0].clone(), shards[1].clone());
    let middle = parent.starting_hash_key + (parent.ending_hash_key - parent.starting_hash_key) / 2;
    memory
        .split_shard(STREAM, &parent.shard_id, middle)
        .expect("split");
    memory.set_faults(Faults {
        list_shards_delay: Duration::from_secs(3),
        ..Faults::default()
    });
    let started = std::time::Instant::now();
    let mut receipts = Vec::new();
    for r in &rest[..2_000] {
        receipts.push((r.clone(), producer.send(r.clone()).await.expect("send")));
    }
    let intake = started.elapsed();
    assert!(
        intake < Duration::from_millis(1_000),
        "2,000 records taken in {intake:?} while the 3 s refresh ran: intake must not wait for it"
    );
    // The untouched shard's records are put meanwhile; the parent's wait for the new map
    // (sent on the old one, they would land ahead of the records it sends again).
    let (mut on_other, mut on_parent) = (Vec::new(), Vec::new());
    for (record, receipt) in receipts {
        if other.contains(record.hash_key().expect("hash")) {
            on_other.push(receipt);
        } else {
            on_parent.push(receipt);
        }
    }
    assert!(!on_other.is_empty() && !on_parent.is_empty());
    for receipt in on_other {
        outcomes.push(receipt.await);
    }
    let other_put = started.elapsed();
    assert!(
        other_put < Duration::from_millis(2_500),
        "the other shard's records put after {other_put:?}: the 3 s refresh must not hold them up"
    );
    for receipt in on_parent {
        outcomes.push(receipt.await);
    }
    memory.set_faults(Faults::default());
    outcomes.extend(send_all(&producer, &rest[2_000..]).await);
    let stats = producer.shutdown().await;
    assert_eq!((stats.put, stats.failed), (6_000, 0));
    assert!(outcomes.iter().all(Result::is_ok));
    // Exactly once each, as a KCL reads them; per key in order.
    let (stored, _) = read_back_as_kcl(&memory);
    assert_eq!(assert_key_order_across_shards(&stored), 0, "per-key order");
    assert_eq!(
        sorted(stored.into_iter().map(|(_, r)| r).collect()),
        sorted(input)
    );
}

#[tokio::test]
async fn a_split_during_production_loses_nothing_keeps_key_order_and_later_records_land_on_the_children()
 {
    let memory = MemoryStreams::new(11);
    memory.create_stream(STREAM, 2);
    let producer = Producer::start(memory.clone(), STREAM, ProducerConfig::default())
        .await
        .expect("start");
    let input = records(10_000, 300);
    let (first, second) = input.split_at(5_000);
    let mut outcomes = send_all(&producer, first).await;
    let shards = memory.shards(STREAM);
    let parent = shards[0].clone();
    let middle = parent.starting_hash_key + (parent.ending_hash_key - parent.starting_hash_key) / 2;
    memory
        .split_shard(STREAM, &parent.shard_id, middle)
        .expect("split");
    outcomes.extend(send_all(&producer, second).await);
    producer.shutdown().await;
    assert!(outcomes.iter().all(Result::is_ok));
    let after: Vec<&str> = outcomes[5_000..]
        .iter()
        .filter_map(|o| o.as_ref().ok())
        .map(|s| &*s.shard_id)
        .collect();
    assert!(
        !after.contains(&parent.shard_id.as_str()),
        "no record lands on the closed parent"
    );
    // Every outcome names a shard that owns the record's hash key: the user records of
    // aggregates put on the other child were sent again (the KPL's "Wrong Shard" retry).
    let shards = memory.shards(STREAM);
    for (record, outcome) in input.iter().zip(&outcomes) {
        let put = outcome.as_ref().expect("put");
        let shard = shards
            .iter()
            .find(|s| *s.shard_id == *put.shard_id)
            .expect("a known shard");
        assert!(
            shard.contains(record.hash_key().expect("hash")),
            "{:?} reported on {}, which does not own its hash key",
            record.partition_key,
            shard.shard_id
        );
    }
    // Read as a KCL reads (the copies outside their shard's range skipped): every record
    // exactly once, each key in order from the parent through its child.
    let (back, skipped) = read_back_as_kcl(&memory);
    assert!(
        skipped > 0,
        "the split caught aggregates of both children on the old map (else this test proves nothing)"
    );
    assert_eq!(assert_key_order_across_shards(&back), 0, "per-key order");
    assert_eq!(
        sorted(back.iter().map(|(_, r)| r.clone()).collect()),
        sorted(input)
    );
    let children: Vec<String> = memory
        .shards(STREAM)
        .into_iter()
        .filter(|s| s.parent_shard_id.as_deref() == Some(parent.shard_id.as_str()))
        .map(|s| s.shard_id)
        .collect();
    assert_eq!(children.len(), 2);
    for child in &children {
        assert!(
            back.iter().any(|(s, _)| s == child),
            "child {child} got records"
        );
    }
}

#[tokio::test]
async fn invalid_records_are_refused_and_handed_back() {
    let memory = MemoryStreams::new(1);
    memory.create_stream(STREAM, 1);
    let producer = Producer::start(memory.clone(), STREAM, ProducerConfig::default())
        .await
        .expect("start");
    let cases = vec![
        UserRecord::new("", b"empty key".to_vec()),
        UserRecord::new("k".repeat(257), b"long key".to_vec()),
        UserRecord::new("k", vec![0u8; 1024 * 1024]),
        UserRecord::new("k", b"bad hash key".to_vec()).with_explicit_hash_key("-1"),
    ];
    for record in cases {
        let err = producer.send(record.clone()).await.expect_err("refused");
        assert!(matches!(err, SendError::Invalid(_)), "{err}");
        assert_eq!(err.into_record(), record);
    }
    // The producer keeps working.
    let ok = producer
        .send(UserRecord::new("k", b"fine".to_vec()))
        .await
        .expect("send");
    ok.await.expect("put");
    producer.shutdown().await;
}

#[tokio::test]
async fn a_missing_stream_fails_at_start_naming_it_and_an_idle_flush_returns() {
    let memory = MemoryStreams::new(1);
    let err = Producer::start(memory.clone(), "Nope", ProducerConfig::default())
        .await
        .expect_err("no stream");
    assert!(err.to_string().contains("Nope"), "{err}");

    memory.create_stream(STREAM, 1);
    let producer = Producer::start(memory.clone(), STREAM, ProducerConfig::default())
        .await
        .expect("start");
    tokio::time::timeout(Duration::from_secs(5), producer.flush())
        .await
        .expect("flush with nothing pending returns");
    let receipt = producer
        .send(UserRecord::new("k", b"one".to_vec()))
        .await
        .expect("send");
    // flush sends at once, without waiting for the 100 ms linger... and waits for the outcome.
    tokio::time::timeout(Duration::from_secs(5), producer.flush())
        .await
        .expect("flush returns once the record is put");
    assert_eq!(producer.stats().pending, 0);
    receipt.await.expect("put");
    let stats = producer.shutdown().await;
    assert_eq!((stats.received, stats.put), (1, 1));
}

#[tokio::test]
async fn without_aggregation_each_user_record_is_its_own_kinesis_record() {
    let memory = MemoryStreams::new(2);
    memory.create_stream(STREAM, 2);
    let config = ProducerConfig {
        aggregation_enabled: false,
        ..ProducerConfig::default()
    };
    let producer = Producer::start(memory.clone(), STREAM, config)
        .await
        .expect("start");
    let input = records(2_000, 50);
    let outcomes = send_all(&producer, &input).await;
    producer.shutdown().await;
    assert!(
        outcomes
            .iter()
            .all(|o| o.as_ref().is_ok_and(|s| s.sub_sequence_number == 0))
    );
    assert_eq!(memory.stats().entries_written, 2_000);
    let back = read_back(&memory).await;
    assert_per_key_order(&back);
    assert_eq!(
        sorted(back.into_iter().map(|(_, r)| r).collect()),
        sorted(input)
    );
}

/// `send_batch` of 1,000 at a time under throttling, 500s and timeouts: every record put
/// exactly once, its outcome at its place in the batch, per-key order kept.
#[tokio::test]
async fn batches_under_faults_deliver_everything_once_in_order_with_outcomes_in_place() {
    let memory = faulty_stream(13);
    let config = ProducerConfig {
        aggregation_max_bytes: 4096,
        // Per-key order under refused entries needs one entry per shard per call (lib.rs).
        max_entries_per_shard_per_call: 1,
        retry: retry(5, 50),
        ..ProducerConfig::default()
    };
    let producer = Producer::start(memory.clone(), STREAM, config)
        .await
        .expect("start");
    let input = records(10_000, 100);
    let mut receipts = Vec::new();
    for chunk in input.chunks(1_000) {
        receipts.push(
            producer
                .send_batch(chunk.to_vec())
                .await
                .expect("send_batch"),
        );
    }
    let mut outcomes = Vec::new();
    for r in receipts {
        let batch = r.await;
        assert_eq!(batch.len(), 1_000, "one outcome per record of the batch");
        outcomes.extend(batch);
    }
    let stats = producer.shutdown().await;
    assert_eq!((stats.put, stats.failed, stats.pending), (10_000, 0, 0));
    // Each outcome names where its own record landed: the record at that (sequence,
    // sub-sequence) in the stream is the one at the outcome's place in the batch.
    let at: HashMap<(String, u64), UserRecord> = stored_user_records(&memory)
        .into_iter()
        .map(|(_, sequence, sub, record)| ((sequence, sub), record))
        .collect();
    assert_eq!(at.len(), input.len(), "no record twice, none lost");
    let retried = outcomes
        .iter()
        .filter(|o| o.as_ref().is_ok_and(|s| s.attempts.len() > 1))
        .count();
    assert!(
        retried > 100,
        "faults were injected and retried ({retried})"
    );
    for (record, outcome) in input.iter().zip(&outcomes) {
        let s = outcome.as_ref().expect("put");
        let key = (s.sequence_number.to_string(), s.sub_sequence_number);
        assert_eq!(at.get(&key), Some(record), "outcome at {key:?}");
    }
    assert_per_key_order(&read_back(&memory).await);
}

/// An invalid record does not sink its batch: its outcome hands it back, the rest is put.
/// A batch larger than the buffer is refused whole, every record handed back in order. An
/// empty batch resolves at once.
#[tokio::test]
async fn a_batch_hands_back_invalid_records_in_place_and_a_batch_too_large_whole() {
    let memory = MemoryStreams::new(5);
    memory.create_stream(STREAM, 2);
    let config = ProducerConfig {
        buffer_max_records: 100,
        ..ProducerConfig::default()
    };
    let producer = Producer::start(memory.clone(), STREAM, config)
        .await
        .expect("start");
    let mut batch = records(50, 10);
    let bad = UserRecord::new("", b"empty key".to_vec());
    let too_big = UserRecord::new("k", vec![0u8; 1024 * 1024]);
    batch.insert(7, bad.clone());
    batch.insert(30, too_big.clone());
    let outcomes = producer
        .send_batch(batch.clone())
        .await
        .expect("send_batch")
        .await;
    assert_eq!(outcomes.len(), 52);
    for (i, (record, outcome)) in batch.iter().zip(&outcomes).enumerate() {
        if i == 7 || i == 30 {
            let failure = outcome.as_ref().expect_err("invalid");
            assert_eq!(failure.record.as_ref(), Some(record), "handed back");
            assert!(
                matches!(&failure.reason, FailureReason::Rejected { code, .. } if code == "InvalidRecord"),
                "{:?}",
                failure.reason
            );
            assert!(failure.attempts.is_empty());
        } else {
            assert!(outcome.is_ok(), "record {i}: {outcome:?}");
        }
    }
    let valid: Vec<UserRecord> = batch
        .iter()
        .filter(|r| **r != bad && **r != too_big)
        .cloned()
        .collect();
    let back: Vec<UserRecord> = read_back(&memory)
        .await
        .into_iter()
        .map(|(_, r)| r)
        .collect();
    assert_eq!(sorted(back), sorted(valid));

    let large = records(101, 10);
    let err = producer
        .send_batch(large.clone())
        .await
        .expect_err("larger than the buffer");
    assert!(
        matches!(
            err,
            BatchSendError::LargerThanBuffer {
                count: 101,
                max_records: 100,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(err.into_records(), large, "every record back, in order");

    let empty = producer.send_batch(Vec::new()).await.expect("empty").await;
    assert!(empty.is_empty());
    let stats = producer.shutdown().await;
    assert_eq!((stats.received, stats.put, stats.failed), (50, 50, 0));
}

/// Backpressure holds for batches too: while the stream is stalled, `send_batch` waits
/// with the buffer at most full.
#[tokio::test]
async fn a_stalled_stream_makes_send_batch_wait_within_the_bound() {
    let (memory, producer) = stalled_producer(
        17,
        4,
        ProducerConfig {
            buffer_max_records: 2_000,
            ..ProducerConfig::default()
        },
    )
    .await;
    let input = records(20_000, 1000);
    let sender = {
        let producer = producer.clone();
        let input = input.clone();
        tokio::spawn(async move {
            let mut receipts = Vec::new();
            for chunk in input.chunks(300) {
                receipts.push(
                    producer
                        .send_batch(chunk.to_vec())
                        .await
                        .expect("send_batch"),
                );
            }
            receipts
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stalled = producer.stats();
    assert!(
        !sender.is_finished(),
        "send_batch must wait while the buffer is full"
    );
    assert!(
        (1_500..=2_000).contains(&stalled.pending),
        "{} records pending, bound 2,000, batches of 300",
        stalled.pending
    );
    memory.set_faults(Faults::default());
    let mut put = 0;
    for r in sender.await.expect("sender") {
        put += r.await.iter().filter(|o| o.is_ok()).count();
    }
    assert_eq!(put, 20_000);
    let producer = Arc::into_inner(producer).expect("sole owner");
    let stats = producer.shutdown().await;
    assert_eq!((stats.put, stats.failed), (20_000, 0));
}

/// A stream that never accepts: every record of every batch fails back after its TTL,
/// at its place in its batch, with its attempts and the record itself.
#[tokio::test]
async fn batches_on_a_stream_that_never_accepts_come_back_in_place_after_their_ttl() {
    let (memory, config) = never_accepting(19);
    let producer = Producer::start(memory.clone(), STREAM, config)
        .await
        .expect("start");
    let input = records(1_000, 50);
    let mut receipts = Vec::new();
    for chunk in input.chunks(250) {
        receipts.push(
            producer
                .send_batch(chunk.to_vec())
                .await
                .expect("send_batch"),
        );
    }
    let mut handed_back = Vec::new();
    for r in receipts {
        for o in r.await {
            let f = o.expect_err("every record fails");
            assert_eq!(f.reason, FailureReason::Expired);
            assert!(f.attempts.len() >= 2, "{} attempts", f.attempts.len());
            handed_back.push(f.record.expect("the record comes back"));
        }
    }
    let stats = producer.shutdown().await;
    assert_eq!((stats.put, stats.failed), (0, 1_000));
    assert_eq!(handed_back, input, "records come back exactly, in order");
    assert_eq!(memory.stats().entries_written, 0);
}
