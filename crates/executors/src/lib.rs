//! chief's four executors: KCL-style consumer applications that read orders or job
//! results from Kinesis, drop the replays at-least-once delivery causes (a bounded
//! window keyed by `orderid`), and sink them to S3 (files ready for Aurora's
//! `LOAD DATA FROM S3`) and/or Elasticsearch (`_id = orderid`).
//!
//! | binary | reads | writes |
//! |---|---|---|
//! | `chief-order-factory-s3` | OrdersStream | S3 `ChiefOrderS3/YYYY/MM/DD/HH/…` |
//! | `chief-order-es-s3` | OrdersStream | S3 (its own prefix) and index `orders` |
//! | `chief-jobresult-es` | JobResultsStream | index `jobresults` |
//! | `chief-jobresult-notify-s3` | JobResultsStream | S3 `ChiefJobResultNotifyS3/YYYY/MM/DD/HH/…` |
//!
//! Each binary is thin ([`cli::main`]): config → [`run`] → the consumer's
//! [`Scheduler`]. Every shard gets an [`ExecutorProcessor`] holding the shard's sinks
//! ([`ShardArchiver`](chief_pipeline::archive::ShardArchiver),
//! [`ShardIndexer`](chief_pipeline::indexer::ShardIndexer)) and its de-duplication window; it checkpoints
//! only the position every sink reports durable (written, indexed, dead-lettered or a
//! dropped duplicate), and on SIGTERM flushes, checkpoints and lets the scheduler release
//! the leases. Records that do not parse, and documents the cluster rejects for good, go
//! to dead-letter objects under `errors/<executor>/YYYY/MM/DD/HH/`.

pub mod cli;
mod processor;

use std::sync::Arc;
use std::time::Duration;

use chief_config::aws::{AwsClients, AwsConfig};
use chief_config::health::Health;
use chief_config::telemetry::{LogConfig, MetricsConfig};
use chief_consumer::{ConsumerConfig, ConsumerError, DynamoDbLeaseStore, LeaseStore, Scheduler};
use chief_pipeline::archive::{ArchiveConfig, RowKind};
use chief_pipeline::dedup::DedupConfig;
use chief_pipeline::object_sink::{ObjectSink, S3ObjectSink};
use chief_pipeline::search::{
    ElasticsearchIndex, SearchConfig, SearchError, SearchIndex, job_results_mapping, orders_mapping,
};
use chief_stream::{KinesisClient, StreamClient};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

pub use processor::{ExecutorFactory, ExecutorProcessor};

/// One of the four executors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Executor {
    /// OrdersStream → S3 `ChiefOrderS3/…`.
    OrderFactoryS3,
    /// OrdersStream → S3 and Elasticsearch `orders`.
    OrderEsS3,
    /// JobResultsStream → Elasticsearch `jobresults`.
    JobResultEs,
    /// JobResultsStream → S3 `ChiefJobResultNotifyS3/…`.
    JobResultNotifyS3,
}

impl Executor {
    /// All four.
    pub const ALL: [Executor; 4] = [
        Executor::OrderFactoryS3,
        Executor::OrderEsS3,
        Executor::JobResultEs,
        Executor::JobResultNotifyS3,
    ];

    /// The binary's name, also used in dead-letter keys, metric labels and as the
    /// default lease table (KCL application name).
    pub fn name(self) -> &'static str {
        match self {
            Executor::OrderFactoryS3 => "chief-order-factory-s3",
            Executor::OrderEsS3 => "chief-order-es-s3",
            Executor::JobResultEs => "chief-jobresult-es",
            Executor::JobResultNotifyS3 => "chief-jobresult-notify-s3",
        }
    }

    /// What its records are.
    pub fn kind(self) -> RowKind {
        match self {
            Executor::OrderFactoryS3 | Executor::OrderEsS3 => RowKind::Orders,
            Executor::JobResultEs | Executor::JobResultNotifyS3 => RowKind::JobResults,
        }
    }

    /// Whether it writes S3 batch files.
    pub fn writes_archive(self) -> bool {
        !matches!(self, Executor::JobResultEs)
    }

    /// Whether it writes to Elasticsearch.
    pub fn writes_search(self) -> bool {
        matches!(self, Executor::OrderEsS3 | Executor::JobResultEs)
    }

    /// The index mapping it creates when the index is missing.
    pub fn mapping(self) -> serde_json::Value {
        match self.kind() {
            RowKind::JobResults => job_results_mapping(),
            _ => orders_mapping(),
        }
    }
}

impl std::fmt::Display for Executor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The config of an executor (`config/<executor>.toml`); every field has a default.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExecutorConfig {
    /// Logging.
    pub log: LogConfig,
    /// Prometheus endpoint.
    pub metrics: MetricsConfig,
    /// AWS clients (Kinesis, DynamoDB for leases, S3).
    pub aws: AwsConfig,
    /// The stream, the lease table (one per executor) and the consumer's tuning.
    pub consumer: ConsumerConfig,
    /// The de-duplication window of each shard.
    pub dedup: DedupConfig,
    /// The S3 batch files (executors that write them) and, for every executor, the
    /// bucket and prefix of dead letters.
    pub archive: ArchiveConfig,
    /// The Elasticsearch cluster and index (executors that write to it).
    pub elasticsearch: SearchConfig,
}

impl ExecutorConfig {
    /// Checks what `executor` uses.
    ///
    /// # Errors
    /// [`ExecutorError::Config`] naming the field.
    pub fn validate(&self, executor: Executor) -> Result<(), ExecutorError> {
        let bad = |message: String| ExecutorError::Config { executor, message };
        self.consumer.validate().map_err(bad)?;
        if executor.writes_archive() {
            self.archive.validate().map_err(bad)?;
        } else {
            // Dead letters only: no batch prefix to set.
            self.archive.validate_dead_letters().map_err(bad)?;
        }
        if executor.writes_search() {
            self.elasticsearch.validate().map_err(bad)?;
        }
        Ok(())
    }
}

/// Why an executor stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExecutorError {
    /// The config is not usable.
    #[error("bad config: {message}")]
    Config {
        /// The executor.
        executor: Executor,
        /// What is wrong.
        message: String,
    },
    /// The Elasticsearch client could not be set up.
    #[error("setting up the Elasticsearch client")]
    Search {
        /// The executor.
        executor: Executor,
        /// The error.
        #[source]
        source: SearchError,
    },
    /// The index could not be created or found, for a reason no retry can fix
    /// (credentials refused, no permission, a mapping the cluster refuses).
    #[error("Elasticsearch index `{index}` unusable")]
    Index {
        /// The executor.
        executor: Executor,
        /// The index.
        index: String,
        /// The error.
        #[source]
        source: SearchError,
    },
    /// The consumer failed.
    #[error("consumer failed")]
    Consumer {
        /// The executor.
        executor: Executor,
        /// The error.
        #[source]
        source: ConsumerError,
    },
}

/// The parts an executor runs on; [`run`] builds them from the config, tests and
/// benchmarks pass in-memory ones to [`run_with`].
pub struct Parts<C, L, O, I> {
    /// The stream client.
    pub stream: C,
    /// The lease table.
    pub leases: L,
    /// Where batch files and dead letters go.
    pub objects: O,
    /// The search index, for executors that write to one.
    pub index: Option<Arc<I>>,
    /// Where the executor reports its readiness (`/readyz`).
    pub health: Health,
}

/// Runs `executor` with the AWS clients and Elasticsearch cluster of `config` until
/// `shutdown` fires; then every shard's batch is flushed and checkpointed and the
/// leases are released.
///
/// # Errors
/// A bad config, an unusable Elasticsearch URL, or a consumer failure.
pub async fn run(
    executor: Executor,
    config: ExecutorConfig,
    shutdown: CancellationToken,
    health: Health,
) -> Result<(), ExecutorError> {
    config.validate(executor)?;
    let clients = AwsClients::new(&config.aws).await;
    let index = if executor.writes_search() {
        // Amazon OpenSearch Service with IAM: signed with this process's AWS credentials
        // (its role), the same chain as its other AWS clients.
        let index = ElasticsearchIndex::with_aws_credentials(
            &config.elasticsearch,
            executor.mapping(),
            clients.sdk_config().credentials_provider(),
            &config.aws.region,
        )
        .map_err(|source| ExecutorError::Search { executor, source })?;
        Some(Arc::new(index))
    } else {
        None
    };
    let parts = Parts {
        stream: KinesisClient::new(clients.kinesis()),
        leases: DynamoDbLeaseStore::new(clients.dynamodb(), &config.consumer.table),
        objects: S3ObjectSink::new(clients.s3(), config.archive.bucket.clone()),
        index,
        health,
    };
    run_with(executor, config, parts, shutdown).await
}

/// [`run`] on the given parts.
///
/// # Errors
/// As [`run`].
pub async fn run_with<C, L, O, I>(
    executor: Executor,
    mut config: ExecutorConfig,
    parts: Parts<C, L, O, I>,
    shutdown: CancellationToken,
) -> Result<(), ExecutorError>
where
    C: StreamClient + Clone,
    L: LeaseStore,
    O: ObjectSink + Clone + 'static,
    I: SearchIndex + 'static,
{
    config.validate(executor)?;
    // Quiet shards still flush by age: the processor is called after empty reads too.
    config.consumer.deliver_empty_batches = true;
    let index = match (executor.writes_search(), parts.index) {
        (true, Some(index)) => {
            let ready = ensure_index(
                executor,
                index.as_ref(),
                &config.elasticsearch,
                &shutdown,
                &parts.health,
            )
            .await
            .map_err(|source| ExecutorError::Index {
                executor,
                index: config.elasticsearch.index.clone(),
                source,
            })?;
            if !ready {
                return Ok(());
            }
            Some(index)
        }
        (true, None) => {
            return Err(ExecutorError::Config {
                executor,
                message: "this executor writes to Elasticsearch but has no index".into(),
            });
        }
        (false, _) => None,
    };
    let factory = ExecutorFactory::new(
        executor,
        &config,
        executor.writes_archive().then(|| parts.objects.clone()),
        parts.objects,
        index,
    );
    let scheduler = Scheduler::new(config.consumer, parts.stream, parts.leases, factory)
        .map_err(|source| ExecutorError::Consumer { executor, source })?
        .with_health(parts.health);
    tracing::info!(executor = %executor, worker_id = %scheduler.worker_id(), "executor starting");
    scheduler
        .run(shutdown)
        .await
        .map_err(|source| ExecutorError::Consumer { executor, source })?;
    tracing::info!(executor = %executor, "executor stopped");
    Ok(())
}

/// Creates the index if it is missing, retrying while the cluster is unreachable or
/// overloaded; false if `shutdown` fired first; an error no retry can fix (401, 403, a
/// refused mapping) at once.
async fn ensure_index<I: SearchIndex>(
    executor: Executor,
    index: &I,
    config: &SearchConfig,
    shutdown: &CancellationToken,
    health: &Health,
) -> Result<bool, SearchError> {
    let mut attempt = 0;
    loop {
        match index.ensure_index().await {
            Ok(created) => {
                health.pass("elasticsearch");
                tracing::info!(executor = %executor, index = %config.index, created, "index ready");
                return Ok(true);
            }
            Err(error) if !error.is_retryable() => return Err(error),
            Err(error) => {
                attempt += 1;
                health.fail(
                    "elasticsearch",
                    format!("cannot create or find index {}: {error}", config.index),
                );
                let delay = config
                    .retry
                    .jittered(attempt)
                    .max(Duration::from_millis(50));
                tracing::warn!(
                    executor = %executor,
                    index = %config.index,
                    attempt,
                    error = %error,
                    delay_ms = delay.as_millis() as u64,
                    "cannot create or find the index yet; retrying"
                );
                tokio::select! {
                    () = shutdown.cancelled() => return Ok(false),
                    () = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
}
