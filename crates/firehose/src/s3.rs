//! The S3 destination: one shard's records buffered by size and interval (per partition
//! with dynamic partitioning), written as Firehose writes them — concatenated (or one a
//! line), optionally GZIP — under the prefix's keys; records that cannot be partitioned go
//! to the error output.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chief_config::retry::RetryPolicy;
use chief_sinks::batch::{Limits, PartitionedBatcher, RecordPosition};
use chief_sinks::object::template::{KeyTemplate, KeyValues, firehose_object_name};
use chief_sinks::object::{ObjectSink, ObjectSinkError, put_with_retry};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error_record::{ErrorRecord, Failed, PROCESSING_FAILED};
use crate::metrics as m;

const MIB: usize = 1024 * 1024;

/// Object compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Compression {
    /// As the records are.
    #[default]
    Uncompressed,
    /// GZIP; object names end in `.gz`.
    Gzip,
}

/// Dynamic partitioning: partition keys read from each (JSON) record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DynamicPartitioning {
    /// On or off. Default off.
    pub enabled: bool,
    /// Partition key name → JSON pointer into the record (`customer = "/customer/id"`);
    /// the prefix uses them as `!{partitionKeyFromQuery:customer}`.
    pub keys: BTreeMap<String, String>,
    /// Partitions buffered at once per shard before records go to the error output.
    /// Default 500, Firehose's limit.
    pub max_open_partitions: usize,
}

impl Default for DynamicPartitioning {
    fn default() -> Self {
        Self {
            enabled: false,
            keys: BTreeMap::new(),
            max_open_partitions: 500,
        }
    }
}

/// `[s3]`: the S3 destination (or, with the Elasticsearch destination, the backup
/// bucket).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct S3DestinationConfig {
    /// The bucket.
    pub bucket: String,
    /// The key prefix, with Firehose's expressions (`!{timestamp:yyyy/MM/dd/HH}` …);
    /// without any, `YYYY/MM/DD/HH/` is appended. Default empty.
    pub prefix: String,
    /// The error output prefix (same expressions, plus
    /// `!{firehose:error-output-type}`); without any, `<type>/YYYY/MM/DD/HH/` is
    /// appended. Required when `prefix` has expressions.
    pub error_output_prefix: String,
    /// Buffer size in MiB, 1–128. Default 5.
    pub buffering_size_mib: usize,
    /// Buffer interval in seconds, 0–900. Default 300.
    pub buffering_interval_seconds: u64,
    /// `UNCOMPRESSED` or `GZIP`.
    pub compression: Compression,
    /// A newline after each record (Firehose concatenates them as they are).
    pub append_newline: bool,
    /// Dynamic partitioning.
    pub dynamic_partitioning: DynamicPartitioning,
    /// Back-off of a failing `PutObject` (non-retryable errors stop the process).
    pub retry: RetryPolicy,
}

impl Default for S3DestinationConfig {
    fn default() -> Self {
        Self {
            bucket: String::new(),
            prefix: String::new(),
            error_output_prefix: String::new(),
            buffering_size_mib: 5,
            buffering_interval_seconds: 300,
            compression: Compression::Uncompressed,
            append_newline: false,
            dynamic_partitioning: DynamicPartitioning::default(),
            retry: RetryPolicy {
                deadline_ms: 60_000,
                ..RetryPolicy::default()
            },
        }
    }
}

impl S3DestinationConfig {
    /// The object and error templates, checked as Firehose checks them.
    ///
    /// # Errors
    /// What is wrong, naming the field.
    pub fn templates(&self) -> Result<(KeyTemplate, KeyTemplate), String> {
        let prefix =
            KeyTemplate::firehose_prefix(&self.prefix).map_err(|e| format!("s3.prefix: {e}"))?;
        let error = KeyTemplate::firehose_error_prefix(&self.error_output_prefix)
            .map_err(|e| format!("s3.error_output_prefix: {e}"))?;
        if !self.prefix.is_empty()
            && prefix.as_str() == self.prefix
            && self.error_output_prefix.is_empty()
        {
            return Err(
                "s3.error_output_prefix: must be set when s3.prefix has expressions".into(),
            );
        }
        let used = prefix.partition_keys();
        let dynamic = &self.dynamic_partitioning;
        if dynamic.enabled {
            if used.is_empty() {
                return Err("s3.prefix: dynamic partitioning is on but the prefix uses no !{partitionKeyFromQuery:…}".into());
            }
            for (name, pointer) in &dynamic.keys {
                if !pointer.is_empty() && !pointer.starts_with('/') {
                    return Err(format!(
                        "s3.dynamic_partitioning.keys.{name}: `{pointer}` is not a JSON pointer (starts with /)"
                    ));
                }
            }
        }
        for name in used {
            if !dynamic.enabled || !dynamic.keys.contains_key(name) {
                return Err(format!(
                    "s3.prefix: !{{partitionKeyFromQuery:{name}}} needs s3.dynamic_partitioning enabled with a key `{name}`"
                ));
            }
        }
        Ok((prefix, error))
    }

    /// Checks every field.
    ///
    /// # Errors
    /// What is wrong, naming the field.
    pub fn validate(&self) -> Result<(), String> {
        if self.bucket.is_empty() {
            return Err("s3.bucket: required".into());
        }
        if !(1..=128).contains(&self.buffering_size_mib) {
            return Err(format!(
                "s3.buffering_size_mib: {} is not in 1–128",
                self.buffering_size_mib
            ));
        }
        if self.buffering_interval_seconds > 900 {
            return Err(format!(
                "s3.buffering_interval_seconds: {} is not in 0–900",
                self.buffering_interval_seconds
            ));
        }
        if self.dynamic_partitioning.max_open_partitions == 0 {
            return Err("s3.dynamic_partitioning.max_open_partitions: must be at least 1".into());
        }
        self.templates().map(|_| ())
    }
}

/// What every shard's S3 writer shares: the parsed config.
#[derive(Debug)]
pub struct S3Settings {
    pub(crate) delivery: String,
    pub(crate) version: u32,
    pub(crate) bucket: String,
    pub(crate) prefix: KeyTemplate,
    pub(crate) error_prefix: KeyTemplate,
    pub(crate) keys: Vec<(String, String)>,
    pub(crate) dynamic: bool,
    pub(crate) max_open: usize,
    pub(crate) limits: Limits,
    pub(crate) compression: Compression,
    pub(crate) append_newline: bool,
    pub(crate) retry: RetryPolicy,
}

impl S3Settings {
    /// From a validated config, for delivery `delivery` at config `version`.
    ///
    /// # Errors
    /// As [`S3DestinationConfig::validate`].
    pub fn new(config: &S3DestinationConfig, delivery: &str, version: u32) -> Result<Self, String> {
        config.validate()?;
        let (prefix, error_prefix) = config.templates()?;
        Ok(Self {
            delivery: delivery.to_owned(),
            version,
            bucket: config.bucket.clone(),
            prefix,
            error_prefix,
            keys: config
                .dynamic_partitioning
                .keys
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            dynamic: config.dynamic_partitioning.enabled,
            max_open: config.dynamic_partitioning.max_open_partitions,
            limits: Limits {
                max_records: usize::MAX,
                max_bytes: config.buffering_size_mib * MIB,
                max_age: Duration::from_secs(config.buffering_interval_seconds),
            },
            compression: config.compression,
            append_newline: config.append_newline,
            retry: config.retry,
        })
    }

    /// The name of a new object whose oldest record arrived at `time`.
    pub(crate) fn object_name(&self, time: DateTime<Utc>) -> String {
        let extension = match self.compression {
            Compression::Uncompressed => "",
            Compression::Gzip => ".gz",
        };
        firehose_object_name(&self.delivery, self.version, time, extension)
    }

    /// The key of a new object of `partition` whose oldest record arrived at `time`: the
    /// prefix (or error prefix) rendered, then the object name.
    pub(crate) fn object_key(&self, partition: &Partition, time: DateTime<Utc>) -> String {
        let empty = BTreeMap::new();
        let (template, values, kind) = match partition {
            Partition::Data(values) => (&self.prefix, values, ""),
            Partition::Error(kind) => (&self.error_prefix, &empty, *kind),
        };
        let prefix = template
            .render(&KeyValues {
                time,
                error_output_type: kind,
                partition: values,
            })
            .unwrap_or_else(|missing| {
                // Data partitions always have every key the prefix uses.
                tracing::error!(missing, "partition key missing when naming an object");
                String::new()
            });
        format!("{prefix}{}", self.object_name(time))
    }

    /// `body` as it is stored.
    pub(crate) fn encode(&self, body: &[u8]) -> Result<Bytes, std::io::Error> {
        match self.compression {
            Compression::Uncompressed => Ok(Bytes::copy_from_slice(body)),
            Compression::Gzip => {
                let mut encoder = flate2::write::GzEncoder::new(
                    Vec::with_capacity(body.len() / 4),
                    flate2::Compression::default(),
                );
                encoder.write_all(body)?;
                Ok(Bytes::from(encoder.finish()?))
            }
        }
    }

    /// Appends a record to an object body.
    pub(crate) fn append(&self, body: &mut Vec<u8>, data: &[u8]) {
        body.extend_from_slice(data);
        if self.append_newline {
            body.push(b'\n');
        }
    }

    /// A record's bytes in an object.
    pub(crate) fn size(&self, data: &[u8]) -> usize {
        data.len() + usize::from(self.append_newline)
    }

    /// The content type of objects.
    pub(crate) fn content_type(&self) -> &'static str {
        match self.compression {
            Compression::Uncompressed => "application/octet-stream",
            Compression::Gzip => "application/gzip",
        }
    }

    /// Reads the partition keys from a record.
    fn partition(&self, data: &[u8]) -> Result<BTreeMap<String, String>, String> {
        let value: serde_json::Value =
            serde_json::from_slice(data).map_err(|e| format!("the record is not JSON: {e}"))?;
        let mut partition = BTreeMap::new();
        for (name, pointer) in &self.keys {
            let text = match value.pointer(pointer) {
                Some(serde_json::Value::String(s)) if !s.is_empty() => s.clone(),
                Some(v @ (serde_json::Value::Number(_) | serde_json::Value::Bool(_))) => {
                    v.to_string()
                }
                Some(other) => {
                    return Err(format!(
                        "partition key `{name}` at `{pointer}` is {other}, not a non-empty string, number or boolean"
                    ));
                }
                None => {
                    return Err(format!(
                        "partition key `{name}`: no `{pointer}` in the record"
                    ));
                }
            };
            partition.insert(name.clone(), text);
        }
        Ok(partition)
    }
}

/// Why a write failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeliveryError {
    /// An object could not be written.
    #[error("writing s3://{bucket}/{key} failed after {attempts} attempts")]
    Write {
        /// The bucket.
        bucket: String,
        /// The key.
        key: String,
        /// Attempts made.
        attempts: u32,
        /// The last error.
        #[source]
        source: ObjectSinkError,
    },
    /// GZIP failed.
    #[error("compressing an object failed")]
    Compress(#[source] std::io::Error),
    /// Elasticsearch refused the request as a whole for a reason no retry fixes.
    #[error("Elasticsearch refused the bulk request")]
    Index(#[source] chief_sinks::elasticsearch::SearchError),
}

impl DeliveryError {
    /// Whether trying again may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            DeliveryError::Write { source, .. } => source.is_retryable(),
            DeliveryError::Compress(_) => false,
            DeliveryError::Index(source) => source.is_retryable(),
        }
    }
}

/// Which buffer a record goes to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Partition {
    /// Records, by their partition key values (empty without dynamic partitioning).
    Data(BTreeMap<String, String>),
    /// Error records of one error output type.
    Error(&'static str),
}

/// A record offered to a destination.
#[derive(Debug, Clone, Copy)]
pub struct Incoming<'a> {
    /// The record.
    pub data: &'a [u8],
    /// Its position in the shard.
    pub position: &'a RecordPosition,
    /// When it arrived (the Kinesis approximate arrival time).
    pub arrival: DateTime<Utc>,
}

impl<'a> Incoming<'a> {
    pub(crate) fn failed(&self) -> Failed<'a> {
        Failed {
            data: self.data,
            arrival: self.arrival,
            sequence_number: &self.position.sequence_number,
            sub_sequence_number: self.position.sub_sequence_number,
        }
    }
}

/// Writes `body` to `key` with `settings`' retry, counting what was written.
pub(crate) async fn put_object<O: ObjectSink>(
    sink: &O,
    settings: &S3Settings,
    key: &str,
    body: Bytes,
) -> Result<(), DeliveryError> {
    let size = body.len();
    match put_with_retry(sink, &settings.retry, key, body, settings.content_type()).await {
        Ok(_) => {
            metrics::counter!(m::S3_SUCCESS, m::DELIVERY => settings.delivery.clone()).increment(1);
            metrics::counter!(m::S3_OBJECT_BYTES, m::DELIVERY => settings.delivery.clone())
                .increment(size as u64);
            Ok(())
        }
        Err((attempts, source)) => {
            metrics::counter!(m::S3_FAILURES, m::DELIVERY => settings.delivery.clone())
                .increment(1);
            Err(DeliveryError::Write {
                bucket: settings.bucket.clone(),
                key: key.to_owned(),
                attempts,
                source,
            })
        }
    }
}

/// One shard's S3 writer.
#[derive(Debug)]
pub struct ShardS3Delivery<O> {
    sink: O,
    settings: Arc<S3Settings>,
    shard_id: String,
    batcher: PartitionedBatcher<Partition, Vec<u8>>,
    data_open: usize,
}

impl<O: ObjectSink> ShardS3Delivery<O> {
    /// A writer of `shard_id`'s objects to `sink`.
    pub fn new(sink: O, settings: Arc<S3Settings>, shard_id: &str) -> Self {
        // Room for the error buffers beside the data partitions.
        let batcher = PartitionedBatcher::new(settings.limits, settings.max_open + 2);
        Self {
            sink,
            settings,
            shard_id: shard_id.to_owned(),
            batcher,
            data_open: 0,
        }
    }

    /// Buffers a record, writing the buffers it fills.
    ///
    /// # Errors
    /// A write that failed; the record is not accepted then (offer it again).
    pub async fn accept(
        &mut self,
        record: Incoming<'_>,
        now: Instant,
    ) -> Result<(), DeliveryError> {
        let delivery = &self.settings.delivery;
        metrics::counter!(m::INCOMING_RECORDS, m::DELIVERY => delivery.clone()).increment(1);
        metrics::counter!(m::INCOMING_BYTES, m::DELIVERY => delivery.clone())
            .increment(record.data.len() as u64);
        let partition = if self.settings.dynamic {
            self.settings.partition(record.data)
        } else {
            Ok(BTreeMap::new())
        };
        let partition = match partition {
            Ok(values) => {
                let key = Partition::Data(values);
                if self.batcher.batch(&key).is_none() && self.data_open >= self.settings.max_open {
                    metrics::counter!(m::PARTITIONS_LIMIT_EXCEEDED, m::DELIVERY => delivery.clone())
                        .increment(1);
                    Err((
                        "DynamicPartitioning.ActivePartitionsLimitExceeded",
                        format!(
                            "{} partitions are open in shard {}, the most allowed",
                            self.data_open, self.shard_id
                        ),
                    ))
                } else {
                    Ok(key)
                }
            }
            Err(why) => Err(("DynamicPartitioning.MetadataExtractionFailed", why)),
        };
        match partition {
            Ok(key) => {
                let size = self.settings.size(record.data);
                self.push(key, record, now, size, |settings, body| {
                    settings.append(body, record.data);
                })
                .await
            }
            Err((code, message)) => {
                let line = ErrorRecord::new(record.failed(), 1, code, message, crate::utc_now());
                let mut bytes = Vec::new();
                line.write_line(&mut bytes);
                let size = bytes.len();
                self.push(
                    Partition::Error(PROCESSING_FAILED),
                    record,
                    now,
                    size,
                    |_, body| {
                        body.extend_from_slice(&bytes);
                    },
                )
                .await
            }
        }
    }

    async fn push(
        &mut self,
        key: Partition,
        record: Incoming<'_>,
        now: Instant,
        size: usize,
        add: impl FnOnce(&S3Settings, &mut Vec<u8>),
    ) -> Result<(), DeliveryError> {
        if self.batcher.would_overflow(&key, size) {
            self.write(&key).await?;
        }
        let opens = self.batcher.batch(&key).is_none();
        let settings = Arc::clone(&self.settings);
        let full = self
            .batcher
            .push(&key, record.position, record.arrival, now, size, |body| {
                add(&settings, body);
            })
            // The data partitions are bounded above and the error buffers have room.
            .unwrap_or(false);
        if opens && matches!(key, Partition::Data(_)) {
            self.data_open += 1;
            metrics::gauge!(m::PARTITION_COUNT, m::DELIVERY => self.settings.delivery.clone())
                .set(self.data_open as f64);
        }
        if full {
            self.write(&key).await?;
        }
        Ok(())
    }

    /// Writes the buffers that reached their interval.
    ///
    /// # Errors
    /// A write that failed (the buffer stays, to be written again).
    pub async fn flush_due(&mut self, now: Instant) -> Result<(), DeliveryError> {
        for key in self.batcher.due(now) {
            self.write(&key).await?;
        }
        Ok(())
    }

    /// Writes every buffer.
    ///
    /// # Errors
    /// As [`flush_due`](Self::flush_due).
    pub async fn flush(&mut self) -> Result<(), DeliveryError> {
        for key in self.batcher.open_keys() {
            self.write(&key).await?;
        }
        Ok(())
    }

    async fn write(&mut self, key: &Partition) -> Result<(), DeliveryError> {
        let Some(batch) = self.batcher.batch(key) else {
            return Ok(());
        };
        let (records, bytes, first_arrival) = (batch.records, batch.bytes, batch.first_arrival);
        let object_key = self.settings.object_key(key, first_arrival);
        let Some(batch) = self.batcher.batch_mut(key) else {
            return Ok(());
        };
        // The body moves into the request (no copy uncompressed) and comes back if the
        // write fails, to be written again.
        let raw = std::mem::take(&mut batch.body);
        let (body, raw) = match self.settings.compression {
            Compression::Uncompressed => (Bytes::from(raw), None),
            Compression::Gzip => match self.settings.encode(&raw) {
                Ok(body) => (body, Some(raw)),
                Err(error) => {
                    batch.body = raw;
                    return Err(DeliveryError::Compress(error));
                }
            },
        };
        if let Err(error) = put_object(&self.sink, &self.settings, &object_key, body.clone()).await
        {
            batch.body = raw.unwrap_or_else(|| Vec::from(body));
            return Err(error);
        }
        let delivery = self.settings.delivery.clone();
        match key {
            Partition::Data(_) => {
                metrics::counter!(m::S3_RECORDS, m::DELIVERY => delivery.clone())
                    .increment(records as u64);
                metrics::counter!(m::S3_BYTES, m::DELIVERY => delivery.clone())
                    .increment(bytes as u64);
                let freshness = (crate::utc_now() - first_arrival).num_milliseconds().max(0);
                metrics::gauge!(m::S3_DATA_FRESHNESS, m::DELIVERY => delivery.clone())
                    .set(freshness as f64 / 1000.0);
                self.data_open = self.data_open.saturating_sub(1);
                metrics::gauge!(m::PARTITION_COUNT, m::DELIVERY => delivery)
                    .set(self.data_open as f64);
            }
            Partition::Error(kind) => {
                metrics::counter!(m::ERROR_OUTPUT_RECORDS, m::DELIVERY => delivery, "type" => *kind)
                    .increment(records as u64);
            }
        }
        tracing::debug!(shard_id = %self.shard_id, key = %object_key, records, bytes, "object written");
        self.batcher.written(key);
        Ok(())
    }

    /// Whether offering records of `bytes` in all (`records` of them) and then writing
    /// what is due at `now` may write an object: an upper bound, so that a caller can
    /// record a pending checkpoint before any write.
    pub fn may_write(&self, records: usize, bytes: usize, now: Instant) -> bool {
        // An error record is base64 (4/3) plus its fields.
        let incoming = bytes * 4 / 3 + records * 512;
        (records > 0 && self.settings.limits.max_age.is_zero())
            || self.batcher.deadline().is_some_and(|d| d <= now)
            || self.batcher.buffered_bytes() + incoming >= self.settings.limits.max_bytes
    }

    /// The last position such that it and everything before it is in S3.
    pub fn durable(&self) -> Option<&RecordPosition> {
        self.batcher.durable()
    }

    /// The last record accepted.
    pub fn accepted(&self) -> Option<&RecordPosition> {
        self.batcher.accepted()
    }

    /// Records buffered.
    pub fn buffered_records(&self) -> usize {
        self.batcher.buffered_records()
    }
}
