//! What the delivery's test files share.

/// The package's own `chief-firehose`, which cargo builds for its integration tests.
pub const BIN: &str = env!("CARGO_BIN_EXE_chief-firehose");
