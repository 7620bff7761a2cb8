//! The scheduler scenarios of issue 6 on the in-memory stream and lease table (fast), plus
//! what only fault injection can show: failed batches retried, expired iterators and
//! throttled reads, aggregates hashing outside their shard.

use crate::support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use chief_aggregation::{Aggregator, UserRecord};
use chief_consumer::{ConsumerConfig, MemoryLeaseStore, OutOfRangeRecords};
use chief_stream::{Faults, MemoryStreams, PutEntry, StreamClient};
use support::*;

struct Mem {
    streams: MemoryStreams,
    leases: MemoryLeaseStore,
}

const STREAM: &str = "Orders";

fn mem(shards: u32) -> Mem {
    let streams = MemoryStreams::new(7);
    streams.create_stream(STREAM, shards);
    Mem {
        streams,
        leases: MemoryLeaseStore::new("leases"),
    }
}

impl Backend for Mem {
    type Client = MemoryStreams;
    type Store = MemoryLeaseStore;
    fn client(&self) -> MemoryStreams {
        self.streams.clone()
    }
    fn store(&self) -> MemoryLeaseStore {
        self.leases.clone()
    }
    fn stream(&self) -> String {
        STREAM.to_owned()
    }
    async fn split(&self, shard: &str) {
        let s = self.streams.shards(STREAM);
        let s = s.iter().find(|s| s.shard_id == shard).expect("shard");
        let mid = s.starting_hash_key + (s.ending_hash_key - s.starting_hash_key) / 2 + 1;
        self.streams.split_shard(STREAM, shard, mid).expect("split");
    }
    async fn merge(&self, a: &str, b: &str) {
        self.streams.merge_shards(STREAM, a, b).expect("merge");
    }
}

#[tokio::test]
async fn memory_two_workers_balance_to_two_and_two() {
    two_workers_balance(&mem(4), "t").await;
}

#[tokio::test]
async fn memory_dead_worker_is_taken_over_after_failover() {
    dead_worker_is_taken_over(&mem(4), "t").await;
}

#[tokio::test]
async fn memory_graceful_stop_hands_over_at_once() {
    graceful_stop_hands_over(&mem(4), "t").await;
}

#[tokio::test]
async fn memory_split_and_merge_mid_run_lose_nothing_and_keep_key_order() {
    reshard_mid_run(&mem(4), "t").await;
}

#[tokio::test]
async fn memory_split_and_merge_while_the_producer_sends_lose_nothing() {
    reshard_while_producing(&mem(4), "t").await;
}

#[tokio::test]
async fn memory_restart_replays_only_what_was_not_checkpointed() {
    restart_replays_only_what_was_not_checkpointed(&mem(4), "t").await;
}

#[tokio::test]
async fn memory_checkpoint_after_lease_loss_is_refused() {
    checkpoint_after_lease_loss_is_refused(&mem(4), "t").await;
}

#[tokio::test]
async fn failed_batches_are_retried_never_skipped() {
    let m = mem(2);
    let w = start(&m, fast_config(STREAM, "t", "w"), Checkpointing::EveryBatch);
    w.probe.fail_calls.store(5, Ordering::SeqCst);
    let n = 300;
    write(m.client(), STREAM, records(0, n, 20)).await;
    wait_for(30, "every record processed", || async {
        w.probe.count() as u64 >= n
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(w.probe.failed_calls.load(Ordering::SeqCst), 5);
    let seen = w.probe.seen();
    assert_key_order(&seen);
    assert_exactly_once(&seen, n);
    w.stop().await;
}

#[tokio::test]
async fn expired_iterators_and_throttled_reads_lose_and_repeat_nothing() {
    let m = mem(2);
    m.streams.set_faults(Faults {
        expired_iterator_ratio: 0.2,
        read_throttle_ratio: 0.2,
        ..Faults::default()
    });
    let w = start(&m, fast_config(STREAM, "t", "w"), Checkpointing::EveryBatch);
    let n = 2_000;
    for chunk in 0..10 {
        write(m.client(), STREAM, records(chunk * 200, 200, 50)).await;
    }
    wait_for(60, "every record processed", || async {
        w.probe.count() as u64 >= n
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let seen = w.probe.seen();
    assert_key_order(&seen);
    assert_exactly_once(&seen, n);
    w.stop().await;
}

/// One aggregate of 50 user records whose keys hash all over the space, put on a child of
/// a split by its explicit hash key (as a producer with a map from before the split does):
/// the user records `(partition key, shard)` the consumer delivers.
async fn deliver_an_aggregate_on_a_split_child(
    out_of_range: OutOfRangeRecords,
) -> (Vec<Seen>, Vec<String>, String) {
    let m = mem(1);
    let parent = m.streams.shards(STREAM)[0].clone();
    let middle = parent.starting_hash_key + (parent.ending_hash_key - parent.starting_hash_key) / 2;
    m.streams
        .split_shard(STREAM, &parent.shard_id, middle)
        .expect("split");
    let child = m
        .streams
        .shards(STREAM)
        .into_iter()
        .find(|s| s.is_open() && s.starting_hash_key == parent.starting_hash_key)
        .expect("the lower child");
    let mut agg = Aggregator::new();
    let keys: Vec<String> = (0..50).map(|i| format!("key-{i:03}")).collect();
    for (i, key) in keys.iter().enumerate() {
        assert!(
            agg.add(UserRecord::new(key.clone(), format!("{key}:{i}")))
                .expect("add")
                .is_none()
        );
    }
    let put = m
        .streams
        .put_records(
            STREAM,
            vec![PutEntry {
                partition_key: "a".into(),
                explicit_hash_key: Some("1".into()),
                data: agg.flush().expect("aggregate").data,
            }],
        )
        .await
        .expect("put");
    assert_eq!(
        put[0].as_ref().expect("put").shard_id,
        child.shard_id,
        "the aggregate is on the lower child"
    );
    // Computed here, independently of the consumer: the keys the lower child owns.
    let owned: Vec<String> = keys
        .into_iter()
        .filter(|k| child.contains(chief_aggregation::partition_key_hash(k)))
        .collect();
    assert!(
        !owned.is_empty() && owned.len() < 50,
        "keys on both sides of the split"
    );
    let config = ConsumerConfig {
        out_of_range_records: out_of_range,
        ..fast_config(STREAM, "t", "w")
    };
    let w = start(&m, config, Checkpointing::EveryBatch);
    let expected = match out_of_range {
        OutOfRangeRecords::Drop => owned.len(),
        OutOfRangeRecords::Deliver => 50,
    };
    wait_for(30, "the user records", || async {
        w.probe.count() >= expected
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let seen = w.probe.seen();
    w.stop().await;
    (seen, owned, child.shard_id)
}

#[tokio::test]
async fn aggregate_records_hashing_outside_a_split_child_are_skipped_by_default() {
    let (seen, owned, child) = deliver_an_aggregate_on_a_split_child(OutOfRangeRecords::Drop).await;
    let keys: Vec<&str> = seen.iter().map(|s| s.key.as_str()).collect();
    assert_eq!(keys, owned, "exactly the keys the child owns, in order");
    assert!(seen.iter().all(|s| s.shard == child));
}

#[tokio::test]
async fn aggregate_records_hashing_outside_a_split_child_are_delivered_when_configured() {
    let (seen, _, child) = deliver_an_aggregate_on_a_split_child(OutOfRangeRecords::Deliver).await;
    assert_exactly_once(&seen, 50);
    assert!(seen.iter().all(|s| s.shard == child));
}

#[tokio::test]
async fn a_corrupt_aggregate_is_handed_over_marked_and_the_shard_goes_on() {
    let m = mem(1);
    let mut agg = Aggregator::new();
    for i in 0..3 {
        assert!(
            agg.add(UserRecord::new("k", format!("k:{i}")))
                .expect("add")
                .is_none()
        );
    }
    let mut corrupt = agg.flush().expect("aggregate").data.to_vec();
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0xff; // the MD5 no longer matches
    let entries = [b"k:0".to_vec(), corrupt.clone(), b"k:1".to_vec()]
        .into_iter()
        .map(|data| PutEntry {
            partition_key: "k".into(),
            explicit_hash_key: None,
            data: data.into(),
        })
        .collect();
    let put = m.streams.put_records(STREAM, entries).await.expect("put");
    assert!(put.iter().all(Result::is_ok));
    let w = start(&m, fast_config(STREAM, "t", "w"), Checkpointing::EveryBatch);
    wait_for(30, "the 3 records", || async { w.probe.count() >= 3 }).await;
    let seen = w.probe.seen();
    let keys: Vec<&str> = seen.iter().map(|s| s.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "k",
            format!("corrupt ({} bytes): corrupt KPL aggregate: aggregate MD5 does not match its protobuf", corrupt.len()).as_str(),
            "k"
        ],
        "in order, the corrupt one whole and marked"
    );
    assert_eq!(seen[1].sub, 0);
    w.stop().await;
}

// The same scenarios read through enhanced fan-out (SubscribeToShard) instead of polling.

#[tokio::test]
async fn memory_fan_out_two_workers_balance_to_two_and_two() {
    two_workers_balance(&FanOut(mem(4)), "t").await;
}

#[tokio::test]
async fn memory_fan_out_dead_worker_is_taken_over_after_failover() {
    dead_worker_is_taken_over(&FanOut(mem(4)), "t").await;
}

#[tokio::test]
async fn memory_fan_out_graceful_stop_hands_over_at_once() {
    graceful_stop_hands_over(&FanOut(mem(4)), "t").await;
}

#[tokio::test]
async fn memory_fan_out_split_and_merge_mid_run_lose_nothing_and_keep_key_order() {
    reshard_mid_run(&FanOut(mem(4)), "t").await;
}

#[tokio::test]
async fn memory_fan_out_restart_replays_only_what_was_not_checkpointed() {
    restart_replays_only_what_was_not_checkpointed(&FanOut(mem(4)), "t").await;
}

#[tokio::test]
async fn memory_fan_out_checkpoint_after_lease_loss_is_refused() {
    checkpoint_after_lease_loss_is_refused(&FanOut(mem(4)), "t").await;
}

/// Subscriptions that end every 150 ms (Kinesis: five minutes) and fail a fifth of the
/// time: each is renewed from the last record received; nothing lost or repeated.
#[tokio::test]
async fn fan_out_subscriptions_renewed_after_expiry_and_failures_lose_and_repeat_nothing() {
    let m = FanOut(mem(2));
    m.0.streams
        .set_subscription_lifetime(Duration::from_millis(150));
    m.0.streams.set_faults(Faults {
        call_error_ratio: 0.2,
        expired_iterator_ratio: 0.05,
        ..Faults::default()
    });
    let w = start(&m, m.config("t", "w"), Checkpointing::EveryBatch);
    let n = 2_000;
    for chunk in 0..10 {
        write(m.client(), STREAM, records(chunk * 200, 200, 50)).await;
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    wait_for(60, "every record processed", || async {
        w.probe.count() as u64 >= n
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let seen = w.probe.seen();
    assert_key_order(&seen);
    assert_exactly_once(&seen, n);
    w.stop().await;
}

#[tokio::test]
async fn memory_initial_position_latest() {
    initial_position_latest(&mem(2), "t").await;
}

#[tokio::test]
async fn memory_initial_position_at_timestamp() {
    initial_position_at_timestamp(&mem(2), "t").await;
}

#[tokio::test]
async fn memory_fan_out_initial_position_latest() {
    initial_position_latest(&FanOut(mem(2)), "t").await;
}

#[tokio::test]
async fn memory_fan_out_initial_position_at_timestamp() {
    initial_position_at_timestamp(&FanOut(mem(2)), "t").await;
}

/// Prepares a checkpoint at the last record of every batch (and never checkpoints), or
/// checkpoints every batch; records the pending checkpoint `initialize` was given.
struct Preparing {
    prepare: bool,
    pending_seen:
        std::sync::Arc<std::sync::Mutex<Vec<Option<chief_consumer::ExtendedSequenceNumber>>>>,
}

impl chief_consumer::RecordProcessor for Preparing {
    async fn initialize(
        &mut self,
        input: chief_consumer::InitializationInput<'_>,
    ) -> Result<(), chief_consumer::ProcessorError> {
        self.pending_seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(input.pending_checkpoint.cloned());
        Ok(())
    }

    async fn process_records(
        &mut self,
        input: chief_consumer::ProcessRecordsInput<'_>,
    ) -> Result<(), chief_consumer::ProcessorError> {
        if let Some(last) = input.records.last() {
            if self.prepare {
                input
                    .checkpointer
                    .prepare_checkpoint_at(last.position())
                    .await?;
            } else {
                input.checkpointer.checkpoint().await?;
            }
        }
        Ok(())
    }

    async fn shard_ended(
        &mut self,
        input: chief_consumer::ShardEndedInput<'_>,
    ) -> Result<(), chief_consumer::ProcessorError> {
        input.checkpointer.checkpoint().await?;
        Ok(())
    }
}

struct PreparingFactory(
    bool,
    std::sync::Arc<std::sync::Mutex<Vec<Option<chief_consumer::ExtendedSequenceNumber>>>>,
);

impl chief_consumer::ProcessorFactory for PreparingFactory {
    type Processor = Preparing;
    fn create(&self, _shard_id: &str) -> Preparing {
        Preparing {
            prepare: self.0,
            pending_seen: self.1.clone(),
        }
    }
}

#[tokio::test]
async fn a_prepared_checkpoint_reaches_the_next_owner_and_a_checkpoint_clears_it() {
    use chief_consumer::{LeaseStore, Scheduler};
    let m = mem(1);
    let entries = (0..10)
        .map(|i| PutEntry {
            partition_key: format!("k{i}"),
            explicit_hash_key: None,
            data: bytes::Bytes::from(format!("r{i}")),
        })
        .collect();
    let put = m.streams.put_records(STREAM, entries).await.expect("put");
    let last = put
        .last()
        .and_then(|r| r.as_ref().ok())
        .expect("put")
        .sequence_number
        .clone();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let lease_of = |store: MemoryLeaseStore| async move {
        store
            .list_leases()
            .await
            .expect("leases")
            .into_iter()
            .next()
    };

    // A worker prepares at its last record and stops without a checkpoint.
    let token = tokio_util::sync::CancellationToken::new();
    let scheduler = Scheduler::new(
        fast_config(STREAM, "t", "w1"),
        m.streams.clone(),
        m.leases.clone(),
        PreparingFactory(true, seen.clone()),
    )
    .expect("scheduler");
    let run = tokio::spawn(scheduler.run(token.clone()));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while lease_of(m.leases.clone())
        .await
        .and_then(|l| l.pending_checkpoint)
        .is_none()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no pending checkpoint written"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    token.cancel();
    run.await.expect("join").expect("run");
    let lease = lease_of(m.leases.clone()).await.expect("lease");
    assert!(
        lease.checkpoint.is_sentinel(),
        "never checkpointed: {}",
        lease.checkpoint
    );
    assert_eq!(
        lease
            .pending_checkpoint
            .as_ref()
            .map(|p| p.sequence_number.as_str()),
        Some(last.as_str())
    );

    // The next owner is told; its checkpoint clears it.
    let token = tokio_util::sync::CancellationToken::new();
    let scheduler = Scheduler::new(
        fast_config(STREAM, "t", "w2"),
        m.streams.clone(),
        m.leases.clone(),
        PreparingFactory(false, seen.clone()),
    )
    .expect("scheduler");
    let run = tokio::spawn(scheduler.run(token.clone()));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while lease_of(m.leases.clone())
        .await
        .is_none_or(|l| l.checkpoint.is_sentinel())
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no checkpoint written"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    token.cancel();
    run.await.expect("join").expect("run");
    let seen = seen.lock().unwrap_or_else(|p| p.into_inner()).clone();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[0], None, "the first owner found none");
    assert_eq!(
        seen[1].as_ref().map(|p| p.sequence_number.as_str()),
        Some(last.as_str())
    );
    let lease = lease_of(m.leases.clone()).await.expect("lease");
    assert_eq!(lease.pending_checkpoint, None);
    assert_eq!(lease.checkpoint.sequence_number, last);
}
