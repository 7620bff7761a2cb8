//! The `[consumer]` config section, with the KCL's defaults where the KCL has one.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chief_config::retry::RetryPolicy;
use serde::{Deserialize, Serialize};

/// Where a shard without a checkpoint starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum InitialPosition {
    /// The oldest record of the shard.
    TrimHorizon,
    /// Records written after the consumer started.
    Latest,
    /// Records that arrived at or after `initial_timestamp_ms`.
    AtTimestamp,
}

/// How records are fetched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FetcherKind {
    /// GetRecords polling.
    Polling,
    /// Enhanced fan-out: a registered stream consumer (`consumer_name`) and one
    /// SubscribeToShard subscription per shard, renewed when Kinesis ends it (every five
    /// minutes) from the last record received.
    FanOut,
}

/// What the consumer does with a batch whose `process_records` keeps failing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnProcessingFailure {
    /// Retry the same records with back-off until they succeed: nothing is ever skipped,
    /// and a batch that fails forever holds its shard (logged and counted per attempt).
    #[default]
    Retry,
    /// Retry until `processing_retry.deadline_ms` has passed since the batch first
    /// failed, then hand it to the processor's
    /// [`dead_letter`](crate::RecordProcessor::dead_letter) and move on once that wrote
    /// it durably (if the processor has no dead-letter sink, keep retrying).
    DeadLetter,
}

/// What the consumer does with the user records of a KPL aggregate whose hash key lies
/// outside the hash key range of the shard the aggregate was read from.
///
/// They exist after a reshard: a producer aggregated them for a parent shard on an
/// out-of-date map and Kinesis put the aggregate on one child. The KPL (and chief's
/// producer) then sends those records again, to the shard that owns them, so the copy in
/// the aggregate is a duplicate read out of order with its key's other records.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutOfRangeRecords {
    /// Skip them (counted as `RecordsOutsideShardRange`, logged with the shard and the
    /// sequence number): their copy is read from the shard that owns them, in order. The
    /// KCL skips them too (it skips the whole aggregate).
    #[default]
    Drop,
    /// Deliver them: for streams written by aggregators that do not send such records
    /// again (e.g. the `kinesis-aggregation` libraries used on their own).
    Deliver,
}

/// How a consumer reads a stream and shares it with other workers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsumerConfig {
    /// The stream to read. Default `""` (must be set).
    pub stream: String,
    /// The lease table: one per application (KCL `applicationName`). Default `chief-consumer`.
    pub table: String,
    /// This worker's id; unique among the workers of the application. Default: none,
    /// meaning a random UUID per process.
    pub worker_id: Option<String>,
    /// Where shards without a checkpoint start. Default `TRIM_HORIZON`.
    pub initial_position: InitialPosition,
    /// With `AT_TIMESTAMP`: the time, in milliseconds since the epoch. Default 0.
    pub initial_timestamp_ms: u64,
    /// How records are fetched: `polling` or `fan_out`. Default `polling`.
    pub fetcher: FetcherKind,
    /// With `fan_out`: the name of the stream consumer to register (KCL uses the
    /// application name). Default: none, meaning `table`.
    pub consumer_name: Option<String>,
    /// With `fan_out`: after this long without records on a subscription, check once with
    /// GetRecords whether the shard has ended (a safety net for endpoints that do not
    /// report the end of a closed shard on the subscription, as the local emulator; real
    /// Kinesis does). 0 turns it off. Default 10,000.
    pub fan_out_end_check_ms: u64,
    /// A lease whose counter has not moved for this long is expired and may be taken
    /// (KCL `failoverTimeMillis`). Default 10,000.
    pub failover_time_ms: u64,
    /// How often held leases are renewed, in milliseconds. Default 0, meaning
    /// `failover_time_ms / 3` as KCL.
    pub lease_renewal_interval_ms: u64,
    /// The longest one lease renewal call may take, in milliseconds; a call still
    /// unanswered then counts as failed (the lease is lost only after `failover_time_ms`
    /// without a successful renewal). Renewals run on their own, concurrently, never
    /// behind a shard sync, a Scan or a parent check. Default 0, meaning half the
    /// renewal interval.
    pub lease_call_timeout_ms: u64,
    /// How often the worker looks for leases to take (expired, released, or one to steal),
    /// in milliseconds. Default 0, meaning `2 × failover_time_ms` as KCL.
    pub lease_taking_interval_ms: u64,
    /// How often the worker looks for released leases (those a worker gave up on a
    /// graceful stop, or at a shard's end) to claim them, in milliseconds: each look is
    /// one Scan of the lease table (eventually consistent reads of every row; with 2,000
    /// leases about 75 read units), so a fleet of many workers on a large table may want
    /// it slower. Default 0, meaning 1 s or the renewal interval if shorter: released
    /// leases are taken within about a second at the defaults.
    pub lease_claim_interval_ms: u64,
    /// Most leases one worker holds. Default 0, meaning no limit.
    pub max_leases_per_worker: usize,
    /// How often shards and leases are synchronised, in milliseconds (also done when a
    /// shard ends). Default 60,000.
    pub shard_sync_interval_ms: u64,
    /// Most records per GetRecords call (KCL `maxRecords`). Default 10,000.
    pub max_records: u32,
    /// Shortest time between two GetRecords calls of a shard, in milliseconds (Kinesis
    /// allows 5 calls/s per shard). Default 200.
    pub poll_interval_ms: u64,
    /// Longest wait after empty reads: the wait doubles from `poll_interval_ms` up to
    /// this (adaptive idle time; KCL waits a fixed 1,500). Default 1,000.
    pub idle_time_max_ms: u64,
    /// Call `process_records` for empty reads too (KCL
    /// `callProcessRecordsEvenForEmptyRecordList`), so that a processor buffering by age
    /// gets a chance to flush and checkpoint while its shard is quiet (at least every
    /// `idle_time_max_ms`). Default false.
    pub deliver_empty_batches: bool,
    /// Back-off of GetRecords and GetShardIterator after throttling or a failed call.
    pub fetch_retry: RetryPolicy,
    /// Back-off between attempts of a `process_records` call that failed (the same records
    /// are retried); with `on_processing_failure = "dead_letter"`, its `deadline_ms` is
    /// how long a batch is retried before it is dead-lettered.
    pub processing_retry: RetryPolicy,
    /// Delete the lease of a finished shard (`SHARD_END`) once all its children have
    /// started, as KCL does; a deleted parent is never created or read again (shard sync
    /// skips a closed shard with a descendant lease). Default true.
    pub cleanup_leases: bool,
    /// `retry` (default: never skip a record) or `dead_letter` (after
    /// `processing_retry.deadline_ms`, the processor's dead-letter sink takes the batch).
    pub on_processing_failure: OnProcessingFailure,
    /// `drop` (default) or `deliver` the user records of an aggregate that hash outside
    /// the shard it was read from; see [`OutOfRangeRecords`].
    pub out_of_range_records: OutOfRangeRecords,
    /// Readiness (`/readyz`, with [`Scheduler::with_health`](crate::Scheduler::with_health)):
    /// a shard whose `process_records` has kept failing this long makes the worker not
    /// ready (its sink is down; the records are kept and retried). Default 60,000.
    pub unready_after_failing_ms: u64,
    /// Readiness: a shard more than this far behind the tip (`MillisBehindLatest`) makes
    /// the worker not ready; 0 turns the check off. Default 600,000 (10 minutes).
    pub unready_millis_behind: u64,
    /// Back-off of lease table calls that failed.
    pub lease_retry: RetryPolicy,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        Self {
            stream: String::new(),
            table: "chief-consumer".to_owned(),
            worker_id: None,
            initial_position: InitialPosition::TrimHorizon,
            initial_timestamp_ms: 0,
            fetcher: FetcherKind::Polling,
            consumer_name: None,
            fan_out_end_check_ms: 10_000,
            failover_time_ms: 10_000,
            lease_renewal_interval_ms: 0,
            lease_call_timeout_ms: 0,
            lease_taking_interval_ms: 0,
            lease_claim_interval_ms: 0,
            max_leases_per_worker: 0,
            shard_sync_interval_ms: 60_000,
            max_records: 10_000,
            poll_interval_ms: 200,
            idle_time_max_ms: 1_000,
            deliver_empty_batches: false,
            fetch_retry: RetryPolicy {
                initial_backoff_ms: 200,
                max_backoff_ms: 5_000,
                ..RetryPolicy::default()
            },
            on_processing_failure: OnProcessingFailure::Retry,
            out_of_range_records: OutOfRangeRecords::Drop,
            unready_after_failing_ms: 60_000,
            unready_millis_behind: 600_000,
            cleanup_leases: true,
            processing_retry: RetryPolicy {
                initial_backoff_ms: 100,
                max_backoff_ms: 10_000,
                ..RetryPolicy::default()
            },
            lease_retry: RetryPolicy::default(),
        }
    }
}

impl ConsumerConfig {
    /// `failover_time_ms` as a duration.
    pub fn failover(&self) -> Duration {
        Duration::from_millis(self.failover_time_ms)
    }

    /// The renewal interval (`failover / 3` unless set).
    pub fn renewal_interval(&self) -> Duration {
        match self.lease_renewal_interval_ms {
            0 => self.failover() / 3,
            ms => Duration::from_millis(ms),
        }
    }

    /// The time one renewal call may take (half the renewal interval unless set).
    pub fn lease_call_timeout(&self) -> Duration {
        match self.lease_call_timeout_ms {
            0 => self.renewal_interval() / 2,
            ms => Duration::from_millis(ms),
        }
    }

    /// How often released leases are claimed (`min(1 s, renewal interval)` unless set).
    pub fn claim_interval(&self) -> Duration {
        match self.lease_claim_interval_ms {
            0 => self.renewal_interval().min(Duration::from_secs(1)),
            ms => Duration::from_millis(ms),
        }
    }

    /// The lease taking interval (`2 × failover` unless set).
    pub fn taking_interval(&self) -> Duration {
        match self.lease_taking_interval_ms {
            0 => self.failover() * 2,
            ms => Duration::from_millis(ms),
        }
    }

    /// The enhanced fan-out consumer name (`consumer_name`, else the lease table's name).
    pub fn fan_out_consumer_name(&self) -> &str {
        self.consumer_name.as_deref().unwrap_or(&self.table)
    }

    /// `shard_sync_interval_ms` as a duration.
    pub fn shard_sync_interval(&self) -> Duration {
        Duration::from_millis(self.shard_sync_interval_ms)
    }

    /// `initial_timestamp_ms` as a time.
    pub fn initial_timestamp(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.initial_timestamp_ms)
    }

    /// Checks the values.
    pub fn validate(&self) -> Result<(), String> {
        if self.stream.is_empty() {
            return Err("consumer.stream is not set".into());
        }
        if self.table.is_empty() {
            return Err("consumer.table is not set".into());
        }
        if !(1..=10_000).contains(&self.max_records) {
            return Err(format!("max_records {} not in 1..=10000", self.max_records));
        }
        if self.failover_time_ms < 100 {
            return Err(format!(
                "failover_time_ms {} is below 100",
                self.failover_time_ms
            ));
        }
        if let Some(name) = &self.consumer_name {
            let valid = name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
            if name.is_empty() || name.len() > 128 || !valid {
                return Err(format!(
                    "consumer_name {name:?} must be 1..=128 characters of a-z, A-Z, 0-9, _ . -"
                ));
            }
        }
        if self.on_processing_failure == OnProcessingFailure::DeadLetter
            && self.processing_retry.deadline_ms == 0
        {
            return Err("on_processing_failure = \"dead_letter\" needs processing_retry.deadline_ms > 0 (how long a batch is retried first)".into());
        }
        if self.renewal_interval() >= self.failover() {
            return Err("the lease renewal interval must be shorter than the failover time".into());
        }
        Ok(())
    }
}
