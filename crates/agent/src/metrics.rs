//! Metric names (label `flow`: the flow's id).

/// The label every metric carries.
pub const FLOW: &str = "flow";
/// Lines read from the flow's files.
pub const LINES_READ: &str = "AgentLinesRead";
/// Records handed to the destination.
pub const RECORDS_SENT: &str = "AgentRecordsSent";
/// Records the destination acknowledged.
pub const RECORDS_ACKED: &str = "AgentRecordsAcknowledged";
/// Records cut at the largest record size.
pub const RECORDS_TRUNCATED: &str = "AgentRecordsTruncated";
/// Records sent again after a restart that may have been acknowledged before it.
pub const REPLAYED_RECORDS: &str = "AgentRecordsReplayed";
/// Bytes of a file truncated in place that no copy held and were not read before.
pub const BYTES_LOST_TO_TRUNCATION: &str = "AgentBytesLostToTruncation";
/// Records that did not convert, sent to the flow's error output (its error file or
/// error stream).
pub const RECORDS_IN_ERROR_OUTPUT: &str = "AgentRecordsInErrorOutput";
/// The label of the Firehose metrics: the delivery stream.
pub const STREAM: &str = "delivery_stream";
/// Seconds a `PutRecordBatch` call took (one attempt).
pub const FIREHOSE_CALL_SECONDS: &str = "AgentFirehosePutRecordBatchSeconds";
/// `PutRecordBatch` entries that failed (label `code`), each sent again or handed back.
pub const FIREHOSE_FAILED_ENTRIES: &str = "AgentFirehoseFailedEntries";
