//! `chief-loader`: the final de-duplication of the chief pipeline.
//!
//! - [`migrate`]: the schema in `sql/` (embedded at build time as sqlx migrations):
//!   `orders`, `jobresults` (utf8mb4, binary collation) and `load_history`.
//! - [`run()`]: the executors' S3 objects that are not in `load_history` yet, loaded into
//!   Aurora MySQL with `LOAD DATA FROM S3 MANIFEST … IGNORE` ([`Mode::Aurora`]) or into a
//!   local MySQL/MariaDB with `LOAD DATA INFILE … IGNORE` ([`Mode::Local`]), the history
//!   rows in the same transaction, under a `GET_LOCK` so runs never overlap.
//!
//! Modules: [`settings`] (the `[loader]` section), [`sql`] (statement text),
//! [`keys`] (object keys and hours), [`lines`] (rows as `LOAD DATA` reads them, local
//! staging), [`objects`] (S3), [`history`] (`load_history`),
//! [`session`] (connection, lock, warnings), [`queue`] (S3 notifications through SQS),
//! [`run`](mod@run) (the run itself).

pub mod history;
pub mod keys;
pub mod lines;
pub mod objects;
pub mod queue;
pub mod run;
pub mod session;
pub mod settings;
pub mod sql;

use std::path::PathBuf;

use chief_config::aws::AwsConfig;
use chief_config::database::DatabaseConfig;
use chief_config::telemetry::{LogConfig, MetricsConfig};
use serde::{Deserialize, Serialize};
use sqlx::mysql::MySqlPoolOptions;
use sqlx::{MySqlPool, migrate::Migrator};

/// The schema, from `sql/` at the workspace root.
pub static MIGRATOR: Migrator = sqlx::migrate!("../../sql");

/// `config/loader.toml`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoaderConfig {
    /// Logging.
    pub log: LogConfig,
    /// Metrics: with `cloudwatch` set, each `run` publishes its result (`LoaderRuns`,
    /// `LoaderFailures`, `LoaderFilesLoaded`, `LoaderRowsInserted`) before it exits.
    pub metrics: MetricsConfig,
    /// AWS clients (S3 for the files and manifests).
    pub aws: AwsConfig,
    /// The database.
    pub database: DatabaseConfig,
    /// What to load and how.
    pub loader: LoadSettings,
}

pub use run::{
    EXIT_FAILED, EXIT_LOCKED, EXIT_OK, Outcome, RunOptions, RunReport, TableReport, run,
};
pub use settings::{LoadSettings, Mode, TableConfig};

/// What can go wrong in the loader.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoaderError {
    /// The database could not be reached.
    #[error("cannot connect to the database at {url}: {source}")]
    Connect {
        /// The URL, without its password.
        url: String,
        /// The driver's error.
        source: sqlx::Error,
    },
    /// Connecting took longer than `loader.connect_timeout_ms`.
    #[error("cannot connect to the database at {url}: no answer within {timeout_ms} ms")]
    ConnectTimeout {
        /// The URL, without its password.
        url: String,
        /// The limit.
        timeout_ms: u64,
    },
    /// Applying a migration failed.
    #[error("applying the schema migrations failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The `[loader]` config is not usable.
    #[error("invalid loader config: {0}")]
    Config(String),
    /// A statement failed.
    #[error("{action} failed: {source}")]
    Database {
        /// What was being done, on which table.
        action: String,
        /// The driver's error.
        source: sqlx::Error,
    },
    /// An S3 request failed.
    #[error("S3 {operation} s3://{bucket}/{key} failed: {source}")]
    S3 {
        /// The operation.
        operation: &'static str,
        /// The bucket.
        bucket: String,
        /// The key or prefix.
        key: String,
        /// The SDK's error, with its context.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// An SQS request failed (the queue of S3 notifications).
    #[error("SQS {operation} {queue} failed: {source}")]
    Sqs {
        /// The operation.
        operation: &'static str,
        /// The queue URL.
        queue: String,
        /// What SQS (or the transport) said.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A local file could not be written or read.
    #[error("{action} {path} failed: {source}")]
    File {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Local mode cannot work with this server and import directory.
    #[error("local mode: {0}")]
    ImportDir(String),
    /// A background task died.
    #[error("a background task failed: {0}")]
    Task(String),
}

impl LoaderError {
    /// Whether the next run may succeed without anyone changing anything (the database
    /// or S3 was unreachable or refused for the moment), as opposed to a config or setup
    /// error.
    pub fn is_retryable(&self) -> bool {
        match self {
            LoaderError::Connect { source, .. } | LoaderError::Database { source, .. } => {
                matches!(
                    source,
                    sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::Tls(_)
                ) || source
                    .as_database_error()
                    .and_then(|e| e.code())
                    .is_some_and(|code| {
                        // Deadlock (40001), too many connections (08004).
                        matches!(code.as_ref(), "40001" | "08004")
                    })
            }
            LoaderError::ConnectTimeout { .. }
            | LoaderError::S3 { .. }
            | LoaderError::Sqs { .. } => true,
            LoaderError::Migrate(_)
            | LoaderError::Config(_)
            | LoaderError::File { .. }
            | LoaderError::ImportDir(_)
            | LoaderError::Task(_) => false,
        }
    }
}

/// Connects to the database of `config`.
pub async fn connect(config: &DatabaseConfig) -> Result<MySqlPool, LoaderError> {
    MySqlPoolOptions::new()
        .max_connections(2)
        .connect(&config.url)
        .await
        .map_err(|source| LoaderError::Connect {
            url: redact(&config.url),
            source,
        })
}

/// A migration `migrate` applied or found applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationStatus {
    /// Version (the file's number).
    pub version: i64,
    /// Description (the file's name).
    pub description: String,
    /// Whether this run applied it (false: it was already there).
    pub applied_now: bool,
}

/// Applies the migrations in `sql/` that are not applied yet; returns each one's status.
pub async fn migrate(pool: &MySqlPool) -> Result<Vec<MigrationStatus>, LoaderError> {
    let before: Vec<i64> = applied_versions(pool).await;
    MIGRATOR.run(pool).await?;
    Ok(MIGRATOR
        .iter()
        .map(|m| MigrationStatus {
            version: m.version,
            description: m.description.to_string(),
            applied_now: !before.contains(&m.version),
        })
        .collect())
}

async fn applied_versions(pool: &MySqlPool) -> Vec<i64> {
    // The table does not exist before the first run: that means nothing is applied.
    sqlx::query_scalar::<_, i64>("SELECT version FROM _sqlx_migrations WHERE success = TRUE")
        .fetch_all(pool)
        .await
        .unwrap_or_default()
}

pub use chief_config::database::redact;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_loader_toml_shows_every_default() {
        let file: LoaderConfig =
            chief_config::load_str(include_str!("../../../config/loader.toml"), &[])
                .expect("config/loader.toml is valid");
        assert_eq!(file, LoaderConfig::default());
    }

    #[test]
    fn migrations_are_embedded_in_order() {
        let versions: Vec<i64> = MIGRATOR.iter().map(|m| m.version).collect();
        assert_eq!(versions, vec![1, 2, 3, 4, 5, 6]);
        assert!(MIGRATOR.iter().all(|m| !m.sql.as_str().is_empty()));
    }
}
