//! The checkpoint file: for every flow, every file it knows with the offset up to which
//! its lines are delivered (acknowledged by the stream, or written to the error output)
//! and the offset up to which lines may have been sent. Written whole, atomically
//! (a temporary file, `fsync`, `rename`, `fsync` of the directory), so a crash leaves the
//! previous checkpoint or the new one, never a torn one.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::tail::FilePosition;

/// What the file holds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Checkpoints {
    /// Format version (1).
    pub version: u32,
    /// By flow id.
    pub flows: BTreeMap<String, FlowCheckpoint>,
}

/// One flow's files.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FlowCheckpoint {
    /// Its files.
    pub files: Vec<FilePosition>,
}

/// Why the checkpoint file could not be read or written.
#[derive(Debug, thiserror::Error)]
#[error("checkpoint file {path}: {reason}")]
pub struct CheckpointError {
    /// The file.
    pub path: PathBuf,
    /// Why.
    pub reason: String,
}

impl Checkpoints {
    /// Reads `path`; empty if it does not exist.
    ///
    /// # Errors
    /// It exists but cannot be read or parsed (the agent then refuses to start rather
    /// than re-send or skip everything).
    pub fn load(path: &Path) -> Result<Self, CheckpointError> {
        let error = |reason: String| CheckpointError {
            path: path.to_path_buf(),
            reason,
        };
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| error(e.to_string())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self {
                version: 1,
                flows: BTreeMap::new(),
            }),
            Err(e) => Err(error(e.to_string())),
        }
    }

    /// Writes it to `path` atomically.
    ///
    /// # Errors
    /// The directory is not writable, the disk is full…
    pub fn store(&self, path: &Path) -> Result<(), CheckpointError> {
        let error = |reason: String| CheckpointError {
            path: path.to_path_buf(),
            reason,
        };
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or_else(|| Path::new("."));
        std::fs::create_dir_all(dir).map_err(|e| error(e.to_string()))?;
        let tmp = path.with_extension("tmp");
        let bytes = serde_json::to_vec_pretty(self).map_err(|e| error(e.to_string()))?;
        let mut file = std::fs::File::create(&tmp).map_err(|e| error(e.to_string()))?;
        file.write_all(&bytes).map_err(|e| error(e.to_string()))?;
        file.sync_all().map_err(|e| error(e.to_string()))?;
        std::fs::rename(&tmp, path).map_err(|e| error(e.to_string()))?;
        if let Ok(d) = std::fs::File::open(dir) {
            // Not every file system syncs directories; the rename is what matters.
            let _ = d.sync_all();
        }
        Ok(())
    }
}

/// The checkpoint file shared by every flow.
#[derive(Debug, Clone)]
pub struct CheckpointFile {
    path: PathBuf,
    state: Arc<Mutex<Checkpoints>>,
}

impl CheckpointFile {
    /// `path`, as read at start.
    pub fn new(path: PathBuf, state: Checkpoints) -> Self {
        Self {
            path,
            state: Arc::new(Mutex::new(state)),
        }
    }

    /// The flow's files from the file.
    pub fn flow(&self, id: &str) -> FlowCheckpoint {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .flows
            .get(id)
            .cloned()
            .unwrap_or_default()
    }

    /// Replaces the flow's files and writes the whole file.
    ///
    /// # Errors
    /// The file cannot be written.
    pub fn store(&self, id: &str, flow: FlowCheckpoint) -> Result<(), CheckpointError> {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        state.version = 1;
        state.flows.insert(id.to_owned(), flow);
        state.store(&self.path)
    }
}
