//! The record processor of one shard: records → de-duplication → the executor's sinks;
//! checkpoints only what every sink reports durable.

use std::cmp::Ordering;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use chief_consumer::{
    CheckpointTracker, ConsumedRecord, ExtendedSequenceNumber, Fatal, LeaseLostInput,
    ProcessRecordsInput, ProcessorError, ProcessorFactory, RecordProcessor, ShardEndedInput,
    ShutdownRequestedInput,
};
use chief_pipeline::archive::{
    ArchiveConfig, ArchiveError, ArchiveRecord, Disposition, RecordPosition, ShardArchiver,
};
use chief_pipeline::dedup::{DedupConfig, DedupWindow};
use chief_pipeline::indexer::{IndexerError, ShardIndexer, record_id};
use chief_pipeline::object_sink::ObjectSink;
use chief_pipeline::search::{SearchConfig, SearchIndex};
use chief_stream::compare_sequence_numbers;
use chrono::{DateTime, Utc};

use crate::{Executor, ExecutorConfig};

/// Makes an [`ExecutorProcessor`] per shard; holds what the shards share.
pub struct ExecutorFactory<O, I> {
    executor: Executor,
    archive_config: Arc<ArchiveConfig>,
    search_config: Arc<SearchConfig>,
    dedup: DedupConfig,
    archive: Option<O>,
    dead_letters: O,
    index: Option<Arc<I>>,
}

impl<O: ObjectSink + Clone + 'static, I: SearchIndex + 'static> ExecutorFactory<O, I> {
    /// Processors for `executor`: batch files go to `archive` (if it writes them),
    /// documents to `index` (if it writes to one), dead letters to `dead_letters`.
    pub fn new(
        executor: Executor,
        config: &ExecutorConfig,
        archive: Option<O>,
        dead_letters: O,
        index: Option<Arc<I>>,
    ) -> Self {
        Self {
            executor,
            archive_config: Arc::new(config.archive.clone()),
            search_config: Arc::new(config.elasticsearch.clone()),
            dedup: config.dedup.clone(),
            archive,
            dead_letters,
            index,
        }
    }
}

impl<O: ObjectSink + Clone + 'static, I: SearchIndex + 'static> ProcessorFactory
    for ExecutorFactory<O, I>
{
    type Processor = ExecutorProcessor<O, I>;

    fn create(&self, shard_id: &str) -> Self::Processor {
        let name = self.executor.name();
        ExecutorProcessor {
            executor: self.executor,
            archiver: self.archive.clone().map(|sink| {
                ShardArchiver::new(
                    sink,
                    Arc::clone(&self.archive_config),
                    self.executor.kind(),
                    name,
                    shard_id,
                )
            }),
            indexer: self.index.clone().map(|index| {
                ShardIndexer::new(
                    index,
                    self.dead_letters.clone(),
                    Arc::clone(&self.search_config),
                    Arc::new(self.archive_config.dead_letters()),
                    self.executor.kind(),
                    name,
                    shard_id,
                )
            }),
            dedup: DedupWindow::new(&self.dedup, name),
            checkpointed: CheckpointTracker::default(),
        }
    }
}

/// The processor of one shard.
pub struct ExecutorProcessor<O, I> {
    executor: Executor,
    archiver: Option<ShardArchiver<O>>,
    indexer: Option<ShardIndexer<I, O>>,
    /// Ids recently seen in this shard. It feeds the first sink only: the archive when
    /// there is one (a duplicate sent to Elasticsearch only overwrites itself).
    dedup: DedupWindow,
    checkpointed: CheckpointTracker,
}

fn compare(a: &RecordPosition, b: &RecordPosition) -> Ordering {
    compare_sequence_numbers(&a.sequence_number, &b.sequence_number)
        .then(a.sub_sequence_number.cmp(&b.sub_sequence_number))
}

/// Whether `position` is at or before `accepted` (already handled by a sink).
fn handled(position: &RecordPosition, accepted: Option<&RecordPosition>) -> bool {
    accepted.is_some_and(|a| compare(position, a).is_le())
}

fn arrival(record: &ConsumedRecord) -> DateTime<Utc> {
    record.approximate_arrival.map_or_else(
        || DateTime::<Utc>::from(SystemTime::now()),
        DateTime::<Utc>::from,
    )
}

/// A sink error as the consumer sees it: one that no retry can fix (credentials refused,
/// bucket or index gone, a request the service will always refuse) stops the executor
/// with [`Fatal`] instead of being retried forever; the others are retried.
fn archive_error(error: ArchiveError) -> ProcessorError {
    let retryable = error.is_retryable();
    Fatal::unless_retryable(error, retryable)
}

/// As [`archive_error`], for the index.
fn index_error(error: IndexerError) -> ProcessorError {
    let retryable = error.is_retryable();
    Fatal::unless_retryable(error, retryable)
}

impl<O: ObjectSink + Clone + 'static, I: SearchIndex + 'static> ExecutorProcessor<O, I> {
    /// Offers one record to every sink that has not handled it yet.
    async fn offer(&mut self, record: &ConsumedRecord, now: Instant) -> Result<(), ProcessorError> {
        let position = RecordPosition {
            sequence_number: record.sequence_number.clone(),
            sub_sequence_number: record.sub_sequence_number,
        };
        let input = ArchiveRecord {
            data: &record.data,
            position: &position,
            arrival: arrival(record),
        };
        let mut dedup = Some(&mut self.dedup);
        // Whether the archive dead-lettered the record (it breaks the record contract):
        // known when the archive took it now; on a retry after the index failed, the
        // contract is asked again.
        let mut dead_lettered = None;
        if let Some(archiver) = self.archiver.as_mut()
            && !handled(&position, archiver.accepted())
        {
            let processed = archiver
                .process(input, dedup.take(), now)
                .await
                .map_err(archive_error)?;
            dead_lettered = Some(processed.disposition == Disposition::DeadLettered);
        } else if self.archiver.is_some() {
            dedup = None;
        }
        if let Some(indexer) = self.indexer.as_mut()
            && !handled(&position, indexer.accepted())
        {
            let dead_lettered = dead_lettered.unwrap_or_else(|| {
                self.archiver.is_some() && record_id(self.executor.kind(), &record.data).is_err()
            });
            if dead_lettered {
                // One dead letter per executor: the archive wrote it.
                indexer.pass(&position);
            } else {
                indexer
                    .process(input, dedup.take(), now)
                    .await
                    .map_err(index_error)?;
            }
        }
        Ok(())
    }

    /// Writes batches that reached their age.
    async fn flush_due(&mut self, now: Instant) -> Result<(), ProcessorError> {
        if let Some(archiver) = self.archiver.as_mut() {
            archiver.flush_if_due(now).await.map_err(archive_error)?;
        }
        if let Some(indexer) = self.indexer.as_mut() {
            indexer.flush_if_due(now).await.map_err(index_error)?;
        }
        Ok(())
    }

    /// Writes every open batch.
    async fn flush(&mut self) -> Result<(), ProcessorError> {
        if let Some(archiver) = self.archiver.as_mut() {
            archiver.flush().await.map_err(archive_error)?;
        }
        if let Some(indexer) = self.indexer.as_mut() {
            indexer.flush().await.map_err(index_error)?;
        }
        Ok(())
    }

    /// The last position every sink has made durable.
    fn durable(&self) -> Option<RecordPosition> {
        let positions = [
            self.archiver.as_ref().map(|a| a.durable()),
            self.indexer.as_ref().map(|i| i.durable()),
        ];
        let mut least: Option<&RecordPosition> = None;
        for position in positions.into_iter().flatten() {
            let position = position?;
            least = Some(match least {
                Some(l) if compare(l, position).is_le() => l,
                _ => position,
            });
        }
        least.cloned()
    }

    /// Checkpoints the durable position if it moved.
    async fn checkpoint(
        &mut self,
        checkpointer: &chief_consumer::Checkpointer,
    ) -> Result<(), ProcessorError> {
        let Some(durable) = self.durable() else {
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
    for ExecutorProcessor<O, I>
{
    async fn process_records(
        &mut self,
        input: ProcessRecordsInput<'_>,
    ) -> Result<(), ProcessorError> {
        let now = Instant::now();
        for record in input.records {
            self.offer(record, now).await?;
        }
        self.flush_due(Instant::now()).await?;
        self.checkpoint(input.checkpointer).await
    }

    async fn lease_lost(&mut self, input: LeaseLostInput<'_>) {
        // Another worker replays from the last checkpoint; what is buffered here is
        // simply dropped (it was never checkpointed).
        tracing::info!(
            executor = %self.executor,
            shard_id = input.shard_id,
            buffered_rows = self.archiver.as_ref().map_or(0, |a| a.buffered_records()),
            buffered_documents = self.indexer.as_ref().map_or(0, |i| i.buffered_documents()),
            "lease lost; dropping what was not written"
        );
    }

    async fn shard_ended(&mut self, input: ShardEndedInput<'_>) -> Result<(), ProcessorError> {
        self.flush().await?;
        input.checkpointer.checkpoint().await?;
        Ok(())
    }

    async fn shutdown_requested(
        &mut self,
        input: ShutdownRequestedInput<'_>,
    ) -> Result<(), ProcessorError> {
        let flushed = self.flush().await;
        // Whatever did get written is checkpointed, even if a flush failed.
        self.checkpoint(input.checkpointer).await?;
        flushed
    }
}
