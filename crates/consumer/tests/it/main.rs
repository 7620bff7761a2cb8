//! The crate's integration tests, one binary (one link, one executable) for all of them.

mod lease_store;
mod local_stack;
mod memory;
mod poison;
mod prometheus;
mod stalls;
mod support;
