//! The crate's integration tests, one binary (one link, one executable) for all of them.

mod local_stack;
mod sink_against_standin;
