//! Renewals never wait behind a slow call: a worker whose lease Scans, parent checks and
//! ListShards stall for many failover times (and whose other lease calls answer slowly at
//! random) keeps every lease, and no record is processed twice, while a healthy worker
//! next to it would take any lease that expired.

use crate::support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use chief_consumer::{
    ExtendedSequenceNumber, Lease, LeaseError, LeaseStore, MemoryLeaseStore, Scheduler,
};
use chief_stream::{
    GetRecordsOutput, IteratorPosition, MemoryStreams, PutEntry, PutEntryResult, Shard,
    StreamClient, StreamError, Subscription,
};
use support::*;
use tokio_util::sync::CancellationToken;

const STREAM: &str = "Stalls";
/// How long a stalled call takes: many failover times of the fast config (1.5 s).
const STALL: Duration = Duration::from_secs(10);

/// Shared switches: whether Scans / parent checks / ListShards stall, and the largest
/// random delay of every other lease call.
#[derive(Default)]
struct Switches {
    stall: AtomicBool,
    jitter_ms: AtomicU64,
    seed: AtomicU64,
    stalled_calls: AtomicU64,
}

impl Switches {
    async fn stall_if_set(&self) {
        if self.stall.load(Ordering::SeqCst) {
            self.stalled_calls.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(STALL).await;
        }
    }

    async fn jitter(&self) {
        let max = self.jitter_ms.load(Ordering::SeqCst);
        if max > 0 {
            let x = self.seed.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::SeqCst);
            let x = (x ^ (x >> 31)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            tokio::time::sleep(Duration::from_millis((x >> 33) % max)).await;
        }
    }
}

/// The lease table of the slow worker.
#[derive(Clone)]
struct SlowStore {
    inner: MemoryLeaseStore,
    switches: Arc<Switches>,
}

impl LeaseStore for SlowStore {
    fn table(&self) -> &str {
        self.inner.table()
    }
    async fn ensure_table(&self) -> Result<(), LeaseError> {
        self.inner.ensure_table().await
    }
    async fn list_leases(&self) -> Result<Vec<Lease>, LeaseError> {
        self.switches.stall_if_set().await;
        self.inner.list_leases().await
    }
    async fn get_lease(&self, lease_key: &str) -> Result<Option<Lease>, LeaseError> {
        self.switches.stall_if_set().await;
        self.inner.get_lease(lease_key).await
    }
    async fn create_lease_if_absent(&self, lease: &Lease) -> Result<bool, LeaseError> {
        self.inner.create_lease_if_absent(lease).await
    }
    async fn renew_lease(&self, lease: &Lease) -> Result<Lease, LeaseError> {
        self.switches.jitter().await;
        self.inner.renew_lease(lease).await
    }
    async fn take_lease(&self, lease: &Lease, new_owner: &str) -> Result<Lease, LeaseError> {
        self.switches.jitter().await;
        self.inner.take_lease(lease, new_owner).await
    }
    async fn release_lease(&self, lease: &Lease) -> Result<Lease, LeaseError> {
        self.inner.release_lease(lease).await
    }
    async fn checkpoint(
        &self,
        lease: &Lease,
        checkpoint: &ExtendedSequenceNumber,
    ) -> Result<Lease, LeaseError> {
        self.switches.jitter().await;
        self.inner.checkpoint(lease, checkpoint).await
    }
    async fn prepare_checkpoint(
        &self,
        lease: &Lease,
        pending: &ExtendedSequenceNumber,
    ) -> Result<Lease, LeaseError> {
        self.switches.jitter().await;
        self.inner.prepare_checkpoint(lease, pending).await
    }
    async fn set_child_shards(
        &self,
        lease: &Lease,
        children: &BTreeSet<String>,
    ) -> Result<Lease, LeaseError> {
        self.inner.set_child_shards(lease, children).await
    }
    async fn delete_lease(&self, lease_key: &str) -> Result<(), LeaseError> {
        self.inner.delete_lease(lease_key).await
    }
}

/// The stream as the slow worker sees it: ListShards stalls with the switch.
#[derive(Clone)]
struct SlowStream {
    inner: MemoryStreams,
    switches: Arc<Switches>,
}

impl StreamClient for SlowStream {
    async fn list_shards(&self, stream: &str) -> Result<Vec<Shard>, StreamError> {
        self.switches.stall_if_set().await;
        self.inner.list_shards(stream).await
    }
    async fn put_records(
        &self,
        stream: &str,
        entries: Vec<PutEntry>,
    ) -> Result<Vec<PutEntryResult>, StreamError> {
        self.inner.put_records(stream, entries).await
    }
    async fn get_shard_iterator(
        &self,
        stream: &str,
        shard_id: &str,
        position: &IteratorPosition,
    ) -> Result<String, StreamError> {
        self.inner
            .get_shard_iterator(stream, shard_id, position)
            .await
    }
    async fn get_records(
        &self,
        stream: &str,
        iterator: &str,
        limit: u32,
    ) -> Result<GetRecordsOutput, StreamError> {
        self.inner.get_records(stream, iterator, limit).await
    }
    async fn register_consumer(
        &self,
        stream: &str,
        consumer_name: &str,
    ) -> Result<String, StreamError> {
        self.inner.register_consumer(stream, consumer_name).await
    }
    async fn subscribe_to_shard(
        &self,
        stream: &str,
        consumer_arn: &str,
        shard_id: &str,
        position: &IteratorPosition,
    ) -> Result<Subscription, StreamError> {
        self.inner
            .subscribe_to_shard(stream, consumer_arn, shard_id, position)
            .await
    }
}

fn start_worker<C: StreamClient + Clone, S: LeaseStore>(
    client: C,
    store: S,
    worker: &str,
    probe: &Arc<Probe>,
) -> (CancellationToken, tokio::task::JoinHandle<()>) {
    let factory = TestFactory {
        worker: worker.to_owned(),
        probe: probe.clone(),
        mode: Checkpointing::EveryBatch,
    };
    let scheduler = Scheduler::new(
        fast_config(STREAM, "leases", worker),
        client,
        store,
        factory,
    )
    .expect("scheduler");
    let token = CancellationToken::new();
    let run = scheduler.run(token.clone());
    let handle = tokio::spawn(async move {
        run.await.expect("scheduler");
    });
    (token, handle)
}

/// Shard → (owner, counter) of the active leases.
async fn leases(store: &MemoryLeaseStore) -> BTreeMap<String, (Option<String>, u64)> {
    store
        .list_leases()
        .await
        .expect("leases")
        .into_iter()
        .map(|l| (l.lease_key, (l.lease_owner, l.lease_counter)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_scans_and_list_shards_and_slow_calls_cost_no_lease_and_no_duplicate() {
    let streams = MemoryStreams::new(31);
    streams.create_stream(STREAM, 4);
    let store = MemoryLeaseStore::new("leases");
    let switches = Arc::new(Switches::default());
    let probe = Arc::new(Probe::default());
    write(streams.clone(), STREAM, records(0, 2_000, 40)).await;

    let slow = start_worker(
        SlowStream {
            inner: streams.clone(),
            switches: switches.clone(),
        },
        SlowStore {
            inner: store.clone(),
            switches: switches.clone(),
        },
        "slow",
        &probe,
    );
    let healthy = start_worker(streams.clone(), store.clone(), "healthy", &probe);
    wait_for(
        30,
        "two leases each and the first 2,000 records",
        || async {
            let owners = owners(&store).await;
            owners.get("slow") == Some(&2)
                && owners.get("healthy") == Some(&2)
                && probe.count() >= 2_000
        },
    )
    .await;

    // The slow worker's Scans, parent checks and ListShards now take 10 s each (its shard
    // sync and taking stall), and its renewals, takes and checkpoints answer in 0-150 ms.
    let before = leases(&store).await;
    switches.jitter_ms.store(150, Ordering::SeqCst);
    switches.stall.store(true, Ordering::SeqCst);
    write(streams.clone(), STREAM, records(2_000, 2_000, 40)).await;
    let mut changes_of_owner = 0;
    for _ in 0..24 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = leases(&store).await;
        changes_of_owner += now
            .iter()
            .filter(|(shard, (owner, _))| before.get(*shard).map(|b| &b.0) != Some(owner))
            .count();
    }
    let after = leases(&store).await;
    switches.stall.store(false, Ordering::SeqCst);

    // The fault happened: the slow worker's calls did stall.
    assert!(
        switches.stalled_calls.load(Ordering::SeqCst) >= 2,
        "the stalls happened"
    );
    assert_eq!(
        changes_of_owner, 0,
        "no lease changed hands: {before:?} → {after:?}"
    );
    for (shard, (owner, counter)) in &after {
        if owner.as_deref() == Some("slow") {
            let (_, was) = before[shard];
            assert!(
                *counter >= was + 12,
                "{shard}: the slow worker kept renewing through the stall ({was} → {counter})"
            );
        }
    }
    wait_for(60, "the second 2,000 records", || async {
        probe.count() >= 4_000
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_exactly_once(&probe.seen(), 4_000);
    for (token, handle) in [slow, healthy] {
        token.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(30), handle).await;
    }
}
