//! `chief-s3-ingest` (seed 003): log files uploaded to S3 → their new lines → a stream.
//!
//! The bucket sends `s3:ObjectCreated:*` notifications to an SQS queue (the seed used a
//! Lambda; moto cannot run one). For each notified object the lines added since the last
//! version of that key are sent — the seed's hosts upload the same growing log file again
//! and again — one record per line, with its newline. Per key, a DynamoDB item remembers how
//! many bytes (whole lines) were sent and the object's first bytes: an object that is
//! shorter than that, or starts differently, is a new file and is sent from its start. A
//! last line without its newline waits for the version that ends it.
//!
//! A message is deleted only after every line it brought is acknowledged by the stream and
//! the key's item says so: a duplicate notification then finds nothing new and sends
//! nothing. A crash between the put and the item's update sends those lines again when the
//! message comes back (at least once).

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::types::{AttributeValue, KeyType};
use bytes::Bytes;
use chief_config::aws::AwsConfig;
use chief_config::health::Health;
use chief_config::s3_event;
use chief_config::telemetry::{LogConfig, MetricsConfig};
use chief_stream::{KinesisClient, PutEntry, StreamClient};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::put::put_all;

/// How many first bytes of an object are kept to tell a new file from a grown one.
const HEAD_BYTES: usize = 1024;

/// `config/s3-ingest.toml`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// `[log]`.
    pub log: LogConfig,
    /// `[metrics]`.
    pub metrics: MetricsConfig,
    /// `[aws]`.
    pub aws: AwsConfig,
    /// `[ingest]`.
    pub ingest: IngestSettings,
}

/// `[ingest]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestSettings {
    /// The SQS queue the bucket notifies (URL).
    pub queue_url: String,
    /// The stream the lines go to.
    pub stream: String,
    /// The DynamoDB table of what was sent per key (created if missing).
    pub state_table: String,
    /// Long-poll wait of ReceiveMessage, seconds (0–20; 0: short polls every 500 ms when
    /// the queue is empty — for the local stack, whose moto serves one request at a time).
    /// Default 10.
    pub wait_time_s: i32,
    /// How long a message received stays invisible to others, seconds: longer than an
    /// object takes to send. Default 120.
    pub visibility_timeout_s: i32,
    /// Only objects whose key starts with this are sent (others are skipped, their
    /// notifications deleted): a bucket that holds more than the hosts' logs. Default
    /// empty: every object.
    pub key_prefix: String,
    /// This worker's name in logs. Default `<hostname>-<pid>`.
    pub worker_id: Option<String>,
}

impl Default for IngestSettings {
    fn default() -> Self {
        Self {
            queue_url: String::new(),
            stream: String::new(),
            state_table: String::new(),
            wait_time_s: 10,
            visibility_timeout_s: 120,
            key_prefix: String::new(),
            worker_id: None,
        }
    }
}

impl IngestConfig {
    /// Checks the settings.
    ///
    /// # Errors
    /// A sentence naming the setting.
    pub fn validate(&self) -> Result<(), IngestError> {
        let bad = |m: &str| Err(IngestError::Config(m.to_owned()));
        let i = &self.ingest;
        if i.queue_url.is_empty() {
            return bad("ingest.queue_url is empty");
        }
        if i.stream.is_empty() {
            return bad("ingest.stream is empty");
        }
        if i.state_table.is_empty() {
            return bad("ingest.state_table is empty");
        }
        if !(0..=20).contains(&i.wait_time_s) {
            return bad("ingest.wait_time_s must be 0–20");
        }
        if i.visibility_timeout_s < 1 {
            return bad("ingest.visibility_timeout_s must be at least 1");
        }
        Ok(())
    }
}

/// Why the ingestion stopped, or an object was not sent.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IngestError {
    /// The config is not usable.
    #[error("bad config: {0}")]
    Config(String),
    /// An AWS call failed.
    #[error("{operation} {target}: {message}")]
    Aws {
        /// The call.
        operation: &'static str,
        /// On what.
        target: String,
        /// Why.
        message: String,
        /// No retry can help.
        fatal: bool,
    },
    /// Putting the lines.
    #[error(transparent)]
    Put(#[from] crate::put::PutError),
}

impl IngestError {
    fn is_fatal(&self) -> bool {
        match self {
            Self::Config(_) => true,
            Self::Aws { fatal, .. } => *fatal,
            Self::Put(e) => e.fatal,
        }
    }
}

fn aws<E, R>(
    operation: &'static str,
    target: &str,
    err: &aws_sdk_s3::error::SdkError<E, R>,
) -> IngestError
where
    E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
    use aws_sdk_s3::error::ProvideErrorMetadata as _;
    IngestError::Aws {
        operation,
        target: target.to_owned(),
        fatal: err.code().is_some_and(|c| {
            chief_stream::is_fatal_code(c)
                || matches!(
                    c,
                    "NoSuchBucket"
                        | "AWS.SimpleQueueService.NonExistentQueue"
                        | "QueueDoesNotExist"
                )
        }),
        message: match (err.code(), err.message()) {
            (Some(code), Some(message)) => format!("{code}: {message}"),
            (Some(code), None) => code.to_owned(),
            _ => chief_stream::error_line(err),
        },
    }
}

/// What was sent of one key.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Sent {
    bytes: u64,
    lines: u64,
    head: Vec<u8>,
}

/// What one object brought.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ObjectOutcome {
    /// Lines sent.
    pub lines: u64,
    /// Sent from its start: a new file under a key seen before.
    pub new_file: bool,
}

/// The ingestion, on its clients.
pub struct Ingest<C> {
    settings: IngestSettings,
    s3: aws_sdk_s3::Client,
    sqs: aws_sdk_sqs::Client,
    dynamodb: aws_sdk_dynamodb::Client,
    stream: C,
}

impl<C: StreamClient> Ingest<C> {
    /// The ingestion of `settings` on these clients.
    pub fn new(
        settings: IngestSettings,
        s3: aws_sdk_s3::Client,
        sqs: aws_sdk_sqs::Client,
        dynamodb: aws_sdk_dynamodb::Client,
        stream: C,
    ) -> Self {
        Self {
            settings,
            s3,
            sqs,
            dynamodb,
            stream,
        }
    }

    /// Checks the queue and the stream exist, and creates the state table if missing.
    ///
    /// # Errors
    /// A missing queue or stream, refused credentials.
    pub async fn prepare(&self) -> Result<(), IngestError> {
        let s = &self.settings;
        self.sqs
            .get_queue_attributes()
            .queue_url(&s.queue_url)
            .send()
            .await
            .map_err(|e| {
                let mut err = aws("GetQueueAttributes", &s.queue_url, &e);
                if let IngestError::Aws { fatal, .. } = &mut err {
                    // A queue that does not answer at start is as good as missing.
                    *fatal = true;
                }
                err
            })?;
        self.stream
            .list_shards(&s.stream)
            .await
            .map_err(|e| IngestError::Aws {
                operation: "ListShards",
                target: s.stream.clone(),
                message: e.to_string(),
                fatal: true,
            })?;
        let table = &s.state_table;
        crate::store::ensure_table(&self.dynamodb, table, &[("object", KeyType::Hash)])
            .await
            .map_err(|(operation, message, _)| IngestError::Aws {
                operation,
                target: table.clone(),
                message,
                // A table that cannot be made ready at start stops the process.
                fatal: true,
            })?;
        Ok(())
    }

    async fn sent(&self, object: &str) -> Result<Option<Sent>, IngestError> {
        let out = self
            .dynamodb
            .get_item()
            .table_name(&self.settings.state_table)
            .key("object", AttributeValue::S(object.to_owned()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| aws("GetItem", &self.settings.state_table, &e))?;
        Ok(out.item.map(|item| {
            let n = |name: &str| {
                item.get(name)
                    .and_then(|v| v.as_n().ok())
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0)
            };
            Sent {
                bytes: n("bytes_sent"),
                lines: n("lines_sent"),
                head: item
                    .get("head")
                    .and_then(|v| v.as_b().ok())
                    .map(|b| b.as_ref().to_vec())
                    .unwrap_or_default(),
            }
        }))
    }

    async fn record_sent(
        &self,
        object: &str,
        before: Option<&Sent>,
        now: &Sent,
    ) -> Result<(), IngestError> {
        let mut item = HashMap::from([
            ("object".to_owned(), AttributeValue::S(object.to_owned())),
            (
                "bytes_sent".to_owned(),
                AttributeValue::N(now.bytes.to_string()),
            ),
            (
                "lines_sent".to_owned(),
                AttributeValue::N(now.lines.to_string()),
            ),
        ]);
        if !now.head.is_empty() {
            item.insert(
                "head".to_owned(),
                AttributeValue::B(aws_sdk_dynamodb::primitives::Blob::new(now.head.clone())),
            );
        }
        let mut request = self
            .dynamodb
            .put_item()
            .table_name(&self.settings.state_table)
            .set_item(Some(item));
        request = match before {
            Some(b) => request
                .condition_expression("bytes_sent = :b")
                .expression_attribute_values(":b", AttributeValue::N(b.bytes.to_string())),
            None => request
                .condition_expression("attribute_not_exists(#o)")
                .expression_attribute_names("#o", "object"),
        };
        match request.send().await {
            Ok(_) => Ok(()),
            Err(e)
                if aws_sdk_dynamodb::error::ProvideErrorMetadata::code(&e)
                    == Some("ConditionalCheckFailedException") =>
            {
                // Another worker sent this key's lines at the same time: they may be in the
                // stream twice (at least once); its item stands.
                tracing::warn!(
                    object,
                    "another worker recorded this object at the same time; its lines may be in the stream twice"
                );
                metrics::counter!(M_CONFLICTS).increment(1);
                Ok(())
            }
            Err(e) => Err(aws("PutItem", &self.settings.state_table, &e)),
        }
    }

    /// Sends the new lines of one object.
    ///
    /// # Errors
    /// The object, the state table or the stream failed.
    pub async fn ingest_object(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<ObjectOutcome, IngestError> {
        let name = format!("s3://{bucket}/{key}");
        let body = match self.s3.get_object().bucket(bucket).key(key).send().await {
            Ok(out) => out.body.collect().await.map_err(|e| IngestError::Aws {
                operation: "GetObject",
                target: name.clone(),
                message: e.to_string(),
                fatal: false,
            })?,
            Err(e) if aws_sdk_s3::error::ProvideErrorMetadata::code(&e) == Some("NoSuchKey") => {
                // Deleted since: nothing to send.
                return Ok(ObjectOutcome::default());
            }
            Err(e) => return Err(aws("GetObject", &name, &e)),
        }
        .into_bytes();
        let before = self.sent(&name).await?;
        let (from, lines_before, new_file) = match &before {
            Some(s)
                if body.len() as u64 >= s.bytes
                    && body.starts_with(&s.head[..s.head.len().min(body.len())]) =>
            {
                (
                    usize::try_from(s.bytes).unwrap_or(usize::MAX),
                    s.lines,
                    false,
                )
            }
            Some(_) => (0, 0, true),
            None => (0, 0, false),
        };
        let rest = body.get(from..).unwrap_or_default();
        // Whole lines only: a last line without its newline waits.
        let end = rest.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        if end == 0 {
            return Ok(ObjectOutcome { lines: 0, new_file });
        }
        let entries: Vec<PutEntry> = rest[..end]
            .split_inclusive(|b| *b == b'\n')
            .enumerate()
            .map(|(i, line)| PutEntry {
                partition_key: format!("{}:{key}", lines_before + i as u64 + 1)
                    .chars()
                    .take(256)
                    .collect(),
                explicit_hash_key: None,
                data: Bytes::copy_from_slice(line),
            })
            .collect();
        let lines = entries.len() as u64;
        put_all(&self.stream, &self.settings.stream, entries).await?;
        let total = from + end;
        let now = Sent {
            bytes: total as u64,
            lines: lines_before + lines,
            head: body[..total.min(HEAD_BYTES)].to_vec(),
        };
        self.record_sent(&name, before.as_ref(), &now).await?;
        metrics::counter!(M_LINES).increment(lines);
        if new_file {
            metrics::counter!(M_NEW_FILES).increment(1);
        }
        tracing::info!(object = %name, lines, from_line = lines_before + 1, new_file, "lines sent");
        Ok(ObjectOutcome { lines, new_file })
    }

    /// Receives and handles one batch of messages; returns how many were received.
    ///
    /// # Errors
    /// A fatal error (queue, stream or table gone, access denied); others are logged and
    /// the message comes back after its visibility timeout.
    pub async fn round(&self) -> Result<usize, IngestError> {
        let s = &self.settings;
        let received = self
            .sqs
            .receive_message()
            .queue_url(&s.queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(s.wait_time_s)
            .visibility_timeout(s.visibility_timeout_s)
            .send()
            .await
            .map_err(|e| aws("ReceiveMessage", &s.queue_url, &e))?;
        for message in received.messages() {
            metrics::counter!(M_MESSAGES).increment(1);
            let body = message.body().unwrap_or_default();
            let objects = match s3_event::parse(body) {
                Ok(objects) => objects,
                Err(e) => {
                    tracing::warn!(error = %e, body, "not an S3 event notification; deleted");
                    metrics::counter!(M_NOT_EVENTS).increment(1);
                    Vec::new()
                }
            };
            let mut done = true;
            for object in &objects {
                if !object.key.starts_with(&s.key_prefix) {
                    tracing::debug!(key = %object.key, prefix = %s.key_prefix, "not under the key prefix; skipped");
                    metrics::counter!(M_SKIPPED).increment(1);
                    continue;
                }
                match self.ingest_object(&object.bucket, &object.key).await {
                    Ok(outcome) => {
                        metrics::counter!(M_OBJECTS).increment(1);
                        if outcome.lines == 0 {
                            metrics::counter!(M_NOTHING_NEW).increment(1);
                        }
                    }
                    Err(e) if e.is_fatal() => return Err(e),
                    Err(e) => {
                        tracing::warn!(bucket = %object.bucket, key = %object.key, error = %e, "object not sent; its notification comes back");
                        done = false;
                    }
                }
            }
            if done && let Some(receipt) = message.receipt_handle() {
                self.sqs
                    .delete_message()
                    .queue_url(&s.queue_url)
                    .receipt_handle(receipt)
                    .send()
                    .await
                    .map_err(|e| aws("DeleteMessage", &s.queue_url, &e))?;
            }
        }
        Ok(received.messages().len())
    }

    /// Runs rounds until `shutdown`.
    ///
    /// # Errors
    /// A fatal error.
    pub async fn run(&self, shutdown: CancellationToken) -> Result<(), IngestError> {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                result = self.round() => match result {
                    // Short polling (`wait_time_s = 0`) waits between empty receives.
                    Ok(0) if self.settings.wait_time_s == 0 => {
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                    Ok(_) => {}
                    Err(e) if e.is_fatal() => return Err(e),
                    Err(e) => {
                        tracing::warn!(error = %e, "ingest round failed; tried again");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                },
            }
        }
    }
}

/// Runs `chief-s3-ingest` until `shutdown`.
///
/// # Errors
/// A bad config, a missing queue, stream or bucket, refused credentials.
pub async fn run(
    config: IngestConfig,
    shutdown: CancellationToken,
    health: Health,
) -> Result<(), IngestError> {
    config.validate()?;
    let clients = chief_config::aws::AwsClients::new(&config.aws).await;
    let ingest = Ingest::new(
        config.ingest.clone(),
        clients.s3(),
        clients.sqs(),
        clients.dynamodb(),
        KinesisClient::new(clients.kinesis()),
    );
    health.fail("ingest", "starting");
    ingest.prepare().await?;
    health.pass("ingest");
    tracing::info!(queue = %config.ingest.queue_url, stream = %config.ingest.stream, "ingesting");
    ingest.run(shutdown).await
}

const M_MESSAGES: &str = "IngestMessages";
const M_NOT_EVENTS: &str = "IngestNotEvents";
const M_OBJECTS: &str = "IngestObjects";
const M_LINES: &str = "IngestLines";
const M_NEW_FILES: &str = "IngestNewFiles";
const M_NOTHING_NEW: &str = "IngestNothingNew";
const M_CONFLICTS: &str = "IngestConflicts";
const M_SKIPPED: &str = "IngestSkipped";

impl chief_config::service::ServiceConfig for IngestConfig {
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
        &mut self.ingest.worker_id
    }
}
