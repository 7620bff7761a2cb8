//! The loader's one database connection: session settings, the run lock
//! (`GET_LOCK`), the warnings after a `LOAD DATA`, and the local import directory.
//!
//! One connection (not a pool) because `GET_LOCK` belongs to a session: the lock is held
//! exactly as long as the connection doing the loads lives, and a crashed run's lock goes
//! with its connection.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use chief_config::database::DatabaseConfig;
use sqlx::mysql::{MySqlConnectOptions, MySqlRow};
use sqlx::{ConnectOptions, MySqlConnection, Row};

use crate::{LoaderError, redact};

/// MySQL's duplicate-key error, a warning under `IGNORE`: one per skipped row.
pub const DUPLICATE_ENTRY: u16 = 1062;

/// Connects, then sets the session up for `LOAD DATA`:
/// - `sql_mode` without `NO_BACKSLASH_ESCAPES` (the statements' `'\t'`, `'\\'`);
/// - `max_error_count` 65535, so `SHOW WARNINGS` keeps the non-duplicate warnings of a
///   load even behind many duplicate-key ones;
/// - sqlx's own: `NAMES utf8mb4`, `time_zone '+00:00'` (so `CURRENT_TIMESTAMP` is UTC).
pub async fn open(
    config: &DatabaseConfig,
    timeout: Duration,
) -> Result<MySqlConnection, LoaderError> {
    let url = redact(&config.url);
    let options = MySqlConnectOptions::from_str(&config.url)
        .map_err(|source| LoaderError::Connect {
            url: url.clone(),
            source,
        })?
        .disable_statement_logging();
    let mut conn = tokio::time::timeout(timeout, options.connect())
        .await
        .map_err(|_| LoaderError::ConnectTimeout {
            url: url.clone(),
            timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
        })?
        .map_err(|source| LoaderError::Connect {
            url: url.clone(),
            source,
        })?;
    let mode: String = sqlx::query_scalar("SELECT @@SESSION.sql_mode")
        .fetch_one(&mut conn)
        .await
        .map_err(session_error("reading sql_mode"))?;
    if mode
        .split(',')
        .any(|m| m.eq_ignore_ascii_case("NO_BACKSLASH_ESCAPES"))
    {
        let kept: Vec<&str> = mode
            .split(',')
            .filter(|m| !m.eq_ignore_ascii_case("NO_BACKSLASH_ESCAPES"))
            .collect();
        sqlx::query("SET SESSION sql_mode = ?")
            .bind(kept.join(","))
            .execute(&mut conn)
            .await
            .map_err(session_error("setting sql_mode"))?;
    }
    sqlx::query("SET SESSION max_error_count = 65535")
        .execute(&mut conn)
        .await
        .map_err(session_error("setting max_error_count"))?;
    Ok(conn)
}

fn session_error(action: &'static str) -> impl FnOnce(sqlx::Error) -> LoaderError {
    move |source| LoaderError::Database {
        action: action.to_owned(),
        source,
    }
}

/// The current database (the one in the URL).
pub async fn database_name(conn: &mut MySqlConnection) -> Result<String, LoaderError> {
    let name: Option<String> = sqlx::query_scalar("SELECT DATABASE()")
        .fetch_one(conn)
        .await
        .map_err(session_error("reading the database name"))?;
    name.ok_or_else(|| LoaderError::Config("database.url names no database".into()))
}

/// The `GET_LOCK` name of a run on `database`.`table`. Lock names are server-wide and at
/// most 64 characters: longer names are shortened to a hash.
pub fn lock_name(database: &str, table: &str) -> String {
    let name = format!("chief-loader:{database}.{table}");
    if name.len() <= 64 {
        return name;
    }
    // FNV-1a: stable across builds and platforms, unlike std's hasher.
    let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("chief-loader:{hash:016x}")
}

/// Takes the named lock without waiting; `false` when another session holds it.
pub async fn try_lock(conn: &mut MySqlConnection, name: &str) -> Result<bool, LoaderError> {
    let got: Option<i64> = sqlx::query_scalar("SELECT GET_LOCK(?, 0)")
        .bind(name)
        .fetch_one(conn)
        .await
        .map_err(session_error("taking the run lock"))?;
    Ok(got == Some(1))
}

/// The connection id holding the named lock, if any.
pub async fn lock_holder(conn: &mut MySqlConnection, name: &str) -> Option<u64> {
    sqlx::query_scalar::<_, Option<u64>>("SELECT IS_USED_LOCK(?)")
        .bind(name)
        .fetch_one(conn)
        .await
        .ok()
        .flatten()
}

/// Releases the named lock (closing the connection would as well).
pub async fn unlock(conn: &mut MySqlConnection, name: &str) -> Result<(), LoaderError> {
    sqlx::query("DO RELEASE_LOCK(?)")
        .bind(name)
        .execute(conn)
        .await
        .map_err(session_error("releasing the run lock"))?;
    Ok(())
}

/// The warnings of the statement just run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Warnings {
    /// How many the statement raised (`SHOW COUNT(*) WARNINGS`).
    pub total: u64,
    /// `Level Code: Message` of the stored ones (up to `max_error_count`), when asked for.
    pub stored: Vec<(u16, String)>,
}

fn column_u64(row: &MySqlRow, index: usize) -> u64 {
    row.try_get::<u64, _>(index)
        .ok()
        .or_else(|| {
            row.try_get::<i64, _>(index)
                .ok()
                .and_then(|v| u64::try_from(v).ok())
        })
        .or_else(|| row.try_get::<u32, _>(index).ok().map(u64::from))
        .unwrap_or(0)
}

/// `SHOW COUNT(*) WARNINGS`, then `SHOW WARNINGS` when `fetch_messages` says so for
/// that count. Both are diagnostic statements: they do not clear the list.
pub async fn warnings(
    conn: &mut MySqlConnection,
    fetch_messages: impl FnOnce(u64) -> bool,
) -> Result<Warnings, LoaderError> {
    let row = sqlx::raw_sql("SHOW COUNT(*) WARNINGS")
        .fetch_one(&mut *conn)
        .await
        .map_err(session_error("SHOW COUNT(*) WARNINGS"))?;
    let total = column_u64(&row, 0);
    let mut stored = Vec::new();
    if total > 0 && fetch_messages(total) {
        let rows = sqlx::raw_sql("SHOW WARNINGS")
            .fetch_all(&mut *conn)
            .await
            .map_err(session_error("SHOW WARNINGS"))?;
        for row in rows {
            let level: String = row.try_get(0).unwrap_or_default();
            let code = u16::try_from(column_u64(&row, 1)).unwrap_or(u16::MAX);
            let message: String = row.try_get(2).unwrap_or_default();
            stored.push((code, format!("{level} {code}: {message}")));
        }
    }
    Ok(Warnings { total, stored })
}

/// Whether `column` is the only unique key of `database`.`table` and compares byte-wise
/// (a `…_bin` collation): then sorting lines by it does not change which copy of a
/// repeated id `IGNORE` keeps ([`crate::lines::stage`]).
pub async fn sortable_by(
    conn: &mut MySqlConnection,
    database: &str,
    table: &str,
    column: &str,
) -> Result<bool, LoaderError> {
    let unique: Vec<(String, String, Option<String>, String)> = sqlx::query_as(
        "SELECT s.INDEX_NAME, s.COLUMN_NAME, c.COLLATION_NAME, c.DATA_TYPE \
         FROM information_schema.STATISTICS s \
         JOIN information_schema.COLUMNS c ON c.TABLE_SCHEMA = s.TABLE_SCHEMA \
           AND c.TABLE_NAME = s.TABLE_NAME AND c.COLUMN_NAME = s.COLUMN_NAME \
         WHERE s.TABLE_SCHEMA = ? AND s.TABLE_NAME = ? AND s.NON_UNIQUE = 0",
    )
    .bind(database)
    .bind(table)
    .fetch_all(conn)
    .await
    .map_err(|source| LoaderError::Database {
        action: format!("reading the keys of `{table}`"),
        source,
    })?;
    Ok(match unique.as_slice() {
        [(_, name, collation, data_type)] => {
            name.eq_ignore_ascii_case(column)
                && (collation.as_deref().is_some_and(|c| c.ends_with("_bin"))
                    || data_type.eq_ignore_ascii_case("varbinary")
                    || data_type.eq_ignore_ascii_case("binary"))
        }
        _ => false,
    })
}

/// Local mode: the absolute import directory, checked against the server's
/// `secure_file_priv` (`NULL` disables `LOAD DATA INFILE`; a path limits it to that
/// directory). A relative `import_dir` is taken from the working directory.
pub async fn import_dir(
    conn: &mut MySqlConnection,
    configured: &str,
) -> Result<PathBuf, LoaderError> {
    let dir = std::fs::canonicalize(configured).map_err(|source| LoaderError::File {
        action: "opening the import directory (database.import_dir)",
        path: PathBuf::from(configured),
        source,
    })?;
    let secure: Option<String> = sqlx::query_scalar("SELECT @@GLOBAL.secure_file_priv")
        .fetch_one(conn)
        .await
        .map_err(session_error("reading secure_file_priv"))?;
    match secure.as_deref() {
        None => Err(LoaderError::ImportDir(
            "the server's secure_file_priv is NULL: LOAD DATA INFILE is disabled (local mode \
             needs it set to database.import_dir)"
                .into(),
        )),
        Some("") => Ok(dir),
        Some(allowed) => {
            let allowed_path =
                std::fs::canonicalize(allowed).unwrap_or_else(|_| Path::new(allowed).to_path_buf());
            if dir.starts_with(&allowed_path) {
                Ok(dir)
            } else {
                Err(LoaderError::ImportDir(format!(
                    "database.import_dir {} is not inside the server's secure_file_priv {allowed} \
                     (local mode needs the server on this machine, reading that directory)",
                    dir.display()
                )))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_names_fit_in_64_characters() {
        assert_eq!(lock_name("chief", "orders"), "chief-loader:chief.orders");
        let long = lock_name(&"d".repeat(64), &"t".repeat(64));
        assert!(long.len() <= 64, "{long}");
        assert_eq!(long, lock_name(&"d".repeat(64), &"t".repeat(64)));
        assert_ne!(long, lock_name(&"d".repeat(64), &"u".repeat(64)));
    }
}
