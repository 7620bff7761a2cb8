//! The crate's integration tests, one binary (one link, one executable) for all of them.

mod object_sink;
mod search_fixtures;
mod search_index;
