//! What the page shows, and the numbered events that keep every browser up to date.
//!
//! Every batch a shard's processor hands over becomes at most one event: the totals
//! after it, the new unique orders it brought (for the page's latest orders), the job
//! results by status and the shard's lag. Events are numbered consecutively from the
//! process's start time in milliseconds × 1,000 (so a number from an earlier run of the
//! process is never taken for one of this run); the last `history` of them are kept, so
//! that a browser that reconnects with `Last-Event-ID` is sent exactly the events it
//! missed — or, if they are no longer kept or from another run, a snapshot.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use chief_consumer::ConsumedRecord;
use chief_pipeline::dedup::{DedupConfig, DedupWindow};
use chief_pipeline::model::{JobResult, Order};
use serde::Serialize;
use tokio::sync::broadcast;

use crate::metrics as m;

/// Which stream a record came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// `OrdersStream`.
    Orders,
    /// `JobResultsStream`.
    JobResults,
}

impl Source {
    /// Its name in events and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Orders => "orders",
            Self::JobResults => "jobresults",
        }
    }
}

/// The counters the page shows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    /// Unique orders so far.
    pub orders: u64,
    /// Unique job results so far.
    pub jobresults: u64,
    /// Sum of the unique orders' totals, in cents.
    pub revenue_cents: u64,
    /// Records dropped as duplicates (both streams).
    pub duplicates: u64,
    /// Records that did not parse (both streams).
    pub bad: u64,
    /// Unique job results by status (`completed`, `failed`, `cancelled`).
    pub statuses: BTreeMap<String, u64>,
}

/// One of the latest orders.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LatestOrder {
    /// Its id.
    pub orderid: String,
    /// Its factory.
    pub factoryid: String,
    /// Who placed it.
    pub userid: String,
    /// Its total in cents.
    pub total_cents: u64,
    /// When it was placed (RFC 3339).
    pub timestamp: String,
}

/// A shard as the page shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ShardView {
    /// Its stream.
    pub source: Source,
    /// Its id.
    pub shard_id: String,
    /// The worker holding its lease (this instance while it reads it).
    pub owner: Option<String>,
    /// How far its last batch was behind the shard's newest record.
    pub millis_behind_latest: Option<u64>,
    /// Records read from it.
    pub records: u64,
}

/// The last bad record seen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BadRecord {
    /// Its stream.
    pub source: Source,
    /// Its shard.
    pub shard_id: String,
    /// Why it does not parse.
    pub error: String,
}

/// What one event says.
#[derive(Debug, Clone, Serialize)]
pub struct Update {
    /// The event's number.
    pub id: u64,
    /// The counters after it.
    pub totals: Totals,
    /// Unique orders it brought, newest last (at most `latest`).
    pub new_orders: Vec<LatestOrder>,
    /// Shards it changed.
    pub shards: Vec<ShardView>,
    /// A bad record it brought.
    pub bad_record: Option<BadRecord>,
    /// Milliseconds since the epoch when it was made.
    pub at_ms: u64,
}

/// The whole state, as `GET /api/summary` and the first event of a new browser.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// The last event it includes.
    pub id: u64,
    /// The counters.
    pub totals: Totals,
    /// The latest orders, newest last.
    pub latest: Vec<LatestOrder>,
    /// Every shard read.
    pub shards: Vec<ShardView>,
    /// The last bad record.
    pub bad_record: Option<BadRecord>,
    /// The worker id of this instance.
    pub worker_id: String,
    /// Milliseconds since the epoch.
    pub at_ms: u64,
}

/// An event as sent: its number and its JSON.
#[derive(Debug, Clone)]
pub struct Event {
    /// Its number (`id:` of the SSE event).
    pub id: u64,
    /// The [`Update`] as JSON.
    pub data: Arc<str>,
}

/// What a browser connecting with (or without) `Last-Event-ID` is sent first.
#[derive(Debug)]
pub enum Start {
    /// The events after its last one, all still kept.
    Replay(Vec<Event>),
    /// The whole state (new browser, or its events are no longer kept).
    Snapshot(Summary),
}

struct Inner {
    first_id: u64,
    next_id: u64,
    totals: Totals,
    latest: VecDeque<LatestOrder>,
    shards: BTreeMap<(Source, String), ShardView>,
    orders_seen: DedupWindow,
    jobs_seen: DedupWindow,
    history: VecDeque<Event>,
    bad_record: Option<BadRecord>,
    /// Lag-only updates are sent at most once a second per shard.
    lag_sent: BTreeMap<(Source, String), Instant>,
}

/// The dashboard's state, shared by the shard processors and the HTTP server.
pub struct Board {
    inner: Mutex<Inner>,
    events: broadcast::Sender<Event>,
    latest: usize,
    history: usize,
    worker_id: String,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Board {
    /// An empty board: `latest` orders shown, `history` events kept for reconnecting
    /// browsers, `client_queue` events queued per browser before it is told to reload.
    pub fn new(
        dedup: &DedupConfig,
        latest: usize,
        history: usize,
        client_queue: usize,
        worker_id: &str,
    ) -> Self {
        let (events, _) = broadcast::channel(client_queue.max(1));
        let first_id = now_ms().saturating_mul(1_000).max(1);
        Self {
            inner: Mutex::new(Inner {
                first_id,
                next_id: first_id,
                totals: Totals::default(),
                latest: VecDeque::new(),
                shards: BTreeMap::new(),
                orders_seen: DedupWindow::new(dedup, "chief-dashboard"),
                jobs_seen: DedupWindow::new(dedup, "chief-dashboard"),
                history: VecDeque::new(),
                bad_record: None,
                lag_sent: BTreeMap::new(),
            }),
            events,
            latest: latest.max(1),
            history: history.max(1),
            worker_id: worker_id.to_owned(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes one batch of a shard: de-duplicates, counts, and sends the event it makes.
    pub fn apply(
        &self,
        source: Source,
        shard_id: &str,
        millis_behind_latest: Option<u64>,
        records: &[ConsumedRecord],
    ) {
        let now = Instant::now();
        let mut inner = self.lock();
        let mut new_orders = Vec::new();
        let mut changed = false;
        let mut bad_record = None;
        for record in records {
            let outcome = match source {
                Source::Orders => Order::parse(&record.data).map(|order| {
                    if inner.orders_seen.check(&order.orderid, now).is_duplicate() {
                        return false;
                    }
                    let total = order.total_cents().unwrap_or(u64::MAX);
                    inner.totals.orders += 1;
                    inner.totals.revenue_cents = inner.totals.revenue_cents.saturating_add(total);
                    new_orders.push(LatestOrder {
                        orderid: order.orderid.as_str().to_owned(),
                        factoryid: order.factoryid.clone(),
                        userid: order.user.userid.clone(),
                        total_cents: total,
                        timestamp: order.timestamp.datetime().to_rfc3339(),
                    });
                    true
                }),
                Source::JobResults => JobResult::parse(&record.data).map(|job| {
                    if inner.jobs_seen.check(&job.orderid, now).is_duplicate() {
                        return false;
                    }
                    inner.totals.jobresults += 1;
                    *inner
                        .totals
                        .statuses
                        .entry(job.jobstatus.as_str().to_owned())
                        .or_default() += 1;
                    true
                }),
            };
            changed = true;
            match outcome {
                Ok(true) => {
                    metrics::counter!(m::UNIQUE_RECORDS, m::SOURCE => source.as_str()).increment(1)
                }
                Ok(false) => {
                    inner.totals.duplicates += 1;
                    metrics::counter!(m::DUPLICATES, m::SOURCE => source.as_str()).increment(1);
                }
                Err(e) => {
                    inner.totals.bad += 1;
                    metrics::counter!(m::BAD_RECORDS, m::SOURCE => source.as_str()).increment(1);
                    tracing::warn!(source = source.as_str(), shard_id, sequence_number = %record.sequence_number, error = %e, "record does not parse; counted and shown");
                    bad_record = Some(BadRecord {
                        source,
                        shard_id: shard_id.to_owned(),
                        error: e.to_string(),
                    });
                }
            }
        }
        let key = (source, shard_id.to_owned());
        let view = inner
            .shards
            .entry(key.clone())
            .or_insert_with(|| ShardView {
                source,
                shard_id: shard_id.to_owned(),
                owner: Some(self.worker_id.clone()),
                millis_behind_latest: None,
                records: 0,
            });
        view.records += records.len() as u64;
        let lag_changed = view.millis_behind_latest != millis_behind_latest;
        view.millis_behind_latest = millis_behind_latest;
        view.owner = Some(self.worker_id.clone());
        let view = view.clone();
        if let Some(lag) = millis_behind_latest {
            metrics::gauge!(m::MILLIS_BEHIND_LATEST, m::SOURCE => source.as_str(), "shard_id" => shard_id.to_owned())
                .set(lag as f64);
        }
        if !changed {
            // A lag-only update: at most once a second per shard.
            let due = inner
                .lag_sent
                .get(&key)
                .is_none_or(|t| t.elapsed() >= Duration::from_secs(1));
            if !(lag_changed && due) {
                return;
            }
        }
        inner.lag_sent.insert(key, now);
        if new_orders.len() > self.latest {
            new_orders.drain(..new_orders.len() - self.latest);
        }
        for order in &new_orders {
            inner.latest.push_back(order.clone());
        }
        while inner.latest.len() > self.latest {
            inner.latest.pop_front();
        }
        if bad_record.is_some() {
            inner.bad_record.clone_from(&bad_record);
        }
        self.publish(&mut inner, new_orders, vec![view], bad_record);
    }

    /// The shard is no longer read by this instance (lease lost, shard ended, stop).
    pub fn release(&self, source: Source, shard_id: &str) {
        let mut inner = self.lock();
        let Some(view) = inner.shards.get_mut(&(source, shard_id.to_owned())) else {
            return;
        };
        view.owner = None;
        let view = view.clone();
        self.publish(&mut inner, Vec::new(), vec![view], None);
    }

    fn publish(
        &self,
        inner: &mut Inner,
        new_orders: Vec<LatestOrder>,
        shards: Vec<ShardView>,
        bad_record: Option<BadRecord>,
    ) {
        let id = inner.next_id;
        inner.next_id += 1;
        let update = Update {
            id,
            totals: inner.totals.clone(),
            new_orders,
            shards,
            bad_record,
            at_ms: now_ms(),
        };
        let data: Arc<str> = match serde_json::to_string(&update) {
            Ok(text) => text.into(),
            Err(e) => {
                tracing::error!(error = %e, "an update does not serialise");
                return;
            }
        };
        let event = Event { id, data };
        inner.history.push_back(event.clone());
        while inner.history.len() > self.history {
            inner.history.pop_front();
        }
        // No browser connected: nobody to tell.
        let _ = self.events.send(event);
        metrics::gauge!(m::LAST_EVENT_ID).set(id as f64);
    }

    /// The whole state.
    pub fn summary(&self) -> Summary {
        let inner = self.lock();
        Self::summary_of(&inner, &self.worker_id)
    }

    fn summary_of(inner: &Inner, worker_id: &str) -> Summary {
        Summary {
            id: inner.next_id - 1,
            totals: inner.totals.clone(),
            latest: inner.latest.iter().cloned().collect(),
            shards: inner.shards.values().cloned().collect(),
            bad_record: inner.bad_record.clone(),
            worker_id: worker_id.to_owned(),
            at_ms: now_ms(),
        }
    }

    /// A new browser's first events and its live feed, taken together so that nothing
    /// falls between them: with `last_event_id`, the kept events after it (if they are
    /// all still kept), else a snapshot.
    pub fn subscribe(&self, last_event_id: Option<u64>) -> (Start, broadcast::Receiver<Event>) {
        let inner = self.lock();
        let rx = self.events.subscribe();
        let last = inner.next_id - 1;
        let start = match last_event_id {
            Some(seen) if seen <= last && seen + 1 >= inner.first_id => {
                let oldest = inner.history.front().map_or(last + 1, |e| e.id);
                if seen + 1 >= oldest {
                    Start::Replay(
                        inner
                            .history
                            .iter()
                            .filter(|e| e.id > seen)
                            .cloned()
                            .collect(),
                    )
                } else {
                    Start::Snapshot(Self::summary_of(&inner, &self.worker_id))
                }
            }
            // New, or from before this process started (its numbers began again).
            _ => Start::Snapshot(Self::summary_of(&inner, &self.worker_id)),
        };
        (start, rx)
    }
}
