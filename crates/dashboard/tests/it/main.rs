//! The crate's integration tests, one binary (one link, one executable) for all of them.

mod browser;
mod deploy_files;
mod local_stack;
mod support;
