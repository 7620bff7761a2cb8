//! The workspace as `cargo metadata` describes it: which package builds which binary,
//! which workspace crates a binary links (its normal dependencies, transitively), which
//! AWS SDK crates each depends on, and where the SDK crates' sources are.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// Why the workspace could not be described.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WorkspaceError {
    /// `cargo metadata` failed.
    #[error("cargo metadata failed: {0}")]
    Metadata(String),
    /// No package builds the binary.
    #[error("no workspace package has a binary named {0}")]
    NoSuchBinary(String),
}

/// One workspace member.
#[derive(Debug, Clone)]
pub struct Package {
    /// Package name (`chief-executors`).
    pub name: String,
    /// Its directory.
    pub dir: PathBuf,
    /// Its binary targets.
    pub bins: Vec<String>,
    /// Its normal (not dev, not build) dependencies, by package name.
    pub deps: Vec<String>,
}

/// The workspace.
#[derive(Debug, Clone)]
pub struct Workspace {
    /// The workspace root.
    pub root: PathBuf,
    /// Its members, by name.
    pub members: BTreeMap<String, Package>,
    /// Source directories of every `aws-sdk-*` package in the graph, by service
    /// (`kinesis` → `~/.cargo/registry/src/…/aws-sdk-kinesis-1.130.0`).
    pub sdk_crates: BTreeMap<String, PathBuf>,
}

impl Workspace {
    /// Runs `cargo metadata` in `root` (the `CARGO` of the running cargo when set).
    pub fn load(root: &Path) -> Result<Self, WorkspaceError> {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let out = Command::new(cargo)
            .args(["metadata", "--format-version", "1"])
            .current_dir(root)
            .output()
            .map_err(|e| WorkspaceError::Metadata(e.to_string()))?;
        if !out.status.success() {
            return Err(WorkspaceError::Metadata(
                String::from_utf8_lossy(&out.stderr).into_owned(),
            ));
        }
        let meta: Value = serde_json::from_slice(&out.stdout)
            .map_err(|e| WorkspaceError::Metadata(e.to_string()))?;
        Self::from_metadata(&meta)
    }

    /// Reads `cargo metadata --format-version 1` output.
    pub fn from_metadata(meta: &Value) -> Result<Self, WorkspaceError> {
        let bad = |what: &str| WorkspaceError::Metadata(format!("unexpected metadata: {what}"));
        let root = PathBuf::from(
            meta["workspace_root"]
                .as_str()
                .ok_or_else(|| bad("workspace_root"))?,
        );
        let member_ids: BTreeSet<&str> = meta["workspace_members"]
            .as_array()
            .ok_or_else(|| bad("workspace_members"))?
            .iter()
            .filter_map(Value::as_str)
            .collect();
        let mut members = BTreeMap::new();
        let mut sdk_crates = BTreeMap::new();
        for p in meta["packages"].as_array().ok_or_else(|| bad("packages"))? {
            let name = p["name"].as_str().ok_or_else(|| bad("package name"))?;
            let manifest = PathBuf::from(
                p["manifest_path"]
                    .as_str()
                    .ok_or_else(|| bad("manifest_path"))?,
            );
            let dir = manifest
                .parent()
                .map(Path::to_path_buf)
                .ok_or_else(|| bad("manifest_path"))?;
            if let Some(service) = name.strip_prefix("aws-sdk-") {
                sdk_crates.insert(service.replace('-', ""), dir.clone());
            }
            let id = p["id"].as_str().ok_or_else(|| bad("package id"))?;
            if !member_ids.contains(id) {
                continue;
            }
            let bins = p["targets"]
                .as_array()
                .ok_or_else(|| bad("targets"))?
                .iter()
                .filter(|t| {
                    t["kind"]
                        .as_array()
                        .is_some_and(|k| k.iter().any(|k| k == "bin"))
                })
                .filter_map(|t| t["name"].as_str().map(str::to_owned))
                .collect();
            let deps = p["dependencies"]
                .as_array()
                .ok_or_else(|| bad("dependencies"))?
                .iter()
                .filter(|d| d["kind"].is_null())
                .filter_map(|d| d["name"].as_str().map(str::to_owned))
                .collect();
            members.insert(
                name.to_owned(),
                Package {
                    name: name.to_owned(),
                    dir,
                    bins,
                    deps,
                },
            );
        }
        Ok(Self {
            root,
            members,
            sdk_crates,
        })
    }

    /// The package that builds `bin`.
    pub fn package_of(&self, bin: &str) -> Result<&Package, WorkspaceError> {
        self.members
            .values()
            .find(|p| p.bins.iter().any(|b| b == bin))
            .ok_or_else(|| WorkspaceError::NoSuchBinary(bin.to_owned()))
    }

    /// `package` and every workspace member it depends on (normal dependencies,
    /// transitively): the crates whose code a binary of `package` links.
    pub fn linked_members(&self, package: &str) -> Vec<&Package> {
        let mut seen = BTreeSet::new();
        let mut stack = vec![package.to_owned()];
        while let Some(name) = stack.pop() {
            if let Some(p) = self.members.get(&name)
                && seen.insert(name)
            {
                stack.extend(p.deps.iter().cloned());
            }
        }
        seen.iter().filter_map(|n| self.members.get(n)).collect()
    }

    /// The AWS SDK services `package` depends on directly (`aws-sdk-s3` → `s3`).
    pub fn sdk_services(&self, package: &Package) -> Vec<String> {
        package
            .deps
            .iter()
            .filter_map(|d| d.strip_prefix("aws-sdk-"))
            .map(|s| s.replace('-', ""))
            .collect()
    }
}

/// The `.rs` files under `dir`, sorted.
pub fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.filter_map(Result::ok) {
            let path = e.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|x| x == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}
