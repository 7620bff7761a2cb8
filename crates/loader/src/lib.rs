//! `chief-loader`: the final de-duplication of the chief pipeline.
//!
//! It applies the schema in `sql/` (embedded at build time as sqlx migrations) and, in a
//! later issue, loads the executors' S3 files into Aurora MySQL with
//! `LOAD DATA FROM S3 … IGNORE` (or into a local MariaDB with `LOAD DATA INFILE … IGNORE`).

use chief_config::aws::AwsConfig;
use chief_config::database::DatabaseConfig;
use chief_config::telemetry::LogConfig;
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
    /// AWS clients (S3 for the files and manifests).
    pub aws: AwsConfig,
    /// The database.
    pub database: DatabaseConfig,
}

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
    /// Applying a migration failed.
    #[error("applying the schema migrations failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
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

/// The URL with its password replaced by `***`, for messages and logs.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((userinfo, host)) = rest.rsplit_once('@') else {
        return url.to_owned();
    };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_hides_passwords_only() {
        assert_eq!(
            redact("mysql://admin:s3cr3t@db:3306/chief"),
            "mysql://admin:***@db:3306/chief"
        );
        assert_eq!(
            redact("mysql://root@127.0.0.1:3307/chief"),
            "mysql://root@127.0.0.1:3307/chief"
        );
        assert_eq!(redact("not a url"), "not a url");
    }

    #[test]
    fn migrations_are_embedded_in_order() {
        let versions: Vec<i64> = MIGRATOR.iter().map(|m| m.version).collect();
        assert_eq!(versions, vec![1, 2]);
        assert!(MIGRATOR.iter().all(|m| !m.sql.as_str().is_empty()));
    }
}
