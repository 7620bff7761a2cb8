//! The producer's task: predicts each record's shard, aggregates per shard, collects
//! PutRecords calls, rate-limits per shard, retries failed entries, and reports every
//! record's outcome. One task owns all of this state; calls run as their own tasks.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use chief_aggregation::{
    AggregationError, Aggregator, KinesisRecord, ShardMap, ShardRange, UserRecord, deaggregate,
};
use chief_stream::{PutEntry, PutEntryResult, Shard, StreamClient, StreamError};
use metrics::{Counter, Gauge, Histogram, counter, gauge, histogram};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;

use crate::outcome::{
    Attempt, AttemptError, BatchSlot, FailureReason, RecordFailure, RecordOutcome, RecordSuccess,
    Reply, deliver,
};
use crate::{Budget, Counters, ProducerConfig, TokenBucket};

/// Records on their way from `send` or `send_batch` to the task.
pub(crate) enum Incoming {
    One {
        record: UserRecord,
        reply: oneshot::Sender<RecordOutcome>,
        arrived: Instant,
        cost: usize,
    },
    /// Valid records of a batch: (index in the batch, record, buffer cost).
    Batch {
        records: Vec<(usize, UserRecord, usize)>,
        slot: Arc<BatchSlot>,
        arrived: Instant,
    },
}

/// Requests from the handle.
pub(crate) enum Control {
    /// Send everything now; answer when nothing is pending.
    Flush(oneshot::Sender<()>),
    /// Stop taking records, send what is buffered, end when nothing is pending.
    Shutdown,
}

/// A user record inside an entry: where its outcome goes.
struct Member {
    reply: Reply,
    arrived: Instant,
    cost: usize,
}

/// One Kinesis record (an aggregate or a plain record) and the user records it carries.
struct Entry {
    record: KinesisRecord,
    members: Vec<Member>,
    /// The shard it was predicted for.
    shard: Arc<str>,
    /// The earliest member's arrival plus the TTL.
    deadline: Instant,
    /// When it became ready, or when its last attempt ended.
    waiting_since: Instant,
    /// Back-off: not to be sent before this.
    not_before: Instant,
    attempts: Vec<Attempt>,
}

impl Entry {
    /// A ready entry: its deadline is the earliest member's arrival plus the TTL.
    fn new(
        record: KinesisRecord,
        members: Vec<Member>,
        shard: Arc<str>,
        ttl: Duration,
        now: Instant,
        attempts: Vec<Attempt>,
    ) -> Self {
        Self {
            deadline: members.first().map_or(now, |m| m.arrived) + ttl,
            record,
            members,
            shard,
            waiting_since: now,
            not_before: now,
            attempts,
        }
    }

    /// A user record on its own, not aggregated.
    fn plain(record: UserRecord) -> KinesisRecord {
        KinesisRecord {
            partition_key: record.partition_key,
            explicit_hash_key: record.explicit_hash_key,
            data: record.data,
            user_records: 1,
        }
    }

    fn size(&self) -> usize {
        self.record.data.len() + self.record.partition_key.len()
    }

    /// The user records it carries, in member order.
    fn user_records(&self) -> Vec<UserRecord> {
        let outer = UserRecord {
            partition_key: self.record.partition_key.clone(),
            explicit_hash_key: self.record.explicit_hash_key.clone(),
            data: self.record.data.clone(),
        };
        if self.record.user_records == 1 {
            return vec![outer];
        }
        deaggregate(outer).map(|d| d.record).collect()
    }
}

/// An aggregate that Kinesis put on another shard than predicted (the map was out of
/// date: a reshard), waiting for the new map to tell which of its user records that
/// shard owns.
struct Parked {
    entry: Entry,
    shard_id: Arc<str>,
    sequence_number: Arc<str>,
    /// New maps installed that did not know `shard_id` yet.
    maps_without_shard: u32,
}

/// How many new maps may come back without the shard a parked aggregate landed on
/// (ListShards can lag a reshard) before its records are all sent again.
const MAPS_WITHOUT_SHARD: u32 = 10;

struct ShardState {
    range: ShardRange,
    id: Arc<str>,
    aggregator: Aggregator,
    open: Vec<Member>,
    open_since: Option<Instant>,
    ready: VecDeque<Entry>,
    /// A call carrying this shard's entries is in flight.
    busy: bool,
    /// A record predicted for this shard landed on another: nothing more is sent for it
    /// until the new map arrives (records sent on the old map would land, out of order,
    /// ahead of the ones the new map sends again).
    stale: bool,
    limiter: TokenBucket,
    backoff_until: Option<Instant>,
}

impl ShardState {
    /// Closes the open aggregate, if any, into a ready entry.
    fn close_aggregate(&mut self, ttl: Duration, now: Instant) {
        let Some(record) = self.aggregator.flush() else {
            return;
        };
        let members = take_keeping_capacity(&mut self.open);
        self.open_since = None;
        let entry = Entry::new(record, members, self.id.clone(), ttl, now, Vec::new());
        self.ready.push_back(entry);
    }
}

/// The KPL metrics of one stream, registered once (labels are built once, not per record).
struct Metrics {
    user_records_received: Counter,
    user_records_pending: Gauge,
    user_records_put: Counter,
    user_records_data_put: Counter,
    kinesis_records_put: Counter,
    kinesis_records_data_put: Counter,
    all_errors: Counter,
    user_record_expired: Counter,
    wrong_shard: Counter,
    map_refreshes: Counter,
    retries_per_record: Histogram,
    buffering_time: Histogram,
    request_time: Histogram,
    user_records_per_kinesis_record: Histogram,
    kinesis_records_per_request: Histogram,
    stream: String,
}

impl Metrics {
    fn new(stream: &str) -> Self {
        let s = stream.to_owned();
        Self {
            user_records_received: counter!("UserRecordsReceived", "stream" => s.clone()),
            user_records_pending: gauge!("UserRecordsPending", "stream" => s.clone()),
            user_records_put: counter!("UserRecordsPut", "stream" => s.clone()),
            user_records_data_put: counter!("UserRecordsDataPut", "stream" => s.clone()),
            kinesis_records_put: counter!("KinesisRecordsPut", "stream" => s.clone()),
            kinesis_records_data_put: counter!("KinesisRecordsDataPut", "stream" => s.clone()),
            all_errors: counter!("AllErrors", "stream" => s.clone()),
            user_record_expired: counter!("UserRecordExpired", "stream" => s.clone()),
            wrong_shard: counter!("WrongShardPredictions", "stream" => s.clone()),
            map_refreshes: counter!("ShardMapRefreshes", "stream" => s.clone()),
            retries_per_record: histogram!("RetriesPerRecord", "stream" => s.clone()),
            buffering_time: histogram!("BufferingTime", "stream" => s.clone()),
            request_time: histogram!("RequestTime", "stream" => s.clone()),
            user_records_per_kinesis_record: histogram!("UserRecordsPerKinesisRecord", "stream" => s.clone()),
            kinesis_records_per_request: histogram!("KinesisRecordsPerPutRecordsRequest", "stream" => s.clone()),
            stream: s,
        }
    }

    fn error(&self, code: &str) {
        counter!("ErrorsByCode", "stream" => self.stream.clone(), "code" => code.to_owned())
            .increment(1);
    }
}

/// Where an entry landed (shard, sequence number), or the error and whether it was throttling.
type EntryOutcome = Result<(Arc<str>, Arc<str>), (AttemptError, bool)>;

/// A finished PutRecords call.
struct CallDone {
    entries: Vec<Entry>,
    started: SystemTime,
    start: Instant,
    duration: Duration,
    result: Result<Vec<PutEntryResult>, StreamError>,
}

pub(crate) struct Pipeline<C> {
    pub client: Arc<C>,
    pub stream: Arc<str>,
    pub config: ProducerConfig,
    pub budget: Arc<Budget>,
    pub counters: Arc<Counters>,
    pub intake: mpsc::UnboundedReceiver<Incoming>,
    pub control: mpsc::UnboundedReceiver<Control>,
    pub map: ShardMap,
    shards: Vec<ShardState>,
    calls: JoinSet<CallDone>,
    flush_waiters: Vec<oneshot::Sender<()>>,
    accepting: bool,
    shutting_down: bool,
    map_stale: bool,
    /// A shard map refresh is running on its own task (ListShards with retries), so that
    /// intake and dispatch go on meanwhile; its map arrives on `refreshed`.
    refreshing: bool,
    refreshed_tx: mpsc::UnboundedSender<Option<ShardMap>>,
    refreshed: mpsc::UnboundedReceiver<Option<ShardMap>>,
    /// Aggregates put on another shard than predicted, waiting for the new map.
    parked: Vec<Parked>,
    /// Refreshes in a row that brought a map without a parked aggregate's shard: the next
    /// one waits a back-off first.
    refresh_round: u32,
    rr: usize,
    metrics: Metrics,
}

fn aggregator(config: &ProducerConfig) -> Aggregator {
    // validate() bounds aggregation_max_bytes, so this falls back only on a bug.
    Aggregator::with_max_bytes(config.aggregation_max_bytes).unwrap_or_default()
}

impl<C: StreamClient> Pipeline<C> {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        client: Arc<C>,
        stream: Arc<str>,
        config: ProducerConfig,
        budget: Arc<Budget>,
        counters: Arc<Counters>,
        intake: mpsc::UnboundedReceiver<Incoming>,
        control: mpsc::UnboundedReceiver<Control>,
        map: ShardMap,
    ) -> Self {
        let (refreshed_tx, refreshed) = mpsc::unbounded_channel();
        let mut me = Self {
            metrics: Metrics::new(&stream),
            client,
            stream,
            config,
            budget,
            counters,
            intake,
            control,
            map: ShardMap::default(),
            shards: Vec::new(),
            calls: JoinSet::new(),
            flush_waiters: Vec::new(),
            accepting: true,
            shutting_down: false,
            map_stale: false,
            refreshing: false,
            refreshed_tx,
            refreshed,
            parked: Vec::new(),
            refresh_round: 0,
            rr: 0,
        };
        me.install_map(map);
        me
    }

    pub async fn run(mut self) {
        let mut batch = Vec::with_capacity(1024);
        loop {
            let wake = self.next_wake();
            tokio::select! {
                biased;
                Some(done) = self.calls.join_next(), if !self.calls.is_empty() => {
                    match done {
                        Ok(done) => self.on_call_done(done),
                        Err(e) => tracing::error!(stream = %self.stream, error = %e, "PutRecords task failed"),
                    }
                }
                Some(ctl) = self.control.recv() => match ctl {
                    Control::Flush(tx) => self.flush_waiters.push(tx),
                    Control::Shutdown => {
                        self.shutting_down = true;
                        self.intake.close();
                    }
                },
                n = self.intake.recv_many(&mut batch, 1024), if self.accepting => {
                    if n == 0 {
                        self.accepting = false;
                        self.shutting_down = true;
                    }
                    for incoming in batch.drain(..) {
                        self.intake(incoming);
                    }
                }
                Some(map) = self.refreshed.recv(), if self.refreshing => {
                    self.refreshing = false;
                    match map {
                        Some(map) => {
                            self.metrics.map_refreshes.increment(1);
                            self.install_map(map);
                        }
                        // No new map: settle on the old one (their strays are sent again
                        // and, landing elsewhere again, wait for the next refresh).
                        None => {
                            for shard in &mut self.shards {
                                shard.stale = false;
                            }
                            self.settle_parked(Instant::now());
                        }
                    }
                }
                () = sleep_until(wake) => {}
            }
            if self.map_stale && !self.refreshing {
                self.refresh_map();
            }
            let now = Instant::now();
            let draining = self.shutting_down || !self.flush_waiters.is_empty();
            self.close_aggregates(now, draining);
            self.expire(now);
            self.dispatch(now);
            let pending = self.counters.pending();
            self.metrics.user_records_pending.set(pending as f64);
            if pending == 0 {
                for tx in self.flush_waiters.drain(..) {
                    let _ = tx.send(());
                }
                if self.shutting_down && !self.accepting && self.calls.is_empty() {
                    break;
                }
            }
        }
        self.fail_everything_left();
    }

    fn install_map(&mut self, map: ShardMap) {
        let now = Instant::now();
        let mut old: Vec<ShardState> = std::mem::take(&mut self.shards);
        let mut orphans: Vec<ShardState> = Vec::new();
        for range in map.ranges() {
            if let Some(i) = old.iter().position(|s| s.range == *range) {
                self.shards.push(old.swap_remove(i));
            } else {
                self.shards.push(ShardState {
                    id: Arc::from(range.shard_id.as_str()),
                    range: range.clone(),
                    aggregator: aggregator(&self.config),
                    open: Vec::new(),
                    open_since: None,
                    ready: VecDeque::new(),
                    busy: false,
                    stale: false,
                    limiter: TokenBucket::for_shard(self.config.rate_limit_percent, now),
                    backoff_until: None,
                });
            }
        }
        orphans.append(&mut old);
        self.map = map;
        // Aggregates that landed elsewhere were sent before anything still buffered for
        // the gone shards: their strays go first. Those whose shard this map does not
        // know yet (ListShards lagging the reshard) wait for the next one, and so does
        // sending for the shards they were predicted for.
        let (known, waiting): (Vec<Parked>, Vec<Parked>) =
            std::mem::take(&mut self.parked).into_iter().partition(|p| {
                p.maps_without_shard >= MAPS_WITHOUT_SHARD || self.range_of(&p.shard_id).is_some()
            });
        self.parked = waiting;
        for shard in &mut self.shards {
            shard.stale = self.parked.iter().any(|p| p.entry.shard == shard.id);
        }
        for p in &mut self.parked {
            p.maps_without_shard += 1;
        }
        if !self.parked.is_empty() {
            self.map_stale = true;
            self.refresh_round += 1;
        } else {
            self.refresh_round = 0;
        }
        self.settle(known, now);
        // Records buffered for shards that are gone (split or merged away) are predicted
        // again on the new map, in their order.
        for mut shard in orphans {
            shard.close_aggregate(self.config.ttl(), now);
            for entry in shard.ready.drain(..) {
                self.reroute(entry, now, false);
            }
        }
    }

    /// Starts refreshing the shard map on its own task: ListShards, retried up to 20 times
    /// with the retry policy's back-off. Records keep flowing on the old map meanwhile (a
    /// wrong prediction lands a record on another open shard: it costs throughput, not
    /// records); the new map is installed when it arrives.
    fn refresh_map(&mut self) {
        self.map_stale = false;
        self.refreshing = true;
        let (client, stream, retry_policy) =
            (self.client.clone(), self.stream.clone(), self.config.retry);
        let done = self.refreshed_tx.clone();
        let wait_first = match self.refresh_round {
            0 => Duration::ZERO,
            round => retry_policy.jittered(round.min(20)),
        };
        tokio::spawn(async move {
            tokio::time::sleep(wait_first).await;
            let mut retry = 0;
            let map = loop {
                match client.list_shards(&stream).await {
                    Ok(shards) => match open_shard_map(&shards) {
                        Ok(map) => {
                            tracing::info!(stream = %stream, shards = map.len(), "shard map refreshed");
                            break Some(map);
                        }
                        Err(reason) => {
                            tracing::warn!(stream = %stream, %reason, "no usable shard map yet")
                        }
                    },
                    Err(e) => tracing::warn!(stream = %stream, error = %e, "ListShards failed"),
                }
                retry += 1;
                if retry >= 20 {
                    // Keep the old map; a later wrong-shard result asks again.
                    tracing::error!(stream = %stream, "giving up refreshing the shard map for now");
                    break None;
                }
                tokio::time::sleep(retry_policy.jittered(retry)).await;
            };
            // The pipeline may have ended meanwhile: then nobody needs the map.
            let _ = done.send(map);
        });
    }

    fn shard_index(&self, record: &UserRecord) -> Option<usize> {
        let hash = record.hash_key().ok()?;
        let range = self.map.shard_for(hash)?;
        Some(
            self.map
                .ranges()
                .partition_point(|r| r.starting_hash_key < range.starting_hash_key),
        )
    }

    fn intake(&mut self, incoming: Incoming) {
        match incoming {
            Incoming::One {
                record,
                reply,
                arrived,
                cost,
            } => {
                self.metrics.user_records_received.increment(1);
                let member = Member {
                    reply: Reply::One(reply),
                    arrived,
                    cost,
                };
                self.place(record, member, arrived);
            }
            Incoming::Batch {
                records,
                slot,
                arrived,
            } => {
                self.metrics
                    .user_records_received
                    .increment(records.len() as u64);
                for (index, record, cost) in records {
                    let member = Member {
                        reply: Reply::Batch(slot.clone(), index),
                        arrived,
                        cost,
                    };
                    self.place(record, member, arrived);
                }
            }
        }
    }

    /// Puts a user record into its shard's open aggregate (or makes it an entry of its own).
    fn place(&mut self, record: UserRecord, member: Member, now: Instant) {
        let Some(i) = self.shard_index(&record) else {
            // send() validated the record and the map is complete: not reachable unless
            // the map is being rebuilt. Fail loudly rather than lose the record.
            let reason = FailureReason::Rejected {
                code: "NoShardForHashKey".to_owned(),
                message: "no open shard owns the record's hash key".to_owned(),
            };
            self.fail_members(vec![member], vec![record], reason, Arc::from(Vec::new()));
            return;
        };
        let ttl = self.config.ttl();
        let aggregation = self.config.aggregation_enabled;
        let shard = &mut self.shards[i];
        if !aggregation {
            let entry = Entry::new(
                Entry::plain(record),
                vec![member],
                shard.id.clone(),
                ttl,
                now,
                Vec::new(),
            );
            shard.ready.push_back(entry);
            return;
        }
        match shard.aggregator.add(record) {
            Ok(None) => {
                shard.open_since.get_or_insert(member.arrived);
                shard.open.push(member);
            }
            Ok(Some(closed)) => {
                let members = take_keeping_capacity(&mut shard.open);
                debug_assert_eq!(closed.user_records, members.len());
                let entry = Entry::new(closed, members, shard.id.clone(), ttl, now, Vec::new());
                shard.ready.push_back(entry);
                shard.open_since = Some(member.arrived);
                shard.open.push(member);
            }
            Err(e) => self.reject(member, e, Arc::from(Vec::new())),
        }
    }

    /// Closes aggregates that have waited `record_max_buffered_time` (or all, when draining).
    fn close_aggregates(&mut self, now: Instant, all: bool) {
        let (linger, ttl) = (self.config.linger(), self.config.ttl());
        for shard in &mut self.shards {
            if shard
                .open_since
                .is_some_and(|since| all || since + linger <= now)
            {
                shard.close_aggregate(ttl, now);
            }
        }
    }

    /// Fails entries whose TTL ran out while waiting.
    fn expire(&mut self, now: Instant) {
        let mut expired = Vec::new();
        for shard in &mut self.shards {
            if shard.ready.iter().any(|e| e.deadline <= now) {
                let (gone, kept): (VecDeque<Entry>, VecDeque<Entry>) =
                    shard.ready.drain(..).partition(|e| e.deadline <= now);
                shard.ready = kept;
                expired.extend(gone);
            }
        }
        for entry in expired {
            self.fail_entry(entry, FailureReason::Expired);
        }
    }

    /// Builds and starts PutRecords calls from the ready entries of idle shards.
    fn dispatch(&mut self, now: Instant) {
        let n = self.shards.len();
        while self.calls.len() < self.config.max_connections {
            let mut batch: Vec<Entry> = Vec::new();
            let mut bytes = 0usize;
            for k in 0..n {
                let i = (self.rr + k) % n;
                let shard = &mut self.shards[i];
                if shard.busy
                    || shard.stale
                    || shard.ready.is_empty()
                    || shard.backoff_until.is_some_and(|t| t > now)
                {
                    continue;
                }
                let mut took = 0;
                while let Some(front) = shard.ready.front() {
                    if front.not_before > now
                        || took >= self.config.max_entries_per_shard_per_call
                        || batch.len() >= self.config.collection_max_count
                        || bytes + front.size() > self.config.collection_max_bytes
                        || !shard.limiter.try_take(front.size(), now)
                    {
                        break;
                    }
                    if let Some(entry) = shard.ready.pop_front() {
                        bytes += entry.size();
                        batch.push(entry);
                        took += 1;
                    }
                }
                if took > 0 {
                    shard.busy = true;
                }
            }
            self.rr = self.rr.wrapping_add(1);
            if batch.is_empty() {
                return;
            }
            self.start_call(batch);
        }
    }

    fn start_call(&mut self, entries: Vec<Entry>) {
        let client = self.client.clone();
        let stream = self.stream.clone();
        self.metrics
            .kinesis_records_per_request
            .record(entries.len() as f64);
        for e in entries.iter().filter(|e| e.attempts.is_empty()) {
            if let Some(first) = e.members.first() {
                self.metrics
                    .buffering_time
                    .record(first.arrived.elapsed().as_secs_f64() * 1000.0);
            }
        }
        self.calls.spawn(async move {
            let wire: Vec<PutEntry> = entries
                .iter()
                .map(|e| PutEntry {
                    partition_key: e.record.partition_key.clone(),
                    explicit_hash_key: e.record.explicit_hash_key.clone(),
                    data: e.record.data.clone(),
                })
                .collect();
            let started = SystemTime::now();
            let start = Instant::now();
            let result = client.put_records(&stream, wire).await;
            CallDone {
                entries,
                started,
                start,
                duration: start.elapsed(),
                result,
            }
        });
    }

    fn on_call_done(&mut self, done: CallDone) {
        let CallDone {
            entries,
            started,
            start,
            duration,
            result,
        } = done;
        self.metrics
            .request_time
            .record(duration.as_secs_f64() * 1000.0);
        for e in &entries {
            if let Some(i) = self.shards.iter().position(|s| s.id == e.shard) {
                self.shards[i].busy = false;
            }
        }
        let now = Instant::now();
        let attempt = |e: &Entry, error: Option<AttemptError>| Attempt {
            started,
            delay: start.saturating_duration_since(e.waiting_since),
            duration,
            error,
        };
        let results: Vec<EntryOutcome> = match result {
            Ok(results) => results
                .into_iter()
                .map(|r| match r {
                    Ok(s) => Ok((Arc::from(s.shard_id), Arc::from(s.sequence_number))),
                    Err(e) => {
                        let throttled = e.is_throttling();
                        Err((
                            AttemptError {
                                code: e.code,
                                message: e.message,
                            },
                            throttled,
                        ))
                    }
                })
                .collect(),
            Err(e) => {
                // Counted per Kinesis record below (each failed record once per attempt),
                // not once more for the call.
                if !e.is_retryable() {
                    let reason = FailureReason::Rejected {
                        code: e.code().to_owned(),
                        message: e.to_string(),
                    };
                    for mut entry in entries {
                        self.metrics.error(e.code());
                        self.metrics.all_errors.increment(1);
                        let a = attempt(
                            &entry,
                            Some(AttemptError {
                                code: e.code().to_owned(),
                                message: e.to_string(),
                            }),
                        );
                        entry.attempts.push(a);
                        self.fail_entry(entry, reason.clone());
                    }
                    return;
                }
                let throttled = matches!(e, StreamError::Throttled { .. });
                let err = AttemptError {
                    code: e.code().to_owned(),
                    message: e.to_string(),
                };
                entries
                    .iter()
                    .map(|_| Err((err.clone(), throttled)))
                    .collect()
            }
        };
        // Failed entries go back to the front of their shard's queue, in their order.
        let mut retry: Vec<Entry> = Vec::new();
        for (mut entry, outcome) in entries.into_iter().zip(results) {
            match outcome {
                Ok((shard_id, sequence_number)) => {
                    let a = attempt(&entry, None);
                    entry.attempts.push(a);
                    if *shard_id != *entry.shard {
                        // Landed elsewhere: the map is out of date (a reshard).
                        self.metrics.wrong_shard.increment(1);
                        self.map_stale = true;
                        if let Some(predicted) =
                            self.shards.iter_mut().find(|s| s.id == entry.shard)
                        {
                            predicted.stale = true;
                        }
                        if entry.members.len() > 1 {
                            // Kinesis routed the aggregate by one hash key; its other user
                            // records may belong to another shard. Decided on the map that
                            // knows the shard it landed on (the KPL's "Wrong Shard" retry).
                            let parked = Parked {
                                entry,
                                shard_id,
                                sequence_number,
                                maps_without_shard: 0,
                            };
                            if self.range_of(&parked.shard_id).is_some() {
                                self.settle(vec![parked], now);
                            } else {
                                self.parked.push(parked);
                            }
                            continue;
                        }
                    }
                    self.succeed(entry, shard_id, sequence_number);
                }
                Err((err, throttled)) => {
                    self.metrics.error(&err.code);
                    self.metrics.all_errors.increment(1);
                    let a = attempt(&entry, Some(err));
                    entry.attempts.push(a);
                    if throttled && self.config.fail_if_throttled {
                        self.fail_entry(entry, FailureReason::Throttled);
                        continue;
                    }
                    let delay = self.config.retry.jittered(entry.attempts.len() as u32);
                    if entry.deadline <= now || self.past_retry_deadline(&entry, delay) {
                        self.fail_entry(entry, FailureReason::Expired);
                        continue;
                    }
                    entry.not_before = now + delay;
                    entry.waiting_since = now;
                    if throttled
                        && let Some(shard) = self.shards.iter_mut().find(|s| s.id == entry.shard)
                    {
                        shard.backoff_until = Some(now + delay);
                    }
                    retry.push(entry);
                }
            }
        }
        for entry in retry.into_iter().rev() {
            match self.shards.iter_mut().find(|s| s.id == entry.shard) {
                Some(shard) => shard.ready.push_front(entry),
                None => self.reroute(entry, now, true),
            }
        }
    }

    /// Whether a retry `delay` from now would start past `retry.deadline_ms` (when set)
    /// after the entry's first attempt: then it is not retried, whatever is left of its
    /// time to live.
    fn past_retry_deadline(&self, entry: &Entry, delay: Duration) -> bool {
        entry
            .attempts
            .first()
            .and_then(|first| first.started.elapsed().ok())
            .is_some_and(|elapsed| !self.config.retry.allows(elapsed + delay))
    }

    /// Predicts an entry's records again on the current map (its shard is gone).
    fn reroute(&mut self, entry: Entry, now: Instant, front: bool) {
        let records = entry.user_records();
        self.reroute_records(records, entry.members, entry.attempts, now, front);
    }

    /// Predicts user records again on the current map, with their attempts so far.
    fn reroute_records(
        &mut self,
        records: Vec<UserRecord>,
        members: Vec<Member>,
        attempts: Vec<Attempt>,
        now: Instant,
        front: bool,
    ) {
        let mut per_shard: Vec<(usize, Vec<(UserRecord, Member)>)> = Vec::new();
        let mut unroutable = (Vec::new(), Vec::new());
        for (record, member) in records.into_iter().zip(members) {
            match self.shard_index(&record) {
                Some(i) => match per_shard.iter_mut().find(|(j, _)| *j == i) {
                    Some((_, v)) => v.push((record, member)),
                    None => per_shard.push((i, vec![(record, member)])),
                },
                None => {
                    unroutable.0.push(member);
                    unroutable.1.push(record);
                }
            }
        }
        if !unroutable.0.is_empty() {
            let reason = FailureReason::Rejected {
                code: "NoShardForHashKey".to_owned(),
                message: "no open shard owns the record's hash key".to_owned(),
            };
            self.fail_members(
                unroutable.0,
                unroutable.1,
                reason,
                Arc::from(attempts.clone()),
            );
        }
        for (i, items) in per_shard {
            let mut entries = Vec::new();
            let mut agg = aggregator(&self.config);
            let mut members: Vec<Member> = Vec::new();
            let shard_id = self.shards[i].id.clone();
            let ttl = self.config.ttl();
            let make = |record: KinesisRecord, members: Vec<Member>| {
                Entry::new(
                    record,
                    members,
                    shard_id.clone(),
                    ttl,
                    now,
                    attempts.clone(),
                )
            };
            for (record, member) in items {
                if !self.config.aggregation_enabled {
                    entries.push(make(Entry::plain(record), vec![member]));
                    continue;
                }
                match agg.add(record) {
                    Ok(None) => members.push(member),
                    Ok(Some(closed)) => {
                        entries.push(make(closed, std::mem::take(&mut members)));
                        members.push(member);
                    }
                    Err(e) => self.reject(member, e, Arc::from(attempts.clone())),
                }
            }
            if let Some(closed) = agg.flush() {
                entries.push(make(closed, members));
            }
            let shard = &mut self.shards[i];
            if front {
                for e in entries.into_iter().rev() {
                    shard.ready.push_front(e);
                }
            } else {
                shard.ready.extend(entries);
            }
        }
    }

    /// The current map's range of shard `id`, if the map knows the shard.
    fn range_of(&self, id: &str) -> Option<&ShardRange> {
        self.map.ranges().iter().find(|r| r.shard_id == id)
    }

    /// Counts a Kinesis record Kinesis took (whatever becomes of its user records).
    fn count_kinesis_record(&self, entry: &Entry) {
        self.metrics.kinesis_records_put.increment(1);
        self.metrics
            .kinesis_records_data_put
            .increment(entry.record.data.len() as u64);
    }

    fn succeed(&mut self, entry: Entry, shard_id: Arc<str>, sequence_number: Arc<str>) {
        self.count_kinesis_record(&entry);
        let members = entry
            .members
            .into_iter()
            .enumerate()
            .map(|(i, member)| (i as u64, member))
            .collect();
        self.succeed_members(members, entry.attempts, shard_id, sequence_number);
    }

    /// Reports user records put at `shard_id`/`sequence_number`, each with its
    /// sub-sequence number (its place in the aggregate).
    fn succeed_members(
        &mut self,
        members: Vec<(u64, Member)>,
        attempts: Vec<Attempt>,
        shard_id: Arc<str>,
        sequence_number: Arc<str>,
    ) {
        let attempts: Arc<[Attempt]> = Arc::from(attempts);
        let n = members.len();
        let m = &self.metrics;
        m.user_records_put.increment(n as u64);
        m.user_records_per_kinesis_record.record(n as f64);
        m.retries_per_record
            .record(attempts.len().saturating_sub(1) as f64);
        let mut cost = 0;
        let data = members
            .iter()
            .map(|(_, m)| m.cost - crate::RECORD_OVERHEAD_BYTES)
            .sum::<usize>();
        m.user_records_data_put.increment(data as u64);
        deliver(members.into_iter().map(|(sub_sequence_number, member)| {
            cost += member.cost;
            let outcome = Ok(RecordSuccess {
                shard_id: shard_id.clone(),
                sequence_number: sequence_number.clone(),
                sub_sequence_number,
                attempts: attempts.clone(),
            });
            (member.reply, outcome)
        }));
        self.counters.put.fetch_add(n as u64, Ordering::Relaxed);
        self.budget.release(n, cost);
    }

    /// Settles every parked aggregate on the current map.
    fn settle_parked(&mut self, now: Instant) {
        let parked = std::mem::take(&mut self.parked);
        self.settle(parked, now);
    }

    /// Settles aggregates that landed on another shard than predicted, as the KPL does:
    /// the user records whose hash key that shard owns are put (they are read there, in
    /// order); the others ("strays", which a KCL consumer drops as outside the shard's
    /// range) are predicted again on the current map and sent again, ahead of newer
    /// records of their shards. A shard the map does not know makes every record a stray.
    fn settle(&mut self, parked: Vec<Parked>, now: Instant) {
        let mut strays = Vec::new();
        for p in parked {
            self.count_kinesis_record(&p.entry);
            let range = self.range_of(&p.shard_id).cloned();
            let records = p.entry.user_records();
            let (mut fit, mut stray_records, mut stray_members) =
                (Vec::new(), Vec::new(), Vec::new());
            for (i, (record, member)) in records.into_iter().zip(p.entry.members).enumerate() {
                let owned = range
                    .as_ref()
                    .is_some_and(|r| record.hash_key().is_ok_and(|h| r.contains(h)));
                if owned {
                    fit.push((i as u64, member));
                } else {
                    stray_records.push(record);
                    stray_members.push(member);
                }
            }
            let mut attempts = p.entry.attempts;
            if !fit.is_empty() {
                self.succeed_members(
                    fit,
                    attempts.clone(),
                    p.shard_id.clone(),
                    p.sequence_number.clone(),
                );
            }
            if stray_members.is_empty() {
                continue;
            }
            let error = AttemptError {
                code: "WrongShard".to_owned(),
                message: format!(
                    "put on {} in an aggregate, outside that shard's hash key range (the shard map was out of date)",
                    p.shard_id
                ),
            };
            self.metrics.error(&error.code);
            self.metrics.all_errors.increment(1);
            if let Some(last) = attempts.last_mut() {
                last.error = Some(error);
            }
            tracing::info!(
                stream = %self.stream,
                shard = %p.shard_id,
                records = stray_members.len(),
                "user records of an aggregate put on an unpredicted shard are sent again"
            );
            strays.push((stray_records, stray_members, attempts));
        }
        // Each reroute goes to the front of its shards' queues: the last first keeps order.
        for (records, members, attempts) in strays.into_iter().rev() {
            self.reroute_records(records, members, attempts, now, true);
        }
    }

    /// Fails a record the aggregator refused (it breaks a Kinesis limit).
    fn reject(&mut self, member: Member, e: AggregationError, attempts: Arc<[Attempt]>) {
        let reason = FailureReason::Rejected {
            code: "InvalidRecord".to_owned(),
            message: e.to_string(),
        };
        self.fail_members(vec![member], vec![e.into_record()], reason, attempts);
    }

    fn fail_entry(&mut self, entry: Entry, reason: FailureReason) {
        let records = entry.user_records();
        let attempts: Arc<[Attempt]> = Arc::from(entry.attempts);
        self.fail_members(entry.members, records, reason, attempts);
    }

    fn fail_members(
        &mut self,
        members: Vec<Member>,
        records: Vec<UserRecord>,
        reason: FailureReason,
        attempts: Arc<[Attempt]>,
    ) {
        let n = members.len();
        if matches!(reason, FailureReason::Expired) {
            self.metrics.user_record_expired.increment(n as u64);
        }
        tracing::warn!(stream = %self.stream, records = n, reason = ?reason, attempts = attempts.len(), "user records failed");
        let mut cost = 0;
        let mut records = records.into_iter();
        deliver(members.into_iter().map(|member| {
            cost += member.cost;
            let outcome = Err(Box::new(RecordFailure {
                record: records.next(),
                reason: reason.clone(),
                attempts: attempts.clone(),
            }));
            (member.reply, outcome)
        }));
        self.counters.failed.fetch_add(n as u64, Ordering::Relaxed);
        self.budget.release(n, cost);
    }

    /// On exit nothing should be left; if something is (a bug), it is failed, not dropped.
    fn fail_everything_left(&mut self) {
        let now = Instant::now();
        let mut left = Vec::new();
        let ttl = self.config.ttl();
        for shard in &mut self.shards {
            shard.close_aggregate(ttl, now);
            left.extend(shard.ready.drain(..));
        }
        for entry in left {
            tracing::error!(stream = %self.stream, "records left at producer exit");
            self.fail_entry(entry, FailureReason::ProducerStopped);
        }
    }

    /// When the task must wake up even if nothing arrives.
    fn next_wake(&mut self) -> Instant {
        let now = Instant::now();
        let linger = self.config.linger();
        let mut wake = now + Duration::from_secs(3600);
        for shard in &mut self.shards {
            if let Some(since) = shard.open_since {
                wake = wake.min(since + linger);
            }
            if let Some(front) = shard.ready.front() {
                wake = wake.min(front.deadline);
                if !shard.busy {
                    let mut at = front.not_before;
                    if let Some(t) = shard.backoff_until {
                        at = at.max(t);
                    }
                    at = at.max(now + shard.limiter.wait(now));
                    wake = wake.min(at);
                }
            }
        }
        wake
    }
}

/// The map of a stream's open shards; an error says why it is not usable (overlapping
/// ranges, or open shards that do not cover the hash key space, as during a reshard).
pub(crate) fn open_shard_map(shards: &[Shard]) -> Result<ShardMap, String> {
    let map = ShardMap::new(shards.iter().filter(|s| s.is_open()).map(|s| ShardRange {
        shard_id: s.shard_id.clone(),
        starting_hash_key: s.starting_hash_key,
        ending_hash_key: s.ending_hash_key,
    }))
    .map_err(|e| e.to_string())?;
    if !map.is_complete() {
        return Err("the open shards do not cover the hash key space".to_owned());
    }
    Ok(map)
}

/// Takes the members of a closed aggregate, leaving room for as many in the next one
/// (aggregates of one shard are much alike: no regrowing from empty each time).
fn take_keeping_capacity(open: &mut Vec<Member>) -> Vec<Member> {
    let room = open.len();
    std::mem::replace(open, Vec::with_capacity(room))
}

async fn sleep_until(at: Instant) {
    tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await;
}
