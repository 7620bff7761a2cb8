//! The record contract end to end (issue: data integrity). A hostile corpus goes through
//! `chief-producer` → the four executors → S3 → `chief-loader` → MariaDB, and to
//! Elasticsearch (the stand-in, which refuses what Elasticsearch refuses):
//! - every valid record lands byte for byte: `orderdata` and the ids in MariaDB, the
//!   rows in S3, `_source` in Elasticsearch (where NDJSON turns the JSON's raw newline
//!   whitespace into spaces, nothing else);
//! - every invalid record is refused by the producer into its failed file with the
//!   reason, and, put into the streams by someone else, dead-lettered exactly once by
//!   every executor with its exact bytes, and reaches no sink.
//!
//! The expectations are computed from the corpus as written here, not from chief's code.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chief_e2e::Run;
use chief_pipeline::tsv;
use chief_stream::{KinesisClient, PutEntry, StreamClient};
use serde_json::{Value, json};

/// An order with every field, `id` and `name` as given.
fn order(id: &str, name: &str) -> Value {
    json!({
        "orderid": id,
        "user": {"userid": "user-000042", "name": name},
        "factoryid": "factory-03",
        "items": [{"sku": "SKU-1", "product": "Servo", "quantity": 2, "unit_price_cents": 4999}],
        "timestamp": "2024-01-02T03:04:05.678Z"
    })
}

fn bytes(value: &Value) -> Vec<u8> {
    value.to_string().into_bytes()
}

/// A job result and the row it must become: (orderid, userid, factoryid, robotid,
/// jobstatus, timestamp as `DATETIME` in UTC).
fn job(
    id: &str,
    user: &str,
    robot: &str,
    status: &str,
    ts: &str,
    utc: &str,
) -> (Vec<u8>, [String; 6]) {
    let factory = "  factory padded  ";
    let value = json!({
        "orderid": id, "userid": user, "factoryid": factory, "robotid": robot,
        "jobstatus": status, "timestamp": ts, "extra": {"nested": [1, "two", null]}
    });
    let row = [id, user, factory, robot, status, utc].map(str::to_owned);
    (bytes(&value), row)
}

struct Corpus {
    /// Valid orders, one JSON line each.
    orders: Vec<Vec<u8>>,
    /// Valid orders with raw newlines as JSON whitespace: not lines, put directly.
    orders_multiline: Vec<Vec<u8>>,
    /// Invalid orders and a fragment of the reason each must be refused with.
    bad_orders: Vec<(Vec<u8>, &'static str)>,
    /// Valid job results and their rows.
    jobs: Vec<(Vec<u8>, [String; 6])>,
    /// Invalid job results and reasons.
    bad_jobs: Vec<(Vec<u8>, &'static str)>,
}

fn corpus() -> Corpus {
    let wide = "𝄞".repeat(73);
    let keyword = "😀".repeat(255);
    let mut max = order("h-max", "max");
    max["items"][0]["quantity"] = json!(2_147_483_647u32);
    max["items"][0]["unit_price_cents"] = json!(9_223_372_036_854_775_807u64);
    max["items"][0]["sku"] = json!(keyword);
    max["user"]["userid"] = json!(keyword);
    max["factoryid"] = json!(keyword);
    let mut extra = order("h-extra", "unknown fields");
    extra["channel"] = json!({"web": [1, 2.5, null, true, {"deep": "\u{2028}\u{2029}"}]});
    extra["items"][0]["colour"] = json!("red");
    let orders = vec![
        bytes(&order("h-plain", "Ada Lovelace")),
        // Ids that differ only by spaces are different orders everywhere.
        bytes(&order("x", "no space")),
        bytes(&order("x ", "trailing space")),
        bytes(&order(" x", "leading space")),
        bytes(&order("X", "upper case")),
        // Every byte LOAD DATA escapes, in ids and in data.
        bytes(&order("tab\there", "\\N")),
        bytes(&order("\\N", "an id that reads as NULL unless escaped")),
        bytes(&order("nul\u{0}id", "nul\u{0}name\u{1}\u{1f}\u{7f}")),
        bytes(&order("back\\slash\\", "back\\slash\\")),
        bytes(&order("cr\rlf\n", "cr\r\nlf")),
        // 4-byte UTF-8, combining marks, joiners; the longest id (73 × 4 bytes).
        bytes(&order("🦀 crab", "e\u{301} 👩\u{200d}👩\u{200d}👧 漢字")),
        bytes(&order("e\u{301}", "combining")),
        bytes(&order("é", "precomposed: another id")),
        bytes(&order(&wide, "widest id")),
        bytes(&max),
        bytes(&extra),
        // A long record (200 kB): MEDIUMTEXT holds it, TEXT would truncate it.
        bytes(&order("h-long", &"L".repeat(200_000))),
    ];
    let orders_multiline = vec![
        "{\t\"orderid\" :\"h-ws\",\r\n\"user\":{\"userid\":\"u\",\"name\":\"raw\\ttab\"},\n\
         \"factoryid\":\"f\",\"items\":[],\"timestamp\":\"2024-01-01T00:00:00+09:00\"\n}"
            .as_bytes()
            .to_vec(),
    ];
    let mut not_utf8 = bytes(&order("h-bad-utf8", "Ada"));
    let at = not_utf8.windows(3).position(|w| w == b"Ada").expect("name");
    not_utf8[at..at + 2].copy_from_slice(b"\xff\xfe");
    let with = |field: &str, value: Value| {
        let mut o = order(&format!("h-bad-{field}"), "n");
        o[field] = value;
        bytes(&o)
    };
    let item = |field: &str, value: Value| {
        let mut o = order(&format!("h-bad-item-{field}"), "n");
        o["items"][0][field] = value;
        bytes(&o)
    };
    let quantity_over = item("quantity", json!(2_147_483_648u64));
    let price_over = item("unit_price_cents", json!(9_223_372_036_854_775_808u64));
    let quantity_text = item("quantity", json!("2"));
    let sku_long = item("sku", json!("s".repeat(256)));
    let mut no_user = order("h-bad-no-user", "n");
    no_user.as_object_mut().map(|o| o.remove("user"));
    let plain = String::from_utf8(bytes(&order("h-bad-twice", "n"))).expect("utf-8");
    let bad_orders = vec![
        (not_utf8, "not valid UTF-8"),
        (br#"["h-bad-array"]"#.to_vec(), "not an object"),
        (br#""h-bad-string""#.to_vec(), "not an object"),
        (b"{}".to_vec(), "missing field"),
        (bytes(&no_user), "missing field `user`"),
        (quantity_text, "expected fields"),
        (quantity_over, "outside 0..=2147483647"),
        (price_over, "outside 0..=9223372036854775807"),
        (sku_long, "longer than the 255"),
        (
            plain
                .replacen('{', r#"{"orderid":"other","#, 1)
                .into_bytes(),
            "twice",
        ),
        (
            format!("{}{}", &plain[..plain.len() - 1], r#","_id":"x"}"#).into_bytes(),
            "Elasticsearch refuses",
        ),
        (
            plain.replace("\"n\"", "\"\\ud800\"").into_bytes(),
            "not valid JSON",
        ),
        (
            plain.replace("T03:04:05.678Z", "T23:59:60Z").into_bytes(),
            "second 60",
        ),
        (
            plain.replace("2024-01-02", "0999-01-02").into_bytes(),
            "1000-9999",
        ),
        (
            plain.replace("2024-01-02T03", "2024-01-02t03").into_bytes(),
            "`T`",
        ),
        (with("orderid", json!("")), "empty"),
        (with("orderid", json!("z".repeat(74))), "74 characters"),
        (with("orderid", json!(42)), "expected fields"),
        (format!("{plain} trailing").into_bytes(), "not valid JSON"),
    ];
    let jobs = vec![
        job(
            "x",
            "u",
            "robot-1",
            "completed",
            "2024-01-02T03:04:05.678Z",
            "2024-01-02 03:04:05",
        ),
        job(
            "x ",
            "u",
            "robot-1",
            "failed",
            "2024-01-02T12:04:05+09:00",
            "2024-01-02 03:04:05",
        ),
        job(
            "tab\tid",
            "\\N",
            "robot\t\\",
            "cancelled",
            "1000-01-01T00:00:00Z",
            "1000-01-01 00:00:00",
        ),
        job(
            "nul\u{0}",
            &keyword,
            "r\u{0}\n",
            "completed",
            "9999-12-31T23:59:59.999Z",
            "9999-12-31 23:59:59",
        ),
        job(
            &wide,
            "é🦀",
            "e\u{301}",
            "failed",
            "2024-02-29T23:59:59.999-00:30",
            "2024-03-01 00:29:59",
        ),
    ];
    let good_job = jobs[0].0.clone();
    let job_text = String::from_utf8(good_job).expect("utf-8");
    let mut job_not_utf8 = job_text.clone().into_bytes();
    let at = job_not_utf8
        .windows(7)
        .position(|w| w == b"robot-1")
        .expect("robot");
    job_not_utf8[at] = 0xc3;
    let bad_jobs = vec![
        (job_not_utf8, "not valid UTF-8"),
        (br#"["x"]"#.to_vec(), "not an object"),
        (
            job_text.replace("completed", "exploded").into_bytes(),
            "exploded",
        ),
        (
            job_text.replace("2024-01-02", "0999-01-02").into_bytes(),
            "1000-9999",
        ),
        (
            job_text
                .replace("\"u\"", &format!("\"{}\"", "u".repeat(256)))
                .into_bytes(),
            "longer than the 255",
        ),
    ];
    Corpus {
        orders,
        orders_multiline,
        bad_orders,
        jobs,
        bad_jobs,
    }
}

fn lines(records: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for record in records {
        out.extend_from_slice(record);
        out.push(b'\n');
    }
    out
}

/// Puts `records` into `stream` as another producer would (no contract check).
async fn put_raw(run: &Run, stream: &str, records: &[Vec<u8>]) {
    let kinesis = KinesisClient::new(run.clients.kinesis());
    let entries: Vec<PutEntry> = records
        .iter()
        .enumerate()
        .map(|(i, data)| PutEntry {
            partition_key: format!("raw-{i}"),
            explicit_hash_key: None,
            data: Bytes::from(data.clone()),
        })
        .collect();
    let results = kinesis
        .put_records(stream, entries)
        .await
        .expect("PutRecords");
    assert!(
        results.iter().all(Result::is_ok),
        "every raw record put: {results:?}"
    );
}

/// The failed-file lines of a producer run: (input bytes, error).
fn refused(path: &Path) -> Vec<(Vec<u8>, String)> {
    use base64::Engine as _;
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|line| {
            let v: Value = serde_json::from_str(line).expect("failed-file JSON line");
            let input = match &v["input"] {
                Value::String(s) => s.as_bytes().to_vec(),
                other => base64::engine::general_purpose::STANDARD
                    .decode(other["base64"].as_str().expect("base64 input"))
                    .expect("base64"),
            };
            (input, v["error"].as_str().unwrap_or_default().to_owned())
        })
        .collect()
}

fn assert_refused(what: &str, got: Vec<(Vec<u8>, String)>, bad: &[(Vec<u8>, &str)]) {
    let lossy = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    assert_eq!(
        got.len(),
        bad.len(),
        "{what}: {:?}",
        got.iter().map(|(b, e)| (lossy(b), e)).collect::<Vec<_>>()
    );
    for ((input, error), (expected, reason)) in got.iter().zip(bad) {
        assert_eq!(
            input, expected,
            "{what}: the failed file keeps the exact bytes"
        );
        assert!(
            error.contains(reason),
            "{what}: {:?} refused with {error:?}, expected {reason:?}",
            String::from_utf8_lossy(expected)
        );
    }
}

async fn objects(run: &Run, prefix: &str) -> BTreeMap<String, Vec<u8>> {
    let s3 = run.clients.s3();
    let listed = s3
        .list_objects_v2()
        .bucket(&run.bucket)
        .prefix(prefix)
        .send()
        .await
        .expect("ListObjectsV2");
    let mut out = BTreeMap::new();
    for object in listed.contents() {
        let key = object.key().unwrap_or_default().to_owned();
        let body = s3
            .get_object()
            .bucket(&run.bucket)
            .key(&key)
            .send()
            .await
            .expect("GetObject")
            .body
            .collect()
            .await
            .expect("body")
            .into_bytes()
            .to_vec();
        out.insert(key, body);
    }
    out
}

/// The raw bytes of the dead letters an executor wrote.
async fn dead_letters(run: &Run, executor: &str) -> Vec<Vec<u8>> {
    use base64::Engine as _;
    let mut raw: Vec<Vec<u8>> = objects(run, &format!("errors/chief-{executor}/"))
        .await
        .values()
        .map(|body| {
            let letter: Value = serde_json::from_slice(body).expect("dead letter");
            base64::engine::general_purpose::STANDARD
                .decode(letter["data_base64"].as_str().expect("data_base64"))
                .expect("base64")
        })
        .collect();
    raw.sort();
    raw
}

/// Every row of the S3 objects under `prefix`.
async fn s3_rows(run: &Run, prefix: &str) -> Vec<Vec<Vec<u8>>> {
    let mut rows: Vec<Vec<Vec<u8>>> = objects(run, prefix)
        .await
        .values()
        .flat_map(|body| tsv::read_rows(body))
        .map(|row| row.into_iter().map(|f| f.expect("no NULL")).collect())
        .collect();
    rows.sort();
    rows
}

/// `_source` of `id` in `index` (the stand-in decodes the percent-encoded path).
async fn es_source(run: &Run, index: &str, id: &str) -> Option<Vec<u8>> {
    let encoded: String = id
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b == b'-' {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    let transport =
        elasticsearch::http::transport::Transport::single_node(&run.stack.elasticsearch.url)
            .expect("transport");
    let response = transport
        .send(
            elasticsearch::http::Method::Get,
            &format!("/{index}/_source/{encoded}"),
            elasticsearch::http::headers::HeaderMap::new(),
            None::<&()>,
            None::<Vec<u8>>,
            None,
        )
        .await
        .expect("_source");
    if response.status_code().as_u16() == 404 {
        return None;
    }
    assert_eq!(response.status_code().as_u16(), 200, "_source of {id:?}");
    Some(response.bytes().await.expect("body").to_vec())
}

fn id_of(record: &[u8]) -> String {
    let v: Value = serde_json::from_slice(record).expect("valid JSON");
    v["orderid"].as_str().expect("orderid").to_owned()
}

/// What Elasticsearch keeps of a record: NDJSON has no raw newlines, so the JSON's raw
/// newline whitespace is sent as spaces.
fn as_indexed(record: &[u8]) -> Vec<u8> {
    record
        .iter()
        .map(|b| if matches!(b, b'\n' | b'\r') { b' ' } else { *b })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_records_land_byte_for_byte_or_are_refused_with_a_reason_everywhere() {
    let run = Run::new("hostile").await;
    run.create_tables(&run.stack.database.url).await;
    let c = corpus();

    // 1. The producer: valid lines put, invalid ones in its failed file with the reason.
    let orders_file = run.dir.join("orders.jsonl");
    let mut order_lines: Vec<&[u8]> = c.orders.iter().map(Vec::as_slice).collect();
    order_lines.extend(c.bad_orders.iter().map(|(b, _)| b.as_slice()));
    std::fs::write(&orders_file, lines(&order_lines)).expect("write");
    let jobs_file = run.dir.join("jobresults.jsonl");
    let mut job_lines: Vec<&[u8]> = c.jobs.iter().map(|(b, _)| b.as_slice()).collect();
    job_lines.extend(c.bad_jobs.iter().map(|(b, _)| b.as_slice()));
    std::fs::write(&jobs_file, lines(&job_lines)).expect("write");
    let status = run
        .producer("producer-orders", &run.orders, &orders_file)
        .wait();
    assert_eq!(status.code(), Some(1), "refused lines make the exit code 1");
    let status = run.producer("producer-jobs", &run.jobs, &jobs_file).wait();
    assert_eq!(status.code(), Some(1), "refused lines make the exit code 1");
    assert_refused(
        "orders",
        refused(&run.dir.join("producer-orders-failed.jsonl")),
        &c.bad_orders,
    );
    assert_refused(
        "job results",
        refused(&run.dir.join("producer-jobs-failed.jsonl")),
        &c.bad_jobs,
    );

    // 2. Another producer puts the invalid records (and the multi-line valid ones).
    let mut raw_orders: Vec<Vec<u8>> = c.bad_orders.iter().map(|(b, _)| b.clone()).collect();
    raw_orders.extend(c.orders_multiline.iter().cloned());
    put_raw(&run, &run.orders, &raw_orders).await;
    let raw_jobs: Vec<Vec<u8>> = c.bad_jobs.iter().map(|(b, _)| b.clone()).collect();
    put_raw(&run, &run.jobs, &raw_jobs).await;

    // 3. The executors: wait until each has dead-lettered every invalid record and
    //    indexed every valid one, then stop them (SIGTERM: flush, checkpoint).
    let valid_orders: Vec<Vec<u8>> = c
        .orders
        .iter()
        .chain(&c.orders_multiline)
        .cloned()
        .collect();
    let procs = run.executors();
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let mut done = true;
        for (executor, bad) in [
            ("order-factory-s3", c.bad_orders.len()),
            ("order-es-s3", c.bad_orders.len()),
            ("jobresult-es", c.bad_jobs.len()),
            ("jobresult-notify-s3", c.bad_jobs.len()),
        ] {
            done &= dead_letters(&run, executor).await.len() >= bad;
        }
        done &= run.es_count("orders").await >= valid_orders.len() as u64;
        done &= run.es_count("jobresults").await >= c.jobs.len() as u64;
        if done {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the executors did not finish in 180 s (logs in {})",
            run.dir.display()
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Run::stop_all(procs);

    // Each invalid record dead-lettered exactly once per executor, with its bytes.
    let mut bad_orders: Vec<Vec<u8>> = c.bad_orders.iter().map(|(b, _)| b.clone()).collect();
    bad_orders.sort();
    let mut bad_jobs: Vec<Vec<u8>> = c.bad_jobs.iter().map(|(b, _)| b.clone()).collect();
    bad_jobs.sort();
    for executor in ["order-factory-s3", "order-es-s3"] {
        assert_eq!(dead_letters(&run, executor).await, bad_orders, "{executor}");
    }
    for executor in ["jobresult-es", "jobresult-notify-s3"] {
        assert_eq!(dead_letters(&run, executor).await, bad_jobs, "{executor}");
    }
    // The demo's dead-letter count (`chiefctl reconcile --dead-letter-prefix`) agrees: one
    // object per refused record per executor.
    let out = std::process::Command::new(chief_e2e::bin("chiefctl"))
        .args(["reconcile", "--config", "config/local.toml", "--bucket"])
        .arg(&run.bucket)
        .args(["--input", "/dev/null", "--dead-letter-prefix", "errors"])
        .current_dir(chief_config::local_stack::workspace_root())
        .output()
        .expect("chiefctl reconcile");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
        panic!(
            "chiefctl reconcile: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert_eq!(
        report["dead_letters"].as_u64(),
        Some(2 * (bad_orders.len() + bad_jobs.len()) as u64),
        "{report}"
    );

    // 4. S3: exactly the valid records, byte for byte, in both order archives.
    let mut expected_order_rows: Vec<Vec<Vec<u8>>> = valid_orders
        .iter()
        .map(|r| vec![id_of(r).into_bytes(), r.clone()])
        .collect();
    expected_order_rows.sort();
    assert_eq!(s3_rows(&run, "ChiefOrderS3/").await, expected_order_rows);
    assert_eq!(s3_rows(&run, "ChiefOrderEsS3/").await, expected_order_rows);
    let mut expected_job_rows: Vec<Vec<Vec<u8>>> = c
        .jobs
        .iter()
        .map(|(_, row)| row.iter().map(|f| f.clone().into_bytes()).collect())
        .collect();
    expected_job_rows.sort();
    assert_eq!(
        s3_rows(&run, "ChiefJobResultNotifyS3/").await,
        expected_job_rows
    );

    // 5. The loader: everything loads without a warning, byte for byte.
    let status = run.load(&[]);
    assert!(
        status.success(),
        "chief-loader run: {status} (log in {})",
        run.dir.display()
    );
    let pool = sqlx::mysql::MySqlPoolOptions::new()
        .max_connections(1)
        .connect(&run.stack.database.url)
        .await
        .expect("MariaDB");
    let rows: Vec<(Vec<u8>, Vec<u8>)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT orderid, CAST(orderdata AS BINARY) FROM `{}`",
        run.table("orders")
    )))
    .fetch_all(&pool)
    .await
    .expect("orders");
    let mut db_orders: Vec<Vec<Vec<u8>>> = rows.into_iter().map(|(a, b)| vec![a, b]).collect();
    db_orders.sort();
    assert_eq!(
        db_orders, expected_order_rows,
        "MariaDB orders byte for byte"
    );
    type JobRow = (Vec<u8>, Vec<u8>, Vec<u8>, Vec<u8>, Vec<u8>, String);
    let rows: Vec<JobRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT orderid, CAST(userid AS BINARY), CAST(factoryid AS BINARY), \
             CAST(robotid AS BINARY), CAST(jobstatus AS BINARY), \
             DATE_FORMAT(`timestamp`, '%Y-%m-%d %H:%i:%s') FROM `{}`",
        run.table("jobresults")
    )))
    .fetch_all(&pool)
    .await
    .expect("jobresults");
    let mut db_jobs: Vec<Vec<Vec<u8>>> = rows
        .into_iter()
        .map(|(a, b, c, d, e, f)| vec![a, b, c, d, e, f.into_bytes()])
        .collect();
    db_jobs.sort();
    assert_eq!(
        db_jobs, expected_job_rows,
        "MariaDB job results byte for byte"
    );
    pool.close().await;

    // 6. Elasticsearch: exactly the valid records, `_source` as sent.
    assert_eq!(run.es_count("orders").await, valid_orders.len() as u64);
    for record in &valid_orders {
        let id = id_of(record);
        assert_eq!(
            es_source(&run, &run.index("orders"), &id).await,
            Some(as_indexed(record)),
            "_source of order {id:?}"
        );
    }
    assert_eq!(run.es_count("jobresults").await, c.jobs.len() as u64);
    for (record, row) in &c.jobs {
        assert_eq!(
            es_source(&run, &run.index("jobresults"), &row[0]).await,
            Some(as_indexed(record)),
            "_source of job result {:?}",
            row[0]
        );
    }
    run.cleanup().await;
}
