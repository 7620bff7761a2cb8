//! Enhanced fan-out: a registered stream consumer and its SubscribeToShard subscriptions.
//!
//! A [`Subscription`] is the push side of a shard: Kinesis sends an event as soon as
//! records arrive (and an empty one every few seconds), until the subscription ends after
//! five minutes or fails; the reader then subscribes again from the last position it got.
//! The events pass through a channel of one event, so a reader that does not take them
//! stops the reading of the HTTP/2 stream (its flow control holds Kinesis back): memory
//! stays bounded by one event (at most 10,000 records, 10 MiB) in flight.

use std::future::Future;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::{ChildShard, GetRecordsOutput, ReceivedRecord, StreamError};

/// One SubscribeToShard event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubscriptionEvent {
    /// The records, in sequence order (possibly none: Kinesis sends empty events too).
    pub records: Vec<ReceivedRecord>,
    /// Where to subscribe again with `AFTER_SEQUENCE_NUMBER` to continue after this event;
    /// `None` once the end of a closed shard is reached.
    pub continuation_sequence_number: Option<String>,
    /// How far this event is behind the newest record of the shard, in milliseconds.
    pub millis_behind_latest: Option<u64>,
    /// At the end of a closed shard: the shards that replaced it.
    pub child_shards: Vec<ChildShard>,
}

impl SubscriptionEvent {
    /// Whether the end of a closed shard was reached.
    pub fn is_shard_end(&self) -> bool {
        self.continuation_sequence_number.is_none()
    }

    /// The event as a GetRecords answer, whose `next_shard_iterator` is the continuation
    /// sequence number (`None` at the end of the shard): what a reader that handles both
    /// kinds of fetch needs.
    pub fn into_get_records_output(self) -> GetRecordsOutput {
        GetRecordsOutput {
            records: self.records,
            next_shard_iterator: self.continuation_sequence_number,
            millis_behind_latest: self.millis_behind_latest,
            child_shards: self.child_shards,
        }
    }
}

/// The sending half a [`Subscription`]'s task writes events into.
pub type EventSender = mpsc::Sender<Result<SubscriptionEvent, StreamError>>;

/// An open SubscribeToShard subscription. Dropping it closes the subscription.
#[derive(Debug)]
pub struct Subscription {
    events: mpsc::Receiver<Result<SubscriptionEvent, StreamError>>,
    task: JoinHandle<()>,
}

impl Subscription {
    /// Runs `pump` (which reads the subscription's events and sends them, stopping when a
    /// send fails) on its own task.
    pub fn spawn<F, Fut>(pump: F) -> Self
    where
        F: FnOnce(EventSender) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let (tx, events) = mpsc::channel(1);
        let task = tokio::spawn(pump(tx));
        Self { events, task }
    }

    /// The next event; `None` once the subscription ended (Kinesis ends every
    /// subscription after five minutes). An error ends it too.
    pub async fn next(&mut self) -> Option<Result<SubscriptionEvent, StreamError>> {
        self.events.recv().await
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.task.abort();
    }
}
