//! The crate's integration tests, one binary (one link, one executable) for all of them.

mod cloudformation;
mod iam_policies;
mod support;
