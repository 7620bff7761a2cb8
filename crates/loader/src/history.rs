//! The `load_history` table: every object the loader has loaded, per table, with the
//! ETag it had. A key whose ETag changed (an executor replay overwrote it with other
//! batch boundaries) is loaded again; `IGNORE` makes that harmless.

use std::collections::HashMap;

use sqlx::{MySqlConnection, QueryBuilder};

use crate::LoaderError;
use crate::objects::ReadObject;

fn db_error(action: &str, table: &str) -> impl FnOnce(sqlx::Error) -> LoaderError {
    let action = format!("{action} (table `{table}`)");
    move |source| LoaderError::Database { action, source }
}

/// The first string after every key of `prefix/…` (`/` + 1 = `0`).
fn prefix_end(prefix: &str) -> String {
    format!("{prefix}0")
}

/// The greatest loaded key under `prefix/` for `table`.
pub async fn newest_key(
    conn: &mut MySqlConnection,
    table: &str,
    prefix: &str,
) -> Result<Option<String>, LoaderError> {
    sqlx::query_scalar::<_, Option<String>>(
        "SELECT MAX(object_key) FROM load_history \
         WHERE table_name = ? AND object_key >= ? AND object_key < ?",
    )
    .bind(table)
    .bind(format!("{prefix}/"))
    .bind(prefix_end(prefix))
    .fetch_one(conn)
    .await
    .map_err(db_error("reading load_history", table))
}

/// Loaded keys under `prefix/` after `start_after` (or all of them), with their ETags.
pub async fn loaded_since(
    conn: &mut MySqlConnection,
    table: &str,
    prefix: &str,
    start_after: Option<&str>,
) -> Result<HashMap<String, String>, LoaderError> {
    let lower = start_after.map_or_else(|| format!("{prefix}/"), str::to_owned);
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT object_key, etag FROM load_history \
         WHERE table_name = ? AND object_key >= ? AND object_key < ?",
    )
    .bind(table)
    .bind(lower)
    .bind(prefix_end(prefix))
    .fetch_all(conn)
    .await
    .map_err(db_error("reading load_history", table))?;
    Ok(rows.into_iter().collect())
}

/// Records `objects` as loaded into `table` (replacing earlier records of the same keys).
/// Meant to run in the transaction of the load.
pub async fn record(
    conn: &mut MySqlConnection,
    table: &str,
    objects: &[ReadObject],
) -> Result<(), LoaderError> {
    // 1,000 rows of 5 parameters stay far below the 65,535 placeholders of a statement.
    for batch in objects.chunks(1000) {
        let mut delete = QueryBuilder::new("DELETE FROM load_history WHERE table_name = ");
        delete.push_bind(table).push(" AND object_key IN (");
        let mut keys = delete.separated(", ");
        for object in batch {
            keys.push_bind(&object.key);
        }
        delete.push(")");
        delete
            .build()
            .execute(&mut *conn)
            .await
            .map_err(db_error("replacing load_history rows", table))?;

        let mut insert = QueryBuilder::new(
            "INSERT INTO load_history (table_name, object_key, etag, size_bytes, rows_loaded) ",
        );
        insert.push_values(batch, |mut row, object| {
            row.push_bind(table)
                .push_bind(&object.key)
                .push_bind(&object.etag)
                .push_bind(object.size)
                .push_bind(object.lines);
        });
        insert
            .build()
            .execute(&mut *conn)
            .await
            .map_err(db_error("inserting load_history rows", table))?;
    }
    Ok(())
}

/// How many objects are recorded for `table` (for tests and reports).
pub async fn count(conn: &mut MySqlConnection, table: &str) -> Result<i64, LoaderError> {
    sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM load_history WHERE table_name = ?")
        .bind(table)
        .fetch_one(conn)
        .await
        .map_err(db_error("counting load_history rows", table))
}

/// An object a load refused: the first offending line (when the server's warning names
/// one) and the server's message.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Reject {
    /// The object's key.
    pub key: String,
    /// The ETag of the version refused.
    pub etag: String,
    /// The line of the object the warning is about, 1-based, where it could be placed.
    pub line: Option<u64>,
    /// The server's warning.
    pub reason: String,
}

/// Keys under `prefix/` held in `load_rejects` for `table`, with the ETag refused.
pub async fn rejected(
    conn: &mut MySqlConnection,
    table: &str,
    prefix: &str,
) -> Result<HashMap<String, String>, LoaderError> {
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT object_key, etag FROM load_rejects \
         WHERE table_name = ? AND object_key >= ? AND object_key < ?",
    )
    .bind(table)
    .bind(format!("{prefix}/"))
    .bind(prefix_end(prefix))
    .fetch_all(conn)
    .await
    .map_err(db_error("reading load_rejects", table))?;
    Ok(rows.into_iter().collect())
}

/// Holds `rejects` in `load_rejects` (replacing an earlier refusal of the same key), in
/// a transaction of its own: the load they came from was rolled back.
pub async fn reject(
    conn: &mut MySqlConnection,
    table: &str,
    rejects: &[Reject],
) -> Result<(), LoaderError> {
    for batch in rejects.chunks(1000) {
        let mut insert = QueryBuilder::new(
            "INSERT INTO load_rejects (table_name, object_key, etag, line, reason) ",
        );
        insert.push_values(batch, |mut row, reject| {
            row.push_bind(table)
                .push_bind(&reject.key)
                .push_bind(&reject.etag)
                .push_bind(reject.line)
                .push_bind(&reject.reason);
        });
        insert.push(
            " ON DUPLICATE KEY UPDATE etag = VALUES(etag), line = VALUES(line), \
             reason = VALUES(reason), rejected_at = CURRENT_TIMESTAMP(3)",
        );
        insert
            .build()
            .execute(&mut *conn)
            .await
            .map_err(db_error("inserting load_rejects rows", table))?;
    }
    Ok(())
}

/// The ETags `load_history` holds for `keys` of `table` (keys it does not hold are absent).
pub async fn etags_of(
    conn: &mut MySqlConnection,
    table: &str,
    keys: &[&str],
) -> Result<HashMap<String, String>, LoaderError> {
    let mut out = HashMap::new();
    for batch in keys.chunks(1000) {
        let mut select =
            QueryBuilder::new("SELECT object_key, etag FROM load_history WHERE table_name = ");
        select.push_bind(table).push(" AND object_key IN (");
        let mut list = select.separated(", ");
        for key in batch {
            list.push_bind(*key);
        }
        select.push(")");
        let rows: Vec<(String, String)> = select
            .build_query_as()
            .fetch_all(&mut *conn)
            .await
            .map_err(db_error("reading load_history", table))?;
        out.extend(rows);
    }
    Ok(out)
}

/// Whether `table`'s whole prefix was last listed more than `hours` ago (or never).
pub async fn full_listing_due(
    conn: &mut MySqlConnection,
    table: &str,
    hours: u32,
) -> Result<bool, LoaderError> {
    let fresh: Option<i64> = sqlx::query_scalar(
        "SELECT 1 FROM loader_state WHERE table_name = ? \
         AND full_listing_at > CURRENT_TIMESTAMP(3) - INTERVAL ? HOUR",
    )
    .bind(table)
    .bind(hours)
    .fetch_optional(conn)
    .await
    .map_err(db_error("reading loader_state", table))?;
    Ok(fresh.is_none())
}

/// Records that `table`'s whole prefix was listed (and everything in it handled) now.
pub async fn record_full_listing(
    conn: &mut MySqlConnection,
    table: &str,
) -> Result<(), LoaderError> {
    sqlx::query(
        "INSERT INTO loader_state (table_name, full_listing_at) VALUES (?, CURRENT_TIMESTAMP(3)) \
         ON DUPLICATE KEY UPDATE full_listing_at = VALUES(full_listing_at)",
    )
    .bind(table)
    .execute(conn)
    .await
    .map_err(db_error("writing loader_state", table))?;
    Ok(())
}
