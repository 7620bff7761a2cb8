//! `chief-agent`: the Amazon Kinesis Agent, for chief.
//!
//! It reads the agent's own `agent.json` ([`config`]), tails the files of each flow
//! ([`tail`]: by inode and fingerprint, through rename-and-create and copytruncate
//! rotation, deleted and late files, partial last lines), turns lines into records
//! ([`convert`]: `SINGLELINE`, `CSVTOJSON` with RFC 4180 quoting, `LOGTOJSON`,
//! `ADDMETADATA`, `ADDBRACKETS`) and sends them to Kinesis with chief's producer or to a
//! Firehose delivery stream with `PutRecordBatch` ([`flow`], [`send`], [`firehose`]). The
//! checkpoint ([`checkpoint`]) moves past a line only once the destination acknowledged
//! it; a record that does not convert goes to the flow's error output (a file or an
//! error stream), never dropped.
//!
//! Where the Java agent is wrong, chief is right: a CSV row with the wrong number of
//! columns is an error record (the agent shifts or drops fields), quoted fields may hold
//! the delimiter, a log line that does not match is an error record (the agent drops
//! it), a record that does not convert is an error record (the agent sends the raw line),
//! and checkpoints never pass a line that was not acknowledged (the agent's own source
//! says its checkpointer "could potentially create gaps and lead to data loss").

pub mod checkpoint;
pub mod cli;
pub mod config;
pub mod convert;
pub mod firehose;
pub mod flow;
pub mod metrics;
pub mod send;
pub mod tail;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chief_config::aws::{AwsClients, AwsConfig};
use chief_config::health::Health;
use chief_config::telemetry::{LogConfig, MetricsConfig};
use chief_producer::{Producer, ProducerConfig};
use chief_stream::{KinesisClient, StreamClient};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::checkpoint::CheckpointFile;
use crate::checkpoint::Checkpoints;
use crate::config::{AgentConfig, Destination, Flow};
use crate::firehose::{FirehoseApi, FirehoseClient, FirehoseSender, FirehoseSettings};
use crate::flow::{FlowError, FlowRunner, Stats};
use crate::send::Sender;

/// chief's own settings of the agent (`--settings config/agent.toml`, `CHIEF__…`): what
/// `agent.json` has no word for.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentSettings {
    /// Logging.
    pub log: LogConfig,
    /// `/healthz`, `/metrics`.
    pub metrics: MetricsConfig,
    /// AWS clients; `kinesis.endpoint` of `agent.json` overrides `[aws.kinesis]`.
    pub aws: AwsConfig,
    /// The producer (aggregation off unless a flow sets `chief.aggregation`).
    pub producer: ProducerConfig,
    /// Longest a stop waits for records in flight, ms. Default 30,000.
    pub drain_ms: u64,
    /// Records of a flow sent and not yet acknowledged before reading waits (as the
    /// agent's bounded publish queue). Default 5,000.
    pub max_in_flight_records: usize,
}

/// Why the agent stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    /// `agent.json` is not usable.
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    /// The checkpoint file cannot be read.
    #[error(transparent)]
    Checkpoint(#[from] checkpoint::CheckpointError),
    /// A destination cannot be sent to (the stream does not exist, no credentials…).
    #[error("flow {flow}: cannot send to {destination}: {reason}")]
    Destination {
        /// The flow.
        flow: String,
        /// The stream or delivery stream.
        destination: Destination,
        /// Why.
        reason: String,
    },
    /// A flow failed.
    #[error(transparent)]
    Flow(#[from] FlowError),
}

/// The URL of a `kinesis.endpoint` or `firehose.endpoint` (`kinesis.us-east-1.amazonaws.com`
/// or a URL).
fn endpoint_url(endpoint: &str) -> String {
    if endpoint.contains("://") {
        endpoint.to_owned()
    } else {
        format!("https://{endpoint}")
    }
}

/// Runs every flow of `agent` with the AWS clients of `settings` until `shutdown`.
///
/// # Errors
/// As [`run_with`].
pub async fn run(
    agent: AgentConfig,
    mut settings: AgentSettings,
    shutdown: CancellationToken,
    health: Health,
) -> Result<Vec<Stats>, AgentError> {
    if let Some(endpoint) = &agent.kinesis_endpoint {
        // The agent.json's endpoint wins, unless the environment set one (local runs).
        if settings.aws.kinesis.endpoint.is_none() {
            settings.aws.kinesis.endpoint = Some(endpoint_url(endpoint));
        }
    }
    if let Some(endpoint) = &agent.firehose_endpoint
        && settings.aws.firehose.endpoint.is_none()
    {
        settings.aws.firehose.endpoint = Some(endpoint_url(endpoint));
    }
    // agent.json's credentials and role, as the Java agent takes them (chief's settings
    // win where both are set).
    if let (Some(id), Some(secret), None) = (
        &agent.aws_access_key_id,
        &agent.aws_secret_access_key,
        &settings.aws.static_credentials,
    ) {
        settings.aws.static_credentials = Some(chief_config::aws::StaticCredentials {
            access_key_id: id.clone(),
            secret_access_key: secret.clone(),
        });
    }
    if settings.aws.role_arn.is_none() {
        settings.aws.role_arn.clone_from(&agent.assume_role_arn);
    }
    let clients = AwsClients::new(&settings.aws).await;
    let mut firehose = aws_sdk_firehose::config::Builder::from(clients.sdk_config())
        .interceptor(chief_config::aws::CountCalls);
    if let Some(url) = &settings.aws.firehose.endpoint {
        firehose = firehose.endpoint_url(url);
    }
    let firehose = FirehoseClient::new(aws_sdk_firehose::Client::from_conf(firehose.build()));
    run_with(
        agent,
        settings,
        KinesisClient::new(clients.kinesis()),
        firehose,
        shutdown,
        health,
    )
    .await
}

/// A sender to `destination` for `flow`: chief's producer with the flow's buffer
/// settings for Kinesis, a [`FirehoseSender`] for Firehose.
async fn sender<C: StreamClient + Clone, F: FirehoseApi>(
    flow: &Flow,
    destination: Destination,
    settings: &AgentSettings,
    client: &C,
    firehose: &F,
) -> Result<Sender, AgentError> {
    let refused = |reason: String| AgentError::Destination {
        flow: flow.id(),
        destination: destination.clone(),
        reason,
    };
    match &destination {
        Destination::Kinesis(stream) => {
            let mut config = settings.producer.clone();
            config.aggregation_enabled = flow.aggregation;
            config.record_max_buffered_time_ms = flow
                .max_buffer_age_millis
                .min(config.record_max_buffered_time_ms.max(100));
            config.collection_max_count = flow.max_buffer_size_records;
            if let Some(bytes) = flow.max_buffer_size_bytes {
                config.collection_max_bytes = bytes;
            }
            let producer = Producer::start(client.clone(), stream, config)
                .await
                .map_err(|e| refused(e.to_string()))?;
            Ok(Sender::Kinesis(Arc::new(producer)))
        }
        Destination::Firehose(stream) => {
            let defaults = FirehoseSettings::default();
            let firehose_settings = FirehoseSettings {
                max_records: flow.max_buffer_size_records,
                max_bytes: flow.max_buffer_size_bytes.unwrap_or(defaults.max_bytes),
                // As for Kinesis: the flow's age, at most the producer's buffering time.
                max_age: Duration::from_millis(
                    flow.max_buffer_age_millis
                        .min(settings.producer.record_max_buffered_time_ms.max(100)),
                ),
                initial_backoff: flow
                    .retry_initial_backoff_millis
                    .map_or(defaults.initial_backoff, Duration::from_millis),
                max_backoff: flow
                    .retry_max_backoff_millis
                    .map_or(defaults.max_backoff, Duration::from_millis),
                ..defaults
            };
            let sender = FirehoseSender::start(firehose.clone(), stream, firehose_settings)
                .await
                .map_err(|e| refused(e.to_string()))?;
            Ok(Sender::Firehose(Arc::new(sender)))
        }
    }
}

/// Runs every flow of `agent`, sending to Kinesis with `client` and to Firehose with
/// `firehose`, until `shutdown`; then waits for what is in flight and writes the last
/// checkpoints.
///
/// # Errors
/// The checkpoint file cannot be read, a destination cannot be sent to, or a flow failed.
pub async fn run_with<C: StreamClient + Clone, F: FirehoseApi>(
    agent: AgentConfig,
    settings: AgentSettings,
    client: C,
    firehose: F,
    shutdown: CancellationToken,
    health: Health,
) -> Result<Vec<Stats>, AgentError> {
    let checkpoints = CheckpointFile::new(
        agent.checkpoint_file.clone(),
        Checkpoints::load(&agent.checkpoint_file)?,
    );
    let error_dir = error_dir(&agent.checkpoint_file);
    let mut tasks = Vec::new();
    for flow in agent.flows {
        let id = flow.id();
        let to = sender(&flow, flow.destination(), &settings, &client, &firehose).await?;
        let errors = match flow.error_destination() {
            Some(destination) => {
                Some(sender(&flow, destination, &settings, &client, &firehose).await?)
            }
            None => None,
        };
        let mut runner = FlowRunner::new(flow, to, errors, checkpoints.clone(), &error_dir)?;
        if settings.max_in_flight_records > 0 {
            runner = runner.with_max_in_flight(settings.max_in_flight_records);
        }
        health.pass(&format!("flow {id}"));
        let token = shutdown.clone();
        let drain = Duration::from_millis(if settings.drain_ms == 0 {
            30_000
        } else {
            settings.drain_ms
        });
        tasks.push(tokio::spawn(runner.run(token, drain)));
    }
    let mut stats = Vec::new();
    let mut failure = None;
    for task in tasks {
        match task.await {
            Ok(Ok(s)) => stats.push(s),
            Ok(Err(e)) => {
                // One flow failing stops the others (exit non-zero, systemd restarts).
                shutdown.cancel();
                failure.get_or_insert(AgentError::Flow(e));
            }
            Err(join) => {
                shutdown.cancel();
                failure.get_or_insert(AgentError::Flow(FlowError::Config {
                    flow: "?".into(),
                    message: join.to_string(),
                }));
            }
        }
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(stats),
    }
}

/// Where error files go by default: `<checkpointFile>.errors/`.
pub fn error_dir(checkpoint_file: &Path) -> PathBuf {
    let mut name = checkpoint_file.as_os_str().to_owned();
    name.push(".errors");
    PathBuf::from(name)
}
