//! A flow's destination, Kinesis or Firehose, behind one interface: a record in, a
//! receipt out that resolves once the destination took it, or why not.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use chief_aggregation::UserRecord;
use chief_producer::{Producer, RecordReceipt};

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
    /// From the Firehose sender.
    Firehose(FirehoseReceipt),
}

impl Future for Receipt {
    type Output = Result<(), SendFailure>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            Self::Kinesis(receipt) => Pin::new(receipt).poll(cx).map(|outcome| {
                outcome
                    .map(|_| ())
                    .map_err(|failure| match &failure.reason {
                        chief_producer::FailureReason::Rejected { code, message } => SendFailure {
                            fatal: chief_stream::is_fatal_code(code),
                            reason: format!("{code}: {message}"),
                        },
                        other => SendFailure {
                            fatal: false,
                            reason: format!("{other:?}"),
                        },
                    })
            }),
            Self::Firehose(receipt) => Pin::new(receipt).poll(cx).map(|outcome| match outcome {
                Ok(Ok(())) => Ok(()),
                Ok(Err(failure)) => Err(SendFailure {
                    fatal: failure.fatal,
                    reason: failure.to_string(),
                }),
                Err(_) => Err(SendFailure {
                    fatal: false,
                    reason: "the Firehose sender dropped the record".into(),
                }),
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
            Self::Kinesis(producer) => {
                producer
                    .send(record)
                    .await
                    .map(Receipt::Kinesis)
                    .map_err(|e| SendFailure {
                        fatal: true,
                        reason: e.to_string(),
                    })
            }
            Self::Firehose(sender) => sender
                .send(record.data)
                .await
                .map(Receipt::Firehose)
                .map_err(|e| SendFailure {
                    fatal: true,
                    reason: e.to_string(),
                }),
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
