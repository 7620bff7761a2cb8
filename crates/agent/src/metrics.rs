//! Metric names (label `flow`: the flow's id).

/// The label every metric carries.
pub const FLOW: &str = "flow";
/// Lines read from the flow's files.
pub const LINES_READ: &str = "AgentLinesRead";
/// Records handed to the producer.
pub const RECORDS_SENT: &str = "AgentRecordsSent";
/// Records the stream acknowledged.
pub const RECORDS_ACKED: &str = "AgentRecordsAcknowledged";
/// Records that did not convert, written to the flow's error file.
pub const RECORDS_IN_ERROR_FILE: &str = "AgentRecordsInErrorFile";
/// Records cut at the largest record size.
pub const RECORDS_TRUNCATED: &str = "AgentRecordsTruncated";
/// Records sent again after a restart that may have been acknowledged before it.
pub const REPLAYED_RECORDS: &str = "AgentRecordsReplayed";
/// Bytes of a file truncated in place that no copy held and were not read before.
pub const BYTES_LOST_TO_TRUNCATION: &str = "AgentBytesLostToTruncation";
