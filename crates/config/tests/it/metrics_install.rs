//! `telemetry::Metrics::install` with both exporters, as a binary uses it: the global
//! recorder feeds the Prometheus endpoint and CloudWatch (moto on the local stack,
//! `make stack-up`) under the same names, and `shutdown` publishes the last values.
//! One test in this file: a process has one global recorder.

use std::time::{Duration, SystemTime};

use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{Dimension, Statistic};
use chief_config::aws::AwsClients;
use chief_config::cloudwatch::CloudWatchConfig;
use chief_config::health::Health;
use chief_config::local_stack::LocalStack;
use chief_config::telemetry::{self, Metrics, MetricsConfig, MetricsError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn scrape(addr: std::net::SocketAddr) -> String {
    let mut sock = tokio::net::TcpStream::connect(addr).await.expect("connect");
    sock.write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut out = String::new();
    sock.read_to_string(&mut out).await.expect("read");
    out
}

#[tokio::test]
async fn prometheus_and_cloudwatch_see_the_same_metrics_and_shutdown_publishes() {
    let stack = LocalStack::require();
    let ns = format!("chief-test/install-{}", uuid::Uuid::new_v4().simple());
    let stream = format!("OrdersStream-{}", uuid::Uuid::new_v4().simple());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let config = MetricsConfig {
        listen: Some(format!("127.0.0.1:{port}")),
        cloudwatch: Some(CloudWatchConfig {
            namespace: ns.clone(),
            // Longer than the test: only shutdown publishes.
            interval_ms: 600_000,
        }),
    };
    // The binaries' old entry point refuses a CloudWatch config instead of ignoring it.
    assert!(matches!(
        telemetry::install_metrics(&config, &Health::new()),
        Err(MetricsError::CloudWatchNeedsAws)
    ));

    let metrics = Metrics::install(&config, &stack.aws, &Health::new())
        .await
        .expect("install");
    let addr = metrics.prometheus_addr().expect("prometheus on");
    metrics::counter!("RecordsProcessed", "stream" => stream.clone()).increment(42);

    let page = scrape(addr).await;
    assert!(
        page.lines().any(|l| l.starts_with("RecordsProcessed{")
            && l.contains(&stream)
            && l.ends_with(" 42")),
        "{page}"
    );

    metrics.shutdown().await;
    let client = AwsClients::new(&stack.aws).await.cloudwatch();
    let now = SystemTime::now();
    let out = client
        .get_metric_statistics()
        .namespace(&ns)
        .metric_name("RecordsProcessed")
        .dimensions(
            Dimension::builder()
                .name("StreamName")
                .value(&stream)
                .build(),
        )
        .start_time(DateTime::from(now - Duration::from_secs(1800)))
        .end_time(DateTime::from(now + Duration::from_secs(1800)))
        .period(3600)
        .statistics(Statistic::Sum)
        .send()
        .await
        .expect("GetMetricStatistics");
    let sum: f64 = out.datapoints().iter().filter_map(|d| d.sum()).sum();
    assert_eq!(sum, 42.0, "{out:?}");

    // A second global recorder is refused with a clear error.
    let again = Metrics::install(&config, &stack.aws, &Health::new()).await;
    assert!(
        matches!(
            again,
            Err(MetricsError::RecorderAlreadySet | MetricsError::Install { .. })
        ),
        "{again:?}"
    );
}
