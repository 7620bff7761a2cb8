//! The [`Scheduler`]: one worker's loop of lease renewal, taking and balancing, shard
//! sync, and a task per shard it holds, until a `CancellationToken` fires.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chief_config::health::Health;
use chief_stream::{Shard, StreamClient, StreamError};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::checkpoint::HeldLease;
use crate::config::{ConsumerConfig, FetcherKind, InitialPosition};
use crate::lease::{ExtendedSequenceNumber, Lease, LeaseError, LeaseStore};
use crate::lineage::{children_of, descendants, started};
use crate::metrics as m;
use crate::processor::ProcessorFactory;
use crate::shard::{ShardOutcome, ShardTask, lease_range};

/// The scheduler could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConsumerError {
    /// The config is unusable.
    #[error("invalid consumer config: {0}")]
    Config(String),
    /// The lease table could not be created or read.
    #[error("lease table {table} unusable: {source}")]
    LeaseTable {
        /// The table.
        table: String,
        /// The error.
        source: LeaseError,
    },
    /// The enhanced fan-out consumer could not be registered.
    #[error("cannot register stream consumer {consumer} on {stream}: {source}")]
    RegisterConsumer {
        /// The stream.
        stream: String,
        /// The consumer name.
        consumer: String,
        /// The error.
        source: Box<StreamError>,
    },
    /// The stream's shards could not be listed.
    #[error("cannot list the shards of stream {stream}: {source}")]
    ListShards {
        /// The stream.
        stream: String,
        /// The error.
        source: StreamError,
    },
    /// Something no retry can fix stopped the worker (the stream or lease table is gone,
    /// access is denied, a processor returned [`Fatal`](crate::Fatal)). Nothing was
    /// checkpointed past what the processors made durable.
    #[error("{0}")]
    Fatal(String),
}

impl ConsumerError {
    /// Whether no retry can fix it.
    pub fn is_fatal(&self) -> bool {
        match self {
            Self::LeaseTable { source, .. } => source.is_fatal(),
            Self::ListShards { source, .. } => source.is_fatal(),
            Self::RegisterConsumer { source, .. } => source.is_fatal(),
            Self::Fatal(_) => true,
            Self::Config(_) => false,
        }
    }
}

/// Readiness check: the worker runs and its first shard sync succeeded.
const CHECK_WORKER: &str = "consumer";
/// Readiness check: the lease table answers.
const CHECK_LEASE_TABLE: &str = "lease table";
/// Readiness check: the last shard sync (ListShards, lease creation) succeeded.
const CHECK_SHARD_SYNC: &str = "shard sync";

/// Runs a consumer application's share of a stream for one worker.
#[derive(Debug)]
pub struct Scheduler<C, S, F> {
    config: ConsumerConfig,
    worker_id: String,
    client: C,
    store: Arc<S>,
    factory: Arc<F>,
    health: Health,
}

impl<C, S, F> Drop for Worker<C, S, F> {
    /// A dropped scheduler future (a kill) stops renewing at once, so that its leases
    /// expire after the failover time as they must.
    fn drop(&mut self) {
        if let Some(renewer) = self.renewer.take() {
            renewer.abort();
        }
    }
}

/// The held leases as the renewer task sees them.
type Registry<S> = Arc<std::sync::Mutex<HashMap<String, Arc<HeldLease<S>>>>>;

/// Renews every lease in `registry` every `every`, all at once, each call bounded by
/// `timeout`: on its own task, so that a slow shard sync, Scan, take or parent check never
/// delays a renewal (and never costs a lease).
/// Stops between rounds when `stop` fires (a round in flight finishes first, so that no
/// renewal is cut off with an unknown outcome before the leases are released).
async fn renew_forever<S: LeaseStore>(
    registry: Registry<S>,
    every: Duration,
    failover: Duration,
    timeout: Duration,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let leases: Vec<Arc<HeldLease<S>>> = registry
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        let mut renewals = JoinSet::new();
        for held in leases {
            renewals.spawn(async move { held.renew_within(failover, timeout).await });
        }
        while renewals.join_next().await.is_some() {}
    }
}

/// What the worker remembers of a lease it does not hold: when its counter last moved.
#[derive(Debug)]
struct Seen {
    counter: u64,
    owner: Option<String>,
    since: Instant,
}

struct Worker<C, S, F> {
    config: ConsumerConfig,
    worker_id: String,
    client: C,
    store: Arc<S>,
    factory: Arc<F>,
    held: HashMap<String, Arc<HeldLease<S>>>,
    /// The same leases, for the renewer task (kept in step by `hold` / `unhold`).
    renewing: Registry<S>,
    /// The renewer task: renews `renewing` on its own schedule.
    renewer: Option<tokio::task::JoinHandle<()>>,
    /// Stops the renewer between rounds (graceful stop).
    stop_renewing: CancellationToken,
    running: HashSet<String>,
    /// Which shard each task processes (to clean up after a panicking processor).
    task_shards: HashMap<tokio::task::Id, String>,
    /// Whether a shard sync succeeded yet (until then, no child shard starts).
    synced: bool,
    seen: HashMap<String, Seen>,
    /// Shard ids of the last ListShards.
    shards: HashSet<String>,
    tasks: JoinSet<(String, ShardOutcome)>,
    stop_shards: CancellationToken,
    /// With enhanced fan-out: the registered stream consumer's ARN.
    consumer_arn: Option<String>,
    health: Health,
    /// Set when something no retry can fix happened: the worker stops and says why.
    fatal: Option<String>,
}

impl<C, S, F> Scheduler<C, S, F>
where
    C: StreamClient + Clone,
    S: LeaseStore,
    F: ProcessorFactory,
{
    /// A scheduler for `config.stream`, leases in `store`, processors from `factory`.
    pub fn new(
        config: ConsumerConfig,
        client: C,
        store: S,
        factory: F,
    ) -> Result<Self, ConsumerError> {
        config.validate().map_err(ConsumerError::Config)?;
        let worker_id = config
            .worker_id
            .clone()
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        Ok(Self {
            config,
            worker_id,
            client,
            store: Arc::new(store),
            factory: Arc::new(factory),
            health: Health::new(),
        })
    }

    /// Reports this worker's readiness into `health` (served as `/readyz` by the binary):
    /// not ready until the lease table answered and the first shard sync succeeded, while
    /// lease table calls fail, while a shard's `process_records` has failed for
    /// `unready_after_failing_ms`, while a shard is more than `unready_millis_behind`
    /// behind, and once stopping. Holding no lease (all taken by other workers) is ready.
    #[must_use]
    pub fn with_health(mut self, health: Health) -> Self {
        self.health = health;
        self
    }

    /// This worker's id (the `leaseOwner` it writes).
    pub fn worker_id(&self) -> &str {
        &self.worker_id
    }

    /// Runs until `shutdown` fires, then stops gracefully: every shard's processor gets
    /// `shutdown_requested` after its in-flight batch (to checkpoint), and every lease is
    /// released so that other workers take them at once. Dropping the future instead
    /// stops at once without releasing (the leases expire after the failover time).
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), ConsumerError> {
        let span = tracing::info_span!("consumer", stream = %self.config.stream, lease_owner = %self.worker_id);
        let mut worker = Worker {
            config: self.config,
            worker_id: self.worker_id,
            client: self.client,
            store: self.store,
            factory: self.factory,
            held: HashMap::new(),
            renewing: Arc::new(std::sync::Mutex::new(HashMap::new())),
            renewer: None,
            stop_renewing: CancellationToken::new(),
            running: HashSet::new(),
            task_shards: HashMap::new(),
            synced: false,
            seen: HashMap::new(),
            shards: HashSet::new(),
            tasks: JoinSet::new(),
            stop_shards: CancellationToken::new(),
            consumer_arn: None,
            health: self.health,
            fatal: None,
        };
        worker
            .health
            .fail(CHECK_WORKER, "starting: no shard sync yet");
        let result = worker.run(shutdown).instrument(span).await;
        worker.health.fail(CHECK_WORKER, "stopped");
        result
    }
}

impl<C, S, F> Worker<C, S, F>
where
    C: StreamClient + Clone,
    S: LeaseStore,
    F: ProcessorFactory,
{
    async fn run(&mut self, shutdown: CancellationToken) -> Result<(), ConsumerError> {
        let table = self.store.table().to_owned();
        let mut attempt = 0;
        loop {
            match self.store.ensure_table().await {
                Ok(()) => break,
                Err(source) if attempt >= 5 => {
                    return Err(ConsumerError::LeaseTable { table, source });
                }
                Err(e) => {
                    attempt += 1;
                    self.health.fail(CHECK_LEASE_TABLE, format!("{table}: {e}"));
                    tracing::warn!(table = %table, error = %e, "lease table not ready; retrying");
                    tokio::select! {
                        () = shutdown.cancelled() => return Ok(()),
                        () = tokio::time::sleep(self.config.lease_retry.jittered(attempt)) => {}
                    }
                }
            }
        }
        if self.config.fetcher == FetcherKind::FanOut {
            match self.register_consumer(&shutdown).await? {
                Some(arn) => self.consumer_arn = Some(arn),
                None => return Ok(()),
            }
        }
        tracing::info!(table = %table, fetcher = ?self.config.fetcher, "worker starting");
        let renew_every = self.config.renewal_interval();
        self.renewer = Some(tokio::spawn(
            renew_forever(
                self.renewing.clone(),
                renew_every,
                self.config.failover(),
                self.config.lease_call_timeout(),
                self.stop_renewing.clone(),
            )
            .in_current_span(),
        ));
        let take_every = self.config.taking_interval();
        let sync_every = self.config.shard_sync_interval();
        let now = Instant::now();
        let (mut next_renew, mut next_take, mut next_sync) = (now + renew_every, now, now);
        let claim_every = self.config.claim_interval();
        let mut next_claim = now + claim_every;
        let mut sync_now = true;
        while !shutdown.is_cancelled() && self.fatal.is_none() {
            let now = Instant::now();
            if now >= next_renew {
                // The renewer task renews; here lost leases are let go.
                self.drop_lost();
                next_renew = now + renew_every;
            }
            if sync_now || now >= next_sync {
                match self.sync_shards().await {
                    Ok(()) => {
                        self.health.pass(CHECK_SHARD_SYNC);
                        self.health.pass(CHECK_WORKER);
                        sync_now = false;
                        next_sync = now + sync_every;
                        // New leases (children) are unowned: take them now.
                        next_take = now;
                    }
                    Err(e) if e.is_fatal() => {
                        self.fatal = Some(e.to_string());
                    }
                    Err(e) => {
                        self.health.fail(CHECK_SHARD_SYNC, e.to_string());
                        tracing::warn!(error = %e, "shard sync failed; retrying");
                        next_sync = now + renew_every;
                        sync_now = false;
                    }
                }
            }
            if now >= next_take {
                self.take(true).await;
                next_take = now + take_every;
                next_claim = now + claim_every;
            } else if now >= next_claim {
                // Released leases are taken without waiting for the next taking round.
                self.take(false).await;
                next_claim = now + claim_every;
            }
            let waiting = self.start_ready().await;
            metrics::gauge!(m::LEASES_HELD, "stream" => self.config.stream.clone(), "worker" => self.worker_id.clone())
                .set(self.held.len() as f64);
            let mut wake = next_renew.min(next_take).min(next_sync).min(next_claim);
            if waiting {
                wake = wake.min(Instant::now() + Duration::from_millis(500));
            }
            tokio::select! {
                () = shutdown.cancelled() => {}
                Some(done) = self.tasks.join_next_with_id(), if !self.tasks.is_empty() => {
                    if self.finished(done).await {
                        sync_now = true;
                    }
                }
                () = tokio::time::sleep_until(wake.into()) => {}
            }
        }
        self.health.fail(CHECK_WORKER, "stopping");
        if let Some(why) = &self.fatal {
            tracing::error!(error = %why, "stopping the worker: no retry can fix this");
        }
        self.stop().await;
        match self.fatal.take() {
            Some(why) => Err(ConsumerError::Fatal(why)),
            None => Ok(()),
        }
    }

    /// Handles a finished shard task; `true` if a shard ended (sync now).
    async fn finished(
        &mut self,
        done: Result<(tokio::task::Id, (String, ShardOutcome)), tokio::task::JoinError>,
    ) -> bool {
        let (shard_id, outcome) = match done {
            Ok((id, done)) => {
                self.task_shards.remove(&id);
                done
            }
            Err(e) => {
                // A panicking processor: release its lease so that it is tried again.
                let shard_id = self.task_shards.remove(&e.id()).unwrap_or_default();
                tracing::error!(shard_id = %shard_id, error = %e, "shard task failed; releasing its lease");
                self.running.remove(&shard_id);
                if let Some(held) = self.unhold(&shard_id) {
                    held.release(None).await;
                }
                return false;
            }
        };
        self.running.remove(&shard_id);
        let held = self.unhold(&shard_id);
        match outcome {
            ShardOutcome::Ended(children) => {
                if let Some(held) = held {
                    held.release(Some(&children)).await;
                }
                true
            }
            ShardOutcome::Lost => {
                metrics::counter!(m::LEASES_LOST, "stream" => self.config.stream.clone())
                    .increment(1);
                false
            }
            ShardOutcome::ShutDown => {
                if let Some(held) = held {
                    self.hold(shard_id, held);
                }
                false
            }
            ShardOutcome::Fatal(why) => {
                // Held until the worker stops, then released like the others: its
                // checkpoint stays where the processor's sinks left it.
                if let Some(held) = held {
                    self.hold(shard_id.clone(), held);
                }
                self.fatal = Some(format!("shard {shard_id}: {why}"));
                false
            }
        }
    }

    fn hold(&mut self, shard_id: String, held: Arc<HeldLease<S>>) {
        self.renewing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(shard_id.clone(), held.clone());
        self.held.insert(shard_id, held);
    }

    fn unhold(&mut self, shard_id: &str) -> Option<Arc<HeldLease<S>>> {
        self.renewing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(shard_id);
        self.held.remove(shard_id)
    }

    fn drop_lost(&mut self) {
        // A lost lease whose task is not running (waiting for parents) is dropped here;
        // a running one is dropped when its task reports.
        let lost: Vec<String> = self
            .held
            .iter()
            .filter(|(id, h)| h.lost.is_cancelled() && !self.running.contains(*id))
            .map(|(id, _)| id.clone())
            .collect();
        for id in lost {
            self.unhold(&id);
        }
    }

    /// Creates a lease for every shard that has none.
    async fn sync_shards(&mut self) -> Result<(), ConsumerError> {
        let stream = self.config.stream.clone();
        let shards =
            self.client
                .list_shards(&stream)
                .await
                .map_err(|source| ConsumerError::ListShards {
                    stream: stream.clone(),
                    source,
                })?;
        let table = self.store.table().to_owned();
        let leases =
            self.store
                .list_leases()
                .await
                .map_err(|source| ConsumerError::LeaseTable {
                    table: table.clone(),
                    source,
                })?;
        let mut existing: HashMap<String, bool> =
            leases.iter().map(|l| (l.lease_key.clone(), true)).collect();
        // Value `true`: a lease that reads its shard; `false`: created skipped (LATEST).
        let mut created = 0;
        let children = children_of(&shards);
        for shard in &shards {
            if existing.contains_key(&shard.shard_id) {
                continue;
            }
            // A finished parent whose lease was cleaned up is never created (and read)
            // again: some descendant of it has a lease.
            if !shard.is_open()
                && descendants(&shard.shard_id, &children)
                    .iter()
                    .any(|d| existing.contains_key(d.as_str()))
            {
                continue;
            }
            let lease = self.new_lease(shard, &existing);
            let reads = !lease.checkpoint.is_shard_end();
            match self.store.create_lease_if_absent(&lease).await {
                Ok(true) => {
                    created += 1;
                    tracing::info!(shard_id = %shard.shard_id, checkpoint = %lease.checkpoint, parents = ?lease.parent_shard_ids, "created lease");
                }
                Ok(false) => {}
                Err(source) => return Err(ConsumerError::LeaseTable { table, source }),
            }
            existing.insert(shard.shard_id.clone(), reads);
        }
        if self.config.cleanup_leases {
            self.clean_up(&leases, &children).await;
        }
        self.shards = shards.into_iter().map(|s| s.shard_id).collect();
        self.synced = true;
        tracing::debug!(created, shards = self.shards.len(), "shard sync done");
        Ok(())
    }

    /// Deletes the leases of finished shards (`SHARD_END`, released) all of whose children
    /// have started (checkpointed a record or their own end), as KCL's
    /// `LeaseCleanupManager` does: they are never needed again, and the table stays the
    /// size of the open shards.
    async fn clean_up(&self, leases: &[Lease], children: &HashMap<String, Vec<String>>) {
        let by_key: HashMap<&str, &Lease> =
            leases.iter().map(|l| (l.lease_key.as_str(), l)).collect();
        let started = |key: &str| by_key.get(key).is_some_and(|l| started(l));
        for lease in leases {
            if !lease.checkpoint.is_shard_end() || lease.lease_owner.is_some() {
                continue;
            }
            let mut kids: BTreeSet<&str> =
                lease.child_shard_ids.iter().map(String::as_str).collect();
            if let Some(listed) = children.get(&lease.lease_key) {
                kids.extend(listed.iter().map(String::as_str));
            }
            if kids.is_empty() || !kids.iter().all(|k| started(k)) {
                continue;
            }
            match self.store.delete_lease(&lease.lease_key).await {
                Ok(()) => {
                    metrics::counter!(m::LEASES_CLEANED_UP, "stream" => self.config.stream.clone())
                        .increment(1);
                    tracing::info!(shard_id = %lease.lease_key, children = ?kids, "finished shard's lease deleted");
                }
                Err(e) => {
                    tracing::warn!(shard_id = %lease.lease_key, error = %e, "deleting a finished shard's lease failed")
                }
            }
        }
    }

    fn new_lease(&self, shard: &Shard, existing: &HashMap<String, bool>) -> Lease {
        let parents: BTreeSet<String> = shard
            .parent_shard_id
            .iter()
            .chain(shard.adjacent_parent_shard_id.iter())
            .cloned()
            .collect();
        // A child of a shard that is (or will be) read starts at its beginning, so that
        // nothing between parent and child is lost; other shards start at the initial
        // position, and a closed one under LATEST is skipped.
        let parent_read = parents.iter().any(|p| existing.get(p) == Some(&true));
        let checkpoint = if parent_read {
            ExtendedSequenceNumber::sentinel(ExtendedSequenceNumber::TRIM_HORIZON)
        } else {
            match self.config.initial_position {
                InitialPosition::TrimHorizon => {
                    ExtendedSequenceNumber::sentinel(ExtendedSequenceNumber::TRIM_HORIZON)
                }
                InitialPosition::AtTimestamp => {
                    ExtendedSequenceNumber::sentinel(ExtendedSequenceNumber::AT_TIMESTAMP)
                }
                InitialPosition::Latest if shard.is_open() => {
                    ExtendedSequenceNumber::sentinel(ExtendedSequenceNumber::LATEST)
                }
                InitialPosition::Latest => ExtendedSequenceNumber::shard_end(),
            }
        };
        let mut lease = Lease::new(shard.shard_id.clone(), checkpoint);
        lease.parent_shard_ids = parents;
        lease.starting_hash_key = Some(shard.starting_hash_key.to_string());
        lease.ending_hash_key = Some(shard.ending_hash_key.to_string());
        lease
    }

    /// One taking round: expired and released leases up to the target, else (with
    /// `steal`) at most one lease from the most loaded worker.
    async fn take(&mut self, steal: bool) {
        let leases = match self.store.list_leases().await {
            Ok(leases) => {
                self.health.pass(CHECK_LEASE_TABLE);
                leases
            }
            Err(e) => {
                if e.is_fatal() {
                    self.fatal = Some(e.to_string());
                }
                self.health
                    .fail(CHECK_LEASE_TABLE, format!("cannot list leases: {e}"));
                tracing::warn!(error = %e, "cannot list leases");
                return;
            }
        };
        let now = Instant::now();
        let failover = self.config.failover();
        let keys: HashSet<&str> = leases.iter().map(|l| l.lease_key.as_str()).collect();
        self.seen.retain(|k, _| keys.contains(k.as_str()));
        for l in &leases {
            let changed = self
                .seen
                .get(&l.lease_key)
                .is_none_or(|s| s.counter != l.lease_counter || s.owner != l.lease_owner);
            if changed {
                self.seen.insert(
                    l.lease_key.clone(),
                    Seen {
                        counter: l.lease_counter,
                        owner: l.lease_owner.clone(),
                        since: now,
                    },
                );
            }
        }
        let active: Vec<&Lease> = leases
            .iter()
            .filter(|l| !l.checkpoint.is_shard_end())
            .collect();
        let expired = |l: &Lease| {
            l.lease_owner.is_none()
                || self
                    .seen
                    .get(&l.lease_key)
                    .is_some_and(|s| now.duration_since(s.since) >= failover)
        };
        // Available: unowned or expired, or ours in the table but not held (a restart).
        let mut available: Vec<&Lease> = active
            .iter()
            .copied()
            .filter(|l| {
                !self.held.contains_key(&l.lease_key)
                    && (expired(l) || l.is_owned_by(&self.worker_id))
            })
            .collect();
        let mut load: HashMap<&str, Vec<&Lease>> = HashMap::new();
        for l in &active {
            if let Some(owner) = l.lease_owner.as_deref()
                && owner != self.worker_id
                && !expired(l)
            {
                load.entry(owner).or_default().push(l);
            }
        }
        let workers = load.len() + 1;
        let mut target = active.len().div_ceil(workers).max(1);
        if self.config.max_leases_per_worker > 0 {
            target = target.min(self.config.max_leases_per_worker);
        }
        let mine = self
            .held
            .values()
            .filter(|h| !h.lost.is_cancelled())
            .count();
        if mine >= target {
            return;
        }
        let need = target - mine;
        // Unowned first, then expired; oldest shard ids first (parents before children).
        available.sort_by_key(|l| (l.lease_owner.is_some(), l.lease_key.clone()));
        if !available.is_empty() {
            for l in available.into_iter().take(need) {
                self.try_take(l, false).await;
            }
            return;
        }
        if !steal {
            return;
        }
        let most_loaded = load
            .iter()
            .max_by_key(|(owner, leases)| (leases.len(), *owner))
            .map(|(owner, leases)| ((*owner).to_owned(), leases.clone()));
        if let Some((owner, leases)) = most_loaded
            && (leases.len() > target || (leases.len() == target && need > 1))
            && let Some(victim) = leases.iter().max_by_key(|l| l.lease_key.clone())
        {
            tracing::info!(shard_id = %victim.lease_key, from = %owner, "stealing a lease");
            let victim = (*victim).clone();
            self.try_take(&victim, true).await;
        }
    }

    async fn try_take(&mut self, lease: &Lease, steal: bool) {
        match self.store.take_lease(lease, &self.worker_id).await {
            Ok(taken) => {
                let name = if steal {
                    m::LEASE_STEALS
                } else {
                    m::LEASE_TAKES
                };
                metrics::counter!(name, "stream" => self.config.stream.clone()).increment(1);
                tracing::info!(shard_id = %taken.lease_key, previous_owner = ?lease.lease_owner, checkpoint = %taken.checkpoint, steal, "took lease");
                let held = HeldLease::new(
                    self.store.clone(),
                    &self.config.stream,
                    &self.worker_id,
                    taken,
                );
                self.hold(lease.lease_key.clone(), Arc::new(held));
            }
            Err(e) if e.is_conflict() => {
                tracing::debug!(shard_id = %lease.lease_key, "lease changed before it could be taken");
            }
            Err(e) => {
                tracing::warn!(shard_id = %lease.lease_key, error = %e, "taking lease failed")
            }
        }
    }

    /// Registers the enhanced fan-out consumer (or finds it registered) and returns its
    /// ARN; `None` if `shutdown` fired first.
    async fn register_consumer(
        &self,
        shutdown: &CancellationToken,
    ) -> Result<Option<String>, ConsumerError> {
        let name = self.config.fan_out_consumer_name().to_owned();
        let mut attempt = 0;
        loop {
            let registered = tokio::select! {
                () = shutdown.cancelled() => return Ok(None),
                r = self.client.register_consumer(&self.config.stream, &name) => r,
            };
            match registered {
                Ok(arn) => {
                    tracing::info!(consumer = %name, consumer_arn = %arn, "enhanced fan-out consumer registered");
                    return Ok(Some(arn));
                }
                Err(source) if attempt >= 5 || !source.is_retryable() => {
                    return Err(ConsumerError::RegisterConsumer {
                        stream: self.config.stream.clone(),
                        consumer: name,
                        source: Box::new(source),
                    });
                }
                Err(e) => {
                    attempt += 1;
                    tracing::warn!(consumer = %name, error = %e, "stream consumer not registered yet; retrying");
                    tokio::select! {
                        () = shutdown.cancelled() => return Ok(None),
                        () = tokio::time::sleep(self.config.fetch_retry.jittered(attempt)) => {}
                    }
                }
            }
        }
    }

    /// Starts a task for every held lease whose parents are done; `true` if some wait.
    async fn start_ready(&mut self) -> bool {
        let mut waiting = false;
        let ids: Vec<String> = self
            .held
            .keys()
            .filter(|id| !self.running.contains(*id))
            .cloned()
            .collect();
        for id in ids {
            let Some(held) = self.held.get(&id).cloned() else {
                continue;
            };
            if held.lost.is_cancelled() {
                continue;
            }
            let lease = held.snapshot().await;
            if !self.parents_done(&lease).await {
                waiting = true;
                continue;
            }
            let task = ShardTask {
                client: self.client.clone(),
                config: self.config.clone(),
                held: held.clone(),
                shutdown: self.stop_shards.child_token(),
                // Only a shard made by a split can receive aggregates holding records of
                // another shard (a producer's map from before the split); elsewhere the
                // check would cost an MD5 per user record for nothing.
                health: self.health.clone(),
                range: if lease.parent_shard_ids.is_empty() {
                    None
                } else {
                    lease_range(
                        lease.starting_hash_key.as_deref(),
                        lease.ending_hash_key.as_deref(),
                    )
                },
                consumer_arn: self.consumer_arn.clone(),
            };
            let processor = self.factory.create(&id);
            let shard_id = id.clone();
            self.tasks
                .spawn(async move { (shard_id, task.run(processor).await) });
            self.running.insert(id);
        }
        waiting
    }

    /// Whether every parent of `lease` checkpointed `SHARD_END` (or is gone from the
    /// stream and the table).
    async fn parents_done(&self, lease: &Lease) -> bool {
        if !lease.parent_shard_ids.is_empty() && !self.synced {
            return false;
        }
        for parent in &lease.parent_shard_ids {
            match self.store.get_lease(parent).await {
                Ok(Some(p)) if p.checkpoint.is_shard_end() => {}
                Ok(Some(_)) => return false,
                Ok(None) if !self.shards.contains(parent) => {}
                // A parent's lease is deleted only once all its children started: a child
                // that started (a worker took it over) has nothing to wait for.
                Ok(None) if started(lease) => {}
                Ok(None) => return false,
                Err(e) => {
                    tracing::warn!(shard_id = %lease.lease_key, parent = %parent, error = %e, "cannot read parent lease");
                    return false;
                }
            }
        }
        true
    }

    /// Graceful stop: processors finish their batch and get `shutdown_requested`; leases
    /// are renewed meanwhile, then released.
    async fn stop(&mut self) {
        tracing::info!(leases = self.held.len(), "worker stopping");
        self.stop_shards.cancel();
        // The renewer keeps the leases while the processors finish their batches.
        while let Some(done) = self.tasks.join_next_with_id().await {
            self.finished(done).await;
        }
        self.stop_renewing.cancel();
        if let Some(renewer) = self.renewer.take() {
            let _ = renewer.await;
        }
        self.renewing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        for held in std::mem::take(&mut self.held).into_values() {
            held.release(None).await;
        }
        metrics::gauge!(m::LEASES_HELD, "stream" => self.config.stream.clone(), "worker" => self.worker_id.clone())
            .set(0.0);
        tracing::info!("worker stopped");
    }
}
