//! What the producer reports for every user record: where it landed, or why it failed,
//! with the record handed back and every attempt that was made.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
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
    /// Its time to live (`record_ttl_ms`), or the retry deadline (`retry.deadline_ms`,
    /// counted from its first attempt, when not 0), ran out before a successful attempt.
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
        Pin::new(&mut self.rx)
            .poll(cx)
            .map(|r| r.unwrap_or_else(|_| stopped()))
    }
}

/// The outcome of a record the producer task ended without reporting (a bug; it is logged).
fn stopped() -> RecordOutcome {
    Err(Box::new(RecordFailure {
        record: None,
        reason: FailureReason::ProducerStopped,
        attempts: Arc::from(Vec::new()),
    }))
}

/// Resolves to the outcomes of a batch given to [`send_batch`](crate::Producer::send_batch),
/// in the batch's order, once every record of it has one. Dropping it does not cancel the
/// records.
#[derive(Debug)]
pub struct BatchReceipt {
    outcomes: Arc<BatchOutcomes>,
    rx: oneshot::Receiver<()>,
}

impl Future for BatchReceipt {
    type Output = Vec<RecordOutcome>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // Ready also when the producer task dropped the batch's records without an outcome
        // (a bug): those then fail with `ProducerStopped`.
        Pin::new(&mut self.rx)
            .poll(cx)
            .map(|_| self.outcomes.take())
    }
}

/// The outcomes of one batch, shared by its receipt and its writer.
#[derive(Debug)]
struct BatchOutcomes {
    state: Mutex<(Vec<Option<RecordOutcome>>, usize)>,
}

impl BatchOutcomes {
    fn take(&self) -> Vec<RecordOutcome> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        std::mem::take(&mut state.0)
            .into_iter()
            .map(|o| o.unwrap_or_else(stopped))
            .collect()
    }
}

/// Where the records of one batch report their outcomes: one allocation for the batch
/// instead of a channel per record. Held only by the batch's records in the producer, so
/// that if all were dropped without an outcome (a bug), the receipt still resolves.
#[derive(Debug)]
pub(crate) struct BatchSlot {
    outcomes: Arc<BatchOutcomes>,
    done: Mutex<Option<oneshot::Sender<()>>>,
}

impl BatchSlot {
    /// A slot for `n` outcomes and the receipt that resolves when all are in.
    pub(crate) fn new(n: usize) -> (Arc<Self>, BatchReceipt) {
        let (tx, rx) = oneshot::channel();
        let outcomes = Arc::new(BatchOutcomes {
            state: Mutex::new(((0..n).map(|_| None).collect(), n)),
        });
        let done = if n == 0 {
            let _ = tx.send(());
            None
        } else {
            Some(tx)
        };
        let slot = Arc::new(Self {
            outcomes: outcomes.clone(),
            done: Mutex::new(done),
        });
        (slot, BatchReceipt { outcomes, rx })
    }

    /// Records the outcomes of some of the batch's records (by index in the batch), under
    /// one lock; the last outcome of the batch wakes the receipt.
    pub(crate) fn set(&self, outcomes: impl IntoIterator<Item = (usize, RecordOutcome)>) {
        let complete = {
            let mut state = self
                .outcomes
                .state
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let (slots, remaining) = &mut *state;
            for (index, outcome) in outcomes {
                if slots
                    .get_mut(index)
                    .is_some_and(|place| place.replace(outcome).is_none())
                {
                    *remaining -= 1;
                }
            }
            *remaining == 0
        };
        if complete
            && let Some(tx) = self
                .done
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take()
        {
            let _ = tx.send(());
        }
    }
}

/// Where one record's outcome goes: its own channel (`send`) or its place in a batch
/// (`send_batch`).
#[derive(Debug)]
pub(crate) enum Reply {
    One(oneshot::Sender<RecordOutcome>),
    Batch(Arc<BatchSlot>, usize),
}

/// Delivers outcomes to their replies, taking a batch's lock once for each run of its
/// records (the members of one aggregate mostly come from one batch).
pub(crate) fn deliver(outcomes: impl IntoIterator<Item = (Reply, RecordOutcome)>) {
    /// A batch and the outcomes of its records met in a row.
    type Run = (Arc<BatchSlot>, Vec<(usize, RecordOutcome)>);
    let mut run: Option<Run> = None;
    for (reply, outcome) in outcomes {
        match reply {
            Reply::One(tx) => {
                let _ = tx.send(outcome);
            }
            Reply::Batch(slot, index) => match &mut run {
                Some((current, items)) if Arc::ptr_eq(current, &slot) => {
                    items.push((index, outcome));
                }
                _ => {
                    if let Some((current, items)) = run.take() {
                        current.set(items);
                    }
                    run = Some((slot, vec![(index, outcome)]));
                }
            },
        }
    }
    if let Some((current, items)) = run {
        current.set(items);
    }
}
