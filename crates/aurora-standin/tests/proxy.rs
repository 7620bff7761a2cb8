//! The stand-in between sqlx and the local MariaDB, with objects in moto's S3
//! (`make stack-up`): `LOAD DATA FROM S3` in its three forms, in the caller's transaction,
//! `mandatory` honoured, everything else passed through.

use chief_aurora_standin::{ER_LOAD_FROM_S3, Options, serve};
use chief_config::aws::AwsClients;
use chief_config::local_stack::{LocalStack, workspace_root};
use sqlx::{Connection, MySqlConnection};

struct Fixture {
    s3: aws_sdk_s3::Client,
    bucket: String,
    table: String,
    url: String,
}

async fn fixture(delete_before_load: Option<&str>) -> Fixture {
    let stack = LocalStack::require();
    let clients = AwsClients::new(&stack.aws).await;
    let s3 = clients.s3();
    let id = uuid::Uuid::new_v4().simple().to_string()[..10].to_owned();
    let bucket = format!("aurora-standin-{id}");
    s3.create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .expect("CreateBucket");
    let import_dir = std::fs::canonicalize(workspace_root().join(&stack.database.import_dir))
        .expect("the local stack's import directory");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let upstream = stack
        .database
        .url
        .split_once('@')
        .and_then(|(_, rest)| rest.split_once('/'))
        .map(|(host, _)| host.to_owned())
        .expect("host:port in the database URL");
    tokio::spawn(serve(
        listener,
        s3.clone(),
        Options {
            upstream,
            import_dir,
            delete_before_load: delete_before_load.map(str::to_owned),
        },
    ));
    let url = stack.database.url.replacen(
        &stack.database.url[stack.database.url.find('@').expect("@") + 1..]
            .split('/')
            .next()
            .unwrap_or_default()
            .to_owned(),
        &addr.to_string(),
        1,
    );
    let table = format!("standin_{id}");
    let mut conn = MySqlConnection::connect(&url)
        .await
        .expect("connect through the stand-in");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE TABLE `{table}` (id VARCHAR(20) PRIMARY KEY, v VARCHAR(20))"
    )))
    .execute(&mut conn)
    .await
    .expect("CREATE TABLE through the stand-in");
    conn.close().await.ok();
    Fixture {
        s3,
        bucket,
        table,
        url,
    }
}

impl Fixture {
    async fn put(&self, key: &str, body: &str) {
        self.s3
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .body(body.as_bytes().to_vec().into())
            .send()
            .await
            .expect("PutObject");
    }

    async fn rows(&self, conn: &mut MySqlConnection) -> Vec<(String, String)> {
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT id, v FROM `{}` ORDER BY id",
            self.table
        )))
        .fetch_all(conn)
        .await
        .expect("SELECT")
    }

    fn load(&self, form: &str, key: &str) -> String {
        format!(
            "LOAD DATA FROM S3 {form} 's3://{}/{key}' IGNORE INTO TABLE `{}` FIELDS TERMINATED BY '\\t' LINES TERMINATED BY '\\n' (id, v)",
            self.bucket, self.table
        )
    }

    async fn cleanup(self, conn: MySqlConnection) {
        let mut conn = conn;
        let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP TABLE `{}`", self.table)))
            .execute(&mut conn)
            .await;
        conn.close().await.ok();
    }
}

#[tokio::test]
async fn a_manifest_loads_in_the_callers_transaction_and_rolls_back_with_it() {
    let fx = fixture(None).await;
    fx.put("d/1", "a\tone\nb\ttwo\n").await;
    fx.put("d/2", "b\tdup\nc\tthree").await; // no final newline: still its own line
    fx.put(
        "m.json",
        &format!(
            r#"{{"entries":[{{"url":"s3://{b}/d/1","mandatory":true}},{{"url":"s3-us-east-1://{b}/d/2","mandatory":true}},{{"url":"s3://{b}/d/missing"}}]}}"#,
            b = fx.bucket
        ),
    )
    .await;
    let mut conn = MySqlConnection::connect(&fx.url).await.expect("connect");
    // Rolled back with the transaction it ran in.
    let mut tx = conn.begin().await.expect("BEGIN");
    let done = sqlx::raw_sql(sqlx::AssertSqlSafe(fx.load("MANIFEST", "m.json")))
        .execute(&mut *tx)
        .await
        .expect("LOAD DATA FROM S3 MANIFEST");
    assert_eq!(done.rows_affected(), 3, "a, b, c; the second b ignored");
    tx.rollback().await.expect("ROLLBACK");
    assert!(fx.rows(&mut conn).await.is_empty(), "rolled back");
    // Committed with it.
    let mut tx = conn.begin().await.expect("BEGIN");
    sqlx::raw_sql(sqlx::AssertSqlSafe(fx.load("MANIFEST", "m.json")))
        .execute(&mut *tx)
        .await
        .expect("LOAD DATA FROM S3 MANIFEST");
    tx.commit().await.expect("COMMIT");
    assert_eq!(
        fx.rows(&mut conn).await,
        [("a", "one"), ("b", "two"), ("c", "three")].map(|(a, b)| (a.to_owned(), b.to_owned()))
    );
    fx.cleanup(conn).await;
}

#[tokio::test]
async fn a_missing_mandatory_file_fails_the_statement_and_loads_nothing() {
    let fx = fixture(None).await;
    fx.put("d/1", "a\tone\n").await;
    fx.put(
        "m.json",
        &format!(
            r#"{{"entries":[{{"url":"s3://{b}/d/1","mandatory":true}},{{"url":"s3://{b}/d/gone","mandatory":true}}]}}"#,
            b = fx.bucket
        ),
    )
    .await;
    fx.put(
        "empty.json",
        r#"{"entries":[{"url":"s3://nowhere-bucket/x"}]}"#,
    )
    .await;
    let mut conn = MySqlConnection::connect(&fx.url).await.expect("connect");
    let mut tx = conn.begin().await.expect("BEGIN");
    let err = sqlx::raw_sql(sqlx::AssertSqlSafe(fx.load("MANIFEST", "m.json")))
        .execute(&mut *tx)
        .await
        .expect_err("a mandatory file is missing");
    let db = err.as_database_error().expect("a database error");
    assert_eq!(db.code().as_deref(), Some("HY000"));
    assert!(
        db.message().contains("d/gone is mandatory"),
        "{}",
        db.message()
    );
    assert_eq!(
        db.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>()
            .map(|e| e.number()),
        Some(ER_LOAD_FROM_S3)
    );
    // The session and its transaction go on.
    tx.rollback().await.expect("ROLLBACK");
    assert!(fx.rows(&mut conn).await.is_empty());
    // No file found at all fails too, mandatory or not; a missing manifest as well.
    for key in ["empty.json", "no-such-manifest.json"] {
        assert!(
            sqlx::raw_sql(sqlx::AssertSqlSafe(fx.load("MANIFEST", key)))
                .execute(&mut conn)
                .await
                .is_err(),
            "{key}"
        );
    }
    fx.cleanup(conn).await;
}

#[tokio::test]
async fn file_and_prefix_forms_and_everything_else_passes_through() {
    let fx = fixture(None).await;
    fx.put("p/1", "a\tone\n").await;
    fx.put("p/2", "b\ttwo\n").await;
    fx.put("q/1", "z\tother\n").await;
    let mut conn = MySqlConnection::connect(&fx.url).await.expect("connect");
    let file = sqlx::raw_sql(sqlx::AssertSqlSafe(fx.load("FILE", "p/2")))
        .execute(&mut conn)
        .await
        .expect("FILE");
    assert_eq!(file.rows_affected(), 1);
    let prefix = sqlx::raw_sql(sqlx::AssertSqlSafe(fx.load("PREFIX", "p/")))
        .execute(&mut conn)
        .await
        .expect("PREFIX");
    assert_eq!(prefix.rows_affected(), 1, "p/1 new, p/2 ignored");
    let row = sqlx::raw_sql("SHOW COUNT(*) WARNINGS")
        .fetch_one(&mut conn)
        .await
        .expect("warnings of the last statement");
    let warnings: u64 = sqlx::Row::try_get(&row, 0).expect("a count");
    assert_eq!(
        warnings, 1,
        "the duplicate key of p/2, as the server reports it"
    );
    // Prepared statements and plain queries are untouched.
    let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT COUNT(*) FROM `{}` WHERE id <> ?",
        fx.table
    )))
    .bind("zzz")
    .fetch_one(&mut conn)
    .await
    .expect("prepared SELECT");
    assert_eq!(n, 2);
    fx.cleanup(conn).await;
}

#[tokio::test]
async fn a_file_deleted_before_the_load_is_really_gone() {
    let fx = fixture(Some("victim")).await;
    fx.put("d/victim", "a\tone\n").await;
    fx.put(
        "m.json",
        &format!(
            r#"{{"entries":[{{"url":"s3://{}/d/victim","mandatory":true}}]}}"#,
            fx.bucket
        ),
    )
    .await;
    let mut conn = MySqlConnection::connect(&fx.url).await.expect("connect");
    assert!(
        sqlx::raw_sql(sqlx::AssertSqlSafe(fx.load("MANIFEST", "m.json")))
            .execute(&mut conn)
            .await
            .is_err()
    );
    assert!(
        fx.s3
            .head_object()
            .bucket(&fx.bucket)
            .key("d/victim")
            .send()
            .await
            .is_err(),
        "the fault deleted the object from S3"
    );
    fx.cleanup(conn).await;
}
