//! `chief-agent`: the Amazon Kinesis Agent, for chief.
//!
//! It reads the agent's own `agent.json` ([`config`]), tails the files of each flow
//! ([`tail`]: by inode and fingerprint, through rename-and-create and copytruncate
//! rotation, deleted and late files, partial last lines), turns lines into records
//! ([`convert`]: `SINGLELINE`, `CSVTOJSON` with RFC 4180 quoting, `LOGTOJSON`,
//! `ADDMETADATA`, `ADDBRACKETS`) and sends them to Kinesis with chief's producer
//! ([`flow`]). The checkpoint ([`checkpoint`]) moves past a line only once the stream
//! acknowledged it; a record that does not convert goes to the flow's error file, never
//! dropped.
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
pub mod flow;
pub mod metrics;
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

use crate::checkpoint::Checkpoints;
use crate::config::AgentConfig;
use crate::flow::{CheckpointFile, FlowError, FlowRunner, Stats};

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
    /// A producer could not start (the stream does not exist, no credentials…).
    #[error("flow {flow}: cannot start sending to stream {stream}: {reason}")]
    Producer {
        /// The flow.
        flow: String,
        /// The stream.
        stream: String,
        /// Why.
        reason: String,
    },
    /// A flow failed.
    #[error(transparent)]
    Flow(#[from] FlowError),
}

/// The URL of a `kinesis.endpoint` (`kinesis.us-east-1.amazonaws.com` or a URL).
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
    run_with(
        agent,
        settings,
        KinesisClient::new(clients.kinesis()),
        shutdown,
        health,
    )
    .await
}

/// Runs every flow of `agent`, sending with `client`, until `shutdown`; then waits for
/// what is in flight and writes the last checkpoints.
///
/// # Errors
/// The checkpoint file cannot be read, a stream cannot be sent to, or a flow failed.
pub async fn run_with<C: StreamClient + Clone>(
    agent: AgentConfig,
    settings: AgentSettings,
    client: C,
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
        let stream = flow.kinesis_stream.clone().unwrap_or_default();
        let mut producer_config = settings.producer.clone();
        producer_config.aggregation_enabled = flow.aggregation;
        producer_config.record_max_buffered_time_ms = flow
            .max_buffer_age_millis
            .min(producer_config.record_max_buffered_time_ms.max(100));
        producer_config.collection_max_count = flow.max_buffer_size_records;
        if let Some(bytes) = flow.max_buffer_size_bytes {
            producer_config.collection_max_bytes = bytes;
        }
        let producer = Producer::start(client.clone(), &stream, producer_config)
            .await
            .map_err(|e| AgentError::Producer {
                flow: id.clone(),
                stream: stream.clone(),
                reason: e.to_string(),
            })?;
        let runner =
            FlowRunner::<C>::new(flow, Arc::new(producer), checkpoints.clone(), &error_dir)?;
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
