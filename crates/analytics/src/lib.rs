//! `chief-analytics`: windowed aggregation on chief's consumer leases, exact whatever
//! the number of workers, after a kill, and across a split or merge.
//!
//! Two stages, as the design has it (never one worker reading everything):
//! - [`partial`]: per shard, records → partial aggregates per window and group; a
//!   window closes for the shard by the shard's newest record time plus the allowed
//!   lateness; late records go to a late output; the shard is checkpointed no further
//!   than the first record of its oldest open window.
//! - [`merge`]: per window, the partials of every shard merged once no shard can add to
//!   it (each past the window, finished, or idle for the idle timeout), the `having`
//!   filter applied, rows with deterministic ids.
//!
//! The application is declared in TOML ([`app`]).

pub mod aggregate;
pub mod alert;
pub mod app;
pub mod condition;
pub mod enrich;
pub mod ingest;
pub mod join;
pub mod merge;
pub mod parse;
pub mod partial;
pub mod window;

pub use app::{App, AppError};
pub use merge::{ShardProgress, WindowResult, complete, merge};
pub use parse::{BadRecord, Parser};
pub use partial::{Input, Partial, Resume, ShardAggregator, Step};
pub use window::Window;
pub mod cli;
pub mod merger;
pub mod metrics;
pub mod processor;
pub mod put;
pub mod store;

use std::sync::Arc;
use std::time::Duration;

use chief_config::aws::{AwsClients, AwsConfig};
use chief_config::health::Health;
use chief_config::telemetry::{LogConfig, MetricsConfig};
use chief_consumer::{ConsumerConfig, ConsumerError, DynamoDbLeaseStore, LeaseStore, Scheduler};
use chief_sinks::elasticsearch::{ElasticsearchIndex, SearchConfig, SearchIndex};
use chief_sinks::object::{ObjectSink, S3ObjectSink};
use chief_stream::{KinesisClient, StreamClient};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::alert::{AlertConfig, AlertSender, AwsAlertSender};
use crate::merger::{MergeError, Merger, Outputs};
use crate::processor::AnalyticsFactory;
use crate::store::{DynamoDbWindowStore, StoreError, WindowStore};

/// `config/analytics-<name>.toml`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AnalyticsConfig {
    /// `[log]`.
    pub log: LogConfig,
    /// `[metrics]`.
    pub metrics: MetricsConfig,
    /// `[aws]`.
    pub aws: AwsConfig,
    /// `[consumer]`: the source stream and the lease table.
    pub consumer: ConsumerConfig,
    /// `[app]`: the application ([`App`]).
    pub app: App,
    /// `[store]`.
    pub store: StoreConfig,
    /// `[merge]`.
    pub merge: MergeConfig,
    /// `[output.s3]`, `[output.elasticsearch]`.
    pub output: OutputConfig,
    /// `[[alert]]`: conditions on a window's result, sent once per window.
    pub alert: Vec<AlertConfig>,
}

/// `[store]`: the window table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// The DynamoDB table (created if missing): one per application.
    pub table: String,
}

/// `[merge]`: the second stage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MergeConfig {
    /// How often pending windows are looked at, ms. Default 1,000.
    pub interval_ms: u64,
}

impl Default for MergeConfig {
    fn default() -> Self {
        Self { interval_ms: 1_000 }
    }
}

/// `[output]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutputConfig {
    /// Window results as objects.
    pub s3: Option<S3Output>,
    /// Window results as documents; `index` is the base name, rotated daily
    /// (`analysed-logs-2026-12-04`).
    pub elasticsearch: Option<SearchConfig>,
    /// Window results as records of a stream.
    pub kinesis: Option<KinesisOutput>,
}

/// `[output.kinesis]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KinesisOutput {
    /// The stream: a record per row (its JSON with `id`), partition key the id.
    pub stream: String,
}

/// `[output.s3]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct S3Output {
    /// The bucket.
    pub bucket: String,
    /// The key prefix. Default `analytics/`.
    pub prefix: String,
}

/// Why the service stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AnalyticsError {
    /// The config is not usable.
    #[error("bad config: {0}")]
    Config(String),
    /// The application declaration.
    #[error(transparent)]
    App(#[from] AppError),
    /// The window table.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The second stage.
    #[error(transparent)]
    Merge(#[from] MergeError),
    /// The Elasticsearch client.
    #[error("setting up the Elasticsearch client: {0}")]
    Search(String),
    /// The consumer.
    #[error("consumer failed")]
    Consumer(#[source] ConsumerError),
}

impl AnalyticsConfig {
    /// Checks the config.
    ///
    /// # Errors
    /// The first setting that is not usable.
    pub fn validate(&self) -> Result<&App, AnalyticsError> {
        let app = &self.app;
        app.check()?;
        self.consumer.validate().map_err(AnalyticsError::Config)?;
        if self.store.table.is_empty() {
            return Err(AnalyticsError::Config("store.table is empty".into()));
        }
        if let Some(s3) = &self.output.s3
            && s3.bucket.is_empty()
        {
            return Err(AnalyticsError::Config("output.s3.bucket is empty".into()));
        }
        if let Some(es) = &self.output.elasticsearch {
            es.validate()
                .map_err(|e| AnalyticsError::Config(format!("output.elasticsearch: {e}")))?;
        }
        for alert in &self.alert {
            alert.validate().map_err(AnalyticsError::Config)?;
        }
        if let Some(k) = &self.output.kinesis
            && k.stream.is_empty()
        {
            return Err(AnalyticsError::Config(
                "output.kinesis.stream is empty".into(),
            ));
        }
        if self.output.s3.is_none()
            && self.output.elasticsearch.is_none()
            && self.output.kinesis.is_none()
        {
            return Err(AnalyticsError::Config(
                "no output: set [output.s3], [output.elasticsearch] or [output.kinesis]".into(),
            ));
        }
        Ok(app)
    }
}

/// The parts the service runs on (real clients, or in-memory twins in tests).
pub struct Parts<C, L, S, O, I, A> {
    /// Where alerts go.
    pub alerts: A,
    /// The stream.
    pub stream: C,
    /// The lease table.
    pub leases: L,
    /// The window table.
    pub store: S,
    /// The S3 output.
    pub objects: Option<O>,
    /// The Elasticsearch output.
    pub index: Option<Arc<I>>,
    /// Health for `/healthz`.
    pub health: Health,
}

/// Runs the service on AWS (or the local stack) until `shutdown`.
///
/// # Errors
/// A bad config, a missing table or stream, a fatal sink error.
pub async fn run(
    config: AnalyticsConfig,
    shutdown: CancellationToken,
    health: Health,
) -> Result<(), AnalyticsError> {
    config.validate()?;
    let clients = AwsClients::new(&config.aws).await;
    let index = match &config.output.elasticsearch {
        Some(search) => Some(Arc::new(
            ElasticsearchIndex::with_aws_credentials(
                search,
                serde_json::Value::Null,
                clients.sdk_config().credentials_provider(),
                &config.aws.region,
            )
            .map_err(|e| AnalyticsError::Search(e.to_string()))?,
        )),
        None => None,
    };
    let sdk = clients.sdk_config();
    let mut ses = aws_sdk_sesv2::config::Builder::from(sdk);
    if let Some(url) = &config.aws.ses.endpoint {
        ses = ses.endpoint_url(url);
    }
    let mut sns = aws_sdk_sns::config::Builder::from(sdk);
    if let Some(url) = &config.aws.sns.endpoint {
        sns = sns.endpoint_url(url);
    }
    let parts = Parts {
        alerts: AwsAlertSender::new(
            aws_sdk_sesv2::Client::from_conf(ses.build()),
            aws_sdk_sns::Client::from_conf(sns.build()),
        ),
        stream: KinesisClient::new(clients.kinesis()),
        leases: DynamoDbLeaseStore::new(clients.dynamodb(), &config.consumer.table),
        store: DynamoDbWindowStore::new(clients.dynamodb(), &config.store.table),
        objects: config
            .output
            .s3
            .as_ref()
            .map(|s3| S3ObjectSink::new(clients.s3(), s3.bucket.clone())),
        index,
        health,
    };
    run_with(config, parts, shutdown).await
}

/// [`run`] on the given parts: the first stage under the consumer's scheduler, the
/// second as a loop beside it.
///
/// # Errors
/// As [`run`].
pub async fn run_with<C, L, S, O, I, A>(
    mut config: AnalyticsConfig,
    parts: Parts<C, L, S, O, I, A>,
    shutdown: CancellationToken,
) -> Result<(), AnalyticsError>
where
    C: StreamClient + Clone,
    L: LeaseStore,
    S: WindowStore,
    O: ObjectSink + 'static,
    I: SearchIndex + 'static,
    A: AlertSender + 'static,
{
    let app = Arc::new(config.validate()?.clone());
    let parser = Arc::new(Parser::new(&app).map_err(|e| AnalyticsError::Config(e.to_string()))?);
    parts.store.ensure().await?;
    // Quiet shards report that they are alive (and idle): the processor is called after
    // empty reads.
    config.consumer.deliver_empty_batches = true;
    let outputs = Outputs {
        s3: parts.objects.map(|o| {
            let prefix = config
                .output
                .s3
                .as_ref()
                .map(|s| s.prefix.clone())
                .unwrap_or_default();
            (o, prefix)
        }),
        elasticsearch: parts.index.map(|i| {
            let (name, retry) = config
                .output
                .elasticsearch
                .as_ref()
                .map(|e| (e.index.clone(), e.retry))
                .unwrap_or_default();
            (i, name, retry)
        }),
        kinesis: config.output.kinesis.as_ref().map(|k| k.stream.clone()),
    };
    let mut alerts = Vec::new();
    for alert in &config.alert {
        let condition = alert.validate().map_err(AnalyticsError::Config)?;
        alerts.push((alert.clone(), condition));
    }
    let merger = Merger::new(
        app.clone(),
        parts.store.clone(),
        parts.stream.clone(),
        &config.consumer.stream,
        outputs,
        alerts,
        parts.alerts,
    );
    let factory = AnalyticsFactory::new(app.clone(), parser, parts.store);
    let interval = Duration::from_millis(config.merge.interval_ms.max(10));
    let scheduler = Scheduler::new(config.consumer, parts.stream, parts.leases, factory)
        .map_err(AnalyticsError::Consumer)?
        .with_health(parts.health);
    tracing::info!(app = %app.name, worker_id = %scheduler.worker_id(), "analytics starting");
    let merging = shutdown.child_token();
    let end_merging = merging.clone();
    let stop = shutdown.clone();
    let merge_task = tokio::spawn(async move {
        let merged = merger.run(interval, merging).await;
        if merged.is_err() {
            // A fatal output or store error stops the service (gracefully, then exit 1).
            stop.cancel();
        }
        merged
    });
    let consumed = scheduler.run(shutdown.clone()).await;
    end_merging.cancel();
    let merged = merge_task
        .await
        .map_err(|e| AnalyticsError::Config(format!("the merge task panicked: {e}")))?;
    consumed.map_err(AnalyticsError::Consumer)?;
    merged?;
    tracing::info!(app = %app.name, "analytics stopped");
    Ok(())
}
