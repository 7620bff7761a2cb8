//! The crate's integration tests, one binary (one link, one executable) for all of them.

mod mariadb_local_stack;
mod run_local_stack;
