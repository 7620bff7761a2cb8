//! Metric names (the KCL's where it has one), exported through the `metrics` facade.

/// Counter: user records handed to processors (label `stream`).
pub const RECORDS_PROCESSED: &str = "RecordsProcessed";
/// Gauge: milliseconds behind the newest record (labels `stream`, `shard_id`).
pub const MILLIS_BEHIND_LATEST: &str = "MillisBehindLatest";
/// Gauge: leases this worker holds (labels `stream`, `worker`).
pub const LEASES_HELD: &str = "LeasesHeld";
/// Counter: expired or released leases taken (label `stream`).
pub const LEASE_TAKES: &str = "LeaseTakes";
/// Counter: leases stolen from a more loaded worker (label `stream`).
pub const LEASE_STEALS: &str = "LeaseSteals";
/// Counter: leases lost to another worker (label `stream`).
pub const LEASES_LOST: &str = "LeasesLost";
/// Counter: checkpoints not written (label `reason`: `lease_lost`, `store`).
pub const CHECKPOINT_FAILURES: &str = "CheckpointFailures";
/// Counter: failed `process_records` calls, retried (label `stream`).
pub const PROCESSING_FAILURES: &str = "ProcessingFailures";
/// Counter: user records of an aggregate whose hash lies outside the shard's range
/// (written on an out-of-date shard map and sent again by the producer); skipped, or
/// delivered with `out_of_range_records = "deliver"` (label `stream`).
pub const RECORDS_OUTSIDE_SHARD_RANGE: &str = "RecordsOutsideShardRange";
/// Counter: leases of finished shards deleted once all their children started
/// (label `stream`).
pub const LEASES_CLEANED_UP: &str = "LeasesCleanedUp";
/// Counter: user records handed to the processor's dead-letter sink after their batch
/// kept failing past the processing deadline (label `stream`).
pub const DEAD_LETTERED_RECORDS: &str = "DeadLetteredRecords";
/// Counter: Kinesis records that start with the KPL magic but are not readable
/// aggregates; handed over unchanged, marked `corrupt` (label `stream`).
pub const CORRUPT_AGGREGATES: &str = "CorruptAggregates";
/// Counter: GetRecords calls that were throttled (label `stream`).
pub const GET_RECORDS_THROTTLED: &str = "GetRecordsThrottled";
/// Counter: shard iterators that expired and were renewed from the last position read.
pub const EXPIRED_ITERATORS: &str = "ExpiredIterators";
/// Counter: enhanced fan-out subscriptions opened (SubscribeToShard calls that succeeded;
/// each lasts up to five minutes) (label `stream`).
pub const SUBSCRIPTIONS: &str = "SubscribeToShardSubscriptions";
