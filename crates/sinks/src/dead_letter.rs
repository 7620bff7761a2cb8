//! The dead-letter writer: a record a sink cannot deliver (it breaks the record contract,
//! or the destination rejected it for good) is written, with why, as one JSON object to
//! `<prefix>/<application>/YYYY/MM/DD/HH/<shard>-<sequence>-<sub-sequence>`, retried
//! with the shared back-off; nothing is checkpointed past it until it is written.

use base64::Engine;
use bytes::Bytes;
use chief_config::retry::RetryPolicy;
use chrono::{DateTime, Datelike, Timelike, Utc};
use serde::{Deserialize, Serialize};

use crate::batch::RecordPosition;
use crate::object::{ObjectSink, ObjectSinkError, put_with_retry};

/// Content type of dead-letter objects.
pub const CONTENT_TYPE: &str = "application/json";

/// Where dead letters go and how their writes are retried.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetterSettings {
    /// The key prefix, without a trailing `/` (e.g. `errors`).
    pub prefix: String,
    /// Back-off of a failed write.
    pub retry: RetryPolicy,
}

/// `YYYY/MM/DD/HH` of `time` (UTC).
pub fn hour_path(time: DateTime<Utc>) -> String {
    format!(
        "{:04}/{:02}/{:02}/{:02}",
        time.year(),
        time.month(),
        time.day(),
        time.hour()
    )
}

/// `<prefix>/<application>/YYYY/MM/DD/HH/<shard_id>-<sequence>-<sub-sequence>`.
pub fn dead_letter_key(
    prefix: &str,
    application: &str,
    arrival: DateTime<Utc>,
    shard_id: &str,
    position: &RecordPosition,
) -> String {
    format!(
        "{prefix}/{application}/{}/{shard_id}-{}-{}",
        hour_path(arrival),
        position.sequence_number,
        position.sub_sequence_number
    )
}

/// The body of a dead-letter object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// The application that received the record (an executor's name).
    pub executor: String,
    /// The shard.
    pub shard_id: String,
    /// The record's sequence number.
    pub sequence_number: String,
    /// The record's sub-sequence number.
    pub sub_sequence_number: u64,
    /// Its arrival time, RFC 3339.
    pub arrival: String,
    /// Why it was rejected.
    pub error: String,
    /// The record's bytes, base64 (exact).
    pub data_base64: String,
    /// The record's bytes as text (invalid UTF-8 replaced), for people.
    pub data: String,
}

/// A dead letter that could not be written.
#[derive(Debug, thiserror::Error)]
#[error("writing dead letter `{key}` failed after {attempts} attempts: {source}")]
pub struct DeadLetterError {
    /// The object key.
    pub key: String,
    /// Attempts made.
    pub attempts: u32,
    /// The last error.
    #[source]
    pub source: ObjectSinkError,
}

impl DeadLetterError {
    /// Whether writing it again may succeed.
    pub fn is_retryable(&self) -> bool {
        self.source.is_retryable()
    }
}

/// One record to dead-letter.
#[derive(Debug, Clone, Copy)]
pub struct Rejected<'a> {
    /// The application (its name is in the key).
    pub application: &'a str,
    /// The shard.
    pub shard_id: &'a str,
    /// The record's position.
    pub position: &'a RecordPosition,
    /// Its arrival time.
    pub arrival: DateTime<Utc>,
    /// Its bytes.
    pub data: &'a [u8],
    /// Why.
    pub error: &'a str,
}

/// Writes `rejected` to `sink` under `settings`: the key written.
///
/// # Errors
/// [`DeadLetterError`] when the write fails for good or past the retry deadline.
pub async fn write<S: ObjectSink>(
    sink: &S,
    settings: &DeadLetterSettings,
    rejected: Rejected<'_>,
) -> Result<String, DeadLetterError> {
    let key = dead_letter_key(
        &settings.prefix,
        rejected.application,
        rejected.arrival,
        rejected.shard_id,
        rejected.position,
    );
    let letter = DeadLetter {
        executor: rejected.application.to_owned(),
        shard_id: rejected.shard_id.to_owned(),
        sequence_number: rejected.position.sequence_number.clone(),
        sub_sequence_number: rejected.position.sub_sequence_number,
        arrival: rejected.arrival.to_rfc3339(),
        error: rejected.error.to_owned(),
        data_base64: base64::engine::general_purpose::STANDARD.encode(rejected.data),
        data: String::from_utf8_lossy(rejected.data).into_owned(),
    };
    // A struct of strings and integers always serialises.
    let body = serde_json::to_vec_pretty(&letter).unwrap_or_default();
    match put_with_retry(sink, &settings.retry, &key, Bytes::from(body), CONTENT_TYPE).await {
        Ok(_) => {
            metrics::counter!("DeadLetters", "executor" => rejected.application.to_owned())
                .increment(1);
            tracing::warn!(
                executor = rejected.application,
                shard_id = rejected.shard_id,
                sequence_number = %rejected.position.sequence_number,
                sub_sequence_number = rejected.position.sub_sequence_number,
                key = %key,
                error = rejected.error,
                "record dead-lettered"
            );
            Ok(key)
        }
        Err((attempts, source)) => Err(DeadLetterError {
            key,
            attempts,
            source,
        }),
    }
}
