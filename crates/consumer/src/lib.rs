//! A KCL-style Kinesis consumer, compatible with KCL 2.x lease tables.
//!
//! - [`RecordProcessor`] / [`ProcessorFactory`]: the application's code, one processor per
//!   shard with the KCL lifecycle (`initialize`, `process_records`, `lease_lost`,
//!   `shard_ended`, `shutdown_requested`). Records arrive deaggregated, each with its
//!   (sequence, sub-sequence number). A failed `process_records` is retried with the
//!   same records, with back-off: records are never skipped.
//! - [`Checkpointer`]: checkpoints the last delivered record or a given position; every
//!   write is conditional on the lease counter the worker holds, and after the lease is
//!   lost it fails with [`CheckpointError::LeaseLost`].
//! - [`LeaseStore`]: the lease table, in DynamoDB ([`DynamoDbLeaseStore`], KCL 2.x
//!   attribute names and types) or in memory ([`MemoryLeaseStore`]).
//! - [`Scheduler`]: one worker: renews its leases, takes expired or released ones up to
//!   `ceil(leases / workers)`, steals at most one per round from the most loaded worker,
//!   keeps a lease per shard (a child starts only after all its parents checkpointed
//!   `SHARD_END`), and runs a task per shard until its `CancellationToken` fires. The
//!   task's fetcher is chosen in [`ConsumerConfig::fetcher`]: GetRecords polling
//!   (adaptive idle time, throttling back-off, expired-iterator recovery) or enhanced
//!   fan-out (a stream consumer registered once per application, one SubscribeToShard
//!   subscription per shard renewed from the last record received when Kinesis ends it
//!   every five minutes or it fails). Either hands its reads to the processor through one
//!   pending batch that what is read meanwhile joins (up to `max_records` and 10 MiB), so
//!   a busy processor next gets everything new at once, not one stale batch after
//!   another. On shutdown the worker checkpoints (through the processors'
//!   `shutdown_requested`) and releases its leases so another worker takes them at once.
//!
//! Better than the KCL where its users suffer: records of an aggregate that hash outside
//! the shard's range (written before a reshard) are kept and counted, not dropped; the
//! idle time between empty reads adapts; a failed batch is retried, never skipped.

mod checkpoint;
mod config;
mod handoff;
pub mod lease;
mod lineage;
pub mod metrics;
mod processor;
mod scheduler;
mod shard;

pub use checkpoint::{CheckpointError, CheckpointTracker, Checkpointer};
pub use chief_config::service::default_worker_id;
pub use config::{
    ConsumerConfig, FetcherKind, InitialPosition, OnProcessingFailure, OutOfRangeRecords,
};
pub use lease::{
    DynamoDbLeaseStore, ExtendedSequenceNumber, Lease, LeaseError, LeaseStore, MemoryLeaseStore,
};
pub use processor::{
    ConsumedRecord, DeadLetterInput, Fatal, InitializationInput, LeaseLostInput,
    ProcessRecordsInput, ProcessorError, ProcessorFactory, RecordProcessor, ShardEndedInput,
    ShutdownRequestedInput,
};
pub use scheduler::{ConsumerError, Scheduler};
