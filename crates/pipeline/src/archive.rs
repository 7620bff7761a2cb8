//! The S3 archive sink's batching, per shard: records are parsed, de-duplicated,
//! encoded as `LOAD DATA` lines ([`crate::tsv`]) and buffered; a batch is written as one
//! object when it reaches [`ArchiveConfig::max_records`], [`ArchiveConfig::max_bytes`]
//! or [`ArchiveConfig::max_age_ms`] (the Firehose defaults: 5 MiB / 60 s), or when the
//! processor flushes (shard end, shutdown).
//!
//! - Batch key: `<prefix>/YYYY/MM/DD/HH/<shardId>-<first sequence number>` (with
//!   `-<sub-sequence>` appended when the first record is not the first of its
//!   aggregate), the hour being the UTC arrival hour of the batch's first record. A
//!   replay from the same checkpoint writes the same key again, overwriting rather than
//!   duplicating when the batch boundaries match.
//! - Dead letters: a record that is not valid JSON, lacks `orderid` or (job results)
//!   does not have the job-result shape is written at once as a JSON object under
//!   `<dead_letter_prefix>/<executor>/YYYY/MM/DD/HH/<shardId>-<sequence>-<sub-sequence>`
//!   with the error and the raw record, and counted (`DeadLetters`); the shard goes on.
//! - Checkpoints: every call returns the position the caller may checkpoint now, if it
//!   advanced: the last record such that it and every record before it is durable
//!   (written, dead-lettered or dropped as a duplicate). It never passes a buffered row.
//! - Writes are retried with [`RetryPolicy`] (full jitter) while the error is retryable
//!   and the policy's deadline allows; a failed flush keeps the batch, so nothing is
//!   lost and nothing is checkpointed past it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chief_config::retry::RetryPolicy;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use chief_sinks::{Batcher, Limits};

use crate::dedup::DedupWindow;
use crate::model::{JobResult, ModelError, Order};
use crate::object_sink::{ObjectSink, ObjectSinkError, put_with_retry};
use crate::tsv;

/// The content type of a dead-letter object.
pub use chief_sinks::dead_letter::CONTENT_TYPE as DEAD_LETTER_CONTENT_TYPE;
pub use chief_sinks::dead_letter::{DeadLetter, DeadLetterSettings, dead_letter_key, hour_path};

/// The `[archive]` config section of an S3-archiving executor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ArchiveConfig {
    /// The bucket. Default empty, which [`validate`](Self::validate) rejects.
    pub bucket: String,
    /// The key prefix of batch objects, without a trailing `/`, e.g. `ChiefOrderS3`.
    /// Default empty, which [`validate`](Self::validate) rejects.
    pub prefix: String,
    /// The key prefix of dead letters; the executor's name follows it. Default `errors`.
    pub dead_letter_prefix: String,
    /// Most rows in one object. Default 100,000.
    pub max_records: usize,
    /// Most bytes of rows in one object (a single larger row goes alone). Default
    /// 5 MiB (Firehose's default buffer size).
    pub max_bytes: usize,
    /// Longest a batch stays open after its first row, in milliseconds. Default 60,000
    /// (Firehose's default buffer interval).
    pub max_age_ms: u64,
    /// Back-off between attempts of a failed write. Default: 100 ms doubling to 5 s,
    /// giving up after 300 s.
    pub retry: RetryPolicy,
}

impl Default for ArchiveConfig {
    fn default() -> Self {
        Self {
            bucket: String::new(),
            prefix: String::new(),
            dead_letter_prefix: "errors".to_owned(),
            max_records: 100_000,
            max_bytes: 5 * 1024 * 1024,
            max_age_ms: 60_000,
            retry: RetryPolicy {
                deadline_ms: 300_000,
                ..RetryPolicy::default()
            },
        }
    }
}

impl ArchiveConfig {
    /// Where this executor's dead letters go.
    pub fn dead_letters(&self) -> DeadLetterSettings {
        DeadLetterSettings {
            prefix: self.dead_letter_prefix.clone(),
            retry: self.retry,
        }
    }

    /// `max_age_ms` as a duration.
    pub fn max_age(&self) -> Duration {
        Duration::from_millis(self.max_age_ms)
    }

    /// Checks that the names are set and the bounds are positive.
    ///
    /// # Errors
    /// A sentence naming the field.
    pub fn validate(&self) -> Result<(), String> {
        self.check(true)
    }

    /// Checks what an executor that writes no batch files needs (bucket and dead-letter
    /// prefix): `prefix` may stay unset.
    ///
    /// # Errors
    /// A sentence naming the field.
    pub fn validate_dead_letters(&self) -> Result<(), String> {
        self.check(false)
    }

    fn check(&self, batches: bool) -> Result<(), String> {
        let mut fields = vec![
            ("bucket", &self.bucket),
            ("dead_letter_prefix", &self.dead_letter_prefix),
        ];
        if batches {
            fields.push(("prefix", &self.prefix));
        }
        for (field, value) in fields {
            if value.is_empty() {
                return Err(format!("archive.{field} must be set"));
            }
            if value.starts_with('/') || value.ends_with('/') {
                return Err(format!(
                    "archive.{field} `{value}` must not start or end with `/`"
                ));
            }
        }
        if self.max_records == 0 || self.max_bytes == 0 || self.max_age_ms == 0 {
            return Err("archive.max_records, max_bytes and max_age_ms must be positive".into());
        }
        Ok(())
    }
}

/// Which table the rows are for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RowKind {
    /// `orders (orderid, orderdata)`; the record is checked as an [`Order`] (the record
    /// contract, [`crate::model`]) and passes through byte for byte as `orderdata`.
    Orders,
    /// `jobresults (orderid, userid, factoryid, robotid, jobstatus, timestamp)`; the
    /// record is parsed as a [`JobResult`].
    JobResults,
}

pub use chief_sinks::RecordPosition;

/// One user record as the processor received it.
#[derive(Debug, Clone, Copy)]
pub struct ArchiveRecord<'a> {
    /// The payload (the JSON of an order or a job result).
    pub data: &'a [u8],
    /// Its position.
    pub position: &'a RecordPosition,
    /// Kinesis' `ApproximateArrivalTimestamp` of the record.
    pub arrival: DateTime<Utc>,
}

/// What happened to a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Its row is in the batch (or already written, if the batch was flushed).
    Buffered,
    /// The de-duplication window had seen its `orderid`; nothing written.
    Duplicate,
    /// It could not be parsed and was written as a dead letter.
    DeadLettered,
}

/// The result of [`ShardArchiver::process`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Processed {
    /// What happened to the record.
    pub disposition: Disposition,
    /// The position to checkpoint now, if the durable position advanced.
    pub checkpoint: Option<RecordPosition>,
}

/// Why the archive sink could not write.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ArchiveError {
    /// A batch object could not be written; the batch is kept.
    #[error("writing batch `{key}` ({records} records) failed after {attempts} attempts: {source}")]
    Batch {
        /// The object key.
        key: String,
        /// Rows in the batch.
        records: usize,
        /// Attempts made.
        attempts: u32,
        /// The last error.
        #[source]
        source: ObjectSinkError,
    },
    /// A dead letter could not be written; the record is not checkpointed.
    #[error("writing dead letter `{key}` failed after {attempts} attempts: {source}")]
    DeadLetter {
        /// The object key.
        key: String,
        /// Attempts made.
        attempts: u32,
        /// The last error.
        #[source]
        source: ObjectSinkError,
    },
}

impl ArchiveError {
    /// Whether calling again (e.g. [`ShardArchiver::flush`]) may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            ArchiveError::Batch { source, .. } | ArchiveError::DeadLetter { source, .. } => {
                source.is_retryable()
            }
        }
    }
}

/// `<prefix>/YYYY/MM/DD/HH/<shard_id>-<sequence>[-<sub-sequence>]`: the key of a batch
/// whose first record is at `first`, arrived at `arrival`.
pub fn batch_key(
    prefix: &str,
    arrival: DateTime<Utc>,
    shard_id: &str,
    first: &RecordPosition,
) -> String {
    let mut key = format!(
        "{prefix}/{}/{shard_id}-{}",
        hour_path(arrival),
        first.sequence_number
    );
    if first.sub_sequence_number > 0 {
        key.push_str(&format!("-{}", first.sub_sequence_number));
    }
    key
}

struct Counters {
    objects: metrics::Counter,
    records: metrics::Counter,
    bytes: metrics::Counter,
}

/// The archive sink of one shard. Not shared between shards; the sink is.
pub struct ShardArchiver<S> {
    sink: S,
    config: Arc<ArchiveConfig>,
    kind: RowKind,
    executor: String,
    shard_id: String,
    /// The open batch of TSV rows, and the accepted and durable positions.
    batcher: Batcher<Vec<u8>>,
    row: Vec<u8>,
    counters: Counters,
}

impl<S: ObjectSink> ShardArchiver<S> {
    /// The archiver of `shard_id` for `executor` (used in dead-letter keys and metric
    /// labels), writing `kind` rows to `sink`.
    pub fn new(
        sink: S,
        config: Arc<ArchiveConfig>,
        kind: RowKind,
        executor: impl Into<String>,
        shard_id: impl Into<String>,
    ) -> Self {
        let executor = executor.into();
        let label = || executor.clone();
        let counters = Counters {
            objects: metrics::counter!("ArchiveObjectsWritten", "executor" => label()),
            records: metrics::counter!("ArchiveRecordsWritten", "executor" => label()),
            bytes: metrics::counter!("ArchiveBytesWritten", "executor" => label()),
        };
        let batcher = Batcher::new(Limits {
            max_records: config.max_records,
            max_bytes: config.max_bytes,
            max_age: config.max_age(),
        });
        Self {
            sink,
            config,
            kind,
            executor,
            shard_id: shard_id.into(),
            batcher,
            row: Vec::new(),
            counters,
        }
    }

    /// Handles one record at time `now`: flushes an expired batch first, parses the
    /// record (dead letter on failure), drops it if `dedup` has seen its `orderid`,
    /// otherwise buffers its row and flushes when a bound is reached.
    ///
    /// # Errors
    /// A write that failed for good (or past the retry deadline); nothing is lost and
    /// nothing is checkpointed past what is not durable:
    /// - [`ArchiveError::Batch`]: the record was accepted (its row is in the kept
    ///   batch, possibly past `max_bytes`, or it was a duplicate); do not offer it
    ///   again, call [`flush`](Self::flush) until it succeeds.
    /// - [`ArchiveError::DeadLetter`]: the record was not accepted; offer it again.
    pub async fn process(
        &mut self,
        record: ArchiveRecord<'_>,
        dedup: Option<&mut DedupWindow>,
        now: Instant,
    ) -> Result<Processed, ArchiveError> {
        let before = self.batcher.durable().cloned();
        // An expired batch is written first; if that fails, the record still joins it
        // and the error is returned after.
        let expired = self.flush_if_due(now).await;

        self.row.clear();
        let parsed = match self.kind {
            RowKind::Orders => Order::parse(record.data).map(|order| {
                tsv::write_order_row(&mut self.row, &order.orderid, record.data);
                order.orderid
            }),
            RowKind::JobResults => JobResult::parse(record.data).map(|job| {
                tsv::write_job_result_row(&mut self.row, &job);
                job.orderid
            }),
        };
        let disposition = match parsed {
            Err(error) => {
                self.dead_letter(record, &error).await?;
                self.accept(record.position);
                Disposition::DeadLettered
            }
            Ok(id) => {
                if let Some(window) = dedup
                    && window.check(&id, now).is_duplicate()
                {
                    self.accept(record.position);
                    Disposition::Duplicate
                } else {
                    self.buffer(record, now, expired.is_ok()).await?;
                    Disposition::Buffered
                }
            }
        };
        expired?;
        Ok(Processed {
            disposition,
            checkpoint: self.batcher.advanced_since(before.as_ref()),
        })
    }

    /// Appends the row in `self.row`. With `may_write`, writes the batch first if the
    /// row would take it past `max_bytes`, and after it if it is full. The row is in
    /// the batch even when a write fails.
    async fn buffer(
        &mut self,
        record: ArchiveRecord<'_>,
        now: Instant,
        may_write: bool,
    ) -> Result<(), ArchiveError> {
        let mut result = Ok(());
        if may_write && self.batcher.would_overflow(self.row.len()) {
            result = self.write_batch().await;
        }
        let row = &self.row;
        let full = self.batcher.push(
            record.position,
            record.arrival,
            now,
            row.len(),
            |rows: &mut Vec<u8>| {
                if rows.capacity() == 0 {
                    rows.reserve(row.len().max(64 * 1024));
                }
                rows.extend_from_slice(row);
            },
        );
        result?;
        if full && may_write {
            self.write_batch().await?;
        }
        Ok(())
    }

    /// Marks a record handled that needs no write; durable at once if nothing is
    /// buffered before it.
    fn accept(&mut self, position: &RecordPosition) {
        self.batcher.skip(position);
    }

    /// Writes the batch if it is older than `max_age_ms` at `now`. Call it from the
    /// processor's timer (see [`deadline`](Self::deadline)) so that a quiet shard's
    /// batch is not held back.
    ///
    /// # Errors
    /// As [`flush`](Self::flush).
    pub async fn flush_if_due(
        &mut self,
        now: Instant,
    ) -> Result<Option<RecordPosition>, ArchiveError> {
        if self.batcher.is_due(now) {
            self.flush().await
        } else {
            Ok(None)
        }
    }

    /// Writes the batch, if any, and returns the position to checkpoint if it advanced.
    ///
    /// # Errors
    /// [`ArchiveError::Batch`]: the batch is kept and a later call tries again.
    pub async fn flush(&mut self) -> Result<Option<RecordPosition>, ArchiveError> {
        let before = self.batcher.durable().cloned();
        self.write_batch().await?;
        Ok(self.batcher.advanced_since(before.as_ref()))
    }

    /// When the open batch reaches its age bound, if there is one.
    pub fn deadline(&self) -> Option<Instant> {
        self.batcher.deadline()
    }

    /// The last position such that it and everything before it is durable.
    pub fn durable(&self) -> Option<&RecordPosition> {
        self.batcher.durable()
    }

    /// The last record handled (buffered, dead-lettered or dropped as a duplicate): after
    /// an error, records at or before it must not be offered again.
    pub fn accepted(&self) -> Option<&RecordPosition> {
        self.batcher.accepted()
    }

    /// Rows waiting in the open batch.
    pub fn buffered_records(&self) -> usize {
        self.batcher.buffered_records()
    }

    /// Bytes waiting in the open batch.
    pub fn buffered_bytes(&self) -> usize {
        self.batcher.buffered_bytes()
    }

    async fn write_batch(&mut self) -> Result<(), ArchiveError> {
        let Some(batch) = self.batcher.batch() else {
            return Ok(());
        };
        let key = batch_key(
            &self.config.prefix,
            batch.first_arrival,
            &self.shard_id,
            &batch.first,
        );
        let records = batch.records;
        let body = Bytes::copy_from_slice(&batch.body);
        let bytes = body.len();
        match self.put(&key, body, tsv::CONTENT_TYPE).await {
            Ok(attempts) => {
                self.batcher.written();
                self.counters.objects.increment(1);
                self.counters.records.increment(records as u64);
                self.counters.bytes.increment(bytes as u64);
                tracing::info!(
                    executor = %self.executor,
                    shard_id = %self.shard_id,
                    key = %key,
                    records,
                    bytes,
                    attempts,
                    "batch written"
                );
                Ok(())
            }
            Err((attempts, source)) => Err(ArchiveError::Batch {
                key,
                records,
                attempts,
                source,
            }),
        }
    }

    async fn dead_letter(
        &mut self,
        record: ArchiveRecord<'_>,
        error: &ModelError,
    ) -> Result<(), ArchiveError> {
        write_dead_letter(
            &self.sink,
            &self.config,
            &self.executor,
            &self.shard_id,
            record,
            &error.to_string(),
        )
        .await?;
        Ok(())
    }

    async fn put(
        &self,
        key: &str,
        body: Bytes,
        content_type: &str,
    ) -> Result<u32, (u32, ObjectSinkError)> {
        put_with_retry(&self.sink, &self.config.retry, key, body, content_type).await
    }
}

/// Writes the dead letter of `record` (rejected with `error`) under
/// `<dead_letter_prefix>/<executor>/YYYY/MM/DD/HH/`, retrying with `config.retry`;
/// returns its key. Used by the archive sink and by other sinks (items Elasticsearch
/// rejects for good). The caller counts it.
///
/// # Errors
/// [`ArchiveError::DeadLetter`] once the error is fatal or the retry deadline passed.
pub async fn write_dead_letter<S: ObjectSink>(
    sink: &S,
    config: &ArchiveConfig,
    executor: &str,
    shard_id: &str,
    record: ArchiveRecord<'_>,
    error: &str,
) -> Result<String, ArchiveError> {
    chief_sinks::dead_letter::write(
        sink,
        &config.dead_letters(),
        chief_sinks::dead_letter::Rejected {
            application: executor,
            shard_id,
            position: record.position,
            arrival: record.arrival,
            data: record.data,
            error,
        },
    )
    .await
    .map_err(|e| ArchiveError::DeadLetter {
        key: e.key,
        attempts: e.attempts,
        source: e.source,
    })
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use chrono::TimeZone;

    use super::*;
    use crate::dedup::DedupConfig;
    use crate::object_sink::MemoryObjectSink;

    const SHARD: &str = "shardId-000000000001";

    fn config() -> ArchiveConfig {
        ArchiveConfig {
            bucket: "b".into(),
            prefix: "ChiefOrderS3".into(),
            max_records: 3,
            max_bytes: 1024,
            max_age_ms: 60_000,
            retry: RetryPolicy {
                initial_backoff_ms: 1,
                max_backoff_ms: 2,
                multiplier: 2.0,
                deadline_ms: 0,
            },
            ..ArchiveConfig::default()
        }
    }

    fn archiver(
        config: ArchiveConfig,
        kind: RowKind,
    ) -> (Arc<MemoryObjectSink>, ShardArchiver<Arc<MemoryObjectSink>>) {
        let sink = Arc::new(MemoryObjectSink::new());
        let archiver = ShardArchiver::new(
            Arc::clone(&sink),
            Arc::new(config),
            kind,
            "chief-order-factory-s3",
            SHARD,
        );
        (sink, archiver)
    }

    fn pos(n: u64) -> RecordPosition {
        RecordPosition {
            sequence_number: format!("4960000000000000000000{n:04}"),
            sub_sequence_number: 0,
        }
    }

    /// A valid order (the record contract) with id `id`.
    fn order(id: &str) -> Vec<u8> {
        format!(
            r#"{{"orderid":"{id}","user":{{"userid":"u","name":"n"}},"factoryid":"factory-01","items":[],"timestamp":"2017-10-18T16:00:00Z"}}"#
        )
        .into_bytes()
    }

    fn at(hour: u32, minute: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2017, 10, 18, hour, minute, 7)
            .single()
            .expect("valid time")
    }

    async fn push(
        a: &mut ShardArchiver<Arc<MemoryObjectSink>>,
        data: &[u8],
        n: u64,
        arrival: DateTime<Utc>,
        now: Instant,
    ) -> Processed {
        a.process(
            ArchiveRecord {
                data,
                position: &pos(n),
                arrival,
            },
            None,
            now,
        )
        .await
        .expect("process")
    }

    async fn body(sink: &MemoryObjectSink, key: &str) -> String {
        let object = sink.get(key).await.expect("object");
        String::from_utf8(object.body.to_vec()).expect("utf-8")
    }

    #[test]
    fn defaults_are_firehose_like_and_names_must_be_set() {
        let d = ArchiveConfig::default();
        assert_eq!(d.max_bytes, 5 * 1024 * 1024);
        assert_eq!(d.max_age_ms, 60_000);
        assert_eq!(d.dead_letter_prefix, "errors");
        assert!(d.validate().is_err());
        assert_eq!(config().validate(), Ok(()));
        let slash = ArchiveConfig {
            prefix: "ChiefOrderS3/".into(),
            ..config()
        };
        assert!(slash.validate().is_err());
        let parsed: ArchiveConfig =
            toml::from_str("bucket = \"x\"\nprefix = \"p\"\n").expect("toml");
        assert_eq!(parsed.max_records, 100_000);
        assert!(toml::from_str::<ArchiveConfig>("bogus = 1").is_err());
    }

    #[test]
    fn keys_carry_the_arrival_hour_and_the_first_position() {
        let first = pos(7);
        assert_eq!(
            batch_key("ChiefOrderS3", at(16, 59), SHARD, &first),
            "ChiefOrderS3/2017/10/18/16/shardId-000000000001-49600000000000000000000007"
        );
        let aggregated = RecordPosition {
            sub_sequence_number: 3,
            ..first.clone()
        };
        assert_eq!(
            batch_key("P", at(0, 0), SHARD, &aggregated),
            "P/2017/10/18/00/shardId-000000000001-49600000000000000000000007-3"
        );
        assert_eq!(
            dead_letter_key("errors", "chief-x", at(9, 1), SHARD, &first),
            "errors/chief-x/2017/10/18/09/shardId-000000000001-49600000000000000000000007-0"
        );
    }

    #[tokio::test]
    async fn a_batch_is_written_when_it_reaches_max_records_and_checkpoints_its_last_row() {
        let (sink, mut a) = archiver(config(), RowKind::Orders);
        let t0 = Instant::now();
        let p1 = push(&mut a, &order("o-1"), 1, at(16, 59), t0).await;
        assert_eq!(p1.disposition, Disposition::Buffered);
        assert_eq!(p1.checkpoint, None);
        // The second record arrives in the next hour; the key keeps the first's hour.
        assert_eq!(
            push(&mut a, &order("o-2"), 2, at(17, 0), t0)
                .await
                .checkpoint,
            None
        );
        assert_eq!(a.buffered_records(), 2);
        assert!(sink.keys().is_empty());
        let p3 = push(&mut a, &order("o-3"), 3, at(17, 0), t0).await;
        assert_eq!(p3.checkpoint, Some(pos(3)));
        assert_eq!(a.durable(), Some(&pos(3)));
        assert_eq!(a.buffered_records(), 0);
        let key = "ChiefOrderS3/2017/10/18/16/shardId-000000000001-49600000000000000000000001";
        assert_eq!(sink.keys(), vec![key.to_owned()]);
        assert_eq!(
            body(&sink, key).await,
            ["o-1", "o-2", "o-3"]
                .map(|id| format!("{id}\t{}\n", String::from_utf8_lossy(&order(id))))
                .concat()
        );
        let object = sink.get(key).await.expect("object");
        assert_eq!(object.content_type.as_deref(), Some(tsv::CONTENT_TYPE));
    }

    #[tokio::test]
    async fn a_row_that_would_pass_max_bytes_starts_a_new_batch() {
        // Each row is the orderid, a tab, the JSON and a newline.
        let row_len = 4 + 1 + order("o-01").len() + 1;
        let (sink, mut a) = archiver(
            ArchiveConfig {
                max_records: 100,
                max_bytes: 2 * row_len + 10,
                ..config()
            },
            RowKind::Orders,
        );
        let t0 = Instant::now();
        push(&mut a, &order("o-01"), 1, at(1, 0), t0).await;
        push(&mut a, &order("o-02"), 2, at(1, 0), t0).await;
        assert_eq!(a.buffered_bytes(), 2 * row_len);
        // The third does not fit: the first two are written, the third opens a batch.
        let p = push(&mut a, &order("o-03"), 3, at(1, 0), t0).await;
        assert_eq!(p.checkpoint, Some(pos(2)));
        assert_eq!(a.buffered_records(), 1);
        let objects = sink.list("ChiefOrderS3/").await.expect("list");
        assert_eq!(objects.len(), 1);
        assert_eq!(objects[0].size, 2 * row_len as u64);
        // A row larger than max_bytes on its own goes out alone, at once.
        let big = order(&"x".repeat(73));
        let p = push(&mut a, &big, 4, at(1, 0), t0).await;
        assert_eq!(p.checkpoint, Some(pos(4)));
        assert_eq!(a.buffered_records(), 0);
        let p = push(&mut a, &big, 5, at(1, 0), t0).await;
        assert_eq!(p.checkpoint, Some(pos(5)));
        let sizes: Vec<u64> = sink
            .list("")
            .await
            .expect("list")
            .iter()
            .map(|o| o.size)
            .collect();
        let big_row = (73 + 1 + big.len() + 1) as u64;
        let row = row_len as u64;
        assert_eq!(sizes, vec![2 * row, row, big_row, big_row]);
        assert_eq!(sink.keys().len(), 4);
    }

    #[tokio::test]
    async fn a_batch_is_written_when_it_reaches_max_age() {
        let (sink, mut a) = archiver(config(), RowKind::Orders);
        let t0 = Instant::now();
        push(&mut a, &order("o-1"), 1, at(2, 0), t0).await;
        assert_eq!(a.deadline(), Some(t0 + Duration::from_secs(60)));
        let almost = t0 + Duration::from_millis(59_999);
        assert_eq!(a.flush_if_due(almost).await.expect("flush"), None);
        assert!(sink.keys().is_empty());
        let due = t0 + Duration::from_secs(60);
        assert_eq!(a.flush_if_due(due).await.expect("flush"), Some(pos(1)));
        assert_eq!(sink.keys().len(), 1);
        assert_eq!(a.deadline(), None);
        // An expired batch is also written before the next record is buffered.
        push(&mut a, &order("o-2"), 2, at(2, 0), due).await;
        let p = push(
            &mut a,
            &order("o-3"),
            3,
            at(3, 0),
            due + Duration::from_secs(61),
        )
        .await;
        assert_eq!(p.checkpoint, Some(pos(2)));
        assert_eq!(a.buffered_records(), 1);
        assert_eq!(sink.keys().len(), 2);
        assert_eq!(a.flush().await.expect("flush"), Some(pos(3)));
        assert_eq!(a.flush().await.expect("flush"), None);
        assert_eq!(
            sink.keys(),
            vec![
                "ChiefOrderS3/2017/10/18/02/shardId-000000000001-49600000000000000000000001",
                "ChiefOrderS3/2017/10/18/02/shardId-000000000001-49600000000000000000000002",
                "ChiefOrderS3/2017/10/18/03/shardId-000000000001-49600000000000000000000003",
            ]
        );
    }

    async fn push_dedup(
        a: &mut ShardArchiver<Arc<MemoryObjectSink>>,
        dedup: &mut DedupWindow,
        data: &[u8],
        n: u64,
    ) -> Processed {
        a.process(
            ArchiveRecord {
                data,
                position: &pos(n),
                arrival: at(4, 0),
            },
            Some(dedup),
            Instant::now(),
        )
        .await
        .expect("process")
    }

    #[tokio::test]
    async fn duplicates_are_dropped_and_never_checkpointed_past_a_buffered_row() {
        let (sink, mut a) = archiver(config(), RowKind::Orders);
        let mut w = DedupWindow::new(&DedupConfig::default(), "test");
        let p = push_dedup(&mut a, &mut w, &order("o-1"), 1).await;
        assert_eq!((p.disposition, p.checkpoint), (Disposition::Buffered, None));
        // Behind a buffered row, a duplicate is not checkpointed.
        let p = push_dedup(&mut a, &mut w, &order("o-1"), 2).await;
        assert_eq!(
            (p.disposition, p.checkpoint),
            (Disposition::Duplicate, None)
        );
        let p = push_dedup(&mut a, &mut w, &order("o-2"), 3).await;
        assert_eq!(p.checkpoint, None);
        // The batch flushes at the third row: the duplicate did not count as a row.
        let p = push_dedup(&mut a, &mut w, &order("o-3"), 4).await;
        assert_eq!(p.checkpoint, Some(pos(4)));
        // With nothing buffered, a duplicate is durable at once.
        let p = push_dedup(&mut a, &mut w, &order("o-2"), 5).await;
        assert_eq!(
            (p.disposition, p.checkpoint),
            (Disposition::Duplicate, Some(pos(5)))
        );
        assert_eq!(w.hits(), 2);
        let keys = sink.keys();
        assert_eq!(keys.len(), 1);
        assert_eq!(body(&sink, &keys[0]).await.lines().count(), 3);
        // A flush with nothing buffered changes nothing.
        assert_eq!(a.flush().await.expect("flush"), None);
    }

    #[tokio::test]
    async fn job_results_are_written_as_six_columns() {
        let (sink, mut a) = archiver(
            ArchiveConfig {
                prefix: "ChiefJobResultNotifyS3".into(),
                ..config()
            },
            RowKind::JobResults,
        );
        let job = br#"{"orderid":"o-1","userid":"user-000042","factoryid":"factory-03","robotid":"robot-017","jobstatus":"failed","timestamp":"2017-10-17T17:59:59.999Z"}"#;
        push(&mut a, job, 1, at(17, 0), Instant::now()).await;
        assert_eq!(a.flush().await.expect("flush"), Some(pos(1)));
        let key =
            "ChiefJobResultNotifyS3/2017/10/18/17/shardId-000000000001-49600000000000000000000001";
        assert_eq!(
            body(&sink, key).await,
            "o-1\tuser-000042\tfactory-03\trobot-017\tfailed\t2017-10-17 17:59:59\n"
        );
    }

    #[tokio::test]
    async fn bad_records_become_dead_letters_with_the_error_and_the_raw_bytes() {
        let (sink, mut a) = archiver(config(), RowKind::Orders);
        let t0 = Instant::now();
        push(&mut a, &order("o-1"), 1, at(5, 0), t0).await;
        let not_json = b"{\"orderid\": \"o-2\", \xff";
        let p = push(&mut a, not_json, 2, at(6, 30), t0).await;
        // Dead-lettered, but the buffered row before it is not durable yet.
        assert_eq!(
            (p.disposition, p.checkpoint),
            (Disposition::DeadLettered, None)
        );
        let no_id = String::from_utf8_lossy(&order("o-3")).replace(r#""orderid":"o-3","#, "");
        let no_id = no_id.as_bytes();
        let p = push(&mut a, no_id, 3, at(6, 31), t0).await;
        assert_eq!(p.disposition, Disposition::DeadLettered);
        assert_eq!(a.buffered_records(), 1);
        assert_eq!(a.flush().await.expect("flush"), Some(pos(3)));
        // With nothing buffered, a dead letter is durable at once.
        let p = push(&mut a, b"", 4, at(6, 32), t0).await;
        assert_eq!(p.checkpoint, Some(pos(4)));

        let letters = sink.list("errors/").await.expect("list");
        let keys: Vec<&str> = letters.iter().map(|o| o.key.as_str()).collect();
        assert_eq!(
            keys,
            vec![
                "errors/chief-order-factory-s3/2017/10/18/06/shardId-000000000001-49600000000000000000000002-0",
                "errors/chief-order-factory-s3/2017/10/18/06/shardId-000000000001-49600000000000000000000003-0",
                "errors/chief-order-factory-s3/2017/10/18/06/shardId-000000000001-49600000000000000000000004-0",
            ]
        );
        let object = sink.get(keys[0]).await.expect("letter");
        assert_eq!(
            object.content_type.as_deref(),
            Some(DEAD_LETTER_CONTENT_TYPE)
        );
        let letter: DeadLetter = serde_json::from_slice(&object.body).expect("json");
        assert_eq!(letter.executor, "chief-order-factory-s3");
        assert_eq!(letter.shard_id, SHARD);
        assert_eq!(letter.sequence_number, pos(2).sequence_number);
        assert_eq!(letter.arrival, "2017-10-18T06:30:07+00:00");
        assert!(letter.error.contains("not valid UTF-8"), "{}", letter.error);
        assert_eq!(
            base64::engine::general_purpose::STANDARD
                .decode(&letter.data_base64)
                .expect("base64"),
            not_json.to_vec()
        );
        let letter: DeadLetter =
            serde_json::from_slice(&sink.get(keys[1]).await.expect("letter").body).expect("json");
        assert_eq!(letter.error, "order record has no `orderid`");
        assert_eq!(letter.data.as_bytes(), no_id);
        // Only the one good row went to the archive prefix.
        assert_eq!(sink.list("ChiefOrderS3/").await.expect("list").len(), 1);
    }

    #[tokio::test]
    async fn retryable_write_errors_are_retried_and_fatal_ones_keep_the_batch() {
        let (sink, mut a) = archiver(config(), RowKind::Orders);
        let t0 = Instant::now();
        push(&mut a, &order("o-1"), 1, at(7, 0), t0).await;
        sink.fail_next_puts(2, true);
        assert_eq!(a.flush().await.expect("flush after retries"), Some(pos(1)));
        assert_eq!(sink.put_calls(), 3);
        assert_eq!(sink.keys().len(), 1);

        push(&mut a, &order("o-2"), 2, at(7, 0), t0).await;
        sink.fail_next_puts(1, false);
        let err = a.flush().await.expect_err("fatal error");
        assert!(!err.is_retryable());
        assert!(
            matches!(
                err,
                ArchiveError::Batch {
                    records: 1,
                    attempts: 1,
                    ..
                }
            ),
            "{err}"
        );
        // Nothing lost, nothing checkpointed: the batch is still there.
        assert_eq!(a.buffered_records(), 1);
        assert_eq!(a.durable(), Some(&pos(1)));
        assert_eq!(a.flush().await.expect("second try"), Some(pos(2)));
        assert_eq!(sink.keys().len(), 2);
        assert_eq!(sink.put_calls(), 5);
    }

    #[tokio::test]
    async fn after_a_failed_batch_write_the_record_is_in_the_batch_and_nothing_is_checkpointed() {
        let (sink, mut a) = archiver(
            ArchiveConfig {
                max_records: 100,
                max_bytes: 2 * (4 + 1 + order("o-01").len() + 1) + 10,
                ..config()
            },
            RowKind::Orders,
        );
        let mut w = DedupWindow::new(&DedupConfig::default(), "test");
        push_dedup(&mut a, &mut w, &order("o-01"), 1).await;
        push_dedup(&mut a, &mut w, &order("o-02"), 2).await;
        // The third row would pass max_bytes; writing the first two fails for good.
        sink.fail_next_puts(1, false);
        let third = order("o-03");
        let err = a
            .process(
                ArchiveRecord {
                    data: &third,
                    position: &pos(3),
                    arrival: at(4, 0),
                },
                Some(&mut w),
                Instant::now(),
            )
            .await
            .expect_err("write fails");
        assert!(
            matches!(err, ArchiveError::Batch { records: 2, .. }),
            "{err}"
        );
        assert_eq!(a.buffered_records(), 3);
        assert_eq!(a.durable(), None);
        // Offered again by mistake, it is a duplicate, not a second row.
        let p = push_dedup(&mut a, &mut w, &third, 3).await;
        assert_eq!(
            (p.disposition, p.checkpoint),
            (Disposition::Duplicate, None)
        );
        assert_eq!(a.flush().await.expect("flush"), Some(pos(3)));
        let keys = sink.keys();
        assert_eq!(keys.len(), 1);
        assert_eq!(body(&sink, &keys[0]).await.lines().count(), 3);
    }

    #[tokio::test]
    async fn a_failed_age_flush_keeps_the_new_record_in_the_batch() {
        let (sink, mut a) = archiver(config(), RowKind::Orders);
        let t0 = Instant::now();
        push(&mut a, &order("o-1"), 1, at(8, 0), t0).await;
        sink.fail_next_puts(1, false);
        let second = order("o-2");
        let err = a
            .process(
                ArchiveRecord {
                    data: &second,
                    position: &pos(2),
                    arrival: at(8, 1),
                },
                None,
                t0 + Duration::from_secs(61),
            )
            .await
            .expect_err("age flush fails");
        assert!(
            matches!(err, ArchiveError::Batch { records: 1, .. }),
            "{err}"
        );
        assert_eq!(a.buffered_records(), 2);
        assert_eq!(sink.put_calls(), 1);
        assert_eq!(a.flush().await.expect("flush"), Some(pos(2)));
        assert_eq!(sink.keys().len(), 1);
    }

    #[tokio::test]
    async fn retries_stop_at_the_policy_deadline() {
        let (sink, mut a) = archiver(
            ArchiveConfig {
                retry: RetryPolicy {
                    initial_backoff_ms: 20,
                    max_backoff_ms: 20,
                    multiplier: 1.0,
                    deadline_ms: 1,
                },
                ..config()
            },
            RowKind::Orders,
        );
        push(&mut a, &order("o-1"), 1, at(7, 0), Instant::now()).await;
        sink.fail_next_puts(100, true);
        let err = a.flush().await.expect_err("deadline passed");
        assert!(err.is_retryable());
        let ArchiveError::Batch { attempts, .. } = err else {
            panic!("not a batch error: {err}");
        };
        assert!(attempts >= 2, "gave up after {attempts} attempts");
        assert_eq!(sink.put_calls(), u64::from(attempts));
        assert_eq!(a.buffered_records(), 1);
        assert_eq!(a.durable(), None);
    }
}
