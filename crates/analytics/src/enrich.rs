//! `chief-join` (seed 004): the orders-and-items stream → [`crate::join`] per shard lease →
//! the enriched stream (partition key the order id), unmatched items and bad records to
//! S3, products from an S3 object reloaded when its ETag changes.
//!
//! Per batch a shard hands over: every record through the shard's join; the rows put to
//! the output stream through chief's producer (KPL-aggregated per predicted shard unless
//! `[output] aggregate = false`; all acknowledged), the unmatched items and bad records
//! written as one object each (keyed by their position: written again, the same object); then the
//! shard is checkpointed at [`crate::join::ShardJoin::checkpoint`] — never past a record
//! still held. The join's state is rebuilt by whoever takes the shard over from the
//! records after the checkpoint.

use std::future::Future;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use chief_config::aws::{AwsClients, AwsConfig};
use chief_config::health::Health;
use chief_config::retry::RetryPolicy;
use chief_config::service::ServiceConfig;
use chief_config::telemetry::{LogConfig, MetricsConfig};
use chief_consumer::{
    ConsumerConfig, ConsumerError, DynamoDbLeaseStore, Fatal, LeaseStore, ProcessRecordsInput,
    ProcessorError, ProcessorFactory, RecordProcessor, Scheduler, ShardEndedInput,
    ShutdownRequestedInput,
};
use chief_producer::{
    BatchSendError, FailureReason, Producer, ProducerConfig, ProducerError, UserRecord,
};
use chief_sinks::batch::RecordPosition;
use chief_sinks::dead_letter::{self, DeadLetterSettings, Rejected};
use chief_sinks::object::{ObjectSink, S3ObjectSink};
use chief_stream::{KinesisClient, StreamClient};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::join::{Catalog, Input, JoinSettings, Output, Rejection, ShardJoin};
use crate::processor::now_ms;

/// Rows put to the output stream.
pub const ROWS: &str = "chief_join_rows_total";
/// Items without an order within the interval, written to the unmatched prefix.
pub const UNMATCHED: &str = "chief_join_unmatched_items_total";
/// Records that are neither orders nor items.
pub const BAD: &str = "chief_join_bad_records_total";
/// Product versions loaded.
pub const PRODUCT_VERSIONS: &str = "chief_join_product_versions_total";
/// Orders and items held, per shard.
pub const HELD: &str = "chief_join_held_records";

/// `config/join-orders.toml`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EnrichConfig {
    /// `[log]`.
    pub log: LogConfig,
    /// `[metrics]`.
    pub metrics: MetricsConfig,
    /// `[aws]`.
    pub aws: AwsConfig,
    /// `[consumer]`: the orders-and-items stream, the lease table.
    pub consumer: ConsumerConfig,
    /// `[join]`.
    pub join: JoinSettings,
    /// `[products]`: the reference data.
    pub products: ProductsConfig,
    /// `[output]`.
    pub output: EnrichOutput,
}

/// `[products]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProductsConfig {
    /// The bucket. Default empty (must be set).
    pub bucket: String,
    /// The object: JSON lines (or a JSON array) of products. Default `products/products.json`.
    pub key: String,
    /// The product id attribute. Default `productId`.
    pub id_field: String,
    /// How often its ETag is looked at, ms. Default 1,000.
    pub poll_interval_ms: u64,
    /// A version superseded longer ago than this is dropped: set it to the source
    /// stream's retention (no record older than that can be read again, so none can ask
    /// for it). Default 24 (Kinesis's default retention).
    pub retain_versions_hours: u64,
}

impl Default for ProductsConfig {
    fn default() -> Self {
        Self {
            bucket: String::new(),
            key: "products/products.json".to_owned(),
            id_field: "productId".to_owned(),
            poll_interval_ms: 1_000,
            retain_versions_hours: 24,
        }
    }
}

/// `[output]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EnrichOutput {
    /// The enriched stream. Default `OrdersEnrichedStream`.
    pub stream: String,
    /// The bucket of unmatched items and bad records. Default empty (must be set).
    pub bucket: String,
    /// Unmatched items: `<prefix>/chief-join/YYYY/MM/DD/HH/<shard>-<seq>-<sub>`, one JSON
    /// object each with why. Default `unmatched`.
    pub unmatched_prefix: String,
    /// Bad records, the same way. Default `errors`.
    pub errors_prefix: String,
    /// Rows KPL-aggregated per predicted shard (many rows a Kinesis record: fewer records
    /// and PUT payload units; every chief consumer deaggregates). `false`: one row a
    /// record, for consumers that do not deaggregate. Default `true`.
    pub aggregate: bool,
    /// The longest a row waits in the producer for others to share its PutRecords call
    /// (KPL `RecordMaxBufferedTime`), in milliseconds. Default 20.
    pub max_buffered_time_ms: u64,
}

impl Default for EnrichOutput {
    fn default() -> Self {
        Self {
            stream: "OrdersEnrichedStream".to_owned(),
            bucket: String::new(),
            unmatched_prefix: "unmatched".to_owned(),
            errors_prefix: "errors".to_owned(),
            aggregate: true,
            max_buffered_time_ms: 20,
        }
    }
}

/// Why the join stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EnrichError {
    /// A setting is wrong.
    #[error("configuration: {0}")]
    Config(String),
    /// The products could not be loaded at start.
    #[error("products s3://{bucket}/{key}: {message}")]
    Products {
        /// The bucket.
        bucket: String,
        /// The key.
        key: String,
        /// Why.
        message: String,
    },
    /// The producer of the output stream could not start (the stream missing, no access).
    #[error("output stream: {0}")]
    Output(#[from] ProducerError),
    /// The consumer stopped on an error.
    #[error(transparent)]
    Consumer(#[from] ConsumerError),
}

impl EnrichConfig {
    /// Checks the settings.
    ///
    /// # Errors
    /// [`EnrichError::Config`] naming the setting.
    pub fn validate(&self) -> Result<(), EnrichError> {
        let err = |m: &str| Err(EnrichError::Config(m.to_owned()));
        if self.consumer.stream.is_empty() {
            return err("consumer.stream is empty");
        }
        if self.output.stream.is_empty() {
            return err("output.stream is empty");
        }
        if self.output.stream == self.consumer.stream {
            return err("output.stream is the source stream");
        }
        if self.output.bucket.is_empty() {
            return err("output.bucket is empty");
        }
        if self.products.bucket.is_empty() || self.products.key.is_empty() {
            return err("products.bucket and products.key must be set");
        }
        if self.join.interval_s == 0 {
            return err("join.interval_s must be at least 1");
        }
        if self.products.poll_interval_ms == 0 {
            return err("products.poll_interval_ms must be at least 1");
        }
        Ok(())
    }
}

impl ServiceConfig for EnrichConfig {
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

/// Where the products come from: the object's ETag and last-modified time, and its body.
pub trait ProductSource: Send + Sync + 'static {
    /// `(etag, last modified ms)` of the object now.
    fn head(&self) -> impl Future<Output = Result<(String, i64), String>> + Send;
    /// Its body.
    fn get(&self) -> impl Future<Output = Result<Bytes, String>> + Send;
}

/// The products object in S3.
#[derive(Debug, Clone)]
pub struct S3Products {
    client: aws_sdk_s3::Client,
    bucket: String,
    key: String,
}

impl S3Products {
    /// `s3://bucket/key` through `client`.
    pub fn new(client: aws_sdk_s3::Client, bucket: &str, key: &str) -> Self {
        Self {
            client,
            bucket: bucket.to_owned(),
            key: key.to_owned(),
        }
    }
}

impl ProductSource for S3Products {
    async fn head(&self) -> Result<(String, i64), String> {
        let out = self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(&self.key)
            .send()
            .await
            .map_err(|e| aws_sdk_s3::error::DisplayErrorContext(&e).to_string())?;
        let modified = out
            .last_modified()
            .and_then(|t| t.to_millis().ok())
            .unwrap_or(0);
        Ok((out.e_tag().unwrap_or_default().to_owned(), modified))
    }

    async fn get(&self) -> Result<Bytes, String> {
        let out = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(&self.key)
            .send()
            .await
            .map_err(|e| aws_sdk_s3::error::DisplayErrorContext(&e).to_string())?;
        out.body
            .collect()
            .await
            .map(|b| b.into_bytes())
            .map_err(|e| e.to_string())
    }
}

/// The catalog, shared by every shard's processor and the loader.
pub type SharedCatalog = Arc<RwLock<Catalog>>;

/// Loads the products once (an error: the join cannot start), then keeps them current:
/// every `poll_interval` the object's ETag is looked at and a changed object loaded as a
/// new version from its last-modified time (versions superseded more than `retain` ago
/// dropped). A failed poll is logged and tried again.
///
/// # Errors
/// The first load failed.
pub async fn load_products<S: ProductSource>(
    source: S,
    id_field: String,
    poll_interval: Duration,
    retain: Duration,
    shutdown: CancellationToken,
) -> Result<SharedCatalog, String> {
    let retain_ms = i64::try_from(retain.as_millis()).unwrap_or(i64::MAX);
    let (etag, modified) = source.head().await?;
    let body = source.get().await?;
    let products = Catalog::parse(&body, &id_field)?;
    tracing::info!(products = products.len(), etag, "products loaded");
    metrics::counter!(PRODUCT_VERSIONS).increment(1);
    let catalog = Arc::new(RwLock::new(Catalog {
        versions: vec![(modified, products)],
    }));
    let shared = Arc::clone(&catalog);
    tokio::spawn(async move {
        let mut current = etag;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(poll_interval) => {}
            }
            let (etag, modified) = match source.head().await {
                Ok(h) => h,
                Err(e) => {
                    tracing::warn!(error = %e, "products: HeadObject failed; trying again");
                    continue;
                }
            };
            if etag == current {
                continue;
            }
            let loaded = match source.get().await {
                Ok(body) => Catalog::parse(&body, &id_field),
                Err(e) => Err(e),
            };
            match loaded {
                Ok(products) => {
                    tracing::info!(
                        products = products.len(),
                        etag,
                        modified,
                        "products changed: new version loaded"
                    );
                    metrics::counter!(PRODUCT_VERSIONS).increment(1);
                    let mut c = shared
                        .write()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    c.add_version(modified, products, now_ms().saturating_sub(retain_ms));
                    current = etag;
                }
                Err(e) => {
                    tracing::warn!(error = %e, etag, "products: the new object is not loadable; keeping the current version");
                    current = etag;
                }
            }
        }
    });
    Ok(catalog)
}

/// Makes an [`EnrichProcessor`] per shard.
pub struct EnrichFactory<O> {
    settings: JoinSettings,
    catalog: SharedCatalog,
    output: Arc<Producer>,
    objects: O,
    unmatched: Arc<DeadLetterSettings>,
    errors: Arc<DeadLetterSettings>,
}

impl<O> EnrichFactory<O> {
    /// Processors joining with `catalog`, rows to the output stream through `output`,
    /// unmatched items and bad records to `objects` under the prefixes of `config`.
    pub fn new(
        config: &EnrichConfig,
        catalog: SharedCatalog,
        output: Arc<Producer>,
        objects: O,
    ) -> Self {
        let retry = RetryPolicy {
            deadline_ms: 60_000,
            ..RetryPolicy::default()
        };
        Self {
            settings: config.join.clone(),
            catalog,
            output,
            objects,
            unmatched: Arc::new(DeadLetterSettings {
                prefix: config.output.unmatched_prefix.clone(),
                retry,
            }),
            errors: Arc::new(DeadLetterSettings {
                prefix: config.output.errors_prefix.clone(),
                retry,
            }),
        }
    }
}

impl<O: ObjectSink + Clone + 'static> ProcessorFactory for EnrichFactory<O> {
    type Processor = EnrichProcessor<O>;

    fn create(&self, shard_id: &str) -> Self::Processor {
        EnrichProcessor {
            shard_id: shard_id.to_owned(),
            join: ShardJoin::new(self.settings.clone()),
            catalog: Arc::clone(&self.catalog),
            output: Arc::clone(&self.output),
            objects: self.objects.clone(),
            unmatched: Arc::clone(&self.unmatched),
            errors: Arc::clone(&self.errors),
            pending: Vec::new(),
        }
    }
}

/// The processor of one shard.
pub struct EnrichProcessor<O> {
    shard_id: String,
    join: ShardJoin,
    catalog: SharedCatalog,
    output: Arc<Producer>,
    objects: O,
    unmatched: Arc<DeadLetterSettings>,
    errors: Arc<DeadLetterSettings>,
    /// Released by the join, not yet delivered (a failed delivery is tried again with the
    /// next batch).
    pending: Vec<Output>,
}

/// Outputs a shard may hold undelivered before the worker gives up (exits non-zero and
/// its successor starts again from the checkpoint).
const MAX_PENDING: usize = 100_000;

/// Rows, and bytes, handed to the producer in one `send_batch`.
const ROWS_PER_SEND: usize = 1_000;
const BYTES_PER_SEND: usize = 8 << 20;

fn millis(t: Option<SystemTime>) -> i64 {
    t.and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map_or_else(now_ms, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl<O: ObjectSink + Clone + 'static> EnrichProcessor<O> {
    /// Puts `rows` through the producer and waits for every one's outcome: all put, or an
    /// error — fatal when Kinesis refused a row for good (the stream gone, access denied),
    /// else (a row not put within the producer's 30 s time to live) the rows are tried
    /// again with the next batch; a row put twice is the same row.
    async fn put_rows(&self, rows: Vec<UserRecord>) -> Result<(), ProcessorError> {
        let mut receipts = Vec::new();
        let mut rest = rows.into_iter().peekable();
        while rest.peek().is_some() {
            // Well inside the producer's buffer bounds, however big the rows.
            let (mut chunk, mut bytes) = (Vec::new(), 0);
            while let Some(row) = rest.next_if(|r| {
                chunk.is_empty()
                    || (chunk.len() < ROWS_PER_SEND && bytes + r.size() <= BYTES_PER_SEND)
            }) {
                bytes += row.size();
                chunk.push(row);
            }
            let receipt = self.output.send_batch(chunk).await.map_err(|e| {
                let fatal = matches!(e, BatchSendError::LargerThanBuffer { .. });
                Fatal::unless_retryable(e, !fatal)
            })?;
            receipts.push(receipt);
        }
        for receipt in receipts {
            for outcome in receipt.await {
                if let Err(failure) = outcome {
                    let retryable = !matches!(failure.reason, FailureReason::Rejected { .. });
                    let error = format!(
                        "putting a row to {}: {:?}",
                        self.output.stream(),
                        failure.reason
                    );
                    return Err(Fatal::unless_retryable(error, retryable));
                }
            }
        }
        Ok(())
    }

    /// Writes what the join released; then the shard may be checkpointed.
    async fn deliver(&self, outputs: &[Output]) -> Result<(), ProcessorError> {
        let mut rows = Vec::new();
        let mut rejected = Vec::new();
        for o in outputs {
            match o {
                Output::Row { key, json } => rows.push(UserRecord {
                    partition_key: key.to_string(),
                    explicit_hash_key: None,
                    data: Bytes::from(json.clone()),
                }),
                Output::Rejected {
                    kind,
                    position,
                    arrival_ms,
                    data,
                    reason,
                } => rejected.push((*kind, position, arrival_ms, data, reason)),
            }
        }
        let count = rows.len() as u64;
        if !rows.is_empty() {
            self.put_rows(rows).await?;
        }
        metrics::counter!(ROWS).increment(count);
        for (kind, position, arrival_ms, data, reason) in rejected {
            let (settings, metric) = match kind {
                Rejection::Unmatched => (&self.unmatched, UNMATCHED),
                Rejection::Bad => (&self.errors, BAD),
            };
            let position = RecordPosition {
                sequence_number: position.sequence_number.clone(),
                sub_sequence_number: position.sub_sequence_number,
            };
            dead_letter::write(
                &self.objects,
                settings,
                Rejected {
                    application: "chief-join",
                    shard_id: &self.shard_id,
                    position: &position,
                    arrival: DateTime::<Utc>::from_timestamp_millis(*arrival_ms)
                        .unwrap_or_default(),
                    data,
                    error: reason,
                },
            )
            .await
            .map_err(|e| {
                let retryable = e.is_retryable();
                Fatal::unless_retryable(e, retryable)
            })?;
            metrics::counter!(metric).increment(1);
        }
        Ok(())
    }
}

impl<O: ObjectSink + Clone + 'static> RecordProcessor for EnrichProcessor<O> {
    async fn process_records(
        &mut self,
        input: ProcessRecordsInput<'_>,
    ) -> Result<(), ProcessorError> {
        let now = now_ms();
        let outputs = {
            let catalog = self
                .catalog
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let mut outputs = Vec::new();
            for record in input.records {
                let position = record.position();
                outputs.extend(self.join.push(
                    Input {
                        position: &position,
                        arrival_ms: millis(record.approximate_arrival),
                        data: &record.data,
                    },
                    &catalog,
                    now,
                ));
            }
            if input.records.is_empty() {
                outputs.extend(self.join.tick(now));
            }
            outputs
        };
        // The join has taken the records: what it released is delivered now or with the
        // next batch (the consumer must not hand these records again), and nothing is
        // checkpointed until it is.
        self.pending.extend(outputs);
        if let Err(e) = self.deliver(&self.pending).await {
            if e.is::<Fatal>() || self.pending.len() > MAX_PENDING {
                return Err(Fatal::new(format!(
                    "{} outputs of shard {} cannot be delivered: {e}",
                    self.pending.len(),
                    self.shard_id
                ))
                .into());
            }
            tracing::warn!(shard_id = %self.shard_id, pending = self.pending.len(), error = %e, "delivery failed; trying again with the next batch, nothing checkpointed");
            return Ok(());
        }
        self.pending.clear();
        metrics::gauge!(HELD, "shard_id" => self.shard_id.clone()).set(self.join.held() as f64);
        if let Some(position) = self.join.checkpoint() {
            input.checkpointer.checkpoint_at(position).await?;
        }
        Ok(())
    }

    async fn shard_ended(&mut self, input: ShardEndedInput<'_>) -> Result<(), ProcessorError> {
        // Everything still held is released: no more records come on this shard.
        let outputs = self.join.tick(i64::MAX / 2);
        self.pending.extend(outputs);
        self.deliver(&self.pending).await?;
        self.pending.clear();
        input.checkpointer.checkpoint().await?;
        Ok(())
    }

    async fn shutdown_requested(
        &mut self,
        input: ShutdownRequestedInput<'_>,
    ) -> Result<(), ProcessorError> {
        // What is held stays unreleased: the next owner reads it again from the checkpoint.
        let _ = input;
        Ok(())
    }
}

/// What [`run_with`] runs on.
pub struct Parts<C, L, O, S> {
    /// The stream client (source and output).
    pub stream: C,
    /// The lease table.
    pub leases: L,
    /// The bucket of unmatched items and bad records.
    pub objects: O,
    /// The products.
    pub products: S,
    /// Where readiness is reported.
    pub health: Health,
}

/// Runs the join of `config` on its AWS clients until `shutdown` fires.
///
/// # Errors
/// [`EnrichError`]: a bad setting, the products not loadable at start, or a fatal
/// consumer error.
pub async fn run(
    config: EnrichConfig,
    shutdown: CancellationToken,
    health: Health,
) -> Result<(), EnrichError> {
    config.validate()?;
    let clients = AwsClients::new(&config.aws).await;
    let parts = Parts {
        stream: KinesisClient::new(clients.kinesis()),
        leases: DynamoDbLeaseStore::new(clients.dynamodb(), &config.consumer.table),
        objects: S3ObjectSink::new(clients.s3(), config.output.bucket.clone()),
        products: S3Products::new(clients.s3(), &config.products.bucket, &config.products.key),
        health,
    };
    run_with(config, parts, shutdown).await
}

/// [`run`] on the given parts.
///
/// # Errors
/// As [`run`].
pub async fn run_with<C, L, O, S>(
    mut config: EnrichConfig,
    parts: Parts<C, L, O, S>,
    shutdown: CancellationToken,
) -> Result<(), EnrichError>
where
    C: StreamClient + Clone + 'static,
    L: LeaseStore,
    O: ObjectSink + Clone + 'static,
    S: ProductSource,
{
    config.validate()?;
    // Silent shards release their last items by the wall clock: called after empty reads.
    config.consumer.deliver_empty_batches = true;
    let catalog = load_products(
        parts.products,
        config.products.id_field.clone(),
        Duration::from_millis(config.products.poll_interval_ms),
        Duration::from_secs(config.products.retain_versions_hours.saturating_mul(3_600)),
        shutdown.child_token(),
    )
    .await
    .map_err(|message| EnrichError::Products {
        bucket: config.products.bucket.clone(),
        key: config.products.key.clone(),
        message,
    })?;
    let producer = Producer::start(
        parts.stream.clone(),
        config.output.stream.clone(),
        ProducerConfig {
            aggregation_enabled: config.output.aggregate,
            record_max_buffered_time_ms: config.output.max_buffered_time_ms,
            ..ProducerConfig::default()
        },
    )
    .await?;
    let producer = Arc::new(producer);
    let factory = EnrichFactory::new(&config, catalog, Arc::clone(&producer), parts.objects);
    let scheduler = Scheduler::new(config.consumer, parts.stream, parts.leases, factory)?
        .with_health(parts.health);
    tracing::info!(output = %config.output.stream, worker_id = %scheduler.worker_id(), "join starting");
    let outcome = scheduler.run(shutdown).await;
    producer.shutdown().await;
    outcome?;
    tracing::info!("join stopped");
    Ok(())
}
