//! MariaDB from the local stack (`make stack-up`) through sqlx: a smoke test, and the
//! schema migrations applied to a fresh database. Each test uses its own database.

use chief_config::database::DatabaseConfig;
use chief_config::local_stack::LocalStack;
use sqlx::{Connection, MySqlConnection};

/// Creates a uniquely named database on the local MariaDB and returns a config for it.
async fn fresh_database(stack: &LocalStack, prefix: &str) -> (DatabaseConfig, String) {
    let name = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
    let mut admin = MySqlConnection::connect(&stack.database.url)
        .await
        .expect("connect to the local MariaDB");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE `{name}`")))
        .execute(&mut admin)
        .await
        .expect("CREATE DATABASE");
    let base = stack
        .database
        .url
        .rsplit_once('/')
        .map(|(b, _)| b.to_owned())
        .expect("database url has a path");
    let config = DatabaseConfig {
        url: format!("{base}/{name}"),
        ..stack.database.clone()
    };
    (config, name)
}

async fn drop_database(stack: &LocalStack, name: &str) {
    let mut admin = MySqlConnection::connect(&stack.database.url)
        .await
        .expect("connect to the local MariaDB");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP DATABASE `{name}`")))
        .execute(&mut admin)
        .await
        .expect("DROP DATABASE");
}

#[tokio::test]
async fn mariadb_create_table_insert_and_select() {
    let stack = LocalStack::require();
    let (config, name) = fresh_database(&stack, "smoke").await;
    let mut conn = MySqlConnection::connect(&config.url)
        .await
        .expect("connect");
    sqlx::query("CREATE TABLE t (id VARCHAR(73) PRIMARY KEY, body TEXT)")
        .execute(&mut conn)
        .await
        .expect("CREATE TABLE");
    for id in ["a", "b", "a"] {
        sqlx::query("INSERT IGNORE INTO t (id, body) VALUES (?, ?)")
            .bind(id)
            .bind(format!("body of {id}"))
            .execute(&mut conn)
            .await
            .expect("INSERT IGNORE");
    }
    let rows: Vec<(String, String)> = sqlx::query_as("SELECT id, body FROM t ORDER BY id")
        .fetch_all(&mut conn)
        .await
        .expect("SELECT");
    assert_eq!(
        rows,
        vec![
            ("a".to_owned(), "body of a".to_owned()),
            ("b".to_owned(), "body of b".to_owned())
        ]
    );
    conn.close().await.ok();
    drop_database(&stack, &name).await;
}

#[tokio::test]
async fn migrations_create_the_seed_tables_and_rerun_as_a_no_op() {
    let stack = LocalStack::require();
    let (config, name) = fresh_database(&stack, "migrate").await;
    let pool = chief_loader::connect(&config).await.expect("connect");

    let first = chief_loader::migrate(&pool).await.expect("first migrate");
    assert_eq!(first.len(), 6);
    assert!(first.iter().all(|m| m.applied_now), "{first:?}");
    let second = chief_loader::migrate(&pool).await.expect("second migrate");
    assert!(second.iter().all(|m| !m.applied_now), "{second:?}");

    let columns: Vec<(String, String)> = sqlx::query_as(
        "SELECT TABLE_NAME, COLUMN_NAME FROM information_schema.COLUMNS \
         WHERE TABLE_SCHEMA = ? AND TABLE_NAME IN ('orders', 'jobresults') \
         ORDER BY TABLE_NAME, ORDINAL_POSITION",
    )
    .bind(&name)
    .fetch_all(&pool)
    .await
    .expect("information_schema");
    let got: Vec<String> = columns.iter().map(|(t, c)| format!("{t}.{c}")).collect();
    assert_eq!(
        got,
        vec![
            "jobresults.orderid",
            "jobresults.userid",
            "jobresults.factoryid",
            "jobresults.robotid",
            "jobresults.jobstatus",
            "jobresults.timestamp",
            "orders.orderid",
            "orders.orderdata",
            "orders.processedtimestamp",
        ]
    );
    // The primary key is what makes LOAD DATA … IGNORE de-duplicate.
    sqlx::query("INSERT INTO orders (orderid, orderdata) VALUES ('x', '{}')")
        .execute(&pool)
        .await
        .expect("insert");
    let dup = sqlx::query("INSERT INTO orders (orderid, orderdata) VALUES ('x', '{}')")
        .execute(&pool)
        .await;
    assert!(dup.is_err(), "a duplicate orderid must be rejected");
    // Equal in the database exactly when equal in the executors: byte for byte, so ids
    // that differ by a trailing space or by case are different orders (sql/0004).
    for id in ["x ", "X", "x\t", "é", "e\u{301}"] {
        sqlx::query("INSERT INTO orders (orderid, orderdata) VALUES (?, '{}')")
            .bind(id)
            .execute(&pool)
            .await
            .unwrap_or_else(|e| panic!("{id:?} is a key of its own: {e}"));
    }
    let ids: Vec<Vec<u8>> = sqlx::query_scalar("SELECT orderid FROM orders ORDER BY orderid")
        .fetch_all(&pool)
        .await
        .expect("ids");
    let mut expected: Vec<Vec<u8>> = ["x", "x ", "X", "x\t", "é", "e\u{301}"]
        .iter()
        .map(|id| id.as_bytes().to_vec())
        .collect();
    expected.sort();
    assert_eq!(ids, expected);
    for table in ["orders", "jobresults"] {
        let key_type: String = sqlx::query_scalar(
            "SELECT COLUMN_TYPE FROM information_schema.COLUMNS \
             WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND COLUMN_NAME = 'orderid'",
        )
        .bind(&name)
        .bind(table)
        .fetch_one(&pool)
        .await
        .expect("column type");
        assert_eq!(key_type, "varbinary(292)", "{table}");
    }
    pool.close().await;
    drop_database(&stack, &name).await;
}
