//! The crate's integration tests, one binary (one link, one executable) for all of them.

mod agg_cli;
mod leases_tail;
mod replay;
mod setup_cli;
