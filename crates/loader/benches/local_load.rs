//! Local-mode load benchmark (`cargo bench -p chief-loader --bench local_load`), on the
//! local stack (`make stack-up`): `CHIEF_BENCH_ROWS` (default 1,000,000) orders shaped like
//! `chief-datagen`'s (about 370 bytes of JSON, random UUID-pair ids), written into moto S3
//! as the executors write them (≤ 5 MiB objects over 4 shards, `batch_key`, the `tsv`
//! writer), then one `chief-loader run --mode local` into a fresh `orders`-shaped table.
//!
//! Prints rows/s for the whole run (list, download from moto, `LOAD DATA INFILE`, history,
//! commit) and for the time inside the `LOAD DATA` statements alone.

use std::time::Instant;

use chief_config::aws::AwsClients;
use chief_config::local_stack::{LocalStack, workspace_root};
use chief_loader::{LoaderConfig, Mode, RunOptions, TableConfig};
use chief_pipeline::archive::{RecordPosition, batch_key};
use chief_pipeline::model::OrderId;
use chief_pipeline::tsv;
use chrono::{TimeZone, Utc};

/// The executors' default object bound (`archive.max_bytes`).
const MAX_OBJECT_BYTES: usize = 5 * 1024 * 1024;
const SHARDS: usize = 4;

fn order(i: u64) -> (String, Vec<u8>) {
    let a = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x5851_F42D_4C95_7F2D;
    let b = i.wrapping_mul(0xC2B2_AE3D_27D4_EB4F) ^ 0x1405_7B7E_F767_814F;
    let id = format!(
        "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}-{:08x}-{:04x}-4{:03x}-b{:03x}-{:012x}",
        a as u32,
        (a >> 32) as u16,
        (a >> 48) & 0xFFF,
        (a >> 20) & 0xFFF,
        a & 0xFFFF_FFFF_FFFF,
        b as u32,
        (b >> 32) as u16,
        (b >> 48) & 0xFFF,
        (b >> 20) & 0xFFF,
        b & 0xFFFF_FFFF_FFFF,
    );
    let json = format!(
        "{{\"orderid\":\"{id}\",\"user\":{{\"userid\":\"user-{:06}\",\"name\":\"Ada Lovelace\"}},\
         \"factoryid\":\"factory-{:02}\",\"items\":[{{\"sku\":\"SKU-{:04}\",\"product\":\"Servo motor\",\
         \"quantity\":{},\"unit_price_cents\":4999}},{{\"sku\":\"SKU-1002\",\"product\":\"Gear\\tbox\",\
         \"quantity\":1,\"unit_price_cents\":1250}}],\"timestamp\":\"2024-01-01T00:00:00.123Z\"}}",
        i % 1_000_000,
        i % 10,
        1000 + i % 100,
        1 + i % 5
    );
    (id, json.into_bytes())
}

fn main() {
    let rows: u64 = std::env::var("CHIEF_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(bench(rows));
}

async fn bench(rows: u64) {
    let stack = LocalStack::require();
    let id = format!("{:x}", std::process::id());
    let pool = chief_loader::connect(&stack.database)
        .await
        .expect("connect");
    chief_loader::migrate(&pool).await.expect("migrate");
    let table = format!("orders_bench_{id}");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE TABLE `{table}` LIKE orders"
    )))
    .execute(&pool)
    .await
    .expect("create table");
    let s3 = AwsClients::new(&stack.aws).await.s3();
    let bucket = format!("chief-loader-bench-{id}");
    s3.create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .expect("create bucket");

    // The objects, as four shards' executors would write them within one hour.
    let started = Instant::now();
    let arrival = Utc
        .with_ymd_and_hms(2024, 1, 1, 0, 0, 0)
        .single()
        .expect("time");
    let mut bodies: Vec<Vec<u8>> = vec![Vec::new(); SHARDS];
    let mut firsts: Vec<u64> = vec![0; SHARDS];
    let (mut keys, mut bytes) = (Vec::new(), 0usize);
    for i in 0..rows {
        let shard = (i % SHARDS as u64) as usize;
        let (orderid, json) = order(i);
        if bodies[shard].is_empty() {
            firsts[shard] = i;
        }
        tsv::write_order_row(
            &mut bodies[shard],
            &OrderId::new(orderid).expect("id"),
            &json,
        );
        let last = i + 1 == rows;
        // A shard's batch is written when the next order might not fit; at the end,
        // every shard's.
        for s in 0..SHARDS {
            let due = if last {
                !bodies[s].is_empty()
            } else {
                s == shard && bodies[s].len() + 400 > MAX_OBJECT_BYTES
            };
            if !due {
                continue;
            }
            let key = batch_key(
                "ChiefOrderS3",
                arrival,
                &format!("shardId-{s:012}"),
                &RecordPosition {
                    sequence_number: format!("4959{:040}", firsts[s]),
                    sub_sequence_number: 0,
                },
            );
            let body = std::mem::take(&mut bodies[s]);
            bytes += body.len();
            s3.put_object()
                .bucket(&bucket)
                .key(&key)
                .content_type(tsv::CONTENT_TYPE)
                .body(body.into())
                .send()
                .await
                .expect("put object");
            keys.push(key);
        }
    }
    println!(
        "prepared {rows} orders in {} objects ({:.1} MB) in moto in {:.1} s",
        keys.len(),
        bytes as f64 / 1e6,
        started.elapsed().as_secs_f64()
    );

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
    config.loader.bucket = bucket.clone();
    config.loader.tables.clear();
    config.loader.tables.insert(
        "orders".into(),
        TableConfig {
            table: table.clone(),
            ..TableConfig::orders()
        },
    );
    let options = RunOptions {
        table: "orders".into(),
        ..RunOptions::from_settings(&config.loader)
    };
    let started = Instant::now();
    let report = chief_loader::run(&config, &s3, None, &options)
        .await
        .expect("run");
    let seconds = started.elapsed().as_secs_f64();
    let t = &report.tables[0];
    assert_eq!(report.exit_code(), 0, "{}", t.summary_line());
    assert_eq!(t.rows_inserted, rows, "{}", t.summary_line());
    let count: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT COUNT(*) FROM `{table}`"
    )))
    .fetch_one(&pool)
    .await
    .expect("count");
    assert_eq!(u64::try_from(count).expect("count"), rows);
    println!("{}", t.summary_line());
    println!(
        "local mode: {rows} rows in {seconds:.2} s = {:.0} rows/s end to end \
         (LOAD DATA INFILE statements {:.2} s = {:.0} rows/s; the rest is listing, \
         downloads from moto, history and commit)",
        rows as f64 / seconds,
        t.load_seconds,
        rows as f64 / t.load_seconds
    );
    // Where the time went: the phases the report times, and the rest (listing, lock,
    // history lookups) by difference.
    let other = seconds - t.fetch_seconds - t.stage_seconds - t.load_seconds - t.commit_seconds;
    println!("split of the {seconds:.2} s:");
    for (phase, s) in [
        ("fetch (GET from moto, line counts)", t.fetch_seconds),
        ("stage (sort, write the file)", t.stage_seconds),
        ("LOAD DATA INFILE (the server)", t.load_seconds),
        ("warnings, load_history, COMMIT", t.commit_seconds),
        ("the rest (list, lock, history lookups)", other),
    ] {
        println!("  {phase:<42} {s:>8.2} s {:>5.1} %", s / seconds * 100.0);
    }
    println!(
        "{{\"rows\":{rows},\"objects\":{},\"bytes\":{bytes},\"seconds\":{seconds:.3},\"load_seconds\":{:.3},\
         \"fetch_seconds\":{:.3},\"stage_seconds\":{:.3},\"commit_seconds\":{:.3},\
         \"rows_per_s\":{:.0},\"load_rows_per_s\":{:.0}}}",
        keys.len(),
        t.load_seconds,
        t.fetch_seconds,
        t.stage_seconds,
        t.commit_seconds,
        rows as f64 / seconds,
        rows as f64 / t.load_seconds
    );

    // Clean up: the table, its history, the objects (moto keeps them in memory).
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP TABLE `{table}`")))
        .execute(&pool)
        .await
        .expect("drop table");
    sqlx::query("DELETE FROM load_history WHERE table_name = ?")
        .bind(&table)
        .execute(&pool)
        .await
        .expect("delete history");
    for key in &keys {
        let _ = s3.delete_object().bucket(&bucket).key(key).send().await;
    }
    let _ = s3.delete_bucket().bucket(&bucket).send().await;
    pool.close().await;
}
