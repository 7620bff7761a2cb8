//! Checks of `deploy/aws` (run by `make test`): the IAM policies of `deploy/aws/iam/`
//! against the AWS SDK operations each binary's code calls, and the CloudFormation
//! template `deploy/aws/chief.yaml` (cfn-lint, its roles' policies, its user data). The
//! tests are in `tests/`; this library holds what they share:
//!
//! - [`policy`]: IAM policy documents and a small evaluator;
//! - [`operations`]: the SDK operations a built binary contains and a source file calls,
//!   and the IAM action of each;
//! - [`workspace`]: `cargo metadata`: which crates a binary links;
//! - [`template`]: the CloudFormation YAML as JSON, `Fn::Sub` placeholders;
//! - [`userdata`]: what a launch template's user data writes, installs and calls.

pub mod operations;
pub mod policy;
pub mod template;
pub mod userdata;
pub mod workspace;

use std::path::PathBuf;

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.."))
}
