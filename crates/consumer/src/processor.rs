//! What the application implements: a [`RecordProcessor`] per shard, made by a
//! [`ProcessorFactory`], with the KCL lifecycle.

use std::future::Future;
use std::time::SystemTime;

use bytes::Bytes;

use crate::checkpoint::Checkpointer;
use crate::lease::ExtendedSequenceNumber;

/// The error a processor returns; the consumer logs it and retries.
pub type ProcessorError = Box<dyn std::error::Error + Send + Sync>;

/// A processor error no retry can fix (a sink refuses the credentials, a bucket is gone):
/// returned from `process_records` as `Err(Fatal::new(e).into())`, it stops the worker
/// instead of retrying the batch. The batch is not checkpointed; the other shards stop
/// gracefully (flush, checkpoint what their sinks hold, release their leases) and
/// [`Scheduler::run`](crate::Scheduler::run) returns [`ConsumerError::Fatal`](crate::ConsumerError::Fatal)
/// so that the binary exits non-zero and its supervisor sees it.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Fatal(pub ProcessorError);

impl Fatal {
    /// Marks `error` fatal.
    pub fn new(error: impl Into<ProcessorError>) -> Self {
        Self(error.into())
    }

    /// `error` as the consumer sees it: retried when `retryable`, else [`Fatal`] (a sink
    /// error no retry can fix: credentials refused, bucket or table gone).
    pub fn unless_retryable(error: impl Into<ProcessorError>, retryable: bool) -> ProcessorError {
        if retryable {
            error.into()
        } else {
            Self::new(error).into()
        }
    }
}

/// One user record, deaggregated, with its identity (sequence, sub-sequence number).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumedRecord {
    /// The Kinesis record's sequence number.
    pub sequence_number: String,
    /// Position in its aggregate (0 for a plain record).
    pub sub_sequence_number: u64,
    /// Whether it came out of a KPL aggregate.
    pub aggregated: bool,
    /// The user record's partition key.
    pub partition_key: String,
    /// The user record's explicit hash key, if the producer set one.
    pub explicit_hash_key: Option<String>,
    /// The payload.
    pub data: Bytes,
    /// When Kinesis took the Kinesis record.
    pub approximate_arrival: Option<SystemTime>,
    /// Set when the Kinesis record starts with the KPL magic but is not a readable
    /// aggregate (bad MD5, bad protobuf…): why. Such a record is handed over unchanged as
    /// one user record, as the KCL does, so that the processor can dead-letter it; the
    /// consumer counts it (`CorruptAggregates`) and logs it with its shard and sequence
    /// number.
    pub corrupt: Option<String>,
}

impl ConsumedRecord {
    /// The checkpoint that covers this record and everything before it in the shard.
    pub fn position(&self) -> ExtendedSequenceNumber {
        ExtendedSequenceNumber::new(self.sequence_number.clone(), self.sub_sequence_number)
    }
}

/// Given to [`RecordProcessor::initialize`].
#[derive(Debug)]
#[non_exhaustive]
pub struct InitializationInput<'a> {
    /// The shard.
    pub shard_id: &'a str,
    /// Where processing resumes (a checkpoint or a sentinel).
    pub checkpoint: &'a ExtendedSequenceNumber,
    /// A pending checkpoint a previous owner prepared and never completed
    /// ([`Checkpointer::prepare_checkpoint_at`]): the records after `checkpoint` up to it
    /// may already be in the sink.
    pub pending_checkpoint: Option<&'a ExtendedSequenceNumber>,
}

/// Given to [`RecordProcessor::process_records`].
#[derive(Debug)]
#[non_exhaustive]
pub struct ProcessRecordsInput<'a> {
    /// The shard.
    pub shard_id: &'a str,
    /// The user records, in shard order.
    pub records: &'a [ConsumedRecord],
    /// How far the batch is behind the shard's newest record.
    pub millis_behind_latest: Option<u64>,
    /// Checkpoints the shard; [`Checkpointer::checkpoint`] covers all of `records`.
    pub checkpointer: &'a Checkpointer,
}

/// Given to [`RecordProcessor::dead_letter`]: a batch whose `process_records` kept failing
/// past `processing_retry.deadline_ms` (with `on_processing_failure = "dead_letter"`).
#[derive(Debug)]
#[non_exhaustive]
pub struct DeadLetterInput<'a> {
    /// The shard.
    pub shard_id: &'a str,
    /// The records of the batch, in shard order.
    pub records: &'a [ConsumedRecord],
    /// The last error `process_records` returned.
    pub error: &'a str,
    /// How many times `process_records` was called with them.
    pub attempts: u32,
}

/// Given to [`RecordProcessor::lease_lost`]: another worker has the shard now; do not
/// checkpoint (it would be refused).
#[derive(Debug)]
#[non_exhaustive]
pub struct LeaseLostInput<'a> {
    /// The shard.
    pub shard_id: &'a str,
}

/// Given to [`RecordProcessor::shard_ended`]: every record of the (closed) shard was
/// delivered; the processor must call [`Checkpointer::checkpoint`], which writes
/// `SHARD_END`, so that the children can start.
#[derive(Debug)]
#[non_exhaustive]
pub struct ShardEndedInput<'a> {
    /// The shard.
    pub shard_id: &'a str,
    /// Checkpoints `SHARD_END`.
    pub checkpointer: &'a Checkpointer,
}

/// Given to [`RecordProcessor::shutdown_requested`]: the worker is stopping; the
/// processor should flush and checkpoint what it has confirmed.
#[derive(Debug)]
#[non_exhaustive]
pub struct ShutdownRequestedInput<'a> {
    /// The shard.
    pub shard_id: &'a str,
    /// Checkpoints the shard.
    pub checkpointer: &'a Checkpointer,
}

/// Processes the records of one shard, KCL-style. One instance per shard lease, called
/// from one task: `initialize`, then `process_records` for each batch, then exactly one
/// of `lease_lost`, `shard_ended` or `shutdown_requested`.
pub trait RecordProcessor: Send + 'static {
    /// Called once before the first batch.
    fn initialize(
        &mut self,
        input: InitializationInput<'_>,
    ) -> impl Future<Output = Result<(), ProcessorError>> + Send {
        let _ = input;
        async { Ok(()) }
    }

    /// Processes a batch. An error makes the consumer retry the same records with
    /// back-off, never skipping them.
    fn process_records(
        &mut self,
        input: ProcessRecordsInput<'_>,
    ) -> impl Future<Output = Result<(), ProcessorError>> + Send;

    /// With `on_processing_failure = "dead_letter"`: writes a batch that kept failing to
    /// the application's dead-letter sink, durably, before it returns `Ok`; the consumer
    /// then moves on (the batch counts as delivered, so a later checkpoint covers it).
    /// Default: no dead-letter sink (an error), so the batch keeps being retried.
    fn dead_letter(
        &mut self,
        input: DeadLetterInput<'_>,
    ) -> impl Future<Output = Result<(), ProcessorError>> + Send {
        let shard_id = input.shard_id.to_owned();
        async move { Err(format!("this processor has no dead-letter sink (shard {shard_id})").into()) }
    }

    /// The lease went to another worker; checkpointing is no longer possible.
    fn lease_lost(&mut self, input: LeaseLostInput<'_>) -> impl Future<Output = ()> + Send {
        let _ = input;
        async {}
    }

    /// The shard is closed and fully delivered; must checkpoint (it is called again,
    /// with back-off, until it has).
    fn shard_ended(
        &mut self,
        input: ShardEndedInput<'_>,
    ) -> impl Future<Output = Result<(), ProcessorError>> + Send;

    /// The worker is shutting down; checkpoint what was confirmed. Default: nothing.
    fn shutdown_requested(
        &mut self,
        input: ShutdownRequestedInput<'_>,
    ) -> impl Future<Output = Result<(), ProcessorError>> + Send {
        let _ = input;
        async { Ok(()) }
    }
}

/// Makes a processor for each shard a worker starts processing.
pub trait ProcessorFactory: Send + Sync + 'static {
    /// The processor type.
    type Processor: RecordProcessor;

    /// A processor for `shard_id`.
    fn create(&self, shard_id: &str) -> Self::Processor;
}
