//! `chiefctl setup`: create the streams and the bucket the pipeline needs, idempotently.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use chief_config::aws::{AwsClients, AwsConfig};
use chief_config::telemetry::LogConfig;
use chief_stream::KinesisClient;
use serde::{Deserialize, Serialize};

/// `config/chiefctl.toml`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChiefctlConfig {
    /// Logging.
    pub log: LogConfig,
    /// AWS clients.
    pub aws: AwsConfig,
    /// What `setup` creates.
    pub setup: SetupConfig,
}

/// The `[setup]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SetupConfig {
    /// The archive bucket (S3 files for Aurora, dead letters, loader manifests).
    /// Default `chief-archive`.
    pub bucket: String,
    /// Streams and their shard counts. Default OrdersStream (4) and JobResultsStream (2),
    /// as in the chief design.
    pub streams: Vec<StreamSpec>,
    /// DynamoDB tables (on demand) to create if missing, e.g. seed 004's `OrdersEnriched`
    /// (`config/chiefctl-enrich.toml`). Default none.
    pub tables: Vec<TableSpec>,
}

/// One DynamoDB table to create: its key schema.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableSpec {
    /// Table name.
    pub name: String,
    /// The partition key.
    pub partition_key: String,
    /// Its type: `N` or `S`.
    pub partition_key_type: chief_sinks::dynamodb::KeyType,
    /// The sort key, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sort_key: Option<String>,
    /// Its type. Default `S`.
    #[serde(default = "string_key")]
    pub sort_key_type: chief_sinks::dynamodb::KeyType,
}

fn string_key() -> chief_sinks::dynamodb::KeyType {
    chief_sinks::dynamodb::KeyType::String
}

impl Default for SetupConfig {
    fn default() -> Self {
        Self {
            bucket: "chief-archive".to_owned(),
            streams: vec![
                StreamSpec {
                    name: "OrdersStream".to_owned(),
                    shards: 4,
                },
                StreamSpec {
                    name: "JobResultsStream".to_owned(),
                    shards: 2,
                },
            ],
            tables: Vec::new(),
        }
    }
}

/// One stream to create.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamSpec {
    /// Stream name.
    pub name: String,
    /// Shard count at creation.
    pub shards: i32,
}

/// Entry point of `chiefctl setup`.
pub fn main(config_paths: &[PathBuf], print_config: bool) -> ExitCode {
    match run_main(config_paths, print_config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("chiefctl setup: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run_main(config_paths: &[PathBuf], print_config: bool) -> anyhow::Result<()> {
    let config: ChiefctlConfig = chief_config::load(config_paths).context("loading config")?;
    if print_config {
        print!("{}", chief_config::to_toml(&config)?);
        return Ok(());
    }
    chief_config::telemetry::init(&config.log);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    runtime.block_on(async {
        let clients = AwsClients::new(&config.aws).await;
        for line in run(&clients, &config.setup).await? {
            println!("{line}");
        }
        Ok(())
    })
}

/// Creates what is missing; returns one line per resource saying what was done.
pub async fn run(clients: &AwsClients, setup: &SetupConfig) -> anyhow::Result<Vec<String>> {
    let mut done = Vec::new();
    let kinesis = KinesisClient::new(clients.kinesis());
    for spec in &setup.streams {
        done.push(ensure_stream(&kinesis, spec).await?);
    }
    done.push(ensure_bucket(&clients.s3(), &setup.bucket, clients).await?);
    for spec in &setup.tables {
        done.push(ensure_table(&clients.dynamodb(), spec).await?);
    }
    Ok(done)
}

async fn ensure_table(
    dynamodb: &aws_sdk_dynamodb::Client,
    spec: &TableSpec,
) -> anyhow::Result<String> {
    let schema = chief_sinks::dynamodb::KeySchema {
        partition: (spec.partition_key.clone(), spec.partition_key_type),
        sort: spec.sort_key.clone().map(|k| (k, spec.sort_key_type)),
    };
    let created = chief_sinks::dynamodb::ensure_table(dynamodb, &spec.name, &schema)
        .await
        .with_context(|| format!("creating table {}", spec.name))?;
    Ok(format!(
        "table {}: {}, ACTIVE",
        spec.name,
        if created { "created" } else { "exists" }
    ))
}

async fn ensure_stream(kinesis: &KinesisClient, spec: &StreamSpec) -> anyhow::Result<String> {
    let created = kinesis
        .create_stream(&spec.name, spec.shards)
        .await
        .with_context(|| format!("creating stream {}", spec.name))?;
    // kinesis-local takes ~0.5 s, AWS a few seconds.
    let shards = kinesis
        .wait_until_active(&spec.name, Duration::from_secs(60))
        .await
        .with_context(|| format!("waiting for stream {} to become ACTIVE", spec.name))?;
    Ok(if created {
        format!("stream {}: created, {} shards, ACTIVE", spec.name, shards)
    } else if shards != spec.shards {
        format!(
            "stream {}: exists with {} open shards (config says {}; left as it is)",
            spec.name, shards, spec.shards
        )
    } else {
        format!("stream {}: exists, {} shards, ACTIVE", spec.name, shards)
    })
}

async fn ensure_bucket(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    clients: &AwsClients,
) -> anyhow::Result<String> {
    if s3.head_bucket().bucket(bucket).send().await.is_ok() {
        return Ok(format!("bucket {bucket}: exists"));
    }
    let mut req = s3.create_bucket().bucket(bucket);
    let region = clients
        .sdk_config()
        .region()
        .map(|r| r.as_ref().to_owned())
        .unwrap_or_default();
    if !region.is_empty() && region != "us-east-1" {
        req = req.create_bucket_configuration(
            aws_sdk_s3::types::CreateBucketConfiguration::builder()
                .location_constraint(aws_sdk_s3::types::BucketLocationConstraint::from(
                    region.as_str(),
                ))
                .build(),
        );
    }
    match req.send().await {
        Ok(_) => Ok(format!("bucket {bucket}: created")),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_bucket_already_owned_by_you()) =>
        {
            Ok(format!("bucket {bucket}: exists"))
        }
        Err(e) => Err(anyhow::Error::new(e)).with_context(|| format!("creating bucket {bucket}")),
    }
}
