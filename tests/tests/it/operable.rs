//! An executor as systemd and a monitoring system see it (issue: operable on AWS): the
//! real binary on the local stack says `READY=1`, pings the watchdog at half the interval
//! systemd gives it and says `STOPPING=1` on SIGTERM over `$NOTIFY_SOCKET`; it serves
//! `/healthz`, `/readyz` (ready once it synced its leases) and `/metrics` on the port of
//! `[metrics] listen`, and stops with exit status 0.

use std::io::{Read, Write};
use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use chief_e2e::Run;

/// `GET path` on `addr`: the status and the body.
fn get(addr: &str, path: &str) -> (u16, String) {
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").expect("request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("response");
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// Waits at most 30 s until `/readyz` on `addr` answers `200 ready` (a 503 says why not
/// yet; a refused connection means the endpoint is not up yet).
fn wait_ready(addr: &str, log: &std::path::Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = String::from("no endpoint yet");
    loop {
        if std::net::TcpStream::connect(addr).is_ok() {
            let (status, body) = get(addr, "/readyz");
            if status == 200 {
                assert_eq!(body, "ready\n");
                return;
            }
            assert_eq!(status, 503, "{body}");
            last = body;
        }
        assert!(
            Instant::now() < deadline,
            "not ready after 30 s: {last} (log {})",
            log.display()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The next datagram on the notify socket, within `wait`.
fn next_state(socket: &UnixDatagram, wait: Duration) -> String {
    socket.set_read_timeout(Some(wait)).expect("timeout");
    let mut buffer = [0u8; 256];
    let n = socket.recv(&mut buffer).expect("a notification in time");
    String::from_utf8_lossy(&buffer[..n]).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_executor_notifies_systemd_pings_its_watchdog_and_serves_health_and_metrics() {
    let run = Run::new("operable").await;
    let socket_path = run.dir.join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).expect("bind the notify socket");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let addr = format!("127.0.0.1:{port}");
    let notify = socket_path.display().to_string();
    let proc = run.executor_with_env(
        "order-factory-s3",
        "ofs",
        &[
            ("NOTIFY_SOCKET", notify.as_str()),
            // 400 ms: the watchdog is pinged every 200 ms.
            ("WATCHDOG_USEC", "400000"),
            ("CHIEF__METRICS__LISTEN", addr.as_str()),
        ],
    );
    assert_eq!(next_state(&socket, Duration::from_secs(30)), "READY=1");
    let started = Instant::now();
    for _ in 0..3 {
        assert_eq!(next_state(&socket, Duration::from_secs(2)), "WATCHDOG=1");
    }
    let pinged = started.elapsed();
    assert!(
        pinged < Duration::from_millis(1_500),
        "three watchdog pings took {pinged:?} (every 200 ms expected)"
    );
    assert_eq!(get(&addr, "/healthz"), (200, "ok\n".to_owned()));
    wait_ready(&addr, &proc.log);
    let (status, metrics) = get(&addr, "/metrics");
    assert_eq!(status, 200);
    assert!(
        metrics.contains("LeasesHeld{"),
        "the KCL metric names are served: {metrics}"
    );
    let log = proc.log.clone();
    let status = proc.terminate();
    assert!(status.success(), "exit {status} (log {})", log.display());
    // Watchdog pings may still be queued before the stop; STOPPING=1 follows them.
    let mut states = Vec::new();
    while let Ok(n) = {
        socket
            .set_read_timeout(Some(Duration::from_millis(500)))
            .expect("timeout");
        let mut buffer = [0u8; 256];
        socket
            .recv(&mut buffer)
            .map(|n| String::from_utf8_lossy(&buffer[..n]).into_owned())
    } {
        states.push(n);
    }
    assert!(
        states.iter().any(|s| s == "STOPPING=1"),
        "STOPPING=1 on SIGTERM: {states:?}"
    );
}

/// A free localhost port.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// A `chief-es-standin` of its own on a free port, started with `args`: the process and
/// its URL.
fn own_es_standin(args: &[&str]) -> (std::process::Child, String) {
    let port = free_port();
    let child = std::process::Command::new(chief_e2e::bin("chief-es-standin"))
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("chief-es-standin");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the stand-in did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    (child, format!("http://127.0.0.1:{port}"))
}

/// Puts `records` (as JSON) into `stream`, one Kinesis record each; every one must be put.
async fn put_all(run: &Run, stream: &str, records: &[serde_json::Value]) {
    use chief_stream::{KinesisClient, PutEntry, StreamClient};
    let entries: Vec<PutEntry> = records
        .iter()
        .enumerate()
        .map(|(i, record)| PutEntry {
            partition_key: format!("k-{i}"),
            explicit_hash_key: None,
            data: bytes::Bytes::from(serde_json::to_vec(record).expect("json")),
        })
        .collect();
    let put = KinesisClient::new(run.clients.kinesis())
        .put_records(stream, entries)
        .await
        .expect("PutRecords");
    assert!(put.iter().all(Result::is_ok));
}

/// Waits at most `secs` for `proc` to exit by itself: its status and its log.
fn exits_within(mut proc: chief_e2e::Proc, secs: u64) -> (std::process::ExitStatus, String) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(status) = proc.child.try_wait().expect("wait") {
            let log = std::fs::read_to_string(&proc.log).unwrap_or_default();
            return (status, log);
        }
        if Instant::now() >= deadline {
            let log = std::fs::read_to_string(&proc.log).unwrap_or_default();
            proc.kill();
            panic!("still running {secs} s after the fault; it must exit: {log}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The line the binary printed on its way out (its last line on stderr).
fn last_line(log: &str) -> &str {
    log.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_default()
}

/// Every lease of `table` with its checkpoint.
async fn checkpoints(run: &Run, table: &str) -> Vec<(String, String)> {
    use chief_consumer::LeaseStore;
    let store = chief_consumer::DynamoDbLeaseStore::new(run.clients.dynamodb(), table);
    let mut leases: Vec<(String, String)> = store
        .list_leases()
        .await
        .expect("leases")
        .into_iter()
        .map(|l| (l.lease_key, l.checkpoint.sequence_number))
        .collect();
    leases.sort();
    leases
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_elasticsearch_credentials_stop_the_executor_with_one_line() {
    let run = Run::new("es-401").await;
    // A cluster with security on: only chief:right gets in.
    let (mut standin, url) = own_es_standin(&["--basic-auth", "chief:right"]);
    let started = Instant::now();
    let wrong = run.executor_with_env(
        "jobresult-es",
        "jes-wrong",
        &[
            ("CHIEF__ELASTICSEARCH__URL", url.as_str()),
            ("CHIEF__ELASTICSEARCH__USERNAME", "chief"),
            ("CHIEF__ELASTICSEARCH__PASSWORD", "wrong"),
        ],
    );
    let (status, log) = exits_within(wrong, 30);
    let took = started.elapsed();
    assert!(
        !status.success(),
        "a wrong password must fail the process: {log}"
    );
    let line = last_line(&log);
    assert!(
        line.starts_with("chief-jobresult-es: ")
            && line.contains(&run.index("jobresults"))
            && line.contains("HTTP 401"),
        "one line naming the index and the 401: {line}"
    );
    assert!(took < Duration::from_secs(20), "exited after {took:?}");
    // The control: the right password gets the same executor ready.
    let health = format!("127.0.0.1:{}", free_port());
    let right = run.executor_with_env(
        "jobresult-es",
        "jes-right",
        &[
            ("CHIEF__ELASTICSEARCH__URL", url.as_str()),
            ("CHIEF__ELASTICSEARCH__USERNAME", "chief"),
            ("CHIEF__ELASTICSEARCH__PASSWORD", "right"),
            ("CHIEF__METRICS__LISTEN", health.as_str()),
        ],
    );
    wait_ready(&health, &right.log);
    assert!(right.terminate().success());
    let _ = standin.kill();
    let _ = standin.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_bucket_stops_the_executor_and_checkpoints_nothing() {
    let run = Run::new("no-bucket").await;
    let missing = format!("e2e-missing-{}", run.id);
    // The fault is real: the bucket does not exist.
    assert!(
        run.clients
            .s3()
            .head_bucket()
            .bucket(&missing)
            .send()
            .await
            .is_err()
    );
    let orders: Vec<serde_json::Value> = (0..40)
        .map(|i| {
            serde_json::json!({
                "orderid": format!("order-{i}"),
                "user": {"userid": "user-1", "name": "A"},
                "factoryid": "factory-1",
                "items": [{"sku": "S", "product": "P", "quantity": 1, "unit_price_cents": 1}],
                "timestamp": "2024-01-02T03:04:05Z"
            })
        })
        .collect();
    put_all(&run, &run.orders, &orders).await;
    let proc = run.executor_with_env(
        "order-factory-s3",
        "ofs",
        &[("CHIEF__ARCHIVE__BUCKET", missing.as_str())],
    );
    let (status, log) = exits_within(proc, 60);
    assert!(!status.success(), "{log}");
    let line = last_line(&log);
    assert!(
        line.starts_with("chief-order-factory-s3: ")
            && line.contains(&missing)
            && line.contains("NoSuchBucket"),
        "one line naming the bucket and the error: {line}"
    );
    // Nothing reached a sink, so nothing was checkpointed.
    let table = format!("e2e-order-factory-s3-{}", run.id);
    let leases = checkpoints(&run, &table).await;
    assert_eq!(leases.len(), 4, "{leases:?}");
    assert!(
        leases.iter().all(|(_, c)| c == "TRIM_HORIZON"),
        "no checkpoint past unsunk data: {leases:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_lease_table_stops_the_executor_within_seconds() {
    let run = Run::new("no-table").await;
    let health = format!("127.0.0.1:{}", free_port());
    let proc = run.executor_with_env(
        "order-factory-s3",
        "ofs",
        &[("CHIEF__METRICS__LISTEN", health.as_str())],
    );
    wait_ready(&health, &proc.log);
    let table = format!("e2e-order-factory-s3-{}", run.id);
    assert_eq!(
        checkpoints(&run, &table).await.len(),
        4,
        "it held the leases"
    );
    run.clients
        .dynamodb()
        .delete_table()
        .table_name(&table)
        .send()
        .await
        .expect("DeleteTable");
    let deleted = Instant::now();
    let (status, log) = exits_within(proc, 30);
    let took = deleted.elapsed();
    assert!(!status.success(), "{log}");
    let line = last_line(&log);
    assert!(
        line.starts_with("chief-order-factory-s3: ")
            && line.contains(&table)
            && line.contains("ResourceNotFoundException"),
        "one line naming the table and the error: {line}"
    );
    assert!(
        took < Duration::from_secs(15),
        "exited {took:?} after the delete"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_whose_mapping_refuses_every_document_stops_the_executor() {
    let run = Run::new("es-mapping").await;
    // An operator created the index with a mapping that cannot hold an order id.
    run.es_create_index(
        "jobresults",
        &serde_json::json!({"mappings": {"properties": {"orderid": {"type": "long"}}}}),
    )
    .await;
    let total = 60;
    let jobs: Vec<serde_json::Value> = (0..total)
        .map(|i| {
            serde_json::json!({
                "orderid": format!("order-{i}"),
                "userid": "user-1",
                "factoryid": "factory-1",
                "robotid": "robot-1",
                "jobstatus": "completed",
                "timestamp": "2024-01-02T03:04:05Z"
            })
        })
        .collect();
    put_all(&run, &run.jobs, &jobs).await;
    let proc = run.executor_with_env(
        "jobresult-es",
        "jes",
        &[("CHIEF__ELASTICSEARCH__FATAL_AFTER_REJECTED", "20")],
    );
    let (status, log) = exits_within(proc, 60);
    assert!(!status.success(), "{log}");
    // The fault happened, seen from the cluster: it refused documents, created none.
    let stats = run.es_stats("jobresults").await;
    assert!(
        stats["stats"]["invalid_sources"]
            .as_u64()
            .unwrap_or_default()
            >= 20,
        "{stats}"
    );
    assert_eq!(stats["stats"]["created"], 0, "{stats}");
    let line = last_line(&log);
    assert!(
        line.starts_with("chief-jobresult-es: ")
            && line.contains(&format!(
                "index `{}` rejected the last",
                run.index("jobresults")
            ))
            && line.contains("failed to parse field [orderid] of type [long]")
            && line.contains("mapping refuses"),
        "one line naming the index and the mapping error: {line}"
    );
    // Not the whole stream dead-lettered, and no checkpoint past a record that is not a
    // dead letter: a checkpoint is TRIM_HORIZON or a dead-lettered record of its shard.
    let letters: Vec<String> = {
        let listed = run
            .clients
            .s3()
            .list_objects_v2()
            .bucket(&run.bucket)
            .prefix("errors/chief-jobresult-es/")
            .send()
            .await
            .expect("list dead letters");
        listed
            .contents()
            .iter()
            .filter_map(|o| o.key().map(str::to_owned))
            .collect()
    };
    assert!(letters.len() < total, "{} dead letters", letters.len());
    let table = format!("e2e-jobresult-es-{}", run.id);
    let leases = checkpoints(&run, &table).await;
    assert_eq!(leases.len(), 2, "{leases:?}");
    for (shard, checkpoint) in &leases {
        assert!(
            checkpoint == "TRIM_HORIZON"
                || letters
                    .iter()
                    .any(|k| k.ends_with(&format!("{shard}-{checkpoint}-0"))),
            "{shard} checkpointed at {checkpoint}, which is no dead letter: {letters:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_executor_signs_with_sigv4_and_a_refused_signature_stops_it() {
    let run = Run::new("es-sigv4").await;
    // A domain with IAM authentication: only requests signed with chief-local's key pass
    // (the local stack's static credentials, config/local.toml).
    let (mut standin, url) = own_es_standin(&["--aws-sigv4", "chief-local:chief-local"]);
    // Signed with the right key: ready, and the index exists (created through SigV4).
    let health = format!("127.0.0.1:{}", free_port());
    let signed = run.executor_with_env(
        "jobresult-es",
        "jes-signed",
        &[
            ("CHIEF__ELASTICSEARCH__URL", url.as_str()),
            ("CHIEF__ELASTICSEARCH__AWS_SIGV4_SERVICE", "es"),
            ("CHIEF__METRICS__LISTEN", health.as_str()),
        ],
    );
    wait_ready(&health, &signed.log);
    assert!(signed.terminate().success());
    // A wrong secret: the cluster refuses the signature; the executor stops with one line.
    let wrong = run.executor_with_env(
        "jobresult-es",
        "jes-wrong",
        &[
            ("CHIEF__ELASTICSEARCH__URL", url.as_str()),
            ("CHIEF__ELASTICSEARCH__AWS_SIGV4_SERVICE", "es"),
            (
                "CHIEF__AWS__STATIC_CREDENTIALS__SECRET_ACCESS_KEY",
                "not-the-secret",
            ),
        ],
    );
    let (status, log) = exits_within(wrong, 30);
    assert!(!status.success(), "{log}");
    let line = last_line(&log);
    assert!(
        line.starts_with("chief-jobresult-es: ")
            && line.contains(&run.index("jobresults"))
            && line.contains("HTTP 403"),
        "one line naming the index and the 403: {line}"
    );
    let _ = standin.kill();
    let _ = standin.wait();
}
