//! `chief-firehose`: Amazon Data Firehose's delivery, with a Kinesis stream as its
//! source, as a consumer application on chief's leases — so it scales out over workers
//! and survives their loss like every KCL application.
//!
//! One delivery per process (`config/firehose-<name>.toml`):
//!
//! - **S3** ([`s3`]): records buffered per shard (and per partition with dynamic
//!   partitioning) until the size hint (1–128 MiB) or the interval (0–900 s), then written
//!   as one object under the prefix's keys (`!{timestamp:…}`, `!{firehose:random-string}`,
//!   `!{partitionKeyFromQuery:…}`; `YYYY/MM/DD/HH/` by default) named
//!   `<delivery>-<version>-<yyyy-MM-dd-HH-mm-ss>-<uuid>`; records concatenated as
//!   Firehose does or one a line; optional GZIP. Records that cannot be partitioned go to
//!   the error output prefix with Firehose's error record format.
//! - **Elasticsearch** ([`elasticsearch`]): the same buffering, `_bulk` into the index
//!   with rotation (`analysed-logs-2026-12-04`), failed items retried for the retry
//!   duration, then backed up to S3 (`elasticsearch-failed`) with Firehose's
//!   failed-document format; `AllDocuments` backs up every record.
//!
//! A shard is checkpointed only up to the last record that is in S3 or indexed (or backed
//! up). After a crash the records after the checkpoint are delivered again
//! (at-least-once, as Firehose).
//!
//! Differences from Firehose: buffers are per shard (a checkpoint covers one shard), so a
//! stream of N shards writes N objects per interval; the partition limit (500) is per
//! shard; with `AllDocuments` the backup is one object per bulk batch.

pub mod cli;
pub mod elasticsearch;
pub mod error_record;
pub mod metrics;
mod processor;
pub mod s3;

use std::sync::Arc;

use chief_config::aws::{AwsClients, AwsConfig};
use chief_config::health::Health;
use chief_config::telemetry::{LogConfig, MetricsConfig};
use chief_consumer::{ConsumerConfig, ConsumerError, DynamoDbLeaseStore, LeaseStore, Scheduler};
use chief_sinks::elasticsearch::{ElasticsearchIndex, SearchError, SearchIndex};
use chief_sinks::object::{ObjectSink, S3ObjectSink};
use chief_stream::{KinesisClient, StreamClient};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

pub use processor::{Destination, FirehoseFactory, FirehoseProcessor};

use crate::elasticsearch::{EsDestinationConfig, EsSettings};
use crate::s3::{S3DestinationConfig, S3Settings};

/// Which destination a delivery writes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DestinationKind {
    /// `[s3]`.
    #[default]
    S3,
    /// `[elasticsearch]`, with `[s3]` for failed documents and backups.
    Elasticsearch,
}

/// `[delivery]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliveryConfig {
    /// The delivery stream's name: object names, metric labels.
    pub name: String,
    /// Its version, in object names; raise it when the config changes. Default 1.
    pub version: u32,
    /// `s3` or `elasticsearch`.
    pub destination: DestinationKind,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            name: String::new(),
            version: 1,
            destination: DestinationKind::S3,
        }
    }
}

/// The config of one delivery (`config/firehose-<name>.toml`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FirehoseConfig {
    /// Logging.
    pub log: LogConfig,
    /// Prometheus endpoint.
    pub metrics: MetricsConfig,
    /// AWS clients.
    pub aws: AwsConfig,
    /// The source stream, the lease table and the consumer's tuning.
    pub consumer: ConsumerConfig,
    /// Name, version and destination.
    pub delivery: DeliveryConfig,
    /// The S3 destination, or the Elasticsearch destination's backup bucket.
    pub s3: S3DestinationConfig,
    /// The Elasticsearch destination.
    pub elasticsearch: EsDestinationConfig,
}

impl FirehoseConfig {
    /// Checks what the delivery uses.
    ///
    /// # Errors
    /// [`FirehoseError::Config`] naming the field.
    pub fn validate(&self) -> Result<(), FirehoseError> {
        let bad = |message: String| FirehoseError::Config { message };
        if self.delivery.name.is_empty()
            || self.delivery.name.len() > 64
            || !self
                .delivery
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        {
            return Err(bad(format!(
                "delivery.name: `{}` must be 1–64 of a-z A-Z 0-9 _ . -",
                self.delivery.name
            )));
        }
        self.consumer.validate().map_err(bad)?;
        self.s3.validate().map_err(bad)?;
        if self.delivery.destination == DestinationKind::Elasticsearch {
            self.elasticsearch.validate().map_err(bad)?;
        }
        Ok(())
    }

    fn destination<I>(&self, index: Option<Arc<I>>) -> Result<Destination<I>, FirehoseError> {
        let bad = |message: String| FirehoseError::Config { message };
        let s3 = Arc::new(
            S3Settings::new(&self.s3, &self.delivery.name, self.delivery.version).map_err(bad)?,
        );
        match (self.delivery.destination, index) {
            (DestinationKind::S3, _) => Ok(Destination::S3(s3)),
            (DestinationKind::Elasticsearch, Some(index)) => Ok(Destination::Elasticsearch(
                index,
                Arc::new(EsSettings::new(&self.elasticsearch, s3).map_err(bad)?),
            )),
            (DestinationKind::Elasticsearch, None) => Err(bad(
                "the destination is Elasticsearch but no index was given".into(),
            )),
        }
    }
}

/// Why a delivery stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FirehoseError {
    /// The config is not usable.
    #[error("bad config: {message}")]
    Config {
        /// What is wrong.
        message: String,
    },
    /// The Elasticsearch client could not be set up.
    #[error("setting up the Elasticsearch client")]
    Search(#[source] SearchError),
    /// The consumer failed.
    #[error("consumer failed")]
    Consumer(#[source] ConsumerError),
}

/// The parts a delivery runs on; [`run`] builds them from the config, tests and
/// benchmarks pass others to [`run_with`].
pub struct Parts<C, L, O, I> {
    /// The stream client.
    pub stream: C,
    /// The lease table.
    pub leases: L,
    /// The bucket of objects, error output and backups.
    pub objects: O,
    /// The cluster, for the Elasticsearch destination.
    pub index: Option<Arc<I>>,
    /// Where readiness is reported (`/readyz`).
    pub health: Health,
}

/// Runs the delivery of `config` on its AWS clients until `shutdown` fires; then every
/// shard's buffers are written and checkpointed and the leases released.
///
/// # Errors
/// A bad config, an unusable Elasticsearch URL, or a consumer failure (a missing
/// stream, table or bucket, refused credentials).
pub async fn run(
    config: FirehoseConfig,
    shutdown: CancellationToken,
    health: Health,
) -> Result<(), FirehoseError> {
    config.validate()?;
    let clients = AwsClients::new(&config.aws).await;
    let index = if config.delivery.destination == DestinationKind::Elasticsearch {
        let search = config.elasticsearch.search_config();
        let index = ElasticsearchIndex::with_aws_credentials(
            &search,
            serde_json::Value::Null,
            clients.sdk_config().credentials_provider(),
            &config.aws.region,
        )
        .map_err(FirehoseError::Search)?;
        Some(Arc::new(index))
    } else {
        None
    };
    let parts = Parts {
        stream: KinesisClient::new(clients.kinesis()),
        leases: DynamoDbLeaseStore::new(clients.dynamodb(), &config.consumer.table),
        objects: S3ObjectSink::new(clients.s3(), config.s3.bucket.clone()),
        index,
        health,
    };
    run_with(config, parts, shutdown).await
}

/// [`run`] on the given parts.
///
/// # Errors
/// As [`run`].
pub async fn run_with<C, L, O, I>(
    mut config: FirehoseConfig,
    parts: Parts<C, L, O, I>,
    shutdown: CancellationToken,
) -> Result<(), FirehoseError>
where
    C: StreamClient + Clone,
    L: LeaseStore,
    O: ObjectSink + Clone + 'static,
    I: SearchIndex + 'static,
{
    config.validate()?;
    // Quiet shards still write by interval: the processor is called after empty reads.
    config.consumer.deliver_empty_batches = true;
    let destination = config.destination(parts.index)?;
    let factory = FirehoseFactory::new(&config.delivery.name, parts.objects, destination);
    let scheduler = Scheduler::new(config.consumer, parts.stream, parts.leases, factory)
        .map_err(FirehoseError::Consumer)?
        .with_health(parts.health);
    tracing::info!(delivery = %config.delivery.name, worker_id = %scheduler.worker_id(), "delivery starting");
    scheduler
        .run(shutdown)
        .await
        .map_err(FirehoseError::Consumer)?;
    tracing::info!(delivery = %config.delivery.name, "delivery stopped");
    Ok(())
}

/// The wall clock, UTC.
pub(crate) fn utc_now() -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::<chrono::Utc>::from(std::time::SystemTime::now())
}
