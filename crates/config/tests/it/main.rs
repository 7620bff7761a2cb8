//! The crate's integration tests, one binary (one link, one executable) for all of them.

mod aws_calls;
mod aws_local_stack;
mod cloudwatch_local_stack;
mod cloudwatch_retry;
mod metrics_install;
