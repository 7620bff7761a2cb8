//! Record-agnostic pieces of chief's sinks, shared by every sink that writes a shard's
//! records in batches (the executors' S3 archive and Elasticsearch indexer today).
//!
//! - [`batch`]: the per-shard [`Batcher`] — a batch bounded by records, bytes and age —
//!   and the two positions every such sink keeps: the last record it has *accepted* and
//!   the last one such that it and everything before it is *durable* (written, or
//!   handled without a write), which is all a consumer may checkpoint;
//!   [`batch::PartitionedBatcher`] keeps one batch per partition key and one durable
//!   position for the shard.
//! - [`dead_letter`]: the dead-letter writer (one JSON object per undeliverable record,
//!   with why, under `<prefix>/<application>/YYYY/MM/DD/HH/`).
//! - [`dynamodb`]: the item writer — JSON records as items, `BatchWriteItem` with
//!   unprocessed items and throttling retried ([`dynamodb::write_all`]).
//! - [`elasticsearch`]: the bulk writer — [`elasticsearch::SearchIndex`] over an
//!   Elasticsearch/OpenSearch cluster (basic auth, API key or AWS SigV4) or memory, and
//!   [`elasticsearch::index_batch`] (retry only the failed items, hand back the rejected).
//! - [`object`]: the object writer — [`object::ObjectSink`] over S3 or memory,
//!   [`object::put_with_retry`], and key templates with Firehose's prefix expressions
//!   ([`object::template`]).

pub mod batch;
pub mod dead_letter;
pub mod dynamodb;
pub mod elasticsearch;
pub mod object;

pub use batch::{Batch, Batcher, Limits, PartitionedBatcher, RecordPosition};
