//! A flow's destination, Kinesis or Firehose, behind one interface: a record in, a
//! receipt out that resolves once the destination took it, or why not.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use chief_aggregation::UserRecord;
use chief_producer::{BatchReceipt, Producer, RecordOutcome, RecordReceipt};

use crate::config::KINESIS_MAX_RECORD;
use crate::firehose::{FirehoseReceipt, FirehoseSender};

/// Why a record was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct SendFailure {
    /// Sending again cannot help (the stream is gone, access is refused).
    pub fatal: bool,
    /// The destination's code and message.
    pub reason: String,
    /// The record, handed back to be sent again (none if the destination lost it).
    pub record: Option<UserRecord>,
}

impl SendFailure {
    fn lost(fatal: bool, reason: impl Into<String>) -> Self {
        Self {
            fatal,
            reason: reason.into(),
            record: None,
        }
    }
}

/// Where a flow sends: a Kinesis stream through chief's producer, or a Firehose
/// delivery stream.
#[derive(Debug, Clone)]
pub enum Sender {
    /// Kinesis.
    Kinesis(Arc<Producer>),
    /// Firehose.
    Firehose(Arc<FirehoseSender>),
}

/// A record's outcome.
#[derive(Debug)]
pub enum Receipt {
    /// From the producer.
    Kinesis(RecordReceipt),
    /// The `index`th record of a batch handed to the producer at once.
    KinesisBatch(Arc<Mutex<SharedBatch>>, usize),
    /// From the Firehose sender.
    Firehose(FirehoseReceipt),
}

/// The outcomes of a batch, shared by its records' receipts.
#[derive(Debug)]
pub struct SharedBatch {
    receipt: Option<BatchReceipt>,
    outcomes: Vec<Option<RecordOutcome>>,
}

fn kinesis_outcome(outcome: RecordOutcome) -> Result<(), SendFailure> {
    outcome.map(|_| ()).map_err(|failure| {
        let failure = *failure;
        let (fatal, reason) = match &failure.reason {
            chief_producer::FailureReason::Rejected { code, message } => (
                chief_stream::is_fatal_code(code),
                format!("{code}: {message}"),
            ),
            other => (false, format!("{other:?}")),
        };
        SendFailure {
            fatal,
            reason,
            record: failure.record,
        }
    })
}

impl Future for Receipt {
    type Output = Result<(), SendFailure>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            Self::Kinesis(receipt) => Pin::new(receipt).poll(cx).map(kinesis_outcome),
            Self::KinesisBatch(shared, index) => {
                let mut shared = shared.lock().unwrap_or_else(PoisonError::into_inner);
                if let Some(receipt) = shared.receipt.as_mut() {
                    match Pin::new(receipt).poll(cx) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(outcomes) => {
                            shared.outcomes = outcomes.into_iter().map(Some).collect();
                            shared.receipt = None;
                        }
                    }
                }
                Poll::Ready(
                    match shared.outcomes.get_mut(*index).and_then(Option::take) {
                        Some(outcome) => kinesis_outcome(outcome),
                        None => Err(SendFailure::lost(
                            false,
                            "the producer gave no outcome for the record",
                        )),
                    },
                )
            }
            Self::Firehose(receipt) => Pin::new(receipt).poll(cx).map(|outcome| match outcome {
                Ok(Ok(())) => Ok(()),
                Ok(Err(failed)) => Err(SendFailure {
                    fatal: failed.failure.fatal,
                    reason: failed.failure.to_string(),
                    record: Some(UserRecord {
                        partition_key: String::new(),
                        explicit_hash_key: None,
                        data: failed.data,
                    }),
                }),
                Err(_) => Err(SendFailure::lost(
                    false,
                    "the Firehose sender dropped the record",
                )),
            }),
        }
    }
}

impl Sender {
    /// Hands `record` to the destination.
    ///
    /// # Errors
    /// The destination refuses it for good.
    pub async fn send(&self, record: UserRecord) -> Result<Receipt, SendFailure> {
        match self {
            Self::Kinesis(producer) => producer
                .send(record)
                .await
                .map(Receipt::Kinesis)
                .map_err(|e| SendFailure::lost(true, e.to_string())),
            Self::Firehose(sender) => sender
                .send(record.data)
                .await
                .map(Receipt::Firehose)
                .map_err(|e| SendFailure::lost(true, e.to_string())),
        }
    }

    /// Hands `records` to the destination at once (cheaper per record than [`send`]):
    /// a receipt per record, in order.
    ///
    /// # Errors
    /// The destination refuses them for good.
    ///
    /// [`send`]: Sender::send
    pub async fn send_batch(&self, records: Vec<UserRecord>) -> Result<Vec<Receipt>, SendFailure> {
        let n = records.len();
        match self {
            Self::Kinesis(producer) => match producer.send_batch(records).await {
                Ok(receipt) => {
                    let shared = Arc::new(Mutex::new(SharedBatch {
                        receipt: Some(receipt),
                        outcomes: Vec::new(),
                    }));
                    Ok((0..n)
                        .map(|i| Receipt::KinesisBatch(shared.clone(), i))
                        .collect())
                }
                // More than the producer's whole buffer: one at a time.
                Err(e @ chief_producer::BatchSendError::LargerThanBuffer { .. }) => {
                    let mut receipts = Vec::with_capacity(n);
                    for record in e.into_records() {
                        receipts.push(self.send(record).await?);
                    }
                    Ok(receipts)
                }
                Err(e) => Err(SendFailure::lost(true, e.to_string())),
            },
            Self::Firehose(_) => {
                let mut receipts = Vec::with_capacity(n);
                for record in records {
                    receipts.push(self.send(record).await?);
                }
                Ok(receipts)
            }
        }
    }

    /// Sends what is buffered now.
    pub async fn flush(&self) {
        match self {
            Self::Kinesis(producer) => producer.flush().await,
            Self::Firehose(sender) => sender.flush().await,
        }
    }

    /// Whether records need a partition key (Firehose has none).
    pub fn keyed(&self) -> bool {
        matches!(self, Self::Kinesis(_))
    }

    /// The largest record, with a partition key of `key_len` bytes.
    pub fn max_record(&self, key_len: usize) -> usize {
        match self {
            Self::Kinesis(_) => KINESIS_MAX_RECORD - key_len,
            Self::Firehose(_) => crate::firehose::MAX_RECORD,
        }
    }
}
