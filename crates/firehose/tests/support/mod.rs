//! What the delivery's test files share.

use std::path::{Path, PathBuf};

/// The built `chief-firehose` (`cargo build --workspace --bins`; `make test` builds it).
pub fn binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable");
    let path = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/debug")
        .join("chief-firehose");
    assert!(
        path.exists(),
        "{} is missing: `cargo build --workspace --bins` (make test does)",
        path.display()
    );
    path
}
