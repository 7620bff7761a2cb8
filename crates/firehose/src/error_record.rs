//! The records Firehose writes to its error output: one JSON object per line, the record's
//! bytes base64 in `rawData`, and why. A processing failure (the record could not be
//! partitioned or given a document id) is written under error output type
//! `processing-failed`; a document Elasticsearch refused, or that was still failing at
//! the end of the retry duration, under `elasticsearch-failed` with its index and id.

use base64::Engine as _;
use chrono::{DateTime, Utc};
use serde::Serialize;

/// `!{firehose:error-output-type}` of records that could not be processed.
pub const PROCESSING_FAILED: &str = "processing-failed";
/// `!{firehose:error-output-type}` of documents Elasticsearch did not take.
pub const ELASTICSEARCH_FAILED: &str = "elasticsearch-failed";

/// One error record, as Firehose writes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorRecord {
    /// Delivery attempts made.
    pub attempts_made: u32,
    /// When the record arrived (ms since the epoch).
    pub arrival_timestamp: i64,
    /// A code: the item status for Elasticsearch (`"400"`), else a Firehose-style code.
    pub error_code: String,
    /// What went wrong.
    pub error_message: String,
    /// When the last attempt ended (ms since the epoch).
    pub attempt_ending_timestamp: i64,
    /// The record, base64.
    pub raw_data: String,
    /// The Kinesis sequence number it came with.
    pub sequence_number: String,
    /// Its position in its KPL aggregate.
    pub sub_sequence_number: u64,
    /// The document id (Elasticsearch failures).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub es_document_id: Option<String>,
    /// The index (Elasticsearch failures).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub es_index_name: Option<String>,
    /// Always empty: there are no mapping types since Elasticsearch 7.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub es_type_name: Option<String>,
}

/// Where a failed record came from.
#[derive(Debug, Clone, Copy)]
pub struct Failed<'a> {
    /// The record.
    pub data: &'a [u8],
    /// Its arrival.
    pub arrival: DateTime<Utc>,
    /// Its sequence number.
    pub sequence_number: &'a str,
    /// Its sub-sequence number.
    pub sub_sequence_number: u64,
}

impl ErrorRecord {
    /// A record that failed with `code`/`message` after `attempts`, at `now`.
    pub fn new(
        failed: Failed<'_>,
        attempts: u32,
        code: impl Into<String>,
        message: impl Into<String>,
        now: DateTime<Utc>,
    ) -> Self {
        Self {
            attempts_made: attempts,
            arrival_timestamp: failed.arrival.timestamp_millis(),
            error_code: code.into(),
            error_message: message.into(),
            attempt_ending_timestamp: now.timestamp_millis(),
            raw_data: base64::engine::general_purpose::STANDARD.encode(failed.data),
            sequence_number: failed.sequence_number.to_owned(),
            sub_sequence_number: failed.sub_sequence_number,
            es_document_id: None,
            es_index_name: None,
            es_type_name: None,
        }
    }

    /// With the document's id and index (an Elasticsearch failure).
    #[must_use]
    pub fn for_document(mut self, id: &str, index: &str) -> Self {
        self.es_document_id = Some(id.to_owned());
        self.es_index_name = Some(index.to_owned());
        self.es_type_name = Some(String::new());
        self
    }

    /// Appends the record as one JSON line to `out`.
    pub fn write_line(&self, out: &mut Vec<u8>) {
        // Serializing plain strings and numbers cannot fail.
        if serde_json::to_writer(&mut *out, self).is_ok() {
            out.push(b'\n');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn firehose_fields() -> Result<(), serde_json::Error> {
        let arrival = DateTime::<Utc>::from_timestamp_millis(1_700_000_000_123)
            .unwrap_or(DateTime::<Utc>::UNIX_EPOCH);
        let record = ErrorRecord::new(
            Failed {
                data: b"{\"a\":1}",
                arrival,
                sequence_number: "4963",
                sub_sequence_number: 2,
            },
            3,
            "400",
            "mapper_parsing_exception: failed to parse",
            arrival,
        )
        .for_document("d-1", "logs-2026-12-04");
        let mut line = Vec::new();
        record.write_line(&mut line);
        assert_eq!(line.last(), Some(&b'\n'));
        let value: serde_json::Value = serde_json::from_slice(&line)?;
        assert_eq!(value["attemptsMade"], 3);
        assert_eq!(value["arrivalTimestamp"], 1_700_000_000_123_i64);
        assert_eq!(value["errorCode"], "400");
        assert_eq!(value["rawData"], "eyJhIjoxfQ==");
        assert_eq!(value["esDocumentId"], "d-1");
        assert_eq!(value["esIndexName"], "logs-2026-12-04");
        assert_eq!(value["esTypeName"], "");
        assert_eq!(value["subSequenceNumber"], 2);
        Ok(())
    }
}
