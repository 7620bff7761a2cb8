//! `chief-dynamodb-sink`: a consumer application (chief's leases, any number of workers)
//! that writes a stream's JSON records to a DynamoDB table — what seed 004's Lambda did
//! for `OrdersEnriched`, without its flaws: the Lambda caught DynamoDB errors and dropped
//! the rows; here a batch is checkpointed only after every one of its items is written.
//!
//! Per batch of records a shard hands over: each record becomes an item
//! ([`chief_sinks::dynamodb::Item::from_json`], its key attributes checked against
//! `[sink]`'s key schema); the items are written with `BatchWriteItem` (25 a request,
//! `concurrency` requests at once, `UnprocessedItems` and throttling retried with back-off
//! until `[sink.retry]`'s deadline, then the batch fails and the consumer retries it);
//! records that are not items go to the dead-letter prefix of `[dead_letter]`'s bucket
//! with why; then the shard is checkpointed. Puts of whole items: a record written again
//! (after a fail-over) leaves the same item.
//!
//! Metrics (Prometheus, `/metrics`): `chief_dynamodb_sink_items_total`,
//! `chief_dynamodb_sink_unprocessed_items_total`, `chief_dynamodb_sink_throttled_requests_total`,
//! `chief_dynamodb_sink_dead_letters_total`, and `chief_dynamodb_sink_latency_ms` — from
//! a record's ingestion time (`[sink] latency_attribute`, set by `chiefctl replay`) to its
//! item written.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::SystemTime;

use chief_config::aws::{AwsClients, AwsConfig};
use chief_config::health::Health;
use chief_config::retry::RetryPolicy;
use chief_config::service::{ServiceArgs, ServiceConfig};
use chief_config::telemetry::{LogConfig, MetricsConfig};
use chief_consumer::{
    ConsumerConfig, ConsumerError, DynamoDbLeaseStore, Fatal, LeaseStore, ProcessRecordsInput,
    ProcessorError, ProcessorFactory, RecordProcessor, Scheduler, ShardEndedInput,
    ShutdownRequestedInput,
};
use chief_sinks::batch::RecordPosition;
use chief_sinks::dead_letter::{self, DeadLetterSettings, Rejected};
use chief_sinks::dynamodb::{
    DynamoDbItemTable, Item, ItemTable, ItemTableError, KeySchema, KeyType, write_all,
};
use chief_sinks::object::{ObjectSink, S3ObjectSink};
use chief_stream::{KinesisClient, StreamClient};
use chrono::{DateTime, Utc};
use clap::Parser;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

/// Items written.
pub const ITEMS: &str = "chief_dynamodb_sink_items_total";
/// Items DynamoDB handed back unprocessed (and that were sent again).
pub const UNPROCESSED: &str = "chief_dynamodb_sink_unprocessed_items_total";
/// Requests refused (throttling, 5xx) and sent again.
pub const THROTTLED: &str = "chief_dynamodb_sink_throttled_requests_total";
/// Records that are not items, written to the dead-letter prefix.
pub const DEAD_LETTERS: &str = "chief_dynamodb_sink_dead_letters_total";
/// Milliseconds from a record's ingestion time to its item written.
pub const LATENCY_MS: &str = "chief_dynamodb_sink_latency_ms";

/// `config/dynamodb-sink.toml`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SinkConfig {
    /// `[log]`.
    pub log: LogConfig,
    /// `[metrics]`.
    pub metrics: MetricsConfig,
    /// `[aws]`.
    pub aws: AwsConfig,
    /// `[consumer]`: the stream and the lease table.
    pub consumer: ConsumerConfig,
    /// `[sink]`: the table.
    pub sink: TableSettings,
    /// `[dead_letter]`: where records that are not items go.
    pub dead_letter: DeadLetterConfig,
}

/// `[sink]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TableSettings {
    /// The table (`chiefctl setup` creates seed 004's). Default `OrdersEnriched`.
    pub table: String,
    /// Its partition key. Default `orderId`.
    pub partition_key: String,
    /// Its type (`N` or `S`). Default `N`.
    pub partition_key_type: KeyType,
    /// Its sort key, if any. Default `itemId`.
    pub sort_key: Option<String>,
    /// Its type. Default `N`.
    pub sort_key_type: KeyType,
    /// `BatchWriteItem` requests in flight per shard. Default 8.
    pub concurrency: usize,
    /// Back-off of unprocessed items and refused requests; past the deadline the batch
    /// fails and the consumer retries it (nothing is checkpointed). Default 50 ms doubling
    /// to 2 s, deadline 60 s.
    pub retry: RetryPolicy,
    /// The attribute with the record's ingestion time (RFC 3339) that latency is measured
    /// from; records without it are not measured. Default `ingestionTime`.
    pub latency_attribute: String,
    /// A shard is checkpointed at most this often, ms (every batch is written before the
    /// next is taken, so a later checkpoint covers it; after a fail-over at most this much
    /// is written again, the same items). Default 1,000; 0: after every batch.
    pub checkpoint_interval_ms: u64,
}

impl Default for TableSettings {
    fn default() -> Self {
        Self {
            table: "OrdersEnriched".to_owned(),
            partition_key: "orderId".to_owned(),
            partition_key_type: KeyType::Number,
            sort_key: Some("itemId".to_owned()),
            sort_key_type: KeyType::Number,
            concurrency: 8,
            retry: RetryPolicy {
                initial_backoff_ms: 50,
                max_backoff_ms: 2_000,
                multiplier: 2.0,
                deadline_ms: 60_000,
            },
            latency_attribute: "ingestionTime".to_owned(),
            checkpoint_interval_ms: 1_000,
        }
    }
}

impl TableSettings {
    /// The key schema.
    pub fn key_schema(&self) -> KeySchema {
        KeySchema {
            partition: (self.partition_key.clone(), self.partition_key_type),
            sort: self
                .sort_key
                .as_ref()
                .map(|name| (name.clone(), self.sort_key_type)),
        }
    }
}

/// `[dead_letter]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeadLetterConfig {
    /// The bucket. Default empty (must be set).
    pub bucket: String,
    /// The key prefix: `<prefix>/chief-dynamodb-sink/YYYY/MM/DD/HH/<shard>-<seq>-<sub>`.
    /// Default `errors`.
    pub prefix: String,
}

impl Default for DeadLetterConfig {
    fn default() -> Self {
        Self {
            bucket: String::new(),
            prefix: "errors".to_owned(),
        }
    }
}

/// Why the sink stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SinkError {
    /// A setting is wrong.
    #[error("configuration: {0}")]
    Config(String),
    /// The consumer stopped on an error.
    #[error(transparent)]
    Consumer(#[from] ConsumerError),
}

impl SinkConfig {
    /// Checks the settings.
    ///
    /// # Errors
    /// [`SinkError::Config`] naming the setting.
    pub fn validate(&self) -> Result<(), SinkError> {
        let err = |m: &str| Err(SinkError::Config(m.to_owned()));
        if self.consumer.stream.is_empty() {
            return err("consumer.stream is empty");
        }
        if self.sink.table.is_empty() {
            return err("sink.table is empty");
        }
        if self.sink.partition_key.is_empty() {
            return err("sink.partition_key is empty");
        }
        if self.sink.sort_key.as_deref() == Some("") {
            return err("sink.sort_key is empty (leave it out for a table without one)");
        }
        if self.sink.concurrency == 0 {
            return err("sink.concurrency must be at least 1");
        }
        if self.dead_letter.bucket.is_empty() {
            return err("dead_letter.bucket is empty");
        }
        Ok(())
    }
}

/// The name in dead-letter keys and logs.
pub const APPLICATION: &str = "chief-dynamodb-sink";

/// Makes a [`SinkProcessor`] per shard.
pub struct SinkFactory<T, O> {
    table: Arc<T>,
    objects: O,
    settings: Arc<TableSettings>,
    dead_letters: Arc<DeadLetterSettings>,
}

impl<T, O> SinkFactory<T, O> {
    /// Processors writing to `table`, dead letters to `objects`.
    pub fn new(
        table: Arc<T>,
        objects: O,
        settings: TableSettings,
        dead_letter_prefix: &str,
    ) -> Self {
        Self {
            table,
            objects,
            dead_letters: Arc::new(DeadLetterSettings {
                prefix: dead_letter_prefix.to_owned(),
                retry: settings.retry,
            }),
            settings: Arc::new(settings),
        }
    }
}

impl<T: ItemTable + 'static, O: ObjectSink + Clone + 'static> ProcessorFactory
    for SinkFactory<T, O>
{
    type Processor = SinkProcessor<T, O>;

    fn create(&self, shard_id: &str) -> Self::Processor {
        SinkProcessor {
            shard_id: shard_id.to_owned(),
            table: Arc::clone(&self.table),
            objects: self.objects.clone(),
            schema: self.settings.key_schema(),
            settings: Arc::clone(&self.settings),
            dead_letters: Arc::clone(&self.dead_letters),
            last_checkpoint: None,
        }
    }
}

/// The processor of one shard: stateless between batches.
pub struct SinkProcessor<T, O> {
    shard_id: String,
    table: Arc<T>,
    objects: O,
    schema: KeySchema,
    settings: Arc<TableSettings>,
    dead_letters: Arc<DeadLetterSettings>,
    last_checkpoint: Option<std::time::Instant>,
}

fn table_error(error: ItemTableError) -> ProcessorError {
    let retryable = error.retryable;
    Fatal::unless_retryable(error, retryable)
}

/// The ingestion time of an item, if it has one.
fn ingestion_time(item: &Item, attribute: &str) -> Option<DateTime<Utc>> {
    match item.attributes.get(attribute) {
        Some(aws_sdk_dynamodb::types::AttributeValue::S(text)) => {
            DateTime::parse_from_rfc3339(text)
                .ok()
                .map(|t| t.with_timezone(&Utc))
        }
        _ => None,
    }
}

impl<T, O> SinkProcessor<T, O> {
    /// Checkpoints what was delivered (all of it written) if `checkpoint_interval_ms` has
    /// passed since the last checkpoint.
    async fn checkpoint_if_due(
        &mut self,
        checkpointer: &chief_consumer::Checkpointer,
    ) -> Result<(), ProcessorError> {
        let due = self.last_checkpoint.is_none_or(|t| {
            t.elapsed() >= std::time::Duration::from_millis(self.settings.checkpoint_interval_ms)
        });
        if due {
            checkpointer.checkpoint().await?;
            self.last_checkpoint = Some(std::time::Instant::now());
        }
        Ok(())
    }
}

impl<T: ItemTable + 'static, O: ObjectSink + Clone + 'static> RecordProcessor
    for SinkProcessor<T, O>
{
    async fn process_records(
        &mut self,
        input: ProcessRecordsInput<'_>,
    ) -> Result<(), ProcessorError> {
        if input.records.is_empty() {
            // Called after empty reads too: what the last batches wrote gets its checkpoint.
            return self.checkpoint_if_due(input.checkpointer).await;
        }
        let mut items = Vec::with_capacity(input.records.len());
        let mut ingested = Vec::new();
        let mut rejected = Vec::new();
        for record in input.records {
            match Item::from_json(&record.data, &self.schema) {
                Ok(item) => {
                    if let Some(t) = ingestion_time(&item, &self.settings.latency_attribute) {
                        ingested.push(t);
                    }
                    items.push(item);
                }
                Err(e) => rejected.push((record, e.to_string())),
            }
        }
        let outcome = write_all(
            &*self.table,
            items,
            &self.settings.retry,
            self.settings.concurrency,
        )
        .await
        .map_err(table_error)?;
        let written = DateTime::<Utc>::from(SystemTime::now());
        let table = self.settings.table.clone();
        metrics::counter!(ITEMS, "table" => table.clone()).increment(outcome.items as u64);
        metrics::counter!(UNPROCESSED, "table" => table.clone())
            .increment(outcome.retried_items as u64);
        metrics::counter!(THROTTLED, "table" => table.clone())
            .increment(outcome.retried_requests as u64);
        for t in ingested {
            let ms = (written - t).num_milliseconds().max(0) as f64;
            metrics::histogram!(LATENCY_MS, "table" => table.clone()).record(ms);
        }
        for (record, why) in rejected {
            let position = RecordPosition {
                sequence_number: record.sequence_number.clone(),
                sub_sequence_number: record.sub_sequence_number,
            };
            let key = dead_letter::write(
                &self.objects,
                &self.dead_letters,
                Rejected {
                    application: APPLICATION,
                    shard_id: &self.shard_id,
                    position: &position,
                    arrival: DateTime::<Utc>::from(
                        record.approximate_arrival.unwrap_or_else(SystemTime::now),
                    ),
                    data: &record.data,
                    error: &why,
                },
            )
            .await
            .map_err(|e| {
                let retryable = e.is_retryable();
                Fatal::unless_retryable(e, retryable)
            })?;
            metrics::counter!(DEAD_LETTERS, "table" => table.clone()).increment(1);
            tracing::warn!(shard_id = %self.shard_id, key, error = %why, "record is not an item of the table; dead-lettered");
        }
        // Every record of the batch is written or dead-lettered: it may be checkpointed.
        self.checkpoint_if_due(input.checkpointer).await
    }

    async fn shard_ended(&mut self, input: ShardEndedInput<'_>) -> Result<(), ProcessorError> {
        input.checkpointer.checkpoint().await?;
        Ok(())
    }

    async fn shutdown_requested(
        &mut self,
        input: ShutdownRequestedInput<'_>,
    ) -> Result<(), ProcessorError> {
        // Every batch handed over was written and checkpointed before the next.
        input.checkpointer.checkpoint().await?;
        Ok(())
    }
}

/// What [`run_with`] runs on.
pub struct Parts<C, L, T, O> {
    /// The stream client.
    pub stream: C,
    /// The lease table.
    pub leases: L,
    /// The item table.
    pub table: Arc<T>,
    /// The dead-letter bucket.
    pub objects: O,
    /// Where readiness is reported.
    pub health: Health,
}

/// Runs the sink of `config` on its AWS clients until `shutdown` fires.
///
/// # Errors
/// [`SinkError`] on a bad setting or a fatal consumer error (stream, table or bucket
/// missing, credentials refused).
pub async fn run(
    config: SinkConfig,
    shutdown: CancellationToken,
    health: Health,
) -> Result<(), SinkError> {
    config.validate()?;
    let clients = AwsClients::new(&config.aws).await;
    let parts = Parts {
        stream: KinesisClient::new(clients.kinesis()),
        leases: DynamoDbLeaseStore::new(clients.dynamodb(), &config.consumer.table),
        table: Arc::new(DynamoDbItemTable::new(
            clients.dynamodb(),
            config.sink.table.clone(),
            config.sink.key_schema(),
        )),
        objects: S3ObjectSink::new(clients.s3(), config.dead_letter.bucket.clone()),
        health,
    };
    run_with(config, parts, shutdown).await
}

/// [`run`] on the given parts.
///
/// # Errors
/// As [`run`].
pub async fn run_with<C, L, T, O>(
    config: SinkConfig,
    parts: Parts<C, L, T, O>,
    shutdown: CancellationToken,
) -> Result<(), SinkError>
where
    C: StreamClient + Clone,
    L: LeaseStore,
    T: ItemTable + 'static,
    O: ObjectSink + Clone + 'static,
{
    config.validate()?;
    let mut config = config;
    // Quiet shards still get their checkpoint: the processor is called after empty reads.
    config.consumer.deliver_empty_batches = true;
    let factory = SinkFactory::new(
        parts.table,
        parts.objects,
        config.sink.clone(),
        &config.dead_letter.prefix,
    );
    let scheduler = Scheduler::new(config.consumer, parts.stream, parts.leases, factory)?
        .with_health(parts.health);
    tracing::info!(table = %config.sink.table, worker_id = %scheduler.worker_id(), "sink starting");
    scheduler.run(shutdown).await?;
    tracing::info!(table = %config.sink.table, "sink stopped");
    Ok(())
}

#[derive(Parser, Debug)]
#[command(name = "chief-dynamodb-sink", version)]
struct Cli {
    #[command(flatten)]
    args: ServiceArgs,
}

impl ServiceConfig for SinkConfig {
    fn log_mut(&mut self) -> &mut LogConfig {
        &mut self.log
    }
    fn metrics(&self) -> &MetricsConfig {
        &self.metrics
    }
    fn aws(&self) -> &AwsConfig {
        &self.aws
    }
    fn worker_id_mut(&mut self) -> &mut Option<String> {
        &mut self.consumer.worker_id
    }
}

/// The binary's `main`.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    chief_config::service::serve(
        APPLICATION,
        cli.args,
        |config: &SinkConfig| Ok(config.validate()?),
        |config, shutdown, health| async move { Ok(run(config, shutdown, health).await?) },
    )
}
