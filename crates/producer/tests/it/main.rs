//! The crate's integration tests, one binary (one link, one executable) for all of them.

mod kinesis_local;
mod memory_stream;
mod support;
