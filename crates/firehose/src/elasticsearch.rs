//! The Elasticsearch destination: one shard's records buffered by size and interval,
//! indexed with `_bulk` into the (time-rotated) index, failed items retried for the
//! retry duration, then written with Firehose's failed-document format to the S3 error
//! output (`elasticsearch-failed`); with `AllDocuments` every record also goes to the
//! S3 backup prefix.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chief_config::retry::RetryPolicy;
use chief_config::secret::Secret;
use chief_sinks::batch::{Batcher, Limits, RecordPosition};
use chief_sinks::elasticsearch::{Document, SearchConfig, SearchIndex, index_batch_or_reject};
use chief_sinks::object::ObjectSink;
use chrono::{DateTime, Datelike, Utc};
use serde::{Deserialize, Serialize};

use crate::error_record::{ELASTICSEARCH_FAILED, ErrorRecord, PROCESSING_FAILED};
use crate::metrics as m;
use crate::s3::{DeliveryError, Incoming, Partition, S3Settings, put_object};

/// How the index name rotates: a suffix from the record's arrival time (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum IndexRotation {
    /// `index`.
    NoRotation,
    /// `index-2026-12-04-19`.
    OneHour,
    /// `index-2026-12-04`.
    #[default]
    OneDay,
    /// `index-2026-w49` (ISO week).
    OneWeek,
    /// `index-2026-12`.
    OneMonth,
}

impl IndexRotation {
    /// The index for a record that arrived at `time`.
    pub fn index_name(self, index: &str, time: DateTime<Utc>) -> String {
        match self {
            IndexRotation::NoRotation => index.to_owned(),
            IndexRotation::OneHour => format!("{index}-{}", time.format("%Y-%m-%d-%H")),
            IndexRotation::OneDay => format!("{index}-{}", time.format("%Y-%m-%d")),
            IndexRotation::OneWeek => {
                let week = time.iso_week();
                format!("{index}-{}-w{:02}", week.year(), week.week())
            }
            IndexRotation::OneMonth => format!("{index}-{}", time.format("%Y-%m")),
        }
    }
}

/// What goes to the S3 backup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum BackupMode {
    /// Only documents that could not be indexed (error output `elasticsearch-failed`).
    #[default]
    FailedDocumentsOnly,
    /// Every record (under `s3.prefix`), and the failed documents.
    AllDocuments,
}

/// `[elasticsearch]`: the Elasticsearch destination.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EsDestinationConfig {
    /// Cluster URL.
    pub url: String,
    /// Index name (before rotation).
    pub index: String,
    /// Rotation. Default `OneDay`.
    pub index_rotation: IndexRotation,
    /// JSON pointer to the document id in each record (`/trip_id`); without one, the id is
    /// generated from the record's position in the stream, so a replay overwrites
    /// instead of duplicating.
    pub document_id_pointer: Option<String>,
    /// Basic auth user.
    pub username: Option<String>,
    /// Basic auth password.
    pub password: Option<Secret>,
    /// API key (base64 `id:key`).
    pub api_key: Option<Secret>,
    /// Sign requests with SigV4 for this service (`es`): Amazon OpenSearch Service.
    pub aws_sigv4_service: Option<String>,
    /// Per-request timeout in ms. Default 30,000.
    pub timeout_ms: u64,
    /// Buffer size in MiB, 1–100. Default 5.
    pub buffering_size_mib: usize,
    /// Buffer interval in seconds, 0–900. Default 300.
    pub buffering_interval_seconds: u64,
    /// How long failing documents are retried before they go to the backup, 0–7,200
    /// seconds. Default 300.
    pub retry_duration_seconds: u64,
    /// Back-off between retries.
    pub retry: RetryPolicy,
    /// What goes to S3. Default `FailedDocumentsOnly`.
    pub s3_backup_mode: BackupMode,
}

impl Default for EsDestinationConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            index: String::new(),
            index_rotation: IndexRotation::OneDay,
            document_id_pointer: None,
            username: None,
            password: None,
            api_key: None,
            aws_sigv4_service: None,
            timeout_ms: 30_000,
            buffering_size_mib: 5,
            buffering_interval_seconds: 300,
            retry_duration_seconds: 300,
            retry: RetryPolicy::default(),
            s3_backup_mode: BackupMode::FailedDocumentsOnly,
        }
    }
}

impl EsDestinationConfig {
    /// Checks every field.
    ///
    /// # Errors
    /// What is wrong, naming the field.
    pub fn validate(&self) -> Result<(), String> {
        self.search_config().validate()?;
        if !(1..=100).contains(&self.buffering_size_mib) {
            return Err(format!(
                "elasticsearch.buffering_size_mib: {} is not in 1–100",
                self.buffering_size_mib
            ));
        }
        if self.buffering_interval_seconds > 900 {
            return Err(format!(
                "elasticsearch.buffering_interval_seconds: {} is not in 0–900",
                self.buffering_interval_seconds
            ));
        }
        if self.retry_duration_seconds > 7_200 {
            return Err(format!(
                "elasticsearch.retry_duration_seconds: {} is not in 0–7200",
                self.retry_duration_seconds
            ));
        }
        if let Some(pointer) = &self.document_id_pointer
            && !pointer.starts_with('/')
        {
            return Err(format!(
                "elasticsearch.document_id_pointer: `{pointer}` is not a JSON pointer (starts with /)"
            ));
        }
        Ok(())
    }

    /// The bulk writer's config.
    pub fn search_config(&self) -> SearchConfig {
        SearchConfig {
            url: self.url.clone(),
            index: self.index.clone(),
            username: self.username.clone(),
            password: self.password.clone(),
            api_key: self.api_key.clone(),
            aws_sigv4_service: self.aws_sigv4_service.clone(),
            timeout_ms: self.timeout_ms,
            retry: self.retry_policy(),
            ..SearchConfig::default()
        }
    }

    /// The back-off, with the retry duration as its deadline (0: one attempt).
    pub fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy {
            deadline_ms: (self.retry_duration_seconds * 1_000).max(1),
            ..self.retry
        }
    }
}

/// A record in the open batch.
#[derive(Debug)]
enum Pending {
    /// To index.
    Document {
        document: Document,
        arrival: DateTime<Utc>,
        position: RecordPosition,
    },
    /// Could not be made a document: straight to the error output.
    Failed(ErrorRecord),
}

/// What every shard's Elasticsearch writer shares.
#[derive(Debug)]
pub struct EsSettings {
    pub(crate) index: String,
    pub(crate) rotation: IndexRotation,
    pub(crate) id_pointer: Option<String>,
    pub(crate) limits: Limits,
    pub(crate) retry: RetryPolicy,
    pub(crate) backup: BackupMode,
    pub(crate) s3: Arc<S3Settings>,
}

impl EsSettings {
    /// From validated configs.
    ///
    /// # Errors
    /// As [`EsDestinationConfig::validate`].
    pub fn new(config: &EsDestinationConfig, s3: Arc<S3Settings>) -> Result<Self, String> {
        config.validate()?;
        Ok(Self {
            index: config.index.clone(),
            rotation: config.index_rotation,
            id_pointer: config.document_id_pointer.clone(),
            limits: Limits {
                max_records: usize::MAX,
                max_bytes: config.buffering_size_mib * 1024 * 1024,
                max_age: Duration::from_secs(config.buffering_interval_seconds),
            },
            retry: config.retry_policy(),
            backup: config.s3_backup_mode,
            s3,
        })
    }

    fn document_id(&self, record: &Incoming<'_>) -> Result<String, String> {
        let Some(pointer) = &self.id_pointer else {
            return Ok(format!(
                "{}-{}",
                record.position.sequence_number, record.position.sub_sequence_number
            ));
        };
        let value: serde_json::Value = serde_json::from_slice(record.data)
            .map_err(|e| format!("the record is not JSON: {e}"))?;
        match value.pointer(pointer) {
            Some(serde_json::Value::String(s)) if !s.is_empty() => Ok(s.clone()),
            Some(v @ serde_json::Value::Number(_)) => Ok(v.to_string()),
            Some(other) => Err(format!(
                "document id at `{pointer}` is {other}, not a non-empty string or number"
            )),
            None => Err(format!("no document id at `{pointer}`")),
        }
    }
}

/// One shard's Elasticsearch writer.
#[derive(Debug)]
pub struct ShardEsDelivery<I, O> {
    index: Arc<I>,
    objects: O,
    settings: Arc<EsSettings>,
    shard_id: String,
    batcher: Batcher<Vec<Pending>>,
}

impl<I: SearchIndex, O: ObjectSink> ShardEsDelivery<I, O> {
    /// A writer of `shard_id`'s documents to `index`, failed ones and backups to `objects`.
    pub fn new(index: Arc<I>, objects: O, settings: Arc<EsSettings>, shard_id: &str) -> Self {
        let batcher = Batcher::new(settings.limits);
        Self {
            index,
            objects,
            settings,
            shard_id: shard_id.to_owned(),
            batcher,
        }
    }

    /// Buffers a record, indexing the batch when it is full.
    ///
    /// # Errors
    /// As [`flush`](Self::flush).
    pub async fn accept(
        &mut self,
        record: Incoming<'_>,
        now: Instant,
    ) -> Result<(), DeliveryError> {
        let delivery = &self.settings.s3.delivery;
        metrics::counter!(m::INCOMING_RECORDS, m::DELIVERY => delivery.clone()).increment(1);
        metrics::counter!(m::INCOMING_BYTES, m::DELIVERY => delivery.clone())
            .increment(record.data.len() as u64);
        let size = record.data.len();
        if self.batcher.would_overflow(size) {
            self.flush().await?;
        }
        let pending = match self.settings.document_id(&record) {
            Ok(id) => Pending::Document {
                document: Document {
                    id,
                    index: Some(
                        self.settings
                            .rotation
                            .index_name(&self.settings.index, record.arrival),
                    ),
                    source: Bytes::copy_from_slice(record.data),
                },
                arrival: record.arrival,
                position: record.position.clone(),
            },
            Err(why) => Pending::Failed(ErrorRecord::new(
                record.failed(),
                0,
                "DocumentIdExtractionFailed",
                why,
                crate::utc_now(),
            )),
        };
        let full = self
            .batcher
            .push(record.position, record.arrival, now, size, |body| {
                body.push(pending)
            });
        if full {
            self.flush().await?;
        }
        Ok(())
    }

    /// Indexes the batch if it reached its interval.
    ///
    /// # Errors
    /// As [`flush`](Self::flush).
    pub async fn flush_due(&mut self, now: Instant) -> Result<(), DeliveryError> {
        if self.batcher.is_due(now) {
            self.flush().await?;
        }
        Ok(())
    }

    /// Indexes the open batch: documents still failing at the end of the retry duration,
    /// and those refused for good, go to the error output; with `AllDocuments` every
    /// record also goes to the backup prefix.
    ///
    /// # Errors
    /// A request Elasticsearch refuses as a whole for good (credentials, permissions), or
    /// an S3 write that failed; the batch stays open then.
    pub async fn flush(&mut self) -> Result<(), DeliveryError> {
        let Some(batch) = self.batcher.batch() else {
            return Ok(());
        };
        let first_arrival = batch.first_arrival;
        let mut documents = Vec::new();
        let mut failed_lines = Vec::new();
        let mut failed_processing = 0usize;
        let mut origin = Vec::new();
        for pending in &batch.body {
            match pending {
                Pending::Document {
                    document,
                    arrival,
                    position,
                } => {
                    documents.push(document.clone());
                    origin.push((*arrival, position));
                }
                Pending::Failed(line) => {
                    line.write_line(&mut failed_lines);
                    failed_processing += 1;
                }
            }
        }
        let outcome = index_batch_or_reject(self.index.as_ref(), &documents, &self.settings.retry)
            .await
            .map_err(DeliveryError::Index)?;
        let now = crate::utc_now();
        let mut es_failed = Vec::new();
        for rejected in &outcome.rejected {
            let document = &documents[rejected.index];
            let (arrival, position) = origin[rejected.index];
            ErrorRecord::new(
                crate::error_record::Failed {
                    data: &document.source,
                    arrival,
                    sequence_number: &position.sequence_number,
                    sub_sequence_number: position.sub_sequence_number,
                },
                outcome.attempts,
                rejected.status.to_string(),
                rejected.error.clone(),
                now,
            )
            .for_document(&document.id, document.index.as_deref().unwrap_or_default())
            .write_line(&mut es_failed);
        }
        let s3 = Arc::clone(&self.settings.s3);
        for (kind, lines) in [
            (ELASTICSEARCH_FAILED, es_failed),
            (PROCESSING_FAILED, failed_lines),
        ] {
            if lines.is_empty() {
                continue;
            }
            let key = s3.object_key(&Partition::Error(kind), first_arrival);
            let body = s3.encode(&lines).map_err(DeliveryError::Compress)?;
            put_object(&self.objects, &s3, &key, body).await?;
        }
        if self.settings.backup == BackupMode::AllDocuments {
            let mut body = Vec::new();
            for document in &documents {
                s3.append(&mut body, &document.source);
            }
            let key = s3.object_key(&Partition::Data(BTreeMap::new()), first_arrival);
            let body = s3.encode(&body).map_err(DeliveryError::Compress)?;
            put_object(&self.objects, &s3, &key, body).await?;
            metrics::counter!(m::BACKUP_RECORDS, m::DELIVERY => s3.delivery.clone())
                .increment(documents.len() as u64);
        }
        let delivery = s3.delivery.clone();
        let indexed_bytes: usize = documents.iter().map(|d| d.source.len()).sum();
        metrics::counter!(m::ES_RECORDS, m::DELIVERY => delivery.clone())
            .increment(outcome.indexed as u64);
        metrics::counter!(m::ES_BYTES, m::DELIVERY => delivery.clone())
            .increment(indexed_bytes as u64);
        metrics::counter!(m::ES_FAILED_DOCUMENTS, m::DELIVERY => delivery.clone())
            .increment(outcome.rejected.len() as u64);
        metrics::counter!(m::ERROR_OUTPUT_RECORDS, m::DELIVERY => delivery.clone(), "type" => PROCESSING_FAILED)
            .increment(failed_processing as u64);
        metrics::counter!(m::ES_SUCCESS, m::DELIVERY => delivery.clone()).increment(1);
        let freshness = (now - first_arrival).num_milliseconds().max(0);
        metrics::gauge!(m::ES_DATA_FRESHNESS, m::DELIVERY => delivery)
            .set(freshness as f64 / 1000.0);
        tracing::debug!(
            shard_id = %self.shard_id,
            indexed = outcome.indexed,
            failed = outcome.rejected.len(),
            failed_processing,
            attempts = outcome.attempts,
            "batch indexed"
        );
        self.batcher.written();
        Ok(())
    }

    /// Whether offering records of `bytes` in all (`records` of them) and then indexing
    /// what is due at `now` may write (index or back up) anything: an upper bound.
    pub fn may_write(&self, records: usize, bytes: usize, now: Instant) -> bool {
        (records > 0 && self.settings.limits.max_age.is_zero())
            || self.batcher.deadline().is_some_and(|d| d <= now)
            || self.batcher.buffered_bytes() + bytes >= self.settings.limits.max_bytes
    }

    /// The last position such that it and everything before it is indexed or in S3.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_names_rotate_as_firehose_names_them() {
        let t = DateTime::parse_from_rfc3339("2026-12-04T19:05:06Z")
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or(DateTime::<Utc>::UNIX_EPOCH);
        let name = |r: IndexRotation| r.index_name("analysed-logs", t);
        assert_eq!(name(IndexRotation::NoRotation), "analysed-logs");
        assert_eq!(name(IndexRotation::OneHour), "analysed-logs-2026-12-04-19");
        assert_eq!(name(IndexRotation::OneDay), "analysed-logs-2026-12-04");
        assert_eq!(name(IndexRotation::OneWeek), "analysed-logs-2026-w49");
        assert_eq!(name(IndexRotation::OneMonth), "analysed-logs-2026-12");
    }
}
