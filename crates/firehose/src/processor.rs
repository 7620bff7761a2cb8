//! The record processor of one shard: records → the delivery's destination; checkpoints
//! only what the destination reports durable (in S3, indexed, or backed up).

use std::cmp::Ordering;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use chief_consumer::{
    CheckpointTracker, Checkpointer, ConsumedRecord, ExtendedSequenceNumber, Fatal,
    InitializationInput, LeaseLostInput, ProcessRecordsInput, ProcessorError, ProcessorFactory,
    RecordProcessor, ShardEndedInput, ShutdownRequestedInput,
};
use chief_sinks::batch::RecordPosition;
use chief_sinks::elasticsearch::SearchIndex;
use chief_sinks::object::ObjectSink;
use chief_stream::compare_sequence_numbers;
use chrono::{DateTime, Utc};

use crate::elasticsearch::{EsSettings, ShardEsDelivery};
use crate::metrics as m;
use crate::s3::{DeliveryError, Incoming, S3Settings, ShardS3Delivery};

/// Where a delivery writes.
pub enum Destination<I> {
    /// S3.
    S3(Arc<S3Settings>),
    /// Elasticsearch, with S3 for failed documents and backups.
    Elasticsearch(Arc<I>, Arc<EsSettings>),
}

/// Makes a [`FirehoseProcessor`] per shard.
pub struct FirehoseFactory<O, I> {
    name: String,
    objects: O,
    destination: Destination<I>,
}

impl<O, I> FirehoseFactory<O, I> {
    /// Processors of delivery `name` writing to `destination`, objects to `objects`.
    pub fn new(name: &str, objects: O, destination: Destination<I>) -> Self {
        Self {
            name: name.to_owned(),
            objects,
            destination,
        }
    }
}

enum Writer<O, I> {
    S3(ShardS3Delivery<O>),
    Elasticsearch(ShardEsDelivery<I, O>),
}

impl<O: ObjectSink + Clone + 'static, I: SearchIndex + 'static> ProcessorFactory
    for FirehoseFactory<O, I>
{
    type Processor = FirehoseProcessor<O, I>;

    fn create(&self, shard_id: &str) -> Self::Processor {
        let writer = match &self.destination {
            Destination::S3(settings) => Writer::S3(ShardS3Delivery::new(
                self.objects.clone(),
                Arc::clone(settings),
                shard_id,
            )),
            Destination::Elasticsearch(index, settings) => {
                Writer::Elasticsearch(ShardEsDelivery::new(
                    Arc::clone(index),
                    self.objects.clone(),
                    Arc::clone(settings),
                    shard_id,
                ))
            }
        };
        FirehoseProcessor {
            name: self.name.clone(),
            shard_id: shard_id.to_owned(),
            writer,
            checkpointed: CheckpointTracker::default(),
            replay_until: None,
        }
    }
}

/// The processor of one shard.
pub struct FirehoseProcessor<O, I> {
    name: String,
    shard_id: String,
    writer: Writer<O, I>,
    checkpointed: CheckpointTracker,
    /// A previous owner's pending checkpoint: the records up to it may be in S3 already.
    replay_until: Option<RecordPosition>,
}

fn compare(a: &RecordPosition, b: &RecordPosition) -> Ordering {
    compare_sequence_numbers(&a.sequence_number, &b.sequence_number)
        .then(a.sub_sequence_number.cmp(&b.sub_sequence_number))
}

fn arrival(record: &ConsumedRecord) -> DateTime<Utc> {
    DateTime::<Utc>::from(record.approximate_arrival.unwrap_or_else(SystemTime::now))
}

/// A destination error as the consumer sees it: retried, or [`Fatal`] when no retry can
/// fix it (bucket gone, credentials refused).
fn delivery_error(error: DeliveryError) -> ProcessorError {
    let retryable = error.is_retryable();
    Fatal::unless_retryable(error, retryable)
}

impl<O: ObjectSink + Clone + 'static, I: SearchIndex + 'static> FirehoseProcessor<O, I> {
    fn accepted(&self) -> Option<&RecordPosition> {
        match &self.writer {
            Writer::S3(w) => w.accepted(),
            Writer::Elasticsearch(w) => w.accepted(),
        }
    }

    fn durable(&self) -> Option<&RecordPosition> {
        match &self.writer {
            Writer::S3(w) => w.durable(),
            Writer::Elasticsearch(w) => w.durable(),
        }
    }

    fn buffered(&self) -> usize {
        match &self.writer {
            Writer::S3(w) => w.buffered_records(),
            Writer::Elasticsearch(w) => w.buffered_records(),
        }
    }

    async fn accept(&mut self, record: &ConsumedRecord, now: Instant) -> Result<(), DeliveryError> {
        let position = RecordPosition {
            sequence_number: record.sequence_number.clone(),
            sub_sequence_number: record.sub_sequence_number,
        };
        // A batch retried after a failed write: what was accepted stays buffered.
        if self
            .accepted()
            .is_some_and(|a| compare(&position, a).is_le())
        {
            return Ok(());
        }
        let incoming = Incoming {
            data: &record.data,
            position: &position,
            arrival: arrival(record),
        };
        match &mut self.writer {
            Writer::S3(w) => w.accept(incoming, now).await,
            Writer::Elasticsearch(w) => w.accept(incoming, now).await,
        }
    }

    fn may_write(&self, records: usize, bytes: usize, now: Instant) -> bool {
        match &self.writer {
            Writer::S3(w) => w.may_write(records, bytes, now),
            Writer::Elasticsearch(w) => w.may_write(records, bytes, now),
        }
    }

    /// Records on the lease that the records up to `last` may reach the destination
    /// before they are checkpointed (KCL's `prepareCheckpoint`), so that a worker that
    /// takes the shard over after a crash counts what it delivers again.
    async fn prepare(
        &self,
        checkpointer: &Checkpointer,
        last: Option<&RecordPosition>,
    ) -> Result<(), ProcessorError> {
        let Some(last) = last else {
            return Ok(());
        };
        let last =
            ExtendedSequenceNumber::new(last.sequence_number.clone(), last.sub_sequence_number);
        if !self.checkpointed.covers(&last) {
            checkpointer.prepare_checkpoint_at(last).await?;
        }
        Ok(())
    }

    /// Counts a record a previous owner may have delivered already.
    fn count_replay(&mut self, record: &ConsumedRecord) {
        let Some(until) = &self.replay_until else {
            return;
        };
        let position = RecordPosition {
            sequence_number: record.sequence_number.clone(),
            sub_sequence_number: record.sub_sequence_number,
        };
        if compare(&position, until).is_le() {
            metrics::counter!(m::REPLAYED_RECORDS, m::DELIVERY => self.name.clone()).increment(1);
        } else {
            self.replay_until = None;
        }
    }

    async fn flush_due(&mut self, now: Instant) -> Result<(), DeliveryError> {
        match &mut self.writer {
            Writer::S3(w) => w.flush_due(now).await,
            Writer::Elasticsearch(w) => w.flush_due(now).await,
        }
    }

    async fn flush(&mut self) -> Result<(), DeliveryError> {
        match &mut self.writer {
            Writer::S3(w) => w.flush().await,
            Writer::Elasticsearch(w) => w.flush().await,
        }
    }

    /// Checkpoints the durable position if it moved.
    async fn checkpoint(
        &mut self,
        checkpointer: &chief_consumer::Checkpointer,
    ) -> Result<(), ProcessorError> {
        let Some(durable) = self.durable().cloned() else {
            return Ok(());
        };
        self.checkpointed
            .advance(
                checkpointer,
                ExtendedSequenceNumber::new(durable.sequence_number, durable.sub_sequence_number),
            )
            .await?;
        Ok(())
    }
}

impl<O: ObjectSink + Clone + 'static, I: SearchIndex + 'static> RecordProcessor
    for FirehoseProcessor<O, I>
{
    async fn initialize(&mut self, input: InitializationInput<'_>) -> Result<(), ProcessorError> {
        if let Some(pending) = input.pending_checkpoint {
            tracing::info!(
                delivery = %self.name,
                shard_id = input.shard_id,
                checkpoint = %input.checkpoint,
                pending_checkpoint = %pending,
                "a previous owner may have delivered records after the checkpoint; counting them as replayed"
            );
            self.replay_until = Some(RecordPosition {
                sequence_number: pending.sequence_number.clone(),
                sub_sequence_number: pending.sub_sequence_number,
            });
        }
        Ok(())
    }

    async fn process_records(
        &mut self,
        input: ProcessRecordsInput<'_>,
    ) -> Result<(), ProcessorError> {
        let now = Instant::now();
        let bytes = input.records.iter().map(|r| r.data.len()).sum();
        if self.may_write(input.records.len(), bytes, now) {
            // Every record of this call, or what is buffered when the call has none.
            let last = input.records.last().map(|r| RecordPosition {
                sequence_number: r.sequence_number.clone(),
                sub_sequence_number: r.sub_sequence_number,
            });
            let last = last.or_else(|| self.accepted().cloned());
            self.prepare(input.checkpointer, last.as_ref()).await?;
        }
        for record in input.records {
            self.count_replay(record);
            self.accept(record, now).await.map_err(delivery_error)?;
        }
        self.flush_due(now).await.map_err(delivery_error)?;
        self.checkpoint(input.checkpointer).await
    }

    async fn lease_lost(&mut self, input: LeaseLostInput<'_>) {
        // Another worker replays from the last checkpoint; what is buffered here was never
        // checkpointed.
        tracing::info!(
            delivery = %self.name,
            shard_id = input.shard_id,
            buffered_records = self.buffered(),
            "lease lost; dropping what was not written"
        );
    }

    async fn shard_ended(&mut self, input: ShardEndedInput<'_>) -> Result<(), ProcessorError> {
        if self.buffered() > 0 {
            self.prepare(input.checkpointer, self.accepted()).await?;
        }
        self.flush().await.map_err(delivery_error)?;
        input.checkpointer.checkpoint().await?;
        Ok(())
    }

    async fn shutdown_requested(
        &mut self,
        input: ShutdownRequestedInput<'_>,
    ) -> Result<(), ProcessorError> {
        if self.buffered() > 0 {
            self.prepare(input.checkpointer, self.accepted()).await?;
        }
        let flushed = self.flush().await.map_err(delivery_error);
        // Whatever did get written is checkpointed, even if a flush failed.
        self.checkpoint(input.checkpointer).await?;
        tracing::info!(delivery = %self.name, shard_id = %self.shard_id, "shard flushed");
        flushed
    }
}
