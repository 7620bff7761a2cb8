//! What the producer reports for every user record: where it landed, or why it failed,
//! with the record handed back and every attempt that was made.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use chief_aggregation::UserRecord;
use tokio::sync::oneshot;

/// One PutRecords attempt of the Kinesis record that carried a user record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// When the call started.
    pub started: SystemTime,
    /// Time between the record becoming ready (or the previous attempt's end) and this start:
    /// buffering, rate limiting and back-off.
    pub delay: Duration,
    /// How long the call took.
    pub duration: Duration,
    /// `None` on success, else the error Kinesis (or the transport) gave.
    pub error: Option<AttemptError>,
}

impl Attempt {
    /// Whether this attempt put the record.
    pub fn is_success(&self) -> bool {
        self.error.is_none()
    }
}

/// Why an attempt failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptError {
    /// `ProvisionedThroughputExceededException`, `InternalFailure`, `Timeout`, `Transport`…
    pub code: String,
    /// The message that came with it.
    pub message: String,
}

/// A user record in Kinesis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordSuccess {
    /// The shard that holds it.
    pub shard_id: Arc<str>,
    /// Sequence number of the Kinesis record carrying it.
    pub sequence_number: Arc<str>,
    /// Its position in that Kinesis record's aggregate (0 for a plain record): together
    /// with the sequence number, its identity in the stream (what KCL checkpoints).
    pub sub_sequence_number: u64,
    /// Every attempt, the last one successful.
    pub attempts: Arc<[Attempt]>,
}

/// Why a user record was not put.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FailureReason {
    /// Its time to live (`record_ttl_ms`) ran out before a successful attempt.
    Expired,
    /// Kinesis refused it for good (for example the stream does not exist).
    Rejected {
        /// The error code.
        code: String,
        /// The message.
        message: String,
    },
    /// The shard throttled it and `fail_if_throttled` is set.
    Throttled,
    /// The producer task ended without an outcome for it (a bug; it is logged).
    ProducerStopped,
}

/// A user record that did not make it, handed back with its attempts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordFailure {
    /// The record, exactly as sent. `None` only for [`FailureReason::ProducerStopped`].
    pub record: Option<UserRecord>,
    /// Why it failed.
    pub reason: FailureReason,
    /// Every attempt made (possibly none).
    pub attempts: Arc<[Attempt]>,
}

/// The outcome of one user record (the failure is boxed: it carries the record).
pub type RecordOutcome = Result<RecordSuccess, Box<RecordFailure>>;

/// Resolves to the outcome of one sent user record. Dropping it does not cancel the record.
#[derive(Debug)]
pub struct RecordReceipt {
    pub(crate) rx: oneshot::Receiver<RecordOutcome>,
}

impl Future for RecordReceipt {
    type Output = RecordOutcome;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.rx).poll(cx).map(|r| {
            r.unwrap_or_else(|_| {
                Err(Box::new(RecordFailure {
                    record: None,
                    reason: FailureReason::ProducerStopped,
                    attempts: Arc::from(Vec::new()),
                }))
            })
        })
    }
}
