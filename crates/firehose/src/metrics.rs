//! Metric names: Firehose's own where it has one (CloudWatch namespace `AWS/Firehose`),
//! every one labelled with the delivery stream's name.

/// The label every metric carries: the delivery's name.
pub const DELIVERY: &str = "delivery_stream";

/// Records read from the stream.
pub const INCOMING_RECORDS: &str = "IncomingRecords";
/// Bytes read from the stream.
pub const INCOMING_BYTES: &str = "IncomingBytes";
/// Records written to S3 in data objects.
pub const S3_RECORDS: &str = "DeliveryToS3.Records";
/// Record bytes written to S3 in data objects (before compression).
pub const S3_BYTES: &str = "DeliveryToS3.Bytes";
/// Objects written (data, error and backup objects).
pub const S3_SUCCESS: &str = "DeliveryToS3.Success";
/// Object bytes as stored (after compression).
pub const S3_OBJECT_BYTES: &str = "DeliveryToS3.ObjectBytes";
/// Objects that could not be written (the consumer retries the batch).
pub const S3_FAILURES: &str = "DeliveryToS3.Failures";
/// Age in seconds of the oldest record of the last object written.
pub const S3_DATA_FRESHNESS: &str = "DeliveryToS3.DataFreshness";
/// Records written to the error output, by `type`.
pub const ERROR_OUTPUT_RECORDS: &str = "DeliveryToS3.ErrorOutputRecords";
/// Data partitions buffered at once.
pub const PARTITION_COUNT: &str = "PartitionCount";
/// Records sent to the error output because too many partitions were open.
pub const PARTITIONS_LIMIT_EXCEEDED: &str = "PartitionCountExceeded";
/// Records (documents) indexed.
pub const ES_RECORDS: &str = "DeliveryToElasticsearch.Records";
/// Bytes of the documents indexed.
pub const ES_BYTES: &str = "DeliveryToElasticsearch.Bytes";
/// Bulk batches that ended with every document indexed or backed up.
pub const ES_SUCCESS: &str = "DeliveryToElasticsearch.Success";
/// Documents Elasticsearch refused (or that were still failing at the end of the retry
/// duration), written to the S3 backup.
pub const ES_FAILED_DOCUMENTS: &str = "DeliveryToElasticsearch.FailedDocuments";
/// Age in seconds of the oldest document of the last batch indexed.
pub const ES_DATA_FRESHNESS: &str = "DeliveryToElasticsearch.DataFreshness";
/// Records written to the S3 backup of all documents.
pub const BACKUP_RECORDS: &str = "BackupToS3.Records";
/// Records read again after a restart or a lease move that may already be in a
/// destination object (at-least-once delivery).
pub const REPLAYED_RECORDS: &str = "ReplayedRecords";
