//! `chief-loader run` against the local stack (`make stack-up`): files written into moto
//! S3 exactly as the executors write them (`chief_pipeline::archive::batch_key`, the
//! `chief_pipeline::tsv` writers), loaded into MariaDB in local mode.
//!
//! Every test has its own bucket and its own tables (`CREATE TABLE … LIKE orders` in the
//! shared `chief` database, after the migrations), so the tests run in parallel with
//! each other and with the rest of the suite; the run lock is per database and table.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Output;

use chief_config::aws::AwsClients;
use chief_config::local_stack::{LocalStack, workspace_root};
use chief_loader::settings::TableSpec;
use chief_loader::{LoaderConfig, Mode, Outcome, RunOptions, RunReport, TableConfig, sql};
use chief_pipeline::archive::{RecordPosition, batch_key};
use chief_pipeline::model::{JobResult, OrderId};
use chief_pipeline::tsv;
use chrono::{DateTime, TimeZone, Utc};
use sqlx::MySqlPool;
use sqlx::Row as _;

const ORDERS_PREFIX: &str = "ChiefOrderS3";
const JOBRESULTS_PREFIX: &str = "ChiefJobResultNotifyS3";

/// One test's bucket and tables.
struct Fixture {
    id: String,
    config: LoaderConfig,
    s3: aws_sdk_s3::Client,
    sqs: aws_sdk_sqs::Client,
    pool: MySqlPool,
    orders: String,
    jobresults: String,
}

impl Fixture {
    async fn new() -> Self {
        let stack = LocalStack::require();
        let id = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
        let pool = chief_loader::connect(&stack.database)
            .await
            .expect("connect to the local MariaDB");
        chief_loader::migrate(&pool).await.expect("migrate");
        let orders = format!("orders_{id}");
        let jobresults = format!("jobresults_{id}");
        for (table, like) in [(&orders, "orders"), (&jobresults, "jobresults")] {
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "CREATE TABLE `{table}` LIKE `{like}`"
            )))
            .execute(&pool)
            .await
            .expect("CREATE TABLE LIKE");
        }
        let clients = AwsClients::new(&stack.aws).await;
        let s3 = clients.s3();
        let sqs = clients.sqs();
        let bucket = format!("chief-loader-{id}");
        s3.create_bucket()
            .bucket(&bucket)
            .send()
            .await
            .expect("create bucket in moto");

        let mut config = LoaderConfig {
            aws: stack.aws.clone(),
            database: stack.database.clone(),
            ..LoaderConfig::default()
        };
        config.database.import_dir = workspace_root()
            .join(&stack.database.import_dir)
            .to_string_lossy()
            .into_owned();
        config.loader.mode = Mode::Local;
        config.loader.bucket = bucket;
        config.loader.tables.insert(
            "orders".into(),
            TableConfig {
                table: orders.clone(),
                ..TableConfig::orders()
            },
        );
        config.loader.tables.insert(
            "jobresults".into(),
            TableConfig {
                table: jobresults.clone(),
                ..TableConfig::jobresults()
            },
        );
        Self {
            id,
            config,
            s3,
            sqs,
            pool,
            orders,
            jobresults,
        }
    }

    fn bucket(&self) -> &str {
        &self.config.loader.bucket
    }

    /// A queue that the bucket notifies of every object created under the tables'
    /// prefixes (as deploy/aws/chief.yaml sets it up), in the loader's config.
    async fn with_queue(&mut self) {
        let url = self
            .sqs
            .create_queue()
            .queue_name(format!("chief-loader-{}", self.id))
            .send()
            .await
            .expect("CreateQueue")
            .queue_url()
            .expect("queue URL")
            .to_owned();
        let arn = self
            .sqs
            .get_queue_attributes()
            .queue_url(&url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
            .send()
            .await
            .expect("GetQueueAttributes")
            .attributes()
            .and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn))
            .expect("QueueArn")
            .to_owned();
        use aws_sdk_s3::types::{
            Event, FilterRule, FilterRuleName, NotificationConfiguration,
            NotificationConfigurationFilter, QueueConfiguration, S3KeyFilter,
        };
        let mut notifications = NotificationConfiguration::builder();
        for prefix in [ORDERS_PREFIX, JOBRESULTS_PREFIX] {
            notifications = notifications.queue_configurations(
                QueueConfiguration::builder()
                    .queue_arn(&arn)
                    .events(Event::from("s3:ObjectCreated:*"))
                    .filter(
                        NotificationConfigurationFilter::builder()
                            .key(
                                S3KeyFilter::builder()
                                    .filter_rules(
                                        FilterRule::builder()
                                            .name(FilterRuleName::Prefix)
                                            .value(format!("{prefix}/"))
                                            .build(),
                                    )
                                    .build(),
                            )
                            .build(),
                    )
                    .build()
                    .expect("queue configuration"),
            );
        }
        self.s3
            .put_bucket_notification_configuration()
            .bucket(self.bucket())
            .notification_configuration(notifications.build())
            .send()
            .await
            .expect("PutBucketNotificationConfiguration");
        self.config.loader.queue_url = Some(url);
    }

    /// Another run's session holding `table`'s run lock: the connection and the lock.
    async fn hold_lock(&self, table: &str) -> (sqlx::MySqlConnection, String) {
        let mut holder = self.pool.acquire().await.expect("acquire").detach();
        let lock = chief_loader::session::lock_name("chief", table);
        assert!(
            chief_loader::session::try_lock(&mut holder, &lock)
                .await
                .expect("lock")
        );
        (holder, lock)
    }

    /// Messages waiting in the queue (visible or not).
    async fn queued_messages(&self) -> u64 {
        use aws_sdk_sqs::types::QueueAttributeName as A;
        let url = self.config.loader.queue_url.as_deref().expect("a queue");
        let attributes = self
            .sqs
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(A::ApproximateNumberOfMessages)
            .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .expect("GetQueueAttributes");
        let map = attributes.attributes().expect("attributes");
        [
            A::ApproximateNumberOfMessages,
            A::ApproximateNumberOfMessagesNotVisible,
        ]
        .iter()
        .map(|a| map.get(a).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0))
        .sum()
    }

    /// Writes an orders object as the executor does; returns its key.
    async fn put_orders(
        &self,
        arrival: DateTime<Utc>,
        shard: &str,
        seq: &str,
        rows: &[(String, Vec<u8>)],
    ) -> String {
        let mut body = Vec::new();
        for (id, json) in rows {
            tsv::write_order_row(
                &mut body,
                &OrderId::new(id.clone()).expect("order id"),
                json,
            );
        }
        self.put(ORDERS_PREFIX, arrival, shard, seq, body).await
    }

    /// Writes a jobresults object as the executor does; returns its key.
    async fn put_jobresults(
        &self,
        arrival: DateTime<Utc>,
        shard: &str,
        seq: &str,
        jobs: &[JobResult],
    ) -> String {
        let mut body = Vec::new();
        for job in jobs {
            tsv::write_job_result_row(&mut body, job);
        }
        self.put(JOBRESULTS_PREFIX, arrival, shard, seq, body).await
    }

    async fn put(
        &self,
        prefix: &str,
        arrival: DateTime<Utc>,
        shard: &str,
        seq: &str,
        body: Vec<u8>,
    ) -> String {
        let key = batch_key(
            prefix,
            arrival,
            shard,
            &RecordPosition {
                sequence_number: seq.to_owned(),
                sub_sequence_number: 0,
            },
        );
        self.put_raw(&key, body).await;
        key
    }

    async fn put_raw(&self, key: &str, body: Vec<u8>) {
        self.s3
            .put_object()
            .bucket(self.bucket())
            .key(key)
            .content_type(tsv::CONTENT_TYPE)
            .body(body.into())
            .send()
            .await
            .expect("put object into moto");
    }

    async fn run(&self, table: &str) -> RunReport {
        let options = RunOptions {
            table: table.to_owned(),
            ..RunOptions::from_settings(&self.config.loader)
        };
        self.run_with(options).await
    }

    async fn run_with(&self, options: RunOptions) -> RunReport {
        chief_loader::run(&self.config, &self.s3, Some(&self.sqs), &options)
            .await
            .expect("run")
    }

    async fn order_rows(&self) -> BTreeMap<String, Vec<u8>> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT orderid, CAST(orderdata AS BINARY), processedtimestamp IS NOT NULL FROM `{}`",
            self.orders
        )))
        .fetch_all(&self.pool)
        .await
        .expect("select orders")
        .iter()
        .map(|row| {
            assert!(row.get::<bool, _>(2), "processedtimestamp is set");
            // The key is VARBINARY (sql/0004): the id's UTF-8 bytes.
            let id = String::from_utf8(row.get::<Vec<u8>, _>(0)).expect("UTF-8 id");
            (id, row.get::<Vec<u8>, _>(1))
        })
        .collect()
    }

    /// `(object_key, etag, size_bytes, rows_loaded, loaded_at)` of a table, by key.
    async fn history(&self, table: &str) -> Vec<(String, String, u64, u64, String)> {
        sqlx::query_as(
            "SELECT object_key, etag, size_bytes, rows_loaded, \
             DATE_FORMAT(loaded_at, '%Y-%m-%d %H:%i:%s.%f') \
             FROM load_history WHERE table_name = ? ORDER BY object_key",
        )
        .bind(table)
        .fetch_all(&self.pool)
        .await
        .expect("select load_history")
    }

    /// The loader binary with this fixture's config.
    fn command(&self) -> std::process::Command {
        let path = std::env::temp_dir().join(format!("chief-loader-test-{}.toml", self.id));
        std::fs::write(
            &path,
            chief_config::to_toml(&self.config).expect("config as TOML"),
        )
        .expect("write config");
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_chief-loader"));
        command.arg("--config").arg(path);
        // The stack's endpoints may come from the environment (the Makefile sets them);
        // the database URL here is the fixture's.
        command.env("CHIEF__DATABASE__URL", &self.config.database.url);
        command.env("AWS_EC2_METADATA_DISABLED", "true");
        command
    }

    async fn cleanup(self) {
        if let Some(url) = &self.config.loader.queue_url {
            let _ = self.sqs.delete_queue().queue_url(url).send().await;
        }
        for table in [&self.orders, &self.jobresults] {
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "DROP TABLE IF EXISTS `{table}`"
            )))
            .execute(&self.pool)
            .await
            .expect("drop table");
            for bookkeeping in ["load_history", "load_rejects", "loader_state"] {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DELETE FROM {bookkeeping} WHERE table_name = ?"
                )))
                .bind(table)
                .execute(&self.pool)
                .await
                .expect("delete history");
            }
        }
        let _ = std::fs::remove_file(
            std::env::temp_dir().join(format!("chief-loader-test-{}.toml", self.id)),
        );
        self.pool.close().await;
    }
}

/// `(orderid, orderdata)` of one orders line.
type Row = (String, Vec<u8>);

fn hour(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, h, min, 0)
        .single()
        .expect("valid time")
}

fn order(id: &str, note: &str) -> (String, Vec<u8>) {
    (
        id.to_owned(),
        format!(r#"{{"orderid":"{id}","note":"{note}","items":[{{"sku":"SKU-1","quantity":1}}]}}"#)
            .into_bytes(),
    )
}

fn job(id: &str, status: &str, ts: &str) -> JobResult {
    JobResult::parse(
        format!(
            r#"{{"orderid":"{id}","userid":"user-1","factoryid":"factory-03","robotid":"robot-017","jobstatus":"{status}","timestamp":"{ts}"}}"#
        )
        .as_bytes(),
    )
    .expect("job result")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test]
async fn executor_files_load_to_exactly_the_unique_ids_and_a_second_run_changes_nothing() {
    let fx = Fixture::new().await;
    // Two hours, two shards; o-2 and o-5 are replays across files, o-1 arrives three times.
    let h1 = hour(2024, 5, 1, 10, 30);
    let h2 = hour(2024, 5, 1, 11, 5);
    let mut expected = BTreeMap::new();
    let files: Vec<(DateTime<Utc>, &str, &str, Vec<Row>)> = vec![
        (
            h1,
            "shardId-000000000000",
            "4958001",
            vec![order("o-1", "a"), order("o-2", "b"), order("o-3", "c")],
        ),
        (
            h1,
            "shardId-000000000001",
            "4958002",
            vec![order("o-4", "d"), order("o-2", "b"), order("o-1", "a")],
        ),
        (
            h2,
            "shardId-000000000000",
            "4958003",
            vec![order("o-5", "e"), order("o-1", "a")],
        ),
        (
            h2,
            "shardId-000000000001",
            "4958004",
            vec![order("o-6", "f"), order("o-5", "e")],
        ),
    ];
    let mut total_rows = 0;
    for (arrival, shard, seq, rows) in &files {
        fx.put_orders(*arrival, shard, seq, rows).await;
        total_rows += rows.len() as u64;
        for (id, json) in rows {
            expected.entry(id.clone()).or_insert_with(|| json.clone());
        }
    }
    fx.put_jobresults(
        h1,
        "shardId-000000000000",
        "77",
        &[
            job("o-1", "completed", "2024-05-01T10:30:01.250Z"),
            job("o-2", "failed", "2024-05-01T19:30:02+09:00"),
        ],
    )
    .await;
    fx.put_jobresults(
        h2,
        "shardId-000000000001",
        "78",
        &[job("o-1", "completed", "2024-05-01T10:30:01.250Z")],
    )
    .await;

    let output = fx
        .command()
        .args(["run", "--table", "all"])
        .output()
        .expect("run chief-loader");
    assert_eq!(
        output.status.code(),
        Some(0),
        "stdout: {}\nstderr: {}",
        stdout(&output),
        stderr(&output)
    );
    let out = stdout(&output);
    assert!(
        out.contains(&format!(
            "orders (table `{}`): 4 files ({} bytes, 0 reloaded), 10 rows read, 6 inserted, 4 ignored as duplicates, 0 warnings",
            fx.orders,
            files.iter().map(|(_, _, _, rows)| rows.iter().map(|(id, j)| id.len() + j.len() + 2).sum::<usize>()).sum::<usize>()
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!("jobresults (table `{}`): 2 files", fx.jobresults))
            && out.contains("3 rows read, 2 inserted, 1 ignored as duplicates, 0 warnings"),
        "{out}"
    );
    assert_eq!(total_rows, 10);

    // Exactly the unique ids, each with the first copy's bytes.
    assert_eq!(fx.order_rows().await, expected);
    let jobs: Vec<(String, String, String, String, String, String)> =
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT CONVERT(orderid USING utf8mb4), userid, factoryid, robotid, jobstatus, \
         DATE_FORMAT(`timestamp`, '%Y-%m-%d %H:%i:%s') FROM `{}` ORDER BY orderid",
            fx.jobresults
        )))
        .fetch_all(&fx.pool)
        .await
        .expect("select jobresults");
    assert_eq!(
        jobs,
        vec![
            (
                "o-1".into(),
                "user-1".into(),
                "factory-03".into(),
                "robot-017".into(),
                "completed".into(),
                "2024-05-01 10:30:01".into()
            ),
            (
                "o-2".into(),
                "user-1".into(),
                "factory-03".into(),
                "robot-017".into(),
                "failed".into(),
                "2024-05-01 10:30:02".into()
            ),
        ]
    );

    // The history names every object once, with its ETag, size and lines.
    let history = fx.history(&fx.orders).await;
    assert_eq!(history.len(), 4);
    for ((key, etag, size, rows, _), (arrival, shard, seq, lines)) in history.iter().zip(&files) {
        let head = fx
            .s3
            .head_object()
            .bucket(fx.bucket())
            .key(key)
            .send()
            .await
            .expect("head");
        assert_eq!(
            key,
            &batch_key(
                ORDERS_PREFIX,
                *arrival,
                shard,
                &RecordPosition {
                    sequence_number: (*seq).into(),
                    sub_sequence_number: 0
                }
            )
        );
        assert_eq!(etag, head.e_tag().expect("etag").trim_matches('"'));
        assert_eq!(
            *size,
            u64::try_from(head.content_length().expect("length")).expect("size")
        );
        assert_eq!(*rows, lines.len() as u64);
    }
    assert_eq!(fx.history(&fx.jobresults).await.len(), 2);

    // A second run: nothing new, exit 0, nothing changed (rows, timestamps, history).
    let processed_before: Vec<(String, String)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT CONVERT(orderid USING utf8mb4), DATE_FORMAT(processedtimestamp, '%Y-%m-%d %H:%i:%s') FROM `{}` ORDER BY orderid",
        fx.orders
    )))
    .fetch_all(&fx.pool)
    .await
    .expect("select");
    let output = fx
        .command()
        .args(["run"])
        .output()
        .expect("run chief-loader");
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let out = stdout(&output);
    assert!(
        out.contains(&format!(
            "orders (table `{}`): nothing new to load",
            fx.orders
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "jobresults (table `{}`): nothing new to load",
            fx.jobresults
        )),
        "{out}"
    );
    assert_eq!(fx.order_rows().await, expected);
    let processed_after: Vec<(String, String)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT CONVERT(orderid USING utf8mb4), DATE_FORMAT(processedtimestamp, '%Y-%m-%d %H:%i:%s') FROM `{}` ORDER BY orderid",
        fx.orders
    )))
    .fetch_all(&fx.pool)
    .await
    .expect("select");
    assert_eq!(processed_before, processed_after);
    assert_eq!(fx.history(&fx.orders).await, history);
    // No staged file is left in the import directory.
    let leftovers: Vec<PathBuf> = std::fs::read_dir(&fx.config.database.import_dir)
        .expect("import dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.to_string_lossy().contains(&fx.orders) || p.to_string_lossy().contains(&fx.jobresults)
        })
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    fx.cleanup().await;
}

#[tokio::test]
async fn a_file_added_later_to_a_loaded_hour_is_picked_up_within_rescan_hours() {
    let mut fx = Fixture::new().await;
    let h10 = hour(2024, 6, 1, 10, 0);
    let h12 = hour(2024, 6, 1, 12, 59);
    fx.put_orders(h10, "shardId-000000000000", "100", &[order("a-1", "x")])
        .await;
    fx.put_orders(h12, "shardId-000000000000", "300", &[order("a-3", "x")])
        .await;
    let first = fx.run("orders").await;
    assert_eq!(first.tables[0].files, 2);

    // Late files into hours 10 and 11, older than the newest loaded hour (12).
    let late11 = fx
        .put_orders(
            hour(2024, 6, 1, 11, 30),
            "shardId-000000000001",
            "200",
            &[order("a-2", "late")],
        )
        .await;
    let late10 = fx
        .put_orders(
            h10,
            "shardId-000000000001",
            "150",
            &[order("a-1", "dup"), order("a-4", "late")],
        )
        .await;

    // rescan_hours = 1 lists from hour 11: the hour-11 file only.
    fx.config.loader.rescan_hours = 1;
    let second = fx.run("orders").await;
    let report = &second.tables[0];
    assert_eq!(
        (report.outcome, report.files, report.rows_inserted),
        (Outcome::Loaded, 1, 1)
    );
    assert!(fx.history(&fx.orders).await.iter().any(|h| h.0 == late11));

    // rescan_hours = 2 reaches hour 10: its late file, whose a-1 is a duplicate.
    fx.config.loader.rescan_hours = 2;
    let third = fx.run("orders").await;
    let report = &third.tables[0];
    assert_eq!(
        (
            report.files,
            report.rows_read,
            report.rows_inserted,
            report.rows_duplicate
        ),
        (1, 2, 1, 1)
    );
    assert!(fx.history(&fx.orders).await.iter().any(|h| h.0 == late10));
    let ids: BTreeSet<String> = fx.order_rows().await.into_keys().collect();
    assert_eq!(ids, ["a-1", "a-2", "a-3", "a-4"].map(String::from).into());
    assert_eq!(fx.order_rows().await["a-1"], order("a-1", "x").1);

    // And nothing more after that.
    assert_eq!(
        fx.run("orders").await.tables[0].outcome,
        Outcome::NothingNew
    );
    fx.cleanup().await;
}

#[tokio::test]
async fn an_object_written_into_an_hour_loaded_two_days_ago_is_loaded_through_the_queue() {
    let mut fx = Fixture::new().await;
    fx.with_queue().await;
    let h = hour(2024, 7, 3, 12, 0);
    fx.put_orders(h, "shardId-000000000000", "100", &[order("q-1", "x")])
        .await;
    let first = fx.run("orders").await;
    assert_eq!(
        (first.tables[0].outcome, first.tables[0].files),
        (Outcome::Loaded, 1)
    );
    assert!(
        first.tables[0].full_listing,
        "the first run lists everything"
    );
    // S3's s3:TestEvent (sent when the notifications were set up) and the object's event.
    let queue = first.queue.as_ref().expect("queue report");
    assert_eq!((queue.received, queue.deleted, queue.kept), (2, 2, 0));
    assert_eq!(fx.queued_messages().await, 0);

    // A shard stalled for two days writes into an hour 48 h before the newest loaded one:
    // the look-back (3 h) does not reach it; the queue names it.
    let old = fx
        .put_orders(
            hour(2024, 7, 1, 12, 0),
            "shardId-000000000001",
            "50",
            &[order("q-0", "late"), order("q-1", "dup")],
        )
        .await;
    let second = fx.run("orders").await;
    let report = &second.tables[0];
    assert!(
        !report.full_listing,
        "not a whole listing: the queue found it"
    );
    assert_eq!(
        (
            report.outcome,
            report.files,
            report.from_queue,
            report.rows_inserted,
            report.rows_duplicate
        ),
        (Outcome::Loaded, 1, 1, 1, 1)
    );
    assert!(fx.history(&fx.orders).await.iter().any(|h| h.0 == old));
    let queue = second.queue.as_ref().expect("queue report");
    assert_eq!((queue.received, queue.deleted, queue.kept), (1, 1, 0));
    assert_eq!(
        fx.queued_messages().await,
        0,
        "its message is gone once loaded"
    );
    let rows = fx.order_rows().await;
    assert_eq!(rows.keys().cloned().collect::<Vec<_>>(), ["q-0", "q-1"]);
    assert_eq!(rows["q-1"], order("q-1", "x").1, "the first copy stays");

    // Nothing more, and the queue stays empty.
    let third = fx.run("orders").await;
    assert_eq!(third.tables[0].outcome, Outcome::NothingNew);
    assert_eq!(third.queue.as_ref().map(|q| q.received), Some(0));
    fx.cleanup().await;
}

#[tokio::test]
async fn without_the_queue_the_whole_listing_loads_an_old_hours_object() {
    let mut fx = Fixture::new().await;
    let h = hour(2024, 7, 3, 12, 0);
    fx.put_orders(h, "shardId-000000000000", "100", &[order("w-1", "x")])
        .await;
    assert_eq!(fx.run("orders").await.tables[0].files, 1);
    let old = fx
        .put_orders(
            hour(2024, 7, 1, 12, 0),
            "shardId-000000000001",
            "50",
            &[order("w-0", "late")],
        )
        .await;
    // Within full_listing_hours of the last whole listing the look-back does not reach
    // the object (what every run did before the queue) …
    let second = fx.run("orders").await;
    assert_eq!(second.tables[0].outcome, Outcome::NothingNew);
    assert!(!second.tables[0].full_listing);
    // … the next whole listing does: when it is due (0 h: every run), or asked for.
    fx.config.loader.full_listing_hours = 0;
    let third = fx.run("orders").await;
    let report = &third.tables[0];
    assert!(report.full_listing);
    assert_eq!(
        (report.outcome, report.files, report.rows_inserted),
        (Outcome::Loaded, 1, 1)
    );
    assert!(fx.history(&fx.orders).await.iter().any(|h| h.0 == old));
    fx.config.loader.full_listing_hours = 24;
    let forced = fx
        .run_with(RunOptions {
            table: "orders".to_owned(),
            full_listing: true,
            ..RunOptions::from_settings(&fx.config.loader)
        })
        .await;
    assert!(forced.tables[0].full_listing);
    assert_eq!(forced.tables[0].outcome, Outcome::NothingNew);
    fx.cleanup().await;
}

#[tokio::test]
async fn a_queued_object_not_loaded_keeps_its_message_until_a_run_loads_it() {
    let mut fx = Fixture::new().await;
    fx.with_queue().await;
    fx.config.loader.queue_visibility_timeout_s = 1;
    fx.put_orders(
        hour(2024, 8, 2, 9, 0),
        "shardId-000000000000",
        "1",
        &[order("k-1", "x")],
    )
    .await;
    // Another run holds the orders table's lock: this run takes the message but cannot
    // load its object, so the message must come back.
    let (mut holder, lock) = fx.hold_lock(&fx.orders).await;
    let blocked = fx.run("orders").await;
    assert_eq!(blocked.tables[0].outcome, Outcome::Locked);
    // S3's s3:TestEvent (nothing to load: deleted) and the object's event (kept).
    let queue = blocked.queue.as_ref().expect("queue report");
    assert_eq!((queue.received, queue.deleted, queue.kept), (2, 1, 1));
    assert_eq!(fx.queued_messages().await, 1, "the message is kept");
    chief_loader::session::unlock(&mut holder, &lock)
        .await
        .expect("unlock");
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let next = fx.run("orders").await;
    assert_eq!(
        (next.tables[0].outcome, next.tables[0].files),
        (Outcome::Loaded, 1)
    );
    let queue = next.queue.as_ref().expect("queue report");
    assert_eq!((queue.received, queue.deleted, queue.kept), (1, 1, 0));
    assert_eq!(fx.queued_messages().await, 0);
    assert_eq!(fx.order_rows().await.len(), 1);
    fx.cleanup().await;
}

#[tokio::test]
async fn duplicates_across_files_and_runs_are_ignored_and_counted() {
    let fx = Fixture::new().await;
    let h = hour(2024, 7, 2, 3, 0);
    fx.put_orders(
        h,
        "shardId-000000000000",
        "1",
        &[order("d-1", "first"), order("d-2", "first")],
    )
    .await;
    let first = fx.run("orders").await;
    assert_eq!(first.tables[0].rows_inserted, 2);

    // Replays in two more files: ids loaded before, with other bytes; new ids repeated
    // within a file and across the two. The first copy in key-then-line order wins,
    // as when Aurora reads the objects in order (local mode sorts the lines by orderid,
    // stably).
    fx.put_orders(
        h,
        "shardId-000000000000",
        "2",
        &[
            order("d-5", "one"),
            order("d-1", "replay"),
            order("d-2", "replay"),
            order("d-3", "new"),
            order("d-4", "early"),
            order("d-5", "two"),
        ],
    )
    .await;
    fx.put_orders(
        h,
        "shardId-000000000001",
        "3",
        &[
            order("d-4", "late"),
            order("d-3", "again"),
            order("d-1", "again"),
        ],
    )
    .await;
    let second = fx.run("orders").await;
    let report = &second.tables[0];
    assert_eq!(
        (
            report.files,
            report.rows_read,
            report.rows_inserted,
            report.rows_duplicate,
            report.warnings
        ),
        (2, 9, 3, 6, 0)
    );
    assert_eq!(second.exit_code(), chief_loader::EXIT_OK);
    let rows = fx.order_rows().await;
    assert_eq!(rows.len(), 5);
    assert_eq!(rows["d-1"], order("d-1", "first").1);
    assert_eq!(rows["d-2"], order("d-2", "first").1);
    assert_eq!(rows["d-3"], order("d-3", "new").1);
    assert_eq!(rows["d-4"], order("d-4", "early").1);
    assert_eq!(rows["d-5"], order("d-5", "one").1);
    fx.cleanup().await;
}

#[tokio::test]
async fn hostile_orderdata_round_trips_byte_exact() {
    let fx = Fixture::new().await;
    // Up to a whole Kinesis record (1 MiB): more than TEXT held, MEDIUMTEXT holds it.
    let long = "x".repeat(1_048_000);
    let payloads: Vec<Vec<u8>> = vec![
        b"{\"orderid\":\"h-1\",\t\"tab\":\"raw tab before me\"}".to_vec(),
        b"{\"orderid\":\"h-2\",\n\"newline\":true,\r\n\"crlf\":1}".to_vec(),
        br#"{"orderid":"h-3","backslashes":"\\ \\\\ \" \\N \N \t \n \0 \\t","apostrophe":"it's"}"#
            .to_vec(),
        "{\"orderid\":\"h-4\",\"emoji\":\"🦀 ü € 漢字 \u{1F600}\",\"zwj\":\"👩‍👩‍👧\"}"
            .as_bytes()
            .to_vec(),
        b"\\N".to_vec(),
        b"".to_vec(),
        b"nul\0byte and ctrl-z \x1a and backspace \x08 end\\".to_vec(),
        format!(r#"{{"orderid":"h-8","long":"{long}"}}"#).into_bytes(),
        b"\t\t\n\n\\\\".to_vec(),
    ];
    let rows: Vec<(String, Vec<u8>)> = payloads
        .iter()
        .enumerate()
        .map(|(i, p)| (format!("h-{}", i + 1), p.clone()))
        .collect();
    fx.put_orders(hour(2024, 8, 8, 8, 8), "shardId-000000000003", "9", &rows)
        .await;
    let report = fx.run("orders").await;
    assert_eq!(
        report.tables[0].warnings, 0,
        "{:?}",
        report.tables[0].warning_messages
    );
    assert_eq!(report.tables[0].rows_inserted, payloads.len() as u64);
    let loaded = fx.order_rows().await;
    for (id, bytes) in &rows {
        assert_eq!(loaded.get(id), Some(bytes), "orderdata of {id} differs");
    }
    // `\N` in the data is text, never NULL.
    let nulls: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT COUNT(*) FROM `{}` WHERE orderdata IS NULL",
        fx.orders
    )))
    .fetch_one(&fx.pool)
    .await
    .expect("count");
    assert_eq!(nulls, 0);
    fx.cleanup().await;
}

#[tokio::test]
async fn a_load_the_server_would_alter_is_rolled_back_and_its_object_held_with_the_line() {
    let fx = Fixture::new().await;
    let good = format!("{ORDERS_PREFIX}/2024/09/09/09/shardId-000000000000-1");
    let bad = format!("{ORDERS_PREFIX}/2024/09/09/09/shardId-000000000001-1");
    fx.put_raw(&good, b"ok-1\t{}\nok-2\t{}\n".to_vec()).await;
    // Rows the server would store as something else: a missing column, an extra column,
    // an id longer than the key holds (truncated), text that is not UTF-8 (stored as `?`).
    let too_long_id = "z".repeat(300);
    let mut body = format!(
        "bad-1\t{{}}\nmissing-column\n{too_long_id}\t{{}}\nextra\t{{}}\tcolumn\nbad-5\t{{\"n\":\""
    )
    .into_bytes();
    body.extend_from_slice(b"\xff\xfe\"}\n");
    fx.put_raw(&bad, body).await;

    let run = || {
        fx.command()
            .args(["run", "--table", "orders"])
            .output()
            .expect("run")
    };
    let output = run();
    let out = stdout(&output);
    assert_eq!(output.status.code(), Some(1), "{out}\n{}", stderr(&output));
    assert!(out.contains("REFUSED 1 objects"), "{out}");
    // Each warning names the object and its line (the staged file is sorted by orderid,
    // so the server's row numbers are mapped back).
    for expected in [
        format!("{bad} line 2: Warning 1261: Row"),
        format!("{bad} line 3: Warning 1265: Data truncated for column 'orderid'"),
        format!("{bad} line 4: Warning 1262: Row"),
        format!("{bad} line 5: Warning 1366: Incorrect string value: '\\xFF\\xFE"),
    ] {
        assert!(out.contains(&expected), "{expected}\n{out}");
    }
    assert!(
        out.contains(&format!("/{bad} line ")) && out.contains("refused: s3://"),
        "{out}"
    );
    // Rolled back: no row, no history, for the good object either.
    assert!(fx.order_rows().await.is_empty());
    assert!(fx.history(&fx.orders).await.is_empty());
    let held: Vec<(String, Option<u64>, String)> =
        sqlx::query_as("SELECT object_key, line, reason FROM load_rejects WHERE table_name = ?")
            .bind(&fx.orders)
            .fetch_all(&fx.pool)
            .await
            .expect("load_rejects");
    assert_eq!(held.len(), 1, "{held:?}");
    assert_eq!(held[0].0, bad);
    assert!(held[0].1.is_some_and(|l| (2..=5).contains(&l)), "{held:?}");
    assert!(held[0].2.starts_with("Warning 1"), "{held:?}");

    // The next run loads the rest and says the bad object is held.
    let again = run();
    let out = stdout(&again);
    assert_eq!(again.status.code(), Some(0), "{out}");
    assert!(out.contains("1 files"), "{out}");
    assert!(out.contains("1 objects held in load_rejects"), "{out}");
    let rows = fx.order_rows().await;
    assert_eq!(rows.keys().collect::<Vec<_>>(), ["ok-1", "ok-2"]);
    assert_eq!(fx.history(&fx.orders).await.len(), 1);

    // A fixed object (another ETag) is tried again.
    fx.put_raw(&bad, b"bad-1\t{}\n".to_vec()).await;
    let fixed = run();
    assert_eq!(fixed.status.code(), Some(0), "{}", stdout(&fixed));
    assert_eq!(fx.order_rows().await.len(), 3);
    fx.cleanup().await;
}

#[tokio::test]
async fn a_second_concurrent_run_is_refused_by_the_lock_with_exit_75() {
    let fx = Fixture::new().await;
    fx.put_orders(
        hour(2024, 10, 1, 0, 0),
        "shardId-000000000000",
        "1",
        &[order("l-1", "x")],
    )
    .await;
    // Another run: a session holding the table's lock.
    let (mut holder, lock) = fx.hold_lock(&fx.orders).await;

    let output = fx
        .command()
        .args(["run", "--table", "orders"])
        .output()
        .expect("run");
    assert_eq!(
        output.status.code(),
        Some(75),
        "{}\n{}",
        stdout(&output),
        stderr(&output)
    );
    assert!(
        stdout(&output).contains("another chief-loader run holds the lock"),
        "{}",
        stdout(&output)
    );
    assert!(fx.history(&fx.orders).await.is_empty());
    assert!(fx.order_rows().await.is_empty());

    // The other table is not blocked by it.
    let output = fx
        .command()
        .args(["run", "--table", "jobresults"])
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(0), "{}", stdout(&output));

    chief_loader::session::unlock(&mut holder, &lock)
        .await
        .expect("unlock");
    let output = fx
        .command()
        .args(["run", "--table", "orders"])
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(0), "{}", stdout(&output));
    assert_eq!(fx.order_rows().await.len(), 1);
    fx.cleanup().await;
}

#[tokio::test]
async fn log_format_json_writes_one_object_a_line_for_the_log_shipper() {
    let fx = Fixture::new().await;
    fx.put_orders(
        hour(2024, 10, 2, 0, 0),
        "shardId-000000000000",
        "1",
        &[order("j-1", "x")],
    )
    .await;
    let output = fx
        .command()
        .args(["--log-format", "json", "run", "--table", "orders"])
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let lines: Vec<&str> = std::str::from_utf8(&output.stderr)
        .expect("UTF-8 logs")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert!(!lines.is_empty(), "the run logged nothing");
    let mut named_the_table = false;
    for line in &lines {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON object ({e}): {line}"));
        assert!(
            v["level"].is_string() && v["timestamp"].is_string(),
            "{line}"
        );
        assert!(v["fields"]["message"].is_string(), "{line}");
        named_the_table |= line.contains(&fx.orders);
    }
    assert!(
        named_the_table,
        "no line names {}:\n{}",
        fx.orders,
        lines.join("\n")
    );
    assert_eq!(fx.order_rows().await.len(), 1);
    fx.cleanup().await;
}

#[tokio::test]
async fn the_database_down_gives_a_clear_error_a_nonzero_exit_and_no_history() {
    let fx = Fixture::new().await;
    fx.put_orders(
        hour(2024, 11, 1, 0, 0),
        "shardId-000000000000",
        "1",
        &[order("x-1", "x")],
    )
    .await;
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let url = format!("mysql://loader:hunter2@127.0.0.1:{port}/chief");
    let output = fx
        .command()
        .env("CHIEF__DATABASE__URL", &url)
        .args(["run", "--mode", "local"])
        .output()
        .expect("run");
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "cannot connect to the database at mysql://loader:***@127.0.0.1:{port}/chief"
        )),
        "{err}"
    );
    assert!(
        !err.contains("hunter2") && !stdout(&output).contains("hunter2"),
        "{err}"
    );
    assert!(fx.history(&fx.orders).await.is_empty());
    assert!(fx.history(&fx.jobresults).await.is_empty());
    assert!(fx.order_rows().await.is_empty());
    fx.cleanup().await;
}

#[tokio::test]
async fn aurora_dry_run_prints_the_manifest_and_statement_and_writes_nothing() {
    let mut fx = Fixture::new().await;
    fx.config.loader.mode = Mode::Aurora;
    let k1 = fx
        .put_orders(
            hour(2024, 12, 24, 23, 0),
            "shardId-000000000000",
            "1",
            &[order("y-1", "x")],
        )
        .await;
    let k2 = fx
        .put_orders(
            hour(2024, 12, 25, 0, 0),
            "shardId-000000000002",
            "2",
            &[order("y-2", "x")],
        )
        .await;
    let output = fx
        .command()
        .args(["run", "--table", "orders", "--dry-run"])
        .output()
        .expect("run");
    let out = stdout(&output);
    assert_eq!(output.status.code(), Some(0), "{out}\n{}", stderr(&output));
    let manifest_line = out
        .lines()
        .find(|l| l.starts_with("-- MANIFEST "))
        .expect("manifest line");
    let (url, json) = manifest_line["-- MANIFEST ".len()..]
        .split_once(": ")
        .expect("url: json");
    let bucket = fx.bucket();
    assert_eq!(
        json,
        format!(
            r#"{{"entries":[{{"url":"s3://{bucket}/{k1}","mandatory":true}},{{"url":"s3://{bucket}/{k2}","mandatory":true}}]}}"#
        )
    );
    assert!(
        url.starts_with(&format!(
            "s3://{bucket}/chief-loader/manifests/{}/",
            fx.orders
        )),
        "{url}"
    );
    let spec = TableSpec::new("orders", &fx.config.loader.tables["orders"]).expect("spec");
    assert!(
        out.lines()
            .any(|l| l == format!("{};", sql::aurora_load_statement(&spec, url))),
        "{out}"
    );
    assert!(out.contains("dry run, would load 2 files"), "{out}");
    // Nothing written: no manifest, no rows, no history.
    let manifests = fx
        .s3
        .list_objects_v2()
        .bucket(bucket)
        .prefix("chief-loader/")
        .send()
        .await
        .expect("list");
    assert_eq!(manifests.key_count(), Some(0));
    assert!(fx.history(&fx.orders).await.is_empty());
    assert!(fx.order_rows().await.is_empty());
    fx.cleanup().await;
}

/// The exact Aurora statements for the chief tables (golden strings).
#[test]
fn aurora_statements_match_the_golden_strings() {
    let url = "s3://chief-archive/chief-loader/manifests/orders/2024/01/01/20240101T001000.000Z-4242-0.json";
    let orders = TableSpec::new("orders", &TableConfig::orders()).expect("orders");
    assert_eq!(
        sql::aurora_load_statement(&orders, url),
        r"LOAD DATA FROM S3 MANIFEST 's3://chief-archive/chief-loader/manifests/orders/2024/01/01/20240101T001000.000Z-4242-0.json' IGNORE INTO TABLE `orders` CHARACTER SET utf8mb4 FIELDS TERMINATED BY '\t' ENCLOSED BY '' ESCAPED BY '\\' LINES TERMINATED BY '\n' (`orderid`, `orderdata`) SET `processedtimestamp` = CURRENT_TIMESTAMP"
    );
    let url = "s3://chief-archive/chief-loader/manifests/jobresults/2024/01/01/20240101T001000.000Z-4242-0.json";
    let jobresults = TableSpec::new("jobresults", &TableConfig::jobresults()).expect("jobresults");
    assert_eq!(
        sql::aurora_load_statement(&jobresults, url),
        r"LOAD DATA FROM S3 MANIFEST 's3://chief-archive/chief-loader/manifests/jobresults/2024/01/01/20240101T001000.000Z-4242-0.json' IGNORE INTO TABLE `jobresults` CHARACTER SET utf8mb4 FIELDS TERMINATED BY '\t' ENCLOSED BY '' ESCAPED BY '\\' LINES TERMINATED BY '\n' (`orderid`, `userid`, `factoryid`, `robotid`, `jobstatus`, `timestamp`)"
    );
}

#[tokio::test]
async fn local_mode_sorts_lines_only_when_that_keeps_the_first_copy() {
    let fx = Fixture::new().await;
    let h = hour(2025, 1, 2, 3, 0);
    fx.put_orders(
        h,
        "shardId-000000000000",
        "1",
        &[order("ci-1", "lower first")],
    )
    .await;
    fx.put_orders(
        h,
        "shardId-000000000001",
        "2",
        &[order("CI-1", "upper later")],
    )
    .await;
    let dry = fx
        .command()
        .args(["run", "--table", "orders", "--mode", "local", "--dry-run"])
        .output()
        .expect("run");
    let out = stdout(&dry);
    assert!(out.contains("2 objects, sorted by `orderid`"), "{out}");

    // A case-insensitive key: 'CI-1' sorts before 'ci-1' but is the same key, so sorting
    // would change which copy wins. The loader keeps the objects' order instead.
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "ALTER TABLE `{}` MODIFY orderid VARCHAR(73) \
         CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci NOT NULL",
        fx.orders
    )))
    .execute(&fx.pool)
    .await
    .expect("alter");
    let dry = fx
        .command()
        .args(["run", "--table", "orders", "--mode", "local", "--dry-run"])
        .output()
        .expect("run");
    let out = stdout(&dry);
    assert!(out.contains("the lines of 2 objects: "), "{out}");
    assert!(!out.contains("sorted by"), "{out}");
    let report = fx.run("orders").await;
    assert_eq!(
        (
            report.tables[0].rows_inserted,
            report.tables[0].rows_duplicate
        ),
        (1, 1)
    );
    let rows = fx.order_rows().await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows["ci-1"], order("ci-1", "lower first").1);
    fx.cleanup().await;
}

/// `Sum` of `metric` in `namespace` on the local stack's CloudWatch (moto), last hour.
async fn cloudwatch_sum(namespace: &str, metric: &str) -> f64 {
    let stack = LocalStack::require();
    let client = AwsClients::new(&stack.aws).await.cloudwatch();
    let now = std::time::SystemTime::now();
    let out = client
        .get_metric_statistics()
        .namespace(namespace)
        .metric_name(metric)
        .start_time(aws_sdk_cloudwatch::primitives::DateTime::from(
            now - std::time::Duration::from_secs(1800),
        ))
        .end_time(aws_sdk_cloudwatch::primitives::DateTime::from(
            now + std::time::Duration::from_secs(1800),
        ))
        .period(3600)
        .statistics(aws_sdk_cloudwatch::types::Statistic::Sum)
        .send()
        .await
        .expect("GetMetricStatistics");
    out.datapoints().iter().filter_map(|d| d.sum()).sum()
}

#[tokio::test]
async fn each_run_publishes_its_result_to_cloudwatch_when_on() {
    let fx = Fixture::new().await;
    let namespace = format!("chief-loader-test-{}", fx.id);
    fx.put_orders(
        hour(2024, 5, 1, 10, 0),
        "shardId-000000000000",
        "1",
        &[order("m-1", "a"), order("m-2", "b"), order("m-3", "c")],
    )
    .await;
    let ok = fx
        .command()
        .args(["run", "--table", "orders"])
        .env("CHIEF__METRICS__CLOUDWATCH__NAMESPACE", &namespace)
        .output()
        .expect("run chief-loader");
    assert_eq!(ok.status.code(), Some(0), "{}", stderr(&ok));
    assert_eq!(cloudwatch_sum(&namespace, "LoaderRuns").await, 1.0);
    assert_eq!(cloudwatch_sum(&namespace, "LoaderFailures").await, 0.0);
    assert_eq!(cloudwatch_sum(&namespace, "LoaderFilesLoaded").await, 1.0);
    assert_eq!(cloudwatch_sum(&namespace, "LoaderRowsInserted").await, 3.0);
    // A run that cannot reach its database fails, and says so in CloudWatch too.
    let failed = fx
        .command()
        .args(["run", "--table", "orders"])
        .env("CHIEF__METRICS__CLOUDWATCH__NAMESPACE", &namespace)
        .env("CHIEF__DATABASE__URL", "mysql://root@127.0.0.1:1/chief")
        .output()
        .expect("run chief-loader");
    assert_ne!(failed.status.code(), Some(0), "{}", stdout(&failed));
    assert_eq!(cloudwatch_sum(&namespace, "LoaderRuns").await, 2.0);
    assert_eq!(cloudwatch_sum(&namespace, "LoaderFailures").await, 1.0);
    fx.cleanup().await;
}

/// `chief-aurora-standin` in front of the local MariaDB, on a free port: the loader's
/// `--mode aurora` talks to it as to Aurora. Killed on drop.
struct AuroraStandin {
    child: std::process::Child,
    log: PathBuf,
    url: String,
}

impl AuroraStandin {
    fn start(fx: &Fixture, delete_before_load: Option<&str>) -> Self {
        let stack = LocalStack::require();
        let binary = PathBuf::from(env!("CARGO_BIN_EXE_chief-loader"))
            .with_file_name("chief-aurora-standin");
        assert!(
            binary.exists(),
            "{} is missing: build the workspace first (`cargo build --workspace --bins`; `make test` does)",
            binary.display()
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let (head, tail) = stack.database.url.split_once('@').expect("user@host");
        let (upstream, database) = tail.split_once('/').expect("host/database");
        let log = std::env::temp_dir().join(format!("chief-aurora-standin-{}.log", fx.id));
        let mut command = std::process::Command::new(binary);
        command
            .current_dir(workspace_root())
            .args(["--config", "config/local.toml", "--listen"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["--upstream", upstream, "--import-dir"])
            .arg(&fx.config.database.import_dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"));
        if let Some(fault) = delete_before_load {
            command.args(["--delete-before-load", fault]);
        }
        let child = command.spawn().expect("spawn chief-aurora-standin");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "the stand-in did not start"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Self {
            child,
            log,
            url: format!("{head}@127.0.0.1:{port}/{database}"),
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for AuroraStandin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

/// `chief-loader run --mode aurora --table orders` against `standin`: status and report.
fn run_aurora(fx: &Fixture, standin: &AuroraStandin) -> (Option<i32>, serde_json::Value, String) {
    let output = fx
        .command()
        .env("CHIEF__DATABASE__URL", &standin.url)
        .args(["run", "--mode", "aurora", "--table", "orders"])
        .output()
        .expect("run chief-loader");
    let out = stdout(&output);
    let report = out
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .unwrap_or_default();
    (
        output.status.code(),
        report,
        format!("{out}{}", stderr(&output)),
    )
}

#[tokio::test]
async fn aurora_mode_runs_end_to_end_manifest_statement_history_and_duplicates() {
    let fx = Fixture::new().await;
    let h = hour(2024, 9, 1, 8, 0);
    let a = fx
        .put_orders(
            h,
            "shardId-000000000000",
            "10",
            &[order("au-1", "x"), order("au-2", "x")],
        )
        .await;
    let b = fx
        .put_orders(
            h,
            "shardId-000000000001",
            "20",
            &[order("au-2", "dup"), order("au-3", "x")],
        )
        .await;
    let standin = AuroraStandin::start(&fx, None);
    let (status, report, text) = run_aurora(&fx, &standin);
    assert_eq!(status, Some(0), "{text}");
    let t = &report["tables"][0];
    assert_eq!(
        (
            t["files"].as_u64(),
            t["rows_read"].as_u64(),
            t["rows_inserted"].as_u64(),
            t["rows_duplicate"].as_u64()
        ),
        (Some(2), Some(4), Some(3), Some(1)),
        "{text}"
    );
    // The statement went through the stand-in, from the MANIFEST the loader wrote.
    assert!(
        standin
            .log()
            .contains("LOAD DATA FROM S3 run as LOAD DATA INFILE"),
        "{}",
        standin.log()
    );
    let manifests = fx
        .s3
        .list_objects_v2()
        .bucket(fx.bucket())
        .prefix(format!("chief-loader/manifests/{}/", fx.orders))
        .send()
        .await
        .expect("list manifests");
    let keys: Vec<&str> = manifests
        .contents()
        .iter()
        .filter_map(|o| o.key())
        .collect();
    assert_eq!(keys.len(), 1, "{keys:?}");
    let manifest = fx
        .s3
        .get_object()
        .bucket(fx.bucket())
        .key(keys[0])
        .send()
        .await
        .expect("manifest")
        .body
        .collect()
        .await
        .expect("body")
        .to_vec();
    let manifest: serde_json::Value = serde_json::from_slice(&manifest).expect("JSON");
    let urls: Vec<(&str, bool)> = manifest["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| {
            (
                e["url"].as_str().unwrap_or_default(),
                e["mandatory"] == true,
            )
        })
        .collect();
    let (url_a, url_b) = (
        format!("s3://{}/{a}", fx.bucket()),
        format!("s3://{}/{b}", fx.bucket()),
    );
    assert_eq!(urls, vec![(url_a.as_str(), true), (url_b.as_str(), true)]);
    // Exactly the unique ids, the first copy of each, and both objects in history.
    let rows = fx.order_rows().await;
    assert_eq!(
        rows.keys().cloned().collect::<Vec<_>>(),
        ["au-1", "au-2", "au-3"]
    );
    assert_eq!(rows["au-2"], order("au-2", "x").1);
    let history: Vec<String> = fx
        .history(&fx.orders)
        .await
        .into_iter()
        .map(|h| h.0)
        .collect();
    assert_eq!(history, vec![a.clone(), b.clone()]);
    // Nothing new next time; a later file's duplicates are ignored and counted.
    let (status, report, text) = run_aurora(&fx, &standin);
    assert_eq!(
        (status, report["tables"][0]["outcome"].as_str()),
        (Some(0), Some("nothing_new")),
        "{text}"
    );
    fx.put_orders(
        h,
        "shardId-000000000002",
        "30",
        &[order("au-1", "again"), order("au-4", "x")],
    )
    .await;
    let (status, report, text) = run_aurora(&fx, &standin);
    assert_eq!(status, Some(0), "{text}");
    let t = &report["tables"][0];
    assert_eq!(
        (t["rows_inserted"].as_u64(), t["rows_duplicate"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(fx.order_rows().await.len(), 4);
    fx.cleanup().await;
}

#[tokio::test]
async fn aurora_mode_a_missing_mandatory_object_fails_the_load_and_records_nothing() {
    let fx = Fixture::new().await;
    let h = hour(2024, 9, 2, 8, 0);
    fx.put_orders(h, "shardId-000000000000", "10", &[order("am-1", "x")])
        .await;
    let victim = fx
        .put_orders(h, "shardId-000000000001", "20", &[order("am-2", "x")])
        .await;
    // The second object disappears between the loader's listing and Aurora's read.
    let standin = AuroraStandin::start(&fx, Some("shardId-000000000001"));
    let (status, _, text) = run_aurora(&fx, &standin);
    assert_eq!(status, Some(1), "{text}");
    assert!(text.contains("is mandatory and does not exist"), "{text}");
    // The fault happened: the object is gone from S3.
    assert!(
        fx.s3
            .head_object()
            .bucket(fx.bucket())
            .key(&victim)
            .send()
            .await
            .is_err(),
        "the object was deleted before the load"
    );
    // The whole load failed: no row, no history (the first object is not recorded either).
    assert!(fx.order_rows().await.is_empty());
    assert!(fx.history(&fx.orders).await.is_empty());
    fx.cleanup().await;
}
