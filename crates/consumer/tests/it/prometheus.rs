//! The KPL and KCL metric names on a real Prometheus endpoint (the exporter every chief
//! binary installs with `[metrics] listen`), scraped over HTTP after a producer run and a
//! consumer run on the in-memory stream, and checked against what the runs' own outcomes
//! say (an independent count), not against the code's counters.

use crate::support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chief_config::health::Health;
use chief_config::telemetry::{MetricsConfig, install_metrics};
use chief_consumer::{MemoryLeaseStore, Scheduler};
use chief_producer::{Producer, ProducerConfig};
use chief_stream::{Faults, MemoryStreams};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

const STREAM: &str = "MetricsStream";
const RECORDS: u64 = 2_000;

/// `GET /metrics`: the sum of each metric's samples whose labels include
/// `stream="MetricsStream"`, by name (and by `code` for `ErrorsByCode`).
async fn scrape(addr: &str) -> BTreeMap<String, f64> {
    let (status, body) = get(addr, "/metrics").await;
    assert_eq!(status, 200, "{body}");
    let mut out = BTreeMap::new();
    for line in body.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        if !series.contains(&format!("stream=\"{STREAM}\"")) {
            continue;
        }
        let name = series.split('{').next().unwrap_or_default();
        let key = match name {
            "ErrorsByCode" => {
                let code = series
                    .split("code=\"")
                    .nth(1)
                    .and_then(|c| c.split('"').next())
                    .unwrap_or_default();
                format!("ErrorsByCode/{code}")
            }
            other => other.to_owned(),
        };
        *out.entry(key).or_insert(0.0) += value;
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producer_and_consumer_metrics_are_served_with_the_kpl_and_kcl_names_and_right_values() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let addr = format!("127.0.0.1:{port}");
    let health = Health::new();
    install_metrics(
        &MetricsConfig {
            listen: Some(addr.clone()),
            cloudwatch: None,
        },
        &health,
    )
    .expect("Prometheus endpoint");
    assert_eq!(get(&addr, "/healthz").await, (200, "ok\n".to_owned()));
    assert_eq!(get(&addr, "/nope").await.0, 404);

    // The producer: one user record per Kinesis record (no aggregation), so the failed
    // attempts in the outcomes are the failed Kinesis records; a third throttled, a tenth
    // of the calls failing whole.
    let streams = MemoryStreams::new(21);
    streams.create_stream(STREAM, 2);
    streams.set_faults(Faults {
        throttle_ratio: 0.3,
        call_error_ratio: 0.1,
        ..Faults::default()
    });
    let config = ProducerConfig {
        aggregation_enabled: false,
        ..ProducerConfig::default()
    };
    let producer = Producer::start(streams.clone(), STREAM, config)
        .await
        .expect("producer");
    let mut receipts = Vec::new();
    for r in records(0, RECORDS, 50) {
        receipts.push(producer.send(r).await.expect("send"));
    }
    let mut failed_attempts = BTreeMap::<String, u64>::new();
    for receipt in receipts {
        let put = receipt.await.expect("every record put in the end");
        assert_eq!(put.sub_sequence_number, 0);
        for attempt in put.attempts.iter() {
            if let Some(error) = &attempt.error {
                *failed_attempts.entry(error.code.clone()).or_insert(0) += 1;
            }
        }
    }
    producer.shutdown().await;
    streams.set_faults(Faults::default());
    let all_failed: u64 = failed_attempts.values().sum();
    assert!(all_failed > 0, "the faults happened: {failed_attempts:?}");

    let m = scrape(&addr).await;
    let n = RECORDS as f64;
    assert_eq!(m.get("UserRecordsReceived"), Some(&n), "{m:?}");
    assert_eq!(m.get("UserRecordsPut"), Some(&n), "{m:?}");
    assert_eq!(m.get("KinesisRecordsPut"), Some(&n), "{m:?}");
    assert_eq!(m.get("AllErrors"), Some(&(all_failed as f64)), "{m:?}");
    for (code, count) in &failed_attempts {
        assert_eq!(
            m.get(&format!("ErrorsByCode/{code}")),
            Some(&(*count as f64)),
            "ErrorsByCode counts each failed record once: {m:?}"
        );
    }
    let stored: usize = streams
        .shards(STREAM)
        .iter()
        .map(|s| streams.records(STREAM, &s.shard_id).len())
        .sum();
    assert_eq!(stored as u64, RECORDS, "exactly once in the stream");

    // The consumer: every record processed once, a lag gauge per shard, leases held.
    let probe = Arc::new(Probe::default());
    let factory = TestFactory {
        worker: "w".to_owned(),
        probe: probe.clone(),
        mode: Checkpointing::EveryBatch,
    };
    let scheduler = Scheduler::new(
        fast_config(STREAM, "metrics-leases", "w"),
        streams.clone(),
        MemoryLeaseStore::new("metrics-leases"),
        factory,
    )
    .expect("scheduler")
    .with_health(health.clone());
    let token = CancellationToken::new();
    let handle = tokio::spawn(scheduler.run(token.clone()));
    wait_for(30, "every record processed", || async {
        probe.count() as u64 >= RECORDS
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let m = scrape(&addr).await;
    assert_exactly_once(&probe.seen(), RECORDS);
    assert_eq!(m.get("RecordsProcessed"), Some(&n), "{m:?}");
    assert_eq!(m.get("LeasesHeld"), Some(&2.0), "{m:?}");
    assert_eq!(
        m.get("MillisBehindLatest"),
        Some(&0.0),
        "both shards read to the tip: {m:?}"
    );
    // Ready while it holds its leases and keeps up; not ready once stopped.
    assert_eq!(get(&addr, "/readyz").await, (200, "ready\n".to_owned()));
    token.cancel();
    handle.await.expect("join").expect("scheduler");
    assert_eq!(
        get(&addr, "/readyz").await,
        (503, "consumer: stopped\n".to_owned())
    );
    assert_eq!(get(&addr, "/healthz").await.0, 200);
}

/// `GET path`: the status and the body.
async fn get(addr: &str, path: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes())
        .await
        .expect("request");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .await
        .expect("response");
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
