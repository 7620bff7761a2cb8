//! The pipeline pieces shared by chief's executors.
//!
//! - [`model`]: the records that flow through the streams, [`Order`](model::Order) and
//!   [`JobResult`](model::JobResult), with their JSON shape, validation on parse and the
//!   conversions the sinks need.
//! - [`dedup`]: the bounded recently-seen window keyed by `orderid`.
//! - [`tsv`]: rows encoded exactly as MySQL `LOAD DATA` reads them.
//! - [`object_sink`]: the [`ObjectSink`](object_sink::ObjectSink) trait, with S3 and
//!   in-memory implementations.
//! - [`archive`]: the S3 archive sink's per-shard batching, dead letters and durable
//!   checkpoint positions.
//! - [`search`]: the [`SearchIndex`](search::SearchIndex) trait, with Elasticsearch and
//!   in-memory implementations, and batch indexing that retries only failed items.
//! - [`indexer`]: the search sink's per-shard batching, with dead letters for items the
//!   cluster rejects and the same durable-position contract as [`archive`].

pub mod archive;
pub mod dedup;
pub mod indexer;
pub mod model;
/// The object writer, from `chief-sinks` (where it lives now).
pub mod object_sink {
    pub use chief_sinks::object::*;
}
pub mod search;
pub mod tsv;
